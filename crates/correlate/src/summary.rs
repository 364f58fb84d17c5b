//! Segments pooled over many journeys: where on the network, across all
//! flows, packets are lost and delayed.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::clock::DelayKind;
use crate::journey::{FLOW_TOTALS_BASIS, Journey, JourneyFlag, LossEstimate, PACKETS_BASIS};

/// One segment (`from > to`) summed over the journeys that cross it.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentSummary {
    pub from: String,
    pub to: String,
    /// What the figures count: `packets` (selected packets followed hop by
    /// hop) or `flow totals` (whole-flow records compared); pooled apart,
    /// as they count the same packets twice.
    pub basis: &'static str,
    pub journeys: u64,
    /// The journeys' losses summed, with the ratio and interval of the sum.
    #[serde(flatten)]
    pub loss: LossEstimate,
    /// Median over journeys of their median delay on the segment.
    pub delay_median_ns: Option<i64>,
    /// What the delay rests on: the weakest of the journeys' kinds
    /// (`one-way`, `estimated`, `variation`), and the widest bound.
    pub delay_kind: &'static str,
    pub delay_bound_ns: Option<u64>,
    /// The round trip over this segment and back (this delay's median plus
    /// the reverse segment's): whatever the clocks' offset, as it cancels
    /// within one estimate (windows whose estimates differ move the pooled
    /// medians a little). None without the reverse segment, or with
    /// offsets unknown.
    pub rtt_median_ns: Option<i64>,
}

/// Parallel paths between two points: journeys that share the hops before
/// and after and differ in between (ECMP members, parallel links, a LAG's
/// members observed apart), so one member's loss or delay shows beside
/// the others'.
#[derive(Debug, Clone, Serialize)]
pub struct EcmpSet {
    /// The last point every member passes before they part.
    pub fork: String,
    /// The first point where they meet again.
    pub join: String,
    pub basis: &'static str,
    pub members: Vec<EcmpMember>,
}

/// One member of an [`EcmpSet`]: its figures from fork to join.
#[derive(Debug, Clone, Serialize)]
pub struct EcmpMember {
    /// The points between fork and join.
    pub via: Vec<String>,
    pub journeys: u64,
    /// Sent at the fork, lost anywhere up to the join.
    #[serde(flatten)]
    pub loss: LossEstimate,
    /// Fork to join: the member's segments' pooled medians added.
    pub delay_median_ns: Option<i64>,
    pub delay_kind: &'static str,
}

/// Everything pooled over a set of journeys.
#[derive(Debug, Clone, Serialize)]
pub struct Pooled {
    /// The most lossy first.
    pub segments: Vec<SegmentSummary>,
    pub ecmp: Vec<EcmpSet>,
}

/// One segment's sums while pooling.
#[derive(Debug, Default, Clone)]
struct Sums {
    journeys: u64,
    sent: u64,
    lost: u64,
    explained: u64,
    median_delays: Vec<i64>,
    kind: Option<DelayKind>,
    bound_ns: Option<u64>,
}

impl Sums {
    fn add(
        &mut self,
        loss: (u64, u64, u64),
        median_delay: Option<i64>,
        kind: &str,
        bound_ns: Option<u64>,
    ) {
        self.journeys += 1;
        self.sent += loss.0;
        self.lost += loss.1;
        self.explained += loss.2;
        self.median_delays.extend(median_delay);
        if median_delay.is_some() {
            let kind = DelayKind::parse(kind);
            self.kind = Some(self.kind.map_or(kind, |k| k.max(kind)));
            self.bound_ns = self.bound_ns.max(bound_ns);
        }
    }

    fn merge(&mut self, other: &Sums) {
        self.journeys += other.journeys;
        self.sent += other.sent;
        self.lost += other.lost;
        self.explained += other.explained;
        self.median_delays.extend_from_slice(&other.median_delays);
        self.kind = match (self.kind, other.kind) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.bound_ns = self.bound_ns.max(other.bound_ns);
    }

    fn median(&mut self) -> Option<i64> {
        self.median_delays.sort_unstable();
        self.median_delays
            .get(self.median_delays.len() / 2)
            .copied()
    }
}

