//! Live capture on `lo`, where the kernel hands a capture every packet
//! twice (as sent, then as received): each packet is metered once. Needs
//! CAP_NET_RAW (root); without it the test says so and passes nothing.

#![cfg(target_os = "linux")]

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use hopscope_packet::parse_frame;
use hopscope_probe::{AfPacketSource, LiveConfig, PacketSource};

#[test]
fn loopback_capture_sees_each_packet_once() {
    let mut source = match AfPacketSource::open("lo", LiveConfig::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipped: no capture on lo here ({e})");
            return;
        }
    };
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = receiver.local_addr().unwrap().port();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    const SENT: usize = 50;
    for i in 0..SENT {
        sender.send_to(&[i as u8; 32], ("127.0.0.1", port)).unwrap();
    }
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match source
            .next_frame_within(Duration::from_millis(100))
            .unwrap()
        {
            Some(frame) => {
                let p = parse_frame(frame.link, frame.data);
                if p.dst_port == Some(port) && p.proto == Some(17) {
                    seen += 1;
                }
            }
            None if seen >= SENT => break,
            None => {}
        }
    }
    assert_eq!(seen, SENT, "each datagram once");
    assert!(source.counters().loopback_copies >= SENT as u64);
}
