//! A backend that keeps every table in memory: for tests of what sits
//! above the store (it answers as the Parquet store does, without files),
//! and the reference the other backends are compared with.

use std::collections::HashMap;
use std::sync::RwLock;

use arrow_array::RecordBatch;

use crate::query::{Query, QueryError, QueryOutput, ScanStats};
use crate::scan::{Part, scan_parts};
use crate::{Backend, StoreError, Table};

/// Rows by table, in the order written; nothing is compacted, rolled up
/// or expired.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: RwLock<HashMap<Table, Vec<RecordBatch>>>,
}

impl MemoryStore {
    fn rows(&self, table: Table) -> Vec<RecordBatch> {
        self.tables
            .read()
            .expect("no panic holds the tables")
            .get(&table)
            .cloned()
            .unwrap_or_default()
    }
}

impl Backend for MemoryStore {
    fn write(&self, table: Table, batches: &[RecordBatch]) -> Result<(), StoreError> {
        self.tables
            .write()
            .expect("no panic holds the tables")
            .entry(table)
            .or_default()
            .extend(batches.iter().filter(|b| b.num_rows() > 0).cloned());
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
