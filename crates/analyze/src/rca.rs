//! Root-cause ranking: for a range and a journey selector, which segment
//! of the path is at fault. Each segment (one upstream point to the next,
//! so an ECMP member, a router's inside and a link are each their own) is
//! scored by three kinds of evidence, each as its share of the whole:
//!
//! - **loss**: packets it lost in the range beyond what its baseline loss
//!   ratio predicts, when the excess is clear of chance (the ratio's 95 %
//!   interval lies above the baseline); telemetry loss is already taken
//!   out of every segment's figure, so an exporter that lost records is
//!   never blamed for the network's loss;
//! - **delay**: its mean delay (over the journeys' medians) risen clearly
//!   over the baseline's, times the samples it rests on;
//! - **votes**, as in 007: each journey whose end-to-end delay rose well
//!   above the baseline's, or that lost packets no segment of its own
//!   accounts for, spreads one vote over the segments of its path; what a
//!   segment gathers beyond what its share of the baseline's votes
//!   predicts counts.
//!
//! The baseline is the period before the range (an hour), taken minute by
//! minute: a segment's baseline ratio and delay are the medians of its
//! minutes', so that an earlier incident in the baseline does not hide a
//! new one. The score is the mean of the shares of the kinds of evidence
//! present; the confidence is the score, halved when it rests on votes
//! alone.

use std::collections::{BTreeMap, HashMap};

use arrow_array::types::UInt64Type;
use arrow_array::{Array, RecordBatch};
use hopscope_store::query::{evaluate, parse_journey_filter};
use hopscope_store::{Backend, Table};
use serde::Serialize;

use crate::AnalyzeError;
use crate::columns::{primitive, text, times};
use crate::slo::{Basis, bucket_start};

/// What to rank.
#[derive(Debug, Clone)]
pub struct RcaQuery {
    /// Journeys, in the filter language over the journeys table.
    pub selector: String,
    pub from_ns: i64,
    pub to_ns: i64,
    /// How long before `from_ns` the baseline runs (an hour by default).
    pub baseline_ns: i64,
    pub basis: Basis,
    /// Which evidence counts: an alert on delay is about delay, even when
    /// a loss burst happened in the same minute.
    pub focus: Focus,
}

/// The kinds of evidence a ranking weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Focus {
    #[default]
    All,
    Loss,
    Delay,
}

impl Focus {
    /// The focus of an SLO's indicator (`loss`, `delay`).
    pub fn of_indicator(name: &str) -> Focus {
        match name {
            "loss" => Focus::Loss,
            "delay" => Focus::Delay,
            _ => Focus::All,
        }
    }

    fn loss(self) -> bool {
        self != Focus::Delay
    }

    fn delay(self) -> bool {
        self != Focus::Loss
    }
}

impl RcaQuery {
    pub fn new(selector: &str, from_ns: i64, to_ns: i64) -> Self {
        RcaQuery {
            selector: selector.to_string(),
            from_ns,
            to_ns,
            baseline_ns: 3_600_000_000_000,
            basis: Basis::Packets,
            focus: Focus::All,
        }
    }
}

/// One segment's figures over a period (or, for a baseline, the medians
/// of its minutes').
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Figures {
    pub journeys: u64,
    pub sent: u64,
    pub lost: u64,
    /// Packets missing downstream that the exporter's telemetry loss
    /// explains (not counted as lost).
    pub telemetry_explained: u64,
    pub loss_ratio: f64,
    /// Mean of the journeys' median delays, weighted by their samples.
    pub delay_mean_ns: Option<f64>,
    pub delay_samples: u64,
    #[serde(skip)]
    delay_sum: f64,
}

impl Figures {
    fn add(&mut self, sent: u64, lost: u64, explained: u64, delay: Option<(u64, u64)>) {
        self.journeys += 1;
        self.sent += sent;
        self.lost += lost;
        self.telemetry_explained += explained;
        if let Some((d, w)) = delay {
            self.delay_sum += d as f64 * w as f64;
            self.delay_samples += w;
        }
    }

