//! `hopscope serve` as a process: the collector, the bus and its
//! subscribers, the store's maintenance and the HTTP API, started in the
//! order data flows and stopped in the same order, so that everything
//! received is committed and every window closed before the process ends.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hopscope_collector::{Collector, CollectorConfig, CollectorError, CommitHook, Metrics};
use hopscope_correlate::CorrelatorConfig;
use hopscope_store::{RetentionPolicy, Store, StoreError, WriteOptions, now_ns};

use crate::telemetry::ProcessTelemetry;
use crate::{Batch, Bus, Overflow, assure, detect, follow};

/// How often compaction, rollups and retention run.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);
/// Flushes that may wait for the correlator (a flush holds up to a million
/// rows): beyond, they are dropped for it, counted, and stored all the same.
const CORRELATOR_QUEUE: usize = 2;
/// Journey batches that may wait for the store; beyond, the correlator waits.
const STORE_WRITER_QUEUE: usize = 16;
/// Journey batches that may wait for the analyzer; beyond, the correlator
/// waits (a bucket judged without some of its journeys would be wrong).
const ANALYZER_QUEUE: usize = 16;
const DETECTOR_QUEUE: usize = 16;

/// Everything `serve` runs with.
#[derive(Debug)]
pub struct ServeConfig {
    pub collector: CollectorConfig,
    pub data_dir: PathBuf,
    pub retention: RetentionPolicy,
    pub correlator: CorrelatorConfig,
    /// Where the API listens; none serves no HTTP.
    pub http: Option<SocketAddr>,
    pub token: Option<String>,
    /// Stop once every replayed file is in (`--exit-after-replay`).
    pub exit_after_replay: bool,
    /// The SLOs to judge journeys against (`[[slo]]`).
    pub slos: Vec<hopscope_analyze::Slo>,
    /// Where alerts go (`[alerts]`).
    pub alerts: hopscope_analyze::NotifyConfig,
    /// The security detections over flows (`[detect]`, with the policy
    /// of `[policy]`); none when they are off.
    pub detector: Option<hopscope_analyze::Detector>,
    /// The segmentation policy, for the API.
    pub policy: Option<hopscope_analyze::Policy>,
    /// The agents whose IF-MIB is polled (`[[serve.snmp]]`).
    pub snmp: Vec<crate::snmp::SnmpAgent>,
    /// `[capacity]`: for the API and the forecast alerts.
    pub capacity: hopscope_analyze::capacity::CapacityConfig,
    /// A ClickHouse server every table is copied to
    /// (`clickhouse://[user[:password]@]host[:port][/database]`).
    pub clickhouse: Option<String>,
}

/// Where a started pipeline listens, for whoever started it.
#[derive(Debug)]
pub struct Listening<'a> {
    pub udp: &'a [SocketAddr],
    pub tcp: &'a [SocketAddr],
    pub http: Option<SocketAddr>,
}

