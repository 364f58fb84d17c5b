//! The correlator held to the simulator's ground truth (issue 5's targets):
//! path order, per-hop delay, clock offsets, loss placement with its
//! interval, ECMP, NAT, and telemetry loss never reported as network loss.

use std::collections::HashMap;

use hopscope_correlate::{
    ClockDomain, Correlator, CorrelatorConfig, Journey, JourneyFlag, read_reports,
    summarize_segments,
};
use hopscope_probe::{Profile, SelectorConfig};
use hopscope_simulate::{Run, Scenario, probe_reports, simulate};

struct Setup {
    selected: u32,
    population: u32,
    profile: Profile,
    /// Give the correlator the true offsets instead of estimating them.
    offsets_known: bool,
}

const ALL: Setup = Setup {
    selected: 1,
    population: 1,
    profile: Profile::NatFree,
    offsets_known: true,
};

fn correlate(run: &Run, setup: &Setup, scenario: &Scenario) -> Vec<Journey> {
    let selection = SelectorConfig {
        selected: setup.selected,
        population: setup.population,
        profile: setup.profile,
        ..SelectorConfig::default()
    };
    let reports = probe_reports(run, selection, scenario.seed);
    let mut config = CorrelatorConfig {
        window_ns: 60_000_000_000,
        partitions: 2,
        ..CorrelatorConfig::default()
    };
    if setup.offsets_known {
        for p in &run.truth.points {
            config.clock_domains.insert(
                p.id,
                ClockDomain {
                    offset_ns: p.offset_at_start_ns.round() as i64,
                    ..ClockDomain::shared(0, 0)
                },
            );
        }
    }
    let mut c = Correlator::new(config);
    for pr in &reports {
        c.set_name(pr.point, &pr.name);
        // each simulated probe is its own exporter
        let mut exporter = [0u8; 16];
        exporter[..8].copy_from_slice(&pr.point.to_be_bytes());
        let mut obs = Vec::new();
        read_reports(&pr.reports, &mut obs).unwrap();
        for o in &mut obs {
            o.exporter = (exporter, 0);
        }
        c.add_observations(obs);
        c.add_telemetry(scenario.start_ns, (exporter, 0), pr.lost_reports);
    }
    c.finish()
}

