//! Clock offsets between observation points, from the packets they both saw.
//!
//! For two points a and b, a packet going a→b shows `t_b − t_a = d_ab + θ`
//! and one going b→a shows `t_b − t_a = θ − d_ba`, where θ is b's clock
//! minus a's and the delays are positive. The minimum of the first and the
//! maximum of the second bound θ from both sides; their midpoint is the NTP
//! estimate, exact when the minimum delays are symmetric, and half their
//! distance is its error bound (standards.md §6). Estimates are made per time
//! bucket, so a drifting clock shows as a slope.
//!
//! Which of a and b is upstream is known from the TTL when a router sits
//! between them; across a link (equal TTLs) it is known per flow from which
//! direction's differences are larger, whatever the offset.

use std::collections::HashMap;

use serde::Serialize;

use crate::key::CanonicalKey;
use crate::observe::Observation;

/// What a delay figure between two points rests on.
/// Ordered from the strongest: pooled figures take the weakest kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DelayKind {
    /// The two clocks are one (one host), or kept within a stated bound:
    /// a one-way delay.
    Measured,
    /// The offset between the clocks was estimated from packets seen both
    /// ways, assuming symmetric minimum delays: the split of the round trip
    /// between the two directions is an estimate, within its bound.
    Estimated,
    /// The offset is unknown: only the variation above the minimum.
    Variation,
}

impl DelayKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DelayKind::Measured => "one-way",
            DelayKind::Estimated => "estimated",
            DelayKind::Variation => "variation",
        }
    }

    /// The kind a stored figure says ([`DelayKind::as_str`]); anything
    /// else (no delay at all, a figure of an older version) is the weakest.
    pub fn parse(text: &str) -> Self {
        match text {
            "one-way" => DelayKind::Measured,
            "estimated" => DelayKind::Estimated,
            _ => DelayKind::Variation,
        }
    }
}

/// A point's clock relative to the journey's reference clock, valid around
/// `at_ns`: `offset(t) = offset_ns + drift × (t − at_ns)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClockOffset {
    pub at_ns: i64,
    pub offset_ns: f64,
    /// Nanoseconds gained per nanosecond (parts per million × 1e-6).
    pub drift: f64,
    /// Half-width of the interval the offset is known to lie in.
    pub bound_ns: f64,
    /// Estimated from traffic (false: the reference, or configured).
    pub estimated: bool,
    /// The declared clock domain the point reads, if any, and the most its
    /// clocks differ by.
    pub domain: Option<u64>,
    pub domain_bound_ns: u64,
    /// Offsets are relative to the reference of one tree of clocks joined
    /// by traffic; between trees they are unknown.
    pub tree: u32,
}

impl ClockOffset {
    pub fn known(offset_ns: i64) -> Self {
        Self {
            at_ns: 0,
            offset_ns: offset_ns as f64,
            drift: 0.0,
            bound_ns: 0.0,
            estimated: false,
            domain: None,
            domain_bound_ns: 0,
            tree: 0,
        }
    }

    /// What the delay between a point with this clock and one with `other`
    /// is: measured (one clock domain), estimated (offsets from traffic,
    /// within a bound) or unknown.
    pub fn delay_kind(&self, other: &ClockOffset) -> DelayKind {
        match (self.domain, other.domain) {
            (Some(a), Some(b)) if a == b => DelayKind::Measured,
            _ if self.tree == other.tree => DelayKind::Estimated,
            _ => DelayKind::Variation,
        }
    }

    pub fn at(&self, t_ns: i64) -> f64 {
        self.offset_ns + self.drift * (t_ns - self.at_ns) as f64
    }

    /// A time on this point's clock, on the reference clock.
    pub fn correct(&self, t_ns: i64) -> i64 {
        t_ns - self.at(t_ns).round() as i64
    }
}

