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

/// What the correlator did with the committed packet reports.
#[derive(Debug, Default)]
pub struct JourneyCounters {
    pub reports: AtomicU64,
    /// Reports joined with another point's report of the same packet.
    pub matched: AtomicU64,
    /// Reports for windows already closed: counted, not used.
    pub late: AtomicU64,
    /// Reports without point, time or digest.
    pub incomplete: AtomicU64,
    /// Reports of link-scoped packets (they never cross a router).
    pub link_scoped: AtomicU64,
    /// Flow records read for whole-flow totals.
    pub flow_records: AtomicU64,
    /// Flow records that cannot count (sampled, no time or packets).
    pub flow_records_unusable: AtomicU64,
    /// Flows seen at several points whose records are not all in (some
    /// point never exported the end, or let its first records go).
    pub flows_unfinished: AtomicU64,
    /// Flow records not held: their point shares no flow seen with another.
    pub flow_records_unshared: AtomicU64,
    /// Flow records compared before their settle time (the buffer was full).
    pub flow_records_settled_early: AtomicU64,
    pub windows: AtomicU64,
    pub journeys: AtomicU64,
    /// Reports waiting for their window to close.
    pub pending: AtomicU64,
    pub write_errors: AtomicU64,
}

/// [`JourneyCounters`] as read at one moment.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct JourneyStatus {
    pub reports: u64,
    pub matched: u64,
    pub late: u64,
    pub incomplete: u64,
    #[serde(default)]
    pub link_scoped: u64,
    #[serde(default)]
    pub flow_records: u64,
    #[serde(default)]
    pub flow_records_unusable: u64,
    #[serde(default)]
    pub flows_unfinished: u64,
    #[serde(default)]
    pub flow_records_settled_early: u64,
    #[serde(default)]
    pub flow_records_unshared: u64,
    pub windows: u64,
    pub journeys: u64,
    pub pending: u64,
    pub write_errors: u64,
}

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
                let j = &self.journeys;
                let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
                JourneyStatus {
                    reports: l(&j.reports),
                    matched: l(&j.matched),
                    late: l(&j.late),
                    incomplete: l(&j.incomplete),
                    link_scoped: l(&j.link_scoped),
                    flow_records: l(&j.flow_records),
                    flow_records_unusable: l(&j.flow_records_unusable),
                    flows_unfinished: l(&j.flows_unfinished),
                    flow_records_settled_early: l(&j.flow_records_settled_early),
                    flow_records_unshared: l(&j.flow_records_unshared),
                    windows: l(&j.windows),
                    journeys: l(&j.journeys),
                    pending: l(&j.pending),
                    write_errors: l(&j.write_errors),
                }
            },
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
    #[serde(default)]
    pub journeys: JourneyStatus,
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
        let j = &self.journeys;
        for (name, help, value) in [
            (
                "correlator_reports_total",
                "Packet reports given to the correlator.",
                &j.reports,
            ),
            (
                "correlator_reports_matched_total",
                "Reports joined with another point's report of the same packet.",
                &j.matched,
            ),
            (
                "correlator_reports_late_total",
                "Reports for windows already closed (not used).",
                &j.late,
            ),
            (
                "correlator_reports_incomplete_total",
                "Reports without point, time or digest (not used).",
                &j.incomplete,
            ),
            (
                "correlator_reports_link_scoped_total",
                "Reports of link-local or link-scoped multicast packets, which never cross a router (not used).",
                &j.link_scoped,
            ),
            (
                "correlator_flow_records_total",
                "Flow records read for whole-flow totals.",
                &j.flow_records,
            ),
            (
                "correlator_flow_records_unusable_total",
                "Flow records that cannot count for totals: sampled, or without time or packets.",
                &j.flow_records_unusable,
            ),
            (
                "correlator_flows_unfinished_total",
                "Flows seen at several points dropped because some point's records of them are not all in.",
                &j.flows_unfinished,
            ),
            (
                "correlator_flow_records_unshared_total",
                "Flow records not held for totals: their point shares no flow seen with another point.",
                &j.flow_records_unshared,
            ),
            (
                "correlator_flow_records_settled_early_total",
                "Flow records compared before their settle time because the correlator's buffer was full.",
                &j.flow_records_settled_early,
            ),
            ("correlator_windows_total", "Windows closed.", &j.windows),
            (
                "correlator_journeys_total",
                "Journeys written.",
                &j.journeys,
            ),
            (
                "correlator_write_errors_total",
                "Journey batches the store refused.",
                &j.write_errors,
            ),
        ] {
            metric(name, "counter", help, one(*value));
        }
        metric(
            "correlator_reports_pending",
            "gauge",
            "Reports waiting for their window to close.",
            one(j.pending),
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
