//! Capacity figures through the store trait, on rows whose answers are
//! known by hand.

use std::net::IpAddr;

use hopscope_schema::{
    COUNTER_SOURCE_SNMP, FlowBatchBuilder, FlowRecord, InterfaceCounterBuilder,
    InterfaceCounterRecord, ip_to_mapped,
};
use hopscope_store::{Backend, MemoryStore, Table};

use super::*;

const S: i64 = 1_000_000_000;
/// 2025-11-03, a Monday, midnight UTC: every range of the tests is past
/// (a range is cut at the present).
const MONDAY: i64 = 20_395 * DAY_NS;

fn exporter() -> IpAddr {
    "192.0.2.1".parse().unwrap()
}

/// SNMP readings of one interface at every sample boundary, whose rate in
/// each sample `k` is `rate(k)` bits per second.
fn snmp_rows(
    if_index: u32,
    samples: usize,
    speed: u64,
    rate: impl Fn(usize) -> (f64, f64),
) -> RecordBatch {
    let mut b = InterfaceCounterBuilder::with_capacity(samples + 1);
    let (mut inbound, mut outbound) = (0u64, 0u64);
    for k in 0..=samples {
        b.append(&InterfaceCounterRecord {
            time_received_ns: Some(MONDAY + k as i64 * SAMPLE_NS),
            sampler_address: Some(ip_to_mapped(exporter())),
            if_index: Some(if_index),
            if_speed: Some(speed),
            in_octets: Some(inbound),
            out_octets: Some(outbound),
            counter_source: Some(COUNTER_SOURCE_SNMP),
            ..InterfaceCounterRecord::default()
        });
        let (i, o) = rate(k);
        inbound += (i / 8.0 * 300.0).round() as u64;
        outbound += (o / 8.0 * 300.0).round() as u64;
    }
    b.finish().unwrap()
}

use arrow_array::RecordBatch;

fn settings(config: CapacityConfig) -> Settings {
    config.check().unwrap()
}

fn read(store: &MemoryStore, samples: usize, s: &Settings) -> Capacity {
    Capacity::read(
        store,
        MONDAY,
        MONDAY + samples as i64 * SAMPLE_NS,
        s,
        &Directory::new(),
    )
    .unwrap()
}

#[test]
fn billing_percentiles_are_those_counted_by_hand() {
    // 2000 samples, in = (k mod 100) Mb/s, out twice that: each value 20
    // times, so the 95th percentile is at rank 1900 of 2000: 94 Mb/s in,
    // 188 out
    let store = MemoryStore::default();
    let n = 2000;
    let rate = |k: usize| ((k % 100) as f64 * 1e6, (k % 100) as f64 * 2e6);
    store
        .write(
            Table::InterfaceCounters,
            &[snmp_rows(3, n, 1_000_000_000, rate)],
        )
        .unwrap();
    let s = settings(CapacityConfig::default());
    let c = read(&store, n, &s);
    let link = &c.report.links[0];
    assert_eq!(link.source, Source::Snmp);
    assert_eq!(link.inbound.samples, n);
    assert_eq!(link.inbound.percentile_bps.map(f64::round), Some(94e6));
    assert_eq!(link.outbound.percentile_bps.map(f64::round), Some(188e6));
    assert_eq!(link.billing_bps.map(f64::round), Some(188e6));
    assert_eq!(link.speed_bps, Some(1_000_000_000));
    assert_eq!(link.speed_source, Some("snmp"));
    let u = link.utilisation.unwrap();
    assert!((u - 0.188).abs() < 1e-9);
    assert!((link.headroom.unwrap() - (0.8 - 0.188)).abs() < 1e-9);
    // any percentile: the 50th is rank 1000, value 49
    let median = settings(CapacityConfig {
        percentile: 50.0,
        ..CapacityConfig::default()
    });
    let c = read(&store, n, &median);
    assert_eq!(
        c.report.links[0].inbound.percentile_bps.map(f64::round),
        Some(49e6)
    );
}

#[test]
fn a_group_sums_its_ports_per_sample_before_the_percentile() {
    // two ports whose traffic alternates: each alone bills 94 Mb/s, but
    // together they always carry 99 Mb/s
    let store = MemoryStore::default();
    let n = 2000;
    let a = |k: usize| ((k % 100) as f64 * 1e6, 0.0);
    let b = |k: usize| ((99 - k % 100) as f64 * 1e6, 0.0);
    store
        .write(
            Table::InterfaceCounters,
            &[snmp_rows(1, n, 1_000_000_000, a)],
        )
        .unwrap();
    store
        .write(
            Table::InterfaceCounters,
            &[snmp_rows(2, n, 1_000_000_000, b)],
        )
        .unwrap();
    let s = settings(CapacityConfig {
        groups: vec![PortGroup {
            name: "transit".into(),
            ports: vec![
                "192.0.2.1:1".into(),
                "192.0.2.1:2".into(),
                "192.0.2.1:9".into(),
            ],
        }],
        ..CapacityConfig::default()
    });
    let c = read(&store, n, &s);
    let g = &c.report.groups[0];
    assert_eq!(g.inbound.percentile_bps.map(f64::round), Some(99e6));
    assert_eq!(g.billing_bps.map(f64::round), Some(99e6));
    assert_eq!(g.speed_bps, Some(2_000_000_000));
    assert_eq!(g.missing, vec!["192.0.2.1:9".to_string()]);
    for l in &c.report.links {
        assert_eq!(l.billing_bps.map(f64::round), Some(94e6));
    }
}

