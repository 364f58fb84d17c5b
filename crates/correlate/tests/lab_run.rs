//! The recorded lab run (tests/data/lab-run-loss-r2): a real five-node path
//! with 1 % loss injected inside R2 and a capture on every interface. One
//! probe per capture, then the correlator must put the loss inside R2, with
//! the packets nftables counted (77 one way, 23 the other) inside its interval.

use std::path::Path;

use hopscope_correlate::{Correlator, CorrelatorConfig, Journey, summarize_segments};
use hopscope_probe::{
    CacheConfig, Meter, MeterConfig, PacketSource, PcapFileSource, SelectorConfig,
    observation_point_id,
};

const POINTS: [&str; 8] = [
    "a_a-r1", "r1_r1-a", "r1_r1-r2", "r2_r2-r1", "r2_r2-r3", "r3_r3-r2", "r3_r3-b", "b_b-r3",
];

fn journeys() -> Vec<Journey> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/lab-run-loss-r2");
    let mut correlator = Correlator::new(CorrelatorConfig {
        window_ns: 3_600_000_000_000,
        partitions: 2,
        ..CorrelatorConfig::default()
    });
    for file in POINTS {
        let name = file.replacen('_', ":", 1);
        let id = observation_point_id(&name);
        correlator.set_name(id, &name);
        let mut meter = Meter::new(MeterConfig {
            observation_point_id: id,
            domain: 0,
            cache: CacheConfig::default(),
            selection: Some(SelectorConfig::default()),
            decapsulate: true,
        });
        let mut source = PcapFileSource::open(&dir.join(format!("{file}.pcap"))).unwrap();
        while let Some(frame) = source.next_frame() {
            meter.observe(&frame.unwrap());
        }
        meter.finish();
        correlator
            .add_reports(&meter.take_reports().unwrap())
            .unwrap();
    }
    correlator.finish()
}

#[test]
fn the_loss_is_put_inside_r2_with_the_counted_packets_in_its_interval() {
    let journeys = journeys();
    let order: Vec<String> = POINTS.iter().map(|p| p.replacen('_', ":", 1)).collect();
    let path_of =
        |j: &Journey| -> Vec<String> { j.hops.iter().map(|h| h.points[0].name.clone()).collect() };
    let mut reverse_order = order.clone();
    reverse_order.reverse();
    let (mut ab, mut ba) = (Vec::new(), Vec::new());
    for j in &journeys {
        let p = path_of(j);
        // short flows (ARP-less ICMPv6 chatter) may not cross every point
        if p == order {
            ab.push(j.clone());
        } else if p == reverse_order {
            ba.push(j.clone());
        }
    }
    for (direction, js, counted, sent) in [("A->B", &ab, 77u64, 6851u64), ("B->A", &ba, 23, 1934)] {
        let segments = summarize_segments(js).segments;
        let worst = &segments[0];
        assert_eq!(
            (worst.from.as_str(), worst.to.as_str()),
            if direction == "A->B" {
                ("r2:r2-r1", "r2:r2-r3")
            } else {
                ("r2:r2-r3", "r2:r2-r1")
            },
            "{direction}: {segments:#?}"
        );
        // the counted drops include the only packet of two one-packet flows
        // (SYNs) that no point after R2 ever saw: their journeys end at R2
        // and cannot name a next hop, so they are not on this segment
        assert!(
            worst.loss.lost <= counted && worst.loss.lost + 2 >= counted,
            "{direction}: {} lost, {counted} counted",
            worst.loss.lost
        );
        assert!(
            worst.loss.sent <= sent && worst.loss.sent + 10 >= sent,
            "{direction}: sent {}",
            worst.loss.sent
        );
        let truth = counted as f64 / sent as f64;
        assert!(
            worst.loss.ratio_low <= truth && truth <= worst.loss.ratio_high,
            "{direction}: {truth} outside [{}, {}]",
            worst.loss.ratio_low,
            worst.loss.ratio_high
        );
        let elsewhere: u64 = segments[1..].iter().map(|s| s.loss.lost).sum();
        assert_eq!(elsewhere, 0, "{direction}: no loss anywhere else");
    }
}
