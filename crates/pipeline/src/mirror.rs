//! A copy of every table's rows in a ClickHouse server (`--clickhouse`,
//! `[serve] clickhouse`): the rows the collector committed and all that the
//! correlator, the analyzer, the detector and the poller published, in the
//! order the local store took them (the rollups are the local store's own,
//! not copied). The local store stays the one `serve`
//! answers from and keeps its state in; the copy is what other machines'
//! tools (and, later, workers) share.
//!
//! A server that is down, failing or refusing our credentials does not
//! stall the pipeline (and is said on stderr once an outage): the mirror
//! holds the batch it is writing and tries again with back-off
//! (1 s, doubling to 30 s), while the bus queues batches behind it; past
//! its queue, batches are dropped for the mirror and counted (the local
//! store still has them). Rows the server refuses for what they are (a
//! syntax error, a column of another type) are given up at once, and
//! those it keeps failing on after [`MOST_SERVER_FAILURES`] tries, so that
//! one bad batch does not hold back every later one. A retry starts at the
//! first table of the batch not yet taken; a write whose answer was lost
//! may have been taken, so the copy is at least once, not exactly once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hopscope_clickhouse::{ClickHouse, ClickHouseError, Target};
use serde::{Deserialize, Serialize};

use crate::{Batch, Recv, Subscriber};

/// Batches queued for the mirror before the bus drops them for it.
pub const MIRROR_QUEUE: usize = 512;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MOST_BACKOFF: Duration = Duration::from_secs(30);
/// Tries of one write the server answers with a failure of its own (5xx)
/// before the rows are given up; an unreachable server is waited for.
pub const MOST_SERVER_FAILURES: u32 = 5;

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
    /// Attempts that failed (connecting or writing).
    pub failures: u64,
    /// Rows given up: refused for what they are, failed on
    /// [`MOST_SERVER_FAILURES`] times, or left at shutdown while the server
    /// was away.
    pub rows_abandoned: u64,
    pub last_error: Option<String>,
    pub last_success_ns: Option<i64>,
}

