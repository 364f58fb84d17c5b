//! The query executor: filters, group-by on any fields, aggregates, top-N
//! and time buckets over the store's segments, on Arrow's kernels.
//!
//! A [`Query`] is a plan in plain data (the CLI and the HTTP API build the
//! same struct); [`execute`] picks the segments its time range needs, the
//! rollups that can answer it exactly, reads only the columns it names, and
//! aggregates in parallel, one hash table per worker merged at the end.

mod counting;
mod eval;
mod exec;
pub mod filter;
mod group;
mod volume;

use arrow_array::RecordBatch;
use hopscope_schema::Kind;

pub use eval::evaluate;
pub use exec::{execute, execute_rows, filter_fields};
pub use filter::{
    CmpOp, Expr, FilterError, Value, field_kind, journey_field_kind, parse_filter,
    parse_journey_filter,
};

pub use crate::scan::ScanStats;
pub use counting::{Counting, LeftOut, POINT_FIELDS};
pub use volume::{RATE_COLUMN, RateCoverage, SCALED_COLUMNS, Volumes};

/// The nearest-rank `p`th percentile (0 < p ≤ 100) of `values`, as
/// billing computes the 95th of 5-minute samples: sort, and take the
/// value at rank ⌈p × n / 100⌉. It is always one of the values (never an
/// interpolation); `values` is reordered. One implementation for the
/// query aggregate `pNN(F)`, the API's series and capacity planning.
pub fn percentile<T: Copy + Ord>(values: &mut [T], p: f64) -> Option<T> {
    nearest_rank(values, p, T::cmp)
}

/// [`percentile`] of floats, in their total order (NaN last).
pub fn percentile_f64(values: &mut [f64], p: f64) -> Option<f64> {
    nearest_rank(values, p, f64::total_cmp)
}

fn nearest_rank<T: Copy>(
    values: &mut [T],
    p: f64,
    order: impl FnMut(&T, &T) -> std::cmp::Ordering,
) -> Option<T> {
    if values.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    // p × n first: exact for the whole percentiles; the small allowance
    // keeps 99.9 × 1000 / 100 at rank 999
    let rank = ((p * values.len() as f64 / 100.0) - 1e-9).ceil().max(1.0) as usize - 1;
    let rank = rank.min(values.len() - 1);
    let (_, x, _) = values.select_nth_unstable_by(rank, order);
    Some(*x)
}

