//! The decoder: one entry point for every protocol, routing each message to
//! its exporter's session and counting everything it cannot decode.

use std::collections::VecDeque;
use std::net::SocketAddr;

use hopscope_schema::ip_to_mapped;

use crate::error::{DecodeError, ErrorKind};
use crate::output::DecodeOutput;
use crate::sampling::{SamplingRule, SamplingRules};
use crate::session::{ExporterStats, FastMap, Session, SessionLimits, Transport};
use crate::snapshot::SessionSnapshot;
use crate::{netflow_v5, sflow, templated};

/// The export protocols hopscope decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    NetflowV5,
    NetflowV9,
    Ipfix,
    SFlow5,
}

impl Protocol {
    /// Recognises a message by its version field.
    pub fn detect(message: &[u8]) -> Option<Protocol> {
        match message.get(..4)? {
            [0, 5, ..] => Some(Protocol::NetflowV5),
            [0, 9, ..] => Some(Protocol::NetflowV9),
            [0, 10, ..] => Some(Protocol::Ipfix),
            [0, 0, 0, 5] => Some(Protocol::SFlow5),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::NetflowV5 => "NetFlow v5",
            Protocol::NetflowV9 => "NetFlow v9",
            Protocol::Ipfix => "IPFIX",
            Protocol::SFlow5 => "sFlow v5",
        }
    }
}

/// What one message yielded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSummary {
    pub protocol: Protocol,
    pub flows: u32,
    pub packet_reports: u32,
    pub options_records: u32,
    pub counter_records: u32,
    /// Sets or samples that could not be decoded (each counted and logged).
    pub errors: u32,
}

impl MessageSummary {
    pub(crate) fn new(protocol: Protocol) -> Self {
        Self {
            protocol,
            flows: 0,
            packet_reports: 0,
            options_records: 0,
            counter_records: 0,
            errors: 0,
        }
    }
}

/// Errors of the recent past, with full context, for `hopscope status`.
const RECENT_ERRORS: usize = 128;

/// Set-level error reporting shared by the protocol modules.
#[derive(Debug)]
pub(crate) struct ErrorLog<'a> {
    pub exporter: SocketAddr,
    pub protocol: Protocol,
    pub recent: &'a mut VecDeque<DecodeError>,
}

impl ErrorLog<'_> {
    pub fn report(
        &mut self,
        stats: &mut ExporterStats,
        summary: Option<&mut MessageSummary>,
        domain: Option<u32>,
        set_id: Option<u16>,
        offset: usize,
        kind: ErrorKind,
    ) -> DecodeError {
        stats.count_error(kind);
        if let Some(s) = summary {
            s.errors += 1;
        }
        let error = DecodeError {
            exporter: self.exporter,
            protocol: self.protocol.name(),
            domain,
            set_id,
            offset,
            kind,
        };
        if self.recent.len() == RECENT_ERRORS {
            self.recent.pop_front();
        }
        self.recent.push_back(error.clone());
        error
    }
}

/// UDP sessions the decoder let go, by why: every one counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evictions {
    /// Silent past the idle limit.
    pub idle: u64,
    /// Made room for a new port of the same exporter address.
    pub address_limit: u64,
    /// Made room in a full table (sessions heard once go first).
    pub table_full: u64,
}

/// Sessions heard from fewer times than this go first when the table is
/// full: a forged source sends once, a real exporter goes on sending.
const PROBATION_MESSAGES: u64 = 3;
/// The share of a full table that one sweep frees, so that a flood of new
/// sources costs a sweep per eighth of the table rather than per source.
const SWEEP_SHARE: usize = 8;