fn names(s: &Scenario) -> Vec<String> {
    s.hops
        .iter()
        .map(|h| {
            h.points
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

fn path(j: &Journey) -> Vec<String> {
    j.hops
        .iter()
        .map(|h| {
            let mut n: Vec<&str> = h.points.iter().map(|p| p.name.as_str()).collect();
            n.sort_unstable();
            n.join("|")
        })
        .collect()
}

fn forward<'a>(journeys: &'a [Journey], s: &Scenario) -> Vec<&'a Journey> {
    let first = &names(s)[0];
    journeys.iter().filter(|j| &path(j)[0] == first).collect()
}

fn median(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    v[v.len() / 2]
}

#[test]
fn path_order_and_per_hop_delay_match_the_truth() {
    let mut s = Scenario::chain(11);
    s.traffic.flows = 4;
    s.traffic.packets_per_flow = 3000;
    let run = simulate(&s).unwrap();
    let journeys = correlate(&run, &ALL, &s);
    let expected = names(&s);
    let mut reversed = expected.clone();
    reversed.reverse();
    assert_eq!(journeys.len(), 8, "one journey per flow and direction");
    for j in &journeys {
        let p = path(j);
        assert!(p == expected || p == reversed, "path {p:?}");
        assert!(
            j.flags.contains(&JourneyFlag::OffsetsEstimated)
                || !j.flags.contains(&JourneyFlag::OffsetsUnknown)
        );
    }
    for (k, truth) in run.truth.forward.iter().enumerate() {
        let true_median = median(truth.delays_ns.clone());
        let measured = median(
            forward(&journeys, &s)
                .iter()
                .map(|j| j.segments[k].delay.unwrap().median_ns)
                .collect(),
        );
        let tolerance = (true_median as f64 * 0.02).max(20_000.0);
        assert!(
            ((measured - true_median) as f64).abs() <= tolerance,
            "link {k}: measured median {measured} ns, true {true_median} ns"
        );
        let true_min = *truth.delays_ns.iter().min().unwrap();
        let measured_min = forward(&journeys, &s)
            .iter()
            .map(|j| j.segments[k].delay.unwrap().min_ns)
            .min()
            .unwrap();
        assert!((measured_min - true_min).abs() <= 1_000, "link {k} minimum");
    }
}

#[test]
fn clock_offsets_and_drift_are_estimated_within_50_microseconds() {
    let mut s = Scenario::chain(12);
    s.traffic.flows = 50;
    s.traffic.packets_per_flow = 200;
    for (i, hop) in s.hops.iter_mut().enumerate() {
        let p = &mut hop.points[0];
        // r1 exact, r2 3 ms ahead, r3 1.5 ms behind and drifting 20 ppm
        (p.clock_offset_us, p.drift_ppm) = match i / 2 {
            0 => (0.0, 0.0),
            1 => (3_000.0, 0.0),
            _ => (-1_500.0, 20.0),
        };
    }
    let run = simulate(&s).unwrap();
    let journeys = correlate(
        &run,
        &Setup {
            offsets_known: false,
            ..ALL
        },
        &s,
    );
    let j = forward(&journeys, &s)[0];
    assert!(
        j.flags.contains(&JourneyFlag::OffsetsEstimated),
        "{:?}",
        j.flags
    );
    let truth: HashMap<&str, (f64, f64)> = run
        .truth
        .points
        .iter()
        .map(|p| (p.name.as_str(), (p.offset_at_start_ns, p.drift_ppm)))
        .collect();
    let true_at = |name: &str, t: i64| {
        let (o, d) = truth[name];
        o + d * 1e-6 * (t - s.start_ns) as f64
    };
    let reference = &j.hops[0].points[0];
    for t in [s.start_ns + 1_000_000_000, s.start_ns + 9_000_000_000] {
        for hop in &j.hops {
            let p = &hop.points[0];
            let estimated = p.clock.unwrap().at(t) - reference.clock.unwrap().at(t);
            let actual = true_at(&p.name, t) - true_at(&reference.name, t);
            assert!(
                (estimated - actual).abs() <= 50_000.0,
                "{} at +{} s: estimated {estimated:.0} ns, true {actual:.0} ns",
                p.name,
                (t - s.start_ns) / 1_000_000_000
            );
        }
    }
    // with offsets corrected, one-way delays come out positive
    assert!(
        !j.flags.contains(&JourneyFlag::NegativeDelay),
        "{:?}",
        j.flags
    );
}

#[test]
fn loss_is_placed_on_the_right_segment_with_the_truth_inside_its_interval() {
    let scenarios = 20;
    let (mut placed, mut inside) = (0, 0);
    for seed in 1..=scenarios {
        let mut s = Scenario::chain(100 + seed);
        s.traffic.flows = 170;
        s.traffic.packets_per_flow = 60; // 10,200 packets each way
        let link = (seed % 5) as usize;
        s.links[link].loss = 0.005 + 0.0075 * (seed % 3) as f64;
        let run = simulate(&s).unwrap();
        let journeys = correlate(
            &run,
            &Setup {
                selected: 1,
                population: 2,
                ..ALL
            },
            &s,
        );
        let fwd: Vec<Journey> = forward(&journeys, &s).into_iter().cloned().collect();
        let segments = summarize_segments(&fwd).segments;
        let worst = &segments[0];
        let n = names(&s);
        if worst.from == n[link] && worst.to == n[link + 1] {
            placed += 1;
        }
        let t = &run.truth.forward[link];
        let ratio = t.lost as f64 / t.sent as f64;
        if (worst.loss.ratio_low..=worst.loss.ratio_high).contains(&ratio) {
            inside += 1;
        }
        // the other segments carry (almost) nothing
        let elsewhere: u64 = segments[1..].iter().map(|s| s.loss.lost).sum();
        assert!(elsewhere <= 2, "seed {seed}: {elsewhere} lost elsewhere");
    }
    assert!(
        placed * 100 >= scenarios * 95,
        "placed right in {placed}/{scenarios}"
    );
    assert!(
        inside * 100 >= scenarios * 95,
        "truth inside the interval in {inside}/{scenarios}"
    );
}

#[test]
fn telemetry_loss_alone_is_never_network_loss() {
    let mut s = Scenario::chain(21);
    for hop in &mut s.hops {
        hop.points[0].telemetry_loss = 0.03;
    }
    let run = simulate(&s).unwrap();
    let journeys = correlate(&run, &ALL, &s);
    let lost: u64 = journeys.iter().map(|j| j.lost).sum();
    let telemetry: u64 = journeys.iter().map(|j| j.telemetry_lost).sum();
    assert_eq!(
        lost, 0,
        "network loss reported where only telemetry was lost"
    );
    assert!(telemetry > 0);
}

#[test]
fn ecmp_members_form_one_hop_and_loss_uses_their_sum() {
    let mut s = Scenario::diamond(31);
    s.links[1].loss = 0.01;
    let run = simulate(&s).unwrap();
    let journeys = correlate(&run, &ALL, &s);
    let fwd = forward(&journeys, &s);
    assert!(!fwd.is_empty());
    for j in &fwd {
        assert_eq!(j.hops.len(), 3, "{:?}", path(j));
        assert_eq!(j.hops[1].points.len(), 1, "a flow takes one member");
    }
    let members: std::collections::HashSet<String> =
        fwd.iter().map(|j| path(j)[1].clone()).collect();
    assert_eq!(members.len(), 2, "both members carry flows");
    let all: Vec<Journey> = fwd.into_iter().cloned().collect();
    let lost: u64 = summarize_segments(&all)
        .segments
        .iter()
        .filter(|s| s.to == "edge2:down")
        .map(|s| s.loss.lost)
        .sum();
    assert_eq!(lost, run.truth.forward[1].lost);
}

#[test]
fn journeys_cross_nat_with_the_translation_shown() {
    let s = Scenario::nat(41);
    let run = simulate(&s).unwrap();
    let journeys = correlate(
        &run,
        &Setup {
            profile: Profile::NatCrossing,
            ..ALL
        },
        &s,
    );
    let fwd = forward(&journeys, &s);
    assert_eq!(
        fwd.len(),
        s.traffic.flows as usize,
        "one journey per flow across the NAT"
    );
    for j in &fwd {
        assert_eq!(path(j), names(&s));
        assert_eq!(j.nat.len(), 1, "{:?}", j.nat);
        assert_eq!(j.nat[0].at, "r2:r2-r3");
        assert_eq!(
            j.nat[0].after.display().split(':').next(),
            Some("203.0.113.7")
        );
    }
}

#[test]
fn journeys_follow_packets_through_a_tunnel() {
    // R2 is an underlay router inside a GRE tunnel from R1 to R3: its probes
    // see the packets encapsulated; the tunnel profile hashes the inner packet
    let mut s = Scenario::tunnel(43);
    s.traffic.flows = 40;
    s.links[2].loss = 0.02;
    let run = simulate(&s).unwrap();
    // R2's captures hold GRE (IP protocol 47), R1's LAN side plain packets
    let protocol = |point: usize| run.captures[point].frames[0].data[14 + 9];
    assert_eq!(protocol(2), 47);
    assert_ne!(protocol(0), 47);
    let journeys = correlate(
        &run,
        &Setup {
            profile: Profile::Tunnel,
            ..ALL
        },
        &s,
    );
    let fwd: Vec<Journey> = forward(&journeys, &s).into_iter().cloned().collect();
    assert_eq!(fwd.len(), s.traffic.flows as usize, "one journey per flow");
    for j in &fwd {
        assert_eq!(path(j), names(&s), "path order exact through the tunnel");
    }
    let n = names(&s);
    let segments = summarize_segments(&fwd).segments;
    let worst = &segments[0];
    assert_eq!((&worst.from, &worst.to), (&n[2], &n[3]));
    assert_eq!(
        worst.loss.lost, run.truth.forward[2].lost,
        "every selected packet is followed"
    );
    assert!(segments[1..].iter().all(|s| s.loss.lost == 0));
}
