//! One journey: the trajectories of one directed flow in one window,
//! turned into ordered hops, per-hop delays and per-segment loss.

use std::collections::HashMap;

use serde::Serialize;

use crate::clock::{ClockOffset, DelayKind};
use crate::key::FlowTuple;
use crate::loss::{poisson_upper, wilson_interval};
use crate::observe::Observation;

/// What the journey builder knows beyond the trajectories themselves.
#[derive(Debug)]
pub(crate) struct Context<'a> {
    pub offsets: &'a HashMap<u64, ClockOffset>,
    /// Fraction of each point's reports lost as telemetry (sequence gaps of
    /// its exporter) in the window.
    pub telemetry_rate: &'a HashMap<u64, f64>,
    pub names: &'a HashMap<u64, String>,
    /// Configured path order of points, where TTL and time cannot tell.
    pub topology_rank: &'a HashMap<u64, usize>,
}

/// A flow followed across observation points in one window.
#[derive(Debug, Clone, Serialize)]
pub struct Journey {
    pub tuple: FlowTuple,
    pub ip_version: u8,
    pub community_id: String,
    pub first_ns: i64,
    pub last_ns: i64,
    pub hops: Vec<Hop>,
    /// Between consecutive hops: `segments[i]` joins `hops[i]` and `hops[i + 1]`.
    pub segments: Vec<Segment>,
    pub end_to_end: Option<DelayStats>,
    /// What the end-to-end delay rests on (as a segment's `delay_kind`).
    pub end_to_end_kind: &'static str,
    pub end_to_end_bound_ns: Option<u64>,
    /// Selected packets seen at the first hop, their IP octets, and those seen at the last.
    pub packets: u64,
    pub bytes: u64,
    pub delivered: u64,
    /// Selected packets lost in the network, summed over segments.
    pub lost: u64,
    /// Reports missing because of telemetry loss (seen downstream but not
    /// here, or explained by exporters' sequence gaps).
    pub telemetry_lost: u64,
    pub nat: Vec<NatTranslation>,
    pub flags: Vec<JourneyFlag>,
}

/// What a journey's figures rest on, or what to be careful of in them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JourneyFlag {
    /// Figures from flow records' totals, not from packet reports.
    FlowTotals,
    /// A clock offset on the path is unknown: delays are variations only.
    OffsetsUnknown,
    /// A clock offset on the path was estimated from traffic.
    OffsetsEstimated,
    /// A delay came out negative (clocks off by more than their bound).
    NegativeDelay,
    /// A hop has several points (parallel paths).
    Ecmp,
    /// Telemetry was lost on the way: some reports never arrived.
    TelemetryLoss,
    /// Addresses were translated on the way.
    Nat,
    /// A point downstream counted more packets than one upstream.
    Duplicates,
}

impl JourneyFlag {
    /// As the `flags` column and the API write it.
    pub fn as_str(self) -> &'static str {
        match self {
            JourneyFlag::FlowTotals => "flow-totals",
            JourneyFlag::OffsetsUnknown => "offsets-unknown",
            JourneyFlag::OffsetsEstimated => "offsets-estimated",
            JourneyFlag::NegativeDelay => "negative-delay",
            JourneyFlag::Ecmp => "ecmp",
            JourneyFlag::TelemetryLoss => "telemetry-loss",
            JourneyFlag::Nat => "nat",
            JourneyFlag::Duplicates => "duplicates",
        }
    }
}

impl Serialize for JourneyFlag {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Journey {
    /// The basis of its figures, as the segments table and pooled
    /// segments name it.
    pub fn basis(&self) -> &'static str {
        if self.flags.contains(&JourneyFlag::FlowTotals) {
            FLOW_TOTALS_BASIS
        } else {
            PACKETS_BASIS
        }
    }
}

/// The basis of journeys built from packet reports.
pub const PACKETS_BASIS: &str = "packets";
/// The basis of journeys built from flow records' totals.
pub const FLOW_TOTALS_BASIS: &str = "flow totals";