/// Why a query cannot run.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Filter(#[from] FilterError),
    #[error("{0}")]
    Plan(String),
    #[error(transparent)]
    Store(#[from] crate::StoreError),
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// One aggregate column of a grouped query.
#[derive(Debug, Clone, PartialEq)]
pub enum Aggregate {
    /// Number of flow records (on rollups: the flows they summed).
    Flows,
    Sum(&'static str),
    Min(&'static str),
    Max(&'static str),
    Avg(&'static str),
    /// Nearest-rank percentile (1..=99) of a field's values.
    Percentile(&'static str, u8),
    /// Bits per second: bytes × 8 over the range (or bucket) duration.
    Bps,
    /// Packets per second over the range (or bucket) duration.
    Pps,
    /// Bytes per packet.
    Bpp,
}

impl Aggregate {
    /// Parses `flows`, `bytes`, `packets`, `raw_bytes`, `raw_packets`,
    /// `bps`, `pps`, `bpp`, `sum(F)`, `min(F)`, `max(F)`, `avg(F)` and
    /// `pNN(F)` (such as `p95(bytes)`). Volumes are scaled by sampling
    /// (see [`Volumes`]); the `raw_` ones are the exporters' counts.
    pub fn parse(text: &str) -> Result<Aggregate, QueryError> {
        let t = text.trim().to_ascii_lowercase();
        let simple = match t.as_str() {
            "flows" | "count" => Some(Aggregate::Flows),
            "bytes" => Some(Aggregate::Sum("bytes")),
            "packets" => Some(Aggregate::Sum("packets")),
            "raw_bytes" => Some(Aggregate::Sum("raw_bytes")),
            "raw_packets" => Some(Aggregate::Sum("raw_packets")),
            "bps" => Some(Aggregate::Bps),
            "pps" => Some(Aggregate::Pps),
            "bpp" => Some(Aggregate::Bpp),
            _ => None,
        };
        if let Some(a) = simple {
            return Ok(a);
        }
        let bad = || {
            QueryError::Plan(format!(
                "unknown aggregate '{text}': use flows, bytes, packets, raw_bytes, raw_packets, bps, pps, bpp, sum(F), min(F), max(F), avg(F) or pNN(F)"
            ))
        };
        let (func, rest) = t.split_once('(').ok_or_else(bad)?;
        let arg = rest.strip_suffix(')').ok_or_else(bad)?.trim();
        let (field, kind) = field_kind(arg)
            .ok_or_else(|| QueryError::Plan(format!("unknown field '{arg}' in '{text}'")))?;
        if matches!(kind, Kind::Address | Kind::Text) {
            return Err(QueryError::Plan(format!(
                "'{field}' is not numeric; it can be grouped by, not aggregated"
            )));
        }
        Ok(match func {
            "sum" => Aggregate::Sum(field),
            "min" => Aggregate::Min(field),
            "max" => Aggregate::Max(field),
            "avg" => Aggregate::Avg(field),
            p if p.starts_with('p') => {
                let pct: u8 = p[1..].parse().map_err(|_| bad())?;
                if !(1..=99).contains(&pct) {
                    return Err(bad());
                }
                Aggregate::Percentile(field, pct)
            }
            _ => return Err(bad()),
        })
    }

    /// The name of its output column.
    pub fn column_name(&self) -> String {
        match self {
            Aggregate::Flows => "flows".to_string(),
            Aggregate::Sum(f) => (*f).to_string(),
            Aggregate::Min(f) => format!("min_{f}"),
            Aggregate::Max(f) => format!("max_{f}"),
            Aggregate::Avg(f) => format!("avg_{f}"),
            Aggregate::Percentile(f, p) => format!("p{p}_{f}"),
            Aggregate::Bps => "bps".to_string(),
            Aggregate::Pps => "pps".to_string(),
            Aggregate::Bpp => "bpp".to_string(),
        }
    }
}

/// Which data a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// Rollups for the whole hours they answer exactly, raw flows elsewhere.
    #[default]
    Auto,
    /// Raw flow segments only.
    Raw,
}

/// How results are ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    pub column: String,
    pub descending: bool,
}

/// A query over the flows of a store.
#[derive(Debug, Clone)]
pub struct Query {
    /// Range of `time_received_ns`, `[from_ns, to_ns)`.
    pub from_ns: i64,
    pub to_ns: i64,
    pub filter: Option<Expr>,
    /// Fields to group by; empty with aggregates: one total row.
    pub group_by: Vec<&'static str>,
    /// Time buckets of this width (ns) as the first group key, `time_bucket`.
    pub bucket_ns: Option<i64>,
    /// Empty: list matching flows (with `columns`) instead of grouping.
    pub aggregates: Vec<Aggregate>,
    /// Default: by time bucket ascending when bucketed, else by the first
    /// aggregate descending; flows listed in store order.
    pub order_by: Option<OrderBy>,
    /// At most this many rows; with time buckets, the top groups over the
    /// whole range are kept in every bucket.
    pub limit: Option<usize>,
    /// Columns shown when listing flows.
    pub columns: Vec<&'static str>,
    pub source: Source,
    /// Whether volumes are scaled by sampling (the default) or as counted.
    pub volumes: Volumes,
    /// Whether aggregates count traffic once (the default) or at every point.
    pub counting: Counting,
    /// Worker threads; 0 uses every core.
    pub threads: usize,
}

/// Columns listed by default.
pub const DEFAULT_LIST_COLUMNS: &[&str] = &[
    "time_received_ns",
    "sampler_address",
    "proto",
    "src_addr",
    "src_port",
    "dst_addr",
    "dst_port",
    "packets",
    "bytes",
    "sampling_rate",
    "tcp_flags",
];

impl Default for Query {
    fn default() -> Self {
        Self {
            from_ns: i64::MIN,
            to_ns: i64::MAX,
            filter: None,
            group_by: Vec::new(),
            bucket_ns: None,
            aggregates: Vec::new(),
            order_by: None,
            limit: None,
            columns: DEFAULT_LIST_COLUMNS.to_vec(),
            source: Source::Auto,
            volumes: Volumes::Scaled,
            counting: Counting::Once,
            threads: 0,
        }
    }
}

impl Query {
    /// Validates and sets the group-by fields.
    pub fn group_by_names<S: AsRef<str>>(&mut self, names: &[S]) -> Result<(), QueryError> {
        self.group_by = resolve_fields(names)?;
        Ok(())
    }

    /// Validates and sets the listed columns.
    pub fn column_names<S: AsRef<str>>(&mut self, names: &[S]) -> Result<(), QueryError> {
        self.columns = resolve_fields(names)?;
        Ok(())
    }
}

fn resolve_fields<S: AsRef<str>>(names: &[S]) -> Result<Vec<&'static str>, QueryError> {
    names
        .iter()
        .map(|n| {
            let n = n.as_ref().trim();
            let n = match n {
                "srcip" => "src_addr",
                "dstip" => "dst_addr",
                "srcport" => "src_port",
                "dstport" => "dst_port",
                "exporter" => "sampler_address",
                other => other,
            };
            field_kind(n)
                .map(|(f, _)| f)
                .ok_or_else(|| QueryError::Plan(format!("unknown field '{n}'")))
        })
        .collect()
}

/// What a query returned.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub rows: RecordBatch,
    /// Aggregates over everything matched (grouped queries only).
    pub totals: Option<RecordBatch>,
    /// Groups found before the limit.
    pub groups: usize,
    pub scan: ScanStats,
    /// Segments answered from rollups.
    pub rollup_segments: u64,
    /// Which volumes `bytes` and `packets` are.
    pub volumes: Volumes,
    /// How many of the flows read had a known sampling rate.
    pub coverage: RateCoverage,
    /// Where the aggregates counted, and the records they left out.
    pub left_out: LeftOut,
}

/// Parses a time: RFC 3339 (`2026-11-26T10:00:00Z`, `2026-11-26 10:00`,
/// `2026-11-26`, with an optional offset) or integer nanoseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().ok();
    }
    let (date, rest) = match t.find(['T', 't', ' ']) {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, ""),
    };
    let mut d = date.split('-');
    // unsigned fields and bounded years: no sign and no overflow to reach
    let y: u16 = d.next()?.parse().ok()?;
    let m: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    if d.next().is_some() || y > 9999 || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // split the clock from its offset
    let (clock, offset_s) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let sign = if rest.as_bytes()[i] == b'-' { -1 } else { 1 };
        let (oh, om) = rest[i + 1..].split_once(':')?;
        let (oh, om): (u8, u8) = (oh.parse().ok()?, om.parse().ok()?);
        if oh > 23 || om > 59 {
            return None;
        }
        (
            &rest[..i],
            sign * (i64::from(oh) * 3600 + i64::from(om) * 60),
        )
    } else {
        (rest, 0)
    };
    let mut secs_of_day = 0i64;
    let mut nanos = 0i64;
    if !clock.is_empty() {
        let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
        let mut parts = hms.split(':');
        let h: u8 = parts.next()?.parse().ok()?;
        let mi: u8 = parts.next().unwrap_or("0").parse().ok()?;
        let s: u8 = parts.next().unwrap_or("0").parse().ok()?;
        if h > 23 || mi > 59 || s > 60 || parts.next().is_some() {
            return None;
        }
        secs_of_day = i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s);
        if !frac.is_empty() {
            if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            nanos = format!("{frac:0<9}").parse().ok()?;
        }
    }
    let days = hopscope_schema::days_from_civil(i64::from(y), m, day);
    let secs = days * 86_400 + secs_of_day - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Parses a duration: a number with `ns`, `us`, `ms`, `s`, `m`, `h`, `d` or `w`.
