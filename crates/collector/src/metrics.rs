//! The collector's account of itself: per-exporter counters published by
//! every receiver, drops at each stage (allow-list, socket, hand-off),
//! the store's progress, all read by `/metrics` and `hopscope status`.
//!
//! Receivers own their decoders and publish copies of their counters at
//! each hand-off, so the hot path never takes a shared lock per message.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use hopscope_wire::{ErrorKind, ExporterStats, Transport};
use serde::Serialize;

/// Counters of one observation domain of a session.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct DomainReport {
    pub domain: u32,
    pub lost_records: u64,
    pub lost_messages: u64,
    /// Packets the domain's exporter reported it could not observe (capture drops).
    #[serde(default)]
    pub exporter_drops: u64,
    pub templates: u64,
}

/// What a receiver knows about one exporter session.
#[derive(Debug, Clone)]
pub struct SessionReport {
    pub exporter: SocketAddr,
    pub transport: Transport,
    pub stats: ExporterStats,
    pub domains: Vec<DomainReport>,
    pub last_seen_ns: i64,
}

/// One counter of another part of the pipeline (the correlator), as it
/// last published it: the collector shows it in `/metrics` and `status`
/// without knowing what it counts, so a new counter is named in one place,
/// where it is published.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Published {
    /// Its key under `journeys` in `status`.
    pub key: &'static str,
    /// Its metric name, without the `hopscope_` prefix.
    pub metric: &'static str,
    pub help: &'static str,
    /// A level that rises and falls rather than a count.
    pub gauge: bool,
    pub value: u64,
}

/// What the correlator did with the committed packet reports and flow
/// records.
#[derive(Debug, Default)]
pub struct JourneyCounters {
    published: Mutex<Vec<Published>>,
    /// Journey batches the store refused (counted by their writer, not by
    /// the correlator).
    pub write_errors: AtomicU64,
}

impl JourneyCounters {
    /// Replaces the correlator's counters with their latest values.
    pub fn publish(&self, counters: Vec<Published>) {
        *self.published.lock().expect("no panics hold it") = counters;
    }

    fn published(&self) -> Vec<Published> {
        self.published.lock().expect("no panics hold it").clone()
    }
}

/// [`JourneyCounters`] as read at one moment, by key.
pub type JourneyStatus = BTreeMap<String, u64>;

/// The store side of the pipeline.
#[derive(Debug, Default)]
pub struct StoreCounters {
    pub rows_written: AtomicU64,
    pub segments_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_errors: AtomicU64,
    /// Rows lost because a flush failed (disk full, permissions).
    pub rows_dropped: AtomicU64,
    /// Committed flushes the correlator was too busy to take (its journeys
    /// for those reports are missing; the reports are stored).
    pub follow_dropped: AtomicU64,
    pub last_flush_ns: AtomicI64,
    /// Receive time of the oldest row not yet committed; 0 when none.
    pub oldest_pending_ns: AtomicI64,
    pub rows_pending: AtomicU64,
    pub maintenance_runs: AtomicU64,
    pub maintenance_errors: AtomicU64,
    pub segments_compacted: AtomicU64,
    pub rollups_written: AtomicU64,
    pub segments_deleted: AtomicU64,
}

/// Most distinct denied sources remembered by address.
const DENIED_SOURCES: usize = 1024;
/// Decode errors kept for `status`.
const RECENT_ERRORS: usize = 64;

/// The registry shared by receivers, the store writer, and the readers.
#[derive(Debug, Default)]
pub struct Metrics {
    sessions: Mutex<HashMap<(u64, SocketAddr, Transport), SessionReport>>,
    denied: Mutex<HashMap<IpAddr, u64>>,
    pub denied_datagrams: AtomicU64,
    pub denied_connections: AtomicU64,
    /// Datagrams too short to hold any header, or unreadable streams.
    pub receive_errors: AtomicU64,
    pub datagrams: AtomicU64,
    pub tcp_connections: AtomicU64,
    pub replayed_files: AtomicU64,
    pub store: StoreCounters,
    /// The correlator following the store (`hopscope serve`).
    pub journeys: JourneyCounters,
    recent_errors: Mutex<VecDeque<String>>,
    /// UDP ports listened on, for the kernel's drop counters.
    udp_ports: Mutex<Vec<u16>>,
    /// Names given to exporters by address (configuration).
    exporter_names: Mutex<HashMap<IpAddr, String>>,
    pub started_ns: AtomicI64,
}

