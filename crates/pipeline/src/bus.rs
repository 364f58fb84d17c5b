//! The fan-out bus: every message published reaches every subscriber that
//! wants it, each through a bounded queue of its own.
//!
//! A subscriber chooses what happens when its queue is full: the publisher
//! waits ([`Overflow::Block`], for consumers that must see everything, such
//! as a store writer), or the message is dropped for that subscriber alone
//! and counted ([`Overflow::Drop`], for consumers that must never hold up
//! the others, such as the correlator or a live view). So a slow
//! subscriber costs only itself, unless it asked to hold the others back.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What a full queue does to a message published to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overflow {
    /// The publisher waits for room: nothing is lost, the publisher slows.
    Block,
    /// The message is dropped for this subscriber and counted.
    Drop,
}

/// One subscriber's account, as `/metrics` and `hopscope status` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberStats {
    pub name: String,
    pub overflow: Overflow,
    pub capacity: usize,
    /// Messages published that this subscriber wanted.
    pub offered: u64,
    /// Of those, dropped because its queue was full.
    pub dropped: u64,
    /// Waiting in its queue now.
    pub queued: usize,
    /// The most that ever waited.
    pub peak_queued: usize,
    /// Time publishers spent waiting for room in its queue (`Block` only).
    pub publisher_wait_ns: u64,
}

/// Why [`Subscriber::recv_timeout`] returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recv {
    /// Nothing arrived in time.
    Timeout,
    /// The subscription was ended and its queue is empty: nothing more comes.
    Ended,
}

type Wants<T> = Box<dyn Fn(&T) -> bool + Send + Sync>;

struct Slot<T> {
    name: String,
    /// Whether a full queue makes the publisher wait ([`Overflow::Block`]);
    /// [`Bus::hold`] turns it on.
    blocks: AtomicBool,
    capacity: usize,
    wants: Wants<T>,
    queue: Mutex<VecDeque<T>>,
    /// Signalled when a message is queued or the subscription ends.
    arrived: Condvar,
    /// Signalled when a message is taken, for blocked publishers.
    taken: Condvar,
    ended: AtomicBool,
    offered: AtomicU64,
    dropped: AtomicU64,
    peak_queued: AtomicU64,
    publisher_wait_ns: AtomicU64,
}

impl<T> Slot<T> {
    fn stats(&self) -> SubscriberStats {
        SubscriberStats {
            name: self.name.clone(),
            overflow: self.overflow(),
            capacity: self.capacity,
            offered: self.offered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queued: self.queue.lock().map_or(0, |q| q.len()),
            peak_queued: self.peak_queued.load(Ordering::Relaxed) as usize,
            publisher_wait_ns: self.publisher_wait_ns.load(Ordering::Relaxed),
        }
    }

    fn overflow(&self) -> Overflow {
        if self.blocks.load(Ordering::Acquire) {
            Overflow::Block
        } else {
            Overflow::Drop
        }
    }

    fn offer(&self, message: T) {
        self.offered.fetch_add(1, Ordering::Relaxed);
        let mut queue = self.queue.lock().expect("no panic holds a bus queue");
        if queue.len() >= self.capacity && self.overflow() == Overflow::Block {
            let waiting = Instant::now();
            while queue.len() >= self.capacity && !self.ended.load(Ordering::Acquire) {
                queue = self.taken.wait(queue).expect("no panic holds a bus queue");
            }
            self.publisher_wait_ns
                .fetch_add(waiting.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        // checked under the lock: a receiver that has seen the end takes
        // nothing more, so what comes after is dropped, and counted
        if queue.len() >= self.capacity || self.ended.load(Ordering::Acquire) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        queue.push_back(message);
        self.peak_queued
            .fetch_max(queue.len() as u64, Ordering::Relaxed);
        drop(queue);
        self.arrived.notify_one();
    }
}

/// The bus: publish to it from any thread; subscribe before publishing
/// begins so that nothing is missed.
pub struct Bus<T> {
    slots: RwLock<Vec<Arc<Slot<T>>>>,
}

impl<T> std::fmt::Debug for Bus<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("subscribers", &self.stats())
            .finish()
    }
}

impl<T> Default for Bus<T> {
    fn default() -> Self {
        Self {
            slots: RwLock::new(Vec::new()),
        }
    }
}

