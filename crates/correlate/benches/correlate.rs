//! Packet reports matched per second (issue 5's target: 2 million/s): one
//! window of reports from a six-point path, already decoded, through the
//! correlator (trajectories, clock offsets, journeys).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hopscope_correlate::{Correlator, CorrelatorConfig, FlowTuple, Observation};

/// `packets` selected packets of 2,000 flows, each seen at six points 50 µs
/// apart (TTL decremented every second point), half of them replies.
fn reports(packets: u64) -> Vec<Observation> {
    let t0 = 1_795_651_200_000_000_000i64;
    let mut out = Vec::with_capacity(packets as usize * 6);
    for k in 0..packets {
        let flow = (k % 2_000) as u32;
        let reply = k % 2 == 1;
        let mut tuple = FlowTuple {
            src: hopscope_schema::ipv4_mapped([10, 1, (flow >> 8) as u8, flow as u8]),
            dst: hopscope_schema::ipv4_mapped([10, 2, 0, 1]),
            src_port: 20_000 + flow as u16,
            dst_port: 443,
            proto: 6,
        };
        if reply {
            tuple = tuple.reversed();
        }
        let digest = k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let start = t0 + (k as i64) * 1_000;
        for hop in 0..6u64 {
            let at = if reply { 5 - hop } else { hop };
            out.push(Observation {
                point: 100 + at,
                exporter: ([0; 16], at as u32),
                time_ns: start + hop as i64 * 50_000 + (digest % 7_000) as i64,
                digest,
                ttl: 64 - (hop / 2) as u8,
                length: 100,
                ip_version: 4,
                tuple,
            });
        }
    }
    out
}

fn matching(c: &mut Criterion) {
    let obs = reports(200_000);
    let mut g = c.benchmark_group("correlate");
    g.sample_size(10);
    g.throughput(Throughput::Elements(obs.len() as u64));
    g.bench_function("reports_to_journeys", |b| {
        b.iter(|| {
            let mut c = Correlator::new(CorrelatorConfig {
                window_ns: 60_000_000_000,
                ..CorrelatorConfig::default()
            });
            c.add_observations(obs.iter().copied());
            let journeys = c.finish();
            assert_eq!(journeys.len(), 2_000, "one journey per flow");
            journeys
        })
    });
    g.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