/// The journeys of one path (the same points in the same order, one basis),
/// summed segment by segment: the segment view sums paths per segment, the
/// ECMP view compares paths.
#[derive(Debug)]
struct PathPool {
    /// `from > to` of each segment, in path order.
    segments: Vec<(String, String)>,
    basis: &'static str,
    journeys: u64,
    sums: Vec<Sums>,
}

impl PathPool {
    /// The points in order, when each segment starts where the last ended.
    fn points(&self) -> Option<Vec<&str>> {
        let mut points = vec![self.segments.first()?.0.as_str()];
        for (from, to) in &self.segments {
            if from != points.last()? {
                return None;
            }
            points.push(to);
        }
        Some(points)
    }
}

/// Distinct paths compared pairwise for ECMP sets at most: beyond, the
/// busiest are kept (a core network has few paths per pair of edges, a
/// flood of one-off paths is noise).
const MAX_PATHS_COMPARED: usize = 1000;

/// Sums journeys as they come, one pool per path.
#[derive(Default)]
struct Pools {
    paths: Vec<PathPool>,
    /// Paths by a hash of their segments and basis (no key is built per
    /// journey: a range holds millions).
    by_hash: HashMap<u64, Vec<usize>>,
}

/// One segment of a journey as pooling reads it.
struct SegmentIn<'a> {
    from: &'a str,
    to: &'a str,
    loss: (u64, u64, u64),
    median_delay: Option<i64>,
    kind: &'a str,
    bound_ns: Option<u64>,
}

impl Pools {
    fn add<'a>(&mut self, basis: &'static str, segments: impl IntoIterator<Item = SegmentIn<'a>>) {
        let segments: Vec<SegmentIn<'_>> = segments.into_iter().collect();
        if segments.is_empty() {
            return;
        }
        let hash = {
            use std::hash::{BuildHasher, Hash, Hasher};
            let mut h = foldhash::fast::FixedState::default().build_hasher();
            basis.hash(&mut h);
            for s in &segments {
                (s.from, s.to).hash(&mut h);
            }
            h.finish()
        };
        let same = |p: &PathPool| {
            p.basis == basis
                && p.segments.len() == segments.len()
                && p.segments
                    .iter()
                    .zip(&segments)
                    .all(|((f, t), s)| f == s.from && t == s.to)
        };
        let candidates = self.by_hash.entry(hash).or_default();
        let i = match candidates.iter().copied().find(|&i| same(&self.paths[i])) {
            Some(i) => i,
            None => {
                self.paths.push(PathPool {
                    segments: segments
                        .iter()
                        .map(|s| (s.from.to_string(), s.to.to_string()))
                        .collect(),
                    sums: vec![Sums::default(); segments.len()],
                    basis,
                    journeys: 0,
                });
                candidates.push(self.paths.len() - 1);
                self.paths.len() - 1
            }
        };
        let path = &mut self.paths[i];
        path.journeys += 1;
        for (sums, s) in path.sums.iter_mut().zip(&segments) {
            sums.add(s.loss, s.median_delay, s.kind, s.bound_ns);
        }
    }

    fn finish(self) -> Pooled {
        let ecmp = ecmp_sets(&self.paths);
        Pooled {
            segments: segment_view(&self.paths),
            ecmp,
        }
    }
}

/// A segment's place: `from`, `to`, and the basis of its figures.
type SegmentKey<'a> = (&'a str, &'a str, &'static str);