    fn settle(&mut self) {
        self.loss_ratio = if self.sent == 0 {
            0.0
        } else {
            self.lost as f64 / self.sent as f64
        };
        self.delay_mean_ns =
            (self.delay_samples > 0).then(|| self.delay_sum / self.delay_samples as f64);
    }

    /// The baseline of a segment from its minutes: totals summed, ratio
    /// and delay the medians of the minutes'.
    fn baseline(minutes: &mut [Figures]) -> Figures {
        let mut out = Figures::default();
        for m in minutes.iter_mut() {
            m.settle();
            out.journeys += m.journeys;
            out.sent += m.sent;
            out.lost += m.lost;
            out.telemetry_explained += m.telemetry_explained;
            out.delay_samples += m.delay_samples;
        }
        out.loss_ratio = median(
            minutes
                .iter()
                .filter(|m| m.sent > 0)
                .map(|m| m.loss_ratio)
                .collect(),
        );
        let delays: Vec<f64> = minutes.iter().filter_map(|m| m.delay_mean_ns).collect();
        out.delay_mean_ns = (!delays.is_empty()).then(|| median(delays));
        out
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A ranked segment with what it rests on.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// `upstream > downstream`, as the segments table names them.
    pub segment: String,
    /// `inside core-a`, or `link isp-pe > core-a`.
    pub place: String,
    pub score: f64,
    pub confidence: f64,
    pub now: Figures,
    pub baseline: Figures,
    /// Lost beyond what the baseline's ratio predicts (0 when not clear
    /// of chance).
    pub excess_lost: f64,
    /// Mean delay risen over the baseline's, ns, times the samples (0
    /// when not clearly risen).
    pub excess_delay: f64,
    /// Votes of affected journeys beyond the baseline's share.
    pub votes: f64,
    /// One sentence on why.
    pub why: String,
}

/// The ranking of a range.
#[derive(Debug, Clone, Serialize)]
pub struct RcaReport {
    pub selector: String,
    pub from_ns: i64,
    pub to_ns: i64,
    pub baseline_from_ns: i64,
    pub journeys: u64,
    pub affected_journeys: u64,
    pub candidates: Vec<Candidate>,
}

const JOURNEY_COLUMNS: [&str; 5] = ["journey_id", "packets", "lost", "flags", "delay_median_ns"];
const SEGMENT_COLUMNS: [&str; 8] = [
    "journey_id",
    "upstream",
    "downstream",
    "sent",
    "lost",
    "telemetry_explained",
    "delay_samples",
    "delay_median_ns",
];

struct JourneyFacts {
    /// The minute of the baseline it is in; none for the range itself.
    baseline_minute: Option<i64>,
    lost: bool,
    delay_ns: Option<u64>,
}

type Key = (String, String);

/// Each journey's segments as read: (segment, lost on it).
type Paths<'a> = HashMap<&'a str, Vec<(Key, bool)>>;

/// Ranks the segments of the journeys `query` selects.
pub fn rank(store: &dyn Backend, query: &RcaQuery) -> Result<RcaReport, AnalyzeError> {
    let filter = parse_journey_filter(&query.selector).map_err(|e| AnalyzeError::Config {
        slo: "rca".into(),
        message: format!("selector: {e}"),
    })?;
    let baseline_from = query.from_ns.saturating_sub(query.baseline_ns);
    let mut columns = JOURNEY_COLUMNS.to_vec();
    if let Some(f) = &filter {
        hopscope_store::query::filter_fields(f, &mut columns);
    }
    let mut journeys: HashMap<String, JourneyFacts> = HashMap::new();
    let mut failed = None;
    store.scan(
        Table::Journeys,
        &columns,
        baseline_from,
        query.to_ns,
        &mut |b| {
            if let Err(e) = read_journeys(&b, filter.as_ref(), query, &mut journeys) {
                failed = Some(e);
            }
            Ok(())
        },
    )?;
    if let Some(e) = failed {
        return Err(e);
    }
    let mut now: BTreeMap<Key, Figures> = BTreeMap::new();
    let mut base: BTreeMap<Key, BTreeMap<i64, Figures>> = BTreeMap::new();
    let mut paths: Paths = HashMap::new();
    let mut failed = None;
    store.scan(
        Table::Segments,
        &SEGMENT_COLUMNS,
        baseline_from,
        query.to_ns,
        &mut |b| {
            if let Err(e) = read_segments(&b, &journeys, &mut now, &mut base, &mut paths) {
                failed = Some(e);
            }
            Ok(())
        },
    )?;
    if let Some(e) = failed {
        return Err(e);
    }
    for f in now.values_mut() {
        f.settle();
    }
    let baseline: BTreeMap<Key, Figures> = base
        .into_iter()
        .map(|(k, minutes)| {
            let mut minutes: Vec<Figures> = minutes.into_values().collect();
            (k, Figures::baseline(&mut minutes))
        })
        .collect();
    let (votes, affected) = votes(&journeys, &paths, &now, &baseline, query.focus);
    let mut candidates: Vec<Candidate> = now
        .iter()
        .map(|(key, f)| {
            let b = baseline.get(key).cloned().unwrap_or_default();
            let excess_lost = if query.focus.loss() && loss_clear(f, &b) {
                (f.lost as f64 - f.sent as f64 * b.loss_ratio).max(0.0)
            } else {
                0.0
            };
            let excess_delay = match (f.delay_mean_ns, b.delay_mean_ns) {
                (Some(d), Some(bd)) if query.focus.delay() && delay_clear(f, &b) => {
                    (d - bd) * f.delay_samples as f64
                }
                _ => 0.0,
            };
            Candidate {
                segment: format!("{} > {}", key.0, key.1),
                place: place(&key.0, &key.1),
                score: 0.0,
                confidence: 0.0,
                now: f.clone(),
                baseline: b,
                excess_lost,
                excess_delay,
                votes: votes.get(key).copied().unwrap_or(0.0),
                why: String::new(),
            }
        })
        .collect();
    let total = |f: fn(&Candidate) -> f64| candidates.iter().map(f).sum::<f64>();
    let (loss_total, delay_total, vote_total) = (
        total(|c| c.excess_lost),
        total(|c| c.excess_delay),
        total(|c| c.votes),
    );
    for c in &mut candidates {
        let mut parts = Vec::new();
        if loss_total > 0.0 {
            parts.push(c.excess_lost / loss_total);
        }
        if delay_total > 0.0 {
            parts.push(c.excess_delay / delay_total);
        }
        if vote_total > 0.0 {
            parts.push(c.votes / vote_total);
        }
        c.score = if parts.is_empty() {
            0.0
        } else {
            parts.iter().sum::<f64>() / parts.len() as f64
        };
        let direct = c.excess_lost > 0.0 || c.excess_delay > 0.0;
        c.confidence = if direct { c.score } else { c.score / 2.0 };
        c.why = explain(c);
    }
    candidates.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.segment.cmp(&b.segment))
    });
    Ok(RcaReport {
        selector: query.selector.clone(),
        from_ns: query.from_ns,
        to_ns: query.to_ns,
        baseline_from_ns: baseline_from,
        journeys: journeys
            .values()
            .filter(|j| j.baseline_minute.is_none())
            .count() as u64,
        affected_journeys: affected,
        candidates,
    })
}