/// Decodes NetFlow v5/v9, IPFIX and sFlow v5 from any number of exporters.
///
/// Its memory is bounded whatever arrives: UDP sessions are kept per
/// address and in all up to [`SessionLimits`], silent ones are forgotten,
/// and templates are capped per domain, per session and in all.
#[derive(Debug, Default)]
pub struct Decoder {
    sessions: FastMap<(SocketAddr, Transport), Session>,
    /// The UDP sessions of each exporter address (one per source port).
    ports: FastMap<std::net::IpAddr, Vec<u16>>,
    udp_sessions: usize,
    limits: SessionLimits,
    /// Templates held over all sessions, as of the last define or sweep
    /// (removals are counted at the next sweep, so the cap errs on the side
    /// of refusing).
    templates_held: usize,
    evictions: Evictions,
    recent_errors: VecDeque<DecodeError>,
    /// Rates the configuration gives exporters.
    sampling_rules: SamplingRules,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_limits(limits: SessionLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Sampling rates for exporters that announce none (or, with
    /// `replace`, a wrong one): flows get `sampling_rate_source`
    /// "configured", and are no longer counted as of unknown rate.
    pub fn set_sampling_rules(&mut self, rules: &[SamplingRule]) {
        self.sampling_rules = SamplingRules::new(rules);
    }

    /// Decodes one message (a UDP datagram, one framed TCP/file message).
    ///
    /// `received_ns` is the collector's clock, Unix nanoseconds. An `Err` is a
    /// message that could not be decoded at all; errors in single sets are
    /// counted, logged in [`recent_errors`](Self::recent_errors) and reported
    /// in the summary while decoding goes on.
    pub fn decode(
        &mut self,
        exporter: SocketAddr,
        transport: Transport,
        received_ns: i64,
        message: &[u8],
        out: &mut DecodeOutput,
    ) -> Result<MessageSummary, DecodeError> {
        let key = (exporter, transport);
        if transport == Transport::Udp && !self.sessions.contains_key(&key) {
            self.make_room(exporter);
            self.ports
                .entry(exporter.ip())
                .or_default()
                .push(exporter.port());
            self.udp_sessions += 1;
        }
        let session = self
            .sessions
            .entry(key)
            .or_insert_with(|| Session::new(exporter, transport));
        session.last_seen_ns = received_ns;
        session.stats.messages += 1;
        session.stats.bytes += message.len() as u64;
        let protocol = Protocol::detect(message);
        let mut log = ErrorLog {
            exporter,
            protocol: protocol.unwrap_or(Protocol::Ipfix),
            recent: &mut self.recent_errors,
        };
        let exporter_addr = ip_to_mapped(exporter.ip());
        let first_row = out.flows.len();
        let result = match protocol {
            None => {
                let kind = if message.len() < 4 {
                    ErrorKind::Truncated
                } else {
                    ErrorKind::UnknownVersion
                };
                Err(log.report(&mut session.stats, None, None, None, 0, kind))
            }
            Some(Protocol::Ipfix) | Some(Protocol::NetflowV9) => templated::decode(
                session,
                &self.limits,
                &mut self.templates_held,
                &mut log,
                exporter_addr,
                received_ns,
                message,
                out,
            ),
            Some(Protocol::NetflowV5) => netflow_v5::decode(
                session,
                &self.limits,
                &mut log,
                exporter_addr,
                received_ns,
                message,
                out,
            ),
            Some(Protocol::SFlow5) => {
                sflow::decode(session, &self.limits, &mut log, received_ns, message, out)
            }
        };
        if !self.sampling_rules.is_empty() {
            let resolved = self.sampling_rules.apply(&mut out.flows, first_row);
            let stats = &mut session.stats;
            stats.sampling_unknown = stats.sampling_unknown.saturating_sub(resolved);
        }
        result
    }

    /// Frees room for a new UDP session from `exporter`: its address's
    /// longest silent port when the address has its share, and a sweep of
    /// the least useful sessions when the table is full.
    fn make_room(&mut self, exporter: SocketAddr) {
        let ip = exporter.ip();
        let ports = self.ports.get(&ip).map_or(0, Vec::len);
        if ports >= self.limits.max_sessions_per_address.max(1) {
            let sessions = &self.sessions;
            let oldest = self.ports[&ip]
                .iter()
                .copied()
                .min_by_key(|&port| {
                    sessions
                        .get(&(SocketAddr::new(ip, port), Transport::Udp))
                        .map_or(i64::MIN, |s| s.last_seen_ns)
                })
                .expect("the address has ports");
            self.remove_udp(SocketAddr::new(ip, oldest));
            self.evictions.address_limit += 1;
        }
        let udp = self.udp_sessions;
        if udp >= self.limits.max_sessions.max(1) {
            let mut candidates: Vec<((bool, i64), SocketAddr)> = self
                .sessions
                .values()
                .filter(|s| s.transport == Transport::Udp)
                .map(|s| {
                    let proven = s.stats.messages >= PROBATION_MESSAGES;
                    ((proven, s.last_seen_ns), s.exporter)
                })
                .collect();
            let free = (udp / SWEEP_SHARE).max(1).min(candidates.len());
            candidates.select_nth_unstable_by_key(free - 1, |c| c.0);
            for (_, addr) in candidates.into_iter().take(free) {
                self.remove_udp(addr);
                self.evictions.table_full += 1;
            }
        }
    }

    fn remove_udp(&mut self, exporter: SocketAddr) {
        if self.sessions.remove(&(exporter, Transport::Udp)).is_some() {
            self.udp_sessions -= 1;
        }
        if let Some(ports) = self.ports.get_mut(&exporter.ip()) {
            ports.retain(|&p| p != exporter.port());
            if ports.is_empty() {
                self.ports.remove(&exporter.ip());
            }
        }
    }

    /// Forgets the UDP sessions silent for the idle limit at `now_ns`, and
    /// takes the count of templates held anew; returns how many went.
    pub fn expire_idle(&mut self, now_ns: i64) -> usize {
        let idle_since = now_ns.saturating_sub(self.limits.session_idle_ns);
        let silent: Vec<SocketAddr> = self
            .sessions
            .values()
            .filter(|s| s.transport == Transport::Udp && s.last_seen_ns < idle_since)
            .map(|s| s.exporter)
            .collect();
        for &exporter in &silent {
            self.remove_udp(exporter);
        }
        self.evictions.idle += silent.len() as u64;
        self.templates_held = self.sessions.values().map(Session::template_count).sum();
        silent.len()
    }

    /// Forgets a stream session that has ended (its connection closed and
    /// its counters reported): it leaves `status` and the metrics.
    pub fn forget_session(&mut self, exporter: SocketAddr, transport: Transport) {
        if transport == Transport::Udp {
            self.remove_udp(exporter);
        } else {
            self.sessions.remove(&(exporter, transport));
        }
    }

    /// The UDP sessions let go so far, by why.
    pub fn evictions(&self) -> Evictions {
        self.evictions
    }

    /// Ends a TCP/SCTP session or a file: its templates are withdrawn
    /// (RFC 7011 §8) and data still waiting for a template is counted as
    /// decoded-never. The session's counters stay for `status`.
    pub fn end_session(&mut self, exporter: SocketAddr, transport: Transport) {
        let Some(session) = self.sessions.get_mut(&(exporter, transport)) else {
            return;
        };
        let mut log = ErrorLog {
            exporter,
            protocol: Protocol::Ipfix,
            recent: &mut self.recent_errors,
        };
        templated::evict_all_pending(session, &mut log);
        for domain in session.domains.values_mut() {
            domain.templates.clear();
        }
    }

    /// Gives up on every data set still waiting for its template, counting
    /// each as an unknown-template error. Used at the end of a replay.
    pub fn flush_pending(&mut self) {
        for session in self.sessions.values_mut() {
            let mut log = ErrorLog {
                exporter: session.exporter,
                protocol: Protocol::Ipfix,
                recent: &mut self.recent_errors,
            };
            templated::evict_all_pending(session, &mut log);
        }
    }

    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    pub fn session(&self, exporter: SocketAddr, transport: Transport) -> Option<&Session> {
        self.sessions.get(&(exporter, transport))
    }

    /// The counters of all sessions added up.
    pub fn totals(&self) -> ExporterStats {
        let mut total = ExporterStats::default();
        for s in self.sessions.values() {
            total.accumulate(&s.stats());
        }
        total
    }

    /// The restart-surviving state of every UDP session.
    pub fn snapshot(&self) -> Vec<SessionSnapshot> {
        self.sessions
            .values()
            .filter_map(Session::snapshot)
            .collect()
    }

    /// Takes up the state of a previous run; sessions already live are kept.
    pub fn restore(&mut self, snapshots: &[SessionSnapshot], now_ns: i64) {
        for s in snapshots {
            let key = (s.exporter, Transport::Udp);
            if self.sessions.contains_key(&key) {
                continue;
            }
            self.make_room(s.exporter);
            self.ports
                .entry(s.exporter.ip())
                .or_default()
                .push(s.exporter.port());
            self.udp_sessions += 1;
            let mut session = Session::restore(s, now_ns);
            session.last_seen_ns = now_ns;
            self.templates_held += session.template_count();
            self.sessions.insert(key, session);
        }
    }

    /// The last errors, oldest first, each with exporter, set and offset.
    pub fn recent_errors(&self) -> &VecDeque<DecodeError> {
        &self.recent_errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NetFlow v5 header with no records: the cheapest message a forged
    /// source can send.
    fn v5(sequence: u32) -> Vec<u8> {
        let mut m = vec![0u8; 24];
        m[1] = 5;
        m[8..12].copy_from_slice(&1_800_000_000u32.to_be_bytes());
        m[16..20].copy_from_slice(&sequence.to_be_bytes());
        m
    }

    fn source(i: u32) -> SocketAddr {
        let [_, b, c, d] = i.to_be_bytes();
        SocketAddr::new(std::net::Ipv4Addr::new(127, b, c, d).into(), 2055)
    }

    #[test]
    fn forged_sources_cannot_grow_the_session_table() {
        let limits = SessionLimits {
            max_sessions: 64,
            ..SessionLimits::default()
        };
        let mut d = Decoder::with_limits(limits);
        let mut out = DecodeOutput::default();
        // a real exporter, heard often
        for k in 0..10 {
            d.decode(source(0), Transport::Udp, k, &v5(0), &mut out)
                .unwrap();
        }
        // then 10,000 sources heard once each
        for i in 1..=10_000 {
            d.decode(source(i), Transport::Udp, 100, &v5(0), &mut out)
                .unwrap();
            assert!(d.sessions().count() <= 64);
        }
        assert!(
            d.session(source(0), Transport::Udp).is_some(),
            "the real exporter stays"
        );
        let e = d.evictions();
        assert_eq!(e.table_full as usize + d.sessions().count(), 10_001);
        assert_eq!(d.udp_sessions, d.sessions().count());
    }

    #[test]
    fn one_address_has_a_share_of_ports_and_silence_expires() {
        let limits = SessionLimits {
            max_sessions_per_address: 4,
            session_idle_ns: 1_000,
            ..SessionLimits::default()
        };
        let mut d = Decoder::with_limits(limits);
        let mut out = DecodeOutput::default();
        for port in 0..10u16 {
            let from = SocketAddr::new([127, 0, 0, 1].into(), 4000 + port);
            d.decode(from, Transport::Udp, i64::from(port), &v5(0), &mut out)
                .unwrap();
        }
        let ports: Vec<u16> = d.sessions().map(|s| s.exporter.port()).collect();
        assert_eq!(ports.len(), 4);
        assert!(
            ports.iter().all(|&p| p >= 4006),
            "the newest ports stay: {ports:?}"
        );
        assert_eq!(d.evictions().address_limit, 6);
        // TCP sessions never expire by silence: they end with their connection
        let tcp = SocketAddr::new([127, 0, 0, 2].into(), 9);
        let _ = d.decode(tcp, Transport::Tcp, 0, &v5(0), &mut out);
        assert_eq!(d.expire_idle(5_000), 4);
        assert_eq!(d.evictions().idle, 4);
        assert_eq!(d.sessions().count(), 1);
        d.forget_session(tcp, Transport::Tcp);
        assert_eq!(d.sessions().count(), 0);
        assert_eq!(d.udp_sessions, 0);
    }
}
