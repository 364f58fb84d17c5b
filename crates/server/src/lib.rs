//! hopscope's HTTP API over the store and the collector's own account:
//! `/api/flows` (filters, group-by, aggregates, time buckets, top-N),
//! `/api/status`, `/api/fields`, `/metrics` (Prometheus) and `/health`.
//!
//! It binds to 127.0.0.1 unless told otherwise; bound anywhere else it
//! refuses to start without a token, and then requires it on every request
//! (`Authorization: Bearer TOKEN`). Errors are JSON with a message; a filter
//! that does not parse gets 400 with the position of the mistake.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Query as Params, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hopscope_collector::{Metrics, now_ns};
use hopscope_store::Store;
use hopscope_store::query::{QueryError, QueryRequest, execute};
use hopscope_store::render::json_rows;
use serde_json::json;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    token: Option<Arc<str>>,
}

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "the API would listen on {0}, beyond this machine: give a token (--token or HOPSCOPE_TOKEN) that clients must send"
    )]
    TokenRequired(SocketAddr),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The API's routes.
pub fn router(store: Arc<Store>, metrics: Arc<Metrics>, token: Option<String>) -> Router {
    let state = AppState {
        store,
        metrics,
        token: token.map(Arc::from),
    };
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(prometheus))
        .route("/api/status", get(status))
        .route("/api/flows", get(flows))
        .route("/api/fields", get(fields))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Binds `addr` (checking the token rule) and serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    token: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    if !addr.ip().is_loopback() && token.as_deref().is_none_or(str::is_empty) {
        return Err(ServerError::TokenRequired(addr));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { addr, source })?;
    axum::serve(listener, router(store, metrics, token))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| ServerError::Listen { addr, source })
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(&**token) && request.uri().path() != "/health" {
            return error(
                StatusCode::UNAUTHORIZED,
                "a valid 'Authorization: Bearer TOKEN' header is required".into(),
                None,
            );
        }
    }
    next.run(request).await
}

fn error(status: StatusCode, message: String, position: Option<usize>) -> Response {
    let mut body = json!({"error": message});
    if let Some(p) = position {
        body["position"] = json!(p);
    }
    (status, Json(body)).into_response()
}

async fn prometheus(State(state): State<AppState>) -> Response {
    let text = state.metrics.status(now_ns()).prometheus();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn status(State(state): State<AppState>) -> Response {
    Json(state.metrics.status(now_ns())).into_response()
}

async fn fields() -> Response {
    let list: Vec<_> = hopscope_schema::FLOW_FIELDS
        .iter()
        .chain(hopscope_schema::ENRICHMENT_FIELDS)
        .map(|f| json!({"name": f.name, "kind": format!("{:?}", f.kind), "unit": f.unit, "doc": f.doc.trim()}))
        .collect();
    Json(list).into_response()
}

async fn flows(State(state): State<AppState>, Params(request): Params<QueryRequest>) -> Response {
    let query = match request.plan(now_ns()) {
        Ok(q) => q,
        Err(e) => return query_error(e),
    };
    let store = state.store.clone();
    // scans are CPU-bound: keep them off the async workers
    let result = tokio::task::spawn_blocking(move || execute(&store, &query)).await;
    match result {
        Ok(Ok(out)) => Json(json!({
            "rows": json_rows(&out.rows),
            "totals": out.totals.as_ref().map(json_rows).and_then(|t| t.into_iter().next()),
            "groups": out.groups,
            "scan": out.scan,
            "rollup_segments": out.rollup_segments,
        }))
        .into_response(),
        Ok(Err(e)) => query_error(e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("query failed: {e}"),
            None,
        ),
    }
}

fn query_error(e: QueryError) -> Response {
    match e {
        QueryError::Filter(f) => {
            error(StatusCode::BAD_REQUEST, f.message.clone(), Some(f.position))
        }
        QueryError::Plan(m) => error(StatusCode::BAD_REQUEST, m, None),
        other => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string(), None),
    }
}
