//! Flow records as detections read them: one compact row per record, the
//! volumes scaled by the record's sampling rate (a rate that is not known
//! counts as 1:1, and the row says the record was not scaled).

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampNanosecondType, UInt8Type, UInt16Type, UInt64Type};
use arrow_array::{Array, FixedSizeBinaryArray, RecordBatch};

use crate::AnalyzeError;
use crate::columns::primitive;

pub use hopscope_schema::tcp_flags::{ACK, FIN, PSH, RST, SYN, URG};

/// How far ahead of its receive time a flow's end may be.
const CLOCK_SLACK_NS: i64 = 5_000_000_000;

/// The columns of the flows table detections read.
pub const COLUMNS: &[&str] = &[
    "time_received_ns",
    "time_flow_start_ns",
    "time_flow_end_ns",
    "observation_point_id",
    "sampler_address",
    "src_addr",
    "dst_addr",
    "src_port",
    "dst_port",
    "proto",
    "bytes",
    "packets",
    "reverse_packets",
    "sampling_rate",
    "tcp_flags",
    "icmp_type",
];

/// One flow record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowEvent {
    /// The flow's last packet (its receive time when the exporter gave none).
    pub end_ns: i64,
    /// The flow's first packet (`end_ns` when not given).
    pub start_ns: i64,
    /// Where it was observed: the observation point, else the exporter.
    pub point: u64,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    /// Packets and octets scaled by the sampling rate.
    pub packets: u64,
    pub bytes: u64,
    /// Packets back, for biflow records (RFC 5103); None for one-way ones.
    pub reverse_packets: Option<u64>,
    pub tcp_flags: Option<u16>,
    pub icmp_type: Option<u8>,
    /// One in this many packets was sampled (1 when unsampled or unknown).
    pub sampling: u64,
}

impl FlowEvent {
    /// A TCP record whose source never acknowledged anything: a connection
    /// attempt that was not established (SYN, or a FIN, NULL or Xmas probe).
    pub fn unestablished_tcp(&self) -> bool {
        self.proto == 6 && self.tcp_flags.is_some_and(|f| f & ACK == 0)
    }

    /// A TCP record of SYNs only (the half-open connections of a SYN flood).
    pub fn syn_only(&self) -> bool {
        self.proto == 6
            && self
                .tcp_flags
                .is_some_and(|f| f & (SYN | ACK | RST | FIN) == SYN)
    }

    /// An ICMP echo request (ping), IPv4 or IPv6.
    pub fn is_echo_request(&self) -> bool {
        match self.proto {
            1 => self.icmp_type == Some(8),
            58 => self.icmp_type == Some(128),
            _ => false,
        }
    }

    /// An ICMP echo reply, IPv4 or IPv6.
    pub fn is_echo_reply(&self) -> bool {
        match self.proto {
            1 => self.icmp_type == Some(0),
            58 => self.icmp_type == Some(129),
            _ => false,
        }
    }

    /// A TCP record that carries a SYN and an ACK: its connection's
    /// handshake was answered (the client's record holds its SYN and its
    /// ACK, the server's its SYN-ACK; a refused one has a SYN alone one
    /// way and a reset the other).
    pub fn answered_handshake(&self) -> bool {
        self.proto == 6 && self.tcp_flags.is_some_and(|f| f & (SYN | ACK) == SYN | ACK)
    }

    /// The connection this record is part of, client to service. A TCP
    /// source that sent a SYN and acknowledged nothing opened it; an ICMP
    /// echo reply answers its request; otherwise the side with the lower
    /// port serves (a tie, the destination), so that a reply from port
    /// 443 to port 50000 is the same connection as its request. ICMP has
    /// no service port (0).
    pub fn connection(&self) -> Connection {
        let ports = matches!(self.proto, 6 | 17 | 132);
        let opening =
            self.proto == 6 && self.tcp_flags.is_some_and(|f| f & SYN != 0 && f & ACK == 0);
        let reply = if opening {
            false
        } else if ports {
            self.src_port < self.dst_port
        } else {
            self.is_echo_reply()
        };
        let port = |p: u16| if ports { p } else { 0 };
        if reply {
            Connection {
                client: self.dst,
                server: self.src,
                port: port(self.src_port),
                reply,
            }
        } else {
            Connection {
                client: self.src,
                server: self.dst,
                port: port(self.dst_port),
                reply,
            }
        }
    }
}

