//! Observations: packet reports as the correlator reads them, and their
//! grouping into trajectories (one selected packet's sightings).

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampNanosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};

use crate::CorrelateError;
use crate::input::{address, column};
use crate::key::FlowTuple;

/// Who exported a report: sampler address and observation domain. Telemetry
/// loss is counted per exporter.
pub type ExporterId = ([u8; 16], u32);

/// One packet report: a selected packet seen at one observation point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub point: u64,
    pub exporter: ExporterId,
    /// Observation time on the point's own clock.
    pub time_ns: i64,
    pub digest: u64,
    pub ttl: u8,
    /// IP total length.
    pub length: u32,
    pub ip_version: u8,
    pub tuple: FlowTuple,
}

/// Appends the observations of a `packet_reports` batch to `out`; returns
/// how many rows were skipped because a field the correlator needs (point,
/// time, digest) was missing.
pub fn read_reports(
    batch: &RecordBatch,
    out: &mut Vec<Observation>,
) -> Result<u64, CorrelateError> {
    let col = |name: &str| column(batch, "packet reports", name);
    let point = col("observation_point_id")?.as_primitive::<UInt64Type>();
    let time = col("observation_time_ns")?.as_primitive::<TimestampNanosecondType>();
    let digest = col("digest")?.as_primitive::<UInt64Type>();
    let ttl = col("ip_ttl")?.as_primitive::<UInt8Type>();
    let length = col("length")?.as_primitive::<UInt32Type>();
    let version = col("ip_version")?.as_primitive::<UInt8Type>();
    let sampler = col("sampler_address")?.as_fixed_size_binary();
    let domain = col("observation_domain_id")?.as_primitive::<UInt32Type>();
    let src = col("src_addr")?.as_fixed_size_binary();
    let dst = col("dst_addr")?.as_fixed_size_binary();
    let sport = col("src_port")?.as_primitive::<UInt16Type>();
    let dport = col("dst_port")?.as_primitive::<UInt16Type>();
    let proto = col("proto")?.as_primitive::<UInt8Type>();
    let addr = |a, i| address(a, i).unwrap_or([0; 16]);
    let mut skipped = 0;
    out.reserve(batch.num_rows());
    for i in 0..batch.num_rows() {
        if point.is_null(i) || time.is_null(i) || digest.is_null(i) {
            skipped += 1;
            continue;
        }
        out.push(Observation {
            point: point.value(i),
            exporter: (
                addr(sampler, i),
                if domain.is_null(i) {
                    0
                } else {
                    domain.value(i)
                },
            ),
            time_ns: time.value(i),
            digest: digest.value(i),
            ttl: if ttl.is_null(i) { 0 } else { ttl.value(i) },
            length: if length.is_null(i) {
                0
            } else {
                length.value(i)
            },
            ip_version: if version.is_null(i) {
                0
            } else {
                version.value(i)
            },
            tuple: FlowTuple {
                src: addr(src, i),
                dst: addr(dst, i),
                src_port: if sport.is_null(i) { 0 } else { sport.value(i) },
                dst_port: if dport.is_null(i) { 0 } else { dport.value(i) },
                proto: if proto.is_null(i) { 0 } else { proto.value(i) },
            },
        });
    }
    Ok(skipped)
}

/// The observation of a trajectory nearest its source: the highest TTL,
/// then the earliest. A journey is keyed by the tuple seen there (before
/// any NAT on the way).
pub(crate) fn first_hop(trajectory: &[Observation]) -> &Observation {
    trajectory
        .iter()
        .min_by_key(|o| (std::cmp::Reverse(o.ttl), o.time_ns))
        .expect("a trajectory is never empty")
}

