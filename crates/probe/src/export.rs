//! The exporting process: IPFIX messages of flows, packet reports and
//! options records to a file (RFC 5655), a UDP collector or a TCP collector.
//!
//! Capture never waits for a collector: over TCP, messages that cannot be
//! sent wait in a bounded buffer while the exporter reconnects (at most once
//! a second); past the bound they are dropped, and their records are
//! counted and reported in the exporting-reliability options (RFC 7011 §4.3).

use std::collections::VecDeque;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use hopscope_wire::PointClock;
use hopscope_wire::encoder::{
    MessageBuilder, TemplateSet, encode_flows, encode_packet_reports, push_variable,
};
use hopscope_wire::file::IpfixWriter;
use hopscope_wire::ie::{self, HOPSCOPE_PEN};
use hopscope_wire::template::{FieldSpec, VARIABLE_LENGTH};

use crate::select::Selector;

/// Where IPFIX goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTarget {
    File(PathBuf),
    Udp(SocketAddr),
    Tcp(SocketAddr),
}

impl FromStr for ExportTarget {
    type Err = String;

    /// `file:PATH`, `udp://HOST:PORT` or `tcp://HOST:PORT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let addr = |a: &str| {
            std::net::ToSocketAddrs::to_socket_addrs(a)
                .map_err(|e| format!("{a}: {e}"))?
                .next()
                .ok_or_else(|| format!("{a}: no address"))
        };
        if let Some(path) = s.strip_prefix("file:") {
            Ok(ExportTarget::File(PathBuf::from(path)))
        } else if let Some(a) = s.strip_prefix("udp://") {
            Ok(ExportTarget::Udp(addr(a)?))
        } else if let Some(a) = s.strip_prefix("tcp://") {
            Ok(ExportTarget::Tcp(addr(a)?))
        } else {
            Err(format!(
                "{s}: expected file:PATH, udp://HOST:PORT or tcp://HOST:PORT"
            ))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{target:?}: {source}")]
    Open {
        target: ExportTarget,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("encoding: {0}")]
    Encode(#[from] hopscope_wire::encoder::EncodeError),
}

/// What the exporter sent and could not send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportCounters {
    pub messages_sent: u64,
    pub octets_sent: u64,
    pub records_sent: u64,
    /// Messages dropped (collector unreachable past the buffer, send errors).
    pub messages_dropped: u64,
    /// Data records inside the dropped messages.
    pub records_not_sent: u64,
    pub reconnects: u64,
}

/// Messages waiting for a TCP collector.
const TCP_BUFFER_OCTETS: usize = 8 << 20;
const RECONNECT_INTERVAL: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

enum Sink {
    File(PathBuf, IpfixWriter<std::io::BufWriter<std::fs::File>>),
    Udp(UdpSocket),
    Tcp {
        addr: SocketAddr,
        stream: Option<TcpStream>,
        buffer: VecDeque<(Vec<u8>, u32)>,
        buffered: usize,
        last_attempt: Option<Instant>,
    },
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sink::File(p, _) => write!(f, "File({})", p.display()),
            Sink::Udp(s) => write!(f, "Udp({:?})", s.peer_addr().ok()),
            Sink::Tcp { addr, .. } => write!(f, "Tcp({addr})"),
        }
    }
}

/// IPFIX message size: a safe Ethernet MTU for UDP, large for streams.
const UDP_MESSAGE: usize = 1400;
const STREAM_MESSAGE: usize = 65000;
/// UDP template refresh (RFC 7011 §8.4), in messages.
const UDP_TEMPLATE_REFRESH: u64 = 64;

/// Sends IPFIX for one observation domain.
#[derive(Debug)]
pub struct Exporter {
    builder: MessageBuilder,
    templates: TemplateSet,
    sink: Sink,
    pub counters: ExportCounters,
}

/// The selector id of the metering filter (the journey selector is 1).
const METERING_FILTER_ID: u64 = 2;

