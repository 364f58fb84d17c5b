//! Keeping the store small and fast: compaction of an hour's segments into
//! one, 1-minute and 1-hour rollups of closed hours, retention by age and
//! size, and recovery of work a crash interrupted.
//!
//! Compaction replaces several files with one, which no rename does
//! atomically; a journal in `staging/` names the inputs and the output
//! before the output is committed. Readers ignore inputs whose journal's
//! output exists, and `recover` finishes (or undoes) the job after a crash.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use arrow_array::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::layout::{HOUR_NS, Segment, Table, partition_dir, segment_file_name};
use crate::query::{Aggregate, Counting, Query, Source, Volumes, execute};
use crate::writer::sync_dir;
use crate::{Store, StoreError, TIME_COLUMN, write_atomically};

/// Dimensions kept by 1-minute rollups: every one that a chart or a
/// top-N groups by, within the widest group key (128 octets, with the
/// time bucket).
pub const ROLLUP_1M_DIMS: &[&str] = &[
    "sampler_address",
    "exporter_name",
    "in_if",
    "out_if",
    "ip_version",
    "proto",
    "src_addr",
    "dst_addr",
    "dst_port",
    "src_as",
    "dst_as",
    "src_country",
    "dst_country",
    // a rollup row is a group of one rate, which the query view scales by
    "sampling_rate",
    // and of one boundary and event kind, for counting traffic once
    "boundary",
    "nat_event",
    "firewall_event",
];

/// Dimensions kept by 1-hour rollups: no addresses or ports, so that a
/// year of them stays small.
pub const ROLLUP_1H_DIMS: &[&str] = &[
    "sampler_address",
    "exporter_name",
    "in_if",
    "out_if",
    "ip_version",
    "proto",
    "src_as",
    "dst_as",
    "src_country",
    "dst_country",
    // a rollup row is a group of one rate, which the query view scales by
    "sampling_rate",
    // and of one boundary and event kind, for counting traffic once
    "boundary",
    "nat_event",
    "firewall_event",
];

