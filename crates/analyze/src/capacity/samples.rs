//! A link's traffic as 5-minute samples of bits per second, from each
//! source kept apart: flow records scaled by their sampling rates, sFlow
//! counter samples, and SNMP polls of IF-MIB's octet counters.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampNanosecondType, UInt8Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use foldhash::fast::RandomState;
use hopscope_schema::{COUNTER_SOURCE_SNMP, COUNTER_SOURCE_SNMP_32, mapped_to_ip};
use hopscope_store::query::{Aggregate, Counting, Query, Source as QuerySource, Volumes};
use hopscope_store::{Backend, Table};
use serde::Serialize;

use crate::AnalyzeError;

/// Width of one sample by default: the billing world's 5 minutes.
pub const SAMPLE_NS: i64 = 300_000_000_000;

/// The longest range read: 400 days (a year of forecasting history and a
/// month to spare).
pub const MAX_RANGE_NS: i64 = 400 * 86_400_000_000_000;

/// Where a sample comes from. The order is the order of preference for
/// the figures a link is judged by: the device's own counters first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Snmp,
    Sflow,
    Flows,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Snmp, Source::Sflow, Source::Flows];

    pub fn name(self) -> &'static str {
        match self {
            Source::Snmp => "snmp",
            Source::Sflow => "sflow",
            Source::Flows => "flows",
        }
    }
}

/// Traffic into the interface (received) or out of it (sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::In, Direction::Out];

    pub fn name(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// An interface of an exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkKey {
    pub exporter: IpAddr,
    pub if_index: u32,
}

/// One series: bits per second per sample, NaN where the source says
/// nothing about that sample.
pub type Series = Vec<f64>;

/// What the sources said of one link.
#[derive(Debug, Clone, Default)]
pub struct LinkSamples {
    series: BTreeMap<(Source, Direction), Series>,
    /// The newest speed each counter source reported (ifSpeed).
    pub speeds: BTreeMap<Source, u64>,
}

impl LinkSamples {
    /// A link's samples as another reader computed them (a backend that
    /// aggregates counters itself, a benchmark).
    pub fn from_series(
        series: impl IntoIterator<Item = ((Source, Direction), Series)>,
        speeds: impl IntoIterator<Item = (Source, u64)>,
    ) -> LinkSamples {
        LinkSamples {
            series: series.into_iter().collect(),
            speeds: speeds.into_iter().collect(),
        }
    }

    pub fn series(&self, source: Source, direction: Direction) -> Option<&Series> {
        self.series.get(&(source, direction))
    }

    /// The sources that have at least one sample.
    pub fn sources(&self) -> Vec<Source> {
        let mut s: Vec<Source> = self
            .series
            .iter()
            .filter(|(_, v)| v.iter().any(|x| !x.is_nan()))
            .map(|((s, _), _)| *s)
            .collect();
        s.dedup();
        s
    }
}

/// Every link's samples over a range aligned to their width.
#[derive(Debug, Clone)]
pub struct Samples {
    pub start_ns: i64,
    /// The width of each sample (5 minutes, or 1 minute for a closer look).
    pub sample_ns: i64,
    pub len: usize,
    /// The end of what was asked, no later than when it was asked: days
    /// after it are not whole yet.
    pub until_ns: i64,
    pub links: BTreeMap<LinkKey, LinkSamples>,
}

/// The most samples a series may hold: a year and a month of 5-minute
/// samples (a series is 8 octets a sample, per link, source and direction).
pub const MAX_SAMPLES: usize = 115_200;

impl Samples {
    /// The samples of width `sample_ns` of `[from_ns, to_ns)` widened to
    /// whole samples; an open end stops at the present, and a range
    /// reaches back at most [`MAX_RANGE_NS`].
    pub fn read(
        store: &dyn Backend,
        from_ns: i64,
        to_ns: i64,
        sample_ns: i64,
    ) -> Result<Samples, AnalyzeError> {
        let sample_ns = sample_ns.max(1_000_000_000);
        let now = hopscope_store::now_ns();
        let until_ns = to_ns.min(now);
        let to_ns = to_ns.min(now + sample_ns);
        let from_ns = from_ns.max(to_ns.saturating_sub(MAX_RANGE_NS)).min(to_ns);
        let start_ns = from_ns.div_euclid(sample_ns) * sample_ns;
        let end_ns = (to_ns + sample_ns - 1).div_euclid(sample_ns) * sample_ns;
        let len = ((end_ns - start_ns) / sample_ns).max(0) as usize;
        if len > MAX_SAMPLES {
            return Err(AnalyzeError::Setting {
                key: "sample".into(),
                message: format!(
                    "the range holds {len} samples of {} s; the most is {MAX_SAMPLES}: a wider sample or a shorter range",
                    sample_ns / 1_000_000_000
                ),
            });
        }
        let mut samples = Samples {
            start_ns,
            sample_ns,
            len,
            until_ns,
            links: BTreeMap::new(),
        };
        samples.read_flows(store, end_ns)?;
        samples.read_counters(store, end_ns)?;
        Ok(samples)
    }