impl Metrics {
    pub fn new(started_ns: i64) -> Self {
        let m = Metrics::default();
        m.started_ns.store(started_ns, Ordering::Relaxed);
        m
    }

    /// Replaces what receiver `receiver` reported about its sessions.
    pub fn publish(&self, receiver: u64, reports: Vec<SessionReport>, errors: Vec<String>) {
        let mut sessions = self.sessions.lock().expect("metrics lock");
        for r in reports {
            sessions.insert((receiver, r.exporter, r.transport), r);
        }
        drop(sessions);
        if !errors.is_empty() {
            let mut recent = self.recent_errors.lock().expect("metrics lock");
            for e in errors {
                if recent.len() == RECENT_ERRORS {
                    recent.pop_front();
                }
                recent.push_back(e);
            }
        }
    }

    pub fn deny(&self, source: IpAddr) {
        self.denied_datagrams.fetch_add(1, Ordering::Relaxed);
        let mut denied = self.denied.lock().expect("metrics lock");
        if denied.len() < DENIED_SOURCES || denied.contains_key(&source) {
            *denied.entry(source).or_default() += 1;
        }
    }

    pub fn name_exporters(&self, names: &[(IpAddr, String)]) {
        self.exporter_names
            .lock()
            .expect("metrics lock")
            .extend(names.iter().cloned());
    }

    pub fn listen_udp_port(&self, port: u16) {
        self.udp_ports.lock().expect("metrics lock").push(port);
    }

    /// Everything, as `hopscope status` shows it.
    pub fn status(&self, now_ns: i64) -> Status {
        // one snapshot serves both the status keys and the metric lines
        let journey_counters = self.journeys.published();
        let sessions = self.sessions.lock().expect("metrics lock");
        let names = self.exporter_names.lock().expect("metrics lock");
        let mut exporters: BTreeMap<String, ExporterStatus> = BTreeMap::new();
        for r in sessions.values() {
            let key = format!("{} {}", transport_name(r.transport), r.exporter);
            let e = exporters.entry(key).or_insert_with(|| ExporterStatus {
                exporter: r.exporter.to_string(),
                name: names.get(&r.exporter.ip()).cloned(),
                transport: transport_name(r.transport).to_string(),
                ..ExporterStatus::default()
            });
            e.add(r);
        }
        drop(sessions);
        let ports = self.udp_ports.lock().expect("metrics lock").clone();
        let socket = socket_counters(&ports);
        let s = &self.store;
        let oldest = s.oldest_pending_ns.load(Ordering::Relaxed);
        Status {
            uptime_seconds: (now_ns - self.started_ns.load(Ordering::Relaxed)) as f64 / 1e9,
            datagrams: self.datagrams.load(Ordering::Relaxed),
            tcp_connections: self.tcp_connections.load(Ordering::Relaxed),
            replayed_files: self.replayed_files.load(Ordering::Relaxed),
            denied_datagrams: self.denied_datagrams.load(Ordering::Relaxed),
            denied_connections: self.denied_connections.load(Ordering::Relaxed),
            denied_sources: self
                .denied
                .lock()
                .expect("metrics lock")
                .iter()
                .map(|(ip, n)| (ip.to_string(), *n))
                .collect(),
            receive_errors: self.receive_errors.load(Ordering::Relaxed),
            socket_drops: socket.drops,
            socket_queued_bytes: socket.queued,
            store: StoreStatus {
                rows_written: s.rows_written.load(Ordering::Relaxed),
                segments_written: s.segments_written.load(Ordering::Relaxed),
                bytes_written: s.bytes_written.load(Ordering::Relaxed),
                flushes: s.flushes.load(Ordering::Relaxed),
                flush_errors: s.flush_errors.load(Ordering::Relaxed),
                rows_dropped: s.rows_dropped.load(Ordering::Relaxed),
                follow_dropped: s.follow_dropped.load(Ordering::Relaxed),
                rows_pending: s.rows_pending.load(Ordering::Relaxed),
                lag_seconds: if oldest == 0 {
                    0.0
                } else {
                    ((now_ns - oldest).max(0)) as f64 / 1e9
                },
                last_flush_ns: s.last_flush_ns.load(Ordering::Relaxed),
                maintenance_runs: s.maintenance_runs.load(Ordering::Relaxed),
                maintenance_errors: s.maintenance_errors.load(Ordering::Relaxed),
                segments_compacted: s.segments_compacted.load(Ordering::Relaxed),
                rollups_written: s.rollups_written.load(Ordering::Relaxed),
                segments_deleted: s.segments_deleted.load(Ordering::Relaxed),
            },
            exporters: exporters.into_values().collect(),
            journeys: {
                let mut status: JourneyStatus = journey_counters
                    .iter()
                    .map(|c| (c.key.to_string(), c.value))
                    .collect();
                let write_errors = self.journeys.write_errors.load(Ordering::Relaxed);
                status.insert("write_errors".into(), write_errors);
                status
            },
            journey_counters,
            recent_errors: self
                .recent_errors
                .lock()
                .expect("metrics lock")
                .iter()
                .cloned()
                .collect(),
        }
    }
}

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Sctp => "sctp",
        Transport::File => "file",
    }
}

