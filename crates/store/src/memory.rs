//! A backend that keeps every table in memory: for tests of what sits
//! above the store (it answers as the Parquet store does, without files),
//! and the reference the other backends are compared with.

use std::collections::HashMap;
use std::sync::RwLock;

use arrow_array::RecordBatch;

use crate::query::{Query, QueryError, QueryOutput, ScanStats};
use crate::scan::{Part, scan_parts};
use crate::{Backend, StoreError, Table};

/// Rows by table, oldest batch first (as the Parquet store lists its
/// segments); nothing is compacted, rolled up or expired.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Each batch with its earliest time, in that order.
    tables: RwLock<HashMap<Table, Vec<(i64, RecordBatch)>>>,
}

impl MemoryStore {
    fn rows(&self, table: Table) -> Vec<RecordBatch> {
        self.tables
            .read()
            .expect("no panic holds the tables")
            .get(&table)
            .map(|rows| rows.iter().map(|(_, b)| b.clone()).collect())
            .unwrap_or_default()
    }
}

impl Backend for MemoryStore {
    fn write(&self, table: Table, batches: &[RecordBatch]) -> Result<(), StoreError> {
        // what the Parquet writer refuses (no time column, null times), so
        // is refused here, before anything is kept
        let timed = batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| Ok((crate::writer::time_range(b)?.0, b.clone())))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut tables = self.tables.write().expect("no panic holds the tables");
        let rows = tables.entry(table).or_default();
        rows.extend(timed);
        // stable: batches of one time stay in the order written
        rows.sort_by_key(|(min, _)| *min);
        Ok(())
    }

    fn scan(
        &self,
        table: Table,
        columns: &[&str],
        from_ns: i64,
        to_ns: i64,
        each: &mut dyn FnMut(RecordBatch) -> Result<(), StoreError>,
    ) -> Result<ScanStats, StoreError> {
        scan_parts(
            self.rows(table).into_iter().map(Part::Rows),
            columns,
            from_ns,
            to_ns,
            each,
        )
    }

    fn query(&self, q: &Query) -> Result<QueryOutput, QueryError> {
        crate::query::execute_rows(q, &self.rows(Table::Flows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{TimestampNanosecondArray, UInt64Array};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};

    fn batch(times: &[Option<i64>]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                crate::TIME_COLUMN,
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                true,
            ),
            Field::new("bytes", DataType::UInt64, false),
        ]));
        let n = times.len() as u64;
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampNanosecondArray::from(times.to_vec()).with_timezone("UTC")),
                Arc::new(UInt64Array::from((0..n).collect::<Vec<_>>())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn rows_come_back_oldest_first_and_untimed_ones_are_refused() {
        let store = MemoryStore::default();
        store
            .write(Table::Flows, &[batch(&[Some(30), Some(31)])])
            .unwrap();
        store.write(Table::Flows, &[batch(&[Some(10)])]).unwrap();
        assert!(
            store
                .write(Table::Flows, &[batch(&[Some(5), None])])
                .is_err()
        );
        let mut firsts = Vec::new();
        store
            .scan(Table::Flows, &["bytes"], i64::MIN, i64::MAX, &mut |b| {
                let t = b.column_by_name(crate::TIME_COLUMN).unwrap();
                let t = t
                    .as_any()
                    .downcast_ref::<TimestampNanosecondArray>()
                    .unwrap();
                firsts.push(t.value(0));
                Ok(())
            })
            .unwrap();
        assert_eq!(firsts, vec![10, 30], "the refused batch kept nothing");
    }
}
