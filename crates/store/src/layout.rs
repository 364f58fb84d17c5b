//! Where things live under the data directory, and the names that let the
//! store prune segments without opening them.
//!
//! ```text
//! DATA/
//!   store.json                      schema version, written once
//!   staging/                        segments being written; never read
//!   flows/2026-11-26/01/seg-<min>-<max>-<id>.parquet
//!   flows_1m/2026-11-26/01/...      1-minute rollups of that hour
//!   flows_1h/2026-11-26/01/...      1-hour rollups of that hour
//!   health/2026-11-26/01/...        per-exporter counters at each flush
//!   packet_reports/..., interface_counters/...
//! ```
//!
//! A segment's name carries the range of its `time_received_ns` values, so a
//! query's time range skips whole files before any is opened; inside a
//! file, row-group statistics skip the rest.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use hopscope_schema::civil_from_days;

/// The tables of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Flow records as received and enriched.
    Flows,
    /// Flows summed per minute over the rollup dimensions.
    Flows1m,
    /// Flows summed per hour over the rollup dimensions.
    Flows1h,
    /// The collector's per-exporter counters, one row per exporter and
    /// domain at each flush: telemetry loss kept as data.
    Health,
    /// PSAMP packet reports of hopscope probes: the correlation feed.
    PacketReports,
    /// sFlow interface counters.
    InterfaceCounters,
    /// Journeys the correlator rebuilt: one flow across observation points.
    Journeys,
    /// The journeys' segments, one row each.
    Segments,
    /// SLOs judged per bucket: what error budgets are computed from.
    SloBuckets,
    /// Alerts as they fire and resolve.
    Alerts,
}

impl Table {
    pub const ALL: [Table; 10] = [
        Table::Flows,
        Table::Flows1m,
        Table::Flows1h,
        Table::Health,
        Table::PacketReports,
        Table::InterfaceCounters,
        Table::Journeys,
        Table::Segments,
        Table::SloBuckets,
        Table::Alerts,
    ];

    pub fn dir_name(self) -> &'static str {
        match self {
            Table::Flows => "flows",
            Table::Flows1m => "flows_1m",
            Table::Flows1h => "flows_1h",
            Table::Health => "health",
            Table::PacketReports => "packet_reports",
            Table::InterfaceCounters => "interface_counters",
            Table::Journeys => "journeys",
            Table::Segments => "segments",
            Table::SloBuckets => "slo_buckets",
            Table::Alerts => "alerts",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.dir_name() == name)
    }

    /// Width of the time buckets of a rollup table.
    pub fn bucket_ns(self) -> Option<i64> {
        match self {
            Table::Flows1m => Some(60 * NS_PER_SEC),
            Table::Flows1h => Some(HOUR_NS),
            _ => None,
        }
    }
}

pub const NS_PER_SEC: i64 = 1_000_000_000;
pub const HOUR_NS: i64 = 3600 * NS_PER_SEC;

/// One committed segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub path: PathBuf,
    pub table: Table,
    /// Smallest and largest `time_received_ns` in the file.
    pub min_ns: i64,
    pub max_ns: i64,
    pub bytes: u64,
}

impl Segment {
    /// The hour partition the segment belongs to (start, ns).
    pub fn hour(&self) -> i64 {
        self.min_ns.div_euclid(HOUR_NS) * HOUR_NS
    }

    pub fn overlaps(&self, from_ns: i64, to_ns: i64) -> bool {
        self.min_ns < to_ns && self.max_ns >= from_ns
    }
}

/// `seg-<min>-<max>-<id>.parquet`, zero-padded so that names sort by time.
pub fn segment_file_name(min_ns: i64, max_ns: i64, id: u64) -> String {
    format!("seg-{min_ns:020}-{max_ns:020}-{id:016x}.parquet")
}

fn parse_segment_name(name: &str) -> Option<(i64, i64)> {
    let rest = name.strip_prefix("seg-")?.strip_suffix(".parquet")?;
    let mut parts = rest.split('-');
    let min = parts.next()?.parse().ok()?;
    let max = parts.next()?.parse().ok()?;
    u64::from_str_radix(parts.next()?, 16).ok()?;
    parts.next().is_none().then_some((min, max))
}

/// `DATA/<table>/<yyyy-mm-dd>/<hh>` for the hour holding `ns`.
pub fn partition_dir(root: &Path, table: Table, ns: i64) -> PathBuf {
    let (date, hour) = date_hour(ns);
    root.join(table.dir_name())
        .join(date)
        .join(format!("{hour:02}"))
}

/// Every committed segment of a table, oldest first.
pub fn list_segments(root: &Path, table: Table) -> io::Result<Vec<Segment>> {
    let mut segments = Vec::new();
    let table_dir = root.join(table.dir_name());
    for day in read_dir_sorted(&table_dir)? {
        for hour in read_dir_sorted(&day)? {
            for file in read_dir_sorted(&hour)? {
                let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                let Some((min_ns, max_ns)) = parse_segment_name(name) else {
                    continue;
                };
                let bytes = fs::metadata(&file)?.len();
                segments.push(Segment {
                    path: file,
                    table,
                    min_ns,
                    max_ns,
                    bytes,
                });
            }
        }
    }
    segments.sort_by(|a, b| (a.min_ns, &a.path).cmp(&(b.min_ns, &b.path)));
    Ok(segments)
}

fn read_dir_sorted(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut entries = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<Vec<_>>>()?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    entries.sort();
    Ok(entries)
}

/// The UTC date (`yyyy-mm-dd`) and hour of a Unix time in ns.
pub fn date_hour(ns: i64) -> (String, u32) {
    let secs = ns.div_euclid(NS_PER_SEC);
    let days = secs.div_euclid(86_400);
    let hour = (secs.rem_euclid(86_400) / 3600) as u32;
    let (y, m, d) = civil_from_days(days);
    (format!("{y:04}-{m:02}-{d:02}"), hour)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_known_days() {
        assert_eq!(date_hour(0), ("1970-01-01".to_string(), 0));
        // 2026-11-26T01:13:41Z
        assert_eq!(
            date_hour(1_795_655_621 * NS_PER_SEC),
            ("2026-11-26".to_string(), 1)
        );
    }

    #[test]
    fn segment_names_carry_their_range() {
        let name = segment_file_name(5, 1_795_655_621_000_000_000, 0xabc);
        assert_eq!(
            parse_segment_name(&name),
            Some((5, 1_795_655_621_000_000_000))
        );
        assert_eq!(parse_segment_name("seg-1-2.parquet"), None);
        assert_eq!(parse_segment_name("seg-1-2-zz.parquet"), None);
    }
}