fn read_segments<'a>(
    b: &RecordBatch,
    journeys: &'a HashMap<String, JourneyFacts>,
    now: &mut BTreeMap<Key, Figures>,
    base: &mut BTreeMap<Key, BTreeMap<i64, Figures>>,
    paths: &mut Paths<'a>,
) -> Result<(), AnalyzeError> {
    let (ids, up, down) = (
        text(b, "journey_id")?,
        text(b, "upstream")?,
        text(b, "downstream")?,
    );
    let num = |name: &str| primitive::<UInt64Type>(b, name);
    let (sent, lost, explained, samples, median) = (
        num("sent")?,
        num("lost")?,
        num("telemetry_explained")?,
        num("delay_samples")?,
        num("delay_median_ns")?,
    );
    for i in 0..b.num_rows() {
        if !ids.is_valid(i) {
            continue;
        }
        let Some((id, facts)) = journeys.get_key_value(ids.value(i)) else {
            continue;
        };
        let key = (up.value(i).to_string(), down.value(i).to_string());
        let f = match facts.baseline_minute {
            None => now.entry(key.clone()).or_default(),
            Some(m) => base.entry(key.clone()).or_default().entry(m).or_default(),
        };
        let delay = median
            .is_valid(i)
            .then(|| (median.value(i), samples.value(i).max(1)));
        f.add(sent.value(i), lost.value(i), explained.value(i), delay);
        paths
            .entry(id.as_str())
            .or_default()
            .push((key, lost.value(i) > 0));
    }
    Ok(())
}