/// Why `serve` could not start or ended in error.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("opening the store in {path}: {source}")]
    Store { path: PathBuf, source: StoreError },
    #[error(transparent)]
    Collector(#[from] CollectorError),
    #[error("starting {what}: {source}")]
    Start {
        what: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Server(#[from] hopscope_server::ServerError),
    #[error("{0}")]
    Ready(Box<dyn std::error::Error + Send + Sync>),
    #[error("{0}")]
    Config(String),
}

/// Runs until `stop` is set (SIGINT and SIGTERM set it too) or, with
/// `exit_after_replay`, until the replays are in; calls `on_ready` once
/// every listener is bound.
pub fn serve<E>(
    config: ServeConfig,
    stop: Arc<AtomicBool>,
    on_ready: impl FnOnce(&Listening<'_>) -> Result<(), E>,
) -> Result<(), PipelineError>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let ServeConfig {
        mut collector,
        data_dir,
        retention,
        correlator,
        http,
        token,
        exit_after_replay,
        slos,
        alerts,
        detector,
        policy,
        snmp,
        capacity,
        clickhouse,
    } = config;
    // a URL that cannot be read is said now, not by every write
    #[cfg(feature = "clickhouse")]
    let clickhouse_target = clickhouse
        .as_deref()
        .map(hopscope_clickhouse::Target::parse)
        .transpose()
        .map_err(|e| PipelineError::Config(e.to_string()))?;
    #[cfg(not(feature = "clickhouse"))]
    if clickhouse.is_some() {
        return Err(PipelineError::Config(
            "this hopscope was built without the clickhouse feature".into(),
        ));
    }
    let store = Arc::new(
        Store::open(&data_dir, WriteOptions::default()).map_err(|source| PipelineError::Store {
            path: data_dir.clone(),
            source,
        })?,
    );
    let metrics = Arc::new(Metrics::new(now_ns()));
    let bus: Arc<Bus<Arc<Batch>>> = Arc::new(Bus::default());
    let start = |what| move |source| PipelineError::Start { what, source };

    // buckets close once the correlator can publish no more journeys of them
    let settle_ns = correlator.window_ns
        + correlator.max_path_delay_ns
        + correlator.lateness_ns
        + if slos
            .iter()
            .any(|s| s.basis == hopscope_analyze::slo::Basis::FlowTotals)
        {
            correlator.flow_settle_ns
        } else {
            0
        };

    // subscribers first, so that they miss nothing
    let correlator = follow::spawn(
        store.root(),
        bus.subscribe(
            "correlator",
            CORRELATOR_QUEUE,
            Overflow::Drop,
            |b: &Arc<Batch>| {
                b.durable
                    && (b.has_any(&follow::INPUTS)
                        || !b.points.names.is_empty()
                        || !b.points.clocks.is_empty())
            },
        ),
        bus.clone(),
        metrics.clone(),
        correlator,
    )
    .map_err(start("the correlator"))?;
    // always: without SLOs it still keeps every segment's gauges
    let notifiers = Arc::new(
        hopscope_analyze::Notifiers::start(&alerts).map_err(|e| PipelineError::Ready(e.into()))?,
    );
    let (analyzer, analysis) = assure::spawn(
        hopscope_analyze::Analyzer::new(slos.clone(), settle_ns),
        notifiers.clone(),
        store.clone(),
        bus.subscribe("analyzer", ANALYZER_QUEUE, Overflow::Block, assure::wants),
        bus.clone(),
        metrics.clone(),
    )
    .map_err(start("the analyzer"))?;
    let detector = match detector {
        Some(d) => {
            let wants = detect::wants(d.wants_journeys());
            Some(
                detect::spawn(
                    d,
                    notifiers.clone(),
                    store.clone(),
                    bus.subscribe("detector", DETECTOR_QUEUE, Overflow::Drop, wants),
                    bus.clone(),
                    metrics.clone(),
                )
                .map_err(start("the detector"))?,
            )
        }
        None => None,
    };
    let detection = detector.as_ref().map(|(_, s)| s.clone());
    let store_writer = follow::spawn_store_writer(
        store.clone(),
        bus.subscribe(
            "store writer",
            STORE_WRITER_QUEUE,
            Overflow::Block,
            |b: &Arc<Batch>| !b.durable,
        ),
        metrics.clone(),
    )
    .map_err(start("the store writer"))?;
    #[cfg(feature = "clickhouse")]
    let mirror = match clickhouse_target {
        Some(target) => Some(
            crate::mirror::spawn(
                target,
                bus.subscribe(
                    "clickhouse mirror",
                    crate::mirror::MIRROR_QUEUE,
                    Overflow::Drop,
                    |_: &Arc<Batch>| true,
                ),
                stop.clone(),
            )
            .map_err(start("the ClickHouse mirror"))?,
        ),
        None => None,
    };
    // the SNMP poller's names reach enrichment; it starts with the collector
    let polled =
        (!snmp.is_empty()).then(|| Arc::new(hopscope_collector::PolledInterfaces::default()));
    collector.polled_interfaces = polled.clone();
    collector.on_commit = Some({
        let bus = bus.clone();
        CommitHook(Arc::new(move |committed| {
            bus.publish(Arc::new(Batch::from(committed)))
        }))
    });
    let receiving = Collector::start(&collector, store.clone(), metrics.clone())?;
    drop(collector);
    // its rows go to the store writer
    let poller = match polled {
        Some(polled) => Some(
            crate::snmp::spawn(
                snmp,
                polled,
                bus.clone(),
                store.root().to_path_buf(),
                stop.clone(),
            )
            .map_err(start("the SNMP poller"))?,
        ),
        None => None,
    };
    let polling = poller.as_ref().map(|(_, s)| s.clone());
    let capacity_watch = crate::capacity::spawn(
        capacity.clone(),
        store.clone(),
        store.root().to_path_buf(),
        notifiers.clone(),
        bus.clone(),
        metrics.clone(),
        stop.clone(),
    )
    .map_err(start("the capacity forecasts"))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(start("the HTTP runtime"))?;
    stop_on_signals(&runtime, &stop);
    let server = http.map(|addr| {
        let stop = stop.clone();
        runtime.spawn(hopscope_server::serve(
            addr,
            store.clone(),
            Arc::new(ProcessTelemetry {
                metrics: metrics.clone(),
                bus: bus.clone(),
                analysis: Some(analysis.clone()),
                detection: detection.clone(),
                snmp: polling.clone(),
                #[cfg(feature = "clickhouse")]
                clickhouse: mirror.as_ref().map(|(_, s)| s.clone()),
            }),
            token,
            hopscope_server::Analytics {
                slos: slos.into(),
                policy: policy.map(Arc::new),
                capacity: Arc::new(hopscope_server::CapacityContext {
                    config: capacity.clone(),
                    store_root: Some(store.root().to_path_buf()),
                }),
            },
            async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        ))
    });
    on_ready(&Listening {
        udp: &receiving.udp_addrs,
        tcp: &receiving.tcp_addrs,
        http,
    })
    .map_err(|e| PipelineError::Ready(e.into()))?;

    let mut last_maintenance = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if server.as_ref().is_some_and(|h| h.is_finished()) {
            break;
        }
        if stop.load(Ordering::Relaxed) || (exit_after_replay && receiving.idle()) {
            break;
        }
        if last_maintenance.elapsed() >= MAINTENANCE_EVERY {
            last_maintenance = Instant::now();
            maintain(&store, &retention, &metrics);
        }
    }
    stop.store(true, Ordering::Relaxed);
    eprintln!("hopscope: stopping; committing what was received");
    // in the order data flows: the collector commits its last flush and
    // publishes it, the correlator closes every window and publishes the
    // last journeys, the analyzer judges every open bucket, the store
    // writer commits them all
    // the last flushes must reach the correlator, busy or not
    bus.hold("correlator");
    receiving.stop();
    bus.end("correlator");
    let _ = correlator.join();
    if let Some((thread, _)) = detector {
        bus.end("detector");
        let _ = thread.join();
    }
    bus.end("analyzer");
    let _ = analyzer.join();
    let _ = capacity_watch.join();
    // everything that sends alerts is done: deliver what is queued
    if let Some(n) = Arc::into_inner(notifiers) {
        analysis.lock().expect("no panics hold it").destinations = n.stop();
    }
    if let Some((thread, _)) = poller {
        let _ = thread.join();
    }
    bus.end("store writer");
    let _ = store_writer.join();
    #[cfg(feature = "clickhouse")]
    if let Some((thread, _)) = mirror {
        bus.end("clickhouse mirror");
        let _ = thread.join();
    }
    if let Some(h) = server
        && let Ok(Err(e)) = runtime.block_on(h)
    {
        return Err(e.into());
    }
    Ok(())
}

/// Sets `stop` at SIGINT or SIGTERM (at Ctrl-C where there are no signals).
fn stop_on_signals(runtime: &tokio::runtime::Runtime, stop: &Arc<AtomicBool>) {
    #[cfg(unix)]
    for kind in [
        tokio::signal::unix::SignalKind::interrupt(),
        tokio::signal::unix::SignalKind::terminate(),
    ] {
        let stop = stop.clone();
        runtime.spawn(async move {
            if let Ok(mut signals) = tokio::signal::unix::signal(kind) {
                signals.recv().await;
                stop.store(true, Ordering::Relaxed);
            }
        });
    }
    #[cfg(not(unix))]
    {
        let stop = stop.clone();
        runtime.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::Relaxed);
            }
        });
    }
}

fn maintain(store: &Store, policy: &RetentionPolicy, metrics: &Metrics) {
    let m = &metrics.store;
    m.maintenance_runs.fetch_add(1, Ordering::Relaxed);
    match store.maintain(policy, now_ns()) {
        Ok(r) => {
            m.segments_compacted
                .fetch_add(r.segments_compacted, Ordering::Relaxed);
            m.rollups_written
                .fetch_add(r.rollups_written, Ordering::Relaxed);
            m.segments_deleted.fetch_add(
                r.segments_deleted_by_age + r.segments_deleted_by_size,
                Ordering::Relaxed,
            );
        }
        Err(e) => {
            m.maintenance_errors.fetch_add(1, Ordering::Relaxed);
            metrics.publish(0, Vec::new(), vec![format!("maintenance: {e}")]);
        }
    }
}
