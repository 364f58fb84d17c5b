//! Record batches to text: an aligned table, JSON lines or CSV, with
//! addresses as dotted/colon text and times in RFC 3339.

use std::io::Write;

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampNanosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use hopscope_schema::format_addr;

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

/// Nanoseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub fn format_time(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

pub fn write(out: &mut impl Write, batch: &RecordBatch, format: Format) -> std::io::Result<()> {
    let schema = batch.schema();
    // columns that are null in every row say nothing: leave them out of tables and CSV
    let shown: Vec<usize> = (0..batch.num_columns())
        .filter(|&c| {
            let col = batch.column(c);
            col.null_count() < col.len() && !matches!(col.data_type(), DataType::List(_) if (0..col.len()).all(|r| cell(col, r).is_none()))
        })
        .collect();
    match format {
        Format::Json => {
            for row in 0..batch.num_rows() {
                let mut obj = serde_json::Map::new();
                for c in 0..batch.num_columns() {
                    if let Some(v) = cell(batch.column(c), row) {
                        let value = match batch.column(c).data_type() {
                            DataType::UInt8
                            | DataType::UInt16
                            | DataType::UInt32
                            | DataType::UInt64 => {
                                serde_json::Value::from(v.parse::<u64>().unwrap_or_default())
                            }
                            _ => serde_json::Value::from(v),
                        };
                        obj.insert(schema.field(c).name().clone(), value);
                    }
                }
                writeln!(out, "{}", serde_json::Value::Object(obj))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_time(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            format_time(2_085_978_496_000_000_000),
            "2036-02-07T06:28:16.000000000Z"
        );
    }
}