/// One position on the path; several points form an ECMP cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Hop {
    pub points: Vec<HopPoint>,
    /// Trajectories seen before and after this hop but not at it.
    pub telemetry_missing: u64,
}

/// An observation point's share of a hop.
#[derive(Debug, Clone, Serialize)]
pub struct HopPoint {
    pub point: u64,
    pub name: String,
    /// The node and interface, from a `node:interface` name.
    pub node: String,
    pub interface: String,
    pub first_ns: i64,
    pub last_ns: i64,
    pub packets: u64,
    pub bytes: u64,
    pub ttl_min: u8,
    pub ttl_max: u8,
    pub clock: Option<ClockOffset>,
}

/// From one hop to the next.
#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    pub from: String,
    pub to: String,
    /// One-way delay, or its variation above the minimum when the two
    /// clocks' offset is unknown (`delay_kind`).
    pub delay: Option<DelayStats>,
    /// `one-way` (one clock, or clocks kept within a stated bound),
    /// `estimated` (offsets from traffic, assuming symmetric minimum
    /// delays) or `variation` (offsets unknown); see [`DelayKind`].
    pub delay_kind: &'static str,
    /// Half-width of the interval the true delay lies in around each
    /// figure, from the clocks' bounds: for `estimated`, the asymmetry the
    /// data cannot rule out. None for `variation`.
    pub delay_bound_ns: Option<u64>,
    pub loss: LossEstimate,
}

/// Delay figures in nanoseconds; negative values are kept and counted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DelayStats {
    pub samples: u64,
    pub min_ns: i64,
    pub median_ns: i64,
    pub p95_ns: i64,
    pub max_ns: i64,
    pub negative: u64,
}

/// Network loss on a segment and what it rests on.
#[derive(Debug, Clone, Serialize)]
pub struct LossEstimate {
    /// Selected packets seen at the upstream hop.
    pub sent: u64,
    pub lost: u64,
    pub ratio: f64,
    /// 95 % interval of the ratio (Wilson).
    pub ratio_low: f64,
    pub ratio_high: f64,
    /// Packets last seen here that telemetry loss downstream explains.
    pub telemetry_explained: u64,
    pub evidence: String,
}

/// An address translation between two consecutive hops.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NatTranslation {
    /// The first hop that saw the translated tuple.
    pub at: String,
    pub before: FlowTuple,
    pub after: FlowTuple,
    pub packets: u64,
}

impl LossEstimate {
    /// `lost` of `sent`, with the ratio and its interval.
    pub(crate) fn new(sent: u64, lost: u64, telemetry_explained: u64, evidence: String) -> Self {
        let (ratio_low, ratio_high) = wilson_interval(lost, sent);
        LossEstimate {
            sent,
            lost,
            ratio: if sent > 0 {
                lost as f64 / sent as f64
            } else {
                0.0
            },
            ratio_low,
            ratio_high,
            telemetry_explained,
            evidence,
        }
    }
}

impl DelayStats {
    pub(crate) fn from_samples(mut v: Vec<i64>) -> Option<DelayStats> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Some(DelayStats {
            samples: v.len() as u64,
            min_ns: v[0],
            median_ns: at(0.5),
            p95_ns: at(0.95),
            max_ns: v[v.len() - 1],
            negative: v.iter().take_while(|&&d| d < 0).count() as u64,
        })
    }
}

/// Splits `node:interface` names; a plain name is the node.
pub(crate) fn node_and_interface(name: &str) -> (String, String) {
    match name.split_once(':') {
        Some((n, i)) => (n.to_string(), i.to_string()),
        None => (name.to_string(), String::new()),
    }
}

/// A point's name, or for a point never named `op-` and its observation
/// point id, the same everywhere (journeys of both bases, segments, CLI).
pub(crate) fn point_name(names: &HashMap<u64, String>, point: u64) -> String {
    names
        .get(&point)
        .cloned()
        .unwrap_or_else(|| format!("op-{point}"))
}

