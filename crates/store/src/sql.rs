//! Ad-hoc SQL over the store's Parquet files, through DataFusion (cargo
//! feature `sql`): read-only, with a memory limit and a time limit.
//!
//! Each table of the store is registered under its directory name (`flows`,
//! `flows_1m`, `flows_1h`, `health`, `packet_reports`,
//! `interface_counters`) as a listing of its segments, so SQL sees what the
//! query executor sees. Statements other than queries (DDL, DML, `SET`,
//! `COPY`) are refused before they are planned.
//!
//! DataFusion brings its own Arrow major version, so its batches stay on
//! this side: [`SqlOutput`] renders them as a table, JSON lines or CSV.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{ParquetReadOptions, SQLOptions, SessionConfig, SessionContext};

use crate::Store;
use crate::layout::Table;

/// Bounds on one SQL query.
#[derive(Debug, Clone, Copy)]
pub struct SqlLimits {
    /// Memory for joins, sorts and aggregations, bytes.
    pub memory_bytes: usize,
    pub timeout: Duration,
    /// Rows returned at most; the rest are cut, and the cut is reported.
    pub max_rows: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 1 << 30,
            timeout: Duration::from_secs(60),
            max_rows: 100_000,
        }
    }
}

/// Why a SQL query gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("the query ran longer than its limit of {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Runtime(String),
}

/// The rows of a SQL query, and whether the row limit cut them.
#[derive(Debug)]
pub struct SqlOutput {
    pub batches: Vec<RecordBatch>,
    pub truncated: bool,
}

impl SqlOutput {
    /// Rows returned.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// The rows in `format`.
    pub fn render(&self, format: crate::render::Format) -> Result<String, SqlError> {
        use crate::render::Format;
        use datafusion::arrow::{csv, json, util::pretty};
        let bytes = match format {
            Format::Table => {
                return Ok(pretty::pretty_format_batches(&self.batches)
                    .map_err(|e| SqlError::Runtime(e.to_string()))?
                    .to_string()
                    + "\n");
            }
            Format::Json => {
                let mut w = json::LineDelimitedWriter::new(Vec::new());
                for b in &self.batches {
                    w.write(b).map_err(|e| SqlError::Runtime(e.to_string()))?;
                }
                w.finish().map_err(|e| SqlError::Runtime(e.to_string()))?;
                w.into_inner()
            }
            Format::Csv => {
                let mut w = csv::Writer::new(Vec::new());
                for b in &self.batches {
                    w.write(b).map_err(|e| SqlError::Runtime(e.to_string()))?;
                }
                w.into_inner()
            }
        };
        String::from_utf8(bytes).map_err(|e| SqlError::Runtime(e.to_string()))
    }
}

/// The longest SQL text accepted.
pub const MAX_SQL_BYTES: usize = 16 * 1024;
/// Stack of the thread that plans and runs a query: DataFusion walks
/// expression trees recursively, and a long chain of operators within
/// [`MAX_SQL_BYTES`] must meet an error, not the end of a small stack
/// (which aborts the whole process, intake included); nesting itself is
/// bounded by DataFusion's parser (`datafusion.sql_parser.recursion_limit`,
/// 50 levels). Only the pages touched are ever committed.
const SQL_STACK_BYTES: usize = 256 << 20;

/// Runs one read-only SQL query over the store.
pub fn run_sql(store: &Store, sql: &str, limits: SqlLimits) -> Result<SqlOutput, SqlError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(SqlError::Runtime(format!(
            "the query is {} bytes long; the limit is {MAX_SQL_BYTES}",
            sql.len()
        )));
    }
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("sql".into())
            .stack_size(SQL_STACK_BYTES)
            .spawn_scoped(scope, || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_stack_size(SQL_STACK_BYTES)
                    .enable_time()
                    .build()
                    .map_err(|e| SqlError::Runtime(e.to_string()))?;
                runtime.block_on(async {
                    match tokio::time::timeout(limits.timeout, query(store, sql, limits)).await {
                        Ok(result) => result,
                        Err(_) => Err(SqlError::Timeout(limits.timeout)),
                    }
                })
            })
            .map_err(|e| SqlError::Runtime(e.to_string()))?
            .join()
            .map_err(|_| SqlError::Runtime("the query failed inside DataFusion".into()))?
    })
}

