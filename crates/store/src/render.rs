//! Record batches to text: an aligned table, JSON lines or CSV, with
//! addresses as dotted/colon text and times in RFC 3339. The CLI prints
//! decoded flows and query results with it; the HTTP API answers with
//! [`json_rows`].

use std::io::Write;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float64Type, TimestampNanosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use hopscope_schema::{format_addr, format_time};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// One cell as text, `None` for null.
fn cell(column: &dyn Array, row: usize) -> Option<String> {
    if column.is_null(row) {
        return None;
    }
    Some(match column.data_type() {
        DataType::UInt8 => column.as_primitive::<UInt8Type>().value(row).to_string(),
        DataType::UInt16 => column.as_primitive::<UInt16Type>().value(row).to_string(),
        DataType::UInt32 => column.as_primitive::<UInt32Type>().value(row).to_string(),
        DataType::UInt64 => column.as_primitive::<UInt64Type>().value(row).to_string(),
        DataType::Timestamp(_, _) => {
            format_time(column.as_primitive::<TimestampNanosecondType>().value(row))
        }
        DataType::FixedSizeBinary(_) => format_addr(column.as_fixed_size_binary().value(row)),
        DataType::Utf8 => column.as_string::<i32>().value(row).to_string(),
        DataType::Float64 => {
            let v = column.as_primitive::<Float64Type>().value(row);
            if v.fract() == 0.0 && v.abs() < 1e15 {
                format!("{v:.0}")
            } else {
                format!("{v:.3}")
            }
        }
        DataType::List(_) => {
            let list = column.as_list::<i32>().value(row);
            let items = list.as_struct();
            let (pen, id, value) = (
                items.column(0).as_primitive::<UInt32Type>(),
                items.column(1).as_primitive::<UInt16Type>(),
                items.column(2).as_binary::<i32>(),
            );
            let parts: Vec<String> = (0..items.len())
                .map(|i| {
                    let name = hopscope_wire::ie::display_name(pen.value(i), id.value(i));
                    let hex: String = value.value(i).iter().map(|b| format!("{b:02x}")).collect();
                    format!("{name}=0x{hex}")
                })
                .collect();
            if parts.is_empty() {
                return None;
            }
            parts.join(" ")
        }
        other => format!("<{other}>"),
    })
}

/// Which columns a table or CSV shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    /// Every one: the keys and aggregates a query asked for, even when a
    /// key is empty in every group (`-g src_country` without a database).
    All,
    /// Those with a value in some row: a listing of records, most of whose
    /// many columns a given exporter never fills.
    Filled,
}

pub fn write(
    out: &mut impl Write,
    batch: &RecordBatch,
    format: Format,
    columns: Columns,
) -> std::io::Result<()> {
    let schema = batch.schema();
    let shown: Vec<usize> = (0..batch.num_columns())
        .filter(|&c| {
            let col = batch.column(c);
            columns == Columns::All
                || (col.is_empty() || col.null_count() < col.len()) && !matches!(col.data_type(), DataType::List(_) if (0..col.len()).all(|r| cell(col, r).is_none()))
        })
        .collect();
    match format {
        Format::Json => {
            for row in json_rows(batch) {
                writeln!(out, "{row}")?;
            }
        }
        Format::Csv => {
            let names: Vec<&str> = shown
                .iter()
                .map(|&c| schema.field(c).name().as_str())
                .collect();
            writeln!(out, "{}", names.join(","))?;
            for row in 0..batch.num_rows() {
                let cells: Vec<String> = shown
                    .iter()
                    .map(|&c| csv_escape(&cell(batch.column(c), row).unwrap_or_default()))
                    .collect();
                writeln!(out, "{}", cells.join(","))?;
            }
        }
        Format::Table => {
            let mut rows: Vec<Vec<String>> = vec![
                shown
                    .iter()
                    .map(|&c| schema.field(c).name().clone())
                    .collect(),
            ];
            for row in 0..batch.num_rows() {
                rows.push(
                    shown
                        .iter()
                        .map(|&c| cell(batch.column(c), row).unwrap_or_else(|| "-".into()))
                        .collect(),
                );
            }
            let widths: Vec<usize> = (0..shown.len())
                .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
                .collect();
            for r in rows {
                let line: Vec<String> = r
                    .iter()
                    .zip(&widths)
                    .map(|(v, w)| format!("{v:<w$}"))
                    .collect();
                writeln!(out, "{}", line.join("  ").trim_end())?;
            }
        }
    }
    Ok(())
}

fn csv_escape(v: &str) -> String {
    if v.contains([',', '"', '\n']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

/// Each row as a JSON object: numbers as numbers, addresses and times as
/// text, nulls left out.
pub fn json_rows(batch: &RecordBatch) -> Vec<serde_json::Value> {
    let schema = batch.schema();
    (0..batch.num_rows())
        .map(|row| {
            let mut obj = serde_json::Map::new();
            for c in 0..batch.num_columns() {
                let column = batch.column(c);
                if column.is_null(row) {
                    continue;
                }
                let value = match column.data_type() {
                    DataType::UInt8 => column.as_primitive::<UInt8Type>().value(row).into(),
                    DataType::UInt16 => column.as_primitive::<UInt16Type>().value(row).into(),
                    DataType::UInt32 => column.as_primitive::<UInt32Type>().value(row).into(),
                    DataType::UInt64 => column.as_primitive::<UInt64Type>().value(row).into(),
                    DataType::Float64 => column.as_primitive::<Float64Type>().value(row).into(),
                    _ => match cell(column, row) {
                        Some(text) => serde_json::Value::from(text),
                        None => continue,
                    },
                };
                obj.insert(schema.field(c).name().clone(), value);
            }
            serde_json::Value::Object(obj)
        })
        .collect()
}
