//! Which observation points share flows with another point, so that the
//! totals buffer holds only the flows that can become journeys.
//!
//! Whole-flow totals need every point's records of a flow, so the
//! correlator holds each record for the settle time. At a collector's full
//! rate that is most of its work and memory, and all of it is wasted on
//! points that share no flow with any other (a lone exporter, the edge
//! routers of separate sites). So while the buffer is small every record is
//! held, as before; once it passes a threshold, a point's records are held
//! only if the point has been seen sharing a flow with another point. New
//! sharing is still learnt: one flow in [`SAMPLE_ONE_IN`], picked by a hash
//! of its key so that every point picks the same ones, is always held.
//!
//! A point marked sharing while its records were being let go may have let
//! go the first records of flows that were running then: from its mark on,
//! only flows that began after it (in the point's own clock, with a margin
//! for records that arrive out of order) are complete there.

use std::collections::HashMap;
use std::hash::BuildHasher;

use foldhash::fast::FixedState;

use crate::totals::{FlowTotal, TotalsKey};

/// One flow in this many is held whatever its points: the sample in which
/// new sharing between points shows.
pub(crate) const SAMPLE_ONE_IN: u64 = 16;

/// What is known of one point.
#[derive(Debug, Clone, Copy)]
struct PointState {
    /// Seen in a flow with another point: all its records are held.
    shares: bool,
    /// Some of its records were let go (not sharing, buffer over the
    /// threshold).
    let_go: bool,
    /// Flows that began at this point before this time (its clock) may miss
    /// records there.
    complete_from_ns: i64,
}

/// Points known to share flows, and which records to hold.
#[derive(Debug)]
pub(crate) struct Sharing {
    /// Buffered records below which every record is held.
    hold_all_below: usize,
    /// How far out of order a point's records may arrive (ns).
    margin_ns: i64,
    /// Looked up for every flow record: foldhash, not SipHash.
    points: HashMap<u64, PointState, foldhash::fast::RandomState>,
}

impl Sharing {
    pub fn new(hold_all_below: usize, margin_ns: i64) -> Self {
        Self {
            hold_all_below,
            margin_ns,
            points: HashMap::default(),
        }
    }

    /// Whether the flow is in the sample that is always held.
    pub fn sampled(key: &TotalsKey) -> bool {
        FixedState::with_seed(0x73686172696e67)
            .hash_one(key)
            .is_multiple_of(SAMPLE_ONE_IN)
    }

    fn point(&mut self, point: u64) -> &mut PointState {
        self.points.entry(point).or_insert(PointState {
            shares: false,
            let_go: false,
            complete_from_ns: i64::MIN,
        })
    }

    /// Whether to hold a record of `key` from `point`, with `buffered`
    /// records held already.
    pub fn holds(&mut self, key: &TotalsKey, point: u64, buffered: usize) -> bool {
        let hold_all = buffered < self.hold_all_below;
        let state = self.point(point);
        if state.shares || hold_all || Self::sampled(key) {
            return true;
        }
        state.let_go = true;
        false
    }

    /// Two points' records of one flow met in the buffer: each point's
    /// record (its point, and its last packet in its own clock).
    pub fn met(&mut self, records: [(u64, i64); 2]) {
        let margin_ns = self.margin_ns;
        for (point, last_ns) in records {
            let state = self.point(point);
            if !state.shares {
                state.shares = true;
                if state.let_go {
                    state.complete_from_ns = last_ns.saturating_add(margin_ns);
                }
            }
        }
    }

    /// Whether a flow's held records are all its records at every point:
    /// it is in the sample, or began at each point after the point's mark.
    pub fn complete(&self, key: &TotalsKey, records: &[FlowTotal]) -> bool {
        Self::sampled(key)
            || records.iter().all(|r| {
                let from = self
                    .points
                    .get(&r.point)
                    .map_or(i64::MIN, |p| p.complete_from_ns);
                r.first_ns >= from
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::FlowTuple;

    fn key(port: u16) -> TotalsKey {
        let tuple = FlowTuple {
            src: [1; 16],
            dst: [2; 16],
            src_port: port,
            dst_port: 443,
            proto: 6,
        };
        (tuple, 0)
    }

    /// A port whose flow is in the sample, and one whose flow is not.
    fn ports() -> (u16, u16) {
        let sampled = (0..).find(|&p| Sharing::sampled(&key(p))).unwrap();
        let not = (0..).find(|&p| !Sharing::sampled(&key(p))).unwrap();
        (sampled, not)
    }

    fn record(point: u64, port: u16, first_ns: i64) -> FlowTotal {
        crate::totals::ended_record(point, key(port).0, first_ns, first_ns + 5, first_ns + 10)
    }

    #[test]
    fn below_the_threshold_every_record_is_held() {
        let mut s = Sharing::new(100, 7);
        let (_, not) = ports();
        assert!(s.holds(&key(not), 1, 99));
        assert!(!s.holds(&key(not), 1, 100));
    }

    #[test]
    fn the_sample_is_held_and_teaches_which_points_share() {
        let mut s = Sharing::new(0, 7);
        let (sampled, not) = ports();
        assert!(!s.holds(&key(not), 1, 5), "point 1 shares nothing yet");
        assert!(s.holds(&key(sampled), 1, 5));
        assert!(s.holds(&key(sampled), 2, 5));
        s.met([(1, 1000), (2, 1003)]);
        assert!(s.holds(&key(not), 1, 5));
        assert!(s.holds(&key(not), 2, 5));
        assert!(!s.holds(&key(not), 3, 5), "point 3 still shares nothing");
        // about one flow in SAMPLE_ONE_IN
        let held = (0..16_000).filter(|&p| Sharing::sampled(&key(p))).count();
        assert!((800..1200).contains(&held), "{held}");
    }

    #[test]
    fn flows_running_when_a_point_was_marked_are_incomplete_there() {
        let mut s = Sharing::new(0, 7);
        let (sampled, not) = ports();
        assert!(!s.holds(&key(not), 1, 5));
        // point 2 never let a record go: complete from the start
        s.met([(1, 1000), (2, 500)]);
        let began_before = [record(1, not, 1006), record(2, not, 1006)];
        let began_after = [record(1, not, 1007), record(2, not, 1)];
        assert!(!s.complete(&key(not), &began_before));
        assert!(s.complete(&key(not), &began_after));
        // the sample was always held: complete whenever it began
        let sampled_flow = [record(1, sampled, 0), record(2, sampled, 0)];
        assert!(s.complete(&key(sampled), &sampled_flow));
    }
}
