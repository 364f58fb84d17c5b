//! What makes the correlator partitionable and replayable: the journeys
//! depend on the input, not on how fast it arrives (the event-time
//! watermark), nor on how it is split by flow key over instances.

use hopscope_correlate::{
    ClockDomain, Correlator, CorrelatorConfig, Journey, Observation, Watermark, read_reports,
};
use hopscope_probe::{Profile, SelectorConfig};
use hopscope_simulate::{Run, Scenario, probe_reports, simulate};

const S: i64 = 1_000_000_000;
/// The collector commits every 5 s.
const FLUSH_NS: i64 = 5 * S;

/// One point's reports as the collector receives them: each probe exports
/// with a delay of its own, so that the reports of one packet arrive in
/// different flushes.
struct Received {
    observation: Observation,
    received_ns: i64,
}

fn lossy_chain() -> (Scenario, Run) {
    let mut s = Scenario::chain(23);
    s.traffic.flows = 40;
    s.traffic.packets_per_flow = 200;
    s.duration_ms = 60_000;
    s.links[2].loss = 0.03;
    let run = simulate(&s).unwrap();
    (s, run)
}

/// Every report of the run, with its receive time, in receive order.
fn received(run: &Run, s: &Scenario) -> Vec<Received> {
    let selection = SelectorConfig {
        profile: Profile::NatFree,
        ..SelectorConfig::default()
    };
    let mut out = Vec::new();
    for (i, pr) in probe_reports(run, selection, s.seed)
        .into_iter()
        .enumerate()
    {
        let mut obs = Vec::new();
        read_reports(&pr.reports, &mut obs).unwrap();
        let export_delay = (i as i64 % 4) * 1_300_000_000 + 200_000_000;
        out.extend(obs.into_iter().map(|o| Received {
            received_ns: o.time_ns + export_delay,
            observation: o,
        }));
    }
    out.sort_by_key(|r| r.received_ns);
    out
}

/// The flushes a collector commits: reports by flush interval of receive
/// time, each flush with its watermark (its newest receive time).
fn flushes(received: &[Received]) -> Vec<(i64, Vec<Observation>)> {
    let mut out: Vec<(i64, Vec<Observation>)> = Vec::new();
    for r in received {
        let flush = r.received_ns.div_euclid(FLUSH_NS);
        match out.last_mut() {
            Some((w, obs)) if w.div_euclid(FLUSH_NS) == flush => {
                *w = r.received_ns;
                obs.push(r.observation);
            }
            _ => out.push((r.received_ns, vec![r.observation])),
        }
    }
    out
}

fn correlator(run: &Run) -> Correlator {
    // offsets known: no estimation, so that instances share no clock state
    let mut config = CorrelatorConfig::default();
    for p in &run.truth.points {
        config.clock_domains.insert(
            p.id,
            ClockDomain {
                offset_ns: p.offset_at_start_ns.round() as i64,
                ..ClockDomain::shared(0, 0)
            },
        );
        config.names.insert(p.id, p.name.clone());
    }
    Correlator::new(config)
}

/// Journeys in one order whatever produced them, as comparable text.
fn canonical(mut journeys: Vec<Journey>) -> Vec<String> {
    journeys.sort_by_key(|j| (j.first_ns, j.tuple));
    journeys
        .iter()
        .map(|j| serde_json::to_string(j).unwrap())
        .collect()
}

/// Feeds the flushes as fast as they can be taken: the wall clock stands
/// still (or, with `wall_clock`, is far past the data, as it is for a
/// replay of yesterday's capture).
fn as_fast_as_possible(
    run: &Run,
    flushes: &[(i64, Vec<Observation>)],
    wall_clock: bool,
) -> Vec<Journey> {
    let mut c = correlator(run);
    let mut watermark = Watermark::new(10 * S);
    let wall = flushes.last().unwrap().0 + 86_400 * S;
    let mut out = Vec::new();
    for (_, obs) in flushes {
        c.add_observations(obs.iter().copied());
        watermark.input(c.event_time_ns(), wall);
        out.extend(c.advance(if wall_clock { wall } else { watermark.at(wall) }));
    }
    out.extend(c.finish());
    out
}

/// Feeds each flush when the wall clock reaches its end, ticking every
/// second in between and for two minutes after the last, as `serve` does.
fn in_real_time(run: &Run, flushes: &[(i64, Vec<Observation>)]) -> Vec<Journey> {
    let mut c = correlator(run);
    let mut watermark = Watermark::new(10 * S);
    let mut out = Vec::new();
    let mut next = flushes.iter().peekable();
    let first = flushes[0].0.div_euclid(FLUSH_NS) * FLUSH_NS;
    let last = flushes.last().unwrap().0 + 120 * S;
    let mut wall = first;
    while wall <= last {
        while let Some((_, obs)) =
            next.next_if(|(n, _)| (n.div_euclid(FLUSH_NS) + 1) * FLUSH_NS <= wall)
        {
            c.add_observations(obs.iter().copied());
            watermark.input(c.event_time_ns(), wall);
        }
        out.extend(c.advance(watermark.at(wall)));
        wall += S;
    }
    assert!(next.next().is_none());
    out.extend(c.finish());
    out
}

#[test]
fn a_fast_replay_gives_the_journeys_of_real_time() {
    let (s, run) = lossy_chain();
    let flushes = flushes(&received(&run, &s));
    assert!(flushes.len() > 10, "the reports span many flushes");
    let live = canonical(in_real_time(&run, &flushes));
    assert!(live.len() >= 40, "{} journeys", live.len());
    assert_eq!(canonical(as_fast_as_possible(&run, &flushes, false)), live);
    // with the wall clock as its watermark, a fast replay loses matches:
    // what the event-time watermark is for
    assert_ne!(canonical(as_fast_as_possible(&run, &flushes, true)), live);
}

#[test]
fn journeys_split_by_flow_key_over_two_correlators_are_those_of_one() {
    let (s, run) = lossy_chain();
    let received = received(&run, &s);
    let mut one = correlator(&run);
    one.add_observations(received.iter().map(|r| r.observation));
    let whole = canonical(one.finish());
    assert!(whole.len() >= 40);

    let mut parts = [correlator(&run), correlator(&run)];
    let mut sizes = [0; 2];
    for r in &received {
        // both directions of a flow, at every point, on one instance
        let part = r.observation.tuple.canonical(0).0.partition(parts.len());
        parts[part].add_observations([r.observation]);
        sizes[part] += 1;
    }
    assert!(
        sizes.iter().all(|&n| n > received.len() / 5),
        "both instances work: {sizes:?}"
    );
    let split: Vec<Journey> = parts.iter_mut().flat_map(|c| c.finish()).collect();
    assert_eq!(canonical(split), whole);
}
