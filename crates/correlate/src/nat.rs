//! Address translations as NAT devices report them (RFC 8158 natEvent
//! records, or flow records carrying post-NAT fields), kept with the time
//! each was valid, so that records of one flow from both sides of a NAT can
//! be joined: the same outside port is reused for other flows later.

use std::collections::{HashMap, HashSet};

use crate::key::FlowTuple;

/// natEvent values (IANA "natEvent" registry) that open a translation.
const CREATE: [u8; 5] = [1, 4, 6, 8, 10];
/// natEvent values that close one.
const DELETE: [u8; 5] = [2, 5, 7, 9, 11];

/// What a natEvent value means here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatEventKind {
    Create,
    Delete,
    /// Address exhaustion, quota and other events that carry no translation.
    Other,
}

impl NatEventKind {
    pub fn of(event: u8) -> Self {
        if CREATE.contains(&event) {
            NatEventKind::Create
        } else if DELETE.contains(&event) {
            NatEventKind::Delete
        } else {
            NatEventKind::Other
        }
    }
}

/// One translation and when it held.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    inside: FlowTuple,
    outside: FlowTuple,
    from_ns: i64,
    /// Open-ended until a delete event closes it.
    until_ns: i64,
}

/// NATs followed from a tuple to the inside at most.
const MAX_NATS_ON_A_PATH: usize = 8;

/// Whether the protocol has ports. ICMP has none: packet reports say 0 and
/// flow records the echo id (or type and code), so its translations are
/// kept and found without them.
pub(crate) fn has_ports(t: &FlowTuple) -> bool {
    !matches!(t.proto, 1 | 58)
}

pub(crate) fn without_ports(t: &FlowTuple) -> FlowTuple {
    if has_ports(t) {
        *t
    } else {
        FlowTuple {
            src_port: 0,
            dst_port: 0,
            ..*t
        }
    }
}

/// Translations by their outside tuple (as seen beyond the NAT, in the
/// direction inside to outside), several per tuple over time.
#[derive(Debug, Default)]
pub struct NatTable {
    by_outside: HashMap<FlowTuple, Vec<Entry>>,
    /// Outside tuples whose translations were added or widened since
    /// [`NatTable::take_changed`]: flow records buffered under them before
    /// may now belong with the inside's.
    changed: HashSet<FlowTuple>,
}

impl NatTable {
    pub fn is_empty(&self) -> bool {
        self.by_outside.is_empty()
    }

    /// A translation of `inside` to `outside` holding over `[from_ns, until_ns)`.
    pub fn add(&mut self, inside: FlowTuple, outside: FlowTuple, from_ns: i64, until_ns: i64) {
        let (inside, outside) = (without_ports(&inside), without_ports(&outside));
        if inside == outside {
            return;
        }
        let entries = self.by_outside.entry(outside).or_default();
        match entries
            .iter_mut()
            .find(|e| e.inside == inside && e.until_ns >= from_ns)
        {
            Some(e) if e.from_ns <= from_ns && until_ns <= e.until_ns => return,
            Some(e) => {
                e.from_ns = e.from_ns.min(from_ns);
                e.until_ns = e.until_ns.max(until_ns);
            }
            None => entries.push(Entry {
                inside,
                outside,
                from_ns,
                until_ns,
            }),
        }
        self.changed.insert(outside);
    }

    /// The outside tuples (without ports for ICMP) whose translations were
    /// added or widened since the last call.
    pub fn take_changed(&mut self) -> Vec<FlowTuple> {
        self.changed.drain().collect()
    }

    /// A translation seen in a packet journey, `before` at the hop ahead of
    /// the NAT and `after` beyond it, in whichever direction the packet
    /// went. Which side is inside is unknown here, so the two sides' inside
    /// tuples (each side may be behind other NATs already known) are joined
    /// the same way for both directions of the flow (the one whose
    /// unordered tuple sorts first stands for both): records of either
    /// direction, from every side of every NAT on the path, then group
    /// together. Translations already known stand.
    pub fn learn(&mut self, before: FlowTuple, after: FlowTuple, from_ns: i64, until_ns: i64) {
        let roots = (self.inside(&before, from_ns), self.inside(&after, from_ns));
        let (before, after) = if roots.0 == roots.1 {
            if self.inside(&before, until_ns) == self.inside(&after, until_ns) {
                return;
            }
            // joined until some time in the range: held on for the rest
            (before, after)
        } else if roots.0 != before && roots.1 != after {
            // each side already translated to another flow: not one packet's
            return;
        } else {
            roots
        };
        let unordered = |t: FlowTuple| t.canonical(0).0;
        let (inside, outside) = if unordered(before) <= unordered(after) {
            (before, after)
        } else {
            (after, before)
        };
        self.add(inside, outside, from_ns, until_ns);
    }

    /// A natEvent record: creates open a translation, deletes close the
    /// open one of the same tuples.
    pub fn event(&mut self, time_ns: i64, event: u8, inside: FlowTuple, outside: FlowTuple) {
        match NatEventKind::of(event) {
            NatEventKind::Create => self.add(inside, outside, time_ns, i64::MAX),
            NatEventKind::Delete => match self
                .by_outside
                .get_mut(&without_ports(&outside))
                .and_then(|v| {
                    let inside = without_ports(&inside);
                    v.iter_mut().rev().find(|e| e.inside == inside)
                }) {
                Some(e) => e.until_ns = e.until_ns.min(time_ns),
                // a delete whose create we missed still says the translation held until now
                None => self.add(inside, outside, i64::MIN, time_ns),
            },
            NatEventKind::Other => {}
        }
    }

