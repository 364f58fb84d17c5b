//! The store as everything above it sees it: one trait, implemented by
//! the Parquet store of this crate and by [`MemoryStore`], and later by a
//! ClickHouse backend. The server, the pipeline and analytics hold a
//! `dyn Backend`; what a backend cannot do better (listing journeys,
//! finding one) it gets from default methods over its own `scan`.

use arrow_array::RecordBatch;
use serde_json::Value;

use crate::journeys::{self, JourneyListing, JourneyPage};
use crate::query::{Query, QueryError, QueryOutput, ScanStats};
use crate::{StoreError, Table};

/// What reads and writes hopscope's tables.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Commits the rows of `table`. The Parquet store commits a segment
    /// per hour, each atomically: rows of different hours may become
    /// visible one hour after another.
    fn write(&self, table: Table, batches: &[RecordBatch]) -> Result<(), StoreError>;

    /// The named columns (and the time) of the rows of `table` whose time
    /// is in `[from_ns, to_ns)`, batch by batch, oldest first.
    fn scan(
        &self,
        table: Table,
        columns: &[&str],
        from_ns: i64,
        to_ns: i64,
        each: &mut dyn FnMut(RecordBatch) -> Result<(), StoreError>,
    ) -> Result<ScanStats, StoreError>;

    /// Runs a flow query (filter, group-by, aggregates, buckets, top-N).
    fn query(&self, q: &Query) -> Result<QueryOutput, QueryError>;

    /// The journeys of a range that pass a filter, the worst first.
    fn journeys(&self, listing: &JourneyListing) -> Result<JourneyPage, QueryError> {
        journeys::list(self, listing)
    }

    /// One journey by the id a listing gave it, with its hop-by-hop
    /// detail; `None` when no journey has that id (retention removed it).
    fn journey(&self, id: &str) -> Result<Option<Value>, QueryError> {
        journeys::find(self, id)
    }

    /// The hop-by-hop details (JSON) of the journeys of a range that pass
    /// a filter, for pooling per segment.
    fn journey_details(
        &self,
        filter: &str,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<Vec<String>, QueryError> {
        journeys::details(self, filter, from_ns, to_ns)
    }

    /// Runs read-only SQL, where the backend has an SQL engine.
    #[cfg(feature = "sql")]
    fn sql(
        &self,
        _sql: &str,
        _limits: crate::sql::SqlLimits,
    ) -> Result<crate::sql::SqlOutput, crate::sql::SqlError> {
        Err(crate::sql::SqlError::Runtime(
            "this store has no SQL engine".into(),
        ))
    }
}

impl Backend for crate::Store {
    fn write(&self, table: Table, batches: &[RecordBatch]) -> Result<(), StoreError> {
        self.writer().write(table, batches).map(|_| ())
    }

    fn scan(
        &self,
        table: Table,
        columns: &[&str],
        from_ns: i64,
        to_ns: i64,
        each: &mut dyn FnMut(RecordBatch) -> Result<(), StoreError>,
    ) -> Result<ScanStats, StoreError> {
        crate::Store::scan(self, table, columns, from_ns, to_ns, each)
    }

    fn query(&self, q: &Query) -> Result<QueryOutput, QueryError> {
        crate::query::execute(self, q)
    }

    #[cfg(feature = "sql")]
    fn sql(
        &self,
        sql: &str,
        limits: crate::sql::SqlLimits,
    ) -> Result<crate::sql::SqlOutput, crate::sql::SqlError> {
        crate::sql::run_sql(self, sql, limits)
    }
}
