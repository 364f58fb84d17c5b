//! Analytics over flows and journeys: the questions an operator asks of
//! end-to-end telemetry, answered from real user flows. This crate owns
//! SLOs (what `[[slo]]` in the configuration promises, and how a promise
//! is judged per 1-minute bucket from the journeys and segments tables),
//! error budgets and multiwindow burn rates, the security detections over
//! flow records (scans, floods, address lists: [`detect`]), the one alert
//! model that everything which fires uses, the ranking of the segments at
//! fault (root cause), capacity planning ([`capacity`]: utilisation from
//! flows and interface counters, billing percentiles, forecasts), and the
//! destinations alerts go to (Alertmanager, webhooks, syslog).
//!
//! It reads rows only (record batches from the bus or the store trait), so
//! the same code judges buckets as `serve` streams journeys in and when a
//! range is computed again from the store: the two agree by construction,
//! and a test holds them to it.

#![forbid(unsafe_code)]

pub mod alert;
pub mod bucket;
pub mod budget;
pub mod capacity;
mod columns;
pub mod detect;
pub mod live;
pub mod notify;
pub mod policy;
pub mod rca;
pub mod report;
pub mod rows;
pub mod segments;
pub mod slo;

pub use alert::{Alert, AlertState, Evaluator};
pub use bucket::{Accumulator, BucketFigure, evaluate_range};
pub use budget::{Budget, History};
pub use detect::{DetectConfig, DetectStats, Detector, detect_range};
pub use live::{Analyzer, Output, SloNow, Snapshot};
pub use notify::{Notifiers, NotifyConfig, SinkReport};
pub use policy::{Policy, PolicyConfig, PolicyReport, policy_report};
pub use rca::{Candidate, Focus, RcaQuery, RcaReport, SeriesReport, rank, segment_series};
pub use report::{
    AlertReport, DetectionReport, Offender, RcaTarget, SloReport, alert_report, detection_report,
    rca_for_alert, rca_report, slo_report,
};
pub use slo::{BUCKET_NS, Slo, SloConfig};

/// What can go wrong in analysis.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("SLO '{slo}': {message}")]
    Config { slo: String, message: String },
    #[error("{key}: {message}")]
    Setting { key: String, message: String },
    #[error("alert destination {0}")]
    Destination(String),
    #[error("rows: {0}")]
    Rows(String),
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error(transparent)]
    Store(#[from] hopscope_store::StoreError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}
