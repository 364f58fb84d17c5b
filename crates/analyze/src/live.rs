//! The streaming evaluation as `serve` runs it: journeys as the correlator
//! closes them in, judged buckets and alert events out, and where every
//! SLO stands for the API and `/metrics`.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use hopscope_store::Backend;
use serde::Serialize;

use crate::AnalyzeError;
use crate::alert::{Alert, AlertState, Evaluator};
use crate::bucket::{Accumulator, BucketFigure};
use crate::budget::Budget;
use crate::notify::SinkReport;
use crate::rows::{read_alerts, read_buckets};
use crate::segments::{SegmentGauge, SegmentGauges};
use crate::slo::{BUCKET_NS, Slo};

/// What the evaluation produced at one step.
#[derive(Debug, Default)]
pub struct Output {
    pub buckets: Vec<BucketFigure>,
    pub alerts: Vec<Alert>,
}

/// One SLO now.
#[derive(Debug, Clone, Serialize)]
pub struct SloNow {
    pub name: String,
    pub description: String,
    pub indicator: &'static str,
    pub scope: String,
    pub selector: String,
    pub objective: f64,
    pub window_ns: i64,
    pub budget: Budget,
    pub last: Option<BucketFigure>,
    pub buckets_good: u64,
    pub buckets_bad: u64,
}

/// The evaluation's account of itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    pub slos: Vec<SloNow>,
    pub firing: Vec<Alert>,
    pub alert_events: u64,
    pub late_journeys: u64,
    /// The newest bucket end judged.
    pub evaluated_until_ns: Option<i64>,
    /// What each alert destination delivered.
    pub destinations: Vec<SinkReport>,
    /// Every segment's last whole minute.
    pub segments: Vec<SegmentGauge>,
}

/// Streaming SLO evaluation.
#[derive(Debug)]
pub struct Analyzer {
    accumulator: Accumulator,
    evaluator: Evaluator,
    /// How long after a bucket's end journeys of it may still arrive:
    /// the correlator's window, path delay and lateness.
    settle_ns: i64,
    snapshot: Arc<Mutex<Snapshot>>,
    /// Resolve events of restored alerts whose SLO is gone, not yet out.
    resolved_at_restore: Vec<Alert>,
    segments: SegmentGauges,
}

impl Analyzer {
    pub fn new(slos: Vec<Slo>, settle_ns: i64) -> Self {
        let mut snapshot = Snapshot::default();
        let evaluator = Evaluator::new(slos.clone());
        snapshot.slos = now(&evaluator, &[], None, &snapshot.slos);
        Analyzer {
            accumulator: Accumulator::new(slos),
            evaluator,
            settle_ns,
            snapshot: Arc::new(Mutex::new(snapshot)),
            resolved_at_restore: Vec::new(),
            segments: SegmentGauges::default(),
        }
    }

    /// Reads the judged buckets of the longest window and the alert
    /// events back from the store, so that budgets and firing alerts carry
    /// over a restart. Alerts of SLOs no longer configured resolve: their
    /// events come out of the next [`advance`](Self::advance).
    pub fn restore(&mut self, store: &dyn Backend, now_ns: i64) -> Result<(), AnalyzeError> {
        let longest = self
            .evaluator
            .slos()
            .iter()
            .map(Slo::longest_window_ns)
            .max()
            .unwrap_or(0);
        let buckets = read_buckets(store, now_ns.saturating_sub(longest), i64::MAX)?;
        // every alert's last state, however long ago it started
        let alerts = read_alerts(store, i64::MIN, i64::MAX)?;
        self.resolved_at_restore = self.evaluator.restore(&buckets, &alerts, now_ns);
        // rows of buckets already judged would be late
        if let Some(last) = buckets.iter().map(|b| b.start_ns).max() {
            self.accumulator.close(last.saturating_add(BUCKET_NS));
        }
        let mut s = self.snapshot.lock().expect("no panics hold it");
        s.evaluated_until_ns = buckets
            .iter()
            .map(|b| b.start_ns.saturating_add(BUCKET_NS))
            .max();
        // the standing restored, the counts (since start) not
        s.slos = now(&self.evaluator, &[], s.evaluated_until_ns, &s.slos);
        for n in &mut s.slos {
            n.last = buckets.iter().rev().find(|b| b.slo == n.name).cloned();
        }
        s.firing = self.evaluator.active().cloned().collect();
        Ok(())
    }

    pub fn add(
        &mut self,
        journeys: &[RecordBatch],
        segments: &[RecordBatch],
    ) -> Result<(), AnalyzeError> {
        self.accumulator.add(journeys, segments)?;
        self.segments.add(segments)
    }