/// Builds the journey of `trajectories` (ranges into `obs`), all of the
/// directed flow `tuple` (the tuple at their first hop).
pub(crate) fn build(
    tuple: FlowTuple,
    address_space: u16,
    obs: &[Observation],
    trajectories: &[(u32, u32)],
    cx: &Context<'_>,
) -> Journey {
    // the points, and each observation's time on the reference clock
    let mut points: Vec<u64> = Vec::new();
    for &(s, e) in trajectories {
        for o in &obs[s as usize..e as usize] {
            if !points.contains(&o.point) {
                points.push(o.point);
            }
        }
    }
    points.sort_unstable();
    let index = |p: u64| points.binary_search(&p).expect("point listed");
    let n = points.len();
    // looked up once per point, not once per observation
    let offset_at: Vec<Option<ClockOffset>> =
        points.iter().map(|p| cx.offsets.get(p).copied()).collect();
    let rank_at: Vec<Option<usize>> = points
        .iter()
        .map(|p| cx.topology_rank.get(p).copied())
        .collect();
    let corrected = |o: &Observation| match &offset_at[index(o.point)] {
        Some(c) => c.correct(o.time_ns),
        None => o.time_ns,
    };

    // order: pairwise votes (TTL, then configured topology, then time)
    let mut votes = vec![0u32; n * n];
    // per observation of a trajectory: (point index, TTL, corrected time)
    let mut seen: Vec<(usize, u8, i64)> = Vec::new();
    for &(s, e) in trajectories {
        seen.clear();
        seen.extend(
            obs[s as usize..e as usize]
                .iter()
                .map(|o| (index(o.point), o.ttl, corrected(o))),
        );
        for (i, &(x, x_ttl, x_time)) in seen.iter().enumerate() {
            for &(y, y_ttl, y_time) in &seen[i + 1..] {
                let x_first = match x_ttl.cmp(&y_ttl) {
                    std::cmp::Ordering::Greater => true,
                    std::cmp::Ordering::Less => false,
                    std::cmp::Ordering::Equal => match (rank_at[x], rank_at[y]) {
                        (Some(a), Some(b)) if a != b => a < b,
                        _ => x_time <= y_time,
                    },
                };
                let (a, b) = if x_first { (x, y) } else { (y, x) };
                votes[a * n + b] += 1;
            }
        }
    }
    let before = |a: usize, b: usize| votes[a * n + b] > votes[b * n + a];
    let mut order: Vec<usize> = (0..n).collect();
    let score = |a: usize| -> i64 {
        (0..n)
            .map(|b| i64::from(before(a, b)) - i64::from(before(b, a)))
            .sum()
    };
    order.sort_by_cached_key(|&a| (std::cmp::Reverse(score(a)), points[a]));
    let mut level = vec![0usize; n];
    for (k, &x) in order.iter().enumerate() {
        level[x] = order[..k]
            .iter()
            .filter(|&&p| before(p, x))
            .map(|&p| level[p] + 1)
            .max()
            .unwrap_or(0);
    }
    let levels = level.iter().copied().max().unwrap_or(0) + 1;

    // per trajectory: the observation at each level
    // one row of `levels` cells per trajectory, in one allocation
    let mut at_level: Vec<Option<&Observation>> = vec![None; trajectories.len() * levels];
    for (row, &(s, e)) in at_level.chunks_mut(levels).zip(trajectories) {
        for o in &obs[s as usize..e as usize] {
            let l = level[index(o.point)];
            if row[l].is_none() {
                row[l] = Some(o);
            }
        }
    }

    // hops
    let mut hops: Vec<Hop> = (0..levels)
        .map(|_| Hop {
            points: Vec::new(),
            telemetry_missing: 0,
        })
        .collect();
    for &x in &order {
        let name = point_name(cx.names, points[x]);
        let (node, interface) = node_and_interface(&name);
        hops[level[x]].points.push(HopPoint {
            point: points[x],
            name,
            node,
            interface,
            first_ns: i64::MAX,
            last_ns: i64::MIN,
            packets: 0,
            bytes: 0,
            ttl_min: u8::MAX,
            ttl_max: 0,
            clock: cx.offsets.get(&points[x]).copied(),
        });
    }
    let mut spanning = vec![0u64; levels];
    for row in at_level.chunks(levels) {
        let first = row.iter().position(Option::is_some).expect("non-empty");
        let last = row.iter().rposition(Option::is_some).expect("non-empty");
        for (l, o) in row.iter().enumerate() {
            match o {
                Some(o) => {
                    let hp = hops[l]
                        .points
                        .iter_mut()
                        .find(|p| p.point == o.point)
                        .expect("point on its level");
                    hp.first_ns = hp.first_ns.min(o.time_ns);
                    hp.last_ns = hp.last_ns.max(o.time_ns);
                    hp.packets += 1;
                    hp.bytes += u64::from(o.length);
                    hp.ttl_min = hp.ttl_min.min(o.ttl);
                    hp.ttl_max = hp.ttl_max.max(o.ttl);
                }
                None if l > first && l < last => hops[l].telemetry_missing += 1,
                None => {}
            }
            if l > first && l < last {
                spanning[l] += 1;
            }
        }
    }
    // the chance that a report of a packet that passed hop j is missing
    let hop_rate: Vec<f64> = (0..levels)
        .map(|l| {
            let counted = hops[l]
                .points
                .iter()
                .map(|p| cx.telemetry_rate.get(&p.point).copied().unwrap_or(0.0))
                .fold(0.0, f64::max);
            let seen = if spanning[l] > 0 {
                hops[l].telemetry_missing as f64 / spanning[l] as f64
            } else {
                0.0
            };
            counted.max(seen)
        })
        .collect();

    // what a delay between two hops rests on: the weakest pair of clocks
    let kind_between = |a: &Hop, b: &Hop| -> (DelayKind, Option<u64>) {
        let mut kind = DelayKind::Measured;
        let mut bound = 0u64;
        for x in &a.points {
            for y in &b.points {
                let (Some(cx), Some(cy)) = (x.clock, y.clock) else {
                    return (DelayKind::Variation, None);
                };
                let k = cx.delay_kind(&cy);
                kind = kind.max(k);
                let b = match k {
                    DelayKind::Measured => cx.domain_bound_ns.max(cy.domain_bound_ns) as f64,
                    _ => cx.bound_ns.max(0.0) + cy.bound_ns.max(0.0),
                };
                bound = bound.max(b.round() as u64);
            }
        }
        match kind {
            DelayKind::Variation => (kind, None),
            _ => (kind, Some(bound)),
        }
    };
    // segments
    let mut flags: Vec<JourneyFlag> = Vec::new();
    let mut kinds: Vec<DelayKind> = Vec::new();
    let mut segments = Vec::with_capacity(levels.saturating_sub(1));
    let mut telemetry_lost: u64 = hops.iter().map(|h| h.telemetry_missing).sum();
    for i in 0..levels.saturating_sub(1) {
        let (kind, delay_bound_ns) = kind_between(&hops[i], &hops[i + 1]);
        kinds.push(kind);
        let mut sent = 0u64;
        let mut last_here = 0u64;
        let mut delays = Vec::new();
        for row in at_level.chunks(levels) {
            let Some(a) = row[i] else { continue };
            sent += 1;
            if row[i + 1..].iter().all(Option::is_none) {
                last_here += 1;
            }
            if let Some(b) = row[i + 1] {
                delays.push(corrected(b) - corrected(a));
            }
        }
        if kind == DelayKind::Variation
            && let Some(&min) = delays.iter().min()
        {
            delays.iter_mut().for_each(|d| *d -= min);
        }
        let downstream: f64 = hop_rate[i + 1..].iter().product();
        let expected = sent as f64 * downstream;
        let (lost, explained) = if last_here <= poisson_upper(expected) {
            (0, last_here)
        } else {
            let explained = (expected.round() as u64).min(last_here);
            (last_here - explained, explained)
        };
        telemetry_lost += explained;
        let from = hop_label(&hops[i]);
        let to = hop_label(&hops[i + 1]);
        let evidence = format!(
            "trajectories: {sent} selected packets seen at {from}, {last_here} not seen at {to} or after; \
             downstream telemetry loss explains {explained}"
        );
        segments.push(Segment {
            from,
            to,
            delay: DelayStats::from_samples(delays),
            delay_kind: kind.as_str(),
            delay_bound_ns,
            loss: LossEstimate::new(sent, lost, explained, evidence),
        });
    }

    // end to end, NAT, totals
    let mut e2e = Vec::new();
    let mut nat: Vec<NatTranslation> = Vec::new();
    for row in at_level.chunks(levels) {
        if let (Some(a), Some(b)) = (row[0], row[levels - 1]) {
            e2e.push(corrected(b) - corrected(a));
        }
        let mut prev: Option<&Observation> = None;
        for (l, o) in row.iter().enumerate() {
            let Some(o) = o else { continue };
            if let Some(p) = prev
                && p.tuple != o.tuple
            {
                let at = hop_label(&hops[l]);
                let known = nat
                    .iter()
                    .position(|t| t.at == at && t.before == p.tuple && t.after == o.tuple);
                match known {
                    Some(i) => nat[i].packets += 1,
                    None if nat.len() < 16 => nat.push(NatTranslation {
                        at,
                        before: p.tuple,
                        after: o.tuple,
                        packets: 1,
                    }),
                    None => {}
                }
            }
            prev = Some(o);
        }
    }
    let (e2e_kind, end_to_end_bound_ns) = kind_between(&hops[0], &hops[levels - 1]);
    kinds.push(e2e_kind);
    if e2e_kind == DelayKind::Variation
        && let Some(&min) = e2e.iter().min()
    {
        e2e.iter_mut().for_each(|d| *d -= min);
    }
    if kinds.contains(&DelayKind::Variation) {
        flags.push(JourneyFlag::OffsetsUnknown);
    }
    if kinds.contains(&DelayKind::Estimated) {
        flags.push(JourneyFlag::OffsetsEstimated);
    }
    let end_to_end = DelayStats::from_samples(e2e);
    if segments
        .iter()
        .filter_map(|s| s.delay)
        .chain(end_to_end)
        .any(|d| d.negative > 0)
    {
        flags.push(JourneyFlag::NegativeDelay);
    }
    if hops.iter().any(|h| h.points.len() > 1) {
        flags.push(JourneyFlag::Ecmp);
    }
    if telemetry_lost > 0 {
        flags.push(JourneyFlag::TelemetryLoss);
    }
    if !nat.is_empty() {
        flags.push(JourneyFlag::Nat);
    }
    let first_ns = hops
        .iter()
        .flat_map(|h| &h.points)
        .map(|p| p.first_ns)
        .min()
        .unwrap_or(0);
    let last_ns = hops
        .iter()
        .flat_map(|h| &h.points)
        .map(|p| p.last_ns)
        .max()
        .unwrap_or(0);
    Journey {
        tuple,
        ip_version: obs[trajectories[0].0 as usize].ip_version,
        community_id: tuple.community_id_seeded(address_space),
        first_ns,
        last_ns,
        packets: hops[0].points.iter().map(|p| p.packets).sum(),
        bytes: hops[0].points.iter().map(|p| p.bytes).sum(),
        delivered: hops[levels - 1].points.iter().map(|p| p.packets).sum(),
        lost: segments.iter().map(|s| s.loss.lost).sum(),
        telemetry_lost,
        hops,
        segments,
        end_to_end,
        end_to_end_kind: e2e_kind.as_str(),
        end_to_end_bound_ns,
        nat,
        flags,
    }
}

/// A hop's points by name, ECMP members joined by `|`.
pub(crate) fn hop_label(hop: &Hop) -> String {
    hop.points
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join("|")
}
