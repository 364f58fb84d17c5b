//! The flow cache's hash table: open addressing with linear probing, one tag
//! octet per slot in an array of its own, and a prefetch that callers issue
//! a few packets before the lookup.
//!
//! Why not the standard map: a capture of a hundred thousand flows does not
//! fit in the processor's caches, so every packet's lookup waits for memory
//! (40 % of the probe's time with `HashMap`). That wait can only be hidden
//! by asking for the slot ahead of time, which needs the slot's address
//! from the key's hash: something no map API exposes. The tag array (one
//! octet a slot, 2 MiB for a million flows) stays in cache, so a probe
//! sequence costs one memory access, the slot itself, which the prefetch has
//! already started.

use std::hash::BuildHasher;

use hopscope_memory::{advise_huge_pages, prefetch};

use crate::cache::{FlowKey, FlowState};

/// Hashes flow keys; seeded per process because keys come from the network
/// and linear probing must not be made to degrade by crafted collisions.
type KeyHasher = foldhash::fast::RandomState;

/// Tag of an empty slot; a used slot's tag has its top bit set.
const EMPTY: u8 = 0;
/// The table doubles when it would be more than 7/8 full, as the standard
/// map does: probing reads the tags (one cache line for a run of 64 slots)
/// and compares a key only on a tag match, so long runs stay cheap.
const MAX_LOAD: (usize, usize) = (7, 8);
const MIN_SLOTS: usize = 64;

/// Flows by key.
#[derive(Debug)]
pub(crate) struct FlowTable {
    tags: Vec<u8>,
    slots: Vec<(FlowKey, FlowState)>,
    mask: usize,
    len: usize,
    hasher: KeyHasher,
}

impl FlowTable {
    /// A table that holds `flows` without growing.
    pub(crate) fn with_capacity(flows: usize) -> Self {
        let slots = (flows * MAX_LOAD.1 / MAX_LOAD.0 + 1).next_power_of_two();
        Self::with_slots(slots.max(MIN_SLOTS), KeyHasher::default())
    }

