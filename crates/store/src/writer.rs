//! Committing record batches as Parquet segments, all or nothing.
//!
//! A segment is written under `staging/`, synced, and only then renamed into
//! its hour partition; the rename is atomic, so a reader (or a restart after
//! `kill -9`) sees a whole segment or none. What a crash can lose is what the
//! caller had not handed over yet: at most one flush interval.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::{Array, RecordBatch, TimestampNanosecondArray};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::layout::{HOUR_NS, Segment, Table, partition_dir, segment_file_name};
use crate::{StoreError, TIME_COLUMN};

/// How segments are written.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// zstd level: 1 is fast, higher levels shrink cold data further.
    pub zstd_level: i32,
    /// Rows per row group: the unit of pruning inside a file.
    pub row_group_rows: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            zstd_level: 3,
            row_group_rows: 128 * 1024,
        }
    }
}

/// Writes segments of the store under one data directory.
#[derive(Debug)]
pub struct SegmentWriter {
    root: PathBuf,
    options: WriteOptions,
    next_id: AtomicU64,
}

impl SegmentWriter {
    pub(crate) fn new(root: PathBuf, options: WriteOptions, first_id: u64) -> Self {
        Self {
            root,
            options,
            next_id: AtomicU64::new(first_id),
        }
    }

    /// How a segment is written; `empty` names the columns that hold only
    /// nulls in it.
    fn properties(&self, empty: &[String]) -> Result<WriterProperties, StoreError> {
        let level = ZstdLevel::try_new(self.options.zstd_level).map_err(|e| {
            StoreError::Config(format!("zstd level {}: {e}", self.options.zstd_level))
        })?;
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(self.options.row_group_rows))
            .set_statistics_enabled(EnabledStatistics::Chunk)
            // dictionaries cost a hash per value and mostly fall back on
            // addresses, ports, times and counters; zstd finds the repeats
            .set_dictionary_enabled(false);
        // names repeat endlessly: there a dictionary is the right encoding
        for f in hopscope_schema::ENRICHMENT_FIELDS {
            props = props.set_column_dictionary_enabled(ColumnPath::from(f.name), true);
        }
        // A column of nulls is a run of zero definition levels, a few octets
        // a page: compressing them gains nothing, and each compressed column
        // costs a zstd context per row group (most of the 70 columns are
        // empty in most segments; their contexts were a sixth of a busy
        // collector's writer, in page faults)
        for name in empty {
            props = props
                .set_column_compression(ColumnPath::from(name.as_str()), Compression::UNCOMPRESSED);
        }
        Ok(props
            .set_created_by(concat!("hopscope ", env!("CARGO_PKG_VERSION")).to_string())
            .build())
    }

    /// Commits `batches` of `table` as one segment per hour they touch.
    /// Returns the committed segments; an `Err` commits nothing it names.
    pub fn write(&self, table: Table, batches: &[RecordBatch]) -> Result<Vec<Segment>, StoreError> {
        let mut by_hour: Vec<(i64, Vec<RecordBatch>)> = Vec::new();
        for batch in batches.iter().filter(|b| b.num_rows() > 0) {
            for (hour, part) in split_by_hour(batch)? {
                match by_hour.iter_mut().find(|(h, _)| *h == hour) {
                    Some((_, parts)) => parts.push(part),
                    None => by_hour.push((hour, vec![part])),
                }
            }
        }
        by_hour
            .into_iter()
            .map(|(hour, parts)| self.write_segment(table, hour, &parts))
            .collect()
    }

    fn write_segment(
        &self,
        table: Table,
        hour: i64,
        batches: &[RecordBatch],
    ) -> Result<Segment, StoreError> {
        self.stage(table, hour, batches)?.commit()
    }

    /// Writes batches of one hour into a staged file, not yet visible.
    pub(crate) fn stage(
        &self,
        table: Table,
        hour: i64,
        batches: &[RecordBatch],
    ) -> Result<Staged, StoreError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.stage_named(table, hour, batches, |min_ns, max_ns| {
            segment_file_name(min_ns, max_ns, id)
        })
    }

    /// [`stage`](Self::stage) under the name `name` gives the batches'
    /// time range.
    pub(crate) fn stage_named(
        &self,
        table: Table,
        hour: i64,
        batches: &[RecordBatch],
        name: impl FnOnce(i64, i64) -> String,
    ) -> Result<Staged, StoreError> {
        let (mut min_ns, mut max_ns) = (i64::MAX, i64::MIN);
        for b in batches {
            let (lo, hi) = time_range(b)?;
            min_ns = min_ns.min(lo);
            max_ns = max_ns.max(hi);
        }
        let name = name(min_ns, max_ns);
        let staging = self.root.join("staging").join(format!("{name}.tmp"));
        let file = File::create(&staging).map_err(|e| StoreError::io(&staging, e))?;
        let schema = batches[0].schema();
        let empty: Vec<String> = (schema.fields().iter().enumerate())
            .filter(|&(i, _)| {
                batches
                    .iter()
                    .all(|b| b.column(i).null_count() == b.num_rows())
            })
            .map(|(_, f)| f.name().clone())
            .collect();
        let properties = self.properties(&empty)?;
        let mut writer = ArrowWriter::try_new(file, schema, Some(properties))
            .map_err(|e| StoreError::parquet(&staging, e))?;
        for b in batches {
            writer
                .write(b)
                .map_err(|e| StoreError::parquet(&staging, e))?;
        }
        let file = writer
            .into_inner()
            .map_err(|e| StoreError::parquet(&staging, e))?;
        file.sync_all().map_err(|e| StoreError::io(&staging, e))?;
        let bytes = file
            .metadata()
            .map_err(|e| StoreError::io(&staging, e))?
            .len();
        let dir = partition_dir(&self.root, table, hour);
        Ok(Staged {
            target: dir.join(&name),
            name,
            staging,
            dir,
            segment: Segment {
                path: PathBuf::new(),
                table,
                min_ns,
                max_ns,
                bytes,
            },
        })
    }
}