#[test]
fn flows_with_a_wrong_sampling_rate_disagree_with_the_counters() {
    // one link's flows announce 1:100 and carry a hundredth of the
    // traffic (right); another's announce 1:10 for traffic sampled 1:100
    // (wrong): scaled, they show a tenth of what the counters count
    let store = MemoryStore::default();
    let n = 48;
    let rate = |_| (80e6, 40e6);
    store
        .write(
            Table::InterfaceCounters,
            &[snmp_rows(1, n, 1_000_000_000, rate)],
        )
        .unwrap();
    store
        .write(
            Table::InterfaceCounters,
            &[snmp_rows(2, n, 1_000_000_000, rate)],
        )
        .unwrap();
    let mut flows = FlowBatchBuilder::with_capacity(4 * n);
    for k in 0..n {
        for (if_index, announced) in [(1, 100), (2, 10)] {
            // 80 Mb/s over 300 s is 3 GB; the exporter saw a hundredth
            let seen = 3_000_000_000u64 / 100;
            flows.append(&FlowRecord {
                time_received_ns: Some(MONDAY + k as i64 * SAMPLE_NS + 10 * S),
                sampler_address: Some(ip_to_mapped(exporter())),
                in_if: Some(if_index),
                out_if: Some(7),
                bytes: Some(seen),
                packets: Some(seen / 1000),
                sampling_rate: Some(announced),
                sampling_rate_source: Some(1),
                ..FlowRecord::default()
            });
        }
    }
    store
        .write(Table::Flows, &[flows.finish().unwrap()])
        .unwrap();
    let c = read(&store, n, &settings(CapacityConfig::default()));
    let compare = |if_index: u32| {
        let link = c
            .report
            .links
            .iter()
            .find(|l| l.if_index == if_index)
            .unwrap();
        assert_eq!(link.sources, vec![Source::Snmp, Source::Flows]);
        link.comparisons
            .iter()
            .find(|x| x.direction == Direction::In && x.source == Source::Flows)
            .cloned()
            .unwrap()
    };
    let right = compare(1);
    assert!((right.ratio - 1.0).abs() < 1e-3, "{right:?}");
    assert!(!right.disagrees);
    let wrong = compare(2);
    assert!((wrong.ratio - 0.1).abs() < 1e-3, "{wrong:?}");
    assert!(wrong.disagrees);
    // the flows' own link (out_if 7) has flows only: its figures are theirs
    let out_link = c.report.links.iter().find(|l| l.if_index == 7).unwrap();
    assert_eq!(out_link.source, Source::Flows);
    assert_eq!(out_link.outbound.max_bps.map(f64::round), Some(88e6));
}

#[test]
fn a_growing_link_is_forecast_to_cross_when_its_trend_says() {
    // eight weeks; each day's busiest eight hours run at the day's level
    // (so the day's 95th percentile is that level), nights at 40 % of
    // it; levels grow 4 Mb/s a day from 400, weekdays 40 above, weekends
    // 60 below; the link is 1 Gb/s and full at 80 %
    let level = |day: i64| {
        let weekend = (day + 3).rem_euclid(7) >= 5;
        400e6 + 4e6 * (day - MONDAY / DAY_NS) as f64 + if weekend { -60e6 } else { 40e6 }
    };
    let per_day = (DAY_NS / SAMPLE_NS) as usize;
    let n = 56 * per_day;
    let rate = |k: usize| {
        let day = MONDAY / DAY_NS + (k / per_day) as i64;
        let busy = (120..216).contains(&(k % per_day));
        let v = level(day) * if busy { 1.0 } else { 0.4 };
        (v, v / 2.0)
    };
    let store = MemoryStore::default();
    store
        .write(
            Table::InterfaceCounters,
            &[snmp_rows(5, n, 1_000_000_000, rate)],
        )
        .unwrap();
    let s = settings(CapacityConfig::default());
    let c = read(&store, n, &s);
    let link = &c.report.links[0];
    let f = link.forecast.as_ref().expect("eight weeks give a forecast");
    assert!(
        (f.model.slope_per_day - 4e6).abs() < 1e3,
        "{}",
        f.model.slope_per_day
    );
    // weekday levels reach 800 Mb/s when 440 + 4 d ≥ 800: day 90
    let last = MONDAY / DAY_NS + 55;
    let truth = (last + 1..).find(|&d| level(d) >= 800e6).unwrap();
    let crossing = f.crossing.expect("within 90 days");
    assert_eq!(crossing.day, truth);
    assert_eq!(f.days_to_crossing, Some(truth - last));
    let alerts = forecast_alerts(&c.report, MONDAY + 56 * DAY_NS);
    assert_eq!(alerts.len(), 1);
    assert!(
        alerts[0].summary.contains("80 % of 1.0 Gb/s"),
        "{}",
        alerts[0].summary
    );
    // the detail has the samples and the forecast days to draw
    let detail = c
        .detail(
            LinkKey {
                exporter: exporter(),
                if_index: 5,
            },
            &s,
        )
        .unwrap();
    assert_eq!(detail.daily.len(), 56);
    assert_eq!(detail.forecast.len(), s.horizon_days as usize);
    assert_eq!(detail.series.len(), 2);
}

