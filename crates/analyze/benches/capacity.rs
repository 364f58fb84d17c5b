//! Capacity planning at scale (issue 20's target: a month of 5-minute
//! samples for 10,000 interfaces answered in under a second).
//!
//! `judge`: the samples in memory (each interface's SNMP in and out over
//! 30 days, 8640 samples each: 172.8 million samples), judged: the 95th
//! percentile per direction, each day's percentile, the forecast with its
//! crossing, the ranking by headroom. `read`: what it costs to get there
//! from the Parquet store, for 200 interfaces polled every 5 minutes for
//! 30 days (1.7 million readings), per reading.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use hopscope_analyze::capacity::{
    Capacity, CapacityConfig, Direction, LinkKey, LinkSamples, SAMPLE_NS, Samples, Source,
};
use hopscope_schema::{
    COUNTER_SOURCE_SNMP, InterfaceCounterBuilder, InterfaceCounterRecord, ip_to_mapped,
};
use hopscope_store::{Backend, Store, Table, WriteOptions};

const DAY_NS: i64 = 86_400_000_000_000;
const DAYS: i64 = 30;
/// 2025-11-03, midnight UTC: in the past (a range is cut at the present).
const START: i64 = 20_395 * DAY_NS;

/// A cheap, deterministic noise in [0, 1).
fn noise(k: u64) -> f64 {
    let x = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (k >> 7);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// A link's rate at sample `k`: a daily shape around a level that grows
/// with the link's number, plus noise.
fn rate(link: u64, k: u64) -> f64 {
    let per_day = (DAY_NS / SAMPLE_NS) as u64;
    let hour = (k % per_day) as f64 / 12.0;
    let daily = 0.55 + 0.45 * (std::f64::consts::TAU * (hour - 14.0) / 24.0).cos();
    let level = 1e9 * (0.2 + 0.6 * (link % 97) as f64 / 97.0) * (1.0 + 0.01 * (k / per_day) as f64);
    level * daily * (0.9 + 0.2 * noise(link * 1_000_003 + k))
}

fn exporter(link: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, (link >> 16) as u8, (link >> 8) as u8, 1))
}

fn month_in_memory(links: u64) -> Samples {
    let len = (DAYS * DAY_NS / SAMPLE_NS) as usize;
    let mut out = BTreeMap::new();
    for link in 0..links {
        let series = |factor: f64| (0..len as u64).map(|k| rate(link, k) * factor).collect();
        out.insert(
            LinkKey {
                exporter: exporter(link),
                if_index: (link % 256) as u32 + 1,
            },
            LinkSamples::from_series(
                [
                    ((Source::Snmp, Direction::In), series(1.0)),
                    ((Source::Snmp, Direction::Out), series(0.4)),
                ],
                [(Source::Snmp, 10_000_000_000)],
            ),
        );
    }
    Samples {
        start_ns: START,
        sample_ns: SAMPLE_NS,
        len,
        until_ns: START + DAYS * DAY_NS,
        links: out,
    }
}

fn judge(c: &mut Criterion) {
    let settings = CapacityConfig::default().check().unwrap();
    let samples = month_in_memory(10_000);
    let mut g = c.benchmark_group("capacity");
    g.sample_size(10);
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("judge_10k_links_month", |b| {
        b.iter_batched(
            || samples.clone(),
            |s| {
                let c = Capacity::judge(s, &settings, &BTreeMap::new());
                assert_eq!(c.report.links.len(), 10_000);
                c.report.links.len()
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn read(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("hopscope-capacity-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir, WriteOptions::default()).unwrap();
    let links = 200u64;
    let per_day = (DAY_NS / SAMPLE_NS) as u64;
    let mut readings = 0u64;
    // each link's octet counter: the sum of its rates so far
    let mut octets = vec![0u64; links as usize];
    // a day at a time, as a poller's flushes would land
    for day in 0..DAYS as u64 {
        let mut b = InterfaceCounterBuilder::with_capacity((links * per_day) as usize);
        for k in day * per_day..(day + 1) * per_day {
            for link in 0..links {
                let counter = &mut octets[link as usize];
                *counter += (rate(link, k) / 8.0 * 300.0) as u64;
                let octets = *counter;
                b.append(&InterfaceCounterRecord {
                    time_received_ns: Some(START + k as i64 * SAMPLE_NS),
                    sampler_address: Some(ip_to_mapped(exporter(link))),
                    if_index: Some((link % 256) as u32 + 1),
                    if_speed: Some(10_000_000_000),
                    in_octets: Some(octets),
                    out_octets: Some(octets / 2),
                    counter_source: Some(COUNTER_SOURCE_SNMP),
                    ..InterfaceCounterRecord::default()
                });
                readings += 1;
            }
        }
        store
            .write(Table::InterfaceCounters, &[b.finish().unwrap()])
            .unwrap();
    }
    let settings = CapacityConfig::default().check().unwrap();
    let mut g = c.benchmark_group("capacity");
    g.sample_size(10);
    g.throughput(Throughput::Elements(readings));
    g.bench_function("read_200_links_month_from_parquet", |b| {
        b.iter(|| {
            let s =
                Samples::read(&store, START, START + DAYS * DAY_NS, settings.sample_ns).unwrap();
            assert_eq!(s.links.len(), links as usize);
            s.len
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, judge, read);
criterion_main!(benches);
