//! Flows: the query API over the flow table, as rows and as time series.

use std::collections::HashMap;

use arrow_array::{Array, RecordBatch, TimestampNanosecondArray};
use axum::Json;
use axum::extract::{Query as Params, State};
use hopscope_store::now_ns;
use hopscope_store::query::{QueryRequest, parse_duration, time_range};
use hopscope_store::render::json_rows;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, AppState, blocking};

#[derive(Debug, Deserialize)]
pub(crate) struct FieldParams {
    /// `flows` (default) or `journeys`.
    table: Option<String>,
}

/// The fields a filter or group-by may name.
pub(crate) async fn fields(Params(p): Params<FieldParams>) -> Result<Json<Value>, ApiError> {
    let fields: Vec<&hopscope_schema::FieldInfo> = match p.table.as_deref().unwrap_or("flows") {
        "flows" => hopscope_schema::FLOW_FIELDS
            .iter()
            .chain(hopscope_schema::ENRICHMENT_FIELDS)
            .collect(),
        "journeys" => hopscope_schema::JOURNEY_FIELDS.iter().collect(),
        other => {
            return Err(ApiError::bad_request(format!(
                "table '{other}': use flows or journeys"
            )));
        }
    };
    Ok(Json(Value::Array(
        fields
            .into_iter()
            .map(|f| json!({"name": f.name, "kind": format!("{:?}", f.kind), "unit": f.unit, "doc": f.doc.trim()}))
            .collect(),
    )))
}