/// A flow record's connection, oriented client to service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub client: [u8; 16],
    pub server: [u8; 16],
    /// The service's port (0 for protocols without ports).
    pub port: u16,
    /// The record goes from the service to the client.
    pub reply: bool,
}

/// Every record of a batch of the flows table with both addresses; the
/// others (options-only rows, broken exporters) are counted in the second
/// value.
pub fn read(batch: &RecordBatch) -> Result<(Vec<FlowEvent>, u64), AnalyzeError> {
    let received = primitive::<TimestampNanosecondType>(batch, "time_received_ns")?;
    let start = primitive::<TimestampNanosecondType>(batch, "time_flow_start_ns")?;
    let end = primitive::<TimestampNanosecondType>(batch, "time_flow_end_ns")?;
    let point = primitive::<UInt64Type>(batch, "observation_point_id")?;
    let exporter = addresses(batch, "sampler_address")?;
    let src = addresses(batch, "src_addr")?;
    let dst = addresses(batch, "dst_addr")?;
    let src_port = primitive::<UInt16Type>(batch, "src_port")?;
    let dst_port = primitive::<UInt16Type>(batch, "dst_port")?;
    let proto = primitive::<UInt8Type>(batch, "proto")?;
    let bytes = primitive::<UInt64Type>(batch, "bytes")?;
    let packets = primitive::<UInt64Type>(batch, "packets")?;
    let reverse = primitive::<UInt64Type>(batch, "reverse_packets")?;
    let sampling = primitive::<UInt64Type>(batch, "sampling_rate")?;
    let flags = primitive::<UInt16Type>(batch, "tcp_flags")?;
    let icmp = primitive::<UInt8Type>(batch, "icmp_type")?;
    let get = |a: &dyn Array, i: usize| !a.is_null(i);
    let mut out = Vec::with_capacity(batch.num_rows());
    let mut skipped = 0;
    for i in 0..batch.num_rows() {
        let (Some(s), Some(d)) = (address(src, i), address(dst, i)) else {
            skipped += 1;
            continue;
        };
        // an exporter's clock ahead of the collector's would move the
        // detectors' time past every real flow: no flow ends after it
        // arrived (and a little for clocks a little apart)
        let received_ns = received.value(i);
        let latest = received_ns.saturating_add(CLOCK_SLACK_NS);
        let end_ns = if get(end, i) {
            end.value(i).min(latest)
        } else {
            received_ns
        };
        let rate = if get(sampling, i) {
            sampling.value(i).max(1)
        } else {
            1
        };
        let point = if get(point, i) {
            point.value(i)
        } else {
            // one point per exporter that names none: its address, folded
            address(exporter, i).map_or(0, |a| {
                let v = u128::from_be_bytes(a);
                (v as u64) ^ ((v >> 64) as u64)
            })
        };
        out.push(FlowEvent {
            end_ns,
            start_ns: if get(start, i) {
                start.value(i).min(end_ns)
            } else {
                end_ns
            },
            point,
            src: s,
            dst: d,
            src_port: if get(src_port, i) {
                src_port.value(i)
            } else {
                0
            },
            dst_port: if get(dst_port, i) {
                dst_port.value(i)
            } else {
                0
            },
            proto: if get(proto, i) { proto.value(i) } else { 0 },
            packets: if get(packets, i) { packets.value(i) } else { 0 }.saturating_mul(rate),
            bytes: if get(bytes, i) { bytes.value(i) } else { 0 }.saturating_mul(rate),
            reverse_packets: get(reverse, i).then(|| reverse.value(i)),
            tcp_flags: get(flags, i).then(|| flags.value(i)),
            icmp_type: get(icmp, i).then(|| icmp.value(i)),
            sampling: rate,
        });
    }
    Ok((out, skipped))
}

fn addresses<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a FixedSizeBinaryArray, AnalyzeError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| AnalyzeError::Rows(format!("no column {name}")))?
        .as_fixed_size_binary_opt()
        .ok_or_else(|| AnalyzeError::Rows(format!("{name} is not an address column")))
}

fn address(a: &FixedSizeBinaryArray, i: usize) -> Option<[u8; 16]> {
    if a.is_null(i) {
        None
    } else {
        a.value(i).try_into().ok()
    }
}