/// What a probe says about itself in options records.
#[derive(Debug, Clone, Copy)]
pub struct ProbeReport<'a> {
    pub observation_point_id: u64,
    pub observation_point_name: &'a str,
    /// The clock the point's timestamps read, where the probe knows it.
    pub clock: Option<PointClock>,
    pub metering_process_id: u32,
    pub selector: Option<&'a Selector>,
    /// Packets the metering process missed (capture drops): the reports of
    /// any of them that were selected are missing.
    pub ignored_packets: u64,
    /// Frames observed, and those left out by choice (not IP, malformed,
    /// turned away by the BPF filter): said as a property-match filter.
    pub left_out: (u64, u64),
    pub flows_exported: u64,
}

impl Exporter {
    pub fn open(target: &ExportTarget, domain: u32) -> Result<Self, ExportError> {
        Self::open_from(target, domain, None)
    }

    /// As [`Exporter::open`], with UDP datagrams sent from `source` (such
    /// as one of 127.0.0.0/8, so that simulated devices on one machine
    /// look like distinct exporters); streams and files ignore it.
    pub fn open_from(
        target: &ExportTarget,
        domain: u32,
        source: Option<std::net::IpAddr>,
    ) -> Result<Self, ExportError> {
        let open_err = |source| ExportError::Open {
            target: target.clone(),
            source,
        };
        let (sink, size, refresh) = match target {
            ExportTarget::File(path) => {
                let file = std::fs::File::create(path).map_err(open_err)?;
                (
                    Sink::File(
                        path.clone(),
                        IpfixWriter::new(std::io::BufWriter::new(file)),
                    ),
                    STREAM_MESSAGE,
                    None,
                )
            }
            ExportTarget::Udp(addr) => {
                let any: std::net::IpAddr = if addr.is_ipv4() {
                    std::net::Ipv4Addr::UNSPECIFIED.into()
                } else {
                    std::net::Ipv6Addr::UNSPECIFIED.into()
                };
                let local = SocketAddr::new(source.unwrap_or(any), 0);
                let socket = UdpSocket::bind(local).map_err(open_err)?;
                socket.connect(addr).map_err(open_err)?;
                (Sink::Udp(socket), UDP_MESSAGE, Some(UDP_TEMPLATE_REFRESH))
            }
            ExportTarget::Tcp(addr) => {
                let sink = Sink::Tcp {
                    addr: *addr,
                    stream: None,
                    buffer: VecDeque::new(),
                    buffered: 0,
                    last_attempt: None,
                };
                (sink, STREAM_MESSAGE, None)
            }
        };
        Ok(Self {
            builder: MessageBuilder::new(domain, size),
            templates: TemplateSet::new(refresh),
            sink,
            counters: ExportCounters::default(),
        })
    }

    pub fn export_flows(
        &mut self,
        batch: &RecordBatch,
        export_secs: u32,
    ) -> Result<(), ExportError> {
        self.builder.set_export_time(export_secs);
        Ok(encode_flows(&mut self.templates, &mut self.builder, batch)?)
    }

    pub fn export_reports(
        &mut self,
        batch: &RecordBatch,
        export_secs: u32,
    ) -> Result<(), ExportError> {
        self.builder.set_export_time(export_secs);
        Ok(encode_packet_reports(
            &mut self.templates,
            &mut self.builder,
            batch,
        )?)
    }

