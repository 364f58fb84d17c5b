//! A copy of every table's rows in a ClickHouse server (`--clickhouse`,
//! `[serve] clickhouse`): the rows the collector committed and all that the
//! correlator, the analyzer, the detector and the poller published, in the
//! order the local store took them. The local store stays the one `serve`
//! answers from and keeps its state in; the copy is what other machines'
//! tools (and, later, workers) share.
//!
//! A server that is down, slow or refusing does not stall the pipeline:
//! the mirror holds the batch it is writing and tries again with back-off
//! (1 s, doubling to 30 s), while the bus queues batches behind it; past
//! its queue, batches are dropped for the mirror and counted (the local
//! store still has them). Each table of a batch is written once: a retry
//! starts at the first table not yet written.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hopscope_clickhouse::ClickHouse;
use hopscope_store::Backend;
use serde::{Deserialize, Serialize};

use crate::{Batch, Recv, Subscriber};

/// Batches queued for the mirror before the bus drops them for it.
pub const MIRROR_QUEUE: usize = 512;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MOST_BACKOFF: Duration = Duration::from_secs(30);

/// The mirror's account, in `/api/status` under `clickhouse` and in
/// `/metrics` as `hopscope_clickhouse_*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorSnapshot {
    /// The server's `version()`, once connected.
    pub version: Option<String>,
    /// Rows the server took.
    pub rows: u64,
    /// Writes (one table of one batch) the server took.
    pub writes: u64,
    /// Attempts that failed (connecting or writing); each is tried again.
    pub failures: u64,
    /// Rows given up at shutdown while the server still refused them.
    pub rows_abandoned: u64,
    pub last_error: Option<String>,
    pub last_success_ns: Option<i64>,
}

/// Starts the mirror on `subscriber`'s batches; it ends when the
/// subscription ends and its queue is empty (once `stop` is set, a batch
/// the server refuses is abandoned rather than retried).
pub fn spawn(
    url: String,
    subscriber: Subscriber<Arc<Batch>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(std::thread::JoinHandle<()>, Arc<Mutex<MirrorSnapshot>>)> {
    let snapshot = Arc::new(Mutex::new(MirrorSnapshot::default()));
    let shared = snapshot.clone();
    let handle = std::thread::Builder::new()
        .name("clickhouse mirror".into())
        .spawn(move || {
            let mut mirror = Mirror {
                url,
                server: None,
                snapshot: shared,
                backoff: FIRST_BACKOFF,
            };
            loop {
                let batch = match subscriber.recv_timeout(Duration::from_secs(1)) {
                    Ok(b) => b,
                    Err(Recv::Timeout) => continue,
                    Err(Recv::Ended) => return,
                };
                mirror.write(&batch, &stop);
            }
        })?;
    Ok((handle, snapshot))
}

struct Mirror {
    url: String,
    server: Option<ClickHouse>,
    snapshot: Arc<Mutex<MirrorSnapshot>>,
    backoff: Duration,
}

impl Mirror {
    fn account(&self) -> std::sync::MutexGuard<'_, MirrorSnapshot> {
        self.snapshot.lock().expect("no panic holds the snapshot")
    }

    /// Writes every table of `batch`, retrying each until the server takes
    /// it (or, stopping, gives up on it).
    fn write(&mut self, batch: &Batch, stop: &AtomicBool) {
        for (table, rows) in &batch.tables {
            let count: u64 = rows.iter().map(|b| b.num_rows() as u64).sum();
            if count == 0 {
                continue;
            }
            loop {
                match self.try_write(*table, rows) {
                    Ok(()) => {
                        self.backoff = FIRST_BACKOFF;
                        let mut a = self.account();
                        a.rows += count;
                        a.writes += 1;
                        a.last_success_ns = Some(hopscope_store::now_ns());
                        break;
                    }
                    Err(e) => {
                        {
                            let mut a = self.account();
                            a.failures += 1;
                            a.last_error = Some(format!("{}: {e}", table.dir_name()));
                        }
                        if stop.load(Ordering::Relaxed) {
                            self.account().rows_abandoned += count;
                            break;
                        }
                        sleep_unless_stopped(self.backoff, stop);
                        self.backoff = (self.backoff * 2).min(MOST_BACKOFF);
                    }
                }
            }
        }
    }

    fn try_write(
        &mut self,
        table: hopscope_store::Table,
        rows: &[arrow_array::RecordBatch],
    ) -> Result<(), String> {
        if self.server.is_none() {
            let server = ClickHouse::connect(&self.url).map_err(|e| e.to_string())?;
            self.account().version = Some(server.version().to_string());
            self.server = Some(server);
        }
        let server = self.server.as_ref().expect("connected above");
        server.write(table, rows).map_err(|e| {
            // connect anew next time: the server may have restarted
            self.server = None;
            e.to_string()
        })
    }
}

fn sleep_unless_stopped(how_long: Duration, stop: &AtomicBool) {
    let until = Instant::now() + how_long;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The mirror's counters in the text exposition format.
pub fn prometheus(s: &MirrorSnapshot) -> String {
    let mut out = String::new();
    let families: [(&str, &str, &str, Option<f64>); 5] = [
        (
            "clickhouse_rows_total",
            "counter",
            "Rows the ClickHouse server took.",
            Some(s.rows as f64),
        ),
        (
            "clickhouse_writes_total",
            "counter",
            "Writes (one table of one batch) the ClickHouse server took.",
            Some(s.writes as f64),
        ),
        (
            "clickhouse_failures_total",
            "counter",
            "Attempts to connect or write that failed (each is tried again).",
            Some(s.failures as f64),
        ),
        (
            "clickhouse_rows_abandoned_total",
            "counter",
            "Rows given up at shutdown while the server refused them.",
            Some(s.rows_abandoned as f64),
        ),
        (
            "clickhouse_last_success_timestamp_seconds",
            "gauge",
            "When the server last took a write.",
            s.last_success_ns.map(|t| t as f64 / 1e9),
        ),
    ];
    for (name, kind, help, value) in families {
        let samples = value.map(|v| (String::new(), v)).into_iter().collect();
        hopscope_analyze::live::write_family(&mut out, name, kind, help, samples);
    }
    out
}
