//! Read-only SQL over the store (DataFusion), bounded in time, memory and
//! rows; in builds without the `sql` feature, a clear refusal.

use axum::Json;
use axum::extract::{Query as Params, State};
use serde::Deserialize;
use serde_json::Value;

use crate::{ApiError, AppState};

// builds without SQL parse the parameters only to refuse them
#[cfg_attr(not(feature = "sql"), allow(dead_code))]
#[derive(Debug, Deserialize)]
pub(crate) struct SqlParams {
    /// The statement (SELECT only; the tables are read-only).
    q: String,
    /// Rows returned at most (default and cap: 10 000).
    max_rows: Option<usize>,
}

/// Limits of one API query: tighter than the CLI's, as a server shares its machine.
#[cfg(feature = "sql")]
const MAX_ROWS: usize = 10_000;

#[cfg(feature = "sql")]
pub(crate) async fn query(
    State(state): State<AppState>,
    Params(p): Params<SqlParams>,
) -> Result<Json<Value>, ApiError> {
    use hopscope_store::sql::SqlLimits;
    let limits = SqlLimits {
        memory_bytes: 512 << 20,
        timeout: std::time::Duration::from_secs(30),
        max_rows: p.max_rows.unwrap_or(MAX_ROWS).min(MAX_ROWS),
    };
    let store = state.store.clone();
    let out = crate::blocking(move || {
        store
            .sql(&p.q, limits)
            .map_err(|e| ApiError::bad_request(e.to_string()))
    })
    .await?;
    // DataFusion's batches are of its own Arrow version: rendered by the store
    let lines = out
        .render(hopscope_store::render::Format::Json)
        .map_err(ApiError::internal)?;
    let rows: Vec<Value> = lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({
        "rows": rows,
        "truncated": out.truncated,
    })))
}

#[cfg(not(feature = "sql"))]
pub(crate) async fn query(
    State(_): State<AppState>,
    Params(_): Params<SqlParams>,
) -> Result<Json<Value>, ApiError> {
    Err(ApiError::new(
        axum::http::StatusCode::NOT_IMPLEMENTED,
        "this hopscope was built without SQL (cargo build --release --features sql); /api/flows answers most questions",
    ))
}
