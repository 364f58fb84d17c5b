//! The flow cache: packets in, flow records out, by timeouts, TCP end,
//! size limit or the end of the capture (RFC 5470 metering process).

use hopscope_schema::FlowTuple;
use std::collections::VecDeque;

use hopscope_packet::PacketSummary;

use crate::table::FlowTable;

/// Why a flow record was exported (IE 136 flowEndReason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EndReason {
    IdleTimeout = 1,
    ActiveTimeout = 2,
    EndOfFlow = 3,
    ForcedEnd = 4,
    LackOfResources = 5,
}

/// What makes two packets one flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// The 5-tuple, of the type the correlator keys flows by.
    pub tuple: FlowTuple,
    /// 0 none, 1 GRE, 2 VXLAN: flows in different tunnels are different flows.
    pub tunnel_kind: u8,
    pub vlan: u16,
    /// GRE key or VXLAN VNI.
    pub tunnel_id: u32,
}

impl FlowKey {
    /// 4 for IPv4-mapped addresses, else 6.
    pub fn ip_version(&self) -> u8 {
        if hopscope_schema::is_ipv4_mapped(&self.tuple.src) {
            4
        } else {
            6
        }
    }
}

impl FlowKey {
    fn reversed(&self) -> FlowKey {
        FlowKey {
            tuple: self.tuple.reversed(),
            ..*self
        }
    }
}

/// One flow being metered: both directions side by side (index 0 forward,
/// 1 reverse), laid out flat so that an entry of the cache, key included,
/// stays within 128 octets (a million flows in 256 MB, map overhead included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowState {
    pub first_ns: i64,
    pub last_ns: i64,
    pub bytes: [u64; 2],
    pub packets: [u32; 2],
    pub interface: u32,
    /// Top MPLS label of the first packet, 20 bits in three octets (0: none).
    mpls_label: [u8; 3],
    pub tcp_flags: [u16; 2],
    pub min_ttl: [u8; 2],
    pub max_ttl: [u8; 2],
    /// ToS of the first packet of each direction.
    pub tos: [u8; 2],
    /// FIN seen forward (bit 0) and reverse (bit 1), RST seen (bit 2).
    end_flags: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
}

/// Index of the forward direction in [`FlowState`]'s pairs.
pub const FORWARD: usize = 0;
/// Index of the reverse direction (biflows).
pub const REVERSE: usize = 1;

impl FlowState {
    fn new(ts: i64, p: &PacketSummary, interface: u32) -> Self {
        Self {
            first_ns: ts,
            last_ns: ts,
            bytes: [0; 2],
            packets: [0; 2],
            interface,
            mpls_label: {
                let l = p.mpls_top_label.unwrap_or(0).to_be_bytes();
                [l[1], l[2], l[3]]
            },
            tcp_flags: [0; 2],
            min_ttl: [0; 2],
            max_ttl: [0; 2],
            tos: [0; 2],
            end_flags: 0,
            icmp_type: p.icmp_type.unwrap_or(0),
            icmp_code: p.icmp_code.unwrap_or(0),
            src_mac: p.src_mac.unwrap_or_default(),
            dst_mac: p.dst_mac.unwrap_or_default(),
        }
    }

    fn add(&mut self, d: usize, ts: i64, p: &PacketSummary) {
        let ttl = p.ttl.unwrap_or(0);
        if self.packets[d] == 0 {
            self.min_ttl[d] = ttl;
            self.max_ttl[d] = ttl;
            self.tos[d] = p.tos.unwrap_or(0);
        }
        self.packets[d] = self.packets[d].saturating_add(1);
        self.bytes[d] += u64::from(p.ip_total_length.unwrap_or(0));
        self.first_ns = self.first_ns.min(ts);
        self.last_ns = self.last_ns.max(ts);
        self.min_ttl[d] = self.min_ttl[d].min(ttl);
        self.max_ttl[d] = self.max_ttl[d].max(ttl);
        let flags = p.tcp_flags.unwrap_or(0);
        self.tcp_flags[d] |= flags;
        if flags & 0x01 != 0 {
            self.end_flags |= 1 << d;
        }
        if flags & 0x04 != 0 {
            self.end_flags |= 1 << 2;
        }
    }

    /// Top MPLS label of the flow's first packet, if it had one.
    pub fn mpls_label(&self) -> Option<u32> {
        let [a, b, c] = self.mpls_label;
        let label = u32::from_be_bytes([0, a, b, c]);
        (label != 0).then_some(label)
    }

    pub fn first_ns(&self) -> i64 {
        self.first_ns
    }

    pub fn last_ns(&self) -> i64 {
        self.last_ns
    }

    /// A TCP flow whose end was seen: RST, or FIN in every direction seen.
    fn ended(&self, biflow: bool) -> bool {
        let (fin_forward, fin_reverse, rst) = (
            self.end_flags & 1 != 0,
            self.end_flags & 2 != 0,
            self.end_flags & 4 != 0,
        );
        rst || (fin_forward && (!biflow || fin_reverse || self.packets[REVERSE] == 0))
    }
}