/// Each segment's votes beyond what the baseline predicts, and how many
/// journeys of the range voted.
fn votes(
    journeys: &HashMap<String, JourneyFacts>,
    paths: &Paths,
    now: &BTreeMap<Key, Figures>,
    baseline: &BTreeMap<Key, Figures>,
    focus: Focus,
) -> (BTreeMap<Key, f64>, u64) {
    // the baseline's end-to-end delay: what "delay rose" is measured from
    let base_delays: Vec<f64> = journeys
        .values()
        .filter(|j| j.baseline_minute.is_some())
        .filter_map(|j| j.delay_ns.map(|d| d as f64))
        .collect();
    let base_e2e = (!base_delays.is_empty()).then(|| median(base_delays));
    // a journey votes when its delay rose, or when it lost packets that no
    // segment of its own shows (its loss is not located)
    let voting = |j: &JourneyFacts, segments: &[(Key, bool)]| {
        let delayed =
            matches!((j.delay_ns, base_e2e), (Some(d), Some(b)) if d as f64 > b * 1.5 + 1e6);
        (focus.delay() && delayed) || (focus.loss() && j.lost && !segments.iter().any(|(_, l)| *l))
    };
    let mut now_votes: BTreeMap<Key, f64> = BTreeMap::new();
    let mut base_votes: BTreeMap<Key, f64> = BTreeMap::new();
    let mut affected = 0;
    for (id, segments) in paths {
        let j = &journeys[*id];
        if !voting(j, segments) {
            continue;
        }
        let votes = if j.baseline_minute.is_none() {
            affected += 1;
            &mut now_votes
        } else {
            &mut base_votes
        };
        let share = 1.0 / segments.len() as f64;
        for (k, _) in segments {
            *votes.entry(k.clone()).or_default() += share;
        }
    }
    let excess = now_votes
        .into_iter()
        .map(|(k, v)| {
            // the baseline's votes per journey on this segment, at today's traffic
            let expected = match (base_votes.get(&k), baseline.get(&k), now.get(&k)) {
                (Some(bv), Some(b), Some(n)) if b.journeys > 0 => {
                    bv / b.journeys as f64 * n.journeys as f64
                }
                _ => 0.0,
            };
            (k, (v - expected).max(0.0))
        })
        .collect();
    (excess, affected)
}

fn read_journeys(
    b: &RecordBatch,
    filter: Option<&hopscope_store::query::Expr>,
    query: &RcaQuery,
    out: &mut HashMap<String, JourneyFacts>,
) -> Result<(), AnalyzeError> {
    let keep = filter.map(|f| evaluate(f, b)).transpose()?;
    let times = times(b)?;
    let (ids, flags) = (text(b, "journey_id")?, text(b, "flags")?);
    let (lost, delay) = (
        primitive::<UInt64Type>(b, "lost")?,
        primitive::<UInt64Type>(b, "delay_median_ns")?,
    );
    for i in 0..b.num_rows() {
        if keep.as_ref().is_some_and(|k| !k.value(i) || k.is_null(i)) || !ids.is_valid(i) {
            continue;
        }
        if Basis::of_flags(flags.value(i)) != query.basis {
            continue;
        }
        let t = times.value(i);
        out.insert(
            ids.value(i).to_string(),
            JourneyFacts {
                baseline_minute: (t < query.from_ns).then(|| bucket_start(t)),
                lost: lost.value(i) > 0,
                delay_ns: delay.is_valid(i).then(|| delay.value(i)),
            },
        );
    }
    Ok(())
}

