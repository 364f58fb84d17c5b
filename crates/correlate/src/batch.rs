//! Journeys as rows of the `journeys` table (`hopscope_schema::JOURNEY_FIELDS`)
//! and their segments as rows of the `segments` table (`SEGMENT_FIELDS`),
//! both with the journey's id, given here once.

use std::sync::Arc;

use arrow_array::builder::{
    FixedSizeBinaryBuilder, StringBuilder, TimestampNanosecondBuilder, UInt8Builder, UInt16Builder,
    UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::ArrowError;

use crate::clock::DelayKind;
use crate::journey::{DelayStats, Journey, hop_label};

/// The path as the `path` column writes it.
fn path_text(j: &Journey) -> String {
    j.hops.iter().map(hop_label).collect::<Vec<_>>().join(" > ")
}

fn flag_text(j: &Journey) -> String {
    j.flags
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The delay figures the tables' unsigned delay columns show: none when
/// they are variations above the minimum (offsets unknown) or came out
/// negative (flagged; `detail` keeps them).
fn shown_delay(delay: Option<DelayStats>, kind: &str) -> Option<DelayStats> {
    delay.filter(|d| d.min_ns >= 0 && kind != DelayKind::Variation.as_str())
}

fn unsigned(v: i64) -> Option<u64> {
    u64::try_from(v).ok()
}

/// A journey's id: its first observation time, its Community ID (hex) and
/// a hash of what tells apart the journeys of one flow that begin at the
/// same nanosecond (its two directions share the Community ID; its packet
/// and its flow-totals journeys may share the first packet). The time and
/// the Community ID find it again in one partition of the store.
pub fn journey_id(j: &Journey) -> String {
    let hex: String = j.community_id.bytes().map(|b| format!("{b:02x}")).collect();
    // FNV-1a: stable across builds and processes
    let mut variant: u32 = 0x811c_9dc5;
    let t = &j.tuple;
    let key = [
        &t.src[..],
        &t.dst[..],
        &t.src_port.to_be_bytes(),
        &t.dst_port.to_be_bytes(),
        &[t.proto],
    ];
    let (path, flags) = (path_text(j), flag_text(j));
    for b in key
        .into_iter()
        .flatten()
        .chain(path.as_bytes())
        .chain(&[0])
        .chain(flags.as_bytes())
    {
        variant = (variant ^ u32::from(*b)).wrapping_mul(0x0100_0193);
    }
    format!("{}-{hex}-{variant:08x}", j.first_ns)
}

/// The journeys as one batch of the `journeys` table.
pub fn journeys_to_batch(journeys: &[Journey]) -> Result<RecordBatch, ArrowError> {
    let n = journeys.len();
    let mut first = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut last = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut cid = StringBuilder::new();
    let mut id = StringBuilder::new();
    let mut version = UInt8Builder::with_capacity(n);
    let mut src = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut dst = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut sport = UInt16Builder::with_capacity(n);
    let mut dport = UInt16Builder::with_capacity(n);
    let mut proto = UInt8Builder::with_capacity(n);
    let mut hop_count = UInt8Builder::with_capacity(n);
    let mut path = StringBuilder::new();
    let mut packets = UInt64Builder::with_capacity(n);
    let mut bytes = UInt64Builder::with_capacity(n);
    let mut delivered = UInt64Builder::with_capacity(n);
    let mut lost = UInt64Builder::with_capacity(n);
    let mut loss_ppm = UInt32Builder::with_capacity(n);
    let mut loss_segment = StringBuilder::new();
    let mut telemetry = UInt64Builder::with_capacity(n);
    let mut median = UInt64Builder::with_capacity(n);
    let mut p95 = UInt64Builder::with_capacity(n);
    let mut max = UInt64Builder::with_capacity(n);
    let mut nat = StringBuilder::new();
    let mut flags = StringBuilder::new();
    let mut detail = StringBuilder::new();
    for j in journeys {
        first.append_value(j.first_ns);
        last.append_value(j.last_ns);
        cid.append_value(&j.community_id);
        id.append_value(journey_id(j));
        version.append_value(j.ip_version);
        src.append_value(j.tuple.src)?;
        dst.append_value(j.tuple.dst)?;
        sport.append_value(j.tuple.src_port);
        dport.append_value(j.tuple.dst_port);
        proto.append_value(j.tuple.proto);
        hop_count.append_value(j.hops.len().min(255) as u8);
        path.append_value(path_text(j));
        packets.append_value(j.packets);
        bytes.append_value(j.bytes);
        delivered.append_value(j.delivered);
        lost.append_value(j.lost);
        let ratio = if j.packets > 0 {
            j.lost as f64 / j.packets as f64
        } else {
            0.0
        };
        loss_ppm.append_value((ratio * 1e6).round() as u32);
        let worst = j
            .segments
            .iter()
            .filter(|s| s.loss.lost > 0)
            .max_by_key(|s| s.loss.lost);
        loss_segment
            .append_value(worst.map_or(String::new(), |s| format!("{} > {}", s.from, s.to)));
        telemetry.append_value(j.telemetry_lost);
        let e2e = shown_delay(j.end_to_end, j.end_to_end_kind);
        median.append_option(e2e.and_then(|d| unsigned(d.median_ns)));
        p95.append_option(e2e.and_then(|d| unsigned(d.p95_ns)));
        max.append_option(e2e.and_then(|d| unsigned(d.max_ns)));
        nat.append_value(
            j.nat
                .iter()
                .map(|t| format!("{}: {} -> {}", t.at, t.before.display(), t.after.display()))
                .collect::<Vec<_>>()
                .join("; "),
        );
        flags.append_value(flag_text(j));
        detail.append_value(
            serde_json::to_string(j).map_err(|e| ArrowError::ExternalError(Box::new(e)))?,
        );
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(first.finish()),
        Arc::new(last.finish()),
        Arc::new(cid.finish()),
        Arc::new(id.finish()),
        Arc::new(version.finish()),
        Arc::new(src.finish()),
        Arc::new(dst.finish()),
        Arc::new(sport.finish()),
        Arc::new(dport.finish()),
        Arc::new(proto.finish()),
        Arc::new(hop_count.finish()),
        Arc::new(path.finish()),
        Arc::new(packets.finish()),
        Arc::new(bytes.finish()),
        Arc::new(delivered.finish()),
        Arc::new(lost.finish()),
        Arc::new(loss_ppm.finish()),
        Arc::new(loss_segment.finish()),
        Arc::new(telemetry.finish()),
        Arc::new(median.finish()),
        Arc::new(p95.finish()),
        Arc::new(max.finish()),
        Arc::new(nat.finish()),
        Arc::new(flags.finish()),
        Arc::new(detail.finish()),
    ];
    RecordBatch::try_new(hopscope_schema::journey_schema(), columns)
}

/// The segments of the journeys as one batch of the `segments` table.
pub fn segments_to_batch(journeys: &[Journey]) -> Result<RecordBatch, ArrowError> {
    let n: usize = journeys.iter().map(|j| j.segments.len()).sum();
    let mut first = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut last = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut id = StringBuilder::new();
    let mut cid = StringBuilder::new();
    let mut src = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut dst = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut sport = UInt16Builder::with_capacity(n);
    let mut dport = UInt16Builder::with_capacity(n);
    let mut proto = UInt8Builder::with_capacity(n);
    let mut position = UInt8Builder::with_capacity(n);
    let mut upstream = StringBuilder::new();
    let mut downstream = StringBuilder::new();
    let mut up_point = UInt64Builder::with_capacity(n);
    let mut down_point = UInt64Builder::with_capacity(n);
    let mut basis = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut sent = UInt64Builder::with_capacity(n);
    let mut lost = UInt64Builder::with_capacity(n);
    let mut explained = UInt64Builder::with_capacity(n);
    let mut ppm = UInt32Builder::with_capacity(n);
    let mut low_ppm = UInt32Builder::with_capacity(n);
    let mut high_ppm = UInt32Builder::with_capacity(n);
    let mut samples = UInt64Builder::with_capacity(n);
    let mut min = UInt64Builder::with_capacity(n);
    let mut median = UInt64Builder::with_capacity(n);
    let mut p95 = UInt64Builder::with_capacity(n);
    let mut max = UInt64Builder::with_capacity(n);
    let mut negative = UInt64Builder::with_capacity(n);
    let mut bound = UInt64Builder::with_capacity(n);
    let as_ppm = |ratio: f64| (ratio * 1e6).round().clamp(0.0, 1e6) as u32;
    for j in journeys {
        let journey = journey_id(j);
        let first_point = |hop: usize| {
            j.hops
                .get(hop)
                .and_then(|h| h.points.first())
                .map(|p| p.point)
        };
        for (i, s) in j.segments.iter().enumerate() {
            first.append_value(j.first_ns);
            last.append_value(j.last_ns);
            id.append_value(&journey);
            cid.append_value(&j.community_id);
            src.append_value(j.tuple.src)?;
            dst.append_value(j.tuple.dst)?;
            sport.append_value(j.tuple.src_port);
            dport.append_value(j.tuple.dst_port);
            proto.append_value(j.tuple.proto);
            position.append_value(i.min(255) as u8);
            upstream.append_value(&s.from);
            downstream.append_value(&s.to);
            up_point.append_option(first_point(i));
            down_point.append_option(first_point(i + 1));
            basis.append_value(j.basis());
            kind.append_value(s.delay_kind);
            sent.append_value(s.loss.sent);
            lost.append_value(s.loss.lost);
            explained.append_value(s.loss.telemetry_explained);
            ppm.append_value(as_ppm(s.loss.ratio));
            low_ppm.append_value(as_ppm(s.loss.ratio_low));
            high_ppm.append_value(as_ppm(s.loss.ratio_high));
            // the samples and the negative count stay, whatever the figures
            let delays = shown_delay(s.delay, s.delay_kind);
            samples.append_option(s.delay.map(|d| d.samples));
            min.append_option(delays.and_then(|d| unsigned(d.min_ns)));
            median.append_option(delays.and_then(|d| unsigned(d.median_ns)));
            p95.append_option(delays.and_then(|d| unsigned(d.p95_ns)));
            max.append_option(delays.and_then(|d| unsigned(d.max_ns)));
            negative.append_option(s.delay.map(|d| d.negative));
            bound.append_option(s.delay_bound_ns);
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(first.finish()),
        Arc::new(last.finish()),
        Arc::new(id.finish()),
        Arc::new(cid.finish()),
        Arc::new(src.finish()),
        Arc::new(dst.finish()),
        Arc::new(sport.finish()),
        Arc::new(dport.finish()),
        Arc::new(proto.finish()),
        Arc::new(position.finish()),
        Arc::new(upstream.finish()),
        Arc::new(downstream.finish()),
        Arc::new(up_point.finish()),
        Arc::new(down_point.finish()),
        Arc::new(basis.finish()),
        Arc::new(kind.finish()),
        Arc::new(sent.finish()),
        Arc::new(lost.finish()),
        Arc::new(explained.finish()),
        Arc::new(ppm.finish()),
        Arc::new(low_ppm.finish()),
        Arc::new(high_ppm.finish()),
        Arc::new(samples.finish()),
        Arc::new(min.finish()),
        Arc::new(median.finish()),
        Arc::new(p95.finish()),
        Arc::new(max.finish()),
        Arc::new(negative.finish()),
        Arc::new(bound.finish()),
    ];
    RecordBatch::try_new(hopscope_schema::segment_schema(), columns)
}
