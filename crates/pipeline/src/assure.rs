//! Service assurance as a bus subscriber: the journeys and segments the
//! correlator publishes are judged against the configured SLOs bucket by
//! bucket; the judged buckets and alert events go back on the bus (the
//! store writer keeps them) and out to the alert destinations.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hopscope_analyze::{AlertState, Analyzer, Notifiers, Output, Snapshot, rca_for_alert, rows};
use hopscope_collector::Metrics;
use hopscope_correlate::Watermark;
use hopscope_store::{Backend, Table, now_ns};

use crate::{Batch, Bus, Recv, Subscriber};

/// The correlator's batches go quiet this long before the wall clock
/// moves the analyzer's watermark on (as the correlator's own does).
const QUIET_NS: i64 = 10_000_000_000;
/// The baseline a firing alert's root cause is ranked against.
const RCA_BASELINE_NS: i64 = 3_600_000_000_000;

/// Whether a batch is for the analyzer: journeys the correlator closed.
pub fn wants(batch: &Arc<Batch>) -> bool {
    !batch.durable && batch.has_any(&[Table::Journeys])
}

/// Starts the analyzer: restores budgets and firing alerts from `store`,
/// then judges what `subscriber` brings until its subscription is ended,
/// when it judges every open bucket. Returns the account it keeps. The
/// destinations are shared with the detector; whoever ends the process
/// stops them.
pub fn spawn(
    mut analyzer: Analyzer,
    notifiers: Arc<Notifiers>,
    store: Arc<dyn Backend>,
    subscriber: Subscriber<Arc<Batch>>,
    bus: Arc<Bus<Arc<Batch>>>,
    metrics: Arc<Metrics>,
) -> std::io::Result<(std::thread::JoinHandle<()>, Arc<Mutex<Snapshot>>)> {
    if let Err(e) = analyzer.restore(store.as_ref(), now_ns()) {
        metrics.publish(
            0,
            Vec::new(),
            vec![format!("SLOs: history not read back: {e}")],
        );
    }
    let snapshot = analyzer.shared_snapshot();
    notifiers.resume(&snapshot.lock().expect("no panics hold it").firing);
    let thread = std::thread::Builder::new()
        .name("analyzer".into())
        .spawn(move || {
            let mut watermark = Watermark::new(QUIET_NS);
            loop {
                let mut out = match subscriber.recv_timeout(Duration::from_secs(1)) {
                    Ok(batch) => {
                        if let Err(e) =
                            analyzer.add(batch.table(Table::Journeys), batch.table(Table::Segments))
                        {
                            metrics.publish(
                                0,
                                Vec::new(),
                                vec![format!("SLOs: journeys not read: {e}")],
                            );
                        }
                        watermark.input(batch.watermark_ns, now_ns());
                        analyzer.advance(watermark.at(now_ns()))
                    }
                    Err(Recv::Timeout) => analyzer.advance(watermark.at(now_ns())),
                    Err(Recv::Ended) => {
                        let mut last = analyzer.finish();
                        with_root_cause(store.as_ref(), &mut last, &metrics);
                        publish(&bus, &notifiers, &last, &metrics);
                        return;
                    }
                };
                with_root_cause(store.as_ref(), &mut out, &metrics);
                publish(&bus, &notifiers, &out, &metrics);
                analyzer.set_destinations(notifiers.reports());
            }
        })?;
    Ok((thread, snapshot))
}

/// Each alert that starts firing gets the root-cause ranking of the
/// journeys behind it (already in the store: the store writer took them
/// before their bucket was judged), its three first candidates in its
/// evidence and the first in its summary.
fn with_root_cause(store: &dyn Backend, out: &mut Output, metrics: &Metrics) {
    for alert in out
        .alerts
        .iter_mut()
        .filter(|a| a.state == AlertState::Firing)
    {
        let report = match rca_for_alert(store, alert, RCA_BASELINE_NS) {
            Ok(r) => r,
            Err(e) => {
                metrics.publish(
                    0,
                    Vec::new(),
                    vec![format!("alert {}: no root cause: {e}", alert.id)],
                );
                alert.evidence["root_cause_error"] = serde_json::json!(e.to_string());
                continue;
            }
        };
        let top: Vec<_> = report
            .candidates
            .iter()
            .filter(|c| c.score > 0.0)
            .take(3)
            .collect();
        if let Some(first) = top.first() {
            alert.summary = format!(
                "{}; first suspect: {} ({}, confidence {:.2}: {})",
                alert.summary, first.segment, first.place, first.confidence, first.why
            );
        }
        alert.evidence["root_cause"] = serde_json::json!(
            top.iter()
                .map(|c| serde_json::json!({
                    "segment": c.segment,
                    "place": c.place,
                    "score": c.score,
                    "confidence": c.confidence,
                    "why": c.why,
                }))
                .collect::<Vec<_>>()
        );
    }
}

/// Judged buckets and alert events to the store writer, events to the
/// destinations.
fn publish(bus: &Bus<Arc<Batch>>, notifiers: &Notifiers, out: &Output, metrics: &Metrics) {
    if out.buckets.is_empty() && out.alerts.is_empty() {
        return;
    }
    notifiers.send(&out.alerts);
    let mut tables = Vec::new();
    let rows = (!out.buckets.is_empty())
        .then(|| rows::buckets_to_batch(&out.buckets).map(|b| (Table::SloBuckets, vec![b])))
        .into_iter()
        .chain(
            (!out.alerts.is_empty())
                .then(|| rows::alerts_to_batch(&out.alerts).map(|b| (Table::Alerts, vec![b]))),
        );
    for r in rows {
        match r {
            Ok(t) => tables.push(t),
            Err(e) => metrics.publish(0, Vec::new(), vec![format!("SLOs: rows not built: {e}")]),
        }
    }
    bus.publish(Arc::new(Batch {
        tables,
        ..Batch::default()
    }));
}