    /// Options records: the selector (algorithm, seed, ranges, profile and
    /// its counts, so a collector can check that every probe selects alike),
    /// the observation point's name, and the metering and exporting
    /// reliability statistics.
    pub fn export_options(&mut self, r: &ProbeReport<'_>, export_secs: u32) {
        self.builder.set_export_time(export_secs);
        if let Some(sel) = r.selector {
            let c = sel.config();
            let fields = vec![
                FieldSpec::iana(302, 8),               // selectorId (scope)
                FieldSpec::iana(304, 2),               // selectorAlgorithm
                FieldSpec::iana(334, 8),               // hashInitialiserValue
                FieldSpec::iana(329, 8),               // hashOutputRangeMin
                FieldSpec::iana(330, 8),               // hashOutputRangeMax
                FieldSpec::iana(331, 8),               // hashSelectedRangeMin
                FieldSpec::iana(332, 8),               // hashSelectedRangeMax
                FieldSpec::iana(328, 8),               // hashIPPayloadSize
                FieldSpec::iana(333, 1),               // hashDigestOutput
                FieldSpec::iana(318, 8),               // selectorIdTotalPktsObserved
                FieldSpec::iana(319, 8),               // selectorIdTotalPktsSelected
                FieldSpec::iana(335, VARIABLE_LENGTH), // selectorName: the invariant-field profile
            ];
            let id = self.templates.id_for(1, fields);
            let mut rec = Vec::with_capacity(96);
            rec.extend_from_slice(&c.selector_id.to_be_bytes());
            rec.extend_from_slice(&c.function.selector_algorithm().to_be_bytes());
            rec.extend_from_slice(&u64::from(c.seed).to_be_bytes());
            rec.extend_from_slice(&0u64.to_be_bytes());
            rec.extend_from_slice(&u64::from(u32::MAX).to_be_bytes());
            rec.extend_from_slice(&0u64.to_be_bytes());
            rec.extend_from_slice(&sel.selected_range_max().saturating_sub(1).to_be_bytes());
            rec.extend_from_slice(&(c.payload_prefix as u64).to_be_bytes());
            rec.push(1); // boolean true: the digest is exported
            rec.extend_from_slice(&sel.observed.to_be_bytes());
            rec.extend_from_slice(&sel.selected.to_be_bytes());
            push_variable(&mut rec, c.profile.name().as_bytes());
            self.templates.add_record(&mut self.builder, id, &rec);
        }
        // flow metering: every packet, said the PSAMP way (RFC 5477: systematic
        // count-based, one selected, none skipped), so that a collector knows
        // the volumes are complete; the selector above chooses packets to
        // report for journeys, and is no sampling of flows
        let id = self.templates.id_for(
            1,
            vec![
                FieldSpec::iana(143, 4), // meteringProcessId (scope)
                FieldSpec::iana(304, 2), // selectorAlgorithm
                FieldSpec::iana(305, 4), // samplingPacketInterval
                FieldSpec::iana(306, 4), // samplingPacketSpace
            ],
        );
        let mut rec = r.metering_process_id.to_be_bytes().to_vec();
        rec.extend_from_slice(&1u16.to_be_bytes());
        rec.extend_from_slice(&1u32.to_be_bytes());
        rec.extend_from_slice(&0u32.to_be_bytes());
        self.templates.add_record(&mut self.builder, id, &rec);
        // the metering filter (RFC 5475 §6.1 property match, selectorId 2):
        // frames left out by choice, apart from those missed (164 below)
        let id = self.templates.id_for(
            1,
            vec![
                FieldSpec::iana(302, 8), // selectorId (scope)
                FieldSpec::iana(304, 2), // selectorAlgorithm: 5, property match filtering
                FieldSpec::iana(318, 8), // selectorIdTotalPktsObserved
                FieldSpec::iana(319, 8), // selectorIdTotalPktsSelected
            ],
        );
        let (observed, left_out) = r.left_out;
        let mut rec = METERING_FILTER_ID.to_be_bytes().to_vec();
        rec.extend_from_slice(&5u16.to_be_bytes());
        rec.extend_from_slice(&observed.to_be_bytes());
        rec.extend_from_slice(&observed.saturating_sub(left_out).to_be_bytes());
        self.templates.add_record(&mut self.builder, id, &rec);
        // observation point: id (scope), name, and the clock it reads
        let mut fields = vec![
            FieldSpec::iana(138, 8),
            FieldSpec::iana(82, VARIABLE_LENGTH),
        ];
        if r.clock.is_some() {
            let hopscope = |id| FieldSpec {
                enterprise: HOPSCOPE_PEN,
                id,
                length: 8,
            };
            fields.push(hopscope(ie::hopscope::CLOCK_DOMAIN_ID));
            fields.push(hopscope(ie::hopscope::CLOCK_BOUND_NANOSECONDS));
        }
        let id = self.templates.id_for(1, fields);
        let mut rec = r.observation_point_id.to_be_bytes().to_vec();
        push_variable(&mut rec, r.observation_point_name.as_bytes());
        if let Some(clock) = r.clock {
            rec.extend_from_slice(&clock.id.to_be_bytes());
            rec.extend_from_slice(&clock.bound_ns.to_be_bytes());
        }
        self.templates.add_record(&mut self.builder, id, &rec);
        // metering and exporting reliability (RFC 7011 §4.2, §4.3), scoped by metering process
        let fields = vec![
            FieldSpec::iana(143, 4), // meteringProcessId (scope)
            FieldSpec::iana(164, 8), // ignoredPacketTotalCount
            FieldSpec::iana(42, 8),  // exportedFlowRecordTotalCount
            FieldSpec::iana(41, 8),  // exportedMessageTotalCount
            FieldSpec::iana(166, 8), // notSentFlowTotalCount (data records not sent)
        ];
        let id = self.templates.id_for(1, fields);
        let mut rec = r.metering_process_id.to_be_bytes().to_vec();
        rec.extend_from_slice(&r.ignored_packets.to_be_bytes());
        rec.extend_from_slice(&r.flows_exported.to_be_bytes());
        rec.extend_from_slice(&self.counters.messages_sent.to_be_bytes());
        rec.extend_from_slice(&self.counters.records_not_sent.to_be_bytes());
        self.templates.add_record(&mut self.builder, id, &rec);
    }