/// Starts the mirror on `subscriber`'s batches; it ends when the
/// subscription ends and its queue is empty (once `stop` is set, a batch
/// the server refuses is abandoned rather than retried).
pub fn spawn(
    target: Target,
    subscriber: Subscriber<Arc<Batch>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(std::thread::JoinHandle<()>, Arc<Mutex<MirrorSnapshot>>)> {
    spawn_backing_off(target, subscriber, stop, FIRST_BACKOFF)
}

fn spawn_backing_off(
    target: Target,
    subscriber: Subscriber<Arc<Batch>>,
    stop: Arc<AtomicBool>,
    first_backoff: Duration,
) -> std::io::Result<(std::thread::JoinHandle<()>, Arc<Mutex<MirrorSnapshot>>)> {
    let snapshot = Arc::new(Mutex::new(MirrorSnapshot::default()));
    let shared = snapshot.clone();
    let handle = std::thread::Builder::new()
        .name("clickhouse mirror".into())
        .spawn(move || {
            let mut mirror = Mirror {
                target,
                server: None,
                snapshot: shared,
                first_backoff,
                backoff: first_backoff,
                giving_up: false,
                failing: false,
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
    target: Target,
    server: Option<ClickHouse>,
    snapshot: Arc<Mutex<MirrorSnapshot>>,
    first_backoff: Duration,
    backoff: Duration,
    /// Stopping, and the server failed: what is left is given up without
    /// waiting on it again.
    giving_up: bool,
    /// The last try failed (said on stderr once, until one succeeds).
    failing: bool,
}

impl Mirror {
    fn account(&self) -> std::sync::MutexGuard<'_, MirrorSnapshot> {
        self.snapshot.lock().expect("no panic holds the snapshot")
    }

    /// Writes every table of `batch`, retrying each while it may pass
    /// (and, stopping, giving up on it once the server has failed).
    fn write(&mut self, batch: &Batch, stop: &AtomicBool) {
        for (table, rows) in &batch.tables {
            let count: u64 = rows.iter().map(|b| b.num_rows() as u64).sum();
            if count == 0 {
                continue;
            }
            let mut server_failures = 0;
            loop {
                if self.giving_up {
                    self.account().rows_abandoned += count;
                    break;
                }
                let error = match self.try_write(*table, rows) {
                    Ok(()) => {
                        if self.failing {
                            eprintln!("hopscope: the ClickHouse copy is written again");
                            self.failing = false;
                        }
                        self.backoff = self.first_backoff;
                        let mut a = self.account();
                        a.rows += count;
                        a.writes += 1;
                        a.last_success_ns = Some(hopscope_store::now_ns());
                        break;
                    }
                    Err(e) => e,
                };
                if error.is_server_failure() {
                    server_failures += 1;
                }
                if !self.failing {
                    // said once an outage, not at every try
                    eprintln!(
                        "hopscope: the ClickHouse copy failed ({}: {error}); trying again, see /api/status",
                        table.dir_name()
                    );
                    self.failing = true;
                }
                let again = error.may_pass_later() && server_failures < MOST_SERVER_FAILURES;
                {
                    let mut a = self.account();
                    a.failures += 1;
                    a.last_error = Some(format!("{}: {error}", table.dir_name()));
                    if !again {
                        a.rows_abandoned += count;
                    }
                }
                if !again {
                    break;
                }
                if stop.load(Ordering::Relaxed) {
                    self.giving_up = true;
                    continue;
                }
                sleep_unless_stopped(self.backoff, stop);
                self.backoff = (self.backoff * 2).min(MOST_BACKOFF);
            }
        }
    }

    fn try_write(
        &mut self,
        table: hopscope_store::Table,
        rows: &[arrow_array::RecordBatch],
    ) -> Result<(), ClickHouseError> {
        let server = match self.server.take() {
            Some(server) => server,
            None => {
                let server = self.target.connect()?;
                self.account().version = Some(server.version().to_string());
                server
            }
        };
        server.insert(table, rows)?;
        // kept only while it answers: after a failure, connect anew (the
        // server may have restarted, or be another behind the name)
        self.server = Some(server);
        Ok(())
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
            "Attempts to connect or write that failed.",
            Some(s.failures as f64),
        ),
        (
            "clickhouse_rows_abandoned_total",
            "counter",
            "Rows given up: refused, failed on repeatedly, or left at shutdown while the server was away.",
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

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use arrow_array::{ArrayRef, TimestampNanosecondArray, UInt64Array};

    use super::*;
    use crate::{Bus, Overflow};

    /// A stand-in for a ClickHouse server (fault injection): it answers
    /// the statements the backend sends, and each INSERT with the next of
    /// `inserts` (status, body), counting them.
    fn fake_server(inserts: Vec<(u16, &'static str)>) -> (String, Arc<Mutex<usize>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(0));
        let counted = seen.clone();
        std::thread::spawn(move || {
            let mut inserts = inserts.into_iter();
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut request = Vec::new();
                let mut buf = [0; 4096];
                // the head, then as much body as it announces
                loop {
                    let n = stream.read(&mut buf).unwrap();
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text[..end]
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&request).to_string();
                let (status, body) = if text.contains("query=INSERT") {
                    *counted.lock().unwrap() += 1;
                    inserts.next().unwrap_or((200, ""))
                } else if text.contains("SELECT version()") {
                    (200, "18.16.1\n")
                } else if text.contains("EXISTS TABLE") {
                    (200, "1\n")
                } else if text.contains("DESCRIBE TABLE") {
                    (
                        200,
                        "time_received_ns\tInt64\t\t\t\nrows\tNullable(UInt64)\t\t\t\n",
                    )
                } else {
                    (200, "")
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (format!("clickhouse://{address}/t"), seen)
    }

    fn batch(rows: usize) -> Arc<Batch> {
        let time: ArrayRef = Arc::new(
            TimestampNanosecondArray::from((0..rows as i64).collect::<Vec<_>>())
                .with_timezone("UTC"),
        );
        let counts: ArrayRef = Arc::new(UInt64Array::from(vec![7; rows]));
        let rows =
            arrow_array::RecordBatch::try_from_iter([("time_received_ns", time), ("rows", counts)])
                .unwrap();
        Arc::new(Batch {
            tables: vec![(hopscope_store::Table::Health, vec![rows])],
            ..Batch::default()
        })
    }

    fn run(url: &str, batches: Vec<Arc<Batch>>) -> MirrorSnapshot {
        let bus = Bus::default();
        let subscriber = bus.subscribe("mirror", 8, Overflow::Drop, |_| true);
        for b in batches {
            bus.publish(b);
        }
        bus.end("mirror");
        let target = Target::parse(url).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (thread, snapshot) =
            spawn_backing_off(target, subscriber, stop, Duration::from_millis(10)).unwrap();
        thread.join().unwrap();
        snapshot.lock().unwrap().clone()
    }

    #[test]
    fn a_failing_server_is_tried_again_and_a_refusal_is_given_up() {
        // a failure of the server's own, then the rows taken; then rows
        // refused for what they are: given up at once, not tried again
        let (url, inserts) = fake_server(vec![
            (
                503,
                "Code: 241, e.displayText() = DB::Exception: Memory limit exceeded",
            ),
            (200, ""),
            (
                500,
                "Code: 62, e.displayText() = DB::Exception: Syntax error",
            ),
        ]);
        let s = run(&url, vec![batch(3), batch(5)]);
        assert_eq!(
            (s.rows, s.writes, s.failures, s.rows_abandoned),
            (3, 1, 2, 5),
            "{s:?}"
        );
        assert_eq!(*inserts.lock().unwrap(), 3);
        assert_eq!(s.version.as_deref(), Some("18.16.1"));
        assert!(s.last_error.unwrap().contains("Syntax error"));
    }

    #[test]
    fn a_server_failing_on_every_try_is_given_up_after_a_few() {
        let failing = vec![(500, "Code: 1001, e.displayText() = std::exception"); 10];
        let (url, inserts) = fake_server(failing);
        let s = run(&url, vec![batch(2)]);
        assert_eq!(
            (s.rows, s.failures, s.rows_abandoned),
            (0, MOST_SERVER_FAILURES as u64, 2)
        );
        assert_eq!(*inserts.lock().unwrap(), MOST_SERVER_FAILURES as usize);
    }
}
