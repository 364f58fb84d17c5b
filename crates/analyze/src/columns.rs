//! Typed columns of a record batch by name, or an error naming what is
//! missing: the rows analytics read come from other crates' tables.

use arrow_array::cast::AsArray;
use arrow_array::types::{ArrowPrimitiveType, TimestampNanosecondType};
use arrow_array::{PrimitiveArray, RecordBatch, StringArray};

use crate::AnalyzeError;

/// The column `name` as Arrow primitives of type `T`.
pub(crate) fn primitive<'a, T: ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a PrimitiveArray<T>, AnalyzeError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| AnalyzeError::Rows(format!("no column {name}")))?
        .as_primitive_opt::<T>()
        .ok_or_else(|| AnalyzeError::Rows(format!("{name} is not {}", T::DATA_TYPE)))
}

/// The time column (`time_received_ns`).
pub(crate) fn times(
    batch: &RecordBatch,
) -> Result<&PrimitiveArray<TimestampNanosecondType>, AnalyzeError> {
    primitive::<TimestampNanosecondType>(batch, hopscope_store::TIME_COLUMN)
}

/// The text column `name`.
pub(crate) fn text<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a StringArray, AnalyzeError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| AnalyzeError::Rows(format!("no column {name}")))?
        .as_string_opt::<i32>()
        .ok_or_else(|| AnalyzeError::Rows(format!("{name} is not text")))
}

/// The hours of `[from_ns, to_ns)` in which `table` holds rows (their
/// starts), so that a range reaching far back visits only those.
pub(crate) fn hours_holding(
    store: &dyn hopscope_store::Backend,
    table: hopscope_store::Table,
    from_ns: i64,
    to_ns: i64,
) -> Result<std::collections::BTreeSet<i64>, AnalyzeError> {
    let hour = hopscope_store::layout::HOUR_NS;
    let mut hours = std::collections::BTreeSet::new();
    store.scan(table, &[], from_ns, to_ns, &mut |b| {
        // the store's scan always has its time column
        if let Ok(t) = times(&b) {
            hours.extend(
                t.values()
                    .iter()
                    .map(|&ns| ns.div_euclid(hour).saturating_mul(hour)),
            );
        }
        Ok(())
    })?;
    Ok(hours)
}