pub fn parse_duration(text: &str) -> Option<i64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().ok()?;
    let scale: i64 = match unit {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        "w" => 604_800_000_000_000,
        _ => return None,
    };
    n.checked_mul(scale).filter(|&d| d > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_as_billing_has_them() {
        // 20 samples: the 95th is the 19th smallest (the top one is "burst")
        let mut v: Vec<u64> = (1..=20).rev().collect();
        assert_eq!(percentile(&mut v, 95.0), Some(19));
        let mut v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(percentile_f64(&mut v, 99.9), Some(999.0));
        assert_eq!(percentile_f64(&mut v, 100.0), Some(1000.0));
        assert_eq!(percentile(&mut [7u64], 1.0), Some(7));
        assert_eq!(percentile::<u64>(&mut [], 95.0), None);
        // a month of 5-minute samples: 8640; the 95th discards the top 432
        let mut month: Vec<u32> = (0..8640).collect();
        assert_eq!(percentile(&mut month, 95.0), Some(8207));
    }

    #[test]
    fn times_and_durations_parse() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(parse_time("1970-01-02"), Some(86_400_000_000_000));
        assert_eq!(
            parse_time("2026-11-26T02:00:00+01:00"),
            parse_time("2026-11-26 01:00")
        );
        assert_eq!(parse_time("1970-01-01T00:00:00.25Z"), Some(250_000_000));
        assert_eq!(parse_time("12345"), Some(12345));
        assert_eq!(parse_time("2026-13-01"), None);
        assert_eq!(parse_time("yesterday"), None);
        // found by fuzzing: signs and huge fields overflowed instead of failing
        assert_eq!(
            parse_time("\x0c0-005-2t-0005328734074803118990+3:333"),
            None
        );
        assert_eq!(parse_time("2026-11-26T-9999999999999999:00Z"), None);
        assert_eq!(parse_time("2026-11-26T01:00+99999999999999:00"), None);
        assert_eq!(parse_time("-9223372036854775-01-01"), None);
        assert_eq!(parse_time("9999-12-31T23:59:59Z"), None);
        assert_eq!(
            parse_time("2026-11-26T01:00+01:30"),
            parse_time("2026-11-25T23:30Z")
        );
        assert_eq!(parse_duration("1h"), Some(3_600_000_000_000));
        assert_eq!(parse_duration("10m"), Some(600_000_000_000));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("5"), None);
    }

    #[test]
    fn aggregates_parse_and_name_their_columns() {
        assert_eq!(Aggregate::parse("bytes").unwrap(), Aggregate::Sum("bytes"));
        assert_eq!(
            Aggregate::parse("p95(bytes)").unwrap(),
            Aggregate::Percentile("bytes", 95)
        );
        assert_eq!(
            Aggregate::parse("max(maximum_ttl)").unwrap().column_name(),
            "max_maximum_ttl"
        );
        assert!(Aggregate::parse("sum(src_addr)").is_err());
        assert!(Aggregate::parse("p100(bytes)").is_err());
        assert!(Aggregate::parse("median").is_err());
    }
}