    /// Judges the buckets the correlator's watermark has settled.
    pub fn advance(&mut self, watermark_ns: i64) -> Output {
        let until = watermark_ns.saturating_sub(self.settle_ns);
        let buckets = self.accumulator.close(until);
        self.segments.close(until);
        let mut alerts = std::mem::take(&mut self.resolved_at_restore);
        alerts.extend(self.evaluator.advance(&buckets, until));
        let out = Output { buckets, alerts };
        self.publish(&out);
        out
    }

    /// Judges every open bucket (the end of the input).
    pub fn finish(&mut self) -> Output {
        let buckets = self.accumulator.finish();
        self.segments.close(i64::MAX);
        let until = buckets
            .iter()
            .map(|b| b.start_ns.saturating_add(BUCKET_NS))
            .max();
        let mut alerts = std::mem::take(&mut self.resolved_at_restore);
        if let Some(until) = until {
            alerts.extend(self.evaluator.advance(&buckets, until));
        }
        let out = Output { buckets, alerts };
        self.publish(&out);
        out
    }

    fn publish(&self, out: &Output) {
        let mut s = self.snapshot.lock().expect("no panics hold it");
        let evaluated = out
            .buckets
            .iter()
            .map(|b| b.start_ns.saturating_add(BUCKET_NS))
            .max();
        s.evaluated_until_ns = s.evaluated_until_ns.max(evaluated);
        s.slos = now(&self.evaluator, &out.buckets, s.evaluated_until_ns, &s.slos);
        s.firing = self.evaluator.active().cloned().collect();
        s.alert_events += out.alerts.len() as u64;
        s.late_journeys = self.accumulator.late_journeys;
        s.segments = self.segments.current().to_vec();
    }

    /// Where the evaluation keeps its account, updated at every step, for
    /// the API and `/metrics` to read from another thread.
    pub fn shared_snapshot(&self) -> Arc<Mutex<Snapshot>> {
        self.snapshot.clone()
    }

    /// What the alert destinations delivered, into the account.
    pub fn set_destinations(&self, reports: Vec<SinkReport>) {
        self.snapshot
            .lock()
            .expect("no panics hold it")
            .destinations = reports;
    }
}

/// Each SLO's standing after `judged`, its counts carried over.
fn now(
    evaluator: &Evaluator,
    judged: &[BucketFigure],
    at_ns: Option<i64>,
    before: &[SloNow],
) -> Vec<SloNow> {
    evaluator
        .slos()
        .iter()
        .enumerate()
        .map(|(k, slo)| {
            let previous = before.iter().find(|p| p.name == slo.name);
            let mine: Vec<&BucketFigure> = judged.iter().filter(|f| f.slo == slo.name).collect();
            let good = mine.iter().filter(|f| f.good).count() as u64;
            SloNow {
                name: slo.name.clone(),
                description: slo.describe(),
                indicator: slo.indicator.name(),
                scope: slo.scope(),
                selector: slo.selector.clone(),
                objective: slo.objective,
                window_ns: slo.window_ns,
                budget: Budget::at(
                    slo,
                    evaluator.history(k),
                    at_ns.unwrap_or_else(|| {
                        evaluator
                            .history(k)
                            .latest()
                            .map_or(0, |l| l.saturating_add(BUCKET_NS))
                    }),
                ),
                last: mine
                    .last()
                    .map(|f| (*f).clone())
                    .or_else(|| previous.and_then(|p| p.last.clone())),
                buckets_good: previous.map_or(0, |p| p.buckets_good) + good,
                buckets_bad: previous.map_or(0, |p| p.buckets_bad) + mine.len() as u64 - good,
            }
        })
        .collect()
}

/// One metric family in Prometheus' text format: `samples` are (labels
/// with their braces, or nothing, and the value).
pub fn write_family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: Vec<(String, f64)>,
) {
    let _ = writeln!(out, "# HELP hopscope_{name} {help}");
    let _ = writeln!(out, "# TYPE hopscope_{name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "hopscope_{name}{labels} {value}");
    }
}

