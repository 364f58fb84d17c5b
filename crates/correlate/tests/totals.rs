//! Loss from whole-flow totals, held to the simulator's truth: every packet
//! lost on a link is missing from the downstream point's flow records, and
//! a NAT's session events join the records of both its sides.

use std::collections::HashMap;

use hopscope_correlate::{
    Correlator, CorrelatorConfig, CorrelatorStats, Journey, JourneyFlag, summarize_segments,
};
use hopscope_probe::{Profile, SelectorConfig};
use hopscope_simulate::{Run, Scenario, nat_event_batch, probe_reports, simulate};

/// What the correlator is given besides the probes' flow records.
#[derive(Debug, Default, Clone, Copy)]
struct Feed {
    /// The NAT's session events.
    nat_events: bool,
    /// The probes' packet reports, selected under this profile.
    packets_under: Option<Profile>,
}

fn totals_journeys(run: &Run, nat_events: bool) -> Vec<Journey> {
    let feed = Feed {
        nat_events,
        ..Feed::default()
    };
    totals_run(run, feed, CorrelatorConfig::default()).0
}

fn totals_run(run: &Run, feed: Feed, config: CorrelatorConfig) -> (Vec<Journey>, CorrelatorStats) {
    let mut c = Correlator::new(CorrelatorConfig {
        partitions: 2,
        ..config
    });
    if feed.nat_events {
        c.add_flows(&nat_event_batch(&run.nat_bindings).unwrap())
            .unwrap();
    }
    let mut selection = SelectorConfig::default();
    if let Some(profile) = feed.packets_under {
        selection.profile = profile;
    }
    for p in probe_reports(run, selection, 5) {
        c.set_name(p.point, &p.name);
        if feed.packets_under.is_some() {
            c.add_reports(&p.reports).unwrap();
        }
        c.add_flows(&p.flows).unwrap();
    }
    let journeys = c
        .finish()
        .into_iter()
        .filter(|j| j.flags.contains(&JourneyFlag::FlowTotals))
        .collect();
    (journeys, c.stats)
}

/// Lost per (from, to) over the journeys.
fn lost_by_segment(journeys: &[Journey]) -> HashMap<(String, String), (u64, u64)> {
    summarize_segments(journeys)
        .segments
        .into_iter()
        .map(|s| ((s.from, s.to), (s.loss.lost, s.loss.sent)))
        .collect()
}

fn names(s: &Scenario) -> Vec<String> {
    s.hops.iter().map(|h| h.points[0].name.clone()).collect()
}

#[test]
fn totals_count_exactly_the_packets_a_link_lost() {
    let mut s = Scenario::chain(11);
    s.links[2].loss = 0.03;
    let run = simulate(&s).unwrap();
    let journeys = totals_journeys(&run, false);
    assert!(!journeys.is_empty());
    let names = names(&s);
    let by = lost_by_segment(&journeys);
    let forward = by[&(names[2].clone(), names[3].clone())];
    let reverse = by[&(names[3].clone(), names[2].clone())];
    assert_eq!(forward.0, run.truth.forward[2].lost);
    assert_eq!(reverse.0, run.truth.reverse[2].lost);
    assert_eq!(forward.1, run.truth.forward[2].sent);
    for ((from, to), (lost, _)) in &by {
        let lossy = [&names[2], &names[3]];
        if !(lossy.contains(&from) && lossy.contains(&to)) {
            assert_eq!(*lost, 0, "{from} > {to}");
        }
    }
    // every hop in path order, both ways
    let forward_path: Vec<&str> = names.iter().map(String::as_str).collect();
    assert!(journeys.iter().any(|j| {
        j.hops
            .iter()
            .map(|h| h.points[0].name.as_str())
            .collect::<Vec<_>>()
            == forward_path
    }));
}

#[test]
fn nat_events_join_the_records_of_both_sides() {
    let mut s = Scenario::nat(12);
    s.links[1].loss = 0.02;
    let run = simulate(&s).unwrap();
    assert!(!run.nat_bindings.is_empty());
    let names = names(&s);

    // without the events, no flow is followed across the NAT (link 2)
    let without = totals_journeys(&run, false);
    assert!(without.iter().all(|j| j.hops.len() < names.len()));

    let with = totals_journeys(&run, true);
    let whole: Vec<&Journey> = with
        .iter()
        .filter(|j| j.hops.len() == names.len())
        .collect();
    assert!(
        whole.len() >= s.traffic.flows as usize,
        "{} of {}",
        whole.len(),
        with.len()
    );
    for j in &whole {
        assert!(j.flags.contains(&JourneyFlag::Nat));
        assert_eq!(j.nat.len(), 1);
        // the translation shows where the tuple changed: across the NAT link
        let at = &j.nat[0].at;
        assert!(at == &names[3] || at == &names[2], "{at}");
    }
    let by = lost_by_segment(&with);
    assert_eq!(
        by[&(names[1].clone(), names[2].clone())].0,
        run.truth.forward[1].lost
    );
    assert_eq!(
        by[&(names[2].clone(), names[1].clone())].0,
        run.truth.reverse[1].lost
    );
}

