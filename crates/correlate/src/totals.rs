//! Loss from whole-flow totals: when several points exported flow records
//! for the same flow and each saw it end (idle timeout or TCP end, not cut
//! by an active timeout or a full cache), the packets counted at one point
//! and missing at the next were lost between them. This needs no packet
//! selection at all, so it works on routers' own NetFlow and IPFIX; records
//! from both sides of a NAT are joined through the
//! [`NatTable`](crate::nat::NatTable).

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::ArrowPrimitiveType;
use arrow_array::types::{TimestampNanosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, PrimitiveArray, RecordBatch};

use crate::CorrelateError;
use crate::engine::TelemetryLoss;
use crate::input::{address, column};
use crate::journey::{
    Hop, HopPoint, Journey, JourneyFlag, LossEstimate, NatTranslation, Segment, node_and_interface,
    point_name,
};
use crate::key::FlowTuple;
use crate::nat::{has_ports, without_ports};
use crate::observe::ExporterId;

/// flowEndReason values after which a point has seen the whole flow.
const ENDED: [u8; 2] = [1, 3];

/// One flow record as the totals need it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowTotal {
    pub point: u64,
    pub exporter: ExporterId,
    pub received_ns: i64,
    pub first_ns: i64,
    pub last_ns: i64,
    /// The flow as this point saw it (translated, beyond a NAT).
    pub tuple: FlowTuple,
    pub packets: u64,
    pub bytes: u64,
    pub ttl_min: u8,
    pub ttl_max: u8,
    /// Idle timeout or end of flow: this point's last record of the flow.
    pub ended: bool,
}

/// What a batch of flow records held.
#[derive(Debug, Default)]
pub struct FlowRead {
    pub totals: Vec<FlowTotal>,
    /// NAT events and post-NAT fields, as (time, event or 0, inside, outside).
    pub translations: Vec<(i64, i64, Option<u8>, FlowTuple, FlowTuple)>,
    /// Records that cannot count: sampled, or without time or point.
    pub skipped: u64,
}

/// The point a record was observed at: its observation point id, or for a
/// router that sends none, its exporter and input interface.
fn point_of(id: Option<u64>, exporter: &ExporterId, in_if: Option<u32>) -> u64 {
    id.unwrap_or_else(|| {
        let mut key = exporter.0.to_vec();
        key.extend_from_slice(&exporter.1.to_be_bytes());
        key.extend_from_slice(&in_if.unwrap_or(0).to_be_bytes());
        // the top bit keeps these apart from probes' (32-bit CRC) ids
        u64::from_be_bytes(
            sha1_smol::Sha1::from(&key).digest().bytes()[..8]
                .try_into()
                .unwrap(),
        ) | 1 << 63
    })
}

/// Row `i` of `a`, if not null.
fn get<T: ArrowPrimitiveType>(a: &PrimitiveArray<T>, i: usize) -> Option<T::Native> {
    if a.is_valid(i) {
        Some(a.value(i))
    } else {
        None
    }
}

/// The columns of the `flows` table that [`read_flows`] reads.
pub const FLOW_COLUMNS: [&str; 23] = [
    "time_received_ns",
    "time_flow_start_ns",
    "time_flow_end_ns",
    "observation_point_id",
    "sampler_address",
    "observation_domain_id",
    "in_if",
    "src_addr",
    "dst_addr",
    "src_port",
    "dst_port",
    "proto",
    "packets",
    "bytes",
    "sampling_rate",
    "minimum_ttl",
    "maximum_ttl",
    "flow_end_reason",
    "post_nat_src_addr",
    "post_nat_dst_addr",
    "post_nat_src_port",
    "post_nat_dst_port",
    "nat_event",
];

