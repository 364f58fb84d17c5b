//! Journeys as the streaming correlator stored them: a list (filtered,
//! sorted by loss, delay or time), one journey with its hop-by-hop detail,
//! and segments pooled over the journeys of a range.

use arrow_array::{Array, RecordBatch, StringArray, TimestampNanosecondArray};
use arrow_ord::sort::{SortColumn, lexsort_to_indices};
use arrow_schema::SortOptions;
use axum::Json;
use axum::extract::{Path, Query as Params, State};
use axum::http::StatusCode;
use hopscope_collector::now_ns;
use hopscope_store::query::{evaluate, parse_journey_filter, time_range};
use hopscope_store::render::json_rows;
use hopscope_store::{Store, Table};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, AppState, blocking};

/// Journeys listed at most, whatever `limit` asks.
const MAX_LIST: usize = 10_000;

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct JourneyParams {
    /// The flow filter language over journey columns (`lost > 0`, `path "r2"`).
    filter: Option<String>,
    since: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// `loss` (packets lost, default), `ratio` (lost share), `delay`
    /// (end-to-end p95) or `time`.
    sort: Option<String>,
    limit: Option<usize>,
}

impl JourneyParams {
    /// The time range, the last 15 minutes when none is given.
    fn range(&self) -> Result<(i64, i64), ApiError> {
        let since = match (&self.since, &self.from) {
            (None, None) => Some("15m"),
            _ => self.since.as_deref(),
        };
        Ok(time_range(
            since,
            self.from.as_deref(),
            self.to.as_deref(),
            now_ns(),
        )?)
    }
}

/// A journey's id: its first observation time, its Community ID (hex) and
/// a hash of what tells apart the journeys of one flow that begin at the
/// same nanosecond (its two directions share the Community ID; its packet
/// and its flow-totals journeys may share the first packet): enough to
/// find it again in one partition of the store, from its row alone.
fn journey_id(time_ns: i64, row: &Value) -> String {
    let community_id = row["community_id"].as_str().unwrap_or("");
    let hex: String = community_id.bytes().map(|b| format!("{b:02x}")).collect();
    // FNV-1a over the fields' JSON: stable across builds and processes
    let mut variant: u32 = 0x811c_9dc5;
    for field in [
        "src_addr", "dst_addr", "src_port", "dst_port", "path", "flags",
    ] {
        for b in row[field].to_string().bytes().chain([0]) {
            variant = (variant ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    }
    format!("{time_ns}-{hex}-{variant:08x}")
}

/// The time and Community ID an id names (what the store is searched by).
fn parse_id(id: &str) -> Option<(i64, String)> {
    let mut parts = id.split('-');
    let time: i64 = parts.next()?.parse().ok()?;
    let hex = parts.next()?;
    if hex.len() % 2 != 0 || parts.next().is_some_and(|v| v.len() != 8) || parts.next().is_some() {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    Some((time, String::from_utf8(bytes?).ok()?))
}

/// The journeys of `[from, to)` that pass `filter`, with the named columns.
fn matching(
    store: &Store,
    filter: &str,
    columns: &[&str],
    (from, to): (i64, i64),
) -> Result<Vec<RecordBatch>, ApiError> {
    let expr = parse_journey_filter(filter).map_err(hopscope_store::query::QueryError::from)?;
    let mut batches = Vec::new();
    store
        .scan(Table::Journeys, columns, from, to, |batch| {
            let batch = match &expr {
                Some(e) => {
                    let keep = evaluate(e, &batch)?;
                    arrow_select::filter::filter_record_batch(&batch, &keep)?
                }
                None => batch,
            };
            if batch.num_rows() > 0 {
                batches.push(batch);
            }
            Ok(())
        })
        .map_err(ApiError::internal)?;
    Ok(batches)
}

/// Every column but `detail`.
fn list_columns() -> Vec<&'static str> {
    hopscope_schema::JOURNEY_FIELDS
        .iter()
        .map(|f| f.name)
        .filter(|&n| n != "detail")
        .collect()
}

/// The journeys of a range, the worst first.
pub(crate) async fn list(
    State(state): State<AppState>,
    Params(p): Params<JourneyParams>,
) -> Result<Json<Value>, ApiError> {
    let range = p.range()?;
    let sort = p.sort.clone().unwrap_or_else(|| "loss".into());
    let sort_columns: &[&str] = match sort.as_str() {
        "loss" => &["lost", "loss_ppm"],
        "ratio" => &["loss_ppm", "lost", "packets"],
        "delay" => &["delay_p95_ns", "delay_max_ns"],
        "time" => &["time_received_ns"],
        other => {
            return Err(ApiError::bad_request(format!(
                "sort '{other}': use loss, ratio, delay or time"
            )));
        }
    };
    let limit = p.limit.unwrap_or(100).min(MAX_LIST);
    let store = state.store.clone();
    let filter = p.filter.clone().unwrap_or_default();
    let (rows, matched) = blocking(move || {
        let batches = matching(&store, &filter, &list_columns(), range)?;
        let matched: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let Some(first) = batches.first() else {
            return Ok((Vec::new(), 0));
        };
        let all = arrow_select::concat::concat_batches(&first.schema(), &batches)
            .map_err(ApiError::internal)?;
        let keys: Vec<SortColumn> = sort_columns
            .iter()
            .map(|c| SortColumn {
                values: all.column_by_name(c).expect("projected").clone(),
                options: Some(SortOptions {
                    descending: true,
                    nulls_first: false,
                }),
            })
            .collect();
        let order = lexsort_to_indices(&keys, Some(limit)).map_err(ApiError::internal)?;
        let top =
            arrow_select::take::take_record_batch(&all, &order).map_err(ApiError::internal)?;
        Ok((rows_with_ids(&top), matched))
    })
    .await?;
    Ok(Json(json!({
        "journeys": rows,
        "matched": matched,
        "sort": sort,
        "from_ns": range.0,
        "to_ns": range.1,
    })))
}

/// JSON rows, each with its `id`.
fn rows_with_ids(batch: &RecordBatch) -> Vec<Value> {
    let mut rows = json_rows(batch);
    // the time as stored, not as rendered
    if let Some(times) = batch
        .column_by_name("time_received_ns")
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
    {
        for (row, &time_ns) in rows.iter_mut().zip(times.values()) {
            let id = journey_id(time_ns, row);
            row["id"] = json!(id);
        }
    }
    rows
}

/// One journey: its columns and its hop-by-hop `detail` as JSON.
pub(crate) async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (time, community_id) = parse_id(&id)
        .ok_or_else(|| ApiError::bad_request(format!("'{id}' is not a journey id")))?;
    let store = state.store.clone();
    let wanted = id.clone();
    // an id from before ids had a variant names the first candidate
    let any_candidate = id.matches('-').count() == 1;
    let found = blocking(move || {
        let columns: Vec<&str> = hopscope_schema::JOURNEY_FIELDS
            .iter()
            .map(|f| f.name)
            .collect();
        let batches = matching(&store, "", &columns, (time, time.saturating_add(1)))?;
        for b in batches {
            let ids = b
                .column_by_name("community_id")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| ApiError::internal("journeys without community_id"))?;
            let candidates = (0..ids.len()).filter(|&i| ids.value(i) == community_id);
            let found = candidates
                .map(|i| rows_with_ids(&b.slice(i, 1)).remove(0))
                .find(|row| any_candidate || row["id"] == wanted.as_str());
            if let Some(mut row) = found {
                let detail = row["detail"]
                    .as_str()
                    .and_then(|d| serde_json::from_str::<Value>(d).ok());
                row["detail"] = detail.unwrap_or(Value::Null);
                return Ok(Some(row));
            }
        }
        Ok(None)
    })
    .await?;
    found.map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no journey {id} (retention may have removed it)"),
        )
    })
}

