//! The correlator as a bus subscriber: it takes what each flush committed,
//! closes windows as time passes them, and publishes the journeys it
//! closes on the bus like any table. What exporters say of their points
//! (names, announced clocks) is kept in the store's `state` directory, so
//! that `hopscope journeys` rebuilds journeys as `serve` built them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hopscope_collector::{Metrics, Published};
use hopscope_correlate::{
    ClockDomain, Correlator, CorrelatorConfig, Journey, Watermark, journeys_to_batch,
    segments_to_batch,
};
use hopscope_store::{Backend, Table, now_ns, write_atomically};
use hopscope_wire::PointClock;

use crate::{Batch, Bus, Recv, Subscriber};

/// Input silent this long lets the watermark follow the wall clock, so
/// that windows close when traffic stops; longer than any flush interval,
/// so that a replay at any pace closes windows as the live run did.
const QUIET_NS: i64 = 10_000_000_000;

/// The tables the correlator reads.
pub const INPUTS: [Table; 3] = [Table::PacketReports, Table::Flows, Table::Health];

/// Names of observation points (`points.json`) and the clocks they
/// announced (`clocks.json`), in the store's `state` directory, each a
/// list of (point id, value).
pub const NAMES_FILE: &str = "points.json";
pub const CLOCKS_FILE: &str = "clocks.json";

/// What `file` of the store's `state` directory holds, by point id.
pub fn load_points<T: serde::de::DeserializeOwned>(
    store_root: &Path,
    file: &str,
) -> HashMap<u64, T> {
    std::fs::read(store_root.join("state").join(file))
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<(u64, T)>>(&b).ok())
        .map(|v| v.into_iter().collect())
        .unwrap_or_default()
}

fn save_points<T: serde::Serialize + Ord>(root: &Path, file: &str, points: &HashMap<u64, T>) {
    let dir = root.join("state");
    let mut list: Vec<(&u64, &T)> = points.iter().collect();
    list.sort();
    if std::fs::create_dir_all(&dir).is_ok()
        && let Ok(json) = serde_json::to_vec(&list)
    {
        let _ = write_atomically(&dir, file, &json);
    }
}

/// A clock a point announced, as the correlator takes it.
fn announced(clock: PointClock) -> ClockDomain {
    ClockDomain::shared(clock.id, clock.bound_ns)
}

/// The configured clock domains, and for every other point the clock it
/// announced: `serve` and `hopscope journeys` take them alike.
pub fn configured_then_announced(
    mut configured: HashMap<u64, ClockDomain>,
    clocks: &HashMap<u64, PointClock>,
) -> HashMap<u64, ClockDomain> {
    for (&p, &c) in clocks {
        configured.entry(p).or_insert(announced(c));
    }
    configured
}

/// The correlator following the bus: reads `subscriber`'s batches, closes
/// windows as the event-time watermark of what it was given passes them
/// (not the batches' receive times: a replay stamps those with the time of
/// the replay), and publishes journeys on `bus`.
/// Ends (closing every window) when its subscription is ended.
pub fn spawn(
    store_root: &Path,
    subscriber: Subscriber<Arc<Batch>>,
    bus: Arc<Bus<Arc<Batch>>>,
    metrics: Arc<Metrics>,
    config: CorrelatorConfig,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let root = store_root.to_path_buf();
    std::thread::Builder::new()
        .name("correlator".into())
        .spawn(move || {
            let mut names = load_points::<String>(&root, NAMES_FILE);
            // configured clocks stand; announced ones fill in the rest
            let configured: Vec<u64> = config.clock_domains.keys().copied().collect();
            let mut clocks = load_points::<PointClock>(&root, CLOCKS_FILE);
            let clock_domains = configured_then_announced(config.clock_domains.clone(), &clocks);
            let mut correlator = Correlator::new(CorrelatorConfig {
                names: names.clone(),
                clock_domains,
                ..config
            });
            let mut watermark = Watermark::new(QUIET_NS);
            // the watermark windows were last closed by: what the journeys
            // published carry (a later reading would vouch for windows
            // not yet closed)
            let mut closing_at;
            loop {
                let journeys = match subscriber.recv_timeout(Duration::from_secs(1)) {
                    Ok(batch) => {
                        let mut new_names = false;
                        for (id, name) in &batch.points.names {
                            if names.get(id) != Some(name) {
                                correlator.set_name(*id, name);
                                names.insert(*id, name.clone());
                                new_names = true;
                            }
                        }
                        if new_names {
                            save_points(&root, NAMES_FILE, &names);
                        }
                        let mut new_clocks = false;
                        for &(id, clock) in &batch.points.clocks {
                            if clocks.get(&id) != Some(&clock) {
                                if !configured.contains(&id) {
                                    correlator.set_clock_domain(id, announced(clock));
                                }
                                clocks.insert(id, clock);
                                new_clocks = true;
                            }
                        }
                        if new_clocks {
                            save_points(&root, CLOCKS_FILE, &clocks);
                        }
                        add(&mut correlator, &batch, &metrics);
                        watermark.input(correlator.event_time_ns(), now_ns());
                        closing_at = watermark.at(now_ns());
                        correlator.advance(closing_at)
                    }
                    Err(Recv::Timeout) => {
                        closing_at = watermark.at(now_ns());
                        correlator.advance(closing_at)
                    }
                    Err(Recv::Ended) => {
                        let last = correlator.finish();
                        publish_journeys(&bus, &last, watermark.at(now_ns()), &metrics);
                        publish(&correlator, &metrics);
                        return;
                    }
                };
                publish_journeys(&bus, &journeys, closing_at, &metrics);
                publish(&correlator, &metrics);
            }
        })
}