/// The collector's health, serialisable for the API and the CLI.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Status {
    pub uptime_seconds: f64,
    pub datagrams: u64,
    pub tcp_connections: u64,
    pub replayed_files: u64,
    pub denied_datagrams: u64,
    pub denied_connections: u64,
    pub denied_sources: BTreeMap<String, u64>,
    pub receive_errors: u64,
    /// Datagrams the kernel dropped on our sockets (receive buffer full).
    pub socket_drops: u64,
    pub socket_queued_bytes: u64,
    pub store: StoreStatus,
    /// The correlator's counters by key, and its journey write errors.
    #[serde(default)]
    pub journeys: JourneyStatus,
    /// The same counters with their metric names, for `/metrics` (rendered
    /// where the status is taken, never read back from JSON).
    #[serde(skip)]
    pub journey_counters: Vec<Published>,
    pub exporters: Vec<ExporterStatus>,
    pub recent_errors: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct StoreStatus {
    pub rows_written: u64,
    pub segments_written: u64,
    pub bytes_written: u64,
    pub flushes: u64,
    pub flush_errors: u64,
    pub rows_dropped: u64,
    #[serde(default)]
    pub follow_dropped: u64,
    pub rows_pending: u64,
    /// Age of the oldest received row not yet committed.
    pub lag_seconds: f64,
    pub last_flush_ns: i64,
    pub maintenance_runs: u64,
    pub maintenance_errors: u64,
    pub segments_compacted: u64,
    pub rollups_written: u64,
    pub segments_deleted: u64,
}

/// One exporter session (address, port, transport).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct ExporterStatus {
    pub exporter: String,
    /// The name configuration gives its address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub transport: String,
    pub messages: u64,
    pub bytes: u64,
    pub flow_records: u64,
    pub packet_reports: u64,
    pub options_records: u64,
    pub templates_active: u64,
    pub pending_sets: u64,
    pub lost_records: u64,
    pub lost_messages: u64,
    pub exporter_drops: u64,
    pub sampling_unknown: u64,
    pub decode_errors: BTreeMap<String, u64>,
    pub domains: Vec<DomainReport>,
    pub last_seen_ns: i64,
}

