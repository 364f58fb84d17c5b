//! Journey records: one flow's path across observation points, as the
//! correlator rebuilt it for one time window, and its segments.
//!
//! The columns a filter, a group-by or a table needs are flat (the flow key,
//! the path, end-to-end delay and loss, the worst segment); the hop-by-hop
//! figures and the evidence behind each are in `detail`, a JSON document, so
//! that a journey of any length stays one row. Each segment (from one hop
//! to the next) is also a row of the `segments` table, with its journey's
//! id: what SLOs, root cause and capacity query without reading JSON.

use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};

use crate::FieldInfo;
use crate::column::Kind;
use crate::table::{arrow_fields, field};

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
    field(
        "journey_id",
        Kind::Text,
        "",
        "The journey's id (first time, Community ID, variant), given once by the correlator; its segments carry it too.",
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

/// The columns of the `segments` table: one row per segment of a journey.
pub const SEGMENT_FIELDS: &[FieldInfo] = &[
    field(
        "time_received_ns",
        Kind::Timestamp,
        "ns",
        "First observation of the journey's packets (the store partitions by it).",
    ),
    field(
        "time_end_ns",
        Kind::Timestamp,
        "ns",
        "Last observation of the journey's packets.",
    ),
    field(
        "journey_id",
        Kind::Text,
        "",
        "The journey the segment is of.",
    ),
    field(
        "community_id",
        Kind::Text,
        "",
        "Community ID v1 of the flow.",
    ),
    field(
        "src_addr",
        Kind::Address,
        "",
        "The journey's source address at its first hop.",
    ),
    field(
        "dst_addr",
        Kind::Address,
        "",
        "The journey's destination address at its first hop.",
    ),
    field(
        "src_port",
        Kind::U16,
        "",
        "The journey's source port at its first hop.",
    ),
    field(
        "dst_port",
        Kind::U16,
        "",
        "The journey's destination port at its first hop.",
    ),
    field("proto", Kind::U8, "", "IP protocol."),
    field(
        "position",
        Kind::U8,
        "",
        "The segment's place on the path, 0 from the first hop.",
    ),
    field(
        "upstream",
        Kind::Text,
        "",
        "The hop the segment starts at (ECMP members joined by '|').",
    ),
    field("downstream", Kind::Text, "", "The hop the segment ends at."),
    field(
        "upstream_point_id",
        Kind::U64,
        "",
        "observationPointId of the upstream hop (its first point, for an ECMP cluster).",
    ),
    field(
        "downstream_point_id",
        Kind::U64,
        "",
        "observationPointId of the downstream hop (its first point).",
    ),
    field(
        "basis",
        Kind::Text,
        "",
        "What the figures rest on: 'packets' (packet reports) or 'flow totals' (flow records).",
    ),
    field(
        "delay_kind",
        Kind::Text,
        "",
        "one-way (clocks known), estimated (offsets from traffic), variation (offsets unknown), or unknown (no delay).",
    ),
    field(
        "sent",
        Kind::U64,
        "packets",
        "Selected packets seen at the upstream hop.",
    ),
    field(
        "lost",
        Kind::U64,
        "packets",
        "Of those, lost in the network (telemetry loss subtracted).",
    ),
    field(
        "telemetry_explained",
        Kind::U64,
        "packets",
        "Packets last seen upstream that telemetry loss downstream explains: not network loss.",
    ),
    field(
        "loss_ppm",
        Kind::U32,
        "ppm",
        "Network loss ratio in parts per million.",
    ),
    field(
        "loss_low_ppm",
        Kind::U32,
        "ppm",
        "Lower end of its 95 % interval (Wilson).",
    ),
    field(
        "loss_high_ppm",
        Kind::U32,
        "ppm",
        "Upper end of its 95 % interval.",
    ),
    field(
        "delay_samples",
        Kind::U64,
        "packets",
        "Packets the delay figures come from.",
    ),
    field(
        "delay_min_ns",
        Kind::U64,
        "ns",
        "Smallest delay (null when there is none, when offsets are unknown (variation), or when it came out negative).",
    ),
    field("delay_median_ns", Kind::U64, "ns", "Median delay."),
    field(
        "delay_p95_ns",
        Kind::U64,
        "ns",
        "95th percentile of the delay.",
    ),
    field("delay_max_ns", Kind::U64, "ns", "Largest delay."),
    field(
        "delay_negative",
        Kind::U64,
        "packets",
        "Samples that came out negative (clocks off by more than their bound).",
    ),
    field(
        "delay_bound_ns",
        Kind::U64,
        "ns",
        "Half-width of the interval the true delay lies in around each figure (null for variation).",
    ),
];

/// Arrow schema of segment rows.
pub fn segment_schema() -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        arrow_fields(SEGMENT_FIELDS),
        crate::table::version_metadata(),
    ))
}

/// Arrow schema of journey records.
pub fn journey_schema() -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        arrow_fields(JOURNEY_FIELDS),
        crate::table::version_metadata(),
    ))
}
