//! Running a [`Query`]: choose segments, scan them in parallel, aggregate,
//! merge, order, limit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_array::builder::{
    FixedSizeBinaryBuilder, Float64Builder, StringBuilder, TimestampNanosecondBuilder,
    UInt8Builder, UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{
    Array, ArrayRef, BooleanArray, RecordBatch, TimestampNanosecondArray, UInt32Array,
};
use arrow_schema::{Field, Schema};
use foldhash::fast::FixedState;
use hopscope_schema::Kind;

use super::counting::{self, Counting, LeftOut};
use super::group::{
    GroupIndex, KeyLayout, for_each_u64, group_index, ipv4_rows, key_hash, key_seed, pack_keys,
};
use super::volume::{self, RATE_COLUMN, RateCoverage};
use super::{Aggregate, OrderBy, Query, QueryError, QueryOutput, Source, field_kind};
use crate::layout::{HOUR_NS, Segment, Table};
use crate::maintain::{self, ROLLUP_1H_DIMS, ROLLUP_1M_DIMS};
use crate::scan::{Part, ScanStats};
use crate::{Store, TIME_COLUMN};

/// What is kept per group to compute the aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Measure {
    /// Flow records; on rollups the `flows` column's sum.
    Count,
    Sum(&'static str),
    Min(&'static str),
    Max(&'static str),
    /// Rows where the field is not null (for averages).
    Present(&'static str),
    Values(&'static str),
}

impl Measure {
    fn field(self) -> Option<&'static str> {
        match self {
            Measure::Count => None,
            Measure::Sum(f)
            | Measure::Min(f)
            | Measure::Max(f)
            | Measure::Present(f)
            | Measure::Values(f) => Some(f),
        }
    }
}

fn measures_of(aggregates: &[Aggregate]) -> Vec<Measure> {
    let mut out: Vec<Measure> = Vec::new();
    let mut add = |m| {
        if !out.contains(&m) {
            out.push(m);
        }
    };
    for a in aggregates {
        match a {
            Aggregate::Flows => add(Measure::Count),
            Aggregate::Sum(f) => add(Measure::Sum(f)),
            Aggregate::Min(f) => add(Measure::Min(f)),
            Aggregate::Max(f) => add(Measure::Max(f)),
            Aggregate::Avg(f) => {
                add(Measure::Sum(f));
                add(Measure::Present(f));
            }
            Aggregate::Percentile(f, _) => add(Measure::Values(f)),
            Aggregate::Bps => add(Measure::Sum("bytes")),
            Aggregate::Pps => add(Measure::Sum("packets")),
            Aggregate::Bpp => {
                add(Measure::Sum("bytes"));
                add(Measure::Sum("packets"));
            }
        }
    }
    out
}

/// One measure's values, one entry per group.
#[derive(Debug, Clone)]
enum State {
    Scalar(Vec<u64>),
    Values(Vec<Vec<u64>>),
}

fn new_state(m: Measure) -> State {
    match m {
        Measure::Values(_) => State::Values(Vec::new()),
        _ => State::Scalar(Vec::new()),
    }
}

fn initial(m: Measure) -> u64 {
    match m {
        Measure::Min(_) => u64::MAX,
        _ => 0,
    }
}

/// A worker's partial result.
struct Partial {
    /// How its keys are packed (addresses in 16 octets, or 4: see
    /// [`KeyLayout::narrow`]).
    layout: KeyLayout,
    index: Box<dyn GroupIndex>,
    states: Vec<State>,
    texts: HashMap<u64, String, FixedState>,
    scan: ScanStats,
    coverage: RateCoverage,
    left_out: LeftOut,
    /// Range of matched rows' times, for rates without a query range.
    time: Option<(i64, i64)>,
}

impl Partial {
    fn grow(&mut self, measures: &[Measure]) {
        let groups = self.index.len();
        let room = self.index.capacity().max(groups);
        for (state, m) in self.states.iter_mut().zip(measures) {
            match state {
                State::Scalar(v) => {
                    v.reserve_exact(room - v.len());
                    v.resize(groups, initial(*m));
                }
                State::Values(v) => {
                    v.reserve_exact(room - v.len());
                    v.resize_with(groups, Vec::new);
                }
            }
        }
    }

    /// Adds the other partial's groups to these.
    fn absorb(&mut self, other: Partial, measures: &[Measure]) {
        let stride = self.layout.stride;
        // the other's groups, renumbered as ours, a slice of keys at a time
        let mut groups = Vec::with_capacity(other.index.len());
        let mut chunk = Vec::new();
        let mut numbers = Vec::new();
        let total = other.index.len();
        for start in (0..total).step_by(4096) {
            let end = (start + 4096).min(total);
            chunk.clear();
            for g in start..end {
                chunk.extend_from_slice(other.index.key(g));
            }
            let scanned = start as f64 / total as f64;
            self.index
                .assign(&chunk, stride, end - start, scanned, &mut numbers);
            groups.extend_from_slice(&numbers);
        }
        self.grow(measures);
        for ((mine, theirs), m) in self.states.iter_mut().zip(other.states).zip(measures) {
            match (mine, theirs) {
                (State::Scalar(a), State::Scalar(b)) => {
                    for (from, &to) in b.into_iter().zip(&groups) {
                        let slot = &mut a[to as usize];
                        *slot = combine(*m, *slot, from);
                    }
                }
                (State::Values(a), State::Values(b)) => {
                    for (from, &to) in b.into_iter().zip(&groups) {
                        a[to as usize].extend(from);
                    }
                }
                _ => unreachable!("states follow the same measures"),
            }
        }
        self.texts.extend(other.texts);
        self.scan.add(&other.scan);
        self.coverage.add(other.coverage);
        self.left_out.add(other.left_out);
        self.time = widen(self.time, other.time);
    }
}

/// The time range covering both.
fn widen(a: Option<(i64, i64)>, b: Option<(i64, i64)>) -> Option<(i64, i64)> {
    match (a, b) {
        (Some((lo, hi)), Some((c, d))) => Some((lo.min(c), hi.max(d))),
        (a, b) => a.or(b),
    }
}

fn combine(m: Measure, a: u64, b: u64) -> u64 {
    match m {
        Measure::Min(_) => a.min(b),
        Measure::Max(_) => a.max(b),
        // volumes saturate (a scaled count may be at u64::MAX): so do sums
        _ => a.saturating_add(b),
    }
}

/// The segments a query reads, and how many of them are rollups.
fn plan_segments(store: &Store, q: &Query) -> Result<(Vec<Segment>, u64, u64), QueryError> {
    let raw = store.segments(Table::Flows)?;
    let hidden = maintain::replaced_by_compaction(store.root())?;
    let total = raw.len() as u64;
    let mut raw: Vec<Segment> = raw
        .into_iter()
        .filter(|s| !hidden.contains(&s.path))
        .filter(|s| s.overlaps(q.from_ns, q.to_ns))
        .collect();
    let mut chosen = Vec::new();
    let mut rollups = 0;
    if q.source == Source::Auto
        && let Some(table) = rollup_for(q)
    {
        let fresh = maintain::fresh_rollups(store, table, &raw)?;
        let covered: HashSet<i64> = fresh
            .iter()
            .filter(|s| s.hour() >= q.from_ns && s.hour() + HOUR_NS <= q.to_ns)
            .map(Segment::hour)
            .collect();
        for s in fresh {
            if covered.contains(&s.hour()) {
                chosen.push(s);
                rollups += 1;
            }
        }
        raw.retain(|s| !covered.contains(&s.hour()));
    }
    let pruned = total - raw.len() as u64 - rollups.min(total);
    chosen.extend(raw);
    Ok((chosen, rollups, pruned))
}

/// The coarsest rollup that answers the query exactly, if any.
fn rollup_for(q: &Query) -> Option<Table> {
    if q.aggregates.is_empty() {
        return None;
    }
    let sums_only = measures_of(&q.aggregates).iter().all(|m| {
        matches!(
            m,
            Measure::Count | Measure::Sum("bytes" | "packets" | "raw_bytes" | "raw_packets")
        )
    });
    if !sums_only {
        return None;
    }
    let mut fields: Vec<&str> = q.group_by.clone();
    if let Some(f) = &q.filter {
        filter_fields(f, &mut fields);
    }
    if counting::counting(q) == Counting::Once {
        fields.extend(counting::COLUMNS);
    }
    [
        (Table::Flows1h, ROLLUP_1H_DIMS),
        (Table::Flows1m, ROLLUP_1M_DIMS),
    ]
    .into_iter()
    .find(|(table, dims)| {
        let bucket_ok = q
            .bucket_ns
            .is_none_or(|b| b % table.bucket_ns().expect("rollup") == 0);
        bucket_ok && fields.iter().all(|f| *f == TIME_COLUMN || dims.contains(f))
    })
    .map(|(t, _)| t)
}

/// The columns a filter reads, appended to `out`.
pub fn filter_fields(e: &super::Expr, out: &mut Vec<&'static str>) {
    use super::Expr;
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            filter_fields(a, out);
            filter_fields(b, out);
        }
        Expr::Not(a) => filter_fields(a, out),
        Expr::Compare { field, .. } | Expr::InNet { field, .. } | Expr::Through { field, .. } => {
            out.push(field)
        }
        Expr::FlagsAll { .. } => out.push("tcp_flags"),
    }
}

/// Runs a query against a store.
pub fn execute(store: &Store, q: &Query) -> Result<QueryOutput, QueryError> {
    check(q)?;
    let (segments, rollups, pruned) = plan_segments(store, q)?;
    let parts: Vec<Part> = segments.into_iter().map(Part::Segment).collect();
    let mut output = execute_parts(q, &parts)?;
    output.scan.segments_pruned += pruned;
    output.rollup_segments = rollups;
    Ok(output)
}

/// Refuses a query that cannot run, before anything is read.
fn check(q: &Query) -> Result<(), QueryError> {
    if q.from_ns >= q.to_ns {
        return Err(QueryError::Plan(
            "the time range is empty (from is not before to)".into(),
        ));
    }
    if let Some(b) = q.bucket_ns
        && b <= 0
    {
        return Err(QueryError::Plan("the time bucket must be positive".into()));
    }
    Ok(())
}

/// Runs a query over flow rows held in memory (every batch a part), as
/// [`execute`] runs it over segments.
pub fn execute_rows(q: &Query, rows: &[RecordBatch]) -> Result<QueryOutput, QueryError> {
    check(q)?;
    let parts: Vec<Part> = rows.iter().cloned().map(Part::Rows).collect();
    execute_parts(q, &parts)
}

fn execute_parts(q: &Query, parts: &[Part]) -> Result<QueryOutput, QueryError> {
    if q.aggregates.is_empty() {
        if !q.group_by.is_empty() || q.bucket_ns.is_some() {
            return Err(QueryError::Plan(
                "group-by and time buckets need at least one aggregate".into(),
            ));
        }
        list(q, parts)
    } else {
        aggregate(q, parts)
    }
}

/// Columns a grouped query reads.
fn needed_columns(q: &Query, measures: &[Measure]) -> Vec<&'static str> {
    // the rate, for the share of flows of unknown rate every answer gives
    let mut cols: Vec<&'static str> = vec!["flows", RATE_COLUMN];
    if needs_time(q) {
        cols.push(TIME_COLUMN);
    }
    cols.extend(q.group_by.iter().copied());
    cols.extend(measures.iter().filter_map(|m| m.field()));
    if let Some(f) = &q.filter {
        filter_fields(f, &mut cols);
    }
    if counting::counting(q) == Counting::Once {
        cols.extend(counting::COLUMNS);
    }
    volume::stored_columns(&mut cols);
    cols
}

