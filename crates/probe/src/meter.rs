//! The metering process: frames in; flow records and packet reports out.

use hopscope_schema::FlowTuple;
use std::collections::HashMap;

use arrow_array::RecordBatch;
use arrow_schema::ArrowError;
use hopscope_packet::bpf::BpfProgram;
use hopscope_packet::{PacketSummary, StopReason, TunnelKind, parse_frame, parse_frame_inner};
use hopscope_schema::{
    FlowBatchBuilder, FlowRecord, PacketReportBuilder, PacketReportRecord, mac_to_u64,
};

use crate::cache::{CacheConfig, Expired, FORWARD, FlowCache, FlowKey, REVERSE};
use crate::select::{Selector, SelectorConfig};
use crate::source::Frame;

/// What a meter does with packets.
#[derive(Debug, Clone, Copy)]
pub struct MeterConfig {
    pub observation_point_id: u64,
    pub domain: u32,
    pub cache: CacheConfig,
    /// Packet selection for reports; `None` exports flows only.
    pub selection: Option<SelectorConfig>,
    /// Meter the inner packet of GRE and VXLAN tunnels (keyed by tunnel id too),
    /// rather than the outer one.
    pub decapsulate: bool,
}

/// Counts of the metering process, by what happened to each frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeterStats {
    pub frames: u64,
    /// IP packets metered into flows.
    pub packets: u64,
    pub octets: u64,
    /// Frames without an IP header this probe follows (ARP, LLDP...): not metered.
    pub not_ip: u64,
    /// Frames cut inside a header (metered with what was read).
    pub truncated: u64,
    /// Frames whose lengths contradict themselves or loop (not metered).
    pub malformed: u64,
    /// Later fragments whose first fragment was never seen (metered without ports).
    pub orphan_fragments: u64,
    pub flows_exported: u64,
    pub packet_reports: u64,
    /// Frames the BPF filter turned away.
    pub filtered: u64,
}

impl MeterStats {
    /// Adds another meter's counts (several capture workers).
    pub fn accumulate(&mut self, o: &MeterStats) {
        self.frames += o.frames;
        self.packets += o.packets;
        self.octets += o.octets;
        self.not_ip += o.not_ip;
        self.truncated += o.truncated;
        self.malformed += o.malformed;
        self.orphan_fragments += o.orphan_fragments;
        self.flows_exported += o.flows_exported;
        self.packet_reports += o.packet_reports;
        self.filtered += o.filtered;
    }
}

/// Ports of a fragmented datagram, taken from its first fragment.
type FragmentKey = ([u8; 16], [u8; 16], u8, u32);
const MAX_FRAGMENTS: usize = 4096;
/// How long a first fragment's ports are kept for its later fragments.
const FRAGMENT_LIFETIME_NS: i64 = 30_000_000_000;

/// Meters frames of one observation point.
#[derive(Debug)]
pub struct Meter {
    config: MeterConfig,
    cache: FlowCache,
    selector: Option<Selector>,
    fragments: HashMap<FragmentKey, (u16, u16, i64)>,
    expired: Vec<Expired>,
    flows: FlowBatchBuilder,
    reports: PacketReportBuilder,
    last_sweep_ns: i64,
    filter: Option<BpfProgram>,
    pub stats: MeterStats,
}

/// Cache sweeps happen at most this often in packet time.
const SWEEP_INTERVAL_NS: i64 = 1_000_000_000;

impl Meter {
    pub fn new(config: MeterConfig) -> Self {
        Self {
            config,
            cache: FlowCache::new(config.cache),
            selector: config.selection.map(Selector::new),
            fragments: HashMap::new(),
            expired: Vec::new(),
            flows: FlowBatchBuilder::with_capacity(1024),
            reports: PacketReportBuilder::with_capacity(256),
            last_sweep_ns: i64::MIN,
            filter: None,
            stats: MeterStats::default(),
        }
    }

    /// Meters only the frames a classic BPF program accepts (as `tcpdump -ddd` compiles it).
    pub fn with_filter(mut self, filter: BpfProgram) -> Self {
        self.filter = Some(filter);
        self
    }

    pub fn selector(&self) -> Option<&Selector> {
        self.selector.as_ref()
    }

    pub fn cache(&self) -> &FlowCache {
        &self.cache
    }

