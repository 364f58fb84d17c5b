//! The UDP session state on disk: what a restarted collector needs to
//! decode its first datagram (templates, sampling rates, names, where the
//! sequence numbers stood).
//!
//! Thousands of sessions, most of them unchanged between flushes, must not
//! cost a rewrite of every one at every flush. So the state is a base file
//! (`sessions.json`: a generation number and every session) and a journal
//! of that generation (`sessions-G.log`: one JSON line per session changed
//! or gone, appended at each flush). When the journal outgrows the base,
//! the base is written anew under the next generation and the old journal
//! deleted; a journal of another generation than the base's is stale and
//! ignored, so a crash between the two steps loses nothing. A torn last
//! line (a crash inside an append) is ignored too.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hopscope_store::{Store, write_atomically};
use hopscope_wire::SessionSnapshot;
use serde::{Deserialize, Serialize};

/// A journal shorter than this is never compacted.
const MIN_COMPACT_BYTES: u64 = 1 << 20;

/// What a receiver's sessions did since its last hand-off.
#[derive(Debug, Default)]
pub struct StateDelta {
    /// Sessions heard from since, with their state now.
    pub changed: Vec<SessionSnapshot>,
    /// Sessions the receiver let go (silent, or evicted for room).
    pub removed: Vec<SocketAddr>,
}

impl StateDelta {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }
}

#[derive(Serialize, Deserialize)]
struct Base {
    generation: u64,
    sessions: Vec<SessionSnapshot>,
}

/// One line of the journal: written from a borrowed snapshot, read into
/// an owned one.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Entry<S> {
    Set(S),
    Remove(SocketAddr),
}

/// The state as the store writer keeps it: every session, the journal
/// lines not yet written, and the sessions restored at start that no
/// receiver has heard from since.
#[derive(Debug)]
pub struct SessionState {
    dir: PathBuf,
    generation: u64,
    sessions: HashMap<SocketAddr, SessionSnapshot>,
    unwritten: Vec<u8>,
    journal_bytes: u64,
    base_bytes: u64,
    /// Restored sessions not heard from again: forgotten once the idle
    /// limit has passed since the start, as the receivers forget theirs.
    unconfirmed: HashSet<SocketAddr>,
    forget_unconfirmed_at: Instant,
    /// The journal cannot be appended to as it is (a torn last line, a
    /// failed write): the next write is a compaction.
    must_compact: bool,
}

fn base_path(dir: &Path) -> PathBuf {
    dir.join("sessions.json")
}

fn journal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("sessions-{generation}.log"))
}

fn state_dir(store: &Store) -> PathBuf {
    store.root().join("state")
}

/// Reads the session state of a previous run, if any.
pub fn load(store: &Store) -> Vec<SessionSnapshot> {
    let (_, sessions, ..) = read(&state_dir(store));
    sessions.into_values().collect()
}

/// The base's generation, the sessions after the journal, the sizes of the
/// base and the journal, and whether the journal ends in a torn line.
fn read(dir: &Path) -> (u64, HashMap<SocketAddr, SessionSnapshot>, u64, u64, bool) {
    let base = std::fs::read(base_path(dir)).ok();
    let base_bytes = base.as_ref().map_or(0, |b| b.len() as u64);
    let (generation, list) = match base {
        None => (0, Vec::new()),
        Some(bytes) => match serde_json::from_slice::<Base>(&bytes) {
            Ok(b) => (b.generation, b.sessions),
            // the format of earlier versions: every session, no journal
            Err(_) => (0, serde_json::from_slice(&bytes).unwrap_or_default()),
        },
    };
    let mut sessions: HashMap<SocketAddr, SessionSnapshot> =
        list.into_iter().map(|s| (s.exporter, s)).collect();
    let journal = std::fs::read(journal_path(dir, generation)).unwrap_or_default();
    for line in journal.split(|&b| b == b'\n') {
        match serde_json::from_slice::<Entry<SessionSnapshot>>(line) {
            Ok(Entry::Set(s)) => {
                sessions.insert(s.exporter, s);
            }
            Ok(Entry::Remove(addr)) => {
                sessions.remove(&addr);
            }
            // a torn last line, or an empty one
            Err(_) => {}
        }
    }
    let torn = journal.last().is_some_and(|&b| b != b'\n');
    (generation, sessions, base_bytes, journal.len() as u64, torn)
}

impl SessionState {
    /// The state as the previous run left it; restored sessions are kept
    /// for `idle` unless a receiver hears from them.
    pub fn open(store: &Store, idle: Duration) -> Self {
        let dir = state_dir(store);
        let (generation, sessions, base_bytes, journal_bytes, torn) = read(&dir);
        Self {
            unconfirmed: sessions.keys().copied().collect(),
            dir,
            generation,
            sessions,
            unwritten: Vec::new(),
            journal_bytes,
            base_bytes,
            forget_unconfirmed_at: Instant::now() + idle,
            must_compact: torn,
        }
    }

    /// Takes up what a receiver's sessions did; written at the next flush.
    pub fn apply(&mut self, delta: StateDelta) {
        for s in delta.changed {
            self.unconfirmed.remove(&s.exporter);
            self.note(&Entry::Set(&s));
            self.sessions.insert(s.exporter, s);
        }
        for addr in delta.removed {
            if self.sessions.remove(&addr).is_some() {
                self.note(&Entry::<&SessionSnapshot>::Remove(addr));
            }
        }
    }

    fn note(&mut self, entry: &Entry<&SessionSnapshot>) {
        serde_json::to_writer(&mut self.unwritten, entry).expect("entries serialise");
        self.unwritten.push(b'\n');
    }