/// Segments pooled over the journeys of a range: where, across every flow,
/// packets are lost and delayed.
pub(crate) async fn segments(
    State(state): State<AppState>,
    Params(p): Params<JourneyParams>,
) -> Result<Json<Value>, ApiError> {
    let range = p.range()?;
    let store = state.store.clone();
    let filter = p.filter.clone().unwrap_or_default();
    let (segments, journeys, unreadable) = blocking(move || {
        let batches = matching(&store, &filter, &["detail"], range)?;
        let details: Vec<&StringArray> = batches
            .iter()
            .filter_map(|b| b.column_by_name("detail")?.as_any().downcast_ref())
            .collect();
        let journeys: usize = details.iter().map(|d| d.len()).sum();
        let (pooled, unreadable) = hopscope_correlate::summarize_stored_segments(
            details.iter().flat_map(|d| d.iter().flatten()),
        );
        Ok((pooled, journeys, unreadable))
    })
    .await?;
    Ok(Json(json!({
        "segments": segments.segments,
        "ecmp": segments.ecmp,
        "journeys": journeys,
        "unreadable": unreadable,
        "from_ns": range.0,
        "to_ns": range.1,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_tell_apart_the_journeys_of_one_flow() {
        let time = 1_795_669_501_523_325_620;
        let row = json!({
            "community_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            "src_addr": "10.0.0.1", "dst_addr": "10.0.0.2",
            "src_port": 40000, "dst_port": 443,
            "path": "r1 > r2", "flags": "",
        });
        let id = journey_id(time, &row);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        assert_eq!(
            parse_id(&id),
            Some((time, "1:LQU9qZlK+B5F3KDmev6m5PMibrg=".into()))
        );
        // the other direction, and the flow-totals journey of the same flow
        let mut reverse = row.clone();
        reverse["src_addr"] = json!("10.0.0.2");
        reverse["dst_addr"] = json!("10.0.0.1");
        let mut totals = row.clone();
        totals["flags"] = json!("flow-totals");
        assert_ne!(journey_id(time, &reverse), id);
        assert_ne!(journey_id(time, &totals), id);
        assert_eq!(journey_id(time, &row.clone()), id);
        // ids without a variant, from before, still name a flow
        assert_eq!(parse_id("12-3132").map(|(t, _)| t), Some(12));
        assert_eq!(parse_id("12-zz"), None);
        assert_eq!(parse_id("12-3132-abc"), None);
        assert_eq!(parse_id("nope"), None);
    }
}
