//! Journeys and segments in, SLO buckets out: each SLO's figure per
//! 1-minute bucket (by the journey's first observation), judged good or
//! bad once the bucket can no longer grow. The streaming evaluation (rows
//! as the correlator publishes them) and the batch one (rows read back
//! from the store) both go through [`Accumulator`], so they agree.

use std::collections::{BTreeMap, HashSet};

use arrow_array::types::UInt64Type;
use arrow_array::{Array, RecordBatch};
use hopscope_store::query::evaluate;
use hopscope_store::{Backend, Table};

use crate::AnalyzeError;
use crate::columns::{primitive, text, times};
use crate::slo::{BUCKET_NS, Basis, Indicator, Slo, bucket_start};

/// One SLO's judged bucket: a row of the `slo_buckets` table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BucketFigure {
    pub slo: String,
    pub start_ns: i64,
    pub indicator: &'static str,
    pub scope: String,
    pub good: bool,
    /// Packets sent (loss) or delay samples (delay).
    pub events: u64,
    pub lost: u64,
    pub loss_ppm: Option<u32>,
    pub delay_ns: Option<u64>,
    pub threshold: u64,
}

/// What one SLO has gathered in one bucket.
#[derive(Debug, Default, Clone)]
struct Gathered {
    sent: u64,
    lost: u64,
    /// (delay, weight) of each journey or segment with a delay figure.
    delays: Vec<(u64, u64)>,
}

/// What one journey or segment row adds to one SLO's bucket.
struct Contribution {
    start: i64,
    slo: usize,
    sent: u64,
    lost: u64,
    /// Its delay and the weight of it.
    delay: Option<(u64, u64)>,
}

/// The buckets still open, by start, each with every SLO's share.
#[derive(Debug)]
pub struct Accumulator {
    slos: Vec<Slo>,
    open: BTreeMap<i64, Vec<Gathered>>,
    /// Buckets before this are judged: later rows for them are late.
    closed_until: i64,
    /// Journeys that came for a bucket already judged (not counted in it).
    pub late_journeys: u64,
}

/// The journey columns the accumulator reads, besides what selectors read.
pub const JOURNEY_COLUMNS: [&str; 7] = [
    "journey_id",
    "packets",
    "lost",
    "flags",
    "delay_median_ns",
    "delay_p95_ns",
    "delay_max_ns",
];

/// The segment columns it reads.
pub const SEGMENT_COLUMNS: [&str; 9] = [
    "journey_id",
    "upstream",
    "downstream",
    "sent",
    "lost",
    "delay_samples",
    "delay_median_ns",
    "delay_p95_ns",
    "delay_max_ns",
];

impl Accumulator {
    pub fn new(slos: Vec<Slo>) -> Self {
        Accumulator {
            slos,
            open: BTreeMap::new(),
            closed_until: i64::MIN,
            late_journeys: 0,
        }
    }

    pub fn slos(&self) -> &[Slo] {
        &self.slos
    }

