//! Every segment's last whole minute, for `/metrics`: loss and delay per
//! segment as gauges, so that Prometheus users can write rules of their
//! own (an SLO names a few segments; these are all of them, packet
//! reports' journeys only).

use std::collections::BTreeMap;

use arrow_array::types::UInt64Type;
use arrow_array::{Array, RecordBatch};
use serde::Serialize;

use crate::AnalyzeError;
use crate::columns::{primitive, text, times};
use crate::slo::{BUCKET_NS, bucket_start};

/// Segments shown at most, the busiest first: a gauge per segment must
/// not grow without bound with the network.
pub const MAX_SEGMENTS: usize = 1000;

/// A segment in its last whole minute.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SegmentGauge {
    pub upstream: String,
    pub downstream: String,
    pub minute_ns: i64,
    pub sent: u64,
    pub lost: u64,
    pub loss_ratio: f64,
    /// Mean of the journeys' median delays, weighted by their samples.
    pub delay_mean_ns: Option<f64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    sent: u64,
    lost: u64,
    delay_sum: f64,
    delay_weight: u64,
}

/// Segment rows gathered by minute until the minute is whole.
#[derive(Debug, Default)]
pub struct SegmentGauges {
    open: BTreeMap<i64, BTreeMap<(String, String), Sums>>,
    last: Vec<SegmentGauge>,
}

impl SegmentGauges {
    /// Adds the `segments` rows of packet reports' journeys.
    pub fn add(&mut self, segments: &[RecordBatch]) -> Result<(), AnalyzeError> {
        for b in segments {
            let (t, up, down, basis) = (
                times(b)?,
                text(b, "upstream")?,
                text(b, "downstream")?,
                text(b, "basis")?,
            );
            let num = |name: &str| primitive::<UInt64Type>(b, name);
            let (sent, lost, median, samples) = (
                num("sent")?,
                num("lost")?,
                num("delay_median_ns")?,
                num("delay_samples")?,
            );
            for i in 0..b.num_rows() {
                if basis.value(i) != "packets" {
                    continue;
                }
                let s = self
                    .open
                    .entry(bucket_start(t.value(i)))
                    .or_default()
                    .entry((up.value(i).to_string(), down.value(i).to_string()))
                    .or_default();
                s.sent += sent.value(i);
                s.lost += lost.value(i);
                if median.is_valid(i) {
                    let w = samples.value(i).max(1);
                    s.delay_sum += median.value(i) as f64 * w as f64;
                    s.delay_weight += w;
                }
            }
        }
        Ok(())
    }

    /// Closes the minutes that end by `until_ns`; the newest of them is
    /// what the gauges show.
    pub fn close(&mut self, until_ns: i64) {
        let mut newest = None;
        while let Some(e) = self.open.first_entry() {
            if e.key().saturating_add(BUCKET_NS) > until_ns {
                break;
            }
            newest = Some(e.remove_entry());
        }
        let Some((minute, sums)) = newest else { return };
        let mut gauges: Vec<SegmentGauge> = sums
            .into_iter()
            .map(|((upstream, downstream), s)| SegmentGauge {
                upstream,
                downstream,
                minute_ns: minute,
                sent: s.sent,
                lost: s.lost,
                loss_ratio: if s.sent == 0 {
                    0.0
                } else {
                    s.lost as f64 / s.sent as f64
                },
                delay_mean_ns: (s.delay_weight > 0).then(|| s.delay_sum / s.delay_weight as f64),
            })
            .collect();
        gauges.sort_by(|a, b| {
            b.sent
                .cmp(&a.sent)
                .then_with(|| a.upstream.cmp(&b.upstream))
        });
        gauges.truncate(MAX_SEGMENTS);
        self.last = gauges;
    }

    pub fn current(&self) -> &[SegmentGauge] {
        &self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::builder::{StringBuilder, TimestampNanosecondBuilder, UInt64Builder};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};

    fn rows(minute: i64, basis: &str, sent: u64, lost: u64) -> RecordBatch {
        let mut t = TimestampNanosecondBuilder::new().with_timezone("UTC");
        t.append_value(minute * BUCKET_NS + 1);
        let text = |v: &str| {
            let mut b = StringBuilder::new();
            b.append_value(v);
            Arc::new(b.finish())
        };
        let num = |v: u64| {
            let mut b = UInt64Builder::new();
            b.append_value(v);
            Arc::new(b.finish())
        };
        let ts = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
        let schema = Schema::new(vec![
            Field::new(hopscope_store::TIME_COLUMN, ts, false),
            Field::new("upstream", DataType::Utf8, false),
            Field::new("downstream", DataType::Utf8, false),
            Field::new("basis", DataType::Utf8, false),
            Field::new("sent", DataType::UInt64, false),
            Field::new("lost", DataType::UInt64, false),
            Field::new("delay_median_ns", DataType::UInt64, true),
            Field::new("delay_samples", DataType::UInt64, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(t.finish()),
                text("a:x"),
                text("b:y"),
                text(basis),
                num(sent),
                num(lost),
                num(2_000_000),
                num(10),
            ],
        )
        .unwrap()
    }

    #[test]
    fn the_gauges_show_the_last_whole_minute_of_packet_journeys() {
        let mut g = SegmentGauges::default();
        let batches = [
            rows(5, "packets", 100, 2),
            rows(5, "flow totals", 900, 90),
            rows(6, "packets", 50, 5),
        ];
        g.add(&batches).unwrap();
        g.close(6 * BUCKET_NS);
        assert_eq!(g.current().len(), 1);
        let first = &g.current()[0];
        assert_eq!(
            (first.minute_ns, first.sent, first.lost),
            (5 * BUCKET_NS, 100, 2)
        );
        assert_eq!(first.delay_mean_ns, Some(2_000_000.0));
        // minute 6 is not whole yet
        g.close(6 * BUCKET_NS + 1);
        assert_eq!(g.current()[0].minute_ns, 5 * BUCKET_NS);
        g.close(7 * BUCKET_NS);
        assert_eq!((g.current()[0].sent, g.current()[0].lost), (50, 5));
    }
}