/// Reads a batch of the flow table.
pub fn read_flows(batch: &RecordBatch) -> Result<FlowRead, CorrelateError> {
    let col = |name: &str| column(batch, "flow records", name);
    let ts = |name: &str| -> Result<_, CorrelateError> {
        Ok(col(name)?.as_primitive::<TimestampNanosecondType>())
    };
    let received = ts("time_received_ns")?;
    let start = ts("time_flow_start_ns")?;
    let end = ts("time_flow_end_ns")?;
    let point = col("observation_point_id")?.as_primitive::<UInt64Type>();
    let sampler = col("sampler_address")?.as_fixed_size_binary();
    let domain = col("observation_domain_id")?.as_primitive::<UInt32Type>();
    let in_if = col("in_if")?.as_primitive::<UInt32Type>();
    let src = col("src_addr")?.as_fixed_size_binary();
    let dst = col("dst_addr")?.as_fixed_size_binary();
    let sport = col("src_port")?.as_primitive::<UInt16Type>();
    let dport = col("dst_port")?.as_primitive::<UInt16Type>();
    let proto = col("proto")?.as_primitive::<UInt8Type>();
    let packets = col("packets")?.as_primitive::<UInt64Type>();
    let bytes = col("bytes")?.as_primitive::<UInt64Type>();
    let sampling = col("sampling_rate")?.as_primitive::<UInt64Type>();
    let ttl_min = col("minimum_ttl")?.as_primitive::<UInt8Type>();
    let ttl_max = col("maximum_ttl")?.as_primitive::<UInt8Type>();
    let reason = col("flow_end_reason")?.as_primitive::<UInt8Type>();
    let nat_src = col("post_nat_src_addr")?.as_fixed_size_binary();
    let nat_dst = col("post_nat_dst_addr")?.as_fixed_size_binary();
    let nat_sport = col("post_nat_src_port")?.as_primitive::<UInt16Type>();
    let nat_dport = col("post_nat_dst_port")?.as_primitive::<UInt16Type>();
    let nat_event = col("nat_event")?.as_primitive::<UInt8Type>();

    let mut out = FlowRead {
        totals: Vec::with_capacity(batch.num_rows()),
        ..FlowRead::default()
    };
    // a batch comes from a few exporters and interfaces: one digest each
    let mut points: HashMap<(ExporterId, Option<u32>), u64> = HashMap::new();
    for i in 0..batch.num_rows() {
        let at = [received.is_valid(i), start.is_valid(i), end.is_valid(i)];
        let tuple = FlowTuple {
            src: address(src, i).unwrap_or([0; 16]),
            dst: address(dst, i).unwrap_or([0; 16]),
            src_port: get(sport, i).unwrap_or(0),
            dst_port: get(dport, i).unwrap_or(0),
            proto: get(proto, i).unwrap_or(0),
        };
        let time = if at[2] {
            end.value(i)
        } else if at[0] {
            received.value(i)
        } else {
            out.skipped += 1;
            continue;
        };
        // a translation, from a NAT event or from post-NAT fields
        let event = get(nat_event, i);
        let translated = nat_src.is_valid(i)
            || nat_dst.is_valid(i)
            || nat_sport.is_valid(i)
            || nat_dport.is_valid(i);
        if translated {
            let outside = FlowTuple {
                src: address(nat_src, i).unwrap_or(tuple.src),
                dst: address(nat_dst, i).unwrap_or(tuple.dst),
                src_port: get(nat_sport, i).unwrap_or(tuple.src_port),
                dst_port: get(nat_dport, i).unwrap_or(tuple.dst_port),
                proto: tuple.proto,
            };
            let from = if at[1] { start.value(i) } else { time };
            out.translations.push((from, time, event, tuple, outside));
        }
        if event.is_some() {
            // an event is about the translation, not about traffic
            continue;
        }
        let rate = get(sampling, i).unwrap_or(1);
        if rate > 1 || !packets.is_valid(i) {
            out.skipped += 1;
            continue;
        }
        let exporter = (
            address(sampler, i).unwrap_or([0; 16]),
            get(domain, i).unwrap_or(0),
        );
        let point = match get(point, i) {
            Some(id) => id,
            None => *points
                .entry((exporter, get(in_if, i)))
                .or_insert_with(|| point_of(None, &exporter, get(in_if, i))),
        };
        out.totals.push(FlowTotal {
            point,
            exporter,
            received_ns: if at[0] { received.value(i) } else { time },
            first_ns: if at[1] { start.value(i) } else { time },
            last_ns: time,
            tuple,
            packets: packets.value(i),
            bytes: get(bytes, i).unwrap_or(0),
            ttl_min: get(ttl_min, i).unwrap_or(0),
            ttl_max: get(ttl_max, i).unwrap_or(0),
            ended: reason.is_valid(i) && ENDED.contains(&reason.value(i)),
        });
    }
    Ok(out)
}