    /// Every journey column the SLOs need.
    pub fn journey_columns(&self) -> Vec<&'static str> {
        let mut columns = JOURNEY_COLUMNS.to_vec();
        for s in &self.slos {
            s.selector_columns(&mut columns);
        }
        columns.sort_unstable();
        columns.dedup();
        columns
    }

    /// Adds journeys and the segments of those journeys (the rows the
    /// correlator published together, or one range read from the store).
    /// All or nothing: rows that cannot be read change no bucket.
    pub fn add(
        &mut self,
        journeys: &[RecordBatch],
        segments: &[RecordBatch],
    ) -> Result<(), AnalyzeError> {
        if self.slos.is_empty() {
            return Ok(());
        }
        let n = self.slos.len();
        let closed_until = self.closed_until;
        // what each row adds, applied once every row has been read
        let mut adds: Vec<Contribution> = Vec::new();
        let mut late = 0;
        // the segment SLOs' journeys, by id
        let mut chosen: Vec<HashSet<String>> = vec![HashSet::new(); n];
        let any_segment = self.slos.iter().any(|s| s.segment.is_some());
        for batch in journeys {
            let times = times(batch)?;
            let ids = if any_segment {
                Some(text(batch, "journey_id")?)
            } else {
                None
            };
            let packets = primitive::<UInt64Type>(batch, "packets")?;
            let lost = primitive::<UInt64Type>(batch, "lost")?;
            let flags = text(batch, "flags")?;
            let bucket_of = |row: usize| bucket_start(times.value(row));
            late += (0..batch.num_rows())
                .filter(|&row| bucket_of(row) < closed_until)
                .count() as u64;
            for (k, slo) in self.slos.iter().enumerate() {
                let keep = slo
                    .filter
                    .as_ref()
                    .map(|f| evaluate(f, batch))
                    .transpose()?;
                let delays = match slo.indicator {
                    Indicator::Delay { stat, .. } => {
                        Some(primitive::<UInt64Type>(batch, stat.column())?)
                    }
                    Indicator::Loss { .. } => None,
                };
                for row in 0..batch.num_rows() {
                    let selected = keep
                        .as_ref()
                        .is_none_or(|m| m.is_valid(row) && m.value(row));
                    let start = bucket_of(row);
                    if !selected
                        || Basis::of_flags(flags.value(row)) != slo.basis
                        || start < closed_until
                    {
                        continue;
                    }
                    if let Some(ids) = ids.filter(|_| slo.segment.is_some()) {
                        if ids.is_valid(row) {
                            chosen[k].insert(ids.value(row).to_string());
                        }
                        continue;
                    }
                    let delay = delays
                        .filter(|d| d.is_valid(row))
                        .map(|d| (d.value(row), packets.value(row).max(1)));
                    adds.push(Contribution {
                        start,
                        slo: k,
                        sent: packets.value(row),
                        lost: lost.value(row),
                        delay,
                    });
                }
            }
        }
        if chosen.iter().any(|c| !c.is_empty()) {
            for batch in segments {
                let times = times(batch)?;
                let ids = text(batch, "journey_id")?;
                let up = text(batch, "upstream")?;
                let down = text(batch, "downstream")?;
                let sent = primitive::<UInt64Type>(batch, "sent")?;
                let lost = primitive::<UInt64Type>(batch, "lost")?;
                let samples = primitive::<UInt64Type>(batch, "delay_samples")?;
                for (k, slo) in self.slos.iter().enumerate() {
                    let Some(spec) = slo.segment.as_ref().filter(|_| !chosen[k].is_empty()) else {
                        continue;
                    };
                    let delays = match slo.indicator {
                        Indicator::Delay { stat, .. } => {
                            Some(primitive::<UInt64Type>(batch, stat.column())?)
                        }
                        Indicator::Loss { .. } => None,
                    };
                    for row in 0..batch.num_rows() {
                        if !ids.is_valid(row)
                            || !chosen[k].contains(ids.value(row))
                            || !spec.matches(up.value(row), down.value(row))
                        {
                            continue;
                        }
                        let delay = delays
                            .filter(|d| d.is_valid(row))
                            .map(|d| (d.value(row), samples.value(row).max(1)));
                        adds.push(Contribution {
                            start: bucket_start(times.value(row)),
                            slo: k,
                            sent: sent.value(row),
                            lost: lost.value(row),
                            delay,
                        });
                    }
                }
            }
        }
        self.late_journeys += late;
        for c in adds {
            let g = &mut self
                .open
                .entry(c.start)
                .or_insert_with(|| vec![Gathered::default(); n])[c.slo];
            g.sent += c.sent;
            g.lost += c.lost;
            g.delays.extend(c.delay);
        }
        Ok(())
    }

    /// Judges every bucket that ends by `until_ns`, oldest first.
    pub fn close(&mut self, until_ns: i64) -> Vec<BucketFigure> {
        let mut out = Vec::new();
        while let Some(entry) = self.open.first_entry() {
            let start = *entry.key();
            if start.saturating_add(BUCKET_NS) > until_ns {
                break;
            }
            let gathered = entry.remove();
            for (slo, g) in self.slos.iter().zip(gathered) {
                out.extend(judge(slo, start, g));
            }
        }
        let until = bucket_start(until_ns);
        self.closed_until = self.closed_until.max(until);
        out
    }

    /// Judges every bucket (the end of the input).
    pub fn finish(&mut self) -> Vec<BucketFigure> {
        self.close(i64::MAX)
    }
}

