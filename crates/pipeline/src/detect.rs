//! Security detections as a bus subscriber: every durable batch of flow
//! records goes through the detector; the alert events it raises go back
//! on the bus (the store writer keeps them in `alerts`) and out to the
//! alert destinations, which it shares with the SLO analyzer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hopscope_analyze::detect::DetectSnapshot;
use hopscope_analyze::{Alert, Detector, Notifiers, rows};
use hopscope_collector::Metrics;
use hopscope_correlate::Watermark;
use hopscope_store::{Backend, Table, now_ns};

use crate::{Batch, Bus, Recv, Subscriber, problem, publish_alerts};

/// Flows go quiet this long before the wall clock moves the detector's
/// event time on (so that a scan that stopped resolves).
const QUIET_NS: i64 = 10_000_000_000;
/// How often address lists are checked for a new version.
const LISTS_EVERY: Duration = Duration::from_secs(10);
/// How far back firing alerts are read at start (as `hopscope alerts`
/// looks for alerts still firing).
const RESTORE_NS: i64 = 30 * 86_400_000_000_000;

/// Which batches are for the detector: flow records the collector stored,
/// and with path rules the journeys the correlator closed.
pub fn wants(journeys: bool) -> impl Fn(&Arc<Batch>) -> bool + Send + Sync + 'static {
    move |batch| {
        (batch.durable && batch.has_any(&[Table::Flows]))
            || (journeys && !batch.durable && batch.has_any(&[Table::Journeys]))
    }
}

/// Starts the detector: picks up the detection alerts still firing in
/// `store`, then reads what `subscriber` brings until its subscription
/// ends. Returns the account it keeps.
pub fn spawn(
    mut detector: Detector,
    notifiers: Arc<Notifiers>,
    store: Arc<dyn Backend>,
    subscriber: Subscriber<Arc<Batch>>,
    bus: Arc<Bus<Arc<Batch>>>,
    metrics: Arc<Metrics>,
) -> std::io::Result<(std::thread::JoinHandle<()>, Arc<Mutex<DetectSnapshot>>)> {
    let now = now_ns();
    match rows::read_alerts(store.as_ref(), now - RESTORE_NS, now + 1) {
        Ok(events) => detector.restore(&events, now),
        Err(e) => problem(&metrics, format!("detections: alerts not read back: {e}")),
    }
    let restored: Vec<Alert> = detector.active().cloned().collect();
    notifiers.resume(&restored);
    let mut problems = detector.refresh_lists();
    for p in &problems {
        problem(&metrics, format!("detections: {p}"));
    }
    let snapshot = Arc::new(Mutex::new(DetectSnapshot {
        enabled: true,
        firing: restored,
        problems: problems.clone(),
        ..DetectSnapshot::default()
    }));
    let shared = snapshot.clone();
    let thread = std::thread::Builder::new()
        .name("detector".into())
        .spawn(move || {
            let mut watermark = Watermark::new(QUIET_NS);
            let mut lists_checked = Instant::now();
            loop {
                let ended = match subscriber.recv_timeout(Duration::from_secs(1)) {
                    Ok(batch) => {
                        if let Err(e) = detector.add(batch.table(Table::Flows)) {
                            problem(&metrics, format!("detections: flows not read: {e}"));
                        }
                        if let Err(e) = detector.add_journeys(batch.table(Table::Journeys)) {
                            problem(&metrics, format!("path rules: journeys not read: {e}"));
                        }
                        if let Some(n) = detector.newest_ns() {
                            watermark.input(n, now_ns());
                        }
                        false
                    }
                    Err(Recv::Timeout) => false,
                    Err(Recv::Ended) => true,
                };
                if lists_checked.elapsed() >= LISTS_EVERY {
                    lists_checked = Instant::now();
                    let now = detector.refresh_lists();
                    // said once, as it appears; kept in the status while it holds
                    for p in now.iter().filter(|p| !problems.contains(p)) {
                        problem(&metrics, format!("detections: {p}"));
                    }
                    problems = now;
                    shared.lock().expect("no panics hold it").problems = problems.clone();
                }
                let judged = watermark.at(now_ns());
                let events = detector.advance(judged);
                shared
                    .lock()
                    .expect("no panics hold it")
                    .update(&detector, &events, judged);
                publish_alerts(&bus, &notifiers, &events, &metrics, "detections");
                if ended {
                    return;
                }
            }
        })?;
    Ok((thread, snapshot))
}
