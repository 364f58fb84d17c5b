//! Journeys as rows of the `journeys` table (`hopscope_schema::JOURNEY_FIELDS`).

use std::sync::Arc;

use arrow_array::builder::{
    FixedSizeBinaryBuilder, StringBuilder, TimestampNanosecondBuilder, UInt8Builder, UInt16Builder,
    UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::ArrowError;

use crate::journey::{Journey, hop_label};

/// The journeys as one batch of the `journeys` table.
pub fn journeys_to_batch(journeys: &[Journey]) -> Result<RecordBatch, ArrowError> {
    let n = journeys.len();
    let mut first = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut last = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut cid = StringBuilder::new();
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
        version.append_value(j.ip_version);
        src.append_value(j.tuple.src)?;
        dst.append_value(j.tuple.dst)?;
        sport.append_value(j.tuple.src_port);
        dport.append_value(j.tuple.dst_port);
        proto.append_value(j.tuple.proto);
        hop_count.append_value(j.hops.len().min(255) as u8);
        path.append_value(j.hops.iter().map(hop_label).collect::<Vec<_>>().join(" > "));
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
        // a delay that came out negative is flagged and left out of the
        // unsigned columns; `detail` keeps it
        let unsigned = |v: i64| u64::try_from(v).ok();
        let e2e = j
            .end_to_end
            .filter(|d| d.min_ns >= 0 && j.end_to_end_kind != "variation");
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
        flags.append_value(j.flags.join(","));
        detail.append_value(
            serde_json::to_string(j).map_err(|e| ArrowError::ExternalError(Box::new(e)))?,
        );
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(first.finish()),
        Arc::new(last.finish()),
        Arc::new(cid.finish()),
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