/// A bucket's figure and verdict; none when it rests on too little.
fn judge(slo: &Slo, start_ns: i64, mut g: Gathered) -> Option<BucketFigure> {
    let mut figure = BucketFigure {
        slo: slo.name.clone(),
        start_ns,
        indicator: slo.indicator.name(),
        scope: slo.scope(),
        good: true,
        events: 0,
        lost: 0,
        loss_ppm: None,
        delay_ns: None,
        threshold: slo.indicator.threshold(),
    };
    match slo.indicator {
        Indicator::Loss { max_ppm } => {
            if g.sent < slo.min_events.max(1) {
                return None;
            }
            let ppm = (g.lost as f64 / g.sent as f64 * 1e6).round() as u32;
            figure.events = g.sent;
            figure.lost = g.lost;
            figure.loss_ppm = Some(ppm);
            figure.good = ppm <= max_ppm;
        }
        Indicator::Delay { stat, max_ns } => {
            let samples: u64 = g.delays.iter().map(|(_, w)| w).sum();
            if samples < slo.min_events.max(1) {
                return None;
            }
            let delay = weighted_quantile(&mut g.delays, stat.quantile());
            figure.events = samples;
            figure.delay_ns = Some(delay);
            figure.good = delay <= max_ns;
        }
    }
    Some(figure)
}

/// The value below which `q` of the weight lies (the largest for `q` = 1).
pub(crate) fn weighted_quantile(values: &mut [(u64, u64)], q: f64) -> u64 {
    values.sort_unstable();
    let total: u64 = values.iter().map(|(_, w)| w).sum();
    let target = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for &(v, w) in values.iter() {
        seen += w;
        if seen >= target {
            return v;
        }
    }
    values.last().map_or(0, |(v, _)| *v)
}

/// The SLOs' buckets of `[from_ns, to_ns)` computed again from the
/// journeys and segments in the store, an hour at a time (both tables are
/// partitioned by the journey's first observation, so an hour's segments
/// are its journeys').
pub fn evaluate_range(
    store: &dyn Backend,
    slos: &[Slo],
    from_ns: i64,
    to_ns: i64,
) -> Result<Vec<BucketFigure>, AnalyzeError> {
    let mut acc = Accumulator::new(slos.to_vec());
    let journey_columns = acc.journey_columns();
    let any_segment = slos.iter().any(|s| s.segment.is_some());
    let hour = hopscope_store::layout::HOUR_NS;
    // only the hours that hold journeys: a range may reach far back
    let hours =
        crate::columns::hours_holding(store, Table::Journeys, bucket_start(from_ns), to_ns)?;
    let mut out = Vec::new();
    for h in hours {
        let (at, end) = (
            h.max(bucket_start(from_ns)),
            h.saturating_add(hour).min(to_ns),
        );
        let mut journeys = Vec::new();
        store.scan(Table::Journeys, &journey_columns, at, end, &mut |b| {
            journeys.push(b);
            Ok(())
        })?;
        let mut segments = Vec::new();
        if any_segment && !journeys.is_empty() {
            store.scan(Table::Segments, &SEGMENT_COLUMNS, at, end, &mut |b| {
                segments.push(b);
                Ok(())
            })?;
        }
        acc.add(&journeys, &segments)?;
        out.extend(acc.close(end));
    }
    out.extend(acc.finish());
    Ok(out)
}