/// Splits observations sorted by (digest, time) into trajectories, each a
/// contiguous range of the reordered slice.
///
/// Within one digest, each observation joins the oldest open trajectory
/// that lacks its point and began at most `max_path_delay_ns` before it;
/// otherwise it starts a new one. Packets identical in every hashed field
/// (duplicate ACKs) are thereby matched first-in, first-out at every point,
/// which places their losses right as long as the path does not reorder them.
pub(crate) fn trajectories(sorted: &mut [Observation], max_path_delay_ns: i64) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut start = 0usize;
    while start < sorted.len() {
        let digest = sorted[start].digest;
        // groups are a few observations long: a linear scan beats a binary
        // search over the whole rest of the window (its probes miss the cache)
        let end = start
            + sorted[start..]
                .iter()
                .position(|o| o.digest != digest)
                .unwrap_or(sorted.len() - start);
        let group = &mut sorted[start..end];
        let each_point_once = group
            .iter()
            .enumerate()
            .all(|(i, o)| group[..i].iter().all(|p| p.point != o.point));
        let in_time = group[group.len() - 1].time_ns - group[0].time_ns <= max_path_delay_ns;
        if each_point_once && in_time {
            // the common case: one packet, each point once
            out.push((start as u32, end as u32));
        } else {
            // (first time, points seen) per open trajectory, and each observation's trajectory
            let mut open: Vec<(i64, Vec<u64>)> = Vec::new();
            let mut member: Vec<(u32, i64)> = Vec::with_capacity(group.len());
            for o in group.iter() {
                let t = open.iter().position(|(first, points)| {
                    o.time_ns - first <= max_path_delay_ns && !points.contains(&o.point)
                });
                let t = match t {
                    Some(t) => t,
                    None => {
                        open.push((o.time_ns, Vec::new()));
                        open.len() - 1
                    }
                };
                open[t].1.push(o.point);
                member.push((t as u32, o.time_ns));
            }
            let mut keyed: Vec<((u32, i64), Observation)> =
                member.into_iter().zip(group.iter().copied()).collect();
            keyed.sort_by_key(|(k, _)| *k);
            for (slot, (_, o)) in group.iter_mut().zip(&keyed) {
                *slot = *o;
            }
            let mut at = start;
            for (_, points) in &open {
                out.push((at as u32, (at + points.len()) as u32));
                at += points.len();
            }
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(point: u64, digest: u64, time_ns: i64) -> Observation {
        Observation {
            point,
            exporter: ([0; 16], 0),
            time_ns,
            digest,
            ttl: 64,
            length: 100,
            ip_version: 4,
            tuple: FlowTuple::default(),
        }
    }

    #[test]
    fn repeated_digests_become_separate_trajectories() {
        let mut sorted = [
            obs(1, 7, 0),
            obs(2, 7, 10),
            obs(1, 7, 20), // same packet content again: a new trajectory
            obs(2, 7, 30),
            obs(1, 9, 0),
            obs(1, 9, 5_000_000_000), // too far apart to be one packet
        ];
        assert_eq!(
            trajectories(&mut sorted, 1_000_000_000),
            vec![(0, 2), (2, 4), (4, 5), (5, 6)]
        );
    }

    #[test]
    fn identical_packets_in_flight_together_are_matched_in_order() {
        // two identical packets 5 apart cross points 1, 2, 3; the first is lost after 2
        let mut sorted = [
            obs(1, 7, 0),
            obs(1, 7, 5),
            obs(2, 7, 10),
            obs(2, 7, 15),
            obs(3, 7, 25),
        ];
        let t = trajectories(&mut sorted, 1_000);
        assert_eq!(t, vec![(0, 3), (3, 5)]);
        let points = |r: (u32, u32)| -> Vec<u64> {
            sorted[r.0 as usize..r.1 as usize]
                .iter()
                .map(|o| o.point)
                .collect()
        };
        assert_eq!(points(t[0]), vec![1, 2, 3]);
        assert_eq!(
            points(t[1]),
            vec![1, 2],
            "one packet last seen at 2: one lost after it"
        );
    }
}