/// Whether a grouped query reads the time column: for its range, its
/// buckets, or rates over the span of the data.
fn needs_time(q: &Query) -> bool {
    q.from_ns > i64::MIN
        || q.to_ns < i64::MAX
        || q.bucket_ns.is_some()
        || q.aggregates
            .iter()
            .any(|a| matches!(a, Aggregate::Bps | Aggregate::Pps))
}

/// The rows of a scanned batch that pass the time range and the filter,
/// in the query's [view](volume::view) of volumes.
fn select(q: &Query, batch: RecordBatch) -> Result<RecordBatch, QueryError> {
    let batch = volume::view(batch, q.volumes)?;
    let times = batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>());
    let mut mask: Option<BooleanArray> = None;
    let bounded = q.from_ns > i64::MIN || q.to_ns < i64::MAX;
    if let Some(times) = times.filter(|_| bounded) {
        mask = crate::scan::rows_in_range(times, q.from_ns, q.to_ns);
    }
    if let Some(expr) = &q.filter {
        let m = super::evaluate(expr, &batch)?;
        mask = Some(match mask {
            Some(t) => arrow_arith::boolean::and(&t, &m)?,
            None => m,
        });
    }
    match mask {
        None => Ok(batch),
        Some(m) if m.true_count() == m.len() => Ok(batch),
        Some(m) => Ok(arrow_select::filter::filter_record_batch(&batch, &m)?),
    }
}

