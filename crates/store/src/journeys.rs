//! The journeys table as the API reads it: a listing (filtered, sorted by
//! loss, delay or time, each row with an id), one journey by its id, and
//! the hop-by-hop details of a range for pooling per segment. Written over
//! [`Backend::scan`], so every backend answers alike.

use arrow_array::{Array, RecordBatch, StringArray, TimestampNanosecondArray};
use arrow_ord::sort::{SortColumn, lexsort_to_indices};
use arrow_schema::SortOptions;
use serde_json::{Value, json};

use std::sync::Arc;

use crate::query::{QueryError, evaluate, filter_fields, parse_journey_filter};
use crate::render::json_rows;
use crate::{Backend, TIME_COLUMN, Table};

/// How a listing is ordered, the worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JourneySort {
    /// Packets lost, then the lost share.
    #[default]
    Loss,
    /// The lost share, then packets lost, then packets.
    Ratio,
    /// End-to-end delay (p95, then the maximum).
    Delay,
    /// The newest first.
    Time,
}

impl JourneySort {
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        Ok(match text {
            "loss" => JourneySort::Loss,
            "ratio" => JourneySort::Ratio,
            "delay" => JourneySort::Delay,
            "time" => JourneySort::Time,
            other => {
                return Err(QueryError::Plan(format!(
                    "sort '{other}': use loss, ratio, delay or time"
                )));
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            JourneySort::Loss => "loss",
            JourneySort::Ratio => "ratio",
            JourneySort::Delay => "delay",
            JourneySort::Time => "time",
        }
    }

    fn columns(self) -> &'static [&'static str] {
        match self {
            JourneySort::Loss => &["lost", "loss_ppm"],
            JourneySort::Ratio => &["loss_ppm", "lost", "packets"],
            JourneySort::Delay => &["delay_p95_ns", "delay_max_ns"],
            JourneySort::Time => &["time_received_ns"],
        }
    }
}

/// Which journeys a listing asks for.
#[derive(Debug, Clone, Default)]
pub struct JourneyListing {
    /// The flow filter language over journey columns (`lost > 0`, `path "r2"`).
    pub filter: String,
    pub from_ns: i64,
    pub to_ns: i64,
    pub sort: JourneySort,
    pub limit: usize,
}

/// The journeys listed (JSON rows, each with its `id`, without `detail`),
/// and how many matched before the limit.
#[derive(Debug, Clone, Default)]
pub struct JourneyPage {
    pub rows: Vec<Value>,
    pub matched: usize,
}