    fn with_slots(slots: usize, hasher: KeyHasher) -> Self {
        debug_assert!(slots.is_power_of_two());
        Self {
            tags: vec![EMPTY; slots],
            slots: zeroed_slots(slots),
            mask: slots - 1,
            len: 0,
            hasher,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn hash(&self, key: &FlowKey) -> u64 {
        self.hasher.hash_one(key)
    }

    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    fn tag(hash: u64) -> u8 {
        0x80 | (hash >> 57) as u8
    }

    /// Starts loading the slot where `hash` would be found.
    pub(crate) fn prefetch(&self, hash: u64) {
        let home = self.home(hash);
        // a slot of 120 octets straddles two cache lines more often than not
        let slot = &self.slots[home];
        prefetch(slot);
        prefetch(&slot.1.src_mac);
        prefetch(&self.tags[home]);
    }

    fn find(&self, hash: u64, key: &FlowKey) -> Option<usize> {
        let tag = Self::tag(hash);
        let mut i = self.home(hash);
        loop {
            match self.tags[i] {
                EMPTY => return None,
                t if t == tag && self.slots[i].0 == *key => return Some(i),
                _ => i = (i + 1) & self.mask,
            }
        }
    }

    pub(crate) fn get_mut(&mut self, hash: u64, key: &FlowKey) -> Option<&mut FlowState> {
        self.find(hash, key).map(|i| &mut self.slots[i].1)
    }

    /// Adds a flow that is not in the table.
    pub(crate) fn insert_new(&mut self, hash: u64, key: FlowKey, flow: FlowState) {
        if (self.len + 1) * MAX_LOAD.1 > self.slots.len() * MAX_LOAD.0 {
            self.grow();
        }
        debug_assert!(self.find(hash, &key).is_none());
        let mut i = self.home(hash);
        while self.tags[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.tags[i] = Self::tag(hash);
        self.slots[i] = (key, flow);
        self.len += 1;
    }

    fn grow(&mut self) {
        let mut bigger = Self::with_slots(self.slots.len() * 2, self.hasher.clone());
        // a grown table is at least 7/16 full: every page of it is touched,
        // so large pages cost no memory and spare a TLB miss per lookup
        advise_huge_pages(&bigger.slots);
        for (i, entry) in self.slots.iter().enumerate() {
            if self.tags[i] != EMPTY {
                bigger.insert_new(bigger.hash(&entry.0), entry.0, entry.1);
            }
        }
        *self = bigger;
    }

    /// Takes the flow out of slot `hole`, then moves later flows of the same
    /// run back into the hole where their home allows it, so that lookups
    /// never need tombstones.
    fn remove_at(&mut self, mut hole: usize) -> (FlowKey, FlowState) {
        let removed = self.slots[hole];
        self.tags[hole] = EMPTY;
        self.len -= 1;
        let mut next = (hole + 1) & self.mask;
        while self.tags[next] != EMPTY {
            let home = self.home(self.hash(&self.slots[next].0));
            // the flow at `next` may fill the hole if the hole lies between its home and it
            if (next.wrapping_sub(home) & self.mask) >= (next.wrapping_sub(hole) & self.mask) {
                self.slots[hole] = self.slots[next];
                self.tags[hole] = self.tags[next];
                self.tags[next] = EMPTY;
                hole = next;
            }
            next = (next + 1) & self.mask;
        }
        removed
    }

    /// Every flow in the table.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &(FlowKey, FlowState)> {
        self.tags
            .iter()
            .zip(&self.slots)
            .filter(|(tag, _)| **tag != EMPTY)
            .map(|(_, entry)| entry)
    }

    /// Removes the flows `pick` chooses (saying why), handing each to `take` with the why.
    pub(crate) fn extract<R>(
        &mut self,
        mut pick: impl FnMut(&FlowKey, &FlowState) -> Option<R>,
        mut take: impl FnMut(FlowKey, FlowState, R),
    ) {
        let mut i = 0;
        while i < self.slots.len() {
            let (key, flow) = &self.slots[i];
            if self.tags[i] != EMPTY
                && let Some(why) = pick(key, flow)
            {
                let (key, flow) = self.remove_at(i);
                take(key, flow, why);
                // a later flow may have moved into slot i: look at it again
                // (a flow moved here from the table's start is looked at
                // twice; `pick` left it once and leaves it again)
            } else {
                i += 1;
            }
        }
    }

    /// Empties the table, handing every flow to `take`; the memory is kept.
    pub(crate) fn drain(&mut self, mut take: impl FnMut(FlowKey, FlowState)) {
        for (tag, entry) in self.tags.iter_mut().zip(&self.slots) {
            if *tag != EMPTY {
                take(entry.0, entry.1);
                *tag = EMPTY;
            }
        }
        self.len = 0;
    }
}

/// `slots` empty slots, allocated as zeroed memory: the kernel hands out
/// zero pages on first touch, so a table sized for many flows costs memory
/// only as flows arrive (a demo runs dozens of meters), and growing does not
/// write the new table twice.
#[allow(unsafe_code)]
fn zeroed_slots(slots: usize) -> Vec<(FlowKey, FlowState)> {
    use std::alloc::{Layout, alloc_zeroed, handle_alloc_error};
    let layout = Layout::array::<(FlowKey, FlowState)>(slots).expect("a table within memory");
    // SAFETY: FlowKey and FlowState hold only integers and arrays of
    // integers, for which all-zero octets are a valid value (their Default,
    // checked by a test); the pointer comes from the global allocator with
    // the layout of `slots` elements, which is what Vec frees it with.
    unsafe {
        let ptr = alloc_zeroed(layout).cast::<(FlowKey, FlowState)>();
        if ptr.is_null() {
            handle_alloc_error(layout);
        }
        Vec::from_raw_parts(ptr, slots, slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> FlowKey {
        let mut src = [0u8; 16];
        src[12..].copy_from_slice(&n.to_be_bytes());
        FlowKey {
            tuple: hopscope_schema::FlowTuple {
                src,
                src_port: n as u16,
                ..Default::default()
            },
            ..FlowKey::default()
        }
    }

    fn flow(n: i64) -> FlowState {
        let mut f = FlowState::default();
        f.first_ns = n;
        f
    }

    #[test]
    fn zeroed_slots_are_default_flows() {
        let slots = zeroed_slots(4);
        assert!(slots.iter().all(|s| *s == Default::default()));
    }

    #[test]
    fn finds_what_was_inserted_through_growth() {
        let mut t = FlowTable::with_capacity(100);
        for n in 0..10_000 {
            t.insert_new(t.hash(&key(n)), key(n), flow(i64::from(n)));
        }
        assert_eq!(t.len(), 10_000);
        assert!(t.slots.len() >= 10_000 * 8 / 7);
        for n in 0..10_000 {
            let got = t.get_mut(t.hash(&key(n)), &key(n)).map(|f| f.first_ns);
            assert_eq!(got, Some(i64::from(n)));
        }
        assert!(t.get_mut(t.hash(&key(10_001)), &key(10_001)).is_none());
    }

    #[test]
    fn removal_keeps_every_other_flow_reachable() {
        let mut t = FlowTable::with_capacity(0);
        // a small table, dense runs and wrap-around at its end
        for n in 0..500 {
            t.insert_new(t.hash(&key(n)), key(n), flow(i64::from(n)));
        }
        let mut taken = Vec::new();
        t.extract(
            |_, f| (f.first_ns % 3 == 0).then_some(()),
            |k, _, ()| taken.push(k),
        );
        assert_eq!(taken.len(), 167);
        assert_eq!(t.len(), 333);
        for n in 0..500 {
            let found = t.get_mut(t.hash(&key(n)), &key(n)).is_some();
            assert_eq!(found, n % 3 != 0, "flow {n}");
        }
        assert_eq!(t.iter().count(), 333);
        let mut rest = 0;
        t.drain(|_, _| rest += 1);
        assert_eq!((rest, t.len(), t.iter().count()), (333, 0, 0));
    }

    #[test]
    fn agrees_with_a_map_over_many_inserts_and_removals() {
        // a table kept near half full (long runs, wrap-around), against std's map
        let mut t = FlowTable::with_capacity(0);
        let mut model = std::collections::HashMap::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for round in 0..40 {
            for _ in 0..400 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let n = (x % 2000) as u32;
                if !model.contains_key(&n) && t.len() < 500 {
                    t.insert_new(t.hash(&key(n)), key(n), flow(i64::from(n)));
                    model.insert(n, ());
                }
            }
            let cut: u32 = round % 4;
            t.extract(
                |k, _| (u32::from(k.tuple.src_port) % 4 == cut).then_some(()),
                |_, _, ()| {},
            );
            model.retain(|n, _| *n % 4 != cut);
            assert_eq!(t.len(), model.len());
            for n in 0..2000 {
                let found = t.get_mut(t.hash(&key(n)), &key(n)).is_some();
                assert_eq!(found, model.contains_key(&n), "round {round}, flow {n}");
            }
        }
    }
}
