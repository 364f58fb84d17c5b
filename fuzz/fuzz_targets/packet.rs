#![no_main]
use hopscope_packet::{LinkType, parse_frame};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for link in [
        LinkType::Ethernet,
        LinkType::RawIp,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
    ] {
        let s = parse_frame(link, data);
        if let Some(at) = s.payload_offset {
            assert!(
                at <= data.len(),
                "payload offset {at} past a {} byte frame",
                data.len()
            );
        }
    }
});