#[test]
fn settings_are_checked() {
    assert_eq!(parse_speed("10G"), Some(10_000_000_000));
    assert_eq!(parse_speed("2.5G"), Some(2_500_000_000));
    assert_eq!(parse_speed("100M"), Some(100_000_000));
    assert_eq!(parse_speed("fast"), None);
    let bad = CapacityConfig {
        threshold: 1.5,
        ..CapacityConfig::default()
    };
    assert!(bad.check().unwrap_err().to_string().contains("threshold"));
    let bad_port = CapacityConfig {
        groups: vec![PortGroup {
            name: "x".into(),
            ports: vec!["edge-1".into()],
        }],
        ..CapacityConfig::default()
    };
    assert!(bad_port.check().unwrap_err().to_string().contains("edge-1"));
    assert_eq!(
        parse_port("[2001:db8::1]:ge-0/0/1"),
        Some((
            "2001:db8::1".parse().unwrap(),
            PortRef::Name("ge-0/0/1".into())
        ))
    );
    // a configured speed wins over the polled one
    let store = MemoryStore::default();
    store
        .write(
            Table::InterfaceCounters,
            &[snmp_rows(4, 12, 1_000_000_000, |_| (1e6, 1e6))],
        )
        .unwrap();
    let s = settings(CapacityConfig {
        interfaces: vec![InterfaceSetting {
            exporter: exporter(),
            if_index: 4,
            name: Some("uplink".into()),
            speed: Some("10G".into()),
        }],
        ..CapacityConfig::default()
    });
    let c = read(&store, 12, &s);
    assert_eq!(c.report.links[0].speed_bps, Some(10_000_000_000));
    assert_eq!(c.report.links[0].speed_source, Some("configured"));
    assert_eq!(c.report.links[0].name.as_deref(), Some("uplink"));
}

#[test]
fn a_link_that_went_quiet_has_no_forecast_and_groups_need_every_port() {
    // eight weeks of samples, then two weeks of nothing: the trend of a
    // link silent for a fortnight says nothing of the weeks ahead
    let per_day = (DAY_NS / SAMPLE_NS) as usize;
    let store = MemoryStore::default();
    let n = 56 * per_day;
    store
        .write(
            Table::InterfaceCounters,
            &[snmp_rows(1, n, 1_000_000_000, |k| {
                (1e6 * (1 + k / per_day) as f64, 0.0)
            })],
        )
        .unwrap();
    let s = settings(CapacityConfig::default());
    let c = read(&store, n + 14 * per_day, &s);
    assert!(c.report.links[0].forecast.is_none());
    let c = read(&store, n, &s);
    assert!(c.report.links[0].forecast.is_some());
    // a second port with samples for the first half only: the group's
    // samples are those both ports have
    let store = MemoryStore::default();
    store
        .write(
            Table::InterfaceCounters,
            &[snmp_rows(1, 100, 1_000_000_000, |_| (10e6, 0.0))],
        )
        .unwrap();
    store
        .write(
            Table::InterfaceCounters,
            &[snmp_rows(2, 50, 1_000_000_000, |_| (5e6, 0.0))],
        )
        .unwrap();
    let s = settings(CapacityConfig {
        groups: vec![PortGroup {
            name: "pair".into(),
            ports: vec!["192.0.2.1:1".into(), "192.0.2.1:2".into()],
        }],
        ..CapacityConfig::default()
    });
    let c = read(&store, 100, &s);
    let g = &c.report.groups[0];
    assert_eq!(g.inbound.samples, 50);
    assert_eq!(g.inbound.max_bps.map(f64::round), Some(15e6));
}

#[test]
fn a_range_of_too_many_samples_is_refused() {
    let s = settings(CapacityConfig {
        sample: "1m".into(),
        ..CapacityConfig::default()
    });
    let store = MemoryStore::default();
    let e =
        Capacity::read(&store, MONDAY, MONDAY + 100 * DAY_NS, &s, &Directory::new()).unwrap_err();
    assert!(
        e.to_string().contains("a wider sample or a shorter range"),
        "{e}"
    );
}