/// Gives the correlator a batch's reports, flow records and health rows;
/// a batch it cannot read is counted and said, not dropped silently.
fn add(correlator: &mut Correlator, batch: &Batch, metrics: &Metrics) {
    for b in batch.table(Table::PacketReports) {
        if let Err(e) = correlator.add_reports(b) {
            correlator.stats.incomplete += b.num_rows() as u64;
            unreadable(metrics, "packet reports", &e);
        }
    }
    for b in batch.table(Table::Flows) {
        if let Err(e) = correlator.add_flows(b) {
            correlator.stats.flow_records_unusable += b.num_rows() as u64;
            unreadable(metrics, "flow records", &e);
        }
    }
    for b in batch.table(Table::Health) {
        if let Err(e) = correlator.add_health(b) {
            unreadable(metrics, "health rows", &e);
        }
    }
}

fn unreadable(metrics: &Metrics, what: &str, e: &hopscope_correlate::CorrelateError) {
    metrics.publish(
        0,
        Vec::new(),
        vec![format!("journeys: {what} not read: {e}")],
    );
}

/// Publishes closed journeys and their segments on the bus, for the store
/// writer and whoever else subscribes to those tables.
fn publish_journeys(
    bus: &Bus<Arc<Batch>>,
    journeys: &[Journey],
    watermark_ns: i64,
    metrics: &Metrics,
) {
    if journeys.is_empty() {
        return;
    }
    match journeys_to_batch(journeys).and_then(|j| Ok((j, segments_to_batch(journeys)?))) {
        Ok((rows, segments)) => bus.publish(Arc::new(Batch {
            tables: vec![
                (Table::Journeys, vec![rows]),
                (Table::Segments, vec![segments]),
            ],
            watermark_ns,
            ..Batch::default()
        })),
        Err(e) => {
            metrics
                .journeys
                .write_errors
                .fetch_add(1, Ordering::Relaxed);
            metrics.publish(0, Vec::new(), vec![format!("journeys: {e}")]);
        }
    }
}

/// The store writer of batches that are not yet durable (journeys): a
/// `Block` subscriber, so that nothing published is lost while the store
/// takes it. Ends when its subscription is ended and its queue is empty.
pub fn spawn_store_writer(
    store: Arc<dyn Backend>,
    subscriber: Subscriber<Arc<Batch>>,
    metrics: Arc<Metrics>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("bus store writer".into())
        .spawn(move || {
            loop {
                let batch = match subscriber.recv_timeout(Duration::from_secs(1)) {
                    Ok(b) => b,
                    Err(Recv::Timeout) => continue,
                    Err(Recv::Ended) => return,
                };
                for (table, rows) in &batch.tables {
                    if let Err(e) = store.write(*table, rows) {
                        let errors = match table {
                            Table::Journeys | Table::Segments => &metrics.journeys.write_errors,
                            _ => &metrics.store.flush_errors,
                        };
                        errors.fetch_add(1, Ordering::Relaxed);
                        metrics.publish(
                            0,
                            Vec::new(),
                            vec![format!("store: {}: {e}", table.dir_name())],
                        );
                    }
                }
            }
        })
}

/// The correlator's counters to `/metrics` and `hopscope status`: the one
/// place each is named (its status key, metric and help).
pub fn publish(c: &Correlator, metrics: &Metrics) {
    let s = c.stats;
    let counter = |key, metric, help, value| Published {
        key,
        metric,
        help,
        gauge: false,
        value,
    };
    metrics.journeys.publish(vec![
        counter(
            "reports",
            "correlator_reports_total",
            "Packet reports given to the correlator.",
            s.reports,
        ),
        counter(
            "matched",
            "correlator_reports_matched_total",
            "Reports joined with another point's report of the same packet.",
            s.matched,
        ),
        counter(
            "late",
            "correlator_reports_late_total",
            "Reports for windows already closed (not used).",
            s.late,
        ),
        counter(
            "incomplete",
            "correlator_reports_incomplete_total",
            "Reports without point, time or digest (not used).",
            s.incomplete,
        ),
        counter(
            "link_scoped",
            "correlator_reports_link_scoped_total",
            "Reports of link-local or link-scoped multicast packets, which never cross a router (not used).",
            s.link_scoped,
        ),
        counter(
            "flow_records",
            "correlator_flow_records_total",
            "Flow records read for whole-flow totals.",
            s.flow_records,
        ),
        counter(
            "flow_records_unusable",
            "correlator_flow_records_unusable_total",
            "Flow records that cannot count for totals: sampled, or without time or packets.",
            s.flow_records_unusable,
        ),
        counter(
            "flows_unfinished",
            "correlator_flows_unfinished_total",
            "Flows seen at several points dropped because some point's records of them are not all in.",
            s.flows_unfinished,
        ),
        counter(
            "flow_records_settled_early",
            "correlator_flow_records_settled_early_total",
            "Flow records compared before their settle time because the correlator's buffer was full.",
            s.flow_records_settled_early,
        ),
        counter(
            "flow_records_unshared",
            "correlator_flow_records_unshared_total",
            "Flow records not held for totals: their point shares no flow seen with another point.",
            s.flow_records_unshared,
        ),
        counter(
            "implausible",
            "correlator_reports_implausible_total",
            "Reports of trajectories no packet can take (digest collisions): not used.",
            s.implausible,
        ),
        counter("windows", "correlator_windows_total", "Windows closed.", s.windows),
        counter(
            "journeys",
            "correlator_journeys_total",
            "Journeys written.",
            s.journeys,
        ),
        Published {
            gauge: true,
            ..counter(
                "pending",
                "correlator_reports_pending",
                "Reports and flow records waiting for their window to close or their flow to settle.",
                c.pending() as u64,
            )
        },
    ]);
}
