#![no_main]
use hopscope_wire::file::{CaptureDatagrams, IpfixReader};

// IPFIX files/TCP streams and pcap captures of exports: readers must end or
// fail cleanly on any byte sequence.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut reader = IpfixReader::new(data);
    let mut messages = 0;
    while let Some(m) = reader.next_message() {
        if m.is_err() {
            break;
        }
        messages += 1;
        assert!(messages <= data.len() / 16);
    }
    for pcapng in [false, true] {
        if let Ok(mut capture) = CaptureDatagrams::new(data, pcapng) {
            while let Some(d) = capture.next_datagram() {
                if d.is_err() {
                    break;
                }
            }
        }
    }
});
