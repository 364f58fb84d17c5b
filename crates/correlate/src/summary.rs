//! Segments pooled over many journeys: where on the network, across all
//! flows, packets are lost and delayed.

use serde::Serialize;

use crate::journey::Journey;
use crate::loss::wilson_interval;

/// One segment (`from > to`) summed over the journeys that cross it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SegmentSummary {
    pub from: String,
    pub to: String,
    pub journeys: u64,
    pub sent: u64,
    pub lost: u64,
    pub ratio: f64,
    pub ratio_low: f64,
    pub ratio_high: f64,
    pub telemetry_explained: u64,
    /// Median over journeys of their median delay on the segment.
    pub delay_median_ns: Option<i64>,
}

/// Pools the segments of `journeys`, the most lossy first.
pub fn summarize_segments(journeys: &[Journey]) -> Vec<SegmentSummary> {
    let mut out: Vec<(SegmentSummary, Vec<i64>)> = Vec::new();
    for j in journeys {
        for s in &j.segments {
            let i = match out
                .iter()
                .position(|(o, _)| o.from == s.from && o.to == s.to)
            {
                Some(i) => i,
                None => {
                    out.push((
                        SegmentSummary {
                            from: s.from.clone(),
                            to: s.to.clone(),
                            journeys: 0,
                            sent: 0,
                            lost: 0,
                            ratio: 0.0,
                            ratio_low: 0.0,
                            ratio_high: 0.0,
                            telemetry_explained: 0,
                            delay_median_ns: None,
                        },
                        Vec::new(),
                    ));
                    out.len() - 1
                }
            };
            let (o, delays) = &mut out[i];
            o.journeys += 1;
            o.sent += s.loss.sent;
            o.lost += s.loss.lost;
            o.telemetry_explained += s.loss.telemetry_explained;
            if let Some(d) = s.delay {
                delays.push(d.median_ns);
            }
        }
    }
    let mut result: Vec<SegmentSummary> = out
        .into_iter()
        .map(|(mut o, mut delays)| {
            o.ratio = if o.sent > 0 {
                o.lost as f64 / o.sent as f64
            } else {
                0.0
            };
            (o.ratio_low, o.ratio_high) = wilson_interval(o.lost, o.sent);
            delays.sort_unstable();
            o.delay_median_ns = delays.get(delays.len() / 2).copied();
            o
        })
        .collect();
    result.sort_by(|a, b| b.lost.cmp(&a.lost).then(b.sent.cmp(&a.sent)));
    result
}