    fn link(&mut self, key: LinkKey) -> &mut LinkSamples {
        self.links.entry(key).or_default()
    }

    /// Flow volumes per exporter and interface, at every point (each
    /// interface is its own vantage point), scaled by sampling: received
    /// on `in_if`, sent on `out_if`. Samples between a link's first and
    /// last flow without flows are zero: no flow is no traffic.
    fn read_flows(&mut self, store: &dyn Backend, end_ns: i64) -> Result<(), AnalyzeError> {
        for (field, direction) in [("in_if", Direction::In), ("out_if", Direction::Out)] {
            let q = Query {
                from_ns: self.start_ns,
                to_ns: end_ns,
                group_by: vec!["sampler_address", field],
                bucket_ns: Some(self.sample_ns),
                aggregates: vec![Aggregate::Sum("bytes")],
                columns: Vec::new(),
                source: QuerySource::Auto,
                volumes: Volumes::Scaled,
                counting: Counting::EveryPoint,
                ..Query::default()
            };
            let out = store
                .query(&q)
                .map_err(|e| AnalyzeError::Rows(format!("flows per interface: {e}")))?;
            let rows = &out.rows;
            let (Some(times), Some(exporters), Some(indexes), Some(bytes)) = (
                rows.column_by_name("time_bucket"),
                rows.column_by_name("sampler_address"),
                rows.column_by_name(field),
                rows.column_by_name("bytes"),
            ) else {
                continue;
            };
            let times = times.as_primitive::<TimestampNanosecondType>();
            let exporters = exporters.as_fixed_size_binary();
            let indexes = indexes.as_primitive::<UInt32Type>();
            let bytes = bytes.as_primitive::<UInt64Type>();
            let (start, len, width) = (self.start_ns, self.len, self.sample_ns);
            for row in 0..rows.num_rows() {
                if !(times.is_valid(row) && exporters.is_valid(row) && indexes.is_valid(row)) {
                    continue;
                }
                let index = indexes.value(row);
                let Ok(addr) = <[u8; 16]>::try_from(exporters.value(row)) else {
                    continue;
                };
                let slot = (times.value(row) - start).div_euclid(width);
                if index == 0 || !(0..len as i64).contains(&slot) {
                    continue;
                }
                let key = LinkKey {
                    exporter: mapped_to_ip(addr),
                    if_index: index,
                };
                let series = self
                    .link(key)
                    .series
                    .entry((Source::Flows, direction))
                    .or_insert_with(|| vec![f64::NAN; len]);
                let bps = bytes.value(row) as f64 * 8.0 / (width as f64 / 1e9);
                let s = &mut series[slot as usize];
                *s = if s.is_nan() { bps } else { *s + bps };
            }
        }
        for link in self.links.values_mut() {
            for direction in Direction::BOTH {
                if let Some(series) = link.series.get_mut(&(Source::Flows, direction)) {
                    fill_between_first_and_last(series);
                }
            }
        }
        Ok(())
    }