/// A segment written and synced under `staging/`, invisible until committed.
#[derive(Debug)]
pub(crate) struct Staged {
    pub name: String,
    /// Where it will be once committed.
    pub target: PathBuf,
    staging: PathBuf,
    dir: PathBuf,
    segment: Segment,
}

impl Staged {
    /// Makes the segment visible, atomically and durably.
    pub fn commit(self) -> Result<Segment, StoreError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| StoreError::io(&self.dir, e))?;
        fs::rename(&self.staging, &self.target).map_err(|e| StoreError::io(&self.target, e))?;
        sync_dir(&self.dir)?;
        Ok(Segment {
            path: self.target,
            ..self.segment
        })
    }
}

/// Makes a rename in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

/// The time column of a batch of any table.
pub(crate) fn time_column(batch: &RecordBatch) -> Result<&TimestampNanosecondArray, StoreError> {
    batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| StoreError::Schema(format!("a batch has no {TIME_COLUMN} timestamp column")))
}

pub(crate) fn time_range(batch: &RecordBatch) -> Result<(i64, i64), StoreError> {
    let times = time_column(batch)?;
    if times.null_count() > 0 {
        return Err(StoreError::Schema(format!("{TIME_COLUMN} has nulls")));
    }
    let values = times.values();
    let min = values.iter().copied().min().unwrap_or(0);
    let max = values.iter().copied().max().unwrap_or(0);
    Ok((min, max))
}

/// Splits a batch into the hours of its time column (nearly always one).
fn split_by_hour(batch: &RecordBatch) -> Result<Vec<(i64, RecordBatch)>, StoreError> {
    let (min, max) = time_range(batch)?;
    let first = min.div_euclid(HOUR_NS);
    let last = max.div_euclid(HOUR_NS);
    if first == last {
        return Ok(vec![(first * HOUR_NS, batch.clone())]);
    }
    let times = time_column(batch)?.values().clone();
    let mut parts = Vec::new();
    for hour in first..=last {
        let mask: arrow_array::BooleanArray = times
            .iter()
            .map(|&t| Some(t.div_euclid(HOUR_NS) == hour))
            .collect();
        let part = arrow_select::filter::filter_record_batch(batch, &mask)?;
        if part.num_rows() > 0 {
            parts.push((hour * HOUR_NS, part));
        }
    }
    Ok(parts)
}