/// Records of one flow (one direction, inside tuple) waiting to be complete.
/// The first record is kept inline: most flows are seen at one point, and a
/// collector buffers every flow for the settle time (a million a second at
/// full rate), so a heap allocation per flow was most of the correlator's
/// time and memory.
#[derive(Debug)]
pub(crate) struct Pending {
    first: FlowTotal,
    more: Vec<FlowTotal>,
    last_received_ns: i64,
}

impl Pending {
    /// Records of the flow.
    pub fn len(&self) -> usize {
        1 + self.more.len()
    }

    pub fn into_records(self) -> Vec<FlowTotal> {
        let mut records = Vec::with_capacity(1 + self.more.len());
        records.push(self.first);
        records.extend(self.more);
        records
    }
}

/// A flow as the correlator groups it: its tuple (inside any NAT, for
/// totals) and its address space.
pub(crate) type TotalsKey = (FlowTuple, u16);

/// Flow records grouped by flow until every point has seen its flow end.
///
/// The flows live in a slab and the map holds their slot numbers: flows
/// come and go at the collector's full rate, and a map of whole records
/// moved every record at each of its resizes (a quarter of the
/// correlator's time, in page faults).
#[derive(Debug, Default)]
pub(crate) struct TotalsBuffer {
    slots: HashMap<TotalsKey, u32, foldhash::fast::RandomState>,
    flows: Vec<Option<(TotalsKey, Pending)>>,
    free: Vec<u32>,
    records: usize,
    /// ICMP flows by their tuple without the echo id: translations of ICMP
    /// are known without it (see [`NatTable`](crate::nat::NatTable)).
    icmp: HashMap<FlowTuple, Vec<TotalsKey>, foldhash::fast::RandomState>,
}

impl TotalsBuffer {
    /// A buffer with room for `flows` flows: reserved, not touched, so that
    /// filling it at full rate never copies it to grow.
    pub fn with_capacity(flows: usize) -> Self {
        Self {
            slots: HashMap::with_capacity_and_hasher(flows, Default::default()),
            flows: Vec::with_capacity(flows),
            ..Self::default()
        }
    }

    /// Flow records buffered.
    pub fn len(&self) -> usize {
        self.records
    }

