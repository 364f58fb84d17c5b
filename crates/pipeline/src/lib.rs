//! hopscope's runtime: what `hopscope serve` (and the demo) run, wired in
//! one place. The collector commits each flush to the store and publishes
//! it on a fan-out [`bus`] as a [`Batch`]; subscribers each take what they
//! want through a bounded queue of their own, with a policy for when they
//! fall behind and counters for it. Today's subscribers are the correlator
//! ([`follow`]), which publishes the journeys it closes back on the bus,
//! the analyzer ([`assure`]), which judges them against the SLOs and
//! raises alerts, and the store writer of batches the collector did not
//! write (journeys, SLO buckets, alerts, the [`snmp`] poller's interface
//! counters), and, where a ClickHouse server is given, the [`mirror`] that
//! copies every table to it; a Kafka producer is to come.
//! [`serve`] also runs the store's maintenance and the HTTP API, and
//! gives the API the process's account of itself ([`telemetry`]).
//!
//! The crate decodes nothing, stores nothing and correlates nothing itself:
//! those are the collector's, the store's and the correlator's. It owns
//! threads, the order they start and stop in, and what flows between them.

#![forbid(unsafe_code)]

pub mod assure;
pub mod batch;
pub mod bus;
mod capacity;
pub mod detect;
pub mod follow;
#[cfg(feature = "clickhouse")]
pub mod mirror;
mod runtime;
pub mod snmp;
pub mod telemetry;

pub use batch::Batch;
pub use bus::{Bus, Overflow, Recv, Subscriber, SubscriberStats};
pub use runtime::{Listening, PipelineError, ServeConfig, serve};

/// A problem worth telling the operator, in `/api/status` and the log.
fn problem(metrics: &hopscope_collector::Metrics, text: String) {
    metrics.publish(0, Vec::new(), vec![text]);
}

/// Alert events of a detector or a watcher to the destinations and to the
/// store writer (`alerts`).
fn publish_alerts(
    bus: &Bus<std::sync::Arc<Batch>>,
    notifiers: &hopscope_analyze::Notifiers,
    events: &[hopscope_analyze::Alert],
    metrics: &hopscope_collector::Metrics,
    who: &str,
) {
    if events.is_empty() {
        return;
    }
    notifiers.send(events);
    match hopscope_analyze::rows::alerts_to_batch(events) {
        Ok(b) => bus.publish(std::sync::Arc::new(Batch {
            tables: vec![(hopscope_store::Table::Alerts, vec![b])],
            ..Batch::default()
        })),
        Err(e) => problem(metrics, format!("{who}: alert rows not built: {e}")),
    }
}