impl ExporterStatus {
    fn add(&mut self, r: &SessionReport) {
        let s = &r.stats;
        self.messages += s.messages;
        self.bytes += s.bytes;
        self.flow_records += s.flow_records;
        self.packet_reports += s.packet_reports;
        self.options_records += s.options_records;
        self.templates_active += s.templates_active;
        self.pending_sets += s.pending_sets;
        self.lost_records = self.lost_records.saturating_add(s.lost_records);
        self.lost_messages += s.lost_messages;
        self.exporter_drops = self.exporter_drops.saturating_add(s.exporter_drops);
        self.sampling_unknown += s.sampling_unknown;
        for kind in ErrorKind::ALL {
            let n = s.error_count(*kind);
            if n > 0 {
                *self
                    .decode_errors
                    .entry(kind.label().to_string())
                    .or_default() += n;
            }
        }
        self.domains.extend(r.domains.iter().cloned());
        self.last_seen_ns = self.last_seen_ns.max(r.last_seen_ns);
    }
}

struct SocketCounters {
    drops: u64,
    queued: u64,
}

/// Drops and queued bytes of our UDP sockets from `/proc/net/udp{,6}`.
fn socket_counters(ports: &[u16]) -> SocketCounters {
    let mut c = SocketCounters {
        drops: 0,
        queued: 0,
    };
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let Some(port) = cols
                .get(1)
                .and_then(|local| local.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok())
            else {
                continue;
            };
            if !ports.contains(&port) {
                continue;
            }
            if let Some(rx) = cols
                .get(4)
                .and_then(|q| q.split(':').nth(1))
                .and_then(|rx| u64::from_str_radix(rx, 16).ok())
            {
                c.queued += rx;
            }
            if let Some(drops) = cols.last().and_then(|d| d.parse::<u64>().ok()) {
                c.drops += drops;
            }
        }
    }
    c
}