async fn query(store: &Store, sql: &str, limits: SqlLimits) -> Result<SqlOutput, SqlError> {
    let env = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(limits.memory_bytes)))
        .build_arc()?;
    // segments sit two directories down (day, hour)
    let config = SessionConfig::new().with_information_schema(true).set_bool(
        "datafusion.execution.listing_table_ignore_subdirectory",
        false,
    );
    let ctx = SessionContext::new_with_config_rt(config, env);
    for table in Table::ALL {
        let dir = store.root().join(table.dir_name());
        if store
            .segments(table)
            .map_err(|e| SqlError::Runtime(e.to_string()))?
            .is_empty()
        {
            continue;
        }
        let options = ParquetReadOptions::default().file_extension(".parquet");
        ctx.register_parquet(table.dir_name(), dir.to_string_lossy().as_ref(), options)
            .await?;
    }
    let read_only = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx.sql_with_options(sql, read_only).await?;
    let frame = frame.limit(0, Some(limits.max_rows + 1))?;
    let mut batches = frame.collect().await?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let truncated = rows > limits.max_rows;
    if truncated {
        let mut keep = limits.max_rows;
        for b in &mut batches {
            let n = b.num_rows().min(keep);
            *b = b.slice(0, n);
            keep -= n;
        }
        batches.retain(|b| b.num_rows() > 0);
    }
    Ok(SqlOutput { batches, truncated })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WriteOptions;
    use hopscope_schema::{FlowBatchBuilder, FlowRecord, ipv4_mapped};

    fn store_with_flows() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), WriteOptions::default()).unwrap();
        let mut b = FlowBatchBuilder::default();
        for k in 0..100u64 {
            b.append(&FlowRecord {
                time_received_ns: Some(1_795_651_200_000_000_000 + k as i64),
                src_addr: Some(ipv4_mapped([10, 0, 0, (k % 4) as u8])),
                proto: Some(if k % 2 == 0 { 6 } else { 17 }),
                bytes: Some(k),
                ..FlowRecord::default()
            });
        }
        store
            .writer()
            .write(Table::Flows, &[b.finish().unwrap()])
            .unwrap();
        (dir, store)
    }

    #[test]
    fn sql_reads_the_segments_the_executor_reads() {
        let (_dir, store) = store_with_flows();
        let out = run_sql(
            &store,
            "SELECT proto, count(*) AS flows, sum(bytes) AS bytes FROM flows GROUP BY proto ORDER BY proto",
            SqlLimits::default(),
        )
        .unwrap();
        assert!(!out.truncated);
        let csv = out.render(crate::render::Format::Csv).unwrap();
        assert_eq!(csv, "proto,flows,bytes\n6,50,2450\n17,50,2500\n");
    }

    #[test]
    fn hostile_statements_meet_an_error_not_the_stack() {
        let (_dir, store) = store_with_flows();
        // nesting past the parser's limit, and the longest chain of operators
        // the size limit lets through: each an error, the process alive
        let deep = format!(
            "SELECT {}1{} FROM flows",
            "(".repeat(2000),
            ")".repeat(2000)
        );
        assert!(run_sql(&store, &deep, SqlLimits::default()).is_err());
        let chain = format!("SELECT {}1 AS n FROM flows LIMIT 1", "1+".repeat(2000));
        let _ = run_sql(&store, &chain, SqlLimits::default());
        let long = format!("SELECT 1 /* {} */", "x".repeat(MAX_SQL_BYTES));
        let e = run_sql(&store, &long, SqlLimits::default()).unwrap_err();
        assert!(e.to_string().contains("limit"), "{e}");
    }

    #[test]
    fn only_queries_run_and_limits_hold() {
        let (_dir, store) = store_with_flows();
        for statement in [
            "DROP TABLE flows",
            "CREATE TABLE x AS SELECT 1",
            "INSERT INTO flows SELECT * FROM flows",
        ] {
            assert!(
                run_sql(&store, statement, SqlLimits::default()).is_err(),
                "{statement}"
            );
        }
        let limits = SqlLimits {
            max_rows: 10,
            ..SqlLimits::default()
        };
        let out = run_sql(&store, "SELECT * FROM flows", limits).unwrap();
        assert!(out.truncated);
        assert_eq!(out.rows(), 10);
        let e = run_sql(&store, "SELECT nonsense FROM flows", SqlLimits::default()).unwrap_err();
        assert!(e.to_string().contains("nonsense"), "{e}");
    }
}
