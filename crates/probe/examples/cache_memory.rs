//! Memory of the flow cache per active flow: `cache_memory [FLOWS]` meters
//! one packet of each of FLOWS distinct flows (a million by default) and
//! reports the growth of resident memory divided by the flow count.

use hopscope_packet::PacketSummary;
use hopscope_probe::{CacheConfig, FlowCache, FlowKey};

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let flows: u32 = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let before = resident_bytes();
    let mut cache = FlowCache::new(CacheConfig {
        max_flows: flows as usize + 1,
        ..CacheConfig::default()
    });
    let mut expired = Vec::new();
    let packet = PacketSummary {
        ip_total_length: Some(100),
        ttl: Some(64),
        tcp_flags: Some(0x10),
        ..Default::default()
    };
    for i in 0..flows {
        let mut src = [0u8; 16];
        src[10] = 0xff;
        src[11] = 0xff;
        src[12..].copy_from_slice(&i.to_be_bytes());
        let key = FlowKey {
            tuple: hopscope_schema::FlowTuple {
                src,
                dst: src,
                src_port: 1024,
                dst_port: 443,
                proto: 6,
            },
            tunnel_kind: 0,
            tunnel_id: 0,
            vlan: 0,
        };
        cache.add(key, i64::from(i), &packet, 0, &mut expired);
    }
    cache.settle(&mut expired);
    let after = resident_bytes();
    assert!(expired.is_empty());
    println!(
        "{} active flows: {:.1} MiB resident growth, {:.0} bytes per flow",
        cache.len(),
        (after - before) as f64 / (1 << 20) as f64,
        (after - before) as f64 / f64::from(flows)
    );
}
