//! The store writer: gathers receivers' hand-offs and commits them every
//! flush interval, then records the session state that matches what was
//! committed, so that a restart resumes exactly there.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
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
/// correlator): flow records, packet reports, health rows and what
/// exporters said of their points (names, clocks).
#[derive(Debug, Default)]
pub struct Committed {
    pub flows: Vec<RecordBatch>,
    pub packet_reports: Vec<RecordBatch>,
    pub health: Vec<RecordBatch>,
    pub points: PointFacts,
}

/// Runs until every receiver has dropped its sender, then flushes once more.
pub fn run(
    store: Arc<Store>,
    handoffs: Receiver<Handoff>,
    metrics: Arc<Metrics>,
    flush_interval: Duration,
    session_idle: Duration,
    committed: Option<SyncSender<Committed>>,
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
            committed.as_ref(),
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
    committed: Option<&SyncSender<Committed>>,
) {
    let m = &metrics.store;
    let work = std::mem::take(pending);
    let mut follow = Committed {
        points: work.points,
        ..Committed::default()
    };
    m.rows_pending.store(0, Ordering::Relaxed);
    m.oldest_pending_ns.store(0, Ordering::Relaxed);
    let mut failed = false;
    for (table, batches) in work.tables {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        match table {
            Table::Flows if committed.is_some() => follow.flows = batches.clone(),
            Table::PacketReports if committed.is_some() => follow.packet_reports = batches.clone(),
            Table::Health if committed.is_some() => follow.health = batches.clone(),
            _ => {}
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
    if let Some(c) = committed {
        // a correlator that cannot keep up must not stall the store
        if c.try_send(follow).is_err() {
            m.follow_dropped.fetch_add(1, Ordering::Relaxed);
        }
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