    /// Octet counters per agent, interface and source: the rate between
    /// two readings spread over the samples they span.
    fn read_counters(&mut self, store: &dyn Backend, end_ns: i64) -> Result<(), AnalyzeError> {
        type Readings = Vec<Reading>;
        // by hash (a lookup per row); the last key kept, as rows of one
        // interface often come in runs
        let mut readings: HashMap<(LinkKey, Source), Readings, RandomState> = HashMap::default();
        // one reading before the range: the first sample's rate needs it
        let lookback = MAX_READING_GAP_NS;
        let columns = [
            "time_received_ns",
            "sampler_address",
            "if_index",
            "if_speed",
            "in_octets",
            "out_octets",
            "counter_source",
        ];
        store.scan(
            Table::InterfaceCounters,
            &columns,
            self.start_ns - lookback,
            // and one after: the last sample's rate needs it
            end_ns + lookback,
            &mut |batch: RecordBatch| {
                let (Some(t), Some(a), Some(i)) = (
                    batch.column_by_name("time_received_ns"),
                    batch.column_by_name("sampler_address"),
                    batch.column_by_name("if_index"),
                ) else {
                    return Ok(());
                };
                let t = t.as_primitive::<TimestampNanosecondType>();
                let a = a.as_fixed_size_binary();
                let i = i.as_primitive::<UInt32Type>();
                let u64_column = |name| {
                    batch
                        .column_by_name(name)
                        .map(|c| c.as_primitive::<UInt64Type>().clone())
                };
                let (speed, inbound, outbound) = (
                    u64_column("if_speed"),
                    u64_column("in_octets"),
                    u64_column("out_octets"),
                );
                let source = batch
                    .column_by_name("counter_source")
                    .map(|c| c.as_primitive::<UInt8Type>().clone());
                let value = |c: &Option<arrow_array::UInt64Array>, row: usize| {
                    c.as_ref().filter(|c| c.is_valid(row)).map(|c| c.value(row))
                };
                for row in 0..batch.num_rows() {
                    let Ok(addr) = <[u8; 16]>::try_from(a.value(row)) else {
                        continue;
                    };
                    if !(t.is_valid(row) && a.is_valid(row) && i.is_valid(row)) {
                        continue;
                    }
                    let kind = source
                        .as_ref()
                        .filter(|s| s.is_valid(row))
                        .map(|s| s.value(row));
                    let from_snmp =
                        matches!(kind, Some(COUNTER_SOURCE_SNMP | COUNTER_SOURCE_SNMP_32));
                    let key = LinkKey {
                        exporter: mapped_to_ip(addr),
                        if_index: i.value(row),
                    };
                    let source = if from_snmp {
                        Source::Snmp
                    } else {
                        Source::Sflow
                    };
                    readings.entry((key, source)).or_default().push(Reading {
                        time_ns: t.value(row),
                        inbound: value(&inbound, row),
                        outbound: value(&outbound, row),
                        speed: value(&speed, row),
                        counter_32: kind == Some(COUNTER_SOURCE_SNMP_32),
                    });
                }
                Ok(())
            },
        )?;
        let mut readings: Vec<_> = readings.into_iter().collect();
        readings.sort_unstable_by_key(|(k, _)| *k);
        for ((key, source), mut rows) in readings {
            rows.sort_by_key(|r| r.time_ns);
            let (len, start, width) = (self.len, self.start_ns, self.sample_ns);
            let link = self.link(key);
            if let Some(speed) = rows.iter().rev().find_map(|r| r.speed.filter(|&s| s > 0)) {
                link.speeds.insert(source, speed);
            }
            let counter = Counter {
                wraps_at_32_bits: rows.iter().any(|r| r.counter_32),
                speed_bps: link.speeds.get(&source).copied(),
            };
            for (direction, pick) in [
                (
                    Direction::In,
                    (|r: &Reading| r.inbound) as fn(&Reading) -> _,
                ),
                (Direction::Out, |r| r.outbound),
            ] {
                let points: Vec<(i64, u64)> = rows
                    .iter()
                    .filter_map(|r| pick(r).map(|v| (r.time_ns, v)))
                    .collect();
                let series = rates_to_samples(&points, start, width, len, counter);
                if series.iter().any(|x| !x.is_nan()) {
                    link.series.insert((source, direction), series);
                }
            }
        }
        Ok(())
    }
}

/// One counter reading of an interface.
#[derive(Debug, Clone, Copy)]
struct Reading {
    time_ns: i64,
    inbound: Option<u64>,
    outbound: Option<u64>,
    speed: Option<u64>,
    counter_32: bool,
}

/// What a counter's readings need to become rates.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counter {
    /// An SNMP agent without 64-bit counters: the counter wraps at 2³².
    pub wraps_at_32_bits: bool,
    pub speed_bps: Option<u64>,
}

/// Zero where a series has no value between its first and last values.
fn fill_between_first_and_last(series: &mut Series) {
    let first = series.iter().position(|x| !x.is_nan());
    let last = series.iter().rposition(|x| !x.is_nan());
    if let (Some(first), Some(last)) = (first, last) {
        for s in series[first..=last].iter_mut().filter(|s| s.is_nan()) {
            *s = 0.0;
        }
    }
}