/// A NAT that reports nothing (no events, no post-NAT fields), as Linux
/// masquerade behind hopscope's probes: the packets followed across it show
/// the translation, and the flow records of both sides join through it.
#[test]
fn translations_seen_in_packets_join_the_records_of_both_sides() {
    let mut s = Scenario::nat(14);
    s.links[1].loss = 0.02;
    let run = simulate(&s).unwrap();
    let names = names(&s);
    let feed = Feed {
        packets_under: Some(Profile::NatCrossing),
        ..Feed::default()
    };
    let (totals, _) = totals_run(&run, feed, CorrelatorConfig::default());
    let whole = totals
        .iter()
        .filter(|j| j.hops.len() == names.len())
        .count();
    assert!(
        whole >= s.traffic.flows as usize,
        "{whole} of {} flow-totals journeys cross the NAT",
        totals.len()
    );
    let by = lost_by_segment(&totals);
    assert_eq!(
        by[&(names[1].clone(), names[2].clone())].0,
        run.truth.forward[1].lost
    );
    assert_eq!(
        by[&(names[2].clone(), names[1].clone())].0,
        run.truth.reverse[1].lost
    );
}

/// With the buffer holding only the records of points known to share flows
/// (here from the first record on, and each point's records arriving all
/// at once: the worst order for learning), fewer flows become journeys,
/// and each that does is the journey the whole buffer gives.
#[test]
fn holding_only_shared_points_never_changes_a_journey() {
    let mut s = Scenario::chain(13);
    s.links[1].loss = 0.05;
    let run = simulate(&s).unwrap();
    let (all, _) = totals_run(&run, Feed::default(), CorrelatorConfig::default());
    let (gated, stats) = totals_run(
        &run,
        Feed::default(),
        CorrelatorConfig {
            hold_all_flow_records_below: 0,
            ..CorrelatorConfig::default()
        },
    );
    assert!(stats.flow_records_unshared > 0);
    assert!(
        !gated.is_empty() && gated.len() < all.len(),
        "{} of {}",
        gated.len(),
        all.len()
    );
    let summary = |j: &Journey| {
        let hops: Vec<String> = j.hops.iter().map(|h| h.points[0].name.clone()).collect();
        (j.tuple, j.first_ns, hops, j.packets, j.delivered, j.lost)
    };
    let whole: Vec<_> = all.iter().map(summary).collect();
    for j in &gated {
        assert!(whole.contains(&summary(j)), "{:?}", summary(j));
    }
}

/// Live, the watermark moves on a little at a time, and the records of
/// the two sides of a NAT, keyed apart before the packets showed the
/// translation, settle when the last record of the whole flow has had its
/// time: never one side before the other, which would cut the journey at
/// the NAT.
#[test]
fn both_sides_of_a_nat_settle_together_as_the_watermark_moves() {
    let mut s = Scenario::nat(14);
    s.links[1].loss = 0.02;
    let run = simulate(&s).unwrap();
    let names = names(&s);
    let selection = SelectorConfig {
        profile: Profile::NatCrossing,
        ..SelectorConfig::default()
    };
    let mut c = Correlator::new(CorrelatorConfig::default());
    for p in probe_reports(&run, selection, 5) {
        c.set_name(p.point, &p.name);
        c.add_reports(&p.reports).unwrap();
        c.add_flows(&p.flows).unwrap();
    }
    let step = 100_000_000;
    let mut watermark = c.event_time_ns() - 60_000_000_000;
    let mut totals = Vec::new();
    while c.pending() > 0 {
        watermark += step;
        totals.extend(
            c.advance(watermark)
                .into_iter()
                .filter(|j| j.flags.contains(&JourneyFlag::FlowTotals)),
        );
    }
    let cut = totals.iter().filter(|j| j.hops.len() < names.len()).count();
    assert!(
        cut == 0 && totals.len() >= s.traffic.flows as usize,
        "{cut} of {} flow-totals journeys cut short",
        totals.len()
    );
    let by = lost_by_segment(&totals);
    assert_eq!(
        by[&(names[1].clone(), names[2].clone())].0,
        run.truth.forward[1].lost
    );
}