    /// Adds a record of the flow `key`. When the flow held a record of
    /// another point, that record's point and last packet time: the two
    /// points share flows.
    pub fn add(&mut self, key: TotalsKey, record: FlowTotal) -> Option<(u64, i64)> {
        self.records += 1;
        if let Some(&slot) = self.slots.get(&key)
            && let Some((_, p)) = &mut self.flows[slot as usize]
        {
            let other = std::iter::once(&p.first)
                .chain(&p.more)
                .find(|r| r.point != record.point)
                .map(|r| (r.point, r.last_ns));
            p.last_received_ns = p.last_received_ns.max(record.received_ns);
            p.more.push(record);
            return other;
        }
        let pending = Pending {
            first: record,
            more: Vec::new(),
            last_received_ns: record.received_ns,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.flows[slot as usize] = Some((key, pending));
                slot
            }
            None => {
                self.flows.push(Some((key, pending)));
                (self.flows.len() - 1) as u32
            }
        };
        self.slots.insert(key, slot);
        if !has_ports(&key.0) {
            self.icmp
                .entry(without_ports(&key.0))
                .or_default()
                .push(key);
        }
        None
    }

    /// The flows buffered under `tuple` (without ports for ICMP) or its
    /// reverse, in any of `spaces`.
    pub fn keys_of(&self, tuple: &FlowTuple, spaces: &[u16]) -> Vec<TotalsKey> {
        let mut keys = Vec::new();
        for t in [*tuple, tuple.reversed()] {
            if has_ports(&t) {
                keys.extend(
                    spaces
                        .iter()
                        .map(|&space| (t, space))
                        .filter(|k| self.slots.contains_key(k)),
                );
            } else if let Some(icmp) = self.icmp.get(&t) {
                keys.extend(icmp.iter().filter(|k| spaces.contains(&k.1)));
            }
        }
        keys
    }

    /// The records of the flow `key`.
    pub fn records(&self, key: &TotalsKey) -> impl Iterator<Item = &FlowTotal> {
        self.slots
            .get(key)
            .and_then(|&slot| self.flows[slot as usize].as_ref())
            .into_iter()
            .flat_map(|(_, p)| std::iter::once(&p.first).chain(&p.more))
    }

    /// Takes the flow `key` out of the buffer.
    pub fn remove(&mut self, key: &TotalsKey) -> Option<Pending> {
        let slot = *self.slots.get(key)?;
        self.take_slot(slot as usize).map(|(_, p)| p)
    }

    fn take_slot(&mut self, slot: usize) -> Option<(TotalsKey, Pending)> {
        let (key, p) = self.flows[slot].take()?;
        self.slots.remove(&key);
        if !has_ports(&key.0) {
            let portless = without_ports(&key.0);
            if let Some(keys) = self.icmp.get_mut(&portless) {
                keys.retain(|k| k != &key);
                if keys.is_empty() {
                    self.icmp.remove(&portless);
                }
            }
        }
        self.free.push(slot as u32);
        self.records -= p.len();
        Some((key, p))
    }

    /// Flows whose last record came before `settled_ns` (every point has
    /// had time to export its last record), taken out of the buffer.
    pub fn take_settled(&mut self, settled_ns: i64) -> Vec<(TotalsKey, Pending)> {
        self.take_where(|p| p.last_received_ns < settled_ns)
    }

    /// When more than `max` records wait: the flows whose last record came
    /// earliest, taken out until nine tenths of `max` flows remain, so that a
    /// collector at full rate holds a bounded buffer rather than every flow
    /// of the settle time.
    pub fn take_oldest_over(&mut self, max: usize) -> Vec<(TotalsKey, Pending)> {
        if self.records <= max {
            return Vec::new();
        }
        let keep = max - max / 10;
        let mut times: Vec<i64> = self
            .flows
            .iter()
            .flatten()
            .map(|(_, p)| p.last_received_ns)
            .collect();
        let cut = times.len().saturating_sub(keep.min(times.len()));
        if cut == 0 {
            return Vec::new();
        }
        let (_, &mut oldest_kept, _) = times.select_nth_unstable(cut - 1);
        self.take_where(|p| p.last_received_ns <= oldest_kept)
    }

    fn take_where(&mut self, pick: impl Fn(&Pending) -> bool) -> Vec<(TotalsKey, Pending)> {
        let mut taken = Vec::new();
        for slot in 0..self.flows.len() {
            if self.flows[slot].as_ref().is_some_and(|(_, p)| pick(p))
                && let Some(flow) = self.take_slot(slot)
            {
                taken.push(flow);
            }
        }
        taken
    }

    pub fn take_all(&mut self) -> Vec<(TotalsKey, Pending)> {
        self.take_where(|_| true)
    }
}

/// What a totals journey needs besides the records.
#[derive(Debug)]
pub(crate) struct TotalsContext<'a> {
    pub names: &'a HashMap<u64, String>,
    pub topology_rank: &'a HashMap<u64, usize>,
    /// When exporters lost records: a flow record missing at one point
    /// would read as network loss.
    pub telemetry: &'a [TelemetryLoss],
}

/// Why a flow's records make no journey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoJourney {
    /// Seen at one point only.
    OnePoint,
    /// Some point has not seen the flow end (or its last record is missing).
    Unfinished,
}