fn aggregate(q: &Query, parts: &[Part]) -> Result<QueryOutput, QueryError> {
    let measures = measures_of(&q.aggregates);
    let key_fields: Vec<(&'static str, Kind)> = q
        .group_by
        .iter()
        .map(|f| field_kind(f).expect("resolved field"))
        .collect();
    let layout = KeyLayout::new(&key_fields, q.bucket_ns)?;
    let columns = needed_columns(q, &measures);
    let threads = match q.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(parts.len().max(1));
    // A key of several fields (a 5-tuple) can have as many groups as there
    // are rows: then each worker owns a part of the key space and hands the
    // rows of the others' parts over, so that no group is in two tables and
    // nothing is merged (merging whole tables took a second copy of every
    // key: a 5-tuple aggregation of 10 million flows took 1.4 GiB and 4 s,
    // now 1.1 GiB and 3 s). A key of one field has at most that column's
    // distinct values, which merge cheaply, and handing rows over would cost
    // more than it saves (a third more for top sources). A bucketed query
    // ranks series across buckets: every group of a series in one table.
    let partitions = if layout.bucket_ns.is_none() && layout.fields.len() >= 2 {
        threads
    } else {
        1
    };
    let next = AtomicUsize::new(0);
    let partials: Mutex<Vec<Partial>> = Mutex::new(Vec::new());
    let first_error: Mutex<Option<QueryError>> = Mutex::new(None);
    let (outboxes, inboxes): (Vec<_>, Vec<_>) = (0..partitions)
        .map(|_| std::sync::mpsc::channel::<Handover>())
        .unzip();
    let mut inboxes = inboxes.into_iter();
    std::thread::scope(|scope| {
        for me in 0..threads {
            let exchange = inboxes
                .next()
                .filter(|_| partitions > 1)
                .map(|inbox| Exchange {
                    me,
                    outboxes: outboxes.clone(),
                    inbox,
                });
            let (next, layout, measures, columns) = (&next, &layout, &measures, &columns);
            let (partials, first_error) = (&partials, &first_error);
            scope.spawn(move || {
                let result = worker(q, parts, next, layout, measures, columns, exchange);
                match result {
                    Ok(p) => partials.lock().expect("no panics hold it").extend(p),
                    Err(e) => {
                        first_error
                            .lock()
                            .expect("no panics hold it")
                            .get_or_insert(e);
                    }
                }
            });
        }
        drop(outboxes);
    });
    if let Some(e) = first_error.into_inner().expect("workers done") {
        return Err(e);
    }
    let mut partials = partials.into_inner().expect("workers done");
    if partitions == 1 {
        // one table per key layout (wide, narrow), each worker's merged in
        let mut merged: Vec<Partial> = Vec::new();
        for p in partials {
            match merged.iter_mut().find(|m| m.layout.width == p.layout.width) {
                Some(m) => m.absorb(p, &measures),
                None => merged.push(p),
            }
        }
        partials = merged;
    }
    if partials.is_empty() {
        partials.push(empty_partial(&layout, &measures));
    }
    if layout.fields.is_empty() && partials.iter().all(|p| p.index.len() == 0) {
        // a total over nothing is one row of zeros, not no row
        let p = &mut partials[0];
        let stride = p.layout.stride;
        p.index
            .assign(&vec![0; stride], stride, 1, 1.0, &mut Vec::new());
        p.grow(&measures);
    }
    finish(q, &layout, &measures, partials)
}

/// What a worker hands to the owner of a part of the key space.
enum Handover {
    /// Rows whose groups the receiver owns.
    Rows(Keyed),
    /// The sender has scanned all it will: nothing more comes from it.
    Done,
}

/// Rows with their keys packed: the packing, the IPv4 check and the key
/// columns' copy happen once, at the worker that scanned them.
struct Keyed {
    /// Packed in the narrow layout (IPv4 addresses) rather than the full one.
    narrow: bool,
    keys: Vec<u8>,
    /// The rows' other columns: the time and what is aggregated.
    values: RecordBatch,
}

/// A worker's ends of the exchange: one inbox, an outbox per worker.
///
/// Sends never wait (so two workers cannot wait on each other) and each
/// worker empties its inbox after every batch it scans, so what waits in an
/// inbox is what the other workers scanned in the meantime: a few batches.
struct Exchange {
    me: usize,
    outboxes: Vec<std::sync::mpsc::Sender<Handover>>,
    inbox: std::sync::mpsc::Receiver<Handover>,
}

fn empty_partial(layout: &KeyLayout, measures: &[Measure]) -> Partial {
    Partial {
        layout: layout.clone(),
        index: group_index(layout.stride),
        states: measures.iter().map(|m| new_state(*m)).collect(),
        texts: HashMap::with_hasher(FixedState::default()),
        scan: ScanStats::default(),
        coverage: RateCoverage::default(),
        left_out: LeftOut::default(),
        time: None,
    }
}

fn worker(
    q: &Query,
    parts: &[Part],
    next: &AtomicUsize,
    layout: &KeyLayout,
    measures: &[Measure],
    columns: &[&str],
    exchange: Option<Exchange>,
) -> Result<Vec<Partial>, QueryError> {
    let mut w = Worker {
        p: empty_partial(layout, measures),
        narrow: layout.narrow().map(|l| empty_partial(&l, measures)),
        scratch: Scratch::default(),
        done_seen: 0,
        measures,
        next,
        parts: parts.len(),
    };
    let leave_out = counting::leave_out(q);
    let scanned = (|| -> Result<(), crate::StoreError> {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(part) = parts.get(i) else {
                return Ok(());
            };
            let mut scan = ScanStats::default();
            part.scan(columns, q.from_ns, q.to_ns, &mut scan, |batch| {
                let batch = select(q, batch).map_err(|e| match e {
                    QueryError::Store(s) => s,
                    other => crate::StoreError::Schema(other.to_string()),
                })?;
                let batch = match leave_out {
                    Some(rule) => counting::keep(batch, rule, &mut w.p.left_out)?,
                    None => batch,
                };
                w.p.coverage.count(&batch);
                let result = match &exchange {
                    None => w.add(&batch),
                    Some(x) => w.share(&batch, x),
                };
                result.map_err(|e| crate::StoreError::Schema(e.to_string()))
            })?;
            w.p.scan.add(&scan);
        }
    })();
    if let Some(x) = &exchange {
        // even after an error, so that no other worker waits for this one
        for owner in (0..x.outboxes.len()).filter(|&o| o != x.me) {
            hand_over(x, owner, Handover::Done);
        }
        while w.done_seen + 1 < x.outboxes.len() {
            match x.inbox.recv() {
                Ok(handover) => w.take(handover)?,
                Err(_) => break,
            }
        }
    }
    scanned?;
    Ok([Some(w.p), w.narrow].into_iter().flatten().collect())
}

