//! Volumes of the traffic, not of the sample.
//!
//! A record of sampled traffic counts one packet in N: the store keeps what
//! the exporter counted (`bytes`, `packets`) and the rate (`sampling_rate`),
//! and queries see the traffic. Between the scan and the rest of a query,
//! [`view`] turns each batch into the view every query reads:
//!
//! - `bytes`, `packets`, `reverse_bytes`, `reverse_packets`: scaled by each
//!   record's rate (one in N counts N times), unless the query asks for
//!   [`Volumes::Counted`];
//! - `raw_bytes`, `raw_packets`, `raw_reverse_bytes`, `raw_reverse_packets`:
//!   the counts as exported, always.
//!
//! A record whose rate is unknown counts once, as Akvorado and nfdump do,
//! and is counted as such: [`RateCoverage`] goes with every answer, so the
//! share of traffic of unknown rate is never hidden. Rollups keep
//! `sampling_rate` as one of their dimensions, so the same view serves them:
//! a rollup row is a group of records of one rate.

use std::sync::{Arc, LazyLock};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{Array, ArrayRef, RecordBatch, UInt64Array};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};

/// Which volumes a query adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Volumes {
    /// The traffic: each record's counts times its sampling rate.
    #[default]
    Scaled,
    /// What the exporters counted, as sent (`--unscaled`).
    Counted,
}

impl Volumes {
    /// How an answer says which volumes it shows.
    pub fn describe(self) -> &'static str {
        match self {
            Volumes::Scaled => "bytes and packets scaled by each record's sampling rate",
            Volumes::Counted => "bytes and packets as the exporters counted them (unscaled)",
        }
    }
}

/// The column holding each record's rate (one in N).
pub const RATE_COLUMN: &str = "sampling_rate";

/// The volume columns of the view, each with the name of its unscaled twin.
pub const SCALED_COLUMNS: [(&str, &str); 4] = [
    ("bytes", "raw_bytes"),
    ("packets", "raw_packets"),
    ("reverse_bytes", "raw_reverse_bytes"),
    ("reverse_packets", "raw_reverse_packets"),
];

/// A view column that is not stored (`raw_bytes`...), if `name` is one:
/// the stored column it reads and its own `'static` name.
pub fn unscaled_column(name: &str) -> Option<(&'static str, &'static str)> {
    SCALED_COLUMNS.iter().find(|(_, raw)| *raw == name).copied()
}

/// The stored flow schema with the view's columns after it: what listings
/// and their concatenation present.
pub fn view_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let stored = hopscope_schema::stored_flow_schema();
        let mut fields: Vec<Field> = stored.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.extend(
            SCALED_COLUMNS
                .iter()
                .map(|(_, raw)| Field::new(*raw, DataType::UInt64, true)),
        );
        Arc::new(Schema::new_with_metadata(fields, stored.metadata().clone()))
    });
    Arc::clone(&SCHEMA)
}

/// The stored columns a scan must read to present `columns` of the view:
/// a volume needs its rate; an unscaled one, the stored count.
pub fn stored_columns(columns: &mut Vec<&'static str>) {
    let mut extra = Vec::new();
    for c in columns.iter() {
        if let Some((stored, _)) = unscaled_column(c) {
            extra.push(stored);
        }
        if SCALED_COLUMNS.iter().any(|(scaled, _)| scaled == c) {
            extra.push(RATE_COLUMN);
        }
    }
    columns.extend(extra);
    columns.retain(|c| unscaled_column(c).is_none());
    columns.sort_unstable();
    columns.dedup();
}

/// How many of a query's flows had a known sampling rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RateCoverage {
    /// Flow records matched (on rollups, the records they summed).
    pub flows: u64,
    /// Of those, records whose rate is unknown: counted once each.
    pub unknown_rate_flows: u64,
}

impl RateCoverage {
    /// Counts the rows of a batch of the view: by its `flows` column on
    /// rollups, one each on raw flows.
    pub fn count(&mut self, batch: &RecordBatch) {
        let weights = batch
            .column_by_name("flows")
            .and_then(|c| c.as_primitive_opt::<UInt64Type>());
        let weight = |row: usize| weights.map_or(1, |w| w.value(row));
        self.flows += match weights {
            Some(w) => w.values().iter().sum(),
            None => batch.num_rows() as u64,
        };
        let Some(rates) = batch
            .column_by_name(RATE_COLUMN)
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
        else {
            // no rate at all (rollups of an older format): every row unknown
            self.unknown_rate_flows += match weights {
                Some(w) => w.values().iter().sum(),
                None => batch.num_rows() as u64,
            };
            return;
        };
        self.unknown_rate_flows += (0..rates.len())
            .filter(|&row| !known(rates, row))
            .map(weight)
            .sum::<u64>();
    }

