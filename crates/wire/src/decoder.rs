//! The decoder: one entry point for every protocol, routing each message to
//! its exporter's session and counting everything it cannot decode.

use std::collections::VecDeque;
use std::net::SocketAddr;

use hopscope_schema::ip_to_mapped;

use crate::error::{DecodeError, ErrorKind};
use crate::output::DecodeOutput;
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

/// Decodes NetFlow v5/v9, IPFIX and sFlow v5 from any number of exporters.
#[derive(Debug, Default)]
pub struct Decoder {
    sessions: FastMap<(SocketAddr, Transport), Session>,
    limits: SessionLimits,
    recent_errors: VecDeque<DecodeError>,
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
        let session = self
            .sessions
            .entry((exporter, transport))
            .or_insert_with(|| Session::new(exporter, transport));
        session.stats.messages += 1;
        session.stats.bytes += message.len() as u64;
        let protocol = Protocol::detect(message);
        let mut log = ErrorLog {
            exporter,
            protocol: protocol.unwrap_or(Protocol::Ipfix),
            recent: &mut self.recent_errors,
        };
        let exporter_addr = ip_to_mapped(exporter.ip());
        match protocol {
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
        }
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
            self.sessions
                .entry((s.exporter, Transport::Udp))
                .or_insert_with(|| Session::restore(s, now_ns));
        }
    }

    /// The last errors, oldest first, each with exporter, set and offset.
    pub fn recent_errors(&self) -> &VecDeque<DecodeError> {
        &self.recent_errors
    }
}