/// Each `from > to` summed over the paths that cross it, the most lossy first.
fn segment_view(paths: &[PathPool]) -> Vec<SegmentSummary> {
    let mut pooled: HashMap<SegmentKey<'_>, Sums> = HashMap::new();
    for path in paths {
        for ((from, to), sums) in path.segments.iter().zip(&path.sums) {
            pooled
                .entry((from, to, path.basis))
                .or_default()
                .merge(sums);
        }
    }
    let mut pooled: Vec<(SegmentKey<'_>, Sums, Option<i64>)> = pooled
        .into_iter()
        .map(|(k, mut s)| {
            let median = s.median();
            (k, s, median)
        })
        .collect();
    let known = |s: &Sums| s.kind.is_some_and(|k| k != DelayKind::Variation);
    let index: HashMap<SegmentKey<'_>, usize> = pooled
        .iter()
        .enumerate()
        .map(|(i, (k, _, _))| (*k, i))
        .collect();
    // the round trip: this segment's median and the reverse one's
    let rtt: Vec<Option<i64>> = pooled
        .iter()
        .map(|((from, to, basis), sums, median)| {
            let (_, back, back_median) = &pooled[*index.get(&(*to, *from, *basis))?];
            (known(sums) && known(back)).then_some(())?;
            Some((*median)? + (*back_median)?)
        })
        .collect();
    let mut result: Vec<SegmentSummary> = pooled
        .drain(..)
        .zip(rtt)
        .map(|(((from, to, basis), sums, median), rtt_median_ns)| {
            let kind = sums.kind.unwrap_or(DelayKind::Variation);
            SegmentSummary {
                from: from.to_string(),
                to: to.to_string(),
                basis,
                journeys: sums.journeys,
                loss: LossEstimate::new(
                    sums.sent,
                    sums.lost,
                    sums.explained,
                    format!("pooled over {} journeys ({basis})", sums.journeys),
                ),
                delay_median_ns: median,
                delay_kind: kind.as_str(),
                delay_bound_ns: if kind == DelayKind::Variation {
                    None
                } else {
                    sums.bound_ns
                },
                rtt_median_ns,
            }
        })
        .collect();
    result.sort_by(|a, b| {
        b.loss
            .lost
            .cmp(&a.loss.lost)
            .then(b.loss.sent.cmp(&a.loss.sent))
            .then_with(|| (&a.from, &a.to, a.basis).cmp(&(&b.from, &b.to, b.basis)))
    });
    result
}

/// Pairs of paths that share a first part and a last part and, in between,
/// no point at all: the point before is a fork, the point after a join.
/// Every path through the fork, one middle and the join is a member.
fn ecmp_sets(paths: &[PathPool]) -> Vec<EcmpSet> {
    let mut busiest: Vec<(&PathPool, Vec<&str>)> = paths
        .iter()
        .filter_map(|p| Some((p, p.points()?)))
        .collect();
    busiest.sort_by_key(|(p, _)| std::cmp::Reverse(p.journeys));
    busiest.truncate(MAX_PATHS_COMPARED);
    // (fork, join, basis) -> the distinct middles
    let mut sets: Vec<(SegmentKey<'_>, Vec<&[&str]>)> = Vec::new();
    for (i, (p, a)) in busiest.iter().enumerate() {
        for (q, b) in &busiest[i + 1..] {
            if p.basis != q.basis {
                continue;
            }
            let shortest = a.len().min(b.len());
            let prefix = a.iter().zip(b.iter()).take_while(|(x, y)| x == y).count();
            let suffix = a
                .iter()
                .rev()
                .zip(b.iter().rev())
                .take_while(|(x, y)| x == y)
                .count()
                .min(shortest - prefix);
            if prefix == 0 || suffix == 0 {
                continue;
            }
            let (mid_a, mid_b) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
            if mid_a.is_empty() || mid_b.is_empty() || mid_a.iter().any(|x| mid_b.contains(x)) {
                continue;
            }
            let key = (a[prefix - 1], a[a.len() - suffix], p.basis);
            let members = match sets.iter_mut().find(|(k, _)| *k == key) {
                Some((_, m)) => m,
                None => {
                    sets.push((key, Vec::new()));
                    &mut sets.last_mut().expect("just pushed").1
                }
            };
            // members share no point: one that does is the same path with
            // a point unseen (a report lost, a probe down), the longer kept
            for mid in [mid_a, mid_b] {
                match members
                    .iter()
                    .position(|m| m.iter().any(|x| mid.contains(x)))
                {
                    Some(i) if mid.len() > members[i].len() => members[i] = mid,
                    Some(_) => {}
                    None => members.push(mid),
                }
            }
        }
    }
    // a path through points of two members shows them to be one path,
    // each seen without some of its points (a report lost, a probe down)
    let one_path = |middles: &[&[&str]], basis: &str| {
        busiest.iter().any(|(p, points)| {
            p.basis == basis
                && middles
                    .iter()
                    .filter(|m| m.iter().any(|x| points.contains(x)))
                    .count()
                    > 1
        })
    };
    sets.retain(|((_, _, basis), middles)| !one_path(middles, basis));
    sets.into_iter()
        .map(|((fork, join, basis), middles)| {
            let mut members: Vec<EcmpMember> = middles
                .into_iter()
                .map(|via| member(&busiest, (fork, via, join), basis))
                .collect();
            members.sort_by(|a, b| a.via.cmp(&b.via));
            EcmpSet {
                fork: fork.to_string(),
                join: join.to_string(),
                basis,
                members,
            }
        })
        .collect()
}

/// A member's figures: its segments from fork to join, summed over every
/// path that takes them.
fn member(
    paths: &[(&PathPool, Vec<&str>)],
    (fork, via, join): (&str, &[&str], &str),
    basis: &'static str,
) -> EcmpMember {
    let chain: Vec<&str> = std::iter::once(fork)
        .chain(via.iter().copied())
        .chain(std::iter::once(join))
        .collect();
    let mut sums = vec![Sums::default(); chain.len() - 1];
    let mut journeys = 0;
    for (path, points) in paths.iter().filter(|(p, _)| p.basis == basis) {
        if let Some(at) = points
            .windows(chain.len())
            .position(|w| w == chain.as_slice())
        {
            journeys += path.journeys;
            for (mine, theirs) in sums.iter_mut().zip(&path.sums[at..]) {
                mine.merge(theirs);
            }
        }
    }
    let sent = sums[0].sent;
    let lost = sums.iter().map(|s| s.lost).sum::<u64>().min(sent);
    let explained = sums.iter().map(|s| s.explained).sum();
    let kind = sums
        .iter()
        .map(|s| s.kind.unwrap_or(DelayKind::Variation))
        .max()
        .unwrap_or(DelayKind::Variation);
    let delay_median_ns = sums.iter_mut().map(Sums::median).sum::<Option<i64>>();
    EcmpMember {
        via: via.iter().map(|s| s.to_string()).collect(),
        journeys,
        loss: LossEstimate::new(
            sent,
            lost,
            explained,
            format!(
                "{journeys} journeys from {fork} to {join} via {}",
                via.join(", ")
            ),
        ),
        delay_median_ns,
        delay_kind: kind.as_str(),
    }
}

/// Pools the segments of `journeys`.
pub fn summarize_segments(journeys: &[Journey]) -> Pooled {
    let mut pools = Pools::default();
    for j in journeys {
        pools.add(
            j.basis(),
            j.segments.iter().map(|s| SegmentIn {
                from: &s.from,
                to: &s.to,
                loss: (s.loss.sent, s.loss.lost, s.loss.telemetry_explained),
                median_delay: s.delay.map(|d| d.median_ns),
                kind: s.delay_kind,
                bound_ns: s.delay_bound_ns,
            }),
        );
    }
    pools.finish()
}

/// The part of a stored journey's `detail` that pooling reads.
#[derive(Deserialize)]
struct StoredJourney {
    segments: Vec<StoredSegment>,
    #[serde(default)]
    flags: Vec<String>,
}

/// The basis of a stored journey's figures, from its flags.
fn basis<'a>(mut flags: impl Iterator<Item = &'a str>) -> &'static str {
    if flags.any(|f| f == JourneyFlag::FlowTotals.as_str()) {
        FLOW_TOTALS_BASIS
    } else {
        PACKETS_BASIS
    }
}