/// Flows: filtered, grouped, aggregated, bucketed, top-N.
pub(crate) async fn flows(
    State(state): State<AppState>,
    Params(request): Params<QueryRequest>,
) -> Result<Json<Value>, ApiError> {
    let query = request.plan(now_ns())?;
    let store = state.store.clone();
    let out = blocking(move || Ok(store.query(&query)?)).await?;
    Ok(Json(json!({
        "rows": json_rows(&out.rows),
        "totals": out.totals.as_ref().map(json_rows).and_then(|t| t.into_iter().next()),
        "groups": out.groups,
        "scan": out.scan,
        "rollup_segments": out.rollup_segments,
        "volumes": volumes(&out),
    })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct SeriesParams {
    filter: Option<String>,
    /// One or more comma-separated fields; each distinct value is a series.
    group_by: Option<String>,
    /// One aggregate (default `bytes`).
    aggregate: Option<String>,
    since: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// Bucket width; by default about a hundred buckets over the range.
    bucket: Option<String>,
    /// Series kept (the largest by total); the rest are summed as `other`.
    top: Option<usize>,
    /// Volumes as the exporters counted them, not scaled by sampling.
    unscaled: Option<bool>,
    /// Every record at every point, rather than traffic once.
    every_point: Option<bool>,
}

/// Bucket widths offered when none is asked for.
const BUCKETS: [(&str, i64); 9] = [
    ("1s", 1),
    ("10s", 10),
    ("30s", 30),
    ("1m", 60),
    ("5m", 300),
    ("15m", 900),
    ("1h", 3600),
    ("6h", 21600),
    ("1d", 86400),
];

/// The narrowest bucket that cuts `range_ns` into at most 120 buckets.
fn auto_bucket(range_ns: i64) -> &'static str {
    BUCKETS
        .iter()
        .find(|(_, s)| range_ns / (s * 1_000_000_000) <= 120)
        .map_or("1d", |(b, _)| b)
}

/// Time series: one aggregate per bucket for the largest groups, aligned
/// on common buckets (zeros where a group had nothing), with each series'
/// total and the 95th percentile of its per-bucket values (the billing
/// percentile when the aggregate is a rate).
pub(crate) async fn timeseries(
    State(state): State<AppState>,
    Params(p): Params<SeriesParams>,
) -> Result<Json<Value>, ApiError> {
    let now = now_ns();
    let since = match (&p.since, &p.from) {
        (None, None) => Some("1h".to_string()),
        _ => p.since.clone(),
    };
    let (from, to) = time_range(since.as_deref(), p.from.as_deref(), p.to.as_deref(), now)?;
    let bucket = match &p.bucket {
        Some(b) => b.clone(),
        None => auto_bucket(to.min(now).saturating_sub(from).max(1)).to_string(),
    };
    let bucket_ns = parse_duration(&bucket)
        .filter(|&b| b > 0)
        .ok_or_else(|| ApiError::bad_request(format!("bucket '{bucket}': use 10s, 1m, 1h...")))?;
    let aggregate = p.aggregate.clone().unwrap_or_else(|| "bytes".into());
    let request = QueryRequest {
        filter: p.filter.clone(),
        group_by: p.group_by.clone(),
        aggregates: Some(aggregate.clone()),
        since,
        from: p.from.clone(),
        to: p.to.clone(),
        bucket: Some(bucket.clone()),
        limit: Some(usize::MAX),
        unscaled: p.unscaled,
        every_point: p.every_point,
        ..QueryRequest::default()
    };
    let query = request.plan(now)?;
    let store = state.store.clone();
    let out = blocking(move || Ok(store.query(&query)?)).await?;
    let keys: Vec<&str> = p
        .group_by
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .collect();
    let series = pivot(&out.rows, &keys, &aggregate, bucket_ns, p.top.unwrap_or(8))?;
    Ok(Json(json!({
        "bucket": bucket,
        "bucket_ns": bucket_ns,
        "aggregate": aggregate,
        "group_by": keys,
        "timestamps_ms": series.timestamps_ns.iter().map(|t| t / 1_000_000).collect::<Vec<_>>(),
        "series": series.series,
        "groups": out.groups,
        "scan": out.scan,
        "volumes": volumes(&out),
    })))
}

/// Which volumes an answer holds, and the flows of unknown sampling rate
/// in it (counted once each), for every client to show.
fn volumes(out: &hopscope_store::query::QueryOutput) -> Value {
    json!({
        "mode": out.volumes,
        "describe": out.volumes.describe(),
        "flows": out.coverage.flows,
        "unknown_rate_flows": out.coverage.unknown_rate_flows,
        "unknown_rate_share": out.coverage.unknown_share(),
        "counting": out.left_out.counting,
        "internal_records_left_out": out.left_out.internal_records,
        "transit_records_left_out": out.left_out.transit_records,
        "event_records_left_out": out.left_out.event_records,
        "counting_describe": out.left_out.describe(),
    })
}

#[derive(Debug)]
struct Pivoted {
    timestamps_ns: Vec<i64>,
    series: Vec<Value>,
}

/// Rows of (keys..., time_bucket, aggregate) into aligned series.
fn pivot(
    rows: &RecordBatch,
    keys: &[&str],
    aggregate: &str,
    bucket_ns: i64,
    top: usize,
) -> Result<Pivoted, ApiError> {
    let times = rows
        .column_by_name("time_bucket")
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| ApiError::internal("the bucketed query returned no time_bucket"))?;
    let objects = json_rows(rows);
    let value_of = |o: &Value| o.get(aggregate).and_then(Value::as_f64).unwrap_or(0.0);
    let key_of = |o: &Value| {
        if keys.is_empty() {
            "all".to_string()
        } else {
            keys.iter()
                .map(|k| match o.get(*k) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => "-".into(),
                    Some(v) => v.to_string(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    let (Some(first), Some(last)) = (
        (0..times.len())
            .filter(|&i| times.is_valid(i))
            .map(|i| times.value(i))
            .min(),
        (0..times.len())
            .filter(|&i| times.is_valid(i))
            .map(|i| times.value(i))
            .max(),
    ) else {
        return Ok(Pivoted {
            timestamps_ns: Vec::new(),
            series: Vec::new(),
        });
    };
    let n = ((last - first) / bucket_ns + 1) as usize;
    let mut by_key: HashMap<String, Vec<f64>> = HashMap::new();
    for (i, o) in objects.iter().enumerate() {
        if !times.is_valid(i) {
            continue;
        }
        let slot = ((times.value(i) - first) / bucket_ns) as usize;
        by_key.entry(key_of(o)).or_insert_with(|| vec![0.0; n])[slot] += value_of(o);
    }
    let mut ranked: Vec<(String, Vec<f64>, f64)> = by_key
        .into_iter()
        .map(|(k, v)| {
            let total = v.iter().sum();
            (k, v, total)
        })
        .collect();
    ranked.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    let rest: Vec<_> = ranked.split_off(ranked.len().min(top.max(1)));
    if !rest.is_empty() {
        let mut other = vec![0.0; n];
        for (_, v, _) in &rest {
            for (o, x) in other.iter_mut().zip(v) {
                *o += x;
            }
        }
        let total = other.iter().sum();
        ranked.push((format!("other ({} groups)", rest.len()), other, total));
    }
    let series = ranked
        .into_iter()
        .map(|(key, values, total)| {
            let p95 = hopscope_store::query::percentile_f64(&mut values.clone(), 95.0);
            json!({"key": key, "values": values, "total": total, "p95": p95})
        })
        .collect();
    Ok(Pivoted {
        timestamps_ns: (0..n as i64).map(|i| first + i * bucket_ns).collect(),
        series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_buckets_stay_near_a_hundred() {
        assert_eq!(auto_bucket(60_000_000_000), "1s");
        assert_eq!(auto_bucket(3_600_000_000_000), "30s");
        assert_eq!(auto_bucket(86_400_000_000_000), "15m");
    }
}
