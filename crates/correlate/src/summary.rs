//! Segments pooled over many journeys: where on the network, across all
//! flows, packets are lost and delayed.

use serde::Serialize;

use crate::journey::{Journey, LossEstimate};

/// One segment (`from > to`) summed over the journeys that cross it.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentSummary {
    pub from: String,
    pub to: String,
    pub journeys: u64,
    /// The journeys' losses summed, with the ratio and interval of the sum.
    #[serde(flatten)]
    pub loss: LossEstimate,
    /// Median over journeys of their median delay on the segment.
    pub delay_median_ns: Option<i64>,
}

/// One segment's sums while pooling.
#[derive(Default)]
struct Pool<'a> {
    from: &'a str,
    to: &'a str,
    journeys: u64,
    sent: u64,
    lost: u64,
    explained: u64,
    median_delays: Vec<i64>,
}

/// Pools the segments of `journeys`, the most lossy first.
pub fn summarize_segments(journeys: &[Journey]) -> Vec<SegmentSummary> {
    let mut pools: Vec<Pool<'_>> = Vec::new();
    for j in journeys {
        for s in &j.segments {
            let i = match pools.iter().position(|p| p.from == s.from && p.to == s.to) {
                Some(i) => i,
                None => {
                    pools.push(Pool {
                        from: &s.from,
                        to: &s.to,
                        ..Pool::default()
                    });
                    pools.len() - 1
                }
            };
            let p = &mut pools[i];
            p.journeys += 1;
            p.sent += s.loss.sent;
            p.lost += s.loss.lost;
            p.explained += s.loss.telemetry_explained;
            if let Some(d) = s.delay {
                p.median_delays.push(d.median_ns);
            }
        }
    }
    let mut result: Vec<SegmentSummary> = pools
        .into_iter()
        .map(|mut p| {
            p.median_delays.sort_unstable();
            SegmentSummary {
                from: p.from.to_string(),
                to: p.to.to_string(),
                journeys: p.journeys,
                loss: LossEstimate::new(
                    p.sent,
                    p.lost,
                    p.explained,
                    format!("pooled over {} journeys", p.journeys),
                ),
                delay_median_ns: p.median_delays.get(p.median_delays.len() / 2).copied(),
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