/// A worker's partial results and its reused buffers.
struct Worker<'a> {
    /// Groups in the query's key layout (and the scan statistics).
    p: Partial,
    /// Groups whose addresses are all IPv4, in the narrow layout, when the
    /// key has addresses.
    narrow: Option<Partial>,
    scratch: Scratch,
    /// Other workers that said they have handed over all they will.
    done_seen: usize,
    measures: &'a [Measure],
    /// The next part any worker takes, of `parts`: how far the query has
    /// come, for sizing tables.
    next: &'a AtomicUsize,
    parts: usize,
}

impl Worker<'_> {
    /// How far the query has come: segments taken count as read, a low
    /// guess of the groups to come.
    fn scanned(&self) -> f64 {
        let taken = self.next.load(Ordering::Relaxed).min(self.parts);
        taken as f64 / self.parts.max(1) as f64
    }

    /// `batch`'s rows by the table that holds their groups: rows whose
    /// addresses are all IPv4 go to the narrow table (`true`), the others
    /// to the full one.
    fn split_by_table(&self, batch: &RecordBatch) -> Result<Vec<(bool, RecordBatch)>, QueryError> {
        let Some(narrow) = &self.narrow else {
            return Ok(vec![(false, batch.clone())]);
        };
        let v4 = ipv4_rows(&narrow.layout, batch);
        if v4.iter().all(|&v| v) {
            return Ok(vec![(true, batch.clone())]);
        }
        let v4 = mask(v4.len(), |row| v4[row]);
        let wide = arrow_arith::boolean::not(&v4)?;
        Ok(vec![
            (true, arrow_select::filter::filter_record_batch(batch, &v4)?),
            (
                false,
                arrow_select::filter::filter_record_batch(batch, &wide)?,
            ),
        ])
    }

    /// Adds rows whose groups this worker owns.
    fn add(&mut self, batch: &RecordBatch) -> Result<(), QueryError> {
        let scanned = self.scanned();
        for (narrow, rows) in self.split_by_table(batch)? {
            let p = table(&mut self.p, &mut self.narrow, narrow);
            self.scratch.pack(p, &rows)?;
            let Scratch { keys, groups } = &mut self.scratch;
            add_keyed(p, keys, &rows, scanned, self.measures, groups)?;
        }
        Ok(())
    }

    /// Adds the rows this worker owns, hands each other worker its own, then
    /// adds what the others handed over.
    fn share(&mut self, batch: &RecordBatch, x: &Exchange) -> Result<(), QueryError> {
        let scanned = self.scanned();
        let parts = x.outboxes.len();
        let mut mine = Vec::new();
        for (narrow, rows) in self.split_by_table(batch)? {
            if rows.num_rows() == 0 {
                continue;
            }
            let p = table(&mut self.p, &mut self.narrow, narrow);
            self.scratch.pack(p, &rows)?;
            let mut owners = Vec::with_capacity(rows.num_rows());
            let mut owned_keys = vec![Vec::new(); parts];
            for key in self.scratch.keys.chunks_exact(p.layout.stride) {
                let owner = partition_of(key, parts);
                owners.push(owner);
                owned_keys[owner].extend_from_slice(key);
            }
            let values = value_columns(&p.layout, &rows);
            for (owner, keys) in owned_keys.into_iter().enumerate() {
                if keys.is_empty() {
                    continue;
                }
                let owned = mask(owners.len(), |row| owners[row] == owner);
                let keyed = Keyed {
                    narrow,
                    keys,
                    values: arrow_select::filter::filter_record_batch(&values, &owned)?,
                };
                if owner == x.me {
                    mine.push(keyed);
                } else {
                    hand_over(x, owner, Handover::Rows(keyed));
                }
            }
        }
        for keyed in mine {
            self.add_keyed(keyed, scanned)?;
        }
        self.take_handed_over(x)
    }

    fn add_keyed(&mut self, keyed: Keyed, scanned: f64) -> Result<(), QueryError> {
        let p = table(&mut self.p, &mut self.narrow, keyed.narrow);
        let groups = &mut self.scratch.groups;
        add_keyed(
            p,
            &keyed.keys,
            &keyed.values,
            scanned,
            self.measures,
            groups,
        )
    }

    /// Adds what the other workers handed over so far.
    fn take_handed_over(&mut self, x: &Exchange) -> Result<(), QueryError> {
        while let Ok(handover) = x.inbox.try_recv() {
            self.take(handover)?;
        }
        Ok(())
    }

    fn take(&mut self, handover: Handover) -> Result<(), QueryError> {
        match handover {
            Handover::Rows(keyed) => {
                let scanned = self.scanned();
                self.add_keyed(keyed, scanned)
            }
            Handover::Done => {
                self.done_seen += 1;
                Ok(())
            }
        }
    }
}

/// The table for keys in the narrow layout, or in the full one.
fn table<'p>(
    full: &'p mut Partial,
    narrow: &'p mut Option<Partial>,
    in_narrow: bool,
) -> &'p mut Partial {
    match narrow {
        Some(p) if in_narrow => p,
        _ => full,
    }
}

/// Sends to `owner`; a gone owner's query failed, and its error is the answer.
fn hand_over(x: &Exchange, owner: usize, handover: Handover) {
    let _ = x.outboxes[owner].send(handover);
}

/// Buffers a worker reuses from batch to batch.
#[derive(Default)]
struct Scratch {
    keys: Vec<u8>,
    groups: Vec<u32>,
}

