//! The web UI: one page and its assets, embedded in the binary so that
//! hopscope serves it with nothing else installed and nothing fetched from
//! elsewhere (ECharts is vendored from npm under `ui/vendor`, with its
//! license).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::ApiError;

/// (name, content type, bytes)
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../ui/app.css"),
    ),
    (
        "echarts.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/vendor/echarts/echarts.min.js"),
    ),
    (
        "echarts-LICENSE.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../ui/vendor/echarts/LICENSE"),
    ),
];

const INDEX: &str = include_str!("../ui/index.html");

pub(crate) async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response()
}

pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, format!("no asset {file}")).into_response(),
    }
}
