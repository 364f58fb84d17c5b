//! The SNMP poller of `serve`: every configured agent's IF-MIB on a
//! schedule, as rows of `interface_counters` (`counter_source` 2) on the
//! bus for the store writer, as interface names for enrichment, and as
//! the [`Directory`] of names, descriptions and speeds by exporter
//! (`state/interfaces.json`) for capacity planning. Each poll's outcome is counted per agent, timeouts
//! apart from other failures.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use hopscope_analyze::capacity::{Directory, PolledInterface, load_directory, save_directory};
use hopscope_collector::PolledInterfaces;
use hopscope_schema::{
    COUNTER_SOURCE_SNMP, COUNTER_SOURCE_SNMP_32, InterfaceCounterBuilder, InterfaceCounterRecord,
    canonical, ip_to_mapped,
};
use hopscope_snmp::ifmib::{self, Interface, Reading};
use hopscope_snmp::{Security, Session, SnmpError, Target};
use hopscope_store::{Table, now_ns};
use serde::Serialize;

use crate::{Batch, Bus};

/// One agent to poll (`[[snmp]]`).
#[derive(Debug, Clone)]
pub struct SnmpAgent {
    /// The exporter whose flows name these interfaces by ifIndex (the
    /// flows' `sampler_address`); often the agent's own address.
    pub exporter: IpAddr,
    pub target: Target,
    pub interval: Duration,
}

/// The poller's account of one agent, for `/api/status` and `/metrics`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentStats {
    pub exporter: String,
    pub agent: String,
    pub version: &'static str,
    pub polls: u64,
    pub timeouts: u64,
    /// Failures other than timeouts (authentication, malformed answers,
    /// refused).
    pub failures: u64,
    pub interfaces: usize,
    pub last_success_ns: Option<i64>,
    pub last_error: Option<String>,
    /// How long the last successful poll took.
    pub last_duration_ms: Option<u64>,
}

/// Every agent's account.
pub type SnmpSnapshot = Vec<AgentStats>;

