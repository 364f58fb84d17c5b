//! Loss from whole-flow totals, held to the simulator's truth: every packet
//! lost on a link is missing from the downstream point's flow records, and
//! a NAT's session events join the records of both its sides.

use std::collections::HashMap;

use hopscope_correlate::{Correlator, CorrelatorConfig, Journey, summarize_segments};
use hopscope_probe::SelectorConfig;
use hopscope_simulate::{Run, Scenario, nat_event_batch, probe_reports, simulate};

fn totals_journeys(run: &Run, nat_events: bool) -> Vec<Journey> {
    let mut c = Correlator::new(CorrelatorConfig {
        partitions: 2,
        ..CorrelatorConfig::default()
    });
    if nat_events {
        c.add_flows(&nat_event_batch(&run.nat_bindings).unwrap())
            .unwrap();
    }
    for p in probe_reports(run, SelectorConfig::default(), 5) {
        c.set_name(p.point, &p.name);
        c.add_flows(&p.flows).unwrap();
    }
    c.finish()
        .into_iter()
        .filter(|j| j.flags.contains(&"flow-totals"))
        .collect()
}

/// Lost per (from, to) over the journeys.
fn lost_by_segment(journeys: &[Journey]) -> HashMap<(String, String), (u64, u64)> {
    summarize_segments(journeys)
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
        assert!(j.flags.contains(&"nat"));
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