impl<T: Clone> Bus<T> {
    /// Adds a subscriber named `name` (its metrics label) with a queue of
    /// `capacity` messages, receiving the messages `wants` accepts.
    pub fn subscribe(
        &self,
        name: &str,
        capacity: usize,
        overflow: Overflow,
        wants: impl Fn(&T) -> bool + Send + Sync + 'static,
    ) -> Subscriber<T> {
        let slot = Arc::new(Slot {
            name: name.to_string(),
            blocks: AtomicBool::new(overflow == Overflow::Block),
            capacity: capacity.max(1),
            wants: Box::new(wants),
            queue: Mutex::new(VecDeque::new()),
            arrived: Condvar::new(),
            taken: Condvar::new(),
            ended: AtomicBool::new(false),
            offered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            peak_queued: AtomicU64::new(0),
            publisher_wait_ns: AtomicU64::new(0),
        });
        self.slots
            .write()
            .expect("no panic holds the bus")
            .push(slot.clone());
        Subscriber { slot }
    }

    /// Hands `message` to every subscriber that wants it, in the order they
    /// subscribed; waits only for full `Block` queues.
    pub fn publish(&self, message: T) {
        // not under the list's lock: a publisher waiting on a full queue
        // must not hold up `subscribe`, `end` or `stats`
        let wanting: Vec<Arc<Slot<T>>> = self
            .slots
            .read()
            .expect("no panic holds the bus")
            .iter()
            .filter(|s| !s.ended.load(Ordering::Acquire) && (s.wants)(&message))
            .cloned()
            .collect();
        // the last one takes the message itself: one clone fewer
        if let Some((last, others)) = wanting.split_last() {
            for slot in others {
                slot.offer(message.clone());
            }
            last.offer(message);
        }
    }

    /// Makes the subscriber named `name` hold publishers back from now on
    /// ([`Overflow::Block`]), whatever it subscribed with: at shutdown, so
    /// that the last batches reach it rather than being dropped.
    pub fn hold(&self, name: &str) {
        for slot in self.named(name) {
            slot.blocks.store(true, Ordering::Release);
        }
    }

    /// Ends the subscription named `name`: it receives what is queued,
    /// then [`Recv::Ended`]; later messages are not offered to it.
    pub fn end(&self, name: &str) {
        for slot in self.named(name) {
            slot.ended.store(true, Ordering::Release);
            // take the lock so that no receiver misses the wake-up
            drop(slot.queue.lock());
            slot.arrived.notify_all();
            slot.taken.notify_all();
        }
    }
}

impl<T> Bus<T> {
    /// The subscribers named `name`.
    fn named(&self, name: &str) -> Vec<Arc<Slot<T>>> {
        self.slots
            .read()
            .expect("no panic holds the bus")
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }

    /// Every subscriber's account, in the order they subscribed.
    pub fn stats(&self) -> Vec<SubscriberStats> {
        self.slots
            .read()
            .map(|s| s.iter().map(|s| s.stats()).collect())
            .unwrap_or_default()
    }
}

/// The receiving end of one subscription.
pub struct Subscriber<T> {
    slot: Arc<Slot<T>>,
}

impl<T> std::fmt::Debug for Subscriber<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Subscriber").field(&self.slot.name).finish()
    }
}

impl<T> Subscriber<T> {
    /// The next message, waiting up to `timeout` for one.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, Recv> {
        let deadline = Instant::now() + timeout;
        let mut queue = self.slot.queue.lock().expect("no panic holds a bus queue");
        loop {
            if let Some(message) = queue.pop_front() {
                drop(queue);
                self.slot.taken.notify_one();
                return Ok(message);
            }
            if self.slot.ended.load(Ordering::Acquire) {
                return Err(Recv::Ended);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Recv::Timeout);
            }
            queue = self
                .slot
                .arrived
                .wait_timeout(queue, left)
                .expect("no panic holds a bus queue")
                .0;
        }
    }
}

