//! Capacity forecasts in `serve`: once a minute after start and then
//! every hour, every link's forecast over `[capacity] history`; a link
//! forecast to cross its threshold within the horizon fires an alert
//! (`HopscopeCapacityForecast`), and resolves once its forecast no longer
//! does. The events go back on the bus (the store writer keeps them in
//! `alerts`) and to the alert destinations.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hopscope_analyze::capacity::{
    CAPACITY_RULE, Capacity, CapacityConfig, forecast_alerts, load_directory,
};
use hopscope_analyze::{Alert, AlertState, Notifiers, rows};
use hopscope_collector::Metrics;
use hopscope_store::{Backend, now_ns};

use crate::{Batch, Bus, problem, publish_alerts};

/// The first look, once the store has had a minute to settle.
const FIRST_AFTER: Duration = Duration::from_secs(60);
/// Forecasts move by the day: an hour is often enough.
const EVERY: Duration = Duration::from_secs(3600);
/// How far back firing capacity alerts are read at start: one fires once
/// and may stay firing for months.
const RESTORE_NS: i64 = 400 * 86_400_000_000_000;

/// Starts the watcher; it ends when `stop` is set.
pub(crate) fn spawn(
    config: CapacityConfig,
    store: Arc<dyn Backend>,
    store_root: PathBuf,
    notifiers: Arc<Notifiers>,
    bus: Arc<Bus<Arc<Batch>>>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("capacity".into())
        .spawn(move || {
            let settings = match config.check() {
                Ok(s) => s,
                Err(e) => return problem(&metrics, format!("capacity: {e}")),
            };
            let mut firing = restore(store.as_ref(), &metrics);
            notifiers.resume(&firing.values().cloned().collect::<Vec<_>>());
            let mut next = Instant::now() + FIRST_AFTER;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if Instant::now() < next {
                    continue;
                }
                next = Instant::now() + EVERY;
                let now = now_ns();
                let directory = match load_directory(&store_root) {
                    Ok(d) => d,
                    Err(e) => {
                        problem(&metrics, format!("capacity: {e}"));
                        Default::default()
                    }
                };
                let report = match Capacity::read(
                    store.as_ref(),
                    now - settings.history_ns,
                    now,
                    &settings,
                    &directory,
                ) {
                    Ok(c) => c.report,
                    Err(e) => {
                        problem(&metrics, format!("capacity: {e}"));
                        continue;
                    }
                };
                let events = changes(&mut firing, forecast_alerts(&report, now), now);
                publish_alerts(&bus, &notifiers, &events, &metrics, "capacity");
            }
        })
}

/// The events that move `firing` to `now_firing`: new alerts fire, gone
/// ones resolve; those still forecast stay as they are (one event each,
/// not one an hour).
fn changes(firing: &mut BTreeMap<String, Alert>, now_firing: Vec<Alert>, now: i64) -> Vec<Alert> {
    let mut events = Vec::new();
    let current: BTreeMap<String, Alert> =
        now_firing.into_iter().map(|a| (a.id.clone(), a)).collect();
    for (id, alert) in &current {
        if !firing.contains_key(id) {
            events.push(alert.clone());
        }
    }
    for (id, alert) in firing.iter() {
        if !current.contains_key(id) {
            events.push(Alert {
                state: AlertState::Resolved,
                at_ns: now,
                ends_ns: Some(now),
                ..alert.clone()
            });
        }
    }
    firing.retain(|id, _| current.contains_key(id));
    for (id, alert) in current {
        firing.entry(id).or_insert(alert);
    }
    events
}

/// The capacity alerts still firing in the store (fired, never resolved).
fn restore(store: &dyn Backend, metrics: &Metrics) -> BTreeMap<String, Alert> {
    let now = now_ns();
    let mut firing = BTreeMap::new();
    match rows::read_alerts(store, now - RESTORE_NS, now + 1) {
        Ok(events) => {
            for e in events.into_iter().filter(|e| e.rule == CAPACITY_RULE) {
                match e.state {
                    AlertState::Firing => {
                        firing.insert(e.id.clone(), e);
                    }
                    AlertState::Resolved => {
                        firing.remove(&e.id);
                    }
                }
            }
        }
        Err(e) => problem(metrics, format!("capacity: alerts not read back: {e}")),
    }
    firing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: &str) -> Alert {
        Alert {
            id: id.into(),
            rule: CAPACITY_RULE.into(),
            name: "HopscopeCapacityForecast".into(),
            severity: "warning".into(),
            state: AlertState::Firing,
            at_ns: 1,
            starts_ns: 1,
            ends_ns: None,
            labels: Default::default(),
            summary: String::new(),
            evidence: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_forecast_fires_once_and_resolves_when_it_goes() {
        let mut firing = BTreeMap::new();
        let first = changes(&mut firing, vec![alert("a")], 10);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].state, AlertState::Firing);
        // an hour later, still forecast: nothing new
        assert!(changes(&mut firing, vec![alert("a")], 20).is_empty());
        // the forecast moved out of the horizon
        let gone = changes(&mut firing, vec![alert("b")], 30);
        let states: Vec<_> = gone.iter().map(|a| (a.id.as_str(), a.state)).collect();
        assert_eq!(
            states,
            vec![("b", AlertState::Firing), ("a", AlertState::Resolved)]
        );
        assert_eq!(gone[1].ends_ns, Some(30));
        assert_eq!(firing.keys().collect::<Vec<_>>(), vec!["b"]);
    }
}
