//! What analytics write: SLO buckets (one row per objective and 1-minute
//! bucket, judged good or bad) and alert events (one row each time an
//! alert fires or resolves). Stored like every other table, so that an
//! error budget and the alert history survive restarts and can be read by
//! any backend.

use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};

use crate::FieldInfo;
use crate::column::Kind;
use crate::table::{arrow_fields, field};

/// The columns of the `slo_buckets` table.
pub const SLO_BUCKET_FIELDS: &[FieldInfo] = &[
    field(
        "time_received_ns",
        Kind::Timestamp,
        "ns",
        "Start of the bucket (the store partitions by it).",
    ),
    field("slo", Kind::Text, "", "The objective's name."),
    field(
        "indicator",
        Kind::Text,
        "",
        "What is measured: 'loss' (network loss ratio) or 'delay' (a delay percentile).",
    ),
    field(
        "scope",
        Kind::Text,
        "",
        "'end to end', or the segment ('upstream > downstream') the indicator is of.",
    ),
    field("bucket_ns", Kind::U64, "ns", "Width of the bucket."),
    field(
        "good",
        Kind::U8,
        "",
        "1 when the bucket met the threshold, 0 when not.",
    ),
    field(
        "events",
        Kind::U64,
        "packets",
        "What the figure rests on: packets sent (loss) or delay samples (delay).",
    ),
    field(
        "lost",
        Kind::U64,
        "packets",
        "Packets lost in the network (loss); telemetry loss is not in it.",
    ),
    field(
        "loss_ppm",
        Kind::U32,
        "ppm",
        "The bucket's loss ratio (loss).",
    ),
    field(
        "delay_ns",
        Kind::U64,
        "ns",
        "The bucket's delay at the objective's percentile (delay).",
    ),
    field(
        "threshold",
        Kind::U64,
        "",
        "The threshold: ppm of loss or ns of delay.",
    ),
];

/// The columns of the `alerts` table: one row per state change.
pub const ALERT_FIELDS: &[FieldInfo] = &[
    field(
        "time_received_ns",
        Kind::Timestamp,
        "ns",
        "When the state changed (the store partitions by it).",
    ),
    field(
        "alert_id",
        Kind::Text,
        "",
        "Stable id: the same alert firing again after it resolved gets a new one.",
    ),
    field(
        "rule",
        Kind::Text,
        "",
        "What raised it ('slo-burn' for an SLO's burn rate).",
    ),
    field(
        "name",
        Kind::Text,
        "",
        "The alert's name (Alertmanager's alertname).",
    ),
    field("severity", Kind::Text, "", "'page' or 'ticket'."),
    field("state", Kind::Text, "", "'firing' or 'resolved'."),
    field(
        "starts_ns",
        Kind::Timestamp,
        "ns",
        "When it started firing.",
    ),
    field(
        "ends_ns",
        Kind::Timestamp,
        "ns",
        "When it resolved (null while firing).",
    ),
    field("labels", Kind::Text, "", "Labels, a JSON object."),
    field("summary", Kind::Text, "", "One sentence for a human."),
    field(
        "evidence",
        Kind::Text,
        "",
        "What it rests on, a JSON object (figures, the range and selector of its journeys).",
    ),
];

/// Arrow schema of SLO bucket rows.
pub fn slo_bucket_schema() -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        arrow_fields(SLO_BUCKET_FIELDS),
        crate::table::version_metadata(),
    ))
}

/// Arrow schema of alert events.
pub fn alert_schema() -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        arrow_fields(ALERT_FIELDS),
        crate::table::version_metadata(),
    ))
}
