//! What `hopscope slo`, `hopscope alerts` and the API answer: each SLO's
//! budget and buckets over a range, and the alerts of a range with those
//! still firing, read from the store through its trait (or, for SLOs,
//! computed again from the journeys).

use std::collections::BTreeMap;

use hopscope_store::Backend;
use serde::Serialize;

use crate::AnalyzeError;
use crate::alert::{Alert, AlertState};
use crate::bucket::{BucketFigure, evaluate_range};
use crate::budget::{Budget, histories};
use crate::rca::Focus;
use crate::rows::{read_alerts, read_buckets};
use crate::slo::{BUCKET_NS, Basis, Slo, bucket_start};

/// One SLO over a range.
#[derive(Debug, Clone, Serialize)]
pub struct SloReport {
    pub name: String,
    pub description: String,
    pub indicator: &'static str,
    pub scope: String,
    pub selector: String,
    pub objective: f64,
    pub window_ns: i64,
    pub labels: BTreeMap<String, String>,
    /// At the end of the range, over the SLO's window before it.
    pub budget: Budget,
    /// The range's judged buckets, oldest first.
    pub buckets: Vec<BucketFigure>,
    pub bad_buckets: usize,
}

/// Every SLO over `[from_ns, to_ns)` (`to_ns` no later than `now_ns`):
/// from the stored buckets, or with `recompute` from the journeys and
/// segments in the store.
pub fn slo_report(
    store: &dyn Backend,
    slos: &[Slo],
    from_ns: i64,
    to_ns: i64,
    now_ns: i64,
    recompute: bool,
) -> Result<Vec<SloReport>, AnalyzeError> {
    // whole buckets only, when judging again: none still open now
    let whole_until = bucket_start(to_ns.min(now_ns));
    let longest = slos.iter().map(Slo::longest_window_ns).max().unwrap_or(0);
    let history_from = whole_until
        .saturating_sub(longest)
        .min(from_ns.max(i64::MIN / 2));
    let figures = if recompute {
        evaluate_range(store, slos, history_from, whole_until)?
    } else {
        // every stored bucket that starts in the range: `serve` judges the
        // last, partial one when it stops
        read_buckets(
            store,
            history_from,
            to_ns.min(now_ns.saturating_add(BUCKET_NS)),
        )?
    };
    // the budget as of the newest bucket judged
    let end = figures
        .iter()
        .map(|f| f.start_ns.saturating_add(BUCKET_NS))
        .max()
        .unwrap_or(whole_until)
        .max(whole_until);
    let histories = histories(slos, &figures);
    Ok(slos
        .iter()
        .zip(histories)
        .map(|(slo, history)| {
            let buckets: Vec<BucketFigure> = figures
                .iter()
                .filter(|f| f.slo == slo.name && f.start_ns >= from_ns && f.start_ns < to_ns)
                .cloned()
                .collect();
            SloReport {
                name: slo.name.clone(),
                description: slo.describe(),
                indicator: slo.indicator.name(),
                scope: slo.scope(),
                selector: slo.selector.clone(),
                objective: slo.objective,
                window_ns: slo.window_ns,
                labels: slo.labels.clone(),
                budget: Budget::at(slo, &history, end),
                bad_buckets: buckets.iter().filter(|b| !b.good).count(),
                buckets,
            }
        })
        .collect())
}

/// The alert events of a range and the alerts firing at its end.
#[derive(Debug, Clone, Serialize)]
pub struct AlertReport {
    pub events: Vec<Alert>,
    pub firing: Vec<Alert>,
}

/// How far back an alert that still fires may have started.
const FIRING_LOOKBACK_NS: i64 = 30 * 86_400_000_000_000;

pub fn alert_report(
    store: &dyn Backend,
    from_ns: i64,
    to_ns: i64,
) -> Result<AlertReport, AnalyzeError> {
    let lookback = from_ns.min(
        to_ns
            .min(hopscope_store::now_ns())
            .saturating_sub(FIRING_LOOKBACK_NS),
    );
    let all = read_alerts(store, lookback, to_ns)?;
    let mut last: BTreeMap<&str, &Alert> = BTreeMap::new();
    for a in &all {
        last.insert(&a.id, a);
    }
    let mut firing: Vec<Alert> = last
        .values()
        .filter(|a| a.state == AlertState::Firing)
        .map(|a| (*a).clone())
        .collect();
    firing.sort_by_key(|a| std::cmp::Reverse(a.starts_ns));
    let events = all.into_iter().filter(|a| a.at_ns >= from_ns).collect();
    Ok(AlertReport { events, firing })
}

/// The detection alerts of a range: their events, those firing at its
/// end, and the subjects (sources, destinations, listed addresses) with
/// the most alerts.
#[derive(Debug, Clone, Serialize)]
pub struct DetectionReport {
    pub events: Vec<Alert>,
    pub firing: Vec<Alert>,
    pub offenders: Vec<Offender>,
}