/// Cache behaviour.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// Both directions in one record (RFC 5103), the first packet's sender as source.
    pub biflow: bool,
    pub active_timeout_ns: i64,
    pub idle_timeout_ns: i64,
    /// Idle time after which a TCP flow whose end was seen is exported.
    pub end_timeout_ns: i64,
    pub max_flows: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            biflow: false,
            active_timeout_ns: 60_000_000_000,
            idle_timeout_ns: 15_000_000_000,
            end_timeout_ns: 1_000_000_000,
            max_flows: 1 << 20,
        }
    }
}

/// A finished flow.
pub type Expired = (FlowKey, FlowState, EndReason);

/// How many packets a flow's slot is asked for before the packet updates
/// it: enough that the memory access overlaps the parsing of the packets in
/// between, few enough that the waiting packets stay in cache.
const LOOKAHEAD: usize = 8;

/// A packet whose flow's slot is on its way from memory.
#[derive(Debug)]
struct Waiting {
    key: FlowKey,
    hash: u64,
    /// Hash of the reversed key (biflows only).
    reverse_hash: u64,
    ts: i64,
    packet: PacketSummary,
    interface: u32,
}

/// The flow cache.
///
/// Packets reach their flow [`LOOKAHEAD`] packets after [`FlowCache::add`]
/// (see `table.rs` for why); [`FlowCache::expire`], [`FlowCache::flush`] and
/// [`FlowCache::settle`] apply those still waiting first, so no packet is
/// ever left out of what they export.
#[derive(Debug)]
pub struct FlowCache {
    config: CacheConfig,
    flows: FlowTable,
    waiting: VecDeque<Waiting>,
    /// Flows exported early because the cache was full.
    pub emergency_expiries: u64,
}

impl FlowCache {
    pub fn new(config: CacheConfig) -> Self {
        Self {
            config,
            flows: FlowTable::with_capacity(config.max_flows.min(1 << 10)),
            waiting: VecDeque::with_capacity(LOOKAHEAD + 1),
            emergency_expiries: 0,
        }
    }