impl Status {
    /// The Prometheus text exposition of this status.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
            let _ = writeln!(out, "# HELP hopscope_{name} {help}");
            let _ = writeln!(out, "# TYPE hopscope_{name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "hopscope_{name}{labels} {v}");
            }
        };
        let one = |v: u64| vec![(String::new(), v as f64)];
        metric(
            "uptime_seconds",
            "gauge",
            "Seconds since the collector started.",
            vec![(String::new(), self.uptime_seconds)],
        );
        metric(
            "datagrams_received_total",
            "counter",
            "UDP datagrams received from allowed exporters.",
            one(self.datagrams),
        );
        metric(
            "tcp_connections_total",
            "counter",
            "TCP connections accepted.",
            one(self.tcp_connections),
        );
        metric(
            "denied_datagrams_total",
            "counter",
            "Datagrams from sources outside the allow-list, dropped.",
            one(self.denied_datagrams),
        );
        metric(
            "denied_connections_total",
            "counter",
            "TCP connections from sources outside the allow-list, refused.",
            one(self.denied_connections),
        );
        metric(
            "receive_errors_total",
            "counter",
            "Socket receive errors.",
            one(self.receive_errors),
        );
        metric(
            "socket_drops_total",
            "counter",
            "Datagrams the kernel dropped on the collector's sockets.",
            one(self.socket_drops),
        );
        metric(
            "socket_queued_bytes",
            "gauge",
            "Bytes waiting in the collector's socket buffers.",
            one(self.socket_queued_bytes),
        );
        let s = &self.store;
        metric(
            "store_rows_written_total",
            "counter",
            "Flow rows committed to the store.",
            one(s.rows_written),
        );
        metric(
            "store_segments_written_total",
            "counter",
            "Segments committed.",
            one(s.segments_written),
        );
        metric(
            "store_bytes_written_total",
            "counter",
            "Bytes of segments committed.",
            one(s.bytes_written),
        );
        metric(
            "store_flush_errors_total",
            "counter",
            "Flushes that failed.",
            one(s.flush_errors),
        );
        for c in &self.journey_counters {
            let kind = if c.gauge { "gauge" } else { "counter" };
            metric(c.metric, kind, c.help, one(c.value));
        }
        metric(
            "correlator_write_errors_total",
            "counter",
            "Journey batches the store refused.",
            one(self.journeys.get("write_errors").copied().unwrap_or(0)),
        );
        metric(
            "correlator_flushes_skipped_total",
            "counter",
            "Committed flushes the correlator could not take (busy).",
            one(s.follow_dropped),
        );
        metric(
            "store_rows_dropped_total",
            "counter",
            "Rows lost because a flush failed.",
            one(s.rows_dropped),
        );
        metric(
            "store_rows_pending",
            "gauge",
            "Rows received and not yet committed.",
            one(s.rows_pending),
        );
        metric(
            "store_lag_seconds",
            "gauge",
            "Age of the oldest row not yet committed.",
            vec![(String::new(), s.lag_seconds)],
        );
        metric(
            "store_segments_compacted_total",
            "counter",
            "Segments merged by compaction.",
            one(s.segments_compacted),
        );
        metric(
            "store_rollups_written_total",
            "counter",
            "Rollup segments written.",
            one(s.rollups_written),
        );
        metric(
            "store_segments_deleted_total",
            "counter",
            "Segments deleted by retention.",
            one(s.segments_deleted),
        );
        metric(
            "store_maintenance_errors_total",
            "counter",
            "Maintenance passes that failed.",
            one(s.maintenance_errors),
        );

        let per = |f: &dyn Fn(&ExporterStatus) -> u64| -> Vec<(String, f64)> {
            self.exporters
                .iter()
                .map(|e| {
                    (
                        format!(
                            "{{exporter=\"{}\",transport=\"{}\"}}",
                            e.exporter, e.transport
                        ),
                        f(e) as f64,
                    )
                })
                .collect()
        };
        metric(
            "exporter_messages_total",
            "counter",
            "Export messages received.",
            per(&|e| e.messages),
        );
        metric(
            "exporter_bytes_total",
            "counter",
            "Bytes of export messages received.",
            per(&|e| e.bytes),
        );
        metric(
            "exporter_flow_records_total",
            "counter",
            "Flow records decoded.",
            per(&|e| e.flow_records),
        );
        metric(
            "exporter_packet_reports_total",
            "counter",
            "PSAMP packet reports decoded.",
            per(&|e| e.packet_reports),
        );
        metric(
            "exporter_templates",
            "gauge",
            "Templates held.",
            per(&|e| e.templates_active),
        );
        metric(
            "exporter_pending_sets",
            "gauge",
            "Data sets waiting for their template.",
            per(&|e| e.pending_sets),
        );
        metric(
            "exporter_lost_records_total",
            "counter",
            "Records the exporter sent that never arrived (sequence gaps).",
            per(&|e| e.lost_records),
        );
        metric(
            "exporter_lost_messages_total",
            "counter",
            "Messages the exporter sent that never arrived (NetFlow v9, sFlow).",
            per(&|e| e.lost_messages),
        );
        metric(
            "exporter_drops_total",
            "counter",
            "Packets the exporter reported dropping itself.",
            per(&|e| e.exporter_drops),
        );
        let errors: Vec<(String, f64)> = self
            .exporters
            .iter()
            .flat_map(|e| {
                e.decode_errors.iter().map(move |(reason, n)| {
                    (
                        format!(
                            "{{exporter=\"{}\",transport=\"{}\",reason=\"{reason}\"}}",
                            e.exporter, e.transport
                        ),
                        *n as f64,
                    )
                })
            })
            .collect();
        metric(
            "exporter_decode_errors_total",
            "counter",
            "Messages, sets or records that could not be decoded, by reason.",
            errors,
        );
        let domains: Vec<(String, f64)> = self
            .exporters
            .iter()
            .flat_map(|e| {
                e.domains.iter().map(move |d| {
                    (
                        format!(
                            "{{exporter=\"{}\",transport=\"{}\",domain=\"{}\"}}",
                            e.exporter, e.transport, d.domain
                        ),
                        d.lost_records as f64,
                    )
                })
            })
            .collect();
        metric(
            "domain_lost_records_total",
            "counter",
            "Records lost per observation domain (sequence gaps).",
            domains,
        );
        out
    }
}