    /// Meters one frame.
    pub fn observe(&mut self, frame: &Frame<'_>) {
        if let Some(filter) = &self.filter
            && !filter.accepts(frame.data, frame.wire_len)
        {
            self.stats.filtered += 1;
            return;
        }
        self.stats.frames += 1;
        let ts = frame.timestamp_ns;
        let mut p = if self.config.decapsulate {
            parse_frame_inner(frame.link, frame.data)
        } else {
            parse_frame(frame.link, frame.data)
        };
        match p.stopped {
            Some(StopReason::Truncated) => self.stats.truncated += 1,
            Some(StopReason::BadLength | StopReason::ExtensionHeaderLimit) => {
                self.stats.malformed += 1;
                return;
            }
            _ => {}
        }
        // a tag the kernel took off (VLAN offload) counts as if it were in the frame
        p.vlan = p.vlan.or(frame.vlan);
        let (Some(src), Some(dst), Some(version)) = (p.src_addr, p.dst_addr, p.ip_version) else {
            self.stats.not_ip += 1;
            return;
        };
        self.fragment_ports(&mut p, ts);
        if let Some(selector) = &mut self.selector
            && let Some(digest) = selector.consider(&p, frame.data)
        {
            self.reports.append(&PacketReportRecord {
                observation_point_id: Some(self.config.observation_point_id),
                observation_domain_id: Some(self.config.domain),
                selection_sequence_id: Some(selector.config().selector_id),
                selector_id: Some(selector.config().selector_id),
                observation_time_ns: Some(ts),
                digest: Some(digest),
                ip_ttl: p.ttl,
                length: p.ip_total_length.map(u32::from),
                ip_version: Some(version),
                src_addr: Some(src),
                dst_addr: Some(dst),
                src_port: p.src_port,
                dst_port: p.dst_port,
                proto: p.proto,
                fragment_id: p.fragment_id,
                in_if: Some(frame.interface),
                ..PacketReportRecord::default()
            });
            self.stats.packet_reports += 1;
        }
        let (src_port, dst_port) = flow_ports(&p);
        let key = FlowKey {
            tuple: FlowTuple {
                src,
                dst,
                src_port,
                dst_port,
                proto: p.proto.unwrap_or(0),
            },
            tunnel_kind: match p.tunnel.map(|t| t.kind) {
                None => 0,
                Some(TunnelKind::Gre) => 1,
                Some(TunnelKind::Vxlan) => 2,
            },
            vlan: p.vlan.unwrap_or(0),
            tunnel_id: p.tunnel.and_then(|t| t.id).unwrap_or(0),
        };
        self.stats.packets += 1;
        self.stats.octets += u64::from(p.ip_total_length.unwrap_or(0));
        self.cache
            .add(key, ts, &p, frame.interface, &mut self.expired);
        if ts.saturating_sub(self.last_sweep_ns) >= SWEEP_INTERVAL_NS {
            self.last_sweep_ns = ts;
            self.cache.expire(ts, &mut self.expired);
            self.fragments
                .retain(|_, (_, _, seen)| ts - *seen < FRAGMENT_LIFETIME_NS);
        }
        self.emit_expired();
    }

    /// Later fragments carry no transport header: they take the ports of
    /// their datagram's first fragment, so that a fragmented datagram stays
    /// in one flow.
    fn fragment_ports(&mut self, p: &mut PacketSummary, ts: i64) {
        let Some(id) = p.fragment_id else { return };
        let key = (
            p.src_addr.unwrap_or_default(),
            p.dst_addr.unwrap_or_default(),
            p.proto.unwrap_or(0),
            id,
        );
        if p.fragment_offset == 0 && p.more_fragments {
            if self.fragments.len() < MAX_FRAGMENTS {
                self.fragments
                    .insert(key, (p.src_port.unwrap_or(0), p.dst_port.unwrap_or(0), ts));
            }
        } else if p.fragment_offset != 0 {
            match self.fragments.get(&key) {
                Some(&(sport, dport, _)) => {
                    p.src_port = Some(sport);
                    p.dst_port = Some(dport);
                }
                None => self.stats.orphan_fragments += 1,
            }
        }
    }

    /// Exports every flow still in the cache (end of capture, shutdown).
    pub fn finish(&mut self) {
        self.cache.flush(&mut self.expired);
        self.emit_expired();
    }