/// Longest gap between two readings that still gives a rate: past it the
/// average would flatten whatever peaks the gap hid.
const MAX_READING_GAP_NS: i64 = 30 * 60 * 1_000_000_000;

/// The bits per second between consecutive counter readings, spread over
/// the samples each interval overlaps; a sample is kept when readings
/// cover at least half of it. A 32-bit counter (an SNMP agent without
/// ifXTable) that went down wrapped at 2³² if the wrapped rate fits the
/// link's speed; any other counter that went down restarted (the device
/// rebooted), and that interval tells nothing.
pub(crate) fn rates_to_samples(
    points: &[(i64, u64)],
    start_ns: i64,
    sample_ns: i64,
    len: usize,
    counter: Counter,
) -> Series {
    let mut weighted = vec![0.0f64; len];
    let mut covered = vec![0i64; len];
    for pair in points.windows(2) {
        let ((t0, c0), (t1, c1)) = (pair[0], pair[1]);
        let span = t1 - t0;
        if span <= 0 || span > MAX_READING_GAP_NS {
            continue;
        }
        let seconds = span as f64 / 1e9;
        let delta = if c1 >= c0 {
            c1 - c0
        } else if counter.wraps_at_32_bits && c0 < (1 << 32) {
            let wrapped = c1 + (1u64 << 32) - c0;
            let fits = counter
                .speed_bps
                .is_none_or(|s| wrapped as f64 * 8.0 / seconds <= s as f64 * 1.05);
            if !fits {
                continue;
            }
            wrapped
        } else {
            continue;
        };
        let bps = delta as f64 * 8.0 / seconds;
        // the samples [t0, t1) overlaps
        let first = (t0 - start_ns).div_euclid(sample_ns).max(0);
        let last = ((t1 - 1 - start_ns).div_euclid(sample_ns)).min(len as i64 - 1);
        for slot in first..=last {
            let lo = (start_ns + slot * sample_ns).max(t0);
            let hi = (start_ns + (slot + 1) * sample_ns).min(t1);
            if hi > lo {
                weighted[slot as usize] += bps * (hi - lo) as f64;
                covered[slot as usize] += hi - lo;
            }
        }
    }
    weighted
        .iter()
        .zip(&covered)
        .map(|(&w, &c)| {
            if c >= sample_ns / 2 {
                w / c as f64
            } else {
                f64::NAN
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn counter_rates_spread_over_the_samples_they_span() {
        // 60-second readings at a steady 8 Mb/s (1 MB/s) for 15 minutes
        let points: Vec<(i64, u64)> = (0..=15)
            .map(|m| (m * 60 * S, m as u64 * 60_000_000))
            .collect();
        let series = rates_to_samples(&points, 0, SAMPLE_NS, 3, Counter::default());
        assert_eq!(series, vec![8e6, 8e6, 8e6]);
        // readings that cover under half a sample leave it unknown
        let series = rates_to_samples(&points[..3], 0, SAMPLE_NS, 2, Counter::default());
        assert!(series.iter().all(|x| x.is_nan()));
    }

    #[test]
    fn a_32_bit_counter_wraps_and_a_restart_is_skipped() {
        let near = (1u64 << 32) - 1_000_000;
        // wrapped: 2 000 000 octets in each 60 s
        let points = [
            (0, near),
            (60 * S, 1_000_000),
            (120 * S, 3_000_000),
            (180 * S, 5_000_000),
        ];
        let counter_32 = Counter {
            wraps_at_32_bits: true,
            speed_bps: Some(1_000_000_000),
        };
        let series = rates_to_samples(&points, 0, SAMPLE_NS, 1, counter_32);
        let bps = 2_000_000.0 * 8.0 / 60.0;
        assert!((series[0] - bps).abs() < 1e-6);
        // a 64-bit counter going down restarted, even from below 2^32: the
        // interval tells nothing (without the wrap, 120 s of readings)
        let series = rates_to_samples(&points, 0, SAMPLE_NS, 1, Counter::default());
        assert!(series[0].is_nan());
        let restart: Vec<(i64, u64)> = std::iter::once((0, 1u64 << 40))
            .chain((1..=5).map(|m| (m * 60 * S, m as u64 * 10)))
            .collect();
        let series = rates_to_samples(&restart, 0, SAMPLE_NS, 1, counter_32);
        assert_eq!(series[0].round(), 1.0);
    }
}