#[derive(Deserialize)]
struct StoredSegment {
    from: String,
    to: String,
    delay: Option<StoredDelay>,
    #[serde(default)]
    delay_kind: String,
    #[serde(default)]
    delay_bound_ns: Option<u64>,
    loss: StoredLoss,
}

#[derive(Deserialize)]
struct StoredDelay {
    median_ns: i64,
}

#[derive(Deserialize)]
struct StoredLoss {
    sent: u64,
    lost: u64,
    telemetry_explained: u64,
}

/// [`summarize_segments`] over journeys read back from the store (the
/// `detail` column's JSON); details that do not parse are counted, not pooled.
pub fn summarize_stored_segments<'a>(details: impl IntoIterator<Item = &'a str>) -> (Pooled, u64) {
    let mut pools = Pools::default();
    let mut unreadable = 0;
    for detail in details {
        match serde_json::from_str::<StoredJourney>(detail) {
            Ok(j) => pools.add(
                basis(j.flags.iter().map(String::as_str)),
                j.segments.iter().map(|s| SegmentIn {
                    from: &s.from,
                    to: &s.to,
                    loss: (s.loss.sent, s.loss.lost, s.loss.telemetry_explained),
                    median_delay: s.delay.as_ref().map(|d| d.median_ns),
                    kind: &s.delay_kind,
                    bound_ns: s.delay_bound_ns,
                }),
            ),
            Err(_) => unreadable += 1,
        }
    }
    (pools.finish(), unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_details_pool_like_journeys() {
        let detail = |lost: u64| {
            format!(
                r#"{{"segments":[{{"from":"a","to":"b","delay":{{"median_ns":100}},"delay_kind":"one-way",
                "loss":{{"sent":50,"lost":{lost},"ratio":0,"ratio_low":0,"ratio_high":0,"telemetry_explained":1,"evidence":""}}}}]}}"#
            )
        };
        let details = [detail(2), detail(3), "not json".to_string()];
        let (pooled, unreadable) = summarize_stored_segments(details.iter().map(String::as_str));
        assert_eq!(unreadable, 1);
        assert_eq!(pooled.segments.len(), 1);
        let s = &pooled.segments[0];
        assert_eq!((s.journeys, s.loss.sent, s.loss.lost), (2, 100, 5));
        assert_eq!(s.loss.telemetry_explained, 2);
        assert_eq!(s.delay_median_ns, Some(100));
        assert!(s.loss.ratio_low < 0.05 && s.loss.ratio_high > 0.05);
    }

    /// A stored journey over `points`, each segment sending `sent`,
    /// `lost[i]` lost on segment i, 1 ms of delay per segment.
    fn over(points: &[&str], sent: u64, lost: &[u64]) -> String {
        let segments: Vec<String> = points
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                format!(
                    r#"{{"from":"{}","to":"{}","delay":{{"median_ns":1000000}},"delay_kind":"one-way",
                    "loss":{{"sent":{sent},"lost":{},"telemetry_explained":0}}}}"#,
                    w[0],
                    w[1],
                    lost.get(i).copied().unwrap_or(0)
                )
            })
            .collect();
        format!(r#"{{"segments":[{}]}}"#, segments.join(","))
    }

    #[test]
    fn parallel_paths_are_one_set_with_each_members_figures() {
        let details = [
            over(&["a", "x1", "y1", "b"], 100, &[0, 4]),
            over(&["a", "x1", "y1", "b"], 100, &[0, 2]),
            over(&["a", "x2", "y2", "b"], 100, &[]),
            // a longer path through the same fork and join
            over(&["s", "a", "x2", "y2", "b", "d"], 50, &[]),
            // a point not seen is not a parallel path
            over(&["a", "x1", "b"], 10, &[]),
            // nor are two journeys of one path, each missing a point
            over(&["p", "u1", "q"], 10, &[]),
            over(&["p", "v1", "q"], 10, &[]),
            over(&["p", "u1", "v1", "q"], 10, &[]),
            // unrelated
            over(&["c", "d"], 10, &[1]),
        ];
        let (pooled, _) = summarize_stored_segments(details.iter().map(String::as_str));
        assert_eq!(pooled.ecmp.len(), 1, "{:?}", pooled.ecmp);
        let set = &pooled.ecmp[0];
        assert_eq!((set.fork.as_str(), set.join.as_str()), ("a", "b"));
        let via: Vec<Vec<String>> = set.members.iter().map(|m| m.via.clone()).collect();
        assert_eq!(via, [["x1", "y1"], ["x2", "y2"]]);
        let (one, two) = (&set.members[0], &set.members[1]);
        assert_eq!((one.journeys, one.loss.sent, one.loss.lost), (2, 200, 6));
        assert_eq!((two.journeys, two.loss.sent, two.loss.lost), (2, 150, 0));
        assert_eq!(one.delay_median_ns, Some(3_000_000));
        assert_eq!(one.delay_kind, "one-way");
        // the segment view is unchanged by it
        let worst = &pooled.segments[0];
        assert_eq!(
            (worst.from.as_str(), worst.to.as_str(), worst.loss.lost),
            ("x1", "y1", 6)
        );
    }
}