/// `inside core-a` when both ends are points of one node, else the link.
fn place(upstream: &str, downstream: &str) -> String {
    let node = |p: &str| p.split(':').next().unwrap_or(p).to_string();
    let (a, b) = (node(upstream), node(downstream));
    if a == b {
        format!("inside {a}")
    } else {
        format!("link {a} > {b}")
    }
}

/// Loss clear of chance: a few packets lost, and the ratio's 95 %
/// interval above the baseline's ratio.
fn loss_clear(now: &Figures, base: &Figures) -> bool {
    now.lost >= 3 && hopscope_correlate::wilson_interval(now.lost, now.sent).0 > base.loss_ratio
}

/// Delay clearly risen: on ten samples or more, a fifth and 0.2 ms above
/// the baseline's.
fn delay_clear(now: &Figures, base: &Figures) -> bool {
    matches!((now.delay_mean_ns, base.delay_mean_ns),
        (Some(d), Some(b)) if now.delay_samples >= 10 && d > b * 1.2 + 200_000.0)
}

fn explain(c: &Candidate) -> String {
    let mut parts = Vec::new();
    if c.excess_lost > 0.0 {
        parts.push(format!(
            "lost {} of {} packets ({:.2} %; {:.2} % in a usual minute before)",
            c.now.lost,
            c.now.sent,
            c.now.loss_ratio * 100.0,
            c.baseline.loss_ratio * 100.0
        ));
    }
    if c.excess_delay > 0.0
        && let (Some(d), Some(b)) = (c.now.delay_mean_ns, c.baseline.delay_mean_ns)
    {
        parts.push(format!(
            "mean delay {:.2} ms ({:.2} ms before)",
            d / 1e6,
            b / 1e6
        ));
    }
    if c.votes > 0.0 {
        parts.push(format!(
            "{:.1} votes of affected journeys beyond the usual",
            c.votes
        ));
    }
    if c.now.telemetry_explained > 0 {
        parts.push(format!(
            "{} packets missing downstream are its exporter's telemetry loss, not counted",
            c.now.telemetry_explained
        ));
    }
    if parts.is_empty() {
        "nothing out of the ordinary".into()
    } else {
        parts.join("; ")
    }
}

/// One segment's figures bucket by bucket.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentSeries {
    pub segment: String,
    pub place: String,
    pub lost: u64,
    /// Per bucket of [`SeriesReport::buckets`]: none where the segment saw
    /// no journey.
    pub points: Vec<Option<SeriesPoint>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeriesPoint {
    pub journeys: u64,
    pub sent: u64,
    pub lost: u64,
    pub loss_ratio: f64,
    pub telemetry_explained: u64,
    /// Mean of the journeys' median delays, weighted by their samples.
    pub delay_mean_ns: Option<f64>,
}

/// Loss and delay per segment as time series: a burst shows as a burst.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesReport {
    pub bucket_ns: i64,
    /// Bucket starts, oldest first.
    pub buckets: Vec<i64>,
    /// The segments, the most lossy first.
    pub segments: Vec<SegmentSeries>,
}