impl<T> Drop for Subscriber<T> {
    /// A subscriber that has gone is offered nothing more, and no
    /// publisher waits for it.
    fn drop(&mut self) {
        self.slot.ended.store(true, Ordering::Release);
        if let Ok(mut queue) = self.slot.queue.lock() {
            queue.clear();
        }
        self.slot.taken.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERYTHING: fn(&u32) -> bool = |_| true;

    #[test]
    fn a_slow_dropping_subscriber_does_not_stall_the_others_and_its_drops_are_counted() {
        let bus = Arc::new(Bus::<u32>::default());
        let writer = bus.subscribe("store writer", 8, Overflow::Block, EVERYTHING);
        let slow = bus.subscribe("correlator", 2, Overflow::Drop, EVERYTHING);
        let sent = 1_000;
        let writer_thread = std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Ok(m) = writer.recv_timeout(Duration::from_secs(5)) {
                got.push(m);
            }
            got
        });
        // the slow one takes nothing while everything is published
        for m in 0..sent {
            bus.publish(m);
        }
        bus.end("store writer");
        let written = writer_thread.join().unwrap();
        assert_eq!(
            written,
            (0..sent).collect::<Vec<_>>(),
            "the writer saw all, in order"
        );
        let mut seen = Vec::new();
        while let Ok(m) = slow.recv_timeout(Duration::ZERO) {
            seen.push(m);
        }
        assert_eq!(seen, vec![0, 1], "the slow one kept what fitted");
        let stats = bus.stats();
        assert_eq!(stats[1].name, "correlator");
        assert_eq!(stats[1].offered, u64::from(sent));
        assert_eq!(stats[1].dropped, u64::from(sent) - 2);
        assert_eq!(stats[1].peak_queued, 2);
        assert_eq!((stats[0].dropped, stats[0].queued), (0, 0));
    }

    #[test]
    fn a_blocking_subscriber_holds_the_publisher_back_and_loses_nothing() {
        let bus = Arc::new(Bus::<u32>::default());
        let slow = bus.subscribe("writer", 1, Overflow::Block, EVERYTHING);
        let publisher = {
            let bus = bus.clone();
            std::thread::spawn(move || (0..20).for_each(|m| bus.publish(m)))
        };
        let mut got = Vec::new();
        while got.len() < 20 {
            std::thread::sleep(Duration::from_millis(2));
            got.push(slow.recv_timeout(Duration::from_secs(5)).unwrap());
        }
        publisher.join().unwrap();
        assert_eq!(got, (0..20).collect::<Vec<_>>());
        let stats = &bus.stats()[0];
        assert_eq!(stats.dropped, 0);
        assert!(
            stats.publisher_wait_ns > 0,
            "the publisher waited: {stats:?}"
        );
    }

    #[test]
    fn each_subscriber_gets_what_it_wants_and_an_ended_one_drains_first() {
        let bus = Bus::<u32>::default();
        let even = bus.subscribe("even", 10, Overflow::Drop, |m| m % 2 == 0);
        let all = bus.subscribe("all", 10, Overflow::Drop, EVERYTHING);
        (0..6).for_each(|m| bus.publish(m));
        bus.end("even");
        bus.publish(8);
        let drain = |s: &Subscriber<u32>| {
            let mut got = Vec::new();
            while let Ok(m) = s.recv_timeout(Duration::ZERO) {
                got.push(m);
            }
            got
        };
        assert_eq!(drain(&even), vec![0, 2, 4]);
        assert_eq!(even.recv_timeout(Duration::from_secs(1)), Err(Recv::Ended));
        assert_eq!(drain(&all), vec![0, 1, 2, 3, 4, 5, 8]);
        assert_eq!(bus.stats()[0].offered, 3, "odd ones were not offered");
    }

    #[test]
    fn a_held_subscriber_gets_everything_after_all() {
        let bus = Arc::new(Bus::<u32>::default());
        let sub = bus.subscribe("correlator", 1, Overflow::Drop, EVERYTHING);
        bus.publish(1);
        bus.publish(2);
        assert_eq!(bus.stats()[0].dropped, 1);
        bus.hold("correlator");
        assert_eq!(bus.stats()[0].overflow, Overflow::Block);
        let publisher = {
            let bus = bus.clone();
            std::thread::spawn(move || (3..6).for_each(|m| bus.publish(m)))
        };
        let got: Vec<u32> = (0..4)
            .map(|_| sub.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        publisher.join().unwrap();
        assert_eq!(got, vec![1, 3, 4, 5]);
        assert_eq!(bus.stats()[0].dropped, 1, "nothing more dropped");
    }

    #[test]
    fn a_gone_subscriber_never_blocks_a_publisher() {
        let bus = Bus::<u32>::default();
        let gone = bus.subscribe("gone", 1, Overflow::Block, EVERYTHING);
        bus.publish(1);
        drop(gone);
        // would wait forever for a subscriber that no longer takes anything
        bus.publish(2);
        bus.publish(3);
        assert_eq!(bus.stats()[0].offered, 1);
    }
}