/// The journey of one flow from its points' totals: hops ordered by TTL,
/// then configured topology, then first packet; per segment, the packets
/// counted upstream and missing downstream.
pub(crate) fn totals_journey(
    records: &[FlowTotal],
    address_space: u16,
    cx: &TotalsContext<'_>,
) -> Result<Journey, NoJourney> {
    // per point: its records summed (active timeouts cut a flow in several)
    let mut points: Vec<(u64, Vec<&FlowTotal>)> = Vec::new();
    for r in records {
        match points.iter_mut().find(|(p, _)| *p == r.point) {
            Some((_, v)) => v.push(r),
            None => points.push((r.point, vec![r])),
        }
    }
    if points.len() < 2 {
        return Err(NoJourney::OnePoint);
    }
    if points.iter().any(|(_, v)| !v.iter().any(|r| r.ended)) {
        return Err(NoJourney::Unfinished);
    }
    let mut hops: Vec<(HopPoint, FlowTuple, ExporterId)> = points
        .iter()
        .map(|(point, v)| {
            let name = point_name(cx.names, *point);
            let (node, interface) = node_and_interface(&name);
            let first = v.iter().min_by_key(|r| r.first_ns).expect("a record");
            (
                HopPoint {
                    point: *point,
                    name,
                    node,
                    interface,
                    first_ns: first.first_ns,
                    last_ns: v.iter().map(|r| r.last_ns).max().unwrap_or(first.last_ns),
                    packets: v.iter().map(|r| r.packets).sum(),
                    bytes: v.iter().map(|r| r.bytes).sum(),
                    ttl_min: v.iter().map(|r| r.ttl_min).min().unwrap_or(0),
                    ttl_max: v.iter().map(|r| r.ttl_max).max().unwrap_or(0),
                    clock: None,
                },
                first.tuple,
                first.exporter,
            )
        })
        .collect();
    hops.sort_by(|(a, _, _), (b, _, _)| {
        b.ttl_max.cmp(&a.ttl_max).then_with(|| {
            match (
                cx.topology_rank.get(&a.point),
                cx.topology_rank.get(&b.point),
            ) {
                (Some(x), Some(y)) => x.cmp(y),
                _ => a.first_ns.cmp(&b.first_ns),
            }
        })
    });

    let first_ns = hops.iter().map(|h| h.0.first_ns).min().unwrap_or(0);
    let last_ns = hops.iter().map(|h| h.0.last_ns).max().unwrap_or(0);
    // a gap up to a minute after the flow's end may have taken its last record
    let telemetry_doubt = hops.iter().any(|(_, _, e)| {
        cx.telemetry.iter().any(|t| {
            t.exporter == *e
                && t.time_ns >= first_ns
                && t.time_ns <= last_ns.saturating_add(60_000_000_000)
        })
    });
    let mut flags = vec![JourneyFlag::FlowTotals];
    let mut segments = Vec::with_capacity(hops.len() - 1);
    let mut nat = Vec::new();
    let mut lost_total = 0;
    for pair in hops.windows(2) {
        let (up, up_tuple, _) = &pair[0];
        let (down, down_tuple, _) = &pair[1];
        let missing = up.packets.saturating_sub(down.packets);
        if down.packets > up.packets {
            flags.push(JourneyFlag::Duplicates);
        }
        // a record lost on the way to the collector would look like loss
        let lost = if telemetry_doubt { 0 } else { missing };
        lost_total += lost;
        let evidence = if telemetry_doubt {
            format!(
                "flow totals: {} packets at {}, {} at {}; not attributed: an exporter lost records meanwhile",
                up.packets, up.name, down.packets, down.name
            )
        } else {
            format!(
                "flow totals: {} packets at {}, {} at {}",
                up.packets, up.name, down.packets, down.name
            )
        };
        segments.push(Segment {
            from: up.name.clone(),
            to: down.name.clone(),
            delay: None,
            delay_kind: "unknown",
            delay_bound_ns: None,
            loss: LossEstimate::new(
                up.packets,
                lost,
                if telemetry_doubt { missing } else { 0 },
                evidence,
            ),
        });
        if up_tuple != down_tuple {
            nat.push(NatTranslation {
                at: down.name.clone(),
                before: *up_tuple,
                after: *down_tuple,
                packets: down.packets,
            });
        }
    }
    if telemetry_doubt {
        flags.push(JourneyFlag::TelemetryLoss);
    }
    if !nat.is_empty() {
        flags.push(JourneyFlag::Nat);
    }
    flags.dedup();
    let tuple = hops[0].1;
    let packets = hops[0].0.packets;
    let bytes = hops[0].0.bytes;
    let delivered = hops.last().map_or(0, |h| h.0.packets);
    Ok(Journey {
        ip_version: if hopscope_schema::mapped_to_ip(tuple.src).is_ipv4() {
            4
        } else {
            6
        },
        community_id: tuple.community_id_seeded(address_space),
        tuple,
        first_ns,
        last_ns,
        hops: hops
            .into_iter()
            .map(|(p, _, _)| Hop {
                points: vec![p],
                telemetry_missing: 0,
            })
            .collect(),
        segments,
        end_to_end: None,
        end_to_end_kind: "unknown",
        end_to_end_bound_ns: None,
        packets,
        bytes,
        delivered,
        lost: lost_total,
        telemetry_lost: 0,
        nat,
        flags,
    })
}