impl Scratch {
    /// Packs the keys of `batch`'s rows in `p`'s layout.
    fn pack(&mut self, p: &mut Partial, batch: &RecordBatch) -> Result<(), QueryError> {
        self.keys.clear();
        self.keys.resize(batch.num_rows() * p.layout.stride, 0);
        pack_keys(
            &p.layout,
            batch,
            &mut self.keys,
            p.layout.stride,
            &mut p.texts,
        )
    }
}

/// Adds rows, their keys packed in `p`'s layout, to `p`'s groups.
fn add_keyed(
    p: &mut Partial,
    keys: &[u8],
    values: &RecordBatch,
    scanned: f64,
    measures: &[Measure],
    groups: &mut Vec<u32>,
) -> Result<(), QueryError> {
    let rows = values.num_rows();
    if rows == 0 {
        return Ok(());
    }
    p.index.assign(keys, p.layout.stride, rows, scanned, groups);
    p.grow(measures);
    update(p, measures, values, groups)
}

/// The columns of `batch` other than the key's (the time stays, for the
/// range rates are computed over): what a handed-over row still needs.
fn value_columns(layout: &KeyLayout, batch: &RecordBatch) -> RecordBatch {
    let schema = batch.schema();
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| {
            let name = schema.field(i).name();
            name == TIME_COLUMN || !layout.fields.iter().any(|f| f.name == Some(name.as_str()))
        })
        .collect();
    batch
        .project(&keep)
        .expect("indices from the batch's own schema")
}

/// A filter mask of `rows` rows, packed 64 rows at a time (collecting
/// `Option<bool>`s went bit by bit, a twentieth of a 5-tuple aggregation).
fn mask(rows: usize, keep: impl FnMut(usize) -> bool) -> BooleanArray {
    BooleanArray::new(arrow_buffer::BooleanBuffer::collect_bool(rows, keep), None)
}

/// Which worker owns a packed key: from a hash of its own seed, so that
/// the split does not follow the bits each worker's table indexes by.
fn partition_of(key: &[u8], parts: usize) -> usize {
    let seed = key_seed() ^ 0x7061_7274_6974_696f;
    ((key_hash(seed, key) >> 32) as usize) % parts
}

fn update(
    p: &mut Partial,
    measures: &[Measure],
    batch: &RecordBatch,
    groups: &[u32],
) -> Result<(), QueryError> {
    if let Some(times) = batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
    {
        for &t in times.values().iter() {
            p.time = widen(p.time, Some((t, t)));
        }
    }
    for (state, &m) in p.states.iter_mut().zip(measures) {
        let column = match m {
            Measure::Count => batch.column_by_name("flows"),
            other => batch.column_by_name(other.field().expect("field measure")),
        };
        match (state, m, column) {
            (State::Scalar(acc), Measure::Count, None) => {
                for &g in groups {
                    acc[g as usize] += 1;
                }
            }
            (State::Scalar(acc), Measure::Present(_), Some(c)) => {
                for_each_u64(c, |row, _| acc[groups[row] as usize] += 1)?;
            }
            (State::Scalar(acc), m, Some(c)) => {
                for_each_u64(c, |row, v| {
                    let slot = &mut acc[groups[row] as usize];
                    *slot = combine(m, *slot, v);
                })?;
            }
            (State::Values(acc), _, Some(c)) => {
                for_each_u64(c, |row, v| acc[groups[row] as usize].push(v))?;
            }
            // the segment has no such column: nothing to add
            (_, _, None) => {}
        }
    }
    Ok(())
}

/// Turns the groups into the result batch, ordered and limited. Partials
/// hold disjoint groups (parts of the key space, or one merged table).
fn finish(
    q: &Query,
    layout: &KeyLayout,
    measures: &[Measure],
    mut partials: Vec<Partial>,
) -> Result<QueryOutput, QueryError> {
    let groups: usize = partials.iter().map(|p| p.index.len()).sum();
    let mut scan = ScanStats::default();
    let mut coverage = RateCoverage::default();
    let mut left_out = LeftOut {
        counting: counting::counting(q),
        ..LeftOut::default()
    };
    let mut time: Option<(i64, i64)> = None;
    let mut texts: HashMap<u64, String, FixedState> = HashMap::with_hasher(FixedState::default());
    for p in &mut partials {
        scan.add(&p.scan);
        coverage.add(p.coverage);
        left_out.add(p.left_out);
        time = widen(time, p.time);
        texts.extend(p.texts.drain());
    }
    let range_ns = if q.from_ns > i64::MIN && q.to_ns < i64::MAX {
        Some(q.to_ns - q.from_ns)
    } else {
        time.map(|(lo, hi)| (hi - lo).max(1_000_000_000))
    };
    let duration_s = q.bucket_ns.or(range_ns).map(|ns| ns as f64 / 1e9);
    let order = q.order_by.clone().unwrap_or(OrderBy {
        column: q.aggregates[0].column_name(),
        descending: true,
    });

    let mut batches = Vec::with_capacity(partials.len());
    let mut preselected = true;
    for p in &partials {
        let (rows, picked) = group_rows(q, &p.layout, measures, p, &texts, duration_s, &order)?;
        batches.push(rows);
        preselected &= picked;
    }
    let rows = match batches.len() {
        1 => batches.pop().expect("one batch"),
        _ => arrow_select::concat::concat_batches(&batches[0].schema(), &batches)?,
    };
    // with several parts, each part's top N are candidates for the top N
    let rows = if preselected && partials.len() == 1 {
        rows
    } else {
        let single = (partials.len() == 1).then(|| partials[0].index.as_ref());
        order_and_limit(q, layout, rows, single, &order)?
    };

    // totals: every group folded into one
    let folded: Vec<State> = measures
        .iter()
        .enumerate()
        .map(|(i, &m)| match &partials[0].states[i] {
            State::Scalar(_) => State::Scalar(vec![
                partials
                    .iter()
                    .filter_map(|p| match &p.states[i] {
                        State::Scalar(v) => Some(v.iter()),
                        State::Values(_) => None,
                    })
                    .flatten()
                    .fold(initial(m), |a, &b| combine(m, a, b)),
            ]),
            State::Values(_) => State::Values(vec![
                partials
                    .iter()
                    .filter_map(|p| match &p.states[i] {
                        State::Values(v) => Some(v.iter().flatten().copied()),
                        State::Scalar(_) => None,
                    })
                    .flatten()
                    .collect(),
            ]),
        })
        .collect();
    let (tf, tc) = aggregate_columns(
        &q.aggregates,
        measures,
        &folded,
        1,
        range_ns.map(|ns| ns as f64 / 1e9),
    );
    let totals = RecordBatch::try_new(Arc::new(Schema::new(tf)), tc)?;
    Ok(QueryOutput {
        rows,
        totals: Some(totals),
        groups,
        scan,
        rollup_segments: 0,
        volumes: q.volumes,
        coverage,
        left_out,
    })
}

