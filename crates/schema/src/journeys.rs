//! Journey records: one flow's path across observation points, as the
//! correlator rebuilt it for one time window.
//!
//! The columns a filter, a group-by or a table needs are flat (the flow key,
//! the path, end-to-end delay and loss, the worst segment); the hop-by-hop
//! figures and the evidence behind each are in `detail`, a JSON document, so
//! that a journey of any length stays one row.

use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};

use crate::FieldInfo;
use crate::column::Kind;
use crate::table::arrow_fields;

const fn field(name: &'static str, kind: Kind, unit: &'static str, doc: &'static str) -> FieldInfo {
    FieldInfo {
        name,
        kind,
        unit,
        doc,
    }
}

/// The columns of the `journeys` table.
pub const JOURNEY_FIELDS: &[FieldInfo] = &[
    field(
        "time_received_ns",
        Kind::Timestamp,
        "ns",
        "First observation of the journey's packets in this window (the store partitions by it).",
    ),
    field(
        "time_end_ns",
        Kind::Timestamp,
        "ns",
        "Last observation of the journey's packets in this window.",
    ),
    field(
        "community_id",
        Kind::Text,
        "",
        "Community ID v1 of the flow: the same for both directions.",
    ),
    field("ip_version", Kind::U8, "", "IP version."),
    field(
        "src_addr",
        Kind::Address,
        "",
        "Source address as seen at the first hop (before any NAT).",
    ),
    field(
        "dst_addr",
        Kind::Address,
        "",
        "Destination address as seen at the first hop.",
    ),
    field("src_port", Kind::U16, "", "Source port at the first hop."),
    field(
        "dst_port",
        Kind::U16,
        "",
        "Destination port at the first hop.",
    ),
    field("proto", Kind::U8, "", "IP protocol."),
    field(
        "hop_count",
        Kind::U8,
        "hops",
        "Positions on the path (an ECMP cluster counts once).",
    ),
    field(
        "path",
        Kind::Text,
        "",
        "Observation points in path order, ECMP members joined by '|'.",
    ),
    field(
        "packets",
        Kind::U64,
        "packets",
        "Selected packets observed at the first hop.",
    ),
    field(
        "bytes",
        Kind::U64,
        "octets",
        "IP octets of the selected packets at the first hop.",
    ),
    field(
        "delivered",
        Kind::U64,
        "packets",
        "Selected packets observed at the last hop.",
    ),
    field(
        "lost",
        Kind::U64,
        "packets",
        "Selected packets lost in the network (telemetry loss subtracted).",
    ),
    field(
        "loss_ppm",
        Kind::U32,
        "ppm",
        "End-to-end network loss ratio in parts per million.",
    ),
    field(
        "loss_segment",
        Kind::Text,
        "",
        "The segment with the most network loss ('from > to'), empty without loss.",
    ),
    field(
        "telemetry_lost",
        Kind::U64,
        "packets",
        "Reports missing because telemetry was lost (seen downstream but not here, or explained by exporters' sequence gaps): never counted as network loss.",
    ),
    field(
        "delay_median_ns",
        Kind::U64,
        "ns",
        "Median end-to-end one-way delay (null when clock offsets are unknown or the delay came out negative).",
    ),
    field(
        "delay_p95_ns",
        Kind::U64,
        "ns",
        "95th percentile of the end-to-end one-way delay.",
    ),
    field(
        "delay_max_ns",
        Kind::U64,
        "ns",
        "Largest end-to-end one-way delay.",
    ),
    field(
        "nat",
        Kind::Text,
        "",
        "Address translations seen on the way ('point: before -> after', joined by '; ').",
    ),
    field(
        "flags",
        Kind::Text,
        "",
        "Confidence flags joined by ',': offsets-estimated, offsets-unknown, negative-delay, ecmp, telemetry-loss, nat.",
    ),
    field(
        "detail",
        Kind::Text,
        "",
        "JSON: hops (point, node, interface, times, packets, bytes, TTL), per-hop delay, per-segment loss with its interval and evidence, clock offsets.",
    ),
];

/// Arrow schema of journey records.
pub fn journey_schema() -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        arrow_fields(JOURNEY_FIELDS),
        crate::table::version_metadata(),
    ))
}