/// A subject of detection alerts.
#[derive(Debug, Clone, Serialize)]
pub struct Offender {
    pub subject: String,
    pub rules: Vec<String>,
    pub alerts: u64,
    pub last_ns: i64,
}

impl DetectionReport {
    /// The report of these events and alerts firing; the offenders are
    /// counted from the events.
    pub fn new(events: Vec<Alert>, firing: Vec<Alert>) -> DetectionReport {
        let mut by_subject: BTreeMap<String, Offender> = BTreeMap::new();
        for a in events.iter().filter(|a| a.state == AlertState::Firing) {
            let subject = a.labels.get("subject").cloned().unwrap_or_default();
            let o = by_subject.entry(subject.clone()).or_insert(Offender {
                subject,
                rules: Vec::new(),
                alerts: 0,
                last_ns: a.at_ns,
            });
            if !o.rules.contains(&a.rule) {
                o.rules.push(a.rule.clone());
            }
            o.alerts += 1;
            o.last_ns = o.last_ns.max(a.at_ns);
        }
        let mut offenders: Vec<Offender> = by_subject.into_values().collect();
        offenders.sort_by(|a, b| b.alerts.cmp(&a.alerts).then(b.last_ns.cmp(&a.last_ns)));
        DetectionReport {
            events,
            firing,
            offenders,
        }
    }
}

/// The detection alerts `serve` stored over a range.
pub fn detection_report(
    store: &dyn Backend,
    from_ns: i64,
    to_ns: i64,
) -> Result<DetectionReport, AnalyzeError> {
    let mut report = alert_report(store, from_ns, to_ns)?;
    report.events.retain(crate::detect::is_detection);
    report.firing.retain(crate::detect::is_detection);
    Ok(DetectionReport::new(report.events, report.firing))
}

/// What a root-cause ranking is asked about.
#[derive(Debug, Clone)]
pub enum RcaTarget {
    /// Journeys of a selector over a range.
    Selector {
        selector: String,
        from_ns: i64,
        to_ns: i64,
    },
    /// An SLO's journeys over a range.
    Slo {
        name: String,
        from_ns: i64,
        to_ns: i64,
    },
    /// The journeys behind an alert (its evidence's selector and range).
    Alert { id: String },
}

/// Ranks the segments behind an alert, an SLO or a selector.
pub fn rca_report(
    store: &dyn Backend,
    slos: &[Slo],
    target: &RcaTarget,
    baseline_ns: i64,
) -> Result<crate::rca::RcaReport, AnalyzeError> {
    let not_found = |what: String| AnalyzeError::Config {
        slo: "rca".into(),
        message: what,
    };
    let (selector, from_ns, to_ns, focus, basis) = match target {
        RcaTarget::Selector {
            selector,
            from_ns,
            to_ns,
        } => (
            selector.clone(),
            *from_ns,
            *to_ns,
            Focus::All,
            Basis::Packets,
        ),
        RcaTarget::Slo {
            name,
            from_ns,
            to_ns,
        } => {
            let slo = slos
                .iter()
                .find(|s| &s.name == name)
                .ok_or_else(|| not_found(format!("no SLO is named '{name}'")))?;
            (
                slo.selector.clone(),
                *from_ns,
                *to_ns,
                Focus::of_indicator(slo.indicator.name()),
                slo.basis,
            )
        }
        RcaTarget::Alert { id } => {
            let alerts = read_alerts(store, i64::MIN, i64::MAX)?;
            let alert = alerts
                .iter()
                .find(|a| &a.id == id)
                .ok_or_else(|| not_found(format!("no alert has the id '{id}'")))?;
            return rca_for_alert(store, alert, baseline_ns);
        }
    };
    let mut query = crate::rca::RcaQuery::new(&selector, from_ns, to_ns);
    query.baseline_ns = baseline_ns;
    query.focus = focus;
    query.basis = basis;
    crate::rca::rank(store, &query)
}

/// Ranks the segments behind an alert: its evidence's journeys, weighing
/// the evidence of its indicator.
pub fn rca_for_alert(
    store: &dyn Backend,
    alert: &Alert,
    baseline_ns: i64,
) -> Result<crate::rca::RcaReport, AnalyzeError> {
    let j = &alert.evidence["journeys"];
    let (Some(from_ns), Some(to_ns)) = (j["from_ns"].as_i64(), j["to_ns"].as_i64()) else {
        return Err(AnalyzeError::Config {
            slo: "rca".into(),
            message: format!("alert '{}' names no journeys", alert.id),
        });
    };
    let mut query = crate::rca::RcaQuery::new(j["filter"].as_str().unwrap_or(""), from_ns, to_ns);
    query.baseline_ns = baseline_ns;
    query.focus = Focus::of_indicator(alert.evidence["indicator"].as_str().unwrap_or(""));
    query.basis = alert.evidence["basis"]
        .as_str()
        .and_then(Basis::parse)
        .unwrap_or(Basis::Packets);
    crate::rca::rank(store, &query)
}