/// A query as text fields, the way the CLI's flags and the HTTP API's
/// parameters say it; [`QueryRequest::plan`] checks and turns it into a
/// [`Query`].
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryRequest {
    pub filter: Option<String>,
    /// Comma-separated fields.
    pub group_by: Option<String>,
    /// Comma-separated aggregates (see [`Aggregate::parse`]).
    pub aggregates: Option<String>,
    /// A duration back from now, such as `1h`.
    pub since: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Time bucket width, such as `1m`.
    pub bucket: Option<String>,
    pub limit: Option<usize>,
    /// A result column; `-` in front (or `desc`) orders descending.
    pub order: Option<String>,
    /// Comma-separated columns when listing flows.
    pub columns: Option<String>,
    /// `raw` reads raw flows only; default uses rollups where exact.
    pub source: Option<String>,
    /// Volumes as the exporters counted them, not scaled by sampling.
    pub unscaled: Option<bool>,
    /// Count every record at every point, not traffic once.
    pub every_point: Option<bool>,
}

/// The range `[from, to)` that `since`, `from` and `to` describe (flags of
/// the CLI, parameters of the API: the messages name neither form),
/// unbounded where they say nothing; `since` (back from `now_ns`) wins over
/// `from`.
pub fn time_range(
    since: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    now_ns: i64,
) -> Result<(i64, i64), QueryError> {
    let time = |label: &str, text: Option<&str>| -> Result<Option<i64>, QueryError> {
        text.map(|t| {
            parse_time(t).ok_or_else(|| {
                QueryError::Plan(format!(
                    "{label} '{t}': expected RFC 3339 (2026-11-26T10:00:00Z) or ns"
                ))
            })
        })
        .transpose()
    };
    let mut from_ns = time("from", from)?.unwrap_or(i64::MIN);
    let to_ns = time("to", to)?.unwrap_or(i64::MAX);
    if let Some(since) = since {
        let d = parse_duration(since).ok_or_else(|| {
            QueryError::Plan(format!(
                "since '{since}': expected a duration such as 15m, 1h, 7d"
            ))
        })?;
        from_ns = now_ns - d;
    }
    Ok((from_ns, to_ns))
}

