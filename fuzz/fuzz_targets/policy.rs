#![no_main]
use hopscope_analyze::detect::{FlowEvent, lists};
use hopscope_analyze::{Policy, PolicyConfig};

// Any text as an address list, and any JSON policy (the keys `[policy]`
// has): a list counts what is not an address, a policy is compiled or
// refused with an error naming its key, never a panic; a compiled one
// judges flows made of the same bytes.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let (table, bad, first) = lists::parse(text);
        assert_eq!(bad > 0, first.is_some());
        let _ = table.len();
    }
    let Ok(config) = serde_json::from_slice::<PolicyConfig>(data) else {
        return;
    };
    match Policy::compile(&config, &[]) {
        Ok(policy) => {
            for chunk in data.chunks(38) {
                let mut b = [0u8; 38];
                b[..chunk.len()].copy_from_slice(chunk);
                let e = FlowEvent {
                    end_ns: 0,
                    start_ns: 0,
                    point: 0,
                    src: b[..16].try_into().unwrap(),
                    dst: b[16..32].try_into().unwrap(),
                    src_port: u16::from_be_bytes([b[32], b[33]]),
                    dst_port: u16::from_be_bytes([b[34], b[35]]),
                    proto: b[36],
                    packets: 1,
                    bytes: 1,
                    reverse_packets: None,
                    tcp_flags: Some(u16::from(b[37])),
                    icmp_type: None,
                    sampling: 1,
                };
                let v = policy.judge(&e);
                assert!(!v.rule.is_empty());
            }
        }
        Err(e) => assert!(e.to_string().starts_with("policy"), "{e}"),
    }
});