    /// Runs the timeouts at `now` without a packet (a quiet live interface).
    pub fn tick(&mut self, now: i64) {
        self.cache.expire(now, &mut self.expired);
        self.emit_expired();
    }

    fn emit_expired(&mut self) {
        for (key, flow, reason) in self.expired.drain(..) {
            let biflow = self.config.cache.biflow;
            let is_icmp = matches!(key.tuple.proto, 1 | 58);
            let reverse_seen = biflow && flow.packets[REVERSE] > 0;
            self.flows.append(&FlowRecord {
                observation_point_id: Some(self.config.observation_point_id),
                observation_domain_id: Some(self.config.domain),
                time_flow_start_ns: Some(flow.first_ns()),
                time_flow_end_ns: Some(flow.last_ns()),
                ip_version: Some(key.ip_version()),
                src_addr: Some(key.tuple.src),
                dst_addr: Some(key.tuple.dst),
                src_port: Some(key.tuple.src_port),
                dst_port: Some(key.tuple.dst_port),
                proto: Some(key.tuple.proto),
                bytes: Some(flow.bytes[FORWARD]),
                packets: Some(u64::from(flow.packets[FORWARD])),
                reverse_bytes: biflow.then_some(flow.bytes[REVERSE]),
                reverse_packets: biflow.then_some(u64::from(flow.packets[REVERSE])),
                tcp_flags: (key.tuple.proto == 6).then_some(flow.tcp_flags[FORWARD]),
                ip_tos: Some(flow.tos[FORWARD]),
                minimum_ttl: Some(flow.min_ttl[FORWARD]),
                maximum_ttl: Some(flow.max_ttl[FORWARD]),
                // a reverse direction that saw no packet has no TTL or flags
                reverse_tcp_flags: (reverse_seen && key.tuple.proto == 6)
                    .then_some(flow.tcp_flags[REVERSE]),
                reverse_minimum_ttl: reverse_seen.then_some(flow.min_ttl[REVERSE]),
                reverse_maximum_ttl: reverse_seen.then_some(flow.max_ttl[REVERSE]),
                icmp_type: is_icmp.then_some(flow.icmp_type),
                icmp_code: is_icmp.then_some(flow.icmp_code),
                in_if: Some(flow.interface),
                src_vlan: (key.vlan != 0).then_some(key.vlan),
                mpls_top_label: flow.mpls_label(),
                // RFC 7133: the layer-2 segment id's top octet says VXLAN (1)
                layer2_segment_id: (key.tunnel_kind == 2)
                    .then_some((1u64 << 56) | u64::from(key.tunnel_id)),
                gre_key: (key.tunnel_kind == 1 && key.tunnel_id != 0).then_some(key.tunnel_id),
                src_mac: Some(mac_to_u64(flow.src_mac)),
                dst_mac: Some(mac_to_u64(flow.dst_mac)),
                flow_end_reason: Some(reason as u8),
                ..FlowRecord::default()
            });
            self.stats.flows_exported += 1;
        }
    }

    /// Flow records ready for export (the builder is emptied).
    pub fn take_flows(&mut self) -> Result<RecordBatch, ArrowError> {
        self.flows.finish()
    }

    pub fn pending_flows(&self) -> usize {
        self.flows.len()
    }

    /// Packet reports ready for export (the builder is emptied).
    pub fn take_reports(&mut self) -> Result<RecordBatch, ArrowError> {
        self.reports.finish()
    }

    pub fn pending_reports(&self) -> usize {
        self.reports.len()
    }
}

/// The ports of a flow key. ICMP has none: an echo request and its reply
/// share their identifier (both directions of one biflow), any other ICMP
/// message is keyed by type and code in the destination port (the NetFlow
/// convention), so that, say, a neighbour solicitation and an advertisement
/// are two flows.
fn flow_ports(p: &PacketSummary) -> (u16, u16) {
    match (p.proto, p.icmp_echo_id, p.icmp_type) {
        (Some(1 | 58), Some(id), _) => (id, id),
        (Some(1 | 58), None, Some(t)) => {
            (0, u16::from(t) << 8 | u16::from(p.icmp_code.unwrap_or(0)))
        }
        _ => (p.src_port.unwrap_or(0), p.dst_port.unwrap_or(0)),
    }
}