    /// Flows in the cache, not counting packets still waiting (see [`FlowCache::settle`]).
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.len() == 0
    }

    /// Meters one packet of `key`; flows pushed out to make room go to `expired`.
    pub fn add(
        &mut self,
        key: FlowKey,
        ts: i64,
        p: &PacketSummary,
        interface: u32,
        expired: &mut Vec<Expired>,
    ) {
        let hash = self.flows.hash(&key);
        self.flows.prefetch(hash);
        let reverse_hash = if self.config.biflow {
            let h = self.flows.hash(&key.reversed());
            self.flows.prefetch(h);
            h
        } else {
            0
        };
        self.waiting.push_back(Waiting {
            key,
            hash,
            reverse_hash,
            ts,
            packet: *p,
            interface,
        });
        if self.waiting.len() > LOOKAHEAD
            && let Some(w) = self.waiting.pop_front()
        {
            self.apply(&w, expired);
        }
    }

    /// Applies the packets still waiting for their flow's slot.
    pub fn settle(&mut self, expired: &mut Vec<Expired>) {
        while let Some(w) = self.waiting.pop_front() {
            self.apply(&w, expired);
        }
    }

    fn apply(&mut self, w: &Waiting, expired: &mut Vec<Expired>) {
        let (key, ts, p) = (w.key, w.ts, &w.packet);
        if let Some(flow) = self.flows.get_mut(w.hash, &key) {
            flow.add(FORWARD, ts, p);
            return;
        }
        if self.config.biflow
            && let Some(flow) = self.flows.get_mut(w.reverse_hash, &key.reversed())
        {
            flow.add(REVERSE, ts, p);
            return;
        }
        if self.flows.len() >= self.config.max_flows {
            self.make_room(ts, expired);
        }
        let mut flow = FlowState::new(ts, p, w.interface);
        flow.add(FORWARD, ts, p);
        self.flows.insert_new(w.hash, key, flow);
    }

    /// Exports what the cache is too full to keep: first the flows idle for
    /// more than half the idle timeout, then, if that is not enough, the
    /// eighth of the cache idle longest. Each is counted.
    fn make_room(&mut self, now: i64, expired: &mut Vec<Expired>) {
        let before = expired.len();
        let half_idle = self.config.idle_timeout_ns / 2;
        self.drain(
            expired,
            |_, f| now.saturating_sub(f.last_ns()) > half_idle,
            EndReason::LackOfResources,
        );
        if self.flows.len() >= self.config.max_flows {
            let mut ages: Vec<i64> = self.flows.iter().map(|(_, f)| f.last_ns()).collect();
            let cut = ages.len() / 8;
            let (_, &mut oldest_kept, _) = ages.select_nth_unstable(cut);
            self.drain(
                expired,
                |_, f| f.last_ns() <= oldest_kept,
                EndReason::LackOfResources,
            );
        }
        self.emergency_expiries += (expired.len() - before) as u64;
    }

    /// Exports flows whose timeouts passed at `now` (packet time).
    pub fn expire(&mut self, now: i64, expired: &mut Vec<Expired>) {
        self.settle(expired);
        let c = self.config;
        let reason = |flow: &FlowState| {
            if flow.ended(c.biflow) && now.saturating_sub(flow.last_ns()) > c.end_timeout_ns {
                Some(EndReason::EndOfFlow)
            } else if now.saturating_sub(flow.last_ns()) > c.idle_timeout_ns {
                Some(EndReason::IdleTimeout)
            } else if now.saturating_sub(flow.first_ns()) > c.active_timeout_ns {
                Some(EndReason::ActiveTimeout)
            } else {
                None
            }
        };
        self.flows.extract(
            |_, flow| reason(flow),
            |key, flow, reason| expired.push((key, flow, reason)),
        );
    }

    /// Exports every flow (end of capture or shutdown).
    pub fn flush(&mut self, expired: &mut Vec<Expired>) {
        self.settle(expired);
        let biflow = self.config.biflow;
        self.flows.drain(|key, flow| {
            let reason = if flow.ended(biflow) {
                EndReason::EndOfFlow
            } else {
                EndReason::ForcedEnd
            };
            expired.push((key, flow, reason));
        });
    }

    fn drain(
        &mut self,
        expired: &mut Vec<Expired>,
        mut pick: impl FnMut(&FlowKey, &FlowState) -> bool,
        reason: EndReason,
    ) {
        self.flows.extract(
            |key, flow| pick(key, flow).then_some(reason),
            |key, flow, reason| expired.push((key, flow, reason)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(a: u8, b: u8) -> FlowKey {
        let mut src = [0u8; 16];
        src[15] = a;
        let mut dst = [0u8; 16];
        dst[15] = b;
        FlowKey {
            tuple: FlowTuple {
                src,
                dst,
                src_port: 1000 + u16::from(a),
                dst_port: 80,
                proto: 6,
            },
            tunnel_kind: 0,
            tunnel_id: 0,
            vlan: 0,
        }
    }

    fn tcp(flags: u16, len: u16) -> PacketSummary {
        PacketSummary {
            tcp_flags: Some(flags),
            ip_total_length: Some(len),
            ttl: Some(64),
            ..Default::default()
        }
    }

    #[test]
    fn flow_state_is_small() {
        // the budget: 256 bytes per active flow including the key and the table's overhead
        // a million flows fill a table of 2^21 slots: 128 octets a slot
        // (its tag octet included) is 256 a flow
        let per_entry = std::mem::size_of::<(FlowKey, FlowState)>() + 1;
        assert!(per_entry <= 128, "{per_entry}");
    }

    #[test]
    fn biflow_joins_both_directions_and_ends_on_fin() {
        let mut c = FlowCache::new(CacheConfig {
            biflow: true,
            ..CacheConfig::default()
        });
        let mut out = Vec::new();
        c.add(key(1, 2), 0, &tcp(0x02, 60), 1, &mut out);
        c.add(key(1, 2).reversed(), 10, &tcp(0x12, 60), 1, &mut out);
        c.add(key(1, 2), 20, &tcp(0x11, 52), 1, &mut out);
        c.add(key(1, 2).reversed(), 30, &tcp(0x11, 52), 1, &mut out);
        c.settle(&mut out);
        assert_eq!(c.len(), 1);
        c.expire(30 + 2_000_000_000, &mut out);
        let (k, f, reason) = out.pop().unwrap();
        assert_eq!(k, key(1, 2));
        assert_eq!((f.packets, f.bytes[FORWARD]), ([2, 2], 112));
        assert_eq!(reason, EndReason::EndOfFlow);
    }

    #[test]
    fn idle_and_active_timeouts() {
        let config = CacheConfig {
            idle_timeout_ns: 100,
            active_timeout_ns: 1000,
            ..CacheConfig::default()
        };
        let mut c = FlowCache::new(config);
        let mut out = Vec::new();
        c.add(key(1, 2), 0, &tcp(0x10, 40), 0, &mut out);
        for t in (0..1100).step_by(50) {
            c.add(key(3, 4), t, &tcp(0x10, 40), 0, &mut out);
        }
        c.expire(1101, &mut out);
        let reasons: Vec<_> = out.iter().map(|(k, _, r)| (k.tuple.src[15], *r)).collect();
        assert!(reasons.contains(&(1, EndReason::IdleTimeout)));
        assert!(reasons.contains(&(3, EndReason::ActiveTimeout)));
    }

    #[test]
    fn a_full_cache_expires_early_and_counts_it() {
        let mut c = FlowCache::new(CacheConfig {
            max_flows: 64,
            ..CacheConfig::default()
        });
        let mut out = Vec::new();
        for i in 0..200u8 {
            c.add(key(i, 0), i64::from(i), &tcp(0x10, 40), 0, &mut out);
        }
        c.settle(&mut out);
        assert!(c.len() <= 64);
        assert_eq!(c.emergency_expiries as usize, out.len());
        assert_eq!(out.len() + c.len(), 200);
        assert!(out.iter().all(|(_, _, r)| *r == EndReason::LackOfResources));
    }
}
