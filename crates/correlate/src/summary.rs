//! Segments pooled over many journeys: where on the network, across all
//! flows, packets are lost and delayed.

use serde::{Deserialize, Serialize};

use crate::clock::DelayKind;
use crate::journey::{Journey, LossEstimate};

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
    /// the reverse segment's): exact whatever the clocks' offset, as the
    /// offset cancels. None without the reverse segment, or with offsets
    /// unknown.
    pub rtt_median_ns: Option<i64>,
}

/// One segment's sums while pooling.
#[derive(Default)]
struct Pool {
    from: String,
    to: String,
    basis: &'static str,
    journeys: u64,
    sent: u64,
    lost: u64,
    explained: u64,
    median_delays: Vec<i64>,
    kind: Option<DelayKind>,
    bound_ns: Option<u64>,
}

/// Sums segments as they come, one pool per `from > to`.
#[derive(Default)]
struct Pools(Vec<Pool>);

impl Pools {
    fn add(
        &mut self,
        (from, to, basis): (&str, &str, &'static str),
        loss: (u64, u64, u64),
        median_delay: Option<i64>,
        (kind, bound_ns): (&str, Option<u64>),
    ) {
        let i = match self
            .0
            .iter()
            .position(|p| p.from == from && p.to == to && p.basis == basis)
        {
            Some(i) => i,
            None => {
                self.0.push(Pool {
                    from: from.to_string(),
                    to: to.to_string(),
                    basis,
                    ..Pool::default()
                });
                self.0.len() - 1
            }
        };
        let p = &mut self.0[i];
        p.journeys += 1;
        p.sent += loss.0;
        p.lost += loss.1;
        p.explained += loss.2;
        p.median_delays.extend(median_delay);
        if median_delay.is_some() {
            let kind = match kind {
                "one-way" => DelayKind::Measured,
                "estimated" => DelayKind::Estimated,
                _ => DelayKind::Variation,
            };
            p.kind = Some(p.kind.map_or(kind, |k| k.max(kind)));
            p.bound_ns = p.bound_ns.max(bound_ns);
        }
    }

    /// The summaries, the most lossy first.
    fn finish(mut self) -> Vec<SegmentSummary> {
        for p in &mut self.0 {
            p.median_delays.sort_unstable();
        }
        let median = |p: &Pool| p.median_delays.get(p.median_delays.len() / 2).copied();
        let known = |p: &Pool| p.kind.is_some_and(|k| k != DelayKind::Variation);
        let rtt: Vec<Option<i64>> = self
            .0
            .iter()
            .map(|p| {
                let back = self
                    .0
                    .iter()
                    .find(|q| q.from == p.to && q.to == p.from && q.basis == p.basis)?;
                (known(p) && known(back)).then(|| Some(median(p)? + median(back)?))?
            })
            .collect();
        let mut result: Vec<SegmentSummary> = self
            .0
            .into_iter()
            .zip(rtt)
            .map(|(p, rtt_median_ns)| {
                let kind = p.kind.unwrap_or(DelayKind::Variation);
                SegmentSummary {
                    delay_kind: kind.as_str(),
                    delay_bound_ns: if kind == DelayKind::Variation {
                        None
                    } else {
                        p.bound_ns
                    },
                    rtt_median_ns,
                    loss: LossEstimate::new(
                        p.sent,
                        p.lost,
                        p.explained,
                        format!("pooled over {} journeys ({})", p.journeys, p.basis),
                    ),
                    delay_median_ns: p.median_delays.get(p.median_delays.len() / 2).copied(),
                    from: p.from,
                    to: p.to,
                    basis: p.basis,
                    journeys: p.journeys,
                }
            })
            .collect();
        result.sort_by(|a, b| {
            b.loss
                .lost
                .cmp(&a.loss.lost)
                .then(b.loss.sent.cmp(&a.loss.sent))
        });
        result
    }
}

/// Pools the segments of `journeys`, the most lossy first.
pub fn summarize_segments(journeys: &[Journey]) -> Vec<SegmentSummary> {
    let mut pools = Pools::default();
    for j in journeys {
        let basis = basis(j.flags.iter().copied());
        for s in &j.segments {
            let l = &s.loss;
            let median = s.delay.map(|d| d.median_ns);
            pools.add(
                (&s.from, &s.to, basis),
                (l.sent, l.lost, l.telemetry_explained),
                median,
                (s.delay_kind, s.delay_bound_ns),
            );
        }
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

/// The basis of a journey's figures, from its flags.
fn basis<'a>(mut flags: impl Iterator<Item = &'a str>) -> &'static str {
    if flags.any(|f| f == "flow-totals") {
        "flow totals"
    } else {
        "packets"
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
pub fn summarize_stored_segments<'a>(
    details: impl IntoIterator<Item = &'a str>,
) -> (Vec<SegmentSummary>, u64) {
    let mut pools = Pools::default();
    let mut unreadable = 0;
    for detail in details {
        match serde_json::from_str::<StoredJourney>(detail) {
            Ok(j) => {
                let basis = basis(j.flags.iter().map(String::as_str));
                for s in j.segments {
                    let l = &s.loss;
                    let median = s.delay.map(|d| d.median_ns);
                    pools.add(
                        (&s.from, &s.to, basis),
                        (l.sent, l.lost, l.telemetry_explained),
                        median,
                        (&s.delay_kind, s.delay_bound_ns),
                    );
                }
            }
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
        let (summary, unreadable) = summarize_stored_segments(details.iter().map(String::as_str));
        assert_eq!(unreadable, 1);
        assert_eq!(summary.len(), 1);
        let s = &summary[0];
        assert_eq!((s.journeys, s.loss.sent, s.loss.lost), (2, 100, 5));
        assert_eq!(s.loss.telemetry_explained, 2);
        assert_eq!(s.delay_median_ns, Some(100));
        assert!(s.loss.ratio_low < 0.05 && s.loss.ratio_high > 0.05);
    }
}