    /// Sends every message built so far.
    pub fn flush(&mut self) -> Result<(), ExportError> {
        for (message, records) in self.builder.finish_counted() {
            self.send(message, records)?;
        }
        if let Sink::File(path, w) = &mut self.sink {
            w.flush().map_err(|source| ExportError::File {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    fn send(&mut self, message: Vec<u8>, records: u32) -> Result<(), ExportError> {
        let c = &mut self.counters;
        match &mut self.sink {
            Sink::File(path, w) => {
                w.write_message(&message)
                    .map_err(|source| ExportError::File {
                        path: path.clone(),
                        source,
                    })?;
                c.messages_sent += 1;
                c.octets_sent += message.len() as u64;
                c.records_sent += u64::from(records);
            }
            Sink::Udp(socket) => match socket.send(&message) {
                Ok(_) => {
                    c.messages_sent += 1;
                    c.octets_sent += message.len() as u64;
                    c.records_sent += u64::from(records);
                }
                // a collector that is down answers with ICMP unreachable; the data is gone
                Err(_) => {
                    c.messages_dropped += 1;
                    c.records_not_sent += u64::from(records);
                }
            },
            Sink::Tcp {
                addr,
                stream,
                buffer,
                buffered,
                last_attempt,
            } => {
                buffered_send(
                    c,
                    *addr,
                    stream,
                    buffer,
                    buffered,
                    last_attempt,
                    message,
                    records,
                );
            }
        }
        Ok(())
    }

    /// Messages and data records waiting for a TCP collector.
    pub fn buffered(&self) -> (usize, u64) {
        match &self.sink {
            Sink::Tcp { buffer, .. } => (
                buffer.len(),
                buffer.iter().map(|(_, r)| u64::from(*r)).sum(),
            ),
            _ => (0, 0),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn buffered_send(
    c: &mut ExportCounters,
    addr: SocketAddr,
    stream: &mut Option<TcpStream>,
    buffer: &mut VecDeque<(Vec<u8>, u32)>,
    buffered: &mut usize,
    last_attempt: &mut Option<Instant>,
    message: Vec<u8>,
    records: u32,
) {
    *buffered += message.len();
    buffer.push_back((message, records));
    while *buffered > TCP_BUFFER_OCTETS {
        let Some((m, r)) = buffer.pop_front() else {
            break;
        };
        *buffered -= m.len();
        c.messages_dropped += 1;
        c.records_not_sent += u64::from(r);
    }
    if stream.is_none() && last_attempt.is_none_or(|t| t.elapsed() >= RECONNECT_INTERVAL) {
        *last_attempt = Some(Instant::now());
        if let Ok(s) = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            let _ = s.set_write_timeout(Some(Duration::from_millis(500)));
            let _ = s.set_nodelay(true);
            *stream = Some(s);
            c.reconnects += 1;
        }
    }
    while let (Some(s), Some((m, r))) = (stream.as_mut(), buffer.front()) {
        // a message is written whole or the connection is dropped: framing
        // on the stream must never break mid-message
        match s.write_all(m) {
            Ok(()) => {
                c.messages_sent += 1;
                c.octets_sent += m.len() as u64;
                c.records_sent += u64::from(*r);
                *buffered -= m.len();
                buffer.pop_front();
            }
            Err(_) => {
                *stream = None;
                // the partial write poisoned this message on the old connection; resend it whole
            }
        }
    }
}