/// [`time_range`] with a default: when neither `since` nor `from` is
/// given, the last `last` (such as `15m`) up to `to`.
pub fn time_range_or_last(
    since: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    last: &str,
    now_ns: i64,
) -> Result<(i64, i64), QueryError> {
    let since = match (since, from) {
        (None, None) => Some(last),
        _ => since,
    };
    time_range(since, from, to, now_ns)
}

/// The most fields one query may group by.
pub const MAX_GROUP_FIELDS: usize = 16;
/// The most aggregates one query may compute.
pub const MAX_AGGREGATES: usize = 32;
/// The most columns one listing may show.
pub const MAX_COLUMNS: usize = 256;

/// The items of a comma-separated list, at most `limit` of them: a request
/// names its parts, and a list longer than any real query is refused before
/// any work is done for it.
fn list(text: &Option<String>, what: &str, limit: usize) -> Result<Vec<String>, QueryError> {
    let items: Vec<String> = text
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .take(limit + 1)
        .map(String::from)
        .collect();
    if items.len() > limit {
        return Err(QueryError::Plan(format!(
            "more than {limit} {what} in one query, the limit"
        )));
    }
    Ok(items)
}

impl QueryRequest {
    /// The query this request describes, with `now_ns` as the present.
    pub fn plan(&self, now_ns: i64) -> Result<Query, QueryError> {
        let mut q = Query {
            filter: parse_filter(self.filter.as_deref().unwrap_or(""))?,
            limit: self.limit,
            ..Query::default()
        };
        q.group_by_names(&list(&self.group_by, "group-by fields", MAX_GROUP_FIELDS)?)?;
        q.aggregates = list(&self.aggregates, "aggregates", MAX_AGGREGATES)?
            .iter()
            .map(|a| Aggregate::parse(a))
            .collect::<Result<_, _>>()?;
        if q.aggregates.is_empty() && !q.group_by.is_empty() {
            // grouping without saying what to add up: what nfdump -s shows
            q.aggregates = vec![
                Aggregate::Flows,
                Aggregate::Sum("packets"),
                Aggregate::Sum("bytes"),
                Aggregate::Bps,
            ];
        }
        let columns = list(&self.columns, "columns", MAX_COLUMNS)?;
        if !columns.is_empty() {
            q.column_names(&columns)?;
        }
        (q.from_ns, q.to_ns) = time_range(
            self.since.as_deref(),
            self.from.as_deref(),
            self.to.as_deref(),
            now_ns,
        )?;
        if let Some(bucket) = &self.bucket {
            q.bucket_ns = Some(parse_duration(bucket).ok_or_else(|| {
                QueryError::Plan(format!("bucket '{bucket}': expected a duration such as 1m"))
            })?);
        }
        if let Some(order) = &self.order {
            let (column, descending) = match order.strip_prefix('-') {
                Some(c) => (c.to_string(), true),
                None => match order.split_once(' ') {
                    Some((c, dir)) => (c.to_string(), dir.eq_ignore_ascii_case("desc")),
                    // aggregates read best largest first; fields in their order
                    None => (
                        order.clone(),
                        q.aggregates.iter().any(|a| a.column_name() == *order)
                            || q.aggregates.is_empty(),
                    ),
                },
            };
            q.order_by = Some(OrderBy { column, descending });
        }
        if self.unscaled == Some(true) {
            q.volumes = Volumes::Counted;
        }
        if self.every_point == Some(true) {
            q.counting = Counting::EveryPoint;
        }
        q.source = match self.source.as_deref() {
            None | Some("auto") => Source::Auto,
            Some("raw") => Source::Raw,
            Some(other) => {
                return Err(QueryError::Plan(format!(
                    "source '{other}': expected auto or raw"
                )));
            }
        };
        Ok(q)
    }
}
