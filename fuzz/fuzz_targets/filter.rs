#![no_main]
use hopscope_schema::{FlowBatchBuilder, FlowRecord, ipv4_mapped};
use hopscope_store::query::{evaluate, parse_filter};

// Any text: the filter parser fails with a position inside the text, or
// yields a filter that evaluates on flows without a panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse_filter(&text) {
        Err(e) => assert!(e.position <= text.len()),
        Ok(None) => {}
        Ok(Some(expr)) => {
            let mut b = FlowBatchBuilder::default();
            b.append(&FlowRecord {
                time_received_ns: Some(1),
                src_addr: Some(ipv4_mapped([10, 0, 0, 1])),
                dst_port: Some(443),
                proto: Some(6),
                bytes: Some(1500),
                tcp_flags: Some(0x12),
                ..FlowRecord::default()
            });
            b.append(&FlowRecord::default());
            let batch = b.finish().unwrap();
            let _ = evaluate(&expr, &batch);
        }
    }
});