/// The segments of the journeys `selector` picks in `[from_ns, to_ns)`,
/// per bucket of `bucket_ns` (whole minutes: segments are gathered by
/// minute).
pub fn segment_series(
    store: &dyn Backend,
    selector: &str,
    basis: Basis,
    from_ns: i64,
    to_ns: i64,
    bucket_ns: i64,
) -> Result<SeriesReport, AnalyzeError> {
    let minute = crate::slo::BUCKET_NS;
    if bucket_ns < minute || bucket_ns % minute != 0 {
        return Err(AnalyzeError::Config {
            slo: "series".into(),
            message: format!("a bucket is whole minutes, not {bucket_ns} ns"),
        });
    }
    let filter = parse_journey_filter(selector).map_err(|e| AnalyzeError::Config {
        slo: "series".into(),
        message: format!("filter: {e}"),
    })?;
    let mut columns = JOURNEY_COLUMNS.to_vec();
    if let Some(f) = &filter {
        hopscope_store::query::filter_fields(f, &mut columns);
    }
    // every journey of the range by its minute: read as a baseline that
    // ends where the range does
    let query = RcaQuery {
        basis,
        ..RcaQuery::new(selector, to_ns, to_ns)
    };
    let mut journeys: HashMap<String, JourneyFacts> = HashMap::new();
    let mut failed = None;
    store.scan(Table::Journeys, &columns, from_ns, to_ns, &mut |b| {
        if let Err(e) = read_journeys(&b, filter.as_ref(), &query, &mut journeys) {
            failed = Some(e);
        }
        Ok(())
    })?;
    let mut by_minute: BTreeMap<Key, BTreeMap<i64, Figures>> = BTreeMap::new();
    let (mut none, mut paths) = (BTreeMap::new(), HashMap::new());
    store.scan(
        Table::Segments,
        &SEGMENT_COLUMNS,
        from_ns,
        to_ns,
        &mut |b| {
            if let Err(e) = read_segments(&b, &journeys, &mut none, &mut by_minute, &mut paths) {
                failed = Some(e);
            }
            Ok(())
        },
    )?;
    if let Some(e) = failed {
        return Err(e);
    }
    let first = by_minute.values().flat_map(|m| m.keys()).min().copied();
    let last = by_minute.values().flat_map(|m| m.keys()).max().copied();
    let bucket_of = |t: i64| t.div_euclid(bucket_ns).saturating_mul(bucket_ns);
    let buckets: Vec<i64> = match (first, last) {
        (Some(a), Some(b)) => {
            let (a, b) = (bucket_of(a), bucket_of(b));
            (0..=(b - a) / bucket_ns)
                .map(|i| a + i * bucket_ns)
                .collect()
        }
        _ => Vec::new(),
    };
    let mut segments: Vec<SegmentSeries> = by_minute
        .into_iter()
        .map(|((up, down), minutes)| {
            let mut merged: Vec<Option<Figures>> = vec![None; buckets.len()];
            for (m, f) in minutes {
                let i = ((bucket_of(m) - buckets[0]) / bucket_ns) as usize;
                let slot = merged[i].get_or_insert_with(Figures::default);
                slot.journeys += f.journeys;
                slot.sent += f.sent;
                slot.lost += f.lost;
                slot.telemetry_explained += f.telemetry_explained;
                slot.delay_sum += f.delay_sum;
                slot.delay_samples += f.delay_samples;
            }
            let points: Vec<Option<SeriesPoint>> = merged
                .into_iter()
                .map(|f| {
                    f.map(|mut f| {
                        f.settle();
                        SeriesPoint {
                            journeys: f.journeys,
                            sent: f.sent,
                            lost: f.lost,
                            loss_ratio: f.loss_ratio,
                            telemetry_explained: f.telemetry_explained,
                            delay_mean_ns: f.delay_mean_ns,
                        }
                    })
                })
                .collect();
            SegmentSeries {
                segment: format!("{up} > {down}"),
                place: place(&up, &down),
                lost: points.iter().flatten().map(|p| p.lost).sum(),
                points,
            }
        })
        .collect();
    segments.sort_by(|a, b| b.lost.cmp(&a.lost).then_with(|| a.segment.cmp(&b.segment)));
    Ok(SeriesReport {
        bucket_ns,
        buckets,
        segments,
    })
}