/// One partial's groups as result rows: its top N when the query orders by
/// an aggregate with a limit (picked before any key is built, so millions
/// of groups cost their sums, not their rows; `true` then), else all of
/// them in group order.
fn group_rows(
    q: &Query,
    layout: &KeyLayout,
    measures: &[Measure],
    p: &Partial,
    texts: &HashMap<u64, String, FixedState>,
    duration_s: Option<f64>,
    order: &OrderBy,
) -> Result<(RecordBatch, bool), QueryError> {
    let groups = p.index.len();
    let (agg_fields, agg_columns) =
        aggregate_columns(&q.aggregates, measures, &p.states, groups, duration_s);
    let order_index = agg_fields.iter().position(|f| *f.name() == order.column);
    let (selected, agg_columns): (Vec<u32>, Vec<ArrayRef>) = match (order_index, q.limit) {
        (Some(i), Some(limit)) if layout.bucket_ns.is_none() => {
            let indices = top_indices(&agg_columns[i], order.descending, Some(limit))?;
            let taken = agg_columns
                .iter()
                .map(|c| arrow_select::take::take(c, &indices, None))
                .collect::<Result<_, _>>()?;
            (indices.values().to_vec(), taken)
        }
        _ => ((0..groups as u32).collect(), agg_columns),
    };
    let preselected = selected.len() < groups
        || (q.limit.is_some() && layout.bucket_ns.is_none() && order_index.is_some());
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for f in &layout.fields {
        let name = f.name.unwrap_or("time_bucket");
        let (field, array) = key_column(name, f, p.index.as_ref(), &selected, texts);
        fields.push(field);
        columns.push(array);
    }
    fields.extend(agg_fields);
    columns.extend(agg_columns);
    let rows = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    Ok((rows, preselected))
}