/// A whole (ended) one-packet record of `tuple` at `point`, for tests.
#[cfg(test)]
pub(crate) fn ended_record(
    point: u64,
    tuple: FlowTuple,
    first_ns: i64,
    last_ns: i64,
    received_ns: i64,
) -> FlowTotal {
    FlowTotal {
        point,
        exporter: ([0; 16], 0),
        received_ns,
        first_ns,
        last_ns,
        tuple,
        packets: 1,
        bytes: 60,
        ttl_min: 64,
        ttl_max: 64,
        ended: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u16, received_ns: i64) -> FlowTotal {
        let tuple = FlowTuple {
            src: [0; 16],
            dst: [1; 16],
            src_port: n,
            dst_port: 80,
            proto: 6,
        };
        ended_record(1, tuple, received_ns, received_ns, received_ns)
    }

    #[test]
    fn a_full_buffer_gives_up_its_oldest_flows_and_counts_its_records() {
        let mut b = TotalsBuffer::default();
        let key = |r: &FlowTotal| (r.tuple, 0);
        for n in 0..100u16 {
            let r = record(n, i64::from(n));
            assert_eq!(b.add(key(&r), r), None);
        }
        // flow 3 seen at a second record, late: it is among the newest
        let late = record(3, 1000);
        assert_eq!(b.add(key(&late), late), None, "the same point");
        assert_eq!(b.len(), 101);
        assert!(b.take_oldest_over(200).is_empty());
        let taken = b.take_oldest_over(50);
        // 45 flows are kept (a tenth of the bound freed): 46 records
        assert_eq!(b.len(), 46);
        assert_eq!(taken.iter().map(|(_, r)| r.len()).sum::<usize>(), 55);
        let ports: Vec<u16> = taken.iter().map(|(k, _)| k.0.src_port).collect();
        assert!(ports.iter().all(|&p| p < 56 && p != 3), "{ports:?}");
        // what is left settles by time, the late record's flow last
        assert_eq!(b.take_settled(999).len(), 44);
        let last = b.take_all();
        assert_eq!((last.len(), last[0].1.len(), b.len()), (1, 2, 0));
    }

    /// A translation names its outside tuple without the ICMP echo id:
    /// the buffered ICMP flows under it are found by their tuple without
    /// it, in either direction, and only in the spaces asked for.
    #[test]
    fn flows_under_a_translated_tuple_are_found_with_or_without_ports() {
        let mut b = TotalsBuffer::default();
        let udp = record(7, 1).tuple;
        let echo = |id: u16| FlowTuple {
            proto: 1,
            src_port: id,
            dst_port: 0,
            ..udp
        };
        for (tuple, space) in [
            (udp, 0),
            (echo(1), 0),
            (echo(2).reversed(), 0),
            (echo(3), 5),
        ] {
            b.add((tuple, space), ended_record(1, tuple, 1, 2, 3));
        }
        assert_eq!(b.keys_of(&udp.reversed(), &[0]), vec![(udp, 0)]);
        let portless = without_ports(&echo(9));
        let mut found = b.keys_of(&portless, &[0]);
        found.sort_by_key(|k| k.0.src_port.max(k.0.dst_port));
        assert_eq!(found, vec![(echo(1), 0), (echo(2).reversed(), 0)]);
        assert_eq!(b.keys_of(&portless, &[5]), vec![(echo(3), 5)]);
        // taken out, a flow is no longer found
        assert_eq!(b.remove(&(echo(1), 0)).map(|p| p.len()), Some(1));
        assert_eq!(b.keys_of(&portless, &[0]), vec![(echo(2).reversed(), 0)]);
        b.take_all();
        assert!(b.keys_of(&portless, &[0, 5]).is_empty() && b.icmp.is_empty());
    }
}