    pub fn add(&mut self, other: RateCoverage) {
        self.flows += other.flows;
        self.unknown_rate_flows += other.unknown_rate_flows;
    }

    /// The share of flows of unknown rate, 0 to 1.
    pub fn unknown_share(&self) -> f64 {
        if self.flows == 0 {
            0.0
        } else {
            self.unknown_rate_flows as f64 / self.flows as f64
        }
    }
}

fn known(rates: &UInt64Array, row: usize) -> bool {
    rates.is_valid(row) && rates.value(row) > 0
}

/// A scanned batch as the query sees it (see the module's doc): the
/// unscaled columns added beside the stored counts, which are scaled by
/// the rate when `volumes` says so.
pub fn view(batch: RecordBatch, volumes: Volumes) -> Result<RecordBatch, ArrowError> {
    let present: Vec<(usize, &str)> = SCALED_COLUMNS
        .iter()
        .filter_map(|(scaled, raw)| Some((batch.schema().index_of(scaled).ok()?, *raw)))
        .collect();
    if present.is_empty() {
        return Ok(batch);
    }
    let rates = batch
        .column_by_name(RATE_COLUMN)
        .and_then(|c| c.as_primitive_opt::<UInt64Type>())
        .cloned();
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for (index, raw) in present {
        let counted = Arc::clone(&columns[index]);
        if let (Volumes::Scaled, Some(rates)) = (volumes, &rates) {
            columns[index] = scale(&counted, rates)?;
        }
        fields.push(Field::new(raw, counted.data_type().clone(), true));
        columns.push(counted);
    }
    RecordBatch::try_new(
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        columns,
    )
}

/// `counts` times each row's rate; a row of unknown rate counts once, and
/// a product past `u64` stays at its largest value.
fn scale(counts: &ArrayRef, rates: &UInt64Array) -> Result<ArrayRef, ArrowError> {
    let counts = counts.as_primitive_opt::<UInt64Type>().ok_or_else(|| {
        ArrowError::SchemaError(format!("a volume column is {}", counts.data_type()))
    })?;
    let scaled: Vec<u64> = counts
        .values()
        .iter()
        .enumerate()
        .map(|(row, &v)| {
            let rate = if known(rates, row) {
                rates.value(row)
            } else {
                1
            };
            v.saturating_mul(rate)
        })
        .collect();
    Ok(Arc::new(UInt64Array::new(
        scaled.into(),
        counts.nulls().cloned(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(bytes: &[Option<u64>], rates: &[Option<u64>]) -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "bytes",
                Arc::new(UInt64Array::from(bytes.to_vec())) as ArrayRef,
            ),
            (RATE_COLUMN, Arc::new(UInt64Array::from(rates.to_vec()))),
        ])
        .unwrap()
    }

    fn column(batch: &RecordBatch, name: &str) -> Vec<Option<u64>> {
        batch
            .column_by_name(name)
            .unwrap()
            .as_primitive::<UInt64Type>()
            .iter()
            .collect()
    }

    #[test]
    fn volumes_scale_by_the_rate_and_keep_the_counts() {
        let b = batch(
            &[Some(100), Some(100), None, Some(u64::MAX / 2)],
            &[Some(1000), None, Some(10), Some(4)],
        );
        let scaled = view(b.clone(), Volumes::Scaled).unwrap();
        assert_eq!(
            column(&scaled, "bytes"),
            [Some(100_000), Some(100), None, Some(u64::MAX)]
        );
        assert_eq!(
            column(&scaled, "raw_bytes"),
            [Some(100), Some(100), None, Some(u64::MAX / 2)]
        );
        let counted = view(b, Volumes::Counted).unwrap();
        assert_eq!(column(&counted, "bytes"), column(&counted, "raw_bytes"));
    }

    #[test]
    fn coverage_counts_unknown_rates_by_record_and_by_rollup_weight() {
        let mut c = RateCoverage::default();
        c.count(&batch(
            &[Some(1), Some(1), Some(1)],
            &[Some(0), None, Some(5)],
        ));
        assert_eq!((c.flows, c.unknown_rate_flows), (3, 2));
        let rollup = RecordBatch::try_from_iter([
            (
                "flows",
                Arc::new(UInt64Array::from(vec![10, 30])) as ArrayRef,
            ),
            (
                RATE_COLUMN,
                Arc::new(UInt64Array::from(vec![None, Some(100)])),
            ),
        ])
        .unwrap();
        c.count(&rollup);
        assert_eq!((c.flows, c.unknown_rate_flows), (43, 12));
        assert!((c.unknown_share() - 12.0 / 43.0).abs() < 1e-12);
    }

    #[test]
    fn scans_read_what_the_view_needs() {
        let mut columns = vec!["raw_bytes", "src_addr", "packets"];
        stored_columns(&mut columns);
        assert_eq!(columns, ["bytes", "packets", RATE_COLUMN, "src_addr"]);
    }
}
