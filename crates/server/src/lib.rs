//! hopscope's HTTP API and web UI over the store and the process's own
//! account ([`Telemetry`]): flows (filters, group-by, aggregates, time buckets, top-N) and
//! time series, journeys (a list, one, and per-segment summaries),
//! SLOs with their error budgets and the alerts they raised, capacity
//! (utilisation, billing percentiles, forecasts),
//! exporters and their health, read-only SQL (with the `sql` feature),
//! `/metrics` (Prometheus) and `/health`, described by the OpenAPI document
//! at `/api/openapi.json`; the web UI at `/` with its assets embedded.
//!
//! It binds to 127.0.0.1 unless told otherwise; bound anywhere else it
//! refuses to start without a token, and then requires it on every request
//! (`Authorization: Bearer TOKEN`, or a `token` cookie for the UI). Errors
//! are JSON with a message; a filter that does not parse gets 400 with the
//! position of the mistake.

#![forbid(unsafe_code)]

mod assurance;
mod capacity;
mod flows;
mod journeys;
mod openapi;
mod sql;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hopscope_store::query::QueryError;
use hopscope_store::{Backend, now_ns};
use serde_json::json;

/// The process's account of itself, as whoever runs the server keeps it:
/// `/api/status` and `/api/exporters` show [`Telemetry::status`], `/metrics`
/// shows [`Telemetry::prometheus`]. The server renders what it is given
/// and knows nothing of the counters behind it.
pub trait Telemetry: Send + Sync + std::fmt::Debug {
    /// The status document (JSON), with an `exporters` list.
    fn status(&self, now_ns: i64) -> serde_json::Value;
    /// The same in Prometheus' text exposition format.
    fn prometheus(&self, now_ns: i64) -> String;
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn Backend>,
    pub telemetry: Arc<dyn Telemetry>,
    pub analytics: Analytics,
    token: Option<Arc<str>>,
}

/// What the API judges by: the configured SLOs (`/api/slos`),
/// segmentation policy (`/api/policy`) and capacity settings
/// (`/api/capacity`).
#[derive(Debug, Clone, Default)]
pub struct Analytics {
    pub slos: Arc<[hopscope_analyze::Slo]>,
    pub policy: Option<Arc<hopscope_analyze::Policy>>,
    pub capacity: Arc<CapacityContext>,
}

/// `[capacity]` as configured, and where the SNMP poller keeps the
/// interfaces' names and speeds (the store's directory, when it has one).
#[derive(Debug, Clone, Default)]
pub struct CapacityContext {
    pub config: hopscope_analyze::capacity::CapacityConfig,
    pub store_root: Option<std::path::PathBuf>,
}

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "the API would listen on {0}, beyond this machine: give a token (--token or HOPSCOPE_TOKEN) that clients must send"
    )]
    TokenRequired(SocketAddr),
    #[error("listening on {addr}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The API's and the UI's routes.
pub fn router(
    store: Arc<dyn Backend>,
    telemetry: Arc<dyn Telemetry>,
    token: Option<String>,
    analytics: Analytics,
) -> Router {
    let state = AppState {
        store,
        telemetry,
        analytics,
        token: token.map(Arc::from),
    };
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(prometheus))
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/status", get(status))
        .route("/api/exporters", get(exporters))
        .route("/api/fields", get(flows::fields))
        .route("/api/flows", get(flows::flows))
        .route("/api/timeseries", get(flows::timeseries))
        .route("/api/journeys", get(journeys::list))
        .route("/api/journeys/segments", get(journeys::segments))
        .route("/api/journeys/{id}", get(journeys::one))
        .route("/api/sql", get(sql::query))
        .route("/api/slos", get(assurance::slos))
        .route("/api/alerts", get(assurance::alerts))
        .route("/api/detections", get(assurance::detections))
        .route("/api/policy", get(assurance::policy))
        .route("/api/rca", get(assurance::rca))
        .route("/api/capacity", get(capacity::report))
        .route("/api/capacity/link", get(capacity::link))
        .route("/", get(ui::index))
        .route("/assets/{file}", get(ui::asset))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Binds `addr` (checking the token rule) and serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    store: Arc<dyn Backend>,
    telemetry: Arc<dyn Telemetry>,
    token: Option<String>,
    analytics: Analytics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    if !addr.ip().is_loopback() && token.as_deref().is_none_or(str::is_empty) {
        return Err(ServerError::TokenRequired(addr));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { addr, source })?;
    axum::serve(listener, router(store, telemetry, token, analytics))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| ServerError::Listen { addr, source })
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let headers = request.headers();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_credentials)
            .is_some_and(|t| same_secret(t, token));
        // a browser cannot add headers to page loads: the UI's pages may
        // carry the token as a cookie instead
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix("token="))
            .any(|t| same_secret(t, token));
        if !bearer && !cookie && request.uri().path() != "/health" {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "a valid 'Authorization: Bearer TOKEN' header is required",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// The credentials of an `Authorization` value in the `Bearer` scheme,
/// whose name is case-insensitive (RFC 9110 §11.1).
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

/// Compares a presented token with the secret in time that depends only
/// on their lengths, so that response times do not reveal how many of its
/// first characters a guess got right.
fn same_secret(presented: &str, secret: &str) -> bool {
    let (a, b) = (presented.as_bytes(), secret.as_bytes());
    let differing = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from ending the loop at the first difference
    std::hint::black_box(differing) == 0 && a.len() == b.len()
}

/// An error as the API returns it: a status and a JSON body with a message
/// and, for filters, the position of the mistake.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    position: Option<usize>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            position: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Filter(f) => ApiError {
                status: StatusCode::BAD_REQUEST,
                message: f.message.clone(),
                position: Some(f.position),
            },
            QueryError::Plan(m) => ApiError::bad_request(m),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.message});
        if let Some(p) = self.position {
            body["position"] = json!(p);
        }
        (self.status, Json(body)).into_response()
    }
}

/// Runs CPU-bound work (scans) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("the query failed: {e}")))?
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such page; /api/openapi.json lists the API",
    )
}

async fn prometheus(State(state): State<AppState>) -> Response {
    let text = state.telemetry.prometheus(now_ns());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn status(State(state): State<AppState>) -> Response {
    Json(state.telemetry.status(now_ns())).into_response()
}

async fn exporters(State(state): State<AppState>) -> Response {
    let mut status = state.telemetry.status(now_ns());
    Json(json!({"exporters": status["exporters"].take()})).into_response()
}

#[cfg(test)]
mod tests;
