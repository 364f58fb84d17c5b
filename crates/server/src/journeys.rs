//! Journeys as the streaming correlator stored them: a list (filtered,
//! sorted by loss, delay or time), one journey with its hop-by-hop detail,
//! and segments pooled over the journeys of a range. The store answers;
//! these handlers map HTTP to its calls.

use axum::Json;
use axum::extract::{Path, Query as Params, State};
use axum::http::StatusCode;
use hopscope_store::journeys::{JourneyListing, JourneySort};
use hopscope_store::now_ns;
use hopscope_store::query::time_range_or_last;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, AppState, blocking};

/// Journeys listed at most, whatever `limit` asks.
const MAX_LIST: usize = 10_000;

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct JourneyParams {
    /// The flow filter language over journey columns (`lost > 0`, `path "r2"`).
    filter: Option<String>,
    since: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// `loss` (packets lost, default), `ratio` (lost share), `delay`
    /// (end-to-end p95) or `time`.
    sort: Option<String>,
    limit: Option<usize>,
    /// Segments: per bucket of this width (`1m`, `5m`) instead of pooled.
    bucket: Option<String>,
}

impl JourneyParams {
    /// The time range, the last 15 minutes when none is given.
    fn range(&self) -> Result<(i64, i64), ApiError> {
        Ok(time_range_or_last(
            self.since.as_deref(),
            self.from.as_deref(),
            self.to.as_deref(),
            "15m",
            now_ns(),
        )?)
    }
}

/// The journeys of a range, the worst first.
pub(crate) async fn list(
    State(state): State<AppState>,
    Params(p): Params<JourneyParams>,
) -> Result<Json<Value>, ApiError> {
    let (from_ns, to_ns) = p.range()?;
    let listing = JourneyListing {
        filter: p.filter.clone().unwrap_or_default(),
        from_ns,
        to_ns,
        sort: JourneySort::parse(p.sort.as_deref().unwrap_or("loss"))?,
        limit: p.limit.unwrap_or(100).min(MAX_LIST),
    };
    let store = state.store.clone();
    let sort = listing.sort.name();
    let page = blocking(move || Ok(store.journeys(&listing)?)).await?;
    Ok(Json(json!({
        "journeys": page.rows,
        "matched": page.matched,
        "sort": sort,
        "from_ns": from_ns,
        "to_ns": to_ns,
    })))
}

/// One journey: its columns and its hop-by-hop `detail` as JSON.
pub(crate) async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let wanted = id.clone();
    let found = blocking(move || Ok(store.journey(&wanted)?)).await?;
    found.map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no journey {id} (retention may have removed it)"),
        )
    })
}

/// Segments pooled over the journeys of a range: where, across every flow,
/// packets are lost and delayed.
pub(crate) async fn segments(
    State(state): State<AppState>,
    Params(p): Params<JourneyParams>,
) -> Result<Json<Value>, ApiError> {
    let (from_ns, to_ns) = p.range()?;
    let store = state.store.clone();
    let filter = p.filter.clone().unwrap_or_default();
    if let Some(bucket) = &p.bucket {
        let bucket_ns = hopscope_store::query::parse_duration(bucket).ok_or_else(|| {
            ApiError::bad_request(format!("bucket '{bucket}': a duration such as 1m"))
        })?;
        let limit = p.limit.unwrap_or(20);
        let mut series = blocking(move || {
            Ok(hopscope_analyze::segment_series(
                store.as_ref(),
                &filter,
                hopscope_analyze::slo::Basis::Packets,
                from_ns,
                to_ns,
                bucket_ns,
            )?)
        })
        .await?;
        series.segments.truncate(limit);
        return Ok(Json(json!({
            "series": series,
            "from_ns": from_ns,
            "to_ns": to_ns,
        })));
    }
    let (pooled, journeys, unreadable) = blocking(move || {
        let details = store.journey_details(&filter, from_ns, to_ns)?;
        let (pooled, unreadable) =
            hopscope_correlate::summarize_stored_segments(details.iter().map(String::as_str));
        Ok((pooled, details.len(), unreadable))
    })
    .await?;
    Ok(Json(json!({
        "segments": pooled.segments,
        "ecmp": pooled.ecmp,
        "journeys": journeys,
        "unreadable": unreadable,
        "from_ns": from_ns,
        "to_ns": to_ns,
    })))
}
