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
    /// Records skipped for their format, by format (`sflow flow 0:1004`).
    pub skipped_formats: Vec<(String, u64)>,
    /// Names of the observation points the session announced.
    pub points: Vec<String>,
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
/// Most exporter sessions listed in `status` (the most recently heard);
/// the rest are counted in `exporters_not_listed`.
const LISTED_SESSIONS: usize = 1000;
/// Most exporter addresses with series of their own in `/metrics` (those
/// that sent the most messages); the rest are summed under
/// `exporter="other"`, so that forged sources cannot grow the exposition.
const METRIC_EXPORTERS: usize = 256;
/// Most per-domain loss series in `/metrics` (the largest losses).
const METRIC_DOMAINS: usize = 1024;

macro_rules! reasons {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $label:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($(#[$vdoc])* $variant,)* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// Its label in `status` and `/metrics`.
            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label,)* }
            }
        }
    };
}

reasons! {
    /// Why a TCP connection was refused as it arrived.
    TcpRefusal {
        /// Its source is outside the allow-list.
        Denied => "denied",
        /// As many connections are open as the collector takes.
        ConnectionLimit => "connection_limit",
        /// As many connections are open from its source address.
        SourceLimit => "source_limit",
        /// As many connections are still in their handshake (no whole
        /// message yet).
        HandshakeLimit => "handshake_limit",
        /// The system refused it (out of descriptors, gone from the queue).
        AcceptFailed => "accept_failed",
    }
}

reasons! {
    /// Why an open TCP connection ended.
    TcpClose {
        /// The exporter closed it.
        Peer => "peer",
        /// No whole message within the handshake timeout.
        HandshakeTimeout => "handshake_timeout",
        /// Silent past the idle timeout.
        IdleTimeout => "idle_timeout",
        /// Data that cannot be an IPFIX message: the stream cannot be
        /// resynchronised.
        Unframeable => "unframeable",
        /// A socket error.
        Error => "error",
    }
}

/// Counters indexed by a reason's place in its `ALL`.
#[derive(Debug)]
struct ByReason<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for ByReason<N> {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl<const N: usize> ByReason<N> {
    fn add(&self, index: usize, n: u64) {
        self.0[index].fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self, index: usize) -> u64 {
        self.0[index].load(Ordering::Relaxed)
    }

    fn read(&self, labels: impl Iterator<Item = &'static str>) -> BTreeMap<String, u64> {
        labels
            .enumerate()
            .map(|(i, label)| (label.to_string(), self.get(i)))
            .collect()
    }
}

/// Why UDP sessions were let go, in the order of their counters.
const EVICTIONS: [&str; 3] = ["idle", "address_limit", "table_full"];
/// Decode errors kept for `status`.
const RECENT_ERRORS: usize = 64;

/// The registry shared by receivers, the store writer, and the readers.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Every receiver's sessions as it last reported them.
    sessions: Mutex<HashMap<u64, Vec<SessionReport>>>,
    denied: Mutex<HashMap<IpAddr, u64>>,
    pub denied_datagrams: AtomicU64,
    tcp_refused: ByReason<{ TcpRefusal::ALL.len() }>,
    tcp_closed: ByReason<{ TcpClose::ALL.len() }>,
    tcp_open: AtomicU64,
    session_evictions: ByReason<{ EVICTIONS.len() }>,
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