/// Starts polling; the thread ends when `stop` is set.
pub(crate) fn spawn(
    agents: Vec<SnmpAgent>,
    polled: Arc<PolledInterfaces>,
    bus: Arc<Bus<Arc<Batch>>>,
    store_root: PathBuf,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(JoinHandle<()>, Arc<Mutex<SnmpSnapshot>>)> {
    let snapshot = Arc::new(Mutex::new(
        agents
            .iter()
            .map(|a| AgentStats {
                exporter: a.exporter.to_string(),
                agent: a.target.address.to_string(),
                version: match a.target.security {
                    Security::Community(_) => "2c",
                    Security::Usm(_) => "3",
                },
                ..AgentStats::default()
            })
            .collect(),
    ));
    let shared = snapshot.clone();
    let thread = std::thread::Builder::new()
        .name("snmp poller".into())
        .spawn(move || {
            let mut poller = Poller {
                // unreadable, it is polled afresh (and said so)
                directory: load_directory(&store_root).unwrap_or_else(|e| {
                    eprintln!("hopscope: SNMP poller: {e}; polling names afresh");
                    Default::default()
                }),
                agents: agents
                    .into_iter()
                    .map(|a| (a, None, Instant::now()))
                    .collect(),
                polled,
                bus,
                store_root,
                snapshot: shared,
            };
            while !stop.load(Ordering::Relaxed) {
                poller.poll_due(&stop);
                std::thread::sleep(Duration::from_millis(100));
            }
        })?;
    Ok((thread, snapshot))
}

struct Poller {
    /// Each agent with its session (kept between polls: SNMPv3 keeps its
    /// engine's keys) and when it is next due.
    agents: Vec<(SnmpAgent, Option<Session>, Instant)>,
    directory: Directory,
    polled: Arc<PolledInterfaces>,
    bus: Arc<Bus<Arc<Batch>>>,
    store_root: PathBuf,
    snapshot: Arc<Mutex<SnmpSnapshot>>,
}

impl Poller {
    /// Polls the agents that are due, one after another; stops between
    /// two when `stop` is set (a dead agent costs its timeouts, and the
    /// store's last commit waits for this thread).
    fn poll_due(&mut self, stop: &AtomicBool) {
        let mut rows = InterfaceCounterBuilder::with_capacity(64);
        let mut changed = false;
        for i in 0..self.agents.len() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let (agent, session, due) = &mut self.agents[i];
            if Instant::now() < *due {
                continue;
            }
            *due = Instant::now() + agent.interval;
            let exporter = agent.exporter;
            let started = Instant::now();
            let result = poll(agent, session);
            let now = now_ns();
            let snapshot = self.snapshot.clone();
            let mut snapshot = snapshot.lock().expect("no panics hold it");
            let stats = &mut snapshot[i];
            stats.polls += 1;
            match result {
                Ok(reading) => {
                    let interfaces = &reading.interfaces;
                    stats.interfaces = interfaces.len();
                    stats.last_success_ns = Some(now);
                    stats.last_error = None;
                    stats.last_duration_ms = Some(started.elapsed().as_millis() as u64);
                    // the rows' time is the counters', not the end of the walk
                    let counted_at = reading
                        .counted_at
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(now, |d| d.as_nanos() as i64);
                    for interface in interfaces {
                        rows.append(&counter_row(exporter, counted_at, interface));
                    }
                    changed |= self.record(exporter, interfaces, now);
                }
                Err(e) => {
                    if e.is_timeout() {
                        stats.timeouts += 1;
                    } else {
                        stats.failures += 1;
                    }
                    stats.last_error = Some(e.to_string());
                    // a new session next time: the agent may have rebooted
                    // with a new engine id or moved
                    *session = None;
                }
            }
        }
        if !rows.is_empty() {
            match rows.finish() {
                Ok(batch) => self.publish(batch),
                Err(e) => eprintln!("hopscope: snmp rows: {e}"),
            }
        }
        if changed && let Err(e) = save_directory(&self.store_root, &self.directory) {
            eprintln!("hopscope: keeping the polled interfaces: {e}");
        }
    }

    /// Keeps an agent's interfaces for enrichment and the directory;
    /// whether the directory changed (speeds and names, not counters).
    fn record(&mut self, exporter: IpAddr, interfaces: &[Interface], now: i64) -> bool {
        self.polled.replace(
            exporter,
            interfaces
                .iter()
                .map(|i| (i.index, i.name.clone(), i.alias.clone())),
        );
        let fresh: BTreeMap<u32, PolledInterface> = interfaces
            .iter()
            .map(|i| {
                (
                    i.index,
                    PolledInterface {
                        name: i.name.clone(),
                        alias: i.alias.clone(),
                        descr: i.descr.clone(),
                        speed_bps: i.speed_bps,
                        oper_up: i.oper_up,
                        polled_ns: now,
                    },
                )
            })
            .collect();
        let same = |a: &PolledInterface, b: &PolledInterface| {
            (&a.name, &a.alias, &a.descr, a.speed_bps, a.oper_up)
                == (&b.name, &b.alias, &b.descr, b.speed_bps, b.oper_up)
        };
        let unchanged = self.directory.get(&exporter).is_some_and(|old| {
            old.len() == fresh.len()
                && old
                    .iter()
                    .zip(&fresh)
                    .all(|((ka, a), (kb, b))| ka == kb && same(a, b))
        });
        self.directory.insert(exporter, fresh);
        !unchanged
    }

    fn publish(&self, batch: RecordBatch) {
        self.bus.publish(Arc::new(Batch {
            tables: vec![(Table::InterfaceCounters, vec![batch])],
            watermark_ns: now_ns(),
            ..Batch::default()
        }));
    }
}

fn poll(agent: &SnmpAgent, session: &mut Option<Session>) -> Result<Reading, SnmpError> {
    if session.is_none() {
        *session = Some(Session::new(agent.target.clone())?);
    }
    ifmib::interfaces(session.as_mut().expect("opened above"))
}

/// An interface's counters as a row of `interface_counters`.
fn counter_row(exporter: IpAddr, now: i64, i: &Interface) -> InterfaceCounterRecord {
    let status = u32::from(i.admin_up == Some(true)) | (u32::from(i.oper_up == Some(true)) << 1);
    InterfaceCounterRecord {
        time_received_ns: Some(now),
        sampler_address: Some(ip_to_mapped(canonical(exporter))),
        if_index: Some(i.index),
        if_type: i.if_type,
        if_speed: i.speed_bps,
        if_status: Some(status),
        in_octets: i.in_octets,
        in_ucast_pkts: i.in_ucast_pkts,
        in_discards: i.in_discards,
        in_errors: i.in_errors,
        out_octets: i.out_octets,
        out_ucast_pkts: i.out_ucast_pkts,
        out_discards: i.out_discards,
        out_errors: i.out_errors,
        // a 32-bit counter wraps at 2^32; a 64-bit one going down restarted
        counter_source: Some(if i.counters_64 {
            COUNTER_SOURCE_SNMP
        } else {
            COUNTER_SOURCE_SNMP_32
        }),
        ..InterfaceCounterRecord::default()
    }
}
