//! hopscope's collector: receives NetFlow v5/v9, IPFIX and sFlow over UDP
//! (several SO_REUSEPORT sockets per port, batched receive), IPFIX over TCP
//! (every connection of a listener on one epoll loop) and from files,
//! admits only allowed exporters within bounded connections and sessions
//! (see `docs/limits.md`), decodes with
//! `hopscope-wire`, adds names, networks and countries, and commits
//! everything to the `hopscope-store` every flush interval, together with
//! the session state that lets a restart resume without losing templates.
//!
//! It owns threads, sockets and the flow of data to the store; it keeps its
//! own account in [`Metrics`]. It does not decode (wire), store or query
//! (store), or serve HTTP (server).

// unsafe code is denied workspace-wide; only `udp` (recvmmsg) allows it

pub mod boundary;
pub mod config;
pub mod enrich;
mod intake;
pub mod metrics;
mod sink;
mod state;
mod tcp;
mod udp;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::thread::JoinHandle;
use std::time::Duration;

use hopscope_store::Store;
use hopscope_wire::Transport;
use hopscope_wire::file::{ReplayClock, replay_file_with};

pub use boundary::{Boundary, BoundaryRule};
pub use config::{CollectorConfig, NetworkTag};
pub use enrich::{Cidr, Enricher, MmdbError, PolledInterfaces};
pub use intake::{Handoff, Intake, PointFacts};
pub use metrics::{
    JourneyCounters, JourneyStatus, Metrics, Published, Status, TcpClose, TcpRefusal, TcpStatus,
};
pub use sink::{CommitHook, Committed};
pub use tcp::TcpLimits;

/// Hand-offs waiting for the store writer; beyond this receivers wait,
/// and the kernel's socket buffers absorb (or drop, counted) the rest.
const HANDOFF_QUEUE: usize = 32;

pub use hopscope_store::now_ns;

/// Why the collector cannot start.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("listening on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Mmdb(#[from] MmdbError),
    #[error("replaying {path}: {message}")]
    Replay { path: String, message: String },
}

/// A running collector.
#[derive(Debug)]
pub struct Collector {
    /// The UDP addresses bound (ports resolved when 0 was asked).
    pub udp_addrs: Vec<SocketAddr>,
    pub tcp_addrs: Vec<SocketAddr>,
    pub metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    receivers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

impl Collector {
    /// Binds every listener, replays the configured files, and starts the
    /// receivers and the store writer.
    pub fn start(
        config: &CollectorConfig,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
    ) -> Result<Collector, CollectorError> {
        let enricher = Arc::new(
            Enricher::new(&config.exporter_names, &config.networks, &config.mmdb)?
                .with_boundaries(&config.boundaries, &config.inside)
                .with_polled_interfaces(config.polled_interfaces.clone()),
        );
        metrics.name_exporters(&config.exporter_names);
        let allow = Arc::new(config.allow.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let (sender, handoffs) = sync_channel(HANDOFF_QUEUE);
        let restored = state::load(&store);
        let now = now_ns();
        let new_intake = {
            let enricher = enricher.clone();
            let metrics = metrics.clone();
            let sender = sender.clone();
            let flush = config.flush_interval;
            let rows = config.batch_rows;
            let limits = config.session_limits;
            let sampling = config.sampling.clone();
            move |transport| {
                let mut intake = Intake::new(
                    transport,
                    limits,
                    enricher.clone(),
                    sender.clone(),
                    metrics.clone(),
                    flush,
                    rows,
                );
                intake.decoder.set_sampling_rules(&sampling);
                intake
            }
        };

        let mut receivers = Vec::new();
        let mut udp_addrs = Vec::new();
        for &addr in &config.udp {
            let (sockets, bound) = udp::bind(addr, config.udp_sockets, config.udp_receive_buffer)
                .map_err(|source| CollectorError::Listen { addr, source })?;
            metrics.listen_udp_port(bound.port());
            udp_addrs.push(bound);
            for socket in sockets {
                let mut intake = new_intake(Transport::Udp);
                // every socket may receive any exporter after a restart
                intake.decoder.restore(&restored, now);
                let (allow, stop) = (allow.clone(), stop.clone());
                receivers.push(
                    std::thread::Builder::new()
                        .name(format!("udp {bound}"))
                        .spawn(move || udp::run(socket, intake, allow, stop))
                        .expect("spawn a receiver"),
                );
            }
        }
        let mut tcp_addrs = Vec::new();
        for &addr in &config.tcp {
            let listener = TcpListener::bind(addr)
                .map_err(|source| CollectorError::Listen { addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| CollectorError::Listen { addr, source })?;
            tcp_addrs.push(bound);
            let (allow, stop) = (allow.clone(), stop.clone());
            let intake = new_intake(Transport::Tcp);
            let limits = config.tcp_limits;
            let metrics = metrics.clone();
            receivers.push(
                std::thread::Builder::new()
                    .name(format!("tcp {bound}"))
                    .spawn(move || {
                        if let Err(e) = tcp::run(listener, intake, allow, limits, stop) {
                            metrics.publish(0, Vec::new(), vec![format!("tcp {bound}: {e}")]);
                        }
                    })
                    .expect("spawn a listener"),
            );
        }
        for path in config.replay.clone() {
            let intake = new_intake(Transport::File);
            let metrics = metrics.clone();
            receivers.push(
                std::thread::Builder::new()
                    .name("replay".into())
                    .spawn(move || replay(&path, intake, &metrics))
                    .expect("spawn a replay"),
            );
        }
        drop(sender);
        let writer = {
            let (store, metrics, flush) = (store.clone(), metrics.clone(), config.flush_interval);
            let on_commit = config.on_commit.clone();
            let idle = Duration::from_nanos(config.session_limits.session_idle_ns.max(0) as u64);
            std::thread::Builder::new()
                .name("store writer".into())
                .spawn(move || sink::run(store, handoffs, metrics, flush, idle, on_commit))
                .expect("spawn the writer")
        };
        drop(new_intake);
        Ok(Collector {
            udp_addrs,
            tcp_addrs,
            metrics,
            stop,
            receivers,
            writer: Some(writer),
        })
    }

    /// Whether every replay has finished (listeners never do).
    pub fn idle(&self) -> bool {
        self.receivers.iter().all(JoinHandle::is_finished)
    }

    /// Stops receiving, hands off and commits what was received, and waits.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for r in self.receivers.drain(..) {
            let _ = r.join();
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Replays one file, handing off as it goes.
fn replay(path: &std::path::Path, intake: Intake, metrics: &Metrics) {
    let Intake {
        mut decoder,
        mut out,
        mut state,
    } = intake;
    let clock = ReplayClock {
        received_ns: now_ns(),
        capture_times: false,
    };
    let result = replay_file_with(path, &mut decoder, &mut out, clock, |decoder, out| {
        state.note_received(clock.received_ns);
        let _ = state.maybe_handoff(decoder, out);
    });
    decoder.flush_pending();
    match result {
        Ok(_) => {
            metrics.replayed_files.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => metrics.publish(
            0,
            Vec::new(),
            vec![format!("replay {}: {e}", path.display())],
        ),
    }
    let _ = state.handoff(&decoder, &mut out);
}