    /// Replaces what receiver `receiver` reported about its sessions: a
    /// session it no longer has (expired, evicted, its connection long
    /// closed) leaves `status` and `/metrics`.
    pub fn publish(&self, receiver: u64, reports: Vec<SessionReport>, errors: Vec<String>) {
        let mut sessions = self.sessions.lock().expect("metrics lock");
        if reports.is_empty() {
            sessions.remove(&receiver);
        } else {
            sessions.insert(receiver, reports);
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

    /// Counts a datagram from a source outside the allow-list.
    pub fn deny(&self, source: IpAddr) {
        self.denied_datagrams.fetch_add(1, Ordering::Relaxed);
        self.note_denied_source(source);
    }

    fn note_denied_source(&self, source: IpAddr) {
        let mut denied = self.denied.lock().expect("metrics lock");
        if denied.len() < DENIED_SOURCES || denied.contains_key(&source) {
            *denied.entry(source).or_default() += 1;
        }
    }

    /// Counts a TCP connection refused as it arrived, once.
    pub fn refuse_tcp(&self, why: TcpRefusal, source: Option<IpAddr>) {
        self.tcp_refused.add(why as usize, 1);
        if let (TcpRefusal::Denied, Some(ip)) = (why, source) {
            self.note_denied_source(crate::enrich::canonical(ip));
        }
    }

    /// Counts an open TCP connection ended.
    pub fn close_tcp(&self, why: TcpClose) {
        self.tcp_closed.add(why as usize, 1);
    }

    /// Counts a TCP connection opened (`1`) or closed (`-1`), over every
    /// listener.
    pub fn tcp_opened(&self, change: i64) {
        if change >= 0 {
            self.tcp_open.fetch_add(change as u64, Ordering::Relaxed);
        } else {
            self.tcp_open
                .fetch_sub(change.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// Adds UDP sessions a receiver let go since it last said.
    pub fn count_evictions(&self, idle: u64, address_limit: u64, table_full: u64) {
        for (i, n) in [idle, address_limit, table_full].into_iter().enumerate() {
            self.session_evictions.add(i, n);
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
        let mut udp_sessions = 0;
        for r in sessions.values().flatten() {
            udp_sessions += u64::from(r.transport == Transport::Udp);
            let key = format!("{} {}", transport_name(r.transport), r.exporter);
            let session = ExporterStatus::of_session(r, names.get(&r.exporter.ip()).cloned());
            match exporters.entry(key) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(session);
                }
                std::collections::btree_map::Entry::Occupied(mut o) => {
                    o.get_mut().merge(&session, true);
                }
            }
        }
        drop(sessions);
        let mut exporters: Vec<ExporterStatus> = exporters.into_values().collect();
        // the metrics count every session, listed or not
        let exporters_by_address = by_address(&exporters);
        let exporters_not_listed = exporters.len().saturating_sub(LISTED_SESSIONS) as u64;
        if exporters_not_listed > 0 {
            exporters.sort_by_key(|e| std::cmp::Reverse(e.last_seen_ns));
            exporters.truncate(LISTED_SESSIONS);
            exporters.sort_by(|a, b| (&a.transport, &a.exporter).cmp(&(&b.transport, &b.exporter)));
        }
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
            denied_connections: self.tcp_refused.get(TcpRefusal::Denied as usize),
            tcp: TcpStatus {
                open: self.tcp_open.load(Ordering::Relaxed),
                refused: self
                    .tcp_refused
                    .read(TcpRefusal::ALL.iter().map(|r| r.label())),
                closed: self
                    .tcp_closed
                    .read(TcpClose::ALL.iter().map(|r| r.label())),
            },
            udp_sessions,
            sessions_evicted: self.session_evictions.read(EVICTIONS.into_iter()),
            exporters_not_listed,
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
            exporters,
            exporters_by_address,
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
    /// TCP connections refused by the allow-list (also in `tcp.refused`).
    pub denied_connections: u64,
    pub denied_sources: BTreeMap<String, u64>,
    #[serde(default)]
    pub tcp: TcpStatus,
    /// UDP exporter sessions held now.
    #[serde(default)]
    pub udp_sessions: u64,
    /// UDP sessions let go, by why (idle, address_limit, table_full).
    #[serde(default)]
    pub sessions_evicted: BTreeMap<String, u64>,
    /// Sessions held but not listed in `exporters` (the longest silent).
    #[serde(default)]
    pub exporters_not_listed: u64,
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
    /// Every session (listed or not) summed per exporter address, for
    /// `/metrics` (taken with the status, never read back from JSON).
    #[serde(skip)]
    pub exporters_by_address: Vec<ExporterStatus>,
    pub recent_errors: Vec<String>,
}

/// The TCP intake: connections open, refused as they came, and ended.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct TcpStatus {
    pub open: u64,
    /// Refused by reason (denied, connection_limit, source_limit,
    /// handshake_limit, accept_failed).
    pub refused: BTreeMap<String, u64>,
    /// Ended by reason (peer, handshake_timeout, idle_timeout, unframeable,
    /// error).
    pub closed: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct StoreStatus {
    pub rows_written: u64,
    pub segments_written: u64,
    pub bytes_written: u64,
    pub flushes: u64,
    pub flush_errors: u64,
    pub rows_dropped: u64,
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

/// A Prometheus label value: backslash, quote and newline escaped.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One exporter session (address, port, transport).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct ExporterStatus {
    /// Address and port.
    pub exporter: String,
    /// Address alone: what `/metrics` labels its series by.
    #[serde(default)]
    pub address: String,
    /// The name configuration gives its address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The observation points it announced by name (hopscope probe's
    /// `--observation-point`): what tells apart the probes of one host,
    /// which share its address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub points: Vec<String>,
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
    /// Records of formats hopscope does not read, skipped and counted by
    /// format (sFlow enterprise samples, flow and counter records).
    #[serde(default)]
    pub skipped_records: BTreeMap<String, u64>,
    pub domains: Vec<DomainReport>,
    pub last_seen_ns: i64,
}

impl ExporterStatus {
    /// Its labels in `/metrics`: the address, the transport, and the
    /// observation points when it announced any.
    fn labels(&self) -> String {
        let mut labels = format!(
            "exporter=\"{}\",transport=\"{}\"",
            self.address, self.transport
        );
        if !self.points.is_empty() {
            // the exporter names its points: escaped, and a few of them, short
            let points: Vec<String> = self
                .points
                .iter()
                .take(4)
                .map(|p| label_value(&p.chars().take(64).collect::<String>()))
                .collect();
            labels.push_str(&format!(",point=\"{}\"", points.join(",")));
        }
        labels
    }

    /// Adds another session's counts to these, and with `domains` its
    /// domains summed into those of the same number.
    fn merge(&mut self, o: &ExporterStatus, domains: bool) {
        self.messages += o.messages;
        self.bytes += o.bytes;
        self.flow_records += o.flow_records;
        self.packet_reports += o.packet_reports;
        self.options_records += o.options_records;
        self.templates_active += o.templates_active;
        self.pending_sets += o.pending_sets;
        self.lost_records = self.lost_records.saturating_add(o.lost_records);
        self.lost_messages += o.lost_messages;
        self.exporter_drops = self.exporter_drops.saturating_add(o.exporter_drops);
        self.sampling_unknown += o.sampling_unknown;
        for (reason, n) in &o.decode_errors {
            *self.decode_errors.entry(reason.clone()).or_default() += n;
        }
        for (format, n) in &o.skipped_records {
            *self.skipped_records.entry(format.clone()).or_default() += n;
        }
        if domains && self.domains.is_empty() {
            self.domains = o.domains.clone();
        } else if domains {
            self.merge_domains(&o.domains);
        }
        self.last_seen_ns = self.last_seen_ns.max(o.last_seen_ns);
    }

    fn merge_domains(&mut self, others: &[DomainReport]) {
        for d in others {
            match self.domains.iter_mut().find(|x| x.domain == d.domain) {
                Some(x) => {
                    x.lost_records += d.lost_records;
                    x.lost_messages += d.lost_messages;
                    x.exporter_drops += d.exporter_drops;
                    x.templates += d.templates;
                }
                None => self.domains.push(d.clone()),
            }
        }
    }

    /// The counts of one session as a receiver reported them.
    fn of_session(r: &SessionReport, name: Option<String>) -> Self {
        let s = &r.stats;
        ExporterStatus {
            exporter: r.exporter.to_string(),
            address: r.exporter.ip().to_string(),
            name,
            points: r.points.clone(),
            transport: transport_name(r.transport).to_string(),
            messages: s.messages,
            bytes: s.bytes,
            flow_records: s.flow_records,
            packet_reports: s.packet_reports,
            options_records: s.options_records,
            templates_active: s.templates_active,
            pending_sets: s.pending_sets,
            lost_records: s.lost_records,
            lost_messages: s.lost_messages,
            exporter_drops: s.exporter_drops,
            sampling_unknown: s.sampling_unknown,
            decode_errors: ErrorKind::ALL
                .iter()
                .map(|&kind| (kind.label().to_string(), s.error_count(kind)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            skipped_records: r.skipped_formats.iter().cloned().collect(),
            domains: r.domains.clone(),
            last_seen_ns: r.last_seen_ns,
        }
    }
}

/// The sessions of `sessions` summed per exporter address and transport
/// (an exporter's source ports are one exporter), the [`METRIC_EXPORTERS`]
/// that sent the most messages each on its own and the rest as `other`.
/// Domains of one address are summed by domain number.
fn by_address(sessions: &[ExporterStatus]) -> Vec<ExporterStatus> {
    // the probes of one host share its address: their points tell them apart
    let mut merged: BTreeMap<(&str, &str, &[String]), ExporterStatus> = BTreeMap::new();
    for s in sessions {
        let address = if s.address.is_empty() {
            &s.exporter
        } else {
            &s.address
        };
        merged
            .entry((address, &s.transport, &s.points))
            .or_insert_with(|| ExporterStatus {
                address: address.clone(),
                transport: s.transport.clone(),
                points: s.points.clone(),
                ..ExporterStatus::default()
            })
            .merge(s, true);
    }
    let mut merged: Vec<ExporterStatus> = merged.into_values().collect();
    if merged.len() > METRIC_EXPORTERS {
        merged.sort_by_key(|e| std::cmp::Reverse(e.messages));
        let mut other = ExporterStatus {
            address: "other".into(),
            transport: "any".into(),
            ..ExporterStatus::default()
        };
        for rest in merged.drain(METRIC_EXPORTERS..) {
            // the others' domains would be series without a name to tell
            other.merge(&rest, false);
        }
        merged.push(other);
    }
    merged
}

/// One series per observation domain whose `value` is not 0, labelled by
/// exporter address and domain: the [`METRIC_DOMAINS`] largest.
fn domain_series(
    exporters: &[ExporterStatus],
    value: fn(&DomainReport) -> u64,
) -> Vec<(String, f64)> {
    let mut domains: Vec<(u64, String)> = exporters
        .iter()
        .flat_map(|e| {
            e.domains.iter().filter(|d| value(d) > 0).map(move |d| {
                (
                    value(d),
                    format!("{{{},domain=\"{}\"}}", e.labels(), d.domain),
                )
            })
        })
        .collect();
    if domains.len() > METRIC_DOMAINS {
        domains.select_nth_unstable_by_key(METRIC_DOMAINS - 1, |d| std::cmp::Reverse(d.0));
        domains.truncate(METRIC_DOMAINS);
    }
    domains.sort_by(|a, b| a.1.cmp(&b.1));
    domains
        .into_iter()
        .map(|(n, labels)| (labels, n as f64))
        .collect()
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
            "replayed_files_total",
            "counter",
            "Files replayed into the store.",
            one(self.replayed_files),
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
        let labelled = |label: &str, counts: &BTreeMap<String, u64>| -> Vec<(String, f64)> {
            counts
                .iter()
                .map(|(value, n)| (format!("{{{label}=\"{value}\"}}"), *n as f64))
                .collect()
        };
        metric(
            "tcp_connections_open",
            "gauge",
            "TCP connections open now.",
            one(self.tcp.open),
        );
        metric(
            "tcp_connections_refused_total",
            "counter",
            "TCP connections refused as they arrived, by reason.",
            labelled("reason", &self.tcp.refused),
        );
        metric(
            "tcp_connections_closed_total",
            "counter",
            "TCP connections ended, by reason.",
            labelled("reason", &self.tcp.closed),
        );
        metric(
            "udp_sessions",
            "gauge",
            "UDP exporter sessions (address and port) held now.",
            one(self.udp_sessions),
        );
        metric(
            "udp_sessions_evicted_total",
            "counter",
            "UDP exporter sessions let go, by reason.",
            labelled("reason", &self.sessions_evicted),
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
        metric(
            "store_maintenance_runs_total",
            "counter",
            "Maintenance passes (compaction, rollups, retention) run.",
            one(s.maintenance_runs),
        );
        metric(
            "store_flushes_total",
            "counter",
            "Flushes of received rows to segments.",
            one(s.flushes),
        );
        metric(
            "store_last_flush_timestamp_seconds",
            "gauge",
            "When the last flush ended, Unix seconds.",
            vec![(String::new(), s.last_flush_ns as f64 / 1e9)],
        );

        let exporters = if self.exporters_by_address.is_empty() {
            by_address(&self.exporters)
        } else {
            self.exporters_by_address.clone()
        };
        let per = |f: &dyn Fn(&ExporterStatus) -> u64| -> Vec<(String, f64)> {
            exporters
                .iter()
                .map(|e| (format!("{{{}}}", e.labels()), f(e) as f64))
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
            "exporter_options_records_total",
            "counter",
            "Options records decoded (sampling, names, statistics).",
            per(&|e| e.options_records),
        );
        metric(
            "exporter_sampling_unknown_total",
            "counter",
            "Flow records whose sampling rate is unknown (kept, marked).",
            per(&|e| e.sampling_unknown),
        );
        metric(
            "exporter_last_seen_timestamp_seconds",
            "gauge",
            "When the exporter's last message arrived, Unix seconds.",
            exporters
                .iter()
                .map(|e| (format!("{{{}}}", e.labels()), e.last_seen_ns as f64 / 1e9))
                .collect(),
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
        // a series per exporter and key of one of its counts by key
        let by_key = |label: &str, counts: fn(&ExporterStatus) -> &BTreeMap<String, u64>| {
            exporters
                .iter()
                .flat_map(|e| {
                    counts(e).iter().map(move |(key, n)| {
                        (format!("{{{},{label}=\"{key}\"}}", e.labels()), *n as f64)
                    })
                })
                .collect::<Vec<(String, f64)>>()
        };
        metric(
            "exporter_decode_errors_total",
            "counter",
            "Messages, sets or records that could not be decoded, by reason.",
            by_key("reason", |e| &e.decode_errors),
        );
        metric(
            "exporter_skipped_records_total",
            "counter",
            "Records of formats hopscope does not read (sFlow enterprise and other formats), skipped by their length, by format.",
            by_key("format", |e| &e.skipped_records),
        );
        let per_domain = |value: fn(&DomainReport) -> u64| domain_series(&exporters, value);
        metric(
            "domain_lost_records_total",
            "counter",
            "Records lost per observation domain (sequence gaps).",
            per_domain(|d| d.lost_records),
        );
        metric(
            "domain_lost_messages_total",
            "counter",
            "Messages lost per observation domain (NetFlow v9, sFlow gaps).",
            per_domain(|d| d.lost_messages),
        );
        metric(
            "domain_exporter_drops_total",
            "counter",
            "Packets a domain's exporter reported it could not observe.",
            per_domain(|d| d.exporter_drops),
        );
        metric(
            "domain_templates",
            "gauge",
            "Templates held per observation domain.",
            per_domain(|d| d.templates),
        );
        metric(
            "status_exporters_not_listed",
            "gauge",
            "Sessions held but not listed in status (the longest silent).",
            one(self.exporters_not_listed),
        );
        metric(
            "denied_source_datagrams_total",
            "counter",
            "Datagrams dropped by the allow-list, per source (the first 1,024 sources).",
            self.denied_sources
                .iter()
                .map(|(source, n)| (format!("{{source=\"{source}\"}}"), *n as f64))
                .collect(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets every number in a JSON value to a distinct one, and lists the
    /// names of the fields that hold them.
    fn number_leaves(value: &mut serde_json::Value, name: &str, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    number_leaves(v, key, out);
                }
            }
            serde_json::Value::Array(items) => {
                for v in items {
                    number_leaves(v, name, out);
                }
            }
            serde_json::Value::Number(_) => {
                *value = serde_json::json!(out.len() as u64 + 1_000_000);
                out.push(name.to_string());
            }
            _ => {}
        }
    }

    /// Every number `hopscope status` shows is in `/metrics` too: a status
    /// field that no metric publishes fails here, named.
    #[test]
    fn point_names_are_escaped_and_bounded_in_labels() {
        let e = ExporterStatus {
            address: "192.0.2.1".into(),
            transport: "udp".into(),
            points: vec![
                "r1:\"eth0\"\\\n".into(),
                "x".repeat(100),
                "c".into(),
                "d".into(),
                "e".into(),
            ],
            ..ExporterStatus::default()
        };
        let labels = e.labels();
        assert!(
            labels.starts_with(r#"exporter="192.0.2.1",transport="udp",point="r1:\"eth0\"\\\n,"#),
            "{labels}"
        );
        assert!(!labels.contains('\n'));
        assert!(!labels.contains(",e\""), "four points at most: {labels}");
        assert!(labels.len() < 200, "{labels}");
    }

    #[test]
    fn every_status_field_is_published() {
        let mut status = Status {
            exporters: vec![ExporterStatus {
                exporter: "192.0.2.1:2055".into(),
                address: "192.0.2.1".into(),
                transport: "udp".into(),
                decode_errors: [("truncated".to_string(), 1)].into(),
                skipped_records: [("sflow flow 0:1004".to_string(), 1)].into(),
                domains: vec![DomainReport::default()],
                ..ExporterStatus::default()
            }],
            denied_sources: [("198.51.100.7".to_string(), 1)].into(),
            ..Status::default()
        };
        status.tcp.refused = [("denied".to_string(), 1)].into();
        status.tcp.closed = [("peer".to_string(), 1)].into();
        status.sessions_evicted = [("idle".to_string(), 1)].into();
        status.journeys = [("write_errors".to_string(), 1)].into();
        let mut json = serde_json::to_value(&status).unwrap();
        let mut names = Vec::new();
        number_leaves(&mut json, "", &mut names);
        let status: Status = serde_json::from_value(json.clone()).unwrap();
        let text = status.prometheus();
        // fields that are labels or lists of their own, not values
        let not_values = ["domain", "uptime_seconds"];
        let missing: Vec<String> = names
            .iter()
            .enumerate()
            .filter(|(_, name)| !not_values.contains(&name.as_str()))
            .filter(|(i, _)| {
                let value = *i as u64 + 1_000_000;
                // counts as published, and times in seconds
                let shown = [format!(" {value}\n"), format!(" {}\n", value as f64 / 1e9)];
                !shown.iter().any(|v| text.contains(v.as_str()))
            })
            .map(|(_, name)| name.clone())
            .collect();
        assert!(
            missing.is_empty(),
            "status fields missing from /metrics: {missing:?}"
        );
    }
}
