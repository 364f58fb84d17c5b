//! Reading segments: only the columns a query needs, only the row groups
//! whose time statistics meet its range.

use std::fs::File;

use arrow_array::{Array as _, BooleanArray, RecordBatch, TimestampNanosecondArray};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::statistics::Statistics;

use crate::layout::Segment;
use crate::{StoreError, TIME_COLUMN};

/// What a scan read and what it could skip, for `--explain` and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScanStats {
    pub segments: u64,
    pub segments_pruned: u64,
    pub row_groups: u64,
    pub row_groups_pruned: u64,
    pub rows_read: u64,
}

impl ScanStats {
    pub fn add(&mut self, other: &ScanStats) {
        self.segments += other.segments;
        self.segments_pruned += other.segments_pruned;
        self.row_groups += other.row_groups;
        self.row_groups_pruned += other.row_groups_pruned;
        self.rows_read += other.rows_read;
    }
}

/// Rows per batch handed to the executor: large enough to amortise
/// per-batch work, small enough to stay in cache.
const BATCH_ROWS: usize = 8 * 1024;

/// What the executor scans, one at a time per worker: a segment file, or
/// rows held in memory (by [`MemoryStore`](crate::MemoryStore)). Either
/// way it yields batches of the named columns it has.
#[derive(Debug, Clone)]
pub(crate) enum Part {
    Segment(Segment),
    Rows(RecordBatch),
}

impl Part {
    /// Reads the named columns (those the part has) of the rows that may
    /// lie in `[from_ns, to_ns)`, batch by batch.
    pub(crate) fn scan(
        &self,
        columns: &[&str],
        from_ns: i64,
        to_ns: i64,
        stats: &mut ScanStats,
        mut each: impl FnMut(RecordBatch) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        match self {
            Part::Segment(s) => scan_segment(s, columns, from_ns, to_ns, stats, each),
            Part::Rows(rows) => {
                stats.segments += 1;
                // the columns it has, in its own order, as a file projects them
                let schema = rows.schema();
                let indices: Vec<usize> = (0..schema.fields().len())
                    .filter(|&i| columns.contains(&schema.field(i).name().as_str()))
                    .collect();
                let projected = rows.project(&indices)?;
                let mut offset = 0;
                while offset < projected.num_rows() {
                    let len = BATCH_ROWS.min(projected.num_rows() - offset);
                    stats.rows_read += len as u64;
                    each(projected.slice(offset, len))?;
                    offset += len;
                }
                Ok(())
            }
        }
    }
}

/// Reads the named columns (those the file has) of the row groups of
/// `segment` that may hold times in `[from_ns, to_ns)`, batch by batch.
fn scan_segment(
    segment: &Segment,
    columns: &[&str],
    from_ns: i64,
    to_ns: i64,
    stats: &mut ScanStats,
    mut each: impl FnMut(RecordBatch) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    stats.segments += 1;
    let path = &segment.path;
    let file = match File::open(path) {
        Ok(f) => f,
        // compaction or retention removed it since it was listed
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| StoreError::parquet(path, e))?;
    let schema = builder.schema().clone();
    let roots: Vec<usize> = columns
        .iter()
        .filter_map(|name| schema.index_of(name).ok())
        .collect();
    let descr = builder.parquet_schema();
    let time_leaf = descr
        .columns()
        .iter()
        .position(|c| c.path().string() == TIME_COLUMN);
    let metadata = builder.metadata().clone();
    let mut keep = Vec::new();
    for (i, rg) in metadata.row_groups().iter().enumerate() {
        stats.row_groups += 1;
        let range = time_leaf
            .and_then(|leaf| rg.column(leaf).statistics())
            .and_then(|s| match s {
                Statistics::Int64(v) => Some((*v.min_opt()?, *v.max_opt()?)),
                _ => None,
            });
        match range {
            Some((lo, hi)) if hi < from_ns || lo >= to_ns => stats.row_groups_pruned += 1,
            _ => keep.push(i),
        }
    }
    if keep.is_empty() {
        return Ok(());
    }
    let mask = ProjectionMask::roots(descr, roots);
    let reader = builder
        .with_projection(mask)
        .with_row_groups(keep)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| StoreError::parquet(path, e))?;
    for batch in reader {
        let batch = batch?;
        stats.rows_read += batch.num_rows() as u64;
        each(batch)?;
    }
    Ok(())
}

/// The rows of `parts` whose time is in `[from_ns, to_ns)`, with the named
/// columns and the time: what every backend's `scan` does once it knows
/// its parts.
pub(crate) fn scan_parts(
    parts: impl IntoIterator<Item = Part>,
    columns: &[&str],
    from_ns: i64,
    to_ns: i64,
    each: &mut dyn FnMut(RecordBatch) -> Result<(), StoreError>,
) -> Result<ScanStats, StoreError> {
    let mut columns = columns.to_vec();
    if !columns.contains(&TIME_COLUMN) {
        columns.push(TIME_COLUMN);
    }
    let mut stats = ScanStats::default();
    for part in parts {
        part.scan(&columns, from_ns, to_ns, &mut stats, |batch| {
            let time = batch
                .column_by_name(TIME_COLUMN)
                .expect("time column projected");
            let times = time
                .as_any()
                .downcast_ref::<TimestampNanosecondArray>()
                .ok_or_else(|| {
                    arrow_schema::ArrowError::SchemaError(format!(
                        "{TIME_COLUMN} is {}, not nanosecond timestamps",
                        time.data_type()
                    ))
                })?;
            let batch = match rows_in_range(times, from_ns, to_ns) {
                None => batch,
                Some(keep) => arrow_select::filter::filter_record_batch(&batch, &keep)?,
            };
            if batch.num_rows() == 0 {
                return Ok(());
            }
            each(batch)
        })?;
    }
    Ok(stats)
}

impl crate::Store {
    /// Reads the named columns of `table` for the rows whose time is in
    /// `[from_ns, to_ns)`, batch by batch, oldest segment first: the way
    /// other parts of hopscope (the correlator, the API) read tables the
    /// flow executor does not cover. The time column is always read.
    pub fn scan(
        &self,
        table: crate::Table,
        columns: &[&str],
        from_ns: i64,
        to_ns: i64,
        mut each: impl FnMut(RecordBatch) -> Result<(), StoreError>,
    ) -> Result<ScanStats, StoreError> {
        let (inside, outside): (Vec<Segment>, Vec<Segment>) = self
            .segments(table)?
            .into_iter()
            .partition(|s| s.overlaps(from_ns, to_ns));
        let mut stats = scan_parts(
            inside.into_iter().map(Part::Segment),
            columns,
            from_ns,
            to_ns,
            &mut each,
        )?;
        stats.segments_pruned += outside.len() as u64;
        Ok(stats)
    }
}

/// Which rows of a time column lie in `[from_ns, to_ns)`; `None` when
/// every row does (the usual case, when the scan pruned by statistics).
pub(crate) fn rows_in_range(
    times: &TimestampNanosecondArray,
    from_ns: i64,
    to_ns: i64,
) -> Option<BooleanArray> {
    let values = times.values();
    let (lo, hi) = values
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    (lo < from_ns || hi >= to_ns).then(|| {
        values
            .iter()
            .map(|&t| Some(t >= from_ns && t < to_ns))
            .collect()
    })
}