/// How long data is kept and how much disk it may take.
#[derive(Debug, Clone)]
pub struct RetentionPolicy {
    /// Raw flows older than this are deleted (ns); `None` keeps them.
    pub flows_max_age_ns: Option<i64>,
    pub rollup_1m_max_age_ns: Option<i64>,
    pub rollup_1h_max_age_ns: Option<i64>,
    /// Oldest segments (raw first, then rollups) go until the store fits.
    pub max_bytes: Option<u64>,
    /// An hour is closed, and compacted and rolled up, this long after it ends.
    pub close_after_ns: i64,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            flows_max_age_ns: Some(7 * 24 * HOUR_NS),
            rollup_1m_max_age_ns: Some(30 * 24 * HOUR_NS),
            rollup_1h_max_age_ns: Some(365 * 24 * HOUR_NS),
            max_bytes: None,
            close_after_ns: 120 * 1_000_000_000,
        }
    }
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MaintenanceReport {
    pub segments_compacted: u64,
    pub compactions: u64,
    pub rollups_written: u64,
    pub segments_deleted_by_age: u64,
    pub segments_deleted_by_size: u64,
    pub bytes_deleted: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CompactionJournal {
    inputs: Vec<PathBuf>,
    output: PathBuf,
}

const JOURNAL_SUFFIX: &str = ".compact.json";

/// Finishes or undoes what a crash interrupted; removes uncommitted files.
pub(crate) fn recover(root: &Path) -> Result<(), StoreError> {
    let staging = root.join("staging");
    let entries = std::fs::read_dir(&staging).map_err(|e| StoreError::io(&staging, e))?;
    let mut journals = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| StoreError::io(&staging, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(JOURNAL_SUFFIX) {
            journals.push(path);
        } else if name.ends_with(".tmp") {
            // never committed: its rows were not acknowledged to anyone
            std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
        }
    }
    for journal in journals {
        let bytes = std::fs::read(&journal).map_err(|e| StoreError::io(&journal, e))?;
        if let Ok(j) = serde_json::from_slice::<CompactionJournal>(&bytes)
            && j.output.exists()
        {
            for input in &j.inputs {
                remove_if_exists(input)?;
            }
        }
        std::fs::remove_file(&journal).map_err(|e| StoreError::io(&journal, e))?;
    }
    Ok(())
}

fn remove_if_exists(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Segments a finished compaction replaced but has not deleted yet.
pub(crate) fn replaced_by_compaction(root: &Path) -> Result<HashSet<PathBuf>, StoreError> {
    let staging = root.join("staging");
    let mut hidden = HashSet::new();
    let Ok(entries) = std::fs::read_dir(&staging) else {
        return Ok(hidden);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.to_string_lossy().ends_with(JOURNAL_SUFFIX) {
            continue;
        }
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(j) = serde_json::from_slice::<CompactionJournal>(&bytes)
            && j.output.exists()
        {
            hidden.extend(j.inputs);
        }
    }
    Ok(hidden)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The format of rollups, the id in their file names: rollups of an older
/// format are stale and made again. 1: `sampling_rate` is a dimension (the
/// rollups of format 0 summed records of every rate together, which the
/// view cannot scale); 2: `boundary` and `nat_event` are dimensions, for
/// counting traffic once; 3: `firewall_event` too, and 1-minute rollups
/// keep `ip_version` (a query by it read raw flows for every partial hour,
/// and found nothing where only format-2 rollups are left).
const ROLLUP_FORMAT: u64 = 3;

/// The file name of the rollup of `hour`: fixed, so that a redo replaces it.
fn rollup_file_name(hour: i64) -> String {
    segment_file_name(hour, hour + HOUR_NS - 1, ROLLUP_FORMAT)
}

/// Rollup segments of `table`, of the current format, that are at least as
/// new as every raw segment of their hour (late data makes a rollup stale
/// until redone). An hour whose raw flows are gone keeps its rollups of an
/// older format: nothing can make them again, and a query reads them as
/// they are (volumes of unknown rate, every record counted).
pub(crate) fn fresh_rollups(
    store: &Store,
    table: Table,
    raw: &[Segment],
) -> Result<Vec<Segment>, StoreError> {
    let rollups = store.segments(table)?;
    Ok(rollups
        .into_iter()
        .filter(|r| {
            let current = r
                .path
                .file_name()
                .is_some_and(|n| *n == *rollup_file_name(r.hour()));
            // an older format only where it cannot be made again
            if !current && raw.iter().any(|s| s.hour() == r.hour()) {
                return false;
            }
            let Some(made) = modified(&r.path) else {
                return false;
            };
            raw.iter()
                .filter(|s| s.hour() == r.hour())
                .all(|s| modified(&s.path).is_some_and(|m| m <= made))
        })
        .collect())
}

impl Store {
    /// One pass of maintenance at time `now_ns`: compact and roll up
    /// closed hours, then apply retention.
    pub fn maintain(
        &self,
        policy: &RetentionPolicy,
        now_ns: i64,
    ) -> Result<MaintenanceReport, StoreError> {
        let mut report = MaintenanceReport::default();
        let closed_before = now_ns - policy.close_after_ns;
        let raw = self.segments(Table::Flows)?;
        let mut hours: Vec<i64> = raw.iter().map(Segment::hour).collect();
        hours.dedup();
        for hour in hours {
            if hour + HOUR_NS > closed_before {
                continue;
            }
            let in_hour: Vec<&Segment> = raw.iter().filter(|s| s.hour() == hour).collect();
            if in_hour.len() > 1 {
                self.compact(Table::Flows, hour, &in_hour)?;
                report.compactions += 1;
                report.segments_compacted += in_hour.len() as u64;
            }
            report.rollups_written += self.roll_up(hour)?;
        }
        self.retain(policy, now_ns, &mut report)?;
        Ok(report)
    }

    /// Merges an hour's segments into one, ordered by time.
    fn compact(&self, table: Table, hour: i64, inputs: &[&Segment]) -> Result<(), StoreError> {
        let mut batches: Vec<RecordBatch> = Vec::new();
        for s in inputs {
            let file = std::fs::File::open(&s.path).map_err(|e| StoreError::io(&s.path, e))?;
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .and_then(|b| b.with_batch_size(64 * 1024).build())
                    .map_err(|e| StoreError::parquet(&s.path, e))?;
            for b in reader {
                batches.push(b?);
            }
        }
        let schema = hopscope_schema::stored_flow_schema();
        let batches = if table == Table::Flows {
            batches
                .iter()
                .map(|b| conform(b, &schema))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            batches
        };
        let merged = arrow_select::concat::concat_batches(&batches[0].schema(), &batches)?;
        let sorted = sort_by_time(&merged)?;
        let staged = self.writer().stage(table, hour, &[sorted])?;
        let journal_path = self
            .root()
            .join("staging")
            .join(format!("{}{JOURNAL_SUFFIX}", staged.name));
        let journal = CompactionJournal {
            inputs: inputs.iter().map(|s| s.path.clone()).collect(),
            output: staged.target.clone(),
        };
        let json = serde_json::to_vec(&journal).expect("journal serialises");
        write_atomically(
            &self.root().join("staging"),
            journal_path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("utf-8 name"),
            &json,
        )?;
        staged.commit()?;
        for s in inputs {
            remove_if_exists(&s.path)?;
        }
        remove_if_exists(&journal_path)?;
        Ok(())
    }

    /// Writes (or rewrites, when stale) the rollups of a closed hour.
    fn roll_up(&self, hour: i64) -> Result<u64, StoreError> {
        let raw: Vec<Segment> = self
            .segments(Table::Flows)?
            .into_iter()
            .filter(|s| s.hour() == hour)
            .collect();
        let mut written = 0;
        for (table, dims) in [
            (Table::Flows1m, ROLLUP_1M_DIMS),
            (Table::Flows1h, ROLLUP_1H_DIMS),
        ] {
            let fresh = fresh_rollups(self, table, &raw)?;
            if fresh.iter().any(|s| s.hour() == hour) {
                continue;
            }
            let mut q = Query {
                from_ns: hour,
                to_ns: hour + HOUR_NS,
                bucket_ns: table.bucket_ns(),
                aggregates: vec![
                    Aggregate::Flows,
                    Aggregate::Sum("bytes"),
                    Aggregate::Sum("packets"),
                ],
                source: Source::Raw,
                // sums as counted, of every record: the view scales each row
                // by its rate, and counting leaves out what does not count
                volumes: Volumes::Counted,
                counting: Counting::EveryPoint,
                threads: 1,
                ..Query::default()
            };
            q.group_by_names(dims)
                .map_err(|e| StoreError::Schema(e.to_string()))?;
            let out = execute(self, &q).map_err(|e| StoreError::Schema(e.to_string()))?;
            if out.rows.num_rows() == 0 {
                continue;
            }
            let rows = rename_column(&out.rows, "time_bucket", TIME_COLUMN)?;
            let name = rollup_file_name(hour);
            let dir = partition_dir(self.root(), table, hour);
            let old: Vec<PathBuf> = self
                .segments(table)?
                .into_iter()
                .filter(|s| s.hour() == hour)
                .map(|s| s.path)
                .collect();
            let staged = self
                .writer()
                .stage_named(table, hour, &[rows], |_, _| name.clone())?;
            staged.commit()?;
            for p in old.iter().filter(|p| p.parent() == Some(dir.as_path())) {
                if p.file_name() != Some(std::ffi::OsStr::new(&name)) {
                    remove_if_exists(p)?;
                }
            }
            written += 1;
        }
        Ok(written)
    }

    fn retain(
        &self,
        policy: &RetentionPolicy,
        now_ns: i64,
        report: &mut MaintenanceReport,
    ) -> Result<(), StoreError> {
        let ages = [
            (Table::Flows, policy.flows_max_age_ns),
            (Table::Health, policy.flows_max_age_ns),
            (Table::PacketReports, policy.flows_max_age_ns),
            (Table::Journeys, policy.flows_max_age_ns),
            (Table::Segments, policy.flows_max_age_ns),
            (Table::Flows1m, policy.rollup_1m_max_age_ns),
            (Table::Flows1h, policy.rollup_1h_max_age_ns),
            // error budgets, alert history and interface counters (what
            // capacity forecasts are fitted to: a row per interface and
            // poll, small) are as long-lived as the hourly rollups
            (Table::SloBuckets, policy.rollup_1h_max_age_ns),
            (Table::InterfaceCounters, policy.rollup_1h_max_age_ns),
            (Table::Alerts, policy.rollup_1h_max_age_ns),
        ];
        for (table, age) in ages {
            let Some(age) = age else { continue };
            for s in self.segments(table)? {
                if s.max_ns < now_ns - age {
                    self.delete(&s)?;
                    report.segments_deleted_by_age += 1;
                    report.bytes_deleted += s.bytes;
                }
            }
        }
        if let Some(max) = policy.max_bytes {
            let mut all: Vec<Segment> = Vec::new();
            for table in Table::ALL {
                all.extend(self.segments(table)?);
            }
            let mut total: u64 = all.iter().map(|s| s.bytes).sum();
            // raw flows go first, oldest first; rollups only when no raw is left
            all.sort_by_key(|s| (matches!(s.table, Table::Flows1m | Table::Flows1h), s.min_ns));
            for s in all {
                if total <= max {
                    break;
                }
                self.delete(&s)?;
                total -= s.bytes;
                report.segments_deleted_by_size += 1;
                report.bytes_deleted += s.bytes;
            }
        }
        Ok(())
    }

    fn delete(&self, s: &Segment) -> Result<(), StoreError> {
        remove_if_exists(&s.path)?;
        // drop partition directories left empty
        let mut dir = s.path.parent();
        for _ in 0..2 {
            match dir {
                Some(d) if std::fs::remove_dir(d).is_ok() => dir = d.parent(),
                _ => break,
            }
        }
        if let Some(d) = s.path.parent().filter(|d| d.exists()) {
            sync_dir(d)?;
        }
        Ok(())
    }
}

/// A batch with exactly the columns of `schema`: absent ones null (older
/// segments), for merging segments written by different versions.
fn conform(
    batch: &RecordBatch,
    schema: &arrow_schema::SchemaRef,
) -> Result<RecordBatch, StoreError> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            batch
                .column_by_name(f.name())
                .cloned()
                .unwrap_or_else(|| arrow_array::new_null_array(f.data_type(), batch.num_rows()))
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn sort_by_time(batch: &RecordBatch) -> Result<RecordBatch, StoreError> {
    let times = batch
        .column_by_name(TIME_COLUMN)
        .ok_or_else(|| StoreError::Schema(format!("no {TIME_COLUMN}")))?;
    let indices = arrow_ord::sort::sort_to_indices(times, None, None)?;
    Ok(arrow_select::take::take_record_batch(batch, &indices)?)
}

fn rename_column(batch: &RecordBatch, from: &str, to: &str) -> Result<RecordBatch, StoreError> {
    let schema = batch.schema();
    let fields: Vec<arrow_schema::Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if f.name() == from {
                f.as_ref().clone().with_name(to)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Ok(RecordBatch::try_new(
        std::sync::Arc::new(arrow_schema::Schema::new(fields)),
        batch.columns().to_vec(),
    )?)
}