#[derive(Debug, Default, Clone)]
struct Group {
    ttl_vote: i64,
    sum: i128,
    n: u64,
    /// (bucket, min, max) of `t_b − t_a`.
    buckets: Vec<(i64, i64, i64)>,
}

impl Group {
    fn widen(&mut self, bucket: i64, lo: i64, hi: i64) {
        // samples come mostly in time order: the newest bucket first
        let found = match self.buckets.last_mut() {
            Some(last) if last.0 == bucket => Some(last),
            _ => self.buckets.iter_mut().rev().find(|(k, _, _)| *k == bucket),
        };
        match found {
            Some((_, l, h)) => {
                *l = (*l).min(lo);
                *h = (*h).max(hi);
            }
            None => self.buckets.push((bucket, lo, hi)),
        }
    }
}

/// A flow's pairs of points (a, b) and what they saw.
type PairGroups = Vec<((u64, u64), Group)>;

/// One pair of one trajectory: `t_b − t_a` in its bucket, and which point
/// the TTL says came first.
struct Sample {
    pair: (u64, u64),
    d: i64,
    bucket: i64,
    vote: i64,
}

impl Sample {
    /// `hint`: where the pair was last time (trajectories of one flow list
    /// their points in the same order).
    fn add_to(&self, pairs: &mut PairGroups, hint: usize) {
        let at = match pairs.get(hint) {
            Some((p, _)) if *p == self.pair => Some(hint),
            _ => pairs.iter().position(|(p, _)| *p == self.pair),
        };
        let g = match at {
            Some(i) => &mut pairs[i].1,
            None => {
                pairs.push((self.pair, Group::default()));
                &mut pairs.last_mut().expect("just pushed").1
            }
        };
        g.ttl_vote += self.vote;
        g.sum += i128::from(self.d);
        g.n += 1;
        g.widen(self.bucket, self.d, self.d);
    }
}

/// Differences of observation times per pair of points, per flow and
/// direction, per time bucket: what the offset estimate is made from.
/// Partitions merge by taking minima and maxima, so workers can each
/// collect their keys.
#[derive(Debug, Default)]
pub(crate) struct ClockSamples {
    bucket_ns: i64,
    /// Per flow and direction, its pairs of points (a handful): one hash
    /// lookup per trajectory rather than one per pair.
    groups: FastMap<(CanonicalKey, bool), PairGroups>,
}

/// Keys here are points and flow keys, not attacker-chosen strings: a fast
/// hash (SipHash took a tenth of the correlator's time).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Most observations of one trajectory used for pairs (a path longer than
/// this still gets offsets through its first points' pairs).
const MAX_PAIRED: usize = 16;

impl ClockSamples {
    pub fn new(bucket_ns: i64) -> Self {
        Self {
            bucket_ns: bucket_ns.max(1),
            groups: FastMap::default(),
        }
    }

    /// Adds every pair of one trajectory's observations.
    pub fn add(&mut self, trajectory: &[Observation]) {
        let t = &trajectory[..trajectory.len().min(MAX_PAIRED)];
        // each observation's flow key once, not once per pair
        let mut keys = [(CanonicalKey::default(), false); MAX_PAIRED];
        for (k, o) in keys.iter_mut().zip(t) {
            *k = o.tuple.canonical(0);
        }
        let one_key = keys[..t.len()].iter().all(|k| *k == keys[0]);
        let mut flow = one_key.then(|| self.groups.entry(keys[0]).or_default());
        let mut others = Vec::new();
        let mut hint = 0;
        for (i, x) in t.iter().enumerate() {
            for (j, y) in t.iter().enumerate().skip(i + 1) {
                let (a, b, key) = if x.point < y.point {
                    (x, y, keys[i])
                } else {
                    (y, x, keys[j])
                };
                let sample = Sample {
                    pair: (a.point, b.point),
                    d: b.time_ns - a.time_ns,
                    bucket: a.time_ns.div_euclid(self.bucket_ns),
                    vote: (i64::from(a.ttl) - i64::from(b.ttl)).signum(),
                };
                match &mut flow {
                    Some(pairs) => sample.add_to(pairs, hint),
                    // across a NAT the flow key changes along the path
                    None => others.push((key, sample)),
                }
                hint += 1;
            }
        }
        for (key, sample) in others {
            sample.add_to(self.groups.entry(key).or_default(), 0);
        }
    }