fn key_column(
    name: &str,
    f: &super::group::KeyField,
    index: &dyn GroupIndex,
    selected: &[u32],
    texts: &HashMap<u64, String, FixedState>,
) -> (Field, ArrayRef) {
    let groups = selected.len();
    let key = |i: usize| index.key(selected[i] as usize);
    let null = |i: usize| f.is_null(key(i));
    let bytes = |i: usize| &key(i)[f.offset..f.offset + f.width];
    let u64_at = |g: usize| {
        let mut b = [0u8; 8];
        b[..f.width].copy_from_slice(bytes(g));
        u64::from_le_bytes(b)
    };
    macro_rules! build {
        ($builder:ty, $conv:ty) => {{
            let mut b = <$builder>::with_capacity(groups);
            for g in 0..groups {
                if null(g) {
                    b.append_null();
                } else {
                    b.append_value(u64_at(g) as $conv);
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    let array: ArrayRef = match f.kind {
        Kind::U8 => build!(UInt8Builder, u8),
        Kind::U16 => build!(UInt16Builder, u16),
        Kind::U32 => build!(UInt32Builder, u32),
        Kind::U64 => build!(UInt64Builder, u64),
        Kind::Timestamp => {
            let mut b = TimestampNanosecondBuilder::with_capacity(groups).with_timezone("UTC");
            for g in 0..groups {
                if null(g) {
                    b.append_null();
                } else {
                    b.append_value(u64_at(g) as i64);
                }
            }
            Arc::new(b.finish())
        }
        Kind::Address => {
            let mut b = FixedSizeBinaryBuilder::with_capacity(groups, 16);
            for g in 0..groups {
                if null(g) {
                    b.append_null();
                } else if f.width == 4 {
                    // a narrow layout's IPv4 address
                    let v4: [u8; 4] = bytes(g).try_into().expect("4 bytes");
                    b.append_value(hopscope_schema::ipv4_mapped(v4))
                        .expect("16 bytes");
                } else {
                    b.append_value(bytes(g)).expect("16 bytes");
                }
            }
            Arc::new(b.finish())
        }
        Kind::Text => {
            let mut b = StringBuilder::new();
            for g in 0..groups {
                match texts.get(&u64_at(g)).filter(|_| !null(g)) {
                    Some(s) => b.append_value(s),
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
    };
    (Field::new(name, array.data_type().clone(), true), array)
}

fn aggregate_columns(
    aggregates: &[Aggregate],
    measures: &[Measure],
    states: &[State],
    groups: usize,
    duration_s: Option<f64>,
) -> (Vec<Field>, Vec<ArrayRef>) {
    let scalar = |m: Measure| -> &Vec<u64> {
        let i = measures
            .iter()
            .position(|x| *x == m)
            .expect("measure planned");
        match &states[i] {
            State::Scalar(v) => v,
            State::Values(_) => unreachable!("scalar measure"),
        }
    };
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for a in aggregates {
        let name = a.column_name();
        let array: ArrayRef = match a {
            Aggregate::Flows => Arc::new(arrow_array::UInt64Array::from(
                scalar(Measure::Count).clone(),
            )),
            Aggregate::Sum(f) => Arc::new(arrow_array::UInt64Array::from(
                scalar(Measure::Sum(f)).clone(),
            )),
            Aggregate::Min(f) | Aggregate::Max(f) => {
                let m = if matches!(a, Aggregate::Min(_)) {
                    Measure::Min(f)
                } else {
                    Measure::Max(f)
                };
                // a group where the field was always null has no min or max
                let present = scalar(m);
                let mut b = UInt64Builder::with_capacity(groups);
                for &v in present {
                    if (m == Measure::Min(f) && v == u64::MAX) || (m == Measure::Max(f) && v == 0) {
                        b.append_option((m == Measure::Max(f)).then_some(0));
                    } else {
                        b.append_value(v);
                    }
                }
                Arc::new(b.finish())
            }
            Aggregate::Avg(f) => {
                let sums = scalar(Measure::Sum(f));
                let counts = scalar(Measure::Present(f));
                let mut b = Float64Builder::with_capacity(groups);
                for (s, c) in sums.iter().zip(counts) {
                    b.append_option((*c > 0).then(|| *s as f64 / *c as f64));
                }
                Arc::new(b.finish())
            }
            Aggregate::Percentile(f, p) => {
                let i = measures
                    .iter()
                    .position(|x| *x == Measure::Values(f))
                    .expect("planned");
                let State::Values(values) = &states[i] else {
                    unreachable!()
                };
                let mut b = UInt64Builder::with_capacity(groups);
                for v in values {
                    b.append_option(super::percentile(&mut v.clone(), f64::from(*p)));
                }
                Arc::new(b.finish())
            }
            Aggregate::Bps | Aggregate::Pps => {
                let (m, scale) = if *a == Aggregate::Bps {
                    (Measure::Sum("bytes"), 8.0)
                } else {
                    (Measure::Sum("packets"), 1.0)
                };
                let mut b = Float64Builder::with_capacity(groups);
                for &v in scalar(m) {
                    b.append_option(duration_s.map(|d| v as f64 * scale / d));
                }
                Arc::new(b.finish())
            }
            Aggregate::Bpp => {
                let bytes = scalar(Measure::Sum("bytes"));
                let packets = scalar(Measure::Sum("packets"));
                let mut b = Float64Builder::with_capacity(groups);
                for (by, p) in bytes.iter().zip(packets) {
                    b.append_option((*p > 0).then(|| *by as f64 / *p as f64));
                }
                Arc::new(b.finish())
            }
        };
        fields.push(Field::new(name, array.data_type().clone(), true));
        columns.push(array);
    }
    (fields, columns)
}

/// The rows of the first `limit` values of `column`, largest first when
/// `descending`, nulls last.
///
/// A few of millions (the top 10 of a 5-tuple aggregation) are kept in a
/// heap in one pass over the values; a sort with a limit first copies every
/// value with its row number (80 MB for 5 million groups) and selects from
/// that. Ties go to the earlier row.
fn top_indices(
    column: &ArrayRef,
    descending: bool,
    limit: Option<usize>,
) -> Result<UInt32Array, arrow_schema::ArrowError> {
    let options = arrow_ord::sort::SortOptions {
        descending,
        nulls_first: false,
    };
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let counts = column.as_primitive_opt::<UInt64Type>();
    let (Some(limit), Some(counts)) = (limit, counts) else {
        return arrow_ord::sort::sort_to_indices(column, Some(options), limit);
    };
    if counts.null_count() > 0 || limit >= counts.len() / 16 {
        return arrow_ord::sort::sort_to_indices(column, Some(options), Some(limit));
    }
    // larger ranks first; an ascending order ranks by the complement
    let rank = |v: u64| if descending { v } else { !v };
    let mut worst_kept: BinaryHeap<Reverse<(u64, Reverse<u32>)>> =
        BinaryHeap::with_capacity(limit + 1);
    for (row, &v) in counts.values().iter().enumerate() {
        let entry = Reverse((rank(v), Reverse(row as u32)));
        if worst_kept.len() < limit {
            worst_kept.push(entry);
        } else if let Some(mut worst) = worst_kept.peek_mut()
            && entry < *worst
        {
            *worst = entry;
        }
    }
    Ok(worst_kept
        .into_sorted_vec()
        .into_iter()
        .map(|Reverse((_, Reverse(row)))| row)
        .collect())
}

/// `index` is the table whose group g is row g of `rows`, which a bucketed
/// query needs to rank series (it has one table; see `aggregate`).
fn order_and_limit(
    q: &Query,
    layout: &KeyLayout,
    rows: RecordBatch,
    index: Option<&dyn GroupIndex>,
    order: &OrderBy,
) -> Result<RecordBatch, QueryError> {
    let column = rows.column_by_name(&order.column).ok_or_else(|| {
        QueryError::Plan(format!(
            "cannot order by '{}': not a result column",
            order.column
        ))
    })?;
    let bucketed = layout.bucket_ns.is_some();
    if !bucketed {
        let indices = top_indices(column, order.descending, q.limit)?;
        return Ok(arrow_select::take::take_record_batch(&rows, &indices)?);
    }
    // time series: keep the top groups over the whole range in every bucket
    if let Some(limit) = q.limit
        && !q.group_by.is_empty()
        && let Some(index) = index
    {
        // the key without its bucket (never null): the series it belongs to
        // rows are in group order here: row g is group g
        let series = |g: usize| {
            let key = index.key(g);
            (
                &key[..layout.flag_bytes],
                &key[layout.flag_bytes + 8..layout.width],
            )
        };
        let mut totals: HashMap<(&[u8], &[u8]), f64> = HashMap::new();
        for (g, v) in column_as_f64(column).into_iter().enumerate() {
            *totals.entry(series(g)).or_default() += v;
        }
        let mut ranked: Vec<_> = totals.into_iter().collect();
        ranked.sort_by(|a, b| {
            let o = a.1.total_cmp(&b.1);
            if order.descending { o.reverse() } else { o }
        });
        let keep: HashSet<(&[u8], &[u8])> =
            ranked.into_iter().take(limit).map(|(k, _)| k).collect();
        let kept = mask(rows.num_rows(), |g| keep.contains(&series(g)));
        let filtered = arrow_select::filter::filter_record_batch(&rows, &kept)?;
        return sort_by_bucket(
            &filtered,
            column_index(&filtered, &order.column),
            order.descending,
        );
    }
    sort_by_bucket(&rows, column_index(&rows, &order.column), order.descending)
}

fn column_index(batch: &RecordBatch, name: &str) -> usize {
    batch.schema().index_of(name).expect("checked above")
}

/// Orders by time bucket, then by the order column within a bucket.
fn sort_by_bucket(
    rows: &RecordBatch,
    order_column: usize,
    descending: bool,
) -> Result<RecordBatch, QueryError> {
    let columns = vec![
        arrow_ord::sort::SortColumn {
            values: rows.column(0).clone(),
            options: Some(arrow_ord::sort::SortOptions::default()),
        },
        arrow_ord::sort::SortColumn {
            values: rows.column(order_column).clone(),
            options: Some(arrow_ord::sort::SortOptions {
                descending,
                nulls_first: false,
            }),
        },
    ];
    let indices = arrow_ord::sort::lexsort_to_indices(&columns, None)?;
    Ok(arrow_select::take::take_record_batch(rows, &indices)?)
}

fn column_as_f64(column: &ArrayRef) -> Vec<f64> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, UInt64Type};
    match column.data_type() {
        arrow_schema::DataType::Float64 => column
            .as_primitive::<Float64Type>()
            .iter()
            .map(|v| v.unwrap_or(0.0))
            .collect(),
        arrow_schema::DataType::UInt64 => column
            .as_primitive::<UInt64Type>()
            .iter()
            .map(|v| v.unwrap_or(0) as f64)
            .collect(),
        _ => vec![0.0; column.len()],
    }
}

/// Lists matching flows: in store order up to the limit, or the top rows
/// by an order column.
fn list(q: &Query, parts: &[Part]) -> Result<QueryOutput, QueryError> {
    let mut columns: Vec<&str> = q.columns.clone();
    columns.extend([TIME_COLUMN, RATE_COLUMN]);
    if let Some(f) = &q.filter {
        filter_fields(f, &mut columns);
    }
    if let Some(o) = &q.order_by {
        columns.push(field_kind(&o.column).map(|(f, _)| f).ok_or_else(|| {
            QueryError::Plan(format!("cannot order by '{}': not a field", o.column))
        })?);
    }
    volume::stored_columns(&mut columns);
    let view = volume::view_schema();
    let schema = Arc::new(
        view.project(
            &q.columns
                .iter()
                .map(|c| view.index_of(c))
                .collect::<Result<Vec<_>, _>>()?,
        )?,
    );
    let mut coverage = RateCoverage::default();
    let mut kept: Vec<RecordBatch> = Vec::new();
    let mut kept_rows = 0;
    let mut scan = ScanStats::default();
    let limit = q.limit.unwrap_or(usize::MAX);
    for part in parts {
        if q.order_by.is_none() && kept_rows >= limit {
            scan.segments_pruned += 1;
            continue;
        }
        part.scan(&columns, q.from_ns, q.to_ns, &mut scan, |batch| {
            let batch = select(q, batch).map_err(|e| crate::StoreError::Schema(e.to_string()))?;
            if batch.num_rows() == 0 || (q.order_by.is_none() && kept_rows >= limit) {
                return Ok(());
            }
            kept_rows += batch.num_rows();
            kept.push(batch);
            if let Some(order) = &q.order_by
                && kept_rows > limit.saturating_mul(4).max(65_536)
            {
                let merged = top_rows(&kept, order, limit)?;
                kept_rows = merged.num_rows();
                kept = vec![merged];
            }
            Ok(())
        })?;
    }
    let rows = match &q.order_by {
        Some(order) => top_rows(&kept, order, limit)?,
        None => {
            let all = concat_aligned(&kept)?;
            all.slice(0, all.num_rows().min(limit))
        }
    };
    // the rates of the rows listed, not of every row matched
    coverage.count(&rows);
    // present exactly the asked columns, in order, nulls for those absent
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| {
            rows.column_by_name(f.name())
                .cloned()
                .unwrap_or_else(|| arrow_array::new_null_array(f.data_type(), rows.num_rows()))
        })
        .collect();
    let rows = RecordBatch::try_new(schema, columns)?;
    let groups = rows.num_rows();
    // a listing shows records, each of them
    let left_out = LeftOut {
        counting: Counting::EveryPoint,
        ..LeftOut::default()
    };
    Ok(QueryOutput {
        rows,
        totals: None,
        groups,
        scan,
        rollup_segments: 0,
        volumes: q.volumes,
        coverage,
        left_out,
    })
}

/// Concatenates batches whose schemas may differ by absent columns (older
/// segments): the union of columns, nulls where a batch lacks one.
fn concat_aligned(batches: &[RecordBatch]) -> Result<RecordBatch, crate::StoreError> {
    let stored = volume::view_schema();
    // the union of the batches' columns, in the view's order
    let indices: Vec<usize> = (0..stored.fields().len())
        .filter(|&i| {
            let name = stored.field(i).name();
            batches.iter().any(|b| b.column_by_name(name).is_some())
        })
        .collect();
    let schema = Arc::new(stored.project(&indices)?);
    let aligned: Vec<RecordBatch> = batches
        .iter()
        .map(|b| {
            let columns = schema
                .fields()
                .iter()
                .map(|f| {
                    b.column_by_name(f.name())
                        .cloned()
                        .unwrap_or_else(|| arrow_array::new_null_array(f.data_type(), b.num_rows()))
                })
                .collect();
            RecordBatch::try_new(schema.clone(), columns)
        })
        .collect::<Result<_, _>>()?;
    Ok(arrow_select::concat::concat_batches(&schema, &aligned)?)
}

fn top_rows(
    batches: &[RecordBatch],
    order: &OrderBy,
    limit: usize,
) -> Result<RecordBatch, crate::StoreError> {
    let all = concat_aligned(batches)?;
    let Some(column) = all.column_by_name(&order.column) else {
        return Ok(all.slice(0, 0));
    };
    let indices = top_indices(column, order.descending, Some(limit))?;
    Ok(arrow_select::take::take_record_batch(&all, &indices)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The heap's top N against a full sort, both ways, with many ties.
    #[test]
    fn top_indices_match_a_sort_and_break_ties_by_row() {
        let values: Vec<u64> = (0..5000u64).map(|i| (i * 7919) % 613).collect();
        let column: ArrayRef = Arc::new(arrow_array::UInt64Array::from(values.clone()));
        for descending in [true, false] {
            let mut sorted: Vec<u32> = (0..values.len() as u32).collect();
            sorted.sort_by_key(|&row| {
                let v = values[row as usize];
                (if descending { u64::MAX - v } else { v }, row)
            });
            for limit in [1, 10, 100] {
                let top = top_indices(&column, descending, Some(limit)).unwrap();
                assert_eq!(
                    top.values().to_vec(),
                    sorted[..limit],
                    "{descending} {limit}"
                );
            }
        }
    }

    #[test]
    fn top_indices_leave_nulls_and_large_limits_to_the_sort() {
        let column: ArrayRef = Arc::new(arrow_array::UInt64Array::from(vec![
            Some(3),
            None,
            Some(9),
            Some(1),
        ]));
        let top = top_indices(&column, true, Some(3)).unwrap();
        assert_eq!(top.values().to_vec(), [2, 0, 3]);
    }
}
