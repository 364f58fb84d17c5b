use std::net::{IpAddr, Ipv4Addr};
use hopscope_schema::{COUNTER_SOURCE_SNMP, InterfaceCounterBuilder, InterfaceCounterRecord, ip_to_mapped};
use hopscope_store::{Backend, Store, Table, WriteOptions};
const DAY_NS: i64 = 86_400_000_000_000;
fn main() {
    let dir = std::env::args().nth(1).unwrap();
    let store = Store::open(std::path::Path::new(&dir), WriteOptions::default()).unwrap();
    let now = hopscope_store::now_ns();
    let days = 56i64;
    let start = (now / DAY_NS - days) * DAY_NS;
    let step = 300_000_000_000i64;
    let per_day = DAY_NS / step;
    let links: [(u32, f64, f64); 3] = [(1, 300e6, 5e6), (2, 100e6, 0.5e6), (3, 550e6, 2.5e6)];
    let mut counters = [0u64; 6];
    let mut seed = 7u64;
    for day in 0..days {
        let mut b = InterfaceCounterBuilder::with_capacity(1000);
        for k in 0..per_day {
            let t = start + day * DAY_NS + k * step;
            if t > now { break; }
            let hour = k as f64 / 12.0;
            let weekday = ((t / DAY_NS) + 3).rem_euclid(7);
            let week = if weekday >= 5 { 0.6 } else { 1.0 };
            let diurnal = 0.35 + 0.65 * (((hour - 14.0) / 24.0 * std::f64::consts::TAU).cos() * 0.5 + 0.5);
            for (i, &(ix, base, growth)) in links.iter().enumerate() {
                seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
                let noise = 0.9 + 0.2 * ((seed >> 11) as f64 / (1u64 << 53) as f64);
                let rate = (base + growth * day as f64) * diurnal * week * noise;
                counters[2 * i] += (rate / 8.0 * 300.0) as u64;
                counters[2 * i + 1] += (rate * 0.3 / 8.0 * 300.0) as u64;
                b.append(&InterfaceCounterRecord {
                    time_received_ns: Some(t),
                    sampler_address: Some(ip_to_mapped(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))),
                    if_index: Some(ix),
                    if_speed: Some(1_000_000_000),
                    in_octets: Some(counters[2 * i]),
                    out_octets: Some(counters[2 * i + 1]),
                    counter_source: Some(COUNTER_SOURCE_SNMP),
                    ..InterfaceCounterRecord::default()
                });
            }
        }
        store.write(Table::InterfaceCounters, &[b.finish().unwrap()]).unwrap();
    }
}