    /// The inside tuple of a flow seen as `tuple` at `time_ns`, in the same
    /// direction: outside tuples map back to the inside, replies to the
    /// translated address to replies to the inside host, through every NAT
    /// on the way; anything else is already inside (or never translated).
    pub fn inside(&self, tuple: &FlowTuple, time_ns: i64) -> FlowTuple {
        let holding = |t: &FlowTuple| {
            self.by_outside.get(t).and_then(|v| {
                v.iter()
                    .filter(|e| e.from_ns <= time_ns && time_ns <= e.until_ns)
                    .max_by_key(|e| e.from_ns)
            })
        };
        let mut found = without_ports(tuple);
        // one step per NAT; a cycle (translations reported both ways) ends
        for _ in 0..MAX_NATS_ON_A_PATH {
            found = match holding(&found) {
                Some(e) => e.inside,
                None => match holding(&found.reversed()) {
                    Some(e) => e.inside.reversed(),
                    None => break,
                },
            };
        }
        if has_ports(tuple) {
            found
        } else {
            // the ICMP id (or type and code) the record came with, inside too
            FlowTuple {
                src_port: tuple.src_port,
                dst_port: tuple.dst_port,
                ..found
            }
        }
    }

    /// Forgets translations that ended before `time_ns`.
    pub fn expire(&mut self, time_ns: i64) {
        self.by_outside.retain(|_, v| {
            v.retain(|e| e.until_ns >= time_ns);
            !v.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> FlowTuple {
        FlowTuple {
            src: hopscope_schema::ipv4_mapped(src),
            dst: hopscope_schema::ipv4_mapped(dst),
            src_port: sport,
            dst_port: dport,
            proto: 6,
        }
    }

    #[test]
    fn translations_hold_for_their_time_only() {
        let mut nat = NatTable::default();
        let server = [203, 0, 113, 5];
        let first = t([10, 0, 0, 1], 40000, server, 443);
        let second = t([10, 0, 0, 2], 50000, server, 443);
        let outside = t([198, 51, 100, 1], 20000, server, 443);
        nat.event(100, 4, first, outside);
        nat.event(200, 5, first, outside);
        // the same outside port, reused for another host later
        nat.event(300, 4, second, outside);

        assert_eq!(nat.inside(&outside, 150), first);
        assert_eq!(nat.inside(&outside, 350), second);
        // between the two, the port belonged to nobody
        assert_eq!(nat.inside(&outside, 250), outside);
        // replies map back to the inside host
        assert_eq!(nat.inside(&outside.reversed(), 150), first.reversed());
        assert_eq!(nat.inside(&first, 150), first);
        // unrelated events carry no translation
        nat.event(400, 3, first, outside);
        // learnt from packets: both directions, either side, group together
        let mut learnt = NatTable::default();
        learnt.learn(outside.reversed(), first.reversed(), 100, 200);
        learnt.learn(first, outside, 120, 220);
        assert_eq!(learnt.inside(&first, 150), learnt.inside(&outside, 150));
        assert_eq!(
            learnt.inside(&first.reversed(), 210),
            learnt.inside(&outside.reversed(), 210)
        );
        // ICMP: learnt from packet reports (no ports), found for flow
        // records (the echo id as ports), the id kept
        let mut icmp = NatTable::default();
        let ping = |src, id| FlowTuple {
            proto: 1,
            ..t(src, id, server, id)
        };
        icmp.learn(ping([10, 0, 0, 1], 0), ping([198, 51, 100, 1], 0), 100, 200);
        let a = icmp.inside(&ping([10, 0, 0, 1], 7), 150);
        assert_eq!(a, icmp.inside(&ping([198, 51, 100, 1], 7), 150));
        assert_eq!((a.src_port, a.dst_port), (7, 7));
        // two hosts pinging one server through one NAT address share the
        // portless translation, and their echo ids keep their flows apart
        icmp.learn(ping([10, 0, 0, 2], 0), ping([198, 51, 100, 1], 0), 120, 200);
        let b = icmp.inside(&ping([10, 0, 0, 2], 9), 150);
        assert_eq!(b, icmp.inside(&ping([198, 51, 100, 1], 9), 150));
        assert_ne!(a, b);
        // two NATs on one path (near the source and near the destination),
        // learnt from packets going either way: one group
        let mut double = NatTable::default();
        let middle = t([198, 51, 100, 1], 20000, server, 443);
        let far = t([203, 0, 113, 9], 30000, server, 443);
        double.learn(far.reversed(), middle.reversed(), 100, 200);
        double.learn(first, middle, 100, 200);
        let root = double.inside(&first, 150);
        assert_eq!(double.inside(&middle, 150), root);
        assert_eq!(double.inside(&far, 150), root);
        assert_eq!(double.inside(&far.reversed(), 150), root.reversed());
        // what the device reported stands
        learnt = NatTable::default();
        learnt.event(100, 4, first, outside);
        learnt.learn(outside.reversed(), first.reversed(), 100, 200);
        assert_eq!(learnt.inside(&outside, 150), first);
        assert_eq!(learnt.inside(&first.reversed(), 150), first.reversed());
        nat.expire(250);
        assert_eq!(nat.inside(&outside, 150), outside);
        assert_eq!(nat.inside(&outside, 350), second);
    }
}
