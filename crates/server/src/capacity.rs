//! Capacity planning in the API: every link's utilisation, billing
//! percentile, headroom and forecast, and one link's chart with what grew.
//! The analyze crate answers from the store; these handlers map HTTP to
//! its calls.

use axum::Json;
use axum::extract::{Query as Params, State};
use axum::http::StatusCode;
use hopscope_analyze::capacity::{Capacity, LinkKey, Settings, find_link, growth, load_directory};
use hopscope_store::now_ns;
use hopscope_store::query::time_range_or_last;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, AppState, blocking};

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CapacityParams {
    since: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// The samples' width: `5m` (the default, as billing has it) or `1m`.
    sample: Option<String>,
    /// `/api/capacity/link`: `EXPORTER:IFINDEX` or `EXPORTER:IFNAME`.
    port: Option<String>,
}

impl CapacityParams {
    /// The range and samples asked for: the configured history and sample
    /// width unless told.
    fn read(&self, state: &AppState) -> Result<(Capacity, Settings), ApiError> {
        let config = &state.analytics.capacity;
        let mut config = config.config.clone();
        if let Some(s) = &self.sample {
            config.sample = s.clone();
        }
        let settings = config
            .check()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let (from_ns, to_ns) = time_range_or_last(
            self.since.as_deref(),
            self.from.as_deref(),
            self.to.as_deref(),
            &config.history,
            now_ns(),
        )?;
        let directory = match state.analytics.capacity.store_root.as_deref() {
            Some(root) => load_directory(root)?,
            None => Default::default(),
        };
        let capacity = Capacity::read(state.store.as_ref(), from_ns, to_ns, &settings, &directory)?;
        Ok((capacity, settings))
    }
}

/// Every link of the range, the least headroom first, and the port groups.
pub(crate) async fn report(
    State(state): State<AppState>,
    Params(p): Params<CapacityParams>,
) -> Result<Json<Value>, ApiError> {
    let (capacity, _) = blocking(move || p.read(&state)).await?;
    Ok(Json(json!(capacity.report)))
}

/// One link: its samples from each source, daily percentiles, forecast
/// days, and the traffic through its busier direction that grew the most.
pub(crate) async fn link(
    State(state): State<AppState>,
    Params(p): Params<CapacityParams>,
) -> Result<Json<Value>, ApiError> {
    let port = p
        .port
        .clone()
        .ok_or_else(|| ApiError::bad_request("give port=EXPORTER:IFINDEX or EXPORTER:IFNAME"))?;
    let store = state.store.clone();
    blocking(move || {
        let (capacity, settings) = p.read(&state)?;
        let not_found = |m: String| ApiError::new(StatusCode::NOT_FOUND, m);
        let link = find_link(&capacity.report.links, &port)
            .ok_or_else(|| not_found(format!("no link '{port}' in the range")))?;
        let key = LinkKey {
            exporter: link.exporter,
            if_index: link.if_index,
        };
        let direction = link.busier();
        let detail = capacity
            .detail(key, &settings)
            .ok_or_else(|| not_found(format!("no samples of '{port}'")))?;
        let grew = growth(
            store.as_ref(),
            key,
            direction,
            capacity.report.from_ns,
            capacity.report.to_ns,
            5,
        )?;
        Ok(Json(json!({
            "detail": detail,
            "growth": grew,
            "growth_direction": direction,
        })))
    })
    .await
}
