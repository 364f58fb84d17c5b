//! hopscope's embedded store: flows, rollups and exporter health as Parquet
//! segments partitioned by hour under one data directory, and the query
//! executor that answers filters, group-bys, top-N and time series over them.
//!
//! Segments are committed atomically (written under `staging/`, synced,
//! renamed), so a crash never leaves a half-visible file; compaction merges
//! an hour's small segments, rollups sum closed hours per minute and per
//! hour, and retention deletes by age and size. The files are plain Parquet
//! that DuckDB, pandas or ClickHouse read as they are.
//!
//! Everything above the store holds it as a [`Backend`], the trait that
//! [`Store`] and the in-memory [`MemoryStore`] implement (and a ClickHouse
//! backend will).
//!
//! The crate does not receive or decode anything: the collector hands it
//! record batches of the `hopscope-schema` tables. Ad-hoc SQL runs in
//! DataFusion over the same files, behind the cargo feature `sql`.

#![forbid(unsafe_code)]

mod backend;
pub mod journeys;
pub mod layout;
mod maintain;
mod memory;
pub mod query;
pub mod render;
mod scan;
#[cfg(feature = "sql")]
pub mod sql;
mod writer;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use backend::Backend;
pub use layout::{Segment, Table};
pub use maintain::{MaintenanceReport, RetentionPolicy};
pub use memory::MemoryStore;
pub use writer::{SegmentWriter, WriteOptions};

/// Unix time now, ns: the clock every stored time is on.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Every table is partitioned and pruned by this column.
pub const TIME_COLUMN: &str = "time_received_ns";

/// Why a store operation failed, with the file it was about.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("schema: {0}")]
    Schema(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error(
        "the data directory was written with schema version {found}; this hopscope reads up to {supported}"
    )]
    SchemaVersion { found: u32, supported: u32 },
    /// A backend other than the files of this crate (a ClickHouse server).
    #[error("{backend}: {source}")]
    Backend {
        backend: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn parquet(path: &Path, source: parquet::errors::ParquetError) -> Self {
        StoreError::Parquet {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `store.json`: what a later version must know to read this directory.
#[derive(Debug, Serialize, Deserialize)]
struct StoreManifest {
    schema_version: u32,
}

/// One data directory: its writer, its segments, its maintenance.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    writer: SegmentWriter,
}

impl Store {
    /// Opens (creating if needed) a data directory. Staged files left by a
    /// crash were never committed and are removed; an interrupted
    /// compaction is finished or undone.
    pub fn open(root: impl Into<PathBuf>, options: WriteOptions) -> Result<Store, StoreError> {
        let root = root.into();
        let staging = root.join("staging");
        std::fs::create_dir_all(&staging).map_err(|e| StoreError::io(&staging, e))?;
        let manifest_path = root.join("store.json");
        match std::fs::read(&manifest_path) {
            Ok(bytes) => {
                let manifest: StoreManifest = serde_json::from_slice(&bytes)
                    .map_err(|e| StoreError::Schema(format!("{}: {e}", manifest_path.display())))?;
                if manifest.schema_version > hopscope_schema::SCHEMA_VERSION {
                    return Err(StoreError::SchemaVersion {
                        found: manifest.schema_version,
                        supported: hopscope_schema::SCHEMA_VERSION,
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let manifest = StoreManifest {
                    schema_version: hopscope_schema::SCHEMA_VERSION,
                };
                let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
                write_atomically(&root, "store.json", &json)?;
            }
            Err(e) => return Err(StoreError::io(&manifest_path, e)),
        }
        maintain::recover(&root)?;
        // ids only need to be unique within the directory: start past any
        // used before by starting from the clock
        let first_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(Store {
            writer: SegmentWriter::new(root.clone(), options, first_id),
            root,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn writer(&self) -> &SegmentWriter {
        &self.writer
    }

    /// Committed segments of a table, oldest first.
    pub fn segments(&self, table: Table) -> Result<Vec<Segment>, StoreError> {
        layout::list_segments(&self.root, table).map_err(|e| StoreError::io(&self.root, e))
    }
}

/// Replaces `dir/name` with `bytes` so that readers see the old or the new
/// content, never a mix (write, sync, rename, sync the directory).
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write as _;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| StoreError::io(&tmp, e))?;
    file.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
    let target = dir.join(name);
    std::fs::rename(&tmp, &target).map_err(|e| StoreError::io(&target, e))?;
    writer::sync_dir(dir)
}
