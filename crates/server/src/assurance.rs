//! Service assurance in the API: the SLOs with their budgets and buckets,
//! and the alerts with those still firing. The analyze crate answers from
//! the store; these handlers map HTTP to its calls.

use axum::Json;
use axum::extract::{Query as Params, State};
use hopscope_analyze::{AnalyzeError, RcaTarget};
use hopscope_store::now_ns;
use hopscope_store::query::time_range_or_last;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, AppState, blocking};

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RangeParams {
    since: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// SLOs: judge the range again from the journeys rather than read the
    /// stored buckets.
    #[serde(default)]
    recompute: bool,
}

impl RangeParams {
    /// The range, the last `default` when none is given.
    fn range(&self, default: &str) -> Result<(i64, i64), ApiError> {
        Ok(time_range_or_last(
            self.since.as_deref(),
            self.from.as_deref(),
            self.to.as_deref(),
            default,
            now_ns(),
        )?)
    }
}

impl From<AnalyzeError> for ApiError {
    fn from(e: AnalyzeError) -> Self {
        match e {
            AnalyzeError::Config { .. } | AnalyzeError::Setting { .. } => {
                ApiError::bad_request(e.to_string())
            }
            _ => ApiError::internal(e),
        }
    }
}

/// Every configured SLO: its budget at the end of the range and the
/// range's judged buckets (the last 6 hours unless told).
pub(crate) async fn slos(
    State(state): State<AppState>,
    Params(p): Params<RangeParams>,
) -> Result<Json<Value>, ApiError> {
    let (from_ns, to_ns) = p.range("6h")?;
    let store = state.store.clone();
    let slos = state.analytics.slos.clone();
    let recompute = p.recompute;
    let reports = blocking(move || {
        Ok(hopscope_analyze::slo_report(
            store.as_ref(),
            &slos,
            from_ns,
            to_ns,
            now_ns(),
            recompute,
        )?)
    })
    .await?;
    Ok(Json(json!({
        "slos": reports,
        "recomputed": recompute,
        "from_ns": from_ns,
        "to_ns": to_ns,
    })))
}

/// Alert events of the range (the last 24 hours unless told) and the
/// alerts firing.
pub(crate) async fn alerts(
    State(state): State<AppState>,
    Params(p): Params<RangeParams>,
) -> Result<Json<Value>, ApiError> {
    let (from_ns, to_ns) = p.range("24h")?;
    let store = state.store.clone();
    let report = blocking(move || {
        Ok(hopscope_analyze::alert_report(
            store.as_ref(),
            from_ns,
            to_ns,
        )?)
    })
    .await?;
    Ok(Json(json!({
        "events": report.events,
        "firing": report.firing,
        "from_ns": from_ns,
        "to_ns": to_ns,
    })))
}

/// The security detections' alerts of a range, those firing, and the
/// subjects with the most alerts.
pub(crate) async fn detections(
    State(state): State<AppState>,
    Params(p): Params<RangeParams>,
) -> Result<Json<Value>, ApiError> {
    let (from_ns, to_ns) = p.range("1h")?;
    let store = state.store.clone();
    let report = blocking(move || {
        Ok(hopscope_analyze::detection_report(
            store.as_ref(),
            from_ns,
            to_ns,
        )?)
    })
    .await?;
    Ok(Json(json!({
        "events": report.events,
        "firing": report.firing,
        "offenders": report.offenders,
        "from_ns": from_ns,
        "to_ns": to_ns,
    })))
}

/// The configured segmentation policy over a range: what each rule
/// allowed or denied, the journeys that bypassed a path rule's point, and
/// the violations' alerts.
pub(crate) async fn policy(
    State(state): State<AppState>,
    Params(p): Params<RangeParams>,
) -> Result<Json<Value>, ApiError> {
    let (from_ns, to_ns) = p.range("1h")?;
    let Some(policy) = state.analytics.policy.clone() else {
        return Ok(Json(
            json!({"configured": false, "rules": [], "paths": [], "violations": []}),
        ));
    };
    let store = state.store.clone();
    let (report, alerts) = blocking(move || {
        let report = hopscope_analyze::policy_report(store.as_ref(), &policy, from_ns, to_ns)?;
        let mut alerts = hopscope_analyze::detection_report(store.as_ref(), from_ns, to_ns)?;
        alerts.events.retain(|a| {
            [
                hopscope_analyze::policy::RULE,
                hopscope_analyze::policy::PATH_RULE,
            ]
            .contains(&a.rule.as_str())
        });
        Ok((report, alerts.events))
    })
    .await?;
    Ok(Json(json!({
        "configured": true,
        "rules": report.rules,
        "paths": report.paths,
        "flows": report.flows,
        "journeys": report.journeys,
        "violations": alerts,
        "from_ns": from_ns,
        "to_ns": to_ns,
    })))
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RcaParams {
    since: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// Journeys in the journeys' filter language.
    filter: Option<String>,
    /// The journeys of this SLO.
    slo: Option<String>,
    /// The journeys behind this alert.
    alert: Option<String>,
    /// The baseline before the range (`1h` unless told).
    baseline: Option<String>,
    limit: Option<usize>,
}

/// The segments ranked by the evidence against them.
pub(crate) async fn rca(
    State(state): State<AppState>,
    Params(p): Params<RcaParams>,
) -> Result<Json<Value>, ApiError> {
    let (from_ns, to_ns) = time_range_or_last(
        p.since.as_deref(),
        p.from.as_deref(),
        p.to.as_deref(),
        "15m",
        now_ns(),
    )?;
    let target = match (p.alert, p.slo) {
        (Some(id), _) => RcaTarget::Alert { id },
        (None, Some(name)) => RcaTarget::Slo {
            name,
            from_ns,
            to_ns,
        },
        (None, None) => RcaTarget::Selector {
            selector: p.filter.unwrap_or_default(),
            from_ns,
            to_ns,
        },
    };
    let baseline = match p.baseline.as_deref() {
        None => 3_600_000_000_000,
        Some(b) => hopscope_store::query::parse_duration(b).ok_or_else(|| {
            ApiError::bad_request(format!("baseline '{b}': a duration such as 1h"))
        })?,
    };
    let store = state.store.clone();
    let slos = state.analytics.slos.clone();
    let mut report = blocking(move || {
        Ok(hopscope_analyze::rca_report(
            store.as_ref(),
            &slos,
            &target,
            baseline,
        )?)
    })
    .await?;
    report.candidates.truncate(p.limit.unwrap_or(10));
    Ok(Json(json!(report)))
}
