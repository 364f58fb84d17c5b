//! Hash-based selection is the same at every probe: the per-hop captures of a
//! real five-node path (tests/data/lab-run-loss-r2, 1 % loss at R2), each
//! through its own probe, select the same packets (the same digests) at
//! every point where no packet was lost, and downstream of the loss only
//! packets that upstream points also selected.

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use hopscope_probe::{
    CacheConfig, Meter, MeterConfig, PacketSource, PcapFileSource, SelectorConfig,
};
use hopscope_schema::format_addr;

/// Digests of the packets a probe at `point` selects, by direction, sorted.
fn selected(point: &str) -> BTreeMap<&'static str, Vec<u64>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../tests/data/lab-run-loss-r2/{point}.pcap"));
    let config = MeterConfig {
        observation_point_id: 1,
        domain: 0,
        cache: CacheConfig::default(),
        selection: Some(SelectorConfig {
            selected: 1,
            population: 8,
            ..SelectorConfig::default()
        }),
        decapsulate: true,
    };
    let mut meter = Meter::new(config);
    let mut source = PcapFileSource::open(&path).unwrap();
    while let Some(frame) = source.next_frame() {
        meter.observe(&frame.unwrap());
    }
    let reports = meter.take_reports().unwrap();
    let digests = reports
        .column_by_name("digest")
        .unwrap()
        .as_primitive::<UInt64Type>();
    let src = reports
        .column_by_name("src_addr")
        .unwrap()
        .as_fixed_size_binary();
    let dst = reports
        .column_by_name("dst_addr")
        .unwrap()
        .as_fixed_size_binary();
    // the end-to-end traffic only: each link also carries its own (neighbour discovery...)
    let is_a = |a: &[u8]| matches!(format_addr(a).as_str(), "198.18.1.2" | "2001:2:0:1::2");
    let is_b = |a: &[u8]| matches!(format_addr(a).as_str(), "198.18.2.2" | "2001:2:0:2::2");
    let mut out: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    for i in 0..reports.num_rows() {
        let direction = match (src.value(i), dst.value(i)) {
            (s, d) if is_a(s) && is_b(d) => "A->B",
            (s, d) if is_b(s) && is_a(d) => "B->A",
            _ => continue,
        };
        out.entry(direction).or_default().push(digests.value(i));
    }
    for v in out.values_mut() {
        v.sort_unstable();
    }
    out
}

#[test]
fn probes_on_a_path_select_the_same_packets() {
    let before_loss = ["a_a-r1", "r1_r1-a", "r1_r1-r2", "r2_r2-r1"];
    let after_loss = ["r2_r2-r3", "r3_r3-r2", "r3_r3-b", "b_b-r3"];
    let up: Vec<_> = before_loss.iter().map(|p| selected(p)).collect();
    let down: Vec<_> = after_loss.iter().map(|p| selected(p)).collect();
    // no loss between these points: identical selections, in both directions
    for (points, sets) in [(&before_loss, &up), (&after_loss, &down)] {
        for (p, s) in points.iter().zip(sets.iter()).skip(1) {
            for (direction, digests) in s {
                let first = &sets[0][direction];
                let only_here: Vec<_> = digests.iter().filter(|d| !first.contains(d)).collect();
                let only_there: Vec<_> = first.iter().filter(|d| !digests.contains(d)).collect();
                assert!(
                    digests == first,
                    "{p} {direction}: {} selected, {} at {}; {} only here, {} only there",
                    digests.len(),
                    first.len(),
                    points[0],
                    only_here.len(),
                    only_there.len()
                );
            }
        }
    }
    // across R2, which drops 1 % of what it forwards, both ways: everything
    // selected after R2 was selected before it, and the few that vanished are
    // about 1 % of the selected packets (a loose binomial bound)
    for (direction, before, after) in [("A->B", &up[0], &down[0]), ("B->A", &down[0], &up[0])] {
        let (before, after) = (&before[direction], &after[direction]);
        assert!(before.len() > 150, "{direction}: {} selected", before.len());
        let mut missing = before.clone();
        for d in after {
            let at = missing.binary_search(d).unwrap_or_else(|_| {
                panic!("{direction}: digest {d:#x} selected after R2 but not before")
            });
            missing.remove(at);
        }
        let lost = missing.len();
        assert!(
            lost < before.len() / 25 + 3,
            "{direction}: {lost} of {} selected packets lost at R2",
            before.len()
        );
    }
    assert!(
        up[0]["A->B"].len() > 700,
        "about one in eight of 6851 packets: {}",
        up[0]["A->B"].len()
    );
}