/// The SLOs' gauges and the alerts' counters in Prometheus' text format,
/// so that Prometheus users can write rules of their own over them.
pub fn prometheus(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
        write_family(&mut out, name, kind, help, samples)
    };
    let slo = |s: &SloNow| format!("slo=\"{}\"", s.name);
    let per_slo = |f: &dyn Fn(&SloNow) -> Option<f64>| {
        snapshot
            .slos
            .iter()
            .filter_map(|s| f(s).map(|v| (format!("{{{}}}", slo(s)), v)))
            .collect::<Vec<_>>()
    };
    family(
        "slo_objective",
        "gauge",
        "The share of 1-minute buckets that must be good.",
        per_slo(&|s| Some(s.objective)),
    );
    family(
        "slo_budget_remaining",
        "gauge",
        "Share of the error budget left over the SLO's window (negative once overspent).",
        per_slo(&|s| Some(s.budget.remaining)),
    );
    family(
        "slo_burn_rate",
        "gauge",
        "How fast the error budget burns over a window (1 spends it exactly over the SLO's window).",
        snapshot
            .slos
            .iter()
            .flat_map(|s| {
                s.budget
                    .burn
                    .iter()
                    .map(move |(w, v)| (format!("{{{},window=\"{w}\"}}", slo(s)), *v))
            })
            .collect(),
    );
    family(
        "slo_bucket_good",
        "gauge",
        "Whether the last judged bucket met the threshold.",
        per_slo(&|s| s.last.as_ref().map(|b| f64::from(u8::from(b.good)))),
    );
    family(
        "slo_loss_ratio",
        "gauge",
        "Network loss ratio of the last judged bucket (loss SLOs).",
        per_slo(&|s| {
            s.last
                .as_ref()
                .and_then(|b| b.loss_ppm)
                .map(|p| f64::from(p) / 1e6)
        }),
    );
    family(
        "slo_delay_seconds",
        "gauge",
        "Delay of the last judged bucket at the SLO's percentile (delay SLOs).",
        per_slo(&|s| {
            s.last
                .as_ref()
                .and_then(|b| b.delay_ns)
                .map(|d| d as f64 / 1e9)
        }),
    );
    family(
        "slo_buckets_total",
        "counter",
        "Buckets judged since start, by verdict.",
        snapshot
            .slos
            .iter()
            .flat_map(|s| {
                [
                    (
                        format!("{{{},verdict=\"good\"}}", slo(s)),
                        s.buckets_good as f64,
                    ),
                    (
                        format!("{{{},verdict=\"bad\"}}", slo(s)),
                        s.buckets_bad as f64,
                    ),
                ]
            })
            .collect(),
    );
    family(
        "alerts_firing",
        "gauge",
        "Alerts firing now, by severity.",
        ["page", "ticket"]
            .iter()
            .map(|sev| {
                let n = snapshot
                    .firing
                    .iter()
                    .filter(|a| a.severity == *sev && a.state == AlertState::Firing)
                    .count();
                (format!("{{severity=\"{sev}\"}}"), n as f64)
            })
            .collect(),
    );
    family(
        "alert_events_total",
        "counter",
        "Alert events (firing or resolved) since start.",
        vec![(String::new(), snapshot.alert_events as f64)],
    );
    family(
        "slo_late_journeys_total",
        "counter",
        "Journeys that arrived after their bucket was judged (not counted in it).",
        vec![(String::new(), snapshot.late_journeys as f64)],
    );
    let segment = |g: &SegmentGauge| {
        let escape = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
        format!(
            "{{upstream=\"{}\",downstream=\"{}\"}}",
            escape(&g.upstream),
            escape(&g.downstream)
        )
    };
    let per_segment = |f: &dyn Fn(&SegmentGauge) -> Option<f64>| {
        snapshot
            .segments
            .iter()
            .filter_map(|g| f(g).map(|v| (segment(g), v)))
            .collect::<Vec<_>>()
    };
    family(
        "segment_loss_ratio",
        "gauge",
        "Network loss ratio of each segment in the last whole minute (packet reports' journeys).",
        per_segment(&|g| Some(g.loss_ratio)),
    );
    family(
        "segment_sent_packets",
        "gauge",
        "Selected packets seen at each segment's upstream end in the last whole minute.",
        per_segment(&|g| Some(g.sent as f64)),
    );
    family(
        "segment_delay_seconds",
        "gauge",
        "Mean delay of each segment in the last whole minute (of the journeys' medians).",
        per_segment(&|g| g.delay_mean_ns.map(|d| d / 1e9)),
    );
    family(
        "alert_notifications_total",
        "counter",
        "Alert events per destination, by outcome: sent, failed (after retries) or dropped (queue full).",
        snapshot
            .destinations
            .iter()
            .flat_map(|s| {
                [
                    ("sent", s.sent),
                    ("failed", s.failed),
                    ("dropped", s.dropped),
                ]
                .map(|(outcome, v)| {
                    (
                        format!(
                            "{{kind=\"{}\",target=\"{}\",outcome=\"{outcome}\"}}",
                            s.kind, s.target
                        ),
                        v as f64,
                    )
                })
            })
            .collect(),
    );
    out
}