    /// Makes durable what changed since the last call: appended to the
    /// journal, or the whole state written anew when the journal has grown
    /// past the base.
    pub fn write(&mut self) -> std::io::Result<()> {
        if Instant::now() >= self.forget_unconfirmed_at && !self.unconfirmed.is_empty() {
            for addr in std::mem::take(&mut self.unconfirmed) {
                if self.sessions.remove(&addr).is_some() {
                    self.note(&Entry::<&SessionSnapshot>::Remove(addr));
                }
            }
        }
        if self.unwritten.is_empty() && !self.must_compact {
            return Ok(());
        }
        let result = self.append_or_compact();
        if result.is_err() {
            // what was to be appended is in `sessions` already: a
            // compaction writes it all, and the lines need not pile up
            self.unwritten.clear();
            self.must_compact = true;
        }
        result
    }

    fn append_or_compact(&mut self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let grown = self.journal_bytes + self.unwritten.len() as u64;
        if self.must_compact || grown > self.base_bytes.max(MIN_COMPACT_BYTES) {
            return self.compact();
        }
        let mut journal = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(journal_path(&self.dir, self.generation))?;
        journal.write_all(&self.unwritten)?;
        journal.sync_data()?;
        self.journal_bytes = grown;
        self.unwritten.clear();
        Ok(())
    }

    /// Writes every session under the next generation, then drops the
    /// journal that it replaces.
    fn compact(&mut self) -> std::io::Result<()> {
        let mut sessions: Vec<SessionSnapshot> = self.sessions.values().cloned().collect();
        sessions.sort_by_key(|s| s.exporter);
        let base = Base {
            generation: self.generation + 1,
            sessions,
        };
        let bytes = serde_json::to_vec(&base).expect("snapshots serialise");
        write_atomically(&self.dir, "sessions.json", &bytes).map_err(std::io::Error::other)?;
        let _ = std::fs::remove_file(journal_path(&self.dir, self.generation));
        self.generation += 1;
        self.base_bytes = bytes.len() as u64;
        self.journal_bytes = 0;
        self.unwritten.clear();
        self.must_compact = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopscope_store::WriteOptions;

    fn session(port: u16, templates: usize) -> SessionSnapshot {
        let mut s = SessionSnapshot {
            exporter: SocketAddr::new([127, 0, 0, 1].into(), port),
            domains: Vec::new(),
        };
        for d in 0..templates as u32 {
            s.domains.push(hopscope_wire::DomainSnapshot {
                domain: d,
                templates: Vec::new(),
                sequence: Default::default(),
                sampling: Vec::new(),
                interface_names: Vec::new(),
                point_names: Vec::new(),
                vrf_names: Vec::new(),
                interface_descriptions: Vec::new(),
                sampler_names: Vec::new(),
                point_clocks: Vec::new(),
                system_init_ms: None,
            });
        }
        s
    }

    #[test]
    fn a_flush_writes_what_changed_and_a_restart_reads_it_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), WriteOptions::default()).unwrap();
        let mut state = SessionState::open(&store, Duration::from_secs(3600));
        state.apply(StateDelta {
            changed: (0..1000).map(|p| session(p, 1)).collect(),
            removed: Vec::new(),
        });
        state.write().unwrap();
        let after_all = state.journal_bytes + state.base_bytes;
        // one session changes: the flush appends one line, not 1,000 sessions
        state.apply(StateDelta {
            changed: vec![session(7, 2)],
            removed: vec![SocketAddr::new([127, 0, 0, 1].into(), 8)],
        });
        state.write().unwrap();
        let grew = state.journal_bytes + state.base_bytes - after_all;
        assert!(
            grew < 1000 && after_all > 100 * grew,
            "{grew} bytes for two changes"
        );
        // nothing changed: nothing written
        state.write().unwrap();
        assert_eq!(state.journal_bytes + state.base_bytes - after_all, grew);

        let restored = load(&store);
        assert_eq!(restored.len(), 999);
        let seven = restored.iter().find(|s| s.exporter.port() == 7).unwrap();
        assert_eq!(seven.domains.len(), 2);

        // compaction: the journal outgrows the base, the base is rewritten
        for round in 0..400 {
            state.apply(StateDelta {
                changed: (100..150).map(|p| session(p, 1 + round % 3)).collect(),
                removed: Vec::new(),
            });
            state.write().unwrap();
        }
        assert!(state.generation > 0);
        assert!(state.journal_bytes <= state.base_bytes.max(MIN_COMPACT_BYTES));
        let again = load(&store);
        assert_eq!(again.len(), 999);
        // a torn line at the end of the journal is ignored
        let mut journal = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(journal_path(&state.dir, state.generation))
            .unwrap();
        journal.write_all(b"{\"set\":{\"expo").unwrap();
        assert_eq!(load(&store).len(), 999);
        // and the next run does not append after it: it compacts first
        let mut reopened = SessionState::open(&store, Duration::from_secs(3600));
        reopened.apply(StateDelta {
            changed: vec![session(5000, 1)],
            removed: Vec::new(),
        });
        reopened.write().unwrap();
        assert_eq!(load(&store).len(), 1000);
    }

    #[test]
    fn restored_sessions_nobody_hears_are_forgotten_after_the_idle_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), WriteOptions::default()).unwrap();
        let mut state = SessionState::open(&store, Duration::ZERO);
        state.apply(StateDelta {
            changed: vec![session(1, 1), session(2, 1)],
            removed: Vec::new(),
        });
        state.write().unwrap();
        let mut restarted = SessionState::open(&store, Duration::ZERO);
        restarted.apply(StateDelta {
            changed: vec![session(1, 1)],
            removed: Vec::new(),
        });
        restarted.write().unwrap();
        let left: Vec<u16> = load(&store).iter().map(|s| s.exporter.port()).collect();
        assert_eq!(left, vec![1]);
    }
}