/// The id of a journey stored before the correlator gave ids (the
/// `journey_id` column is null): of the same form as the correlator's
/// (`hopscope_correlate::journey_id`), from the row as rendered, so that
/// the links to older journeys still resolve.
pub fn legacy_id(time_ns: i64, row: &Value) -> String {
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
pub fn parse_id(id: &str) -> Option<(i64, String)> {
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

/// The journeys of `[from, to)` that pass `filter`, with the named columns
/// (and the time), in the table's order: a column that an older segment
/// lacks is null.
fn matching<B: Backend + ?Sized>(
    backend: &B,
    filter: &str,
    columns: &[&'static str],
    from_ns: i64,
    to_ns: i64,
) -> Result<Vec<RecordBatch>, QueryError> {
    let expr = parse_journey_filter(filter)?;
    // what the filter reads is read too, even when not shown
    let mut read: Vec<&str> = columns.to_vec();
    if let Some(e) = &expr {
        filter_fields(e, &mut read);
    }
    let table = hopscope_schema::journey_schema();
    let shown: Vec<usize> = (0..table.fields().len())
        .filter(|&i| {
            let name = table.field(i).name().as_str();
            name == TIME_COLUMN || columns.contains(&name)
        })
        .collect();
    let shown = Arc::new(table.project(&shown)?);
    let mut batches = Vec::new();
    backend.scan(Table::Journeys, &read, from_ns, to_ns, &mut |batch| {
        let batch = match &expr {
            Some(e) => {
                let keep = evaluate(e, &batch)?;
                arrow_select::filter::filter_record_batch(&batch, &keep)?
            }
            None => batch,
        };
        if batch.num_rows() > 0 {
            let columns = shown
                .fields()
                .iter()
                .map(|f| {
                    batch.column_by_name(f.name()).cloned().unwrap_or_else(|| {
                        arrow_array::new_null_array(f.data_type(), batch.num_rows())
                    })
                })
                .collect();
            batches.push(RecordBatch::try_new(shown.clone(), columns)?);
        }
        Ok(())
    })?;
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

pub(crate) fn list<B: Backend + ?Sized>(
    backend: &B,
    listing: &JourneyListing,
) -> Result<JourneyPage, QueryError> {
    let batches = matching(
        backend,
        &listing.filter,
        &list_columns(),
        listing.from_ns,
        listing.to_ns,
    )?;
    let matched: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let Some(first) = batches.first() else {
        return Ok(JourneyPage::default());
    };
    let all = arrow_select::concat::concat_batches(&first.schema(), &batches)?;
    let keys = listing
        .sort
        .columns()
        .iter()
        .map(|c| {
            let values = all
                .column_by_name(c)
                .ok_or_else(|| QueryError::Plan(format!("the journeys table has no {c}")))?;
            Ok(SortColumn {
                values: values.clone(),
                options: Some(SortOptions {
                    descending: true,
                    nulls_first: false,
                }),
            })
        })
        .collect::<Result<Vec<_>, QueryError>>()?;
    let order = lexsort_to_indices(&keys, Some(listing.limit))?;
    let top = arrow_select::take::take_record_batch(&all, &order)?;
    Ok(JourneyPage {
        rows: rows_with_ids(&top),
        matched,
    })
}

/// JSON rows, each with its `id` (the stored one, or for older rows the
/// legacy one).
fn rows_with_ids(batch: &RecordBatch) -> Vec<Value> {
    let mut rows = json_rows(batch);
    // the time as stored, not as rendered
    if let Some(times) = batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
    {
        for (row, &time_ns) in rows.iter_mut().zip(times.values()) {
            let id = match row.as_object_mut().and_then(|o| o.remove("journey_id")) {
                Some(Value::String(id)) => id,
                _ => legacy_id(time_ns, row),
            };
            row["id"] = json!(id);
        }
    }
    rows
}

pub(crate) fn find<B: Backend + ?Sized>(
    backend: &B,
    id: &str,
) -> Result<Option<Value>, QueryError> {
    let (time, community_id) =
        parse_id(id).ok_or_else(|| QueryError::Plan(format!("'{id}' is not a journey id")))?;
    // an id from before ids had a variant names the first candidate
    let any_candidate = id.matches('-').count() == 1;
    let columns: Vec<&'static str> = hopscope_schema::JOURNEY_FIELDS
        .iter()
        .map(|f| f.name)
        .collect();
    for b in matching(backend, "", &columns, time, time.saturating_add(1))? {
        let ids = b
            .column_by_name("community_id")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| QueryError::Plan("journeys without community_id".into()))?;
        let candidates = (0..ids.len()).filter(|&i| ids.value(i) == community_id);
        let found = candidates
            .map(|i| rows_with_ids(&b.slice(i, 1)).remove(0))
            .find(|row| any_candidate || row["id"] == id);
        if let Some(mut row) = found {
            let detail = row["detail"]
                .as_str()
                .and_then(|d| serde_json::from_str::<Value>(d).ok());
            row["detail"] = detail.unwrap_or(Value::Null);
            return Ok(Some(row));
        }
    }
    Ok(None)
}

pub(crate) fn details<B: Backend + ?Sized>(
    backend: &B,
    filter: &str,
    from_ns: i64,
    to_ns: i64,
) -> Result<Vec<String>, QueryError> {
    let batches = matching(backend, filter, &["detail"], from_ns, to_ns)?;
    Ok(batches
        .iter()
        .filter_map(|b| {
            b.column_by_name("detail")?
                .as_any()
                .downcast_ref::<StringArray>()
        })
        .flat_map(|d| d.iter().flatten().map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_ids_round_trip_and_tell_apart_the_journeys_of_one_flow() {
        let time = 1_795_669_501_523_325_620;
        let row = json!({
            "community_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            "src_addr": "10.0.0.1", "dst_addr": "10.0.0.2",
            "src_port": 40000, "dst_port": 443,
            "path": "r1 > r2", "flags": "",
        });
        let id = legacy_id(time, &row);
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
        assert_ne!(legacy_id(time, &reverse), id);
        assert_ne!(legacy_id(time, &totals), id);
        assert_eq!(legacy_id(time, &row.clone()), id);
        // ids without a variant, from before, still name a flow
        assert_eq!(parse_id("12-3132").map(|(t, _)| t), Some(12));
        assert_eq!(parse_id("12-zz"), None);
        assert_eq!(parse_id("12-3132-abc"), None);
        assert_eq!(parse_id("nope"), None);
    }
}