    pub fn merge(&mut self, other: ClockSamples) {
        for (key, pairs) in other.groups {
            let mine = self.groups.entry(key).or_default();
            for (pair, g) in pairs {
                let m = match mine.iter().position(|(p, _)| *p == pair) {
                    Some(i) => &mut mine[i].1,
                    None => {
                        mine.push((pair, g));
                        continue;
                    }
                };
                m.ttl_vote += g.ttl_vote;
                m.sum += g.sum;
                m.n += g.n;
                for (bucket, lo, hi) in g.buckets {
                    m.widen(bucket, lo, hi);
                }
            }
        }
    }

    /// Every point of a pair.
    fn points(&self) -> Vec<u64> {
        let mut points: Vec<u64> = self
            .groups
            .values()
            .flatten()
            .flat_map(|((a, b), _)| [*a, *b])
            .collect();
        points.sort_unstable();
        points.dedup();
        points
    }

    /// θ (b's clock minus a's) for every pair seen in both directions.
    fn pair_estimates(&self) -> Vec<((u64, u64), ClockOffset)> {
        // per pair, per bucket: min of a→b differences, max of b→a differences
        let mut per_pair: HashMap<(u64, u64), HashMap<i64, (i64, i64)>> = HashMap::new();
        for (&(key, forward), pairs) in &self.groups {
            for (pair, g) in pairs {
                let reverse = || {
                    self.groups
                        .get(&(key, !forward))
                        .and_then(|v| v.iter().find(|(p, _)| p == pair))
                        .map(|(_, g)| g)
                };
                let a_upstream = if g.ttl_vote != 0 {
                    g.ttl_vote > 0
                } else if let Some(o) = reverse() {
                    g.sum * i128::from(o.n) > o.sum * i128::from(g.n)
                } else {
                    continue;
                };
                let up = per_pair.entry(*pair).or_default();
                for &(bucket, lo, hi) in &g.buckets {
                    let e = up.entry(bucket).or_insert((i64::MAX, i64::MIN));
                    if a_upstream {
                        e.0 = e.0.min(lo);
                    } else {
                        e.1 = e.1.max(hi);
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (pair, up) in per_pair {
            let (m1, m2) = up
                .values()
                .fold((i64::MAX, i64::MIN), |(a, b), &(x, y)| (a.min(x), b.max(y)));
            if m1 == i64::MAX || m2 == i64::MIN {
                continue;
            }
            let both: Vec<(f64, f64, f64)> = up
                .iter()
                .filter(|(_, (m1, m2))| *m1 != i64::MAX && *m2 != i64::MIN)
                .map(|(&bucket, &(m1, m2))| {
                    let mid = (bucket as f64 + 0.5) * self.bucket_ns as f64;
                    (
                        mid,
                        (m1 as f64 + m2 as f64) / 2.0,
                        (m1 as f64 - m2 as f64) / 2.0,
                    )
                })
                .collect();
            let times = both.iter().map(|p| p.0);
            let at = times.clone().sum::<f64>() / both.len().max(1) as f64;
            let span = times.clone().fold(f64::MIN, f64::max) - times.fold(f64::MAX, f64::min);
            // the whole window's extremes give the tightest estimate; a
            // drift is believed only where it moves the offset by more than
            // that estimate's own bound
            let whole = ClockOffset {
                at_ns: at as i64,
                offset_ns: (m1 as f64 + m2 as f64) / 2.0,
                drift: 0.0,
                bound_ns: (m1 as f64 - m2 as f64) / 2.0,
                estimated: true,
                ..ClockOffset::known(0)
            };
            let line = fit(&both);
            let chosen = if both.len() >= 3 && line.drift.abs() * span > whole.bound_ns.max(0.0) {
                line
            } else {
                whole
            };
            out.push((pair, chosen));
        }
        out.sort_by_key(|(pair, _)| *pair);
        out
    }
}

/// A line through per-bucket estimates (least squares) when there are
/// enough of them to see a drift, their mean otherwise.
fn fit(points: &[(f64, f64, f64)]) -> ClockOffset {
    let n = points.len() as f64;
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_o = points.iter().map(|p| p.1).sum::<f64>() / n;
    let bound = points.iter().map(|p| p.2).fold(f64::MIN, f64::max);
    let mut drift = 0.0;
    if points.len() >= 3 {
        let sxx: f64 = points.iter().map(|p| (p.0 - mean_t).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (p.0 - mean_t) * (p.1 - mean_o)).sum();
        if sxx > 0.0 {
            drift = sxy / sxx;
        }
    }
    ClockOffset {
        at_ns: mean_t as i64,
        offset_ns: mean_o,
        drift,
        bound_ns: bound,
        estimated: true,
        ..ClockOffset::known(0)
    }
}

/// A point's clock, as declared (`[[serve.clocks]]`) or announced by its
/// probe: points of one domain share a clock (one host's, or devices that
/// PTP or NTP keep within `bound_ns` of each other), so the delays between
/// them are measured; between domains, offsets are estimated from traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClockDomain {
    pub id: u64,
    /// Most two clocks of the domain differ by.
    pub bound_ns: u64,
    /// This point's clock minus the domain's, when known (0: the same clock).
    pub offset_ns: i64,
}

impl ClockDomain {
    pub fn shared(id: u64, bound_ns: u64) -> Self {
        Self {
            id,
            bound_ns,
            offset_ns: 0,
        }
    }
}

/// Which clock a point reads: a declared domain's, or its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Clock {
    Domain(u64),
    Own(u64),
}

fn clock_of(domains: &HashMap<u64, ClockDomain>, point: u64) -> Clock {
    domains
        .get(&point)
        .map_or(Clock::Own(point), |d| Clock::Domain(d.id))
}

/// Offsets of every point relative to one reference clock. Points of a
/// declared domain take their domain's offset (not estimated, up to its
/// bound); between clocks, offsets come from the pairs seen both ways, the
/// tightest first (Prim), anchored at the clock with the most pairs.
pub(crate) fn offsets(
    samples: &ClockSamples,
    domains: &HashMap<u64, ClockDomain>,
) -> HashMap<u64, ClockOffset> {
    // the point estimates, as estimates between clocks
    let mut pairs: Vec<((Clock, Clock), ClockOffset)> = samples
        .pair_estimates()
        .into_iter()
        .filter_map(|((a, b), theta)| {
            let (ca, cb) = (clock_of(domains, a), clock_of(domains, b));
            // b's clock minus a's, less what is known of each within its domain
            let within = |p: u64| domains.get(&p).map_or(0, |d| d.offset_ns) as f64;
            let theta = ClockOffset {
                offset_ns: theta.offset_ns - within(b) + within(a),
                ..theta
            };
            (ca != cb).then_some(((ca, cb), theta))
        })
        .collect();
    pairs.sort_by(|x, y| x.1.bound_ns.total_cmp(&y.1.bound_ns));
    let mut clocks: HashMap<Clock, ClockOffset> = HashMap::new();
    let mut declared: Vec<Clock> = domains.values().map(|d| Clock::Domain(d.id)).collect();
    declared.sort_unstable();
    declared.dedup();
    let mut trees = 0u32;
    loop {
        if let Some(((a, b), theta)) = next_pair(&pairs, &clocks) {
            let (from, to, sign) = if clocks.contains_key(&a) {
                (a, b, 1.0)
            } else {
                (b, a, -1.0)
            };
            let base = clocks[&from];
            let at = theta.at_ns;
            clocks.insert(
                to,
                ClockOffset {
                    at_ns: at,
                    offset_ns: base.at(at) + sign * theta.offset_ns,
                    drift: base.drift + sign * theta.drift,
                    bound_ns: base.bound_ns + theta.bound_ns,
                    estimated: true,
                    ..base
                },
            );
            continue;
        }
        // nothing joins the placed clocks to the others: a new tree, with
        // its own reference (offsets between trees are unknown), anchored
        // at the clock with the most pairs, or a declared domain
        let mut degree: HashMap<Clock, usize> = declared
            .iter()
            .filter(|c| !clocks.contains_key(c))
            .map(|&c| (c, 0))
            .collect();
        for ((a, b), _) in &pairs {
            for c in [a, b] {
                if !clocks.contains_key(c) {
                    *degree.entry(*c).or_default() += 1;
                }
            }
        }
        let Some((&anchor, _)) = degree
            .iter()
            .max_by_key(|(c, d)| (**d, std::cmp::Reverse(**c)))
        else {
            break;
        };
        clocks.insert(
            anchor,
            ClockOffset {
                tree: trees,
                ..ClockOffset::known(0)
            },
        );
        trees += 1;
    }
    // every point with a clock placed: its clock's offset, plus its own
    // within a domain
    let mut points: Vec<u64> = samples.points();
    points.extend(domains.keys());
    points
        .into_iter()
        .filter_map(|p| {
            let c = clocks.get(&clock_of(domains, p))?;
            let within = domains.get(&p);
            Some((
                p,
                ClockOffset {
                    offset_ns: c.offset_ns + within.map_or(0, |d| d.offset_ns) as f64,
                    bound_ns: c.bound_ns + within.map_or(0, |d| d.bound_ns) as f64,
                    domain: within.map(|d| d.id),
                    domain_bound_ns: within.map_or(0, |d| d.bound_ns),
                    ..*c
                },
            ))
        })
        .collect()
}

/// The tightest pair joining a placed clock to one not placed yet.
fn next_pair(
    pairs: &[((Clock, Clock), ClockOffset)],
    placed: &HashMap<Clock, ClockOffset>,
) -> Option<((Clock, Clock), ClockOffset)> {
    pairs
        .iter()
        .find(|((a, b), _)| placed.contains_key(a) != placed.contains_key(b))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::FlowTuple;

    fn obs(point: u64, time_ns: i64, ttl: u8, reverse: bool) -> Observation {
        let t = FlowTuple {
            src: [1; 16],
            dst: [2; 16],
            src_port: 1,
            dst_port: 2,
            proto: 17,
        };
        Observation {
            point,
            exporter: ([0; 16], 0),
            time_ns,
            digest: 0,
            ttl,
            length: 0,
            ip_version: 6,
            tuple: if reverse { t.reversed() } else { t },
        }
    }

    #[test]
    fn offset_from_both_directions_across_a_link() {
        // b's clock is 500 µs ahead; 100 µs each way at minimum; equal TTLs
        let mut s = ClockSamples::new(1_000_000_000);
        for i in 0..100i64 {
            let t = i * 1_000_000 + 7;
            let jitter = (i % 7) * 3_000;
            s.add(&[
                obs(1, t, 64, false),
                obs(2, t + 100_000 + jitter + 500_000, 64, false),
            ]);
            s.add(&[
                obs(2, t + 500_000, 64, true),
                obs(1, t + 100_000 + jitter, 64, true),
            ]);
        }
        let o = offsets(&s, &HashMap::new());
        let rel = o[&2].at(0) - o[&1].at(0);
        assert!((rel - 500_000.0).abs() < 1.0, "{rel}");
        assert!(
            o[&2].bound_ns >= 99_000.0,
            "the bound covers the minimum delay"
        );
    }
}
