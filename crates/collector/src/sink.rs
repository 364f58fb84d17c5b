//! The store writer: gathers receivers' hand-offs and commits them every
//! flush interval, then records the session state that matches what was
//! committed, so that a restart resumes exactly there.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use arrow_array::{Array, RecordBatch, TimestampNanosecondArray};
use hopscope_store::{Store, Table};

use crate::intake::{Handoff, PointFacts};
use crate::metrics::Metrics;
use crate::state::SessionState;

/// Rows gathered before a flush is forced, whatever the interval.
const MAX_PENDING_ROWS: usize = 1 << 20;
/// Rows per segment written in parallel at a flush.
const ROWS_PER_WRITER: usize = 256 * 1024;

#[derive(Default)]
struct Pending {
    tables: HashMap<Table, Vec<RecordBatch>>,
    rows: usize,
    oldest_ns: Option<i64>,
    points: PointFacts,
}

/// What a flush made durable, for consumers that follow the store (the
/// correlator, analyzers): the batches of each table and what exporters
/// said of their points (names, clocks).
#[derive(Debug, Default, Clone)]
pub struct Committed {
    pub tables: Vec<(Table, Vec<RecordBatch>)>,
    pub points: PointFacts,
    /// The newest receive time among the rows (0 when there are none):
    /// event time as far as the collector knows it.
    pub watermark_ns: i64,
}

/// Called with what each flush committed; it must not wait long, for the
/// store writer waits for it.
#[derive(Clone)]
pub struct CommitHook(pub std::sync::Arc<dyn Fn(Committed) + Send + Sync>);

impl std::fmt::Debug for CommitHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitHook")
    }
}

/// The newest `time_received_ns` of `batches`.
fn newest_received(batches: &[RecordBatch]) -> Option<i64> {
    batches
        .iter()
        .filter_map(|b| {
            b.column_by_name(hopscope_store::TIME_COLUMN)?
                .as_any()
                .downcast_ref::<TimestampNanosecondArray>()
        })
        .filter(|times| times.null_count() == 0)
        .filter_map(|times| times.values().iter().max().copied())
        .max()
}

/// Runs until every receiver has dropped its sender, then flushes once more.
pub fn run(
    store: Arc<Store>,
    handoffs: Receiver<Handoff>,
    metrics: Arc<Metrics>,
    flush_interval: Duration,
    session_idle: Duration,
    on_commit: Option<CommitHook>,
) {
    let mut pending = Pending::default();
    let mut state = SessionState::open(&store, session_idle);
    let mut last_flush = Instant::now();
    loop {
        let wait = flush_interval.saturating_sub(last_flush.elapsed());
        // every receiver gone: flush what is left, then stop
        let closed = match handoffs.recv_timeout(wait) {
            Ok(h) => {
                if let Some(delta) = h.state {
                    state.apply(delta);
                }
                pending.points.extend(h.points);
                let tables = [
                    (Table::Flows, h.flows),
                    (Table::PacketReports, h.packet_reports),
                    (Table::InterfaceCounters, h.interface_counters),
                    (Table::Health, h.health),
                ];
                for (table, batch) in tables {
                    if let Some(b) = batch.filter(|b| b.num_rows() > 0) {
                        if table == Table::Flows {
                            pending.rows += b.num_rows();
                        }
                        pending.tables.entry(table).or_default().push(b);
                    }
                }
                if let Some(t) = h.oldest_ns {
                    pending.oldest_ns = Some(pending.oldest_ns.map_or(t, |o| o.min(t)));
                    metrics
                        .store
                        .oldest_pending_ns
                        .store(pending.oldest_ns.unwrap_or(0), Ordering::Relaxed);
                }
                metrics
                    .store
                    .rows_pending
                    .store(pending.rows as u64, Ordering::Relaxed);
                if pending.rows < MAX_PENDING_ROWS && last_flush.elapsed() < flush_interval {
                    continue;
                }
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        flush(
            &store,
            &mut pending,
            &mut state,
            &metrics,
            on_commit.as_ref(),
        );
        if closed {
            return;
        }
        last_flush = Instant::now();
    }
}

fn flush(
    store: &Store,
    pending: &mut Pending,
    state: &mut SessionState,
    metrics: &Metrics,
    on_commit: Option<&CommitHook>,
) {
    let m = &metrics.store;
    let work = std::mem::take(pending);
    let mut committed = Committed {
        points: work.points,
        ..Committed::default()
    };
    m.rows_pending.store(0, Ordering::Relaxed);
    m.oldest_pending_ns.store(0, Ordering::Relaxed);
    let mut failed = false;
    for (table, batches) in work.tables {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if on_commit.is_some() {
            if let Some(newest) = newest_received(&batches) {
                committed.watermark_ns = committed.watermark_ns.max(newest);
            }
            committed.tables.push((table, batches.clone()));
        }
        // large flushes are encoded by several threads, one segment each
        let chunks = split_rows(batches, ROWS_PER_WRITER);
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|chunk| scope.spawn(move || store.writer().write(table, chunk)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("writer thread"))
                .collect()
        });
        for r in results {
            match r {
                Ok(segments) => {
                    m.segments_written
                        .fetch_add(segments.len() as u64, Ordering::Relaxed);
                    m.bytes_written
                        .fetch_add(segments.iter().map(|s| s.bytes).sum(), Ordering::Relaxed);
                }
                Err(e) => {
                    failed = true;
                    m.flush_errors.fetch_add(1, Ordering::Relaxed);
                    metrics.publish(0, Vec::new(), vec![format!("store: {e}")]);
                }
            }
        }
        if table == Table::Flows {
            if failed {
                m.rows_dropped.fetch_add(rows as u64, Ordering::Relaxed);
            } else {
                m.rows_written.fetch_add(rows as u64, Ordering::Relaxed);
            }
        }
    }
    m.flushes.fetch_add(1, Ordering::Relaxed);
    m.last_flush_ns.store(crate::now_ns(), Ordering::Relaxed);
    if failed {
        return;
    }
    if let Some(hook) = on_commit {
        (hook.0)(committed);
    }
    // the state matching what is now committed
    if let Err(e) = state.write() {
        metrics.publish(0, Vec::new(), vec![format!("state: {e}")]);
    }
}

/// Groups batches into chunks of about `rows` rows.
fn split_rows(batches: Vec<RecordBatch>, rows: usize) -> Vec<Vec<RecordBatch>> {
    let mut chunks: Vec<Vec<RecordBatch>> = Vec::new();
    let mut current: Vec<RecordBatch> = Vec::new();
    let mut count = 0;
    for b in batches {
        count += b.num_rows();
        current.push(b);
        if count >= rows {
            chunks.push(std::mem::take(&mut current));
            count = 0;
        }
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}
