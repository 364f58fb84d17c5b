//! Journeys from the command line: the correlator following `hopscope
//! serve`'s store (streaming), and `hopscope journeys` rebuilding them in
//! batch from the stored packet reports of a time range.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use arrow_array::Array;
use hopscope_collector::{Committed, Metrics, Published};
use hopscope_correlate::{
    ClockDomain, Correlator, CorrelatorConfig, DelayStats, Journey, journeys_to_batch,
    summarize_segments,
};
use hopscope_store::query::{evaluate, parse_duration, parse_journey_filter, time_range};
use hopscope_store::{Store, Table, WriteOptions, write_atomically};
use hopscope_wire::PointClock;

use crate::{JourneysArgs, now_ns};

/// What exporters said of their observation points, kept in the store's
/// `state` directory for batch runs: names (`points.json`) and announced
/// clocks (`clocks.json`), each a list of (point id, value).
const NAMES_FILE: &str = "points.json";
const CLOCKS_FILE: &str = "clocks.json";

fn load_points<T: serde::de::DeserializeOwned>(store_root: &Path, file: &str) -> HashMap<u64, T> {
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
fn configured_then_announced(
    mut configured: HashMap<u64, ClockDomain>,
    clocks: &HashMap<u64, PointClock>,
) -> HashMap<u64, ClockDomain> {
    for (&p, &c) in clocks {
        configured.entry(p).or_insert(announced(c));
    }
    configured
}

/// The streaming correlator of `hopscope serve`: takes what each flush
/// committed, closes windows as wall time passes them, and writes journeys
/// to the store. Ends (closing every window) when the collector stops.
pub fn follow(
    store: Arc<Store>,
    committed: Receiver<Committed>,
    metrics: Arc<Metrics>,
    config: CorrelatorConfig,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("correlator".into())
        .spawn(move || {
            let mut names = load_points::<String>(store.root(), NAMES_FILE);
            // configured clocks stand; announced ones fill in the rest
            let configured: Vec<u64> = config.clock_domains.keys().copied().collect();
            let mut clocks = load_points::<PointClock>(store.root(), CLOCKS_FILE);
            let clock_domains = configured_then_announced(config.clock_domains.clone(), &clocks);
            let mut correlator = Correlator::new(CorrelatorConfig {
                names: names.clone(),
                clock_domains,
                ..config
            });
            loop {
                let journeys = match committed.recv_timeout(Duration::from_secs(1)) {
                    Ok(c) => {
                        let mut new_names = false;
                        for (id, name) in c.points.names {
                            if names.get(&id) != Some(&name) {
                                correlator.set_name(id, &name);
                                names.insert(id, name);
                                new_names = true;
                            }
                        }
                        if new_names {
                            save_points(store.root(), NAMES_FILE, &names);
                        }
                        let mut new_clocks = false;
                        for (id, clock) in c.points.clocks {
                            if clocks.get(&id) != Some(&clock) {
                                if !configured.contains(&id) {
                                    correlator.set_clock_domain(id, announced(clock));
                                }
                                clocks.insert(id, clock);
                                new_clocks = true;
                            }
                        }
                        if new_clocks {
                            save_points(store.root(), CLOCKS_FILE, &clocks);
                        }
                        // a batch the correlator cannot read is counted and said, not dropped silently
                        for b in &c.packet_reports {
                            if let Err(e) = correlator.add_reports(b) {
                                correlator.stats.incomplete += b.num_rows() as u64;
                                unreadable(&metrics, "packet reports", &e);
                            }
                        }
                        for b in &c.flows {
                            if let Err(e) = correlator.add_flows(b) {
                                correlator.stats.flow_records_unusable += b.num_rows() as u64;
                                unreadable(&metrics, "flow records", &e);
                            }
                        }
                        for b in &c.health {
                            if let Err(e) = correlator.add_health(b) {
                                unreadable(&metrics, "health rows", &e);
                            }
                        }
                        correlator.advance(now_ns())
                    }
                    Err(RecvTimeoutError::Timeout) => correlator.advance(now_ns()),
                    Err(RecvTimeoutError::Disconnected) => {
                        let last = correlator.finish();
                        write_journeys(&store, &last, &metrics);
                        publish(&correlator, &metrics);
                        return;
                    }
                };
                write_journeys(&store, &journeys, &metrics);
                publish(&correlator, &metrics);
            }
        })
        .expect("spawn the correlator")
}

fn unreadable(metrics: &Metrics, what: &str, e: &hopscope_correlate::CorrelateError) {
    metrics.publish(
        0,
        Vec::new(),
        vec![format!("journeys: {what} not read: {e}")],
    );
}

fn write_journeys(store: &Store, journeys: &[Journey], metrics: &Metrics) {
    if journeys.is_empty() {
        return;
    }
    let written = journeys_to_batch(journeys)
        .map_err(|e| e.to_string())
        .and_then(|b| {
            store
                .writer()
                .write(Table::Journeys, &[b])
                .map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        metrics
            .journeys
            .write_errors
            .fetch_add(1, Ordering::Relaxed);
        metrics.publish(0, Vec::new(), vec![format!("journeys: {e}")]);
    }
}

/// The correlator's counters to `/metrics` and `hopscope status`: the one
/// place each is named (its status key, metric and help).
pub(crate) fn publish(c: &Correlator, metrics: &Metrics) {
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

/// `hopscope journeys`: rebuild journeys from the stored packet reports of
/// a range, filter them, and print them as path diagrams.
pub fn run(args: &JourneysArgs, section: &crate::config::ServeSection) -> Result<ExitCode> {
    let filter = args.filter.join(" ");
    let expr = match parse_journey_filter(&filter) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    if !args.data_dir.join("store.json").exists() {
        bail!(
            "{} holds no hopscope store (run `hopscope serve --data-dir {}` first)",
            args.data_dir.display(),
            args.data_dir.display()
        );
    }
    let (from, to) = time_range(
        args.range.since.as_deref(),
        args.range.from.as_deref(),
        args.range.to.as_deref(),
        now_ns(),
    )?;
    let store = Store::open(&args.data_dir, WriteOptions::default())
        .with_context(|| format!("opening {}", args.data_dir.display()))?;
    // as `serve` has them: configured clocks, then those the probes announced
    let announced_clocks = if args.estimate_clocks {
        HashMap::new()
    } else {
        load_points::<PointClock>(store.root(), CLOCKS_FILE)
    };
    let clock_domains = configured_then_announced(section.clock_domains()?, &announced_clocks);
    let mut config = CorrelatorConfig {
        names: load_points(store.root(), NAMES_FILE),
        address_spaces: section.address_spaces(),
        clock_domains,
        ..CorrelatorConfig::default()
    };
    if let Some(w) = &args.window {
        config.window_ns = parse_duration(w).with_context(|| format!("--window {w}"))?;
    }
    let mut correlator = Correlator::new(config);
    store.scan(Table::PacketReports, &REPORT_COLUMNS, from, to, |b| {
        if args.same_clock {
            // every reporting point's clock is the reference: offsets known to be zero
            let points = b
                .column_by_name("observation_point_id")
                .expect("projected")
                .as_any()
                .downcast_ref::<arrow_array::UInt64Array>()
                .expect("u64 column")
                .clone();
            for p in points.iter().flatten() {
                correlator.set_clock_domain(p, ClockDomain::shared(0, 0));
            }
        }
        correlator
            .add_reports(&b)
            .map_err(|e| hopscope_store::StoreError::Schema(e.to_string()))
    })?;
    // flow records end up to an idle timeout after their last packet
    store.scan(
        Table::Flows,
        &hopscope_correlate::FLOW_COLUMNS,
        from,
        to.saturating_add(60_000_000_000),
        |b| {
            correlator
                .add_flows(&b)
                .map_err(|e| hopscope_store::StoreError::Schema(e.to_string()))
        },
    )?;
    store.scan(
        Table::Health,
        &HEALTH_COLUMNS,
        from,
        to.saturating_add(60_000_000_000),
        |b| {
            correlator
                .add_health(&b)
                .map_err(|e| hopscope_store::StoreError::Schema(e.to_string()))
        },
    )?;
    let mut journeys = correlator.finish();
    if let Some(expr) = &expr {
        let batch = journeys_to_batch(&journeys)?;
        let keep = evaluate(expr, &batch)?;
        let mut i = 0;
        journeys.retain(|_| {
            let k = keep.value(i) && keep.is_valid(i);
            i += 1;
            k
        });
    }
    journeys.sort_by(|a, b| b.lost.cmp(&a.lost).then(a.first_ns.cmp(&b.first_ns)));
    if let Some(n) = args.limit {
        journeys.truncate(n);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.segments {
        let pooled = summarize_segments(&journeys);
        if args.json {
            serde_json::to_writer_pretty(&mut out, &pooled)?;
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "{:<40} {:<11} {:>8} {:>10} {:>8} {:>9}  {:<19} {:>12}",
                "segment",
                "basis",
                "journeys",
                "sent",
                "lost",
                "loss %",
                "95% interval",
                "delay p50"
            )?;
            for s in &pooled.segments {
                writeln!(
                    out,
                    "{:<40} {:<11} {:>8} {:>10} {:>8} {:>9.3}  [{:.3}, {:.3}] % {:>12}",
                    format!("{} > {}", s.from, s.to),
                    s.basis,
                    s.journeys,
                    s.loss.sent,
                    s.loss.lost,
                    s.loss.ratio * 100.0,
                    s.loss.ratio_low * 100.0,
                    s.loss.ratio_high * 100.0,
                    s.delay_median_ns.map_or("-".into(), duration)
                )?;
            }
            for set in &pooled.ecmp {
                writeln!(
                    out,
                    "\nparallel paths from {} to {} ({}):",
                    set.fork, set.join, set.basis
                )?;
                for m in &set.members {
                    writeln!(
                        out,
                        "  via {:<40} {:>8} journeys {:>10} sent {:>8} lost {:>9.3} % {:>12} {}",
                        m.via.join(", "),
                        m.journeys,
                        m.loss.sent,
                        m.loss.lost,
                        m.loss.ratio * 100.0,
                        m.delay_median_ns.map_or("-".into(), duration),
                        m.delay_kind
                    )?;
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.json {
        for j in &journeys {
            serde_json::to_writer(&mut out, j)?;
            writeln!(out)?;
        }
    } else if journeys.is_empty() {
        writeln!(
            out,
            "no journeys: no packet reports from two or more points in this range"
        )?;
    } else {
        for j in &journeys {
            draw(&mut out, j)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

const REPORT_COLUMNS: [&str; 13] = [
    "observation_point_id",
    "observation_time_ns",
    "digest",
    "ip_ttl",
    "length",
    "ip_version",
    "sampler_address",
    "observation_domain_id",
    "src_addr",
    "dst_addr",
    "src_port",
    "dst_port",
    "proto",
];

const HEALTH_COLUMNS: [&str; 4] = [
    "sampler_address",
    "observation_domain_id",
    "lost_records",
    "exporter_drops",
];

/// Nanoseconds for people: `83.6µs`, `1.35ms`, `-2.0µs`.
fn duration(ns: i64) -> String {
    let a = ns.unsigned_abs() as f64;
    let sign = if ns < 0 { "-" } else { "" };
    if a >= 1e9 {
        format!("{sign}{:.2}s", a / 1e9)
    } else if a >= 1e6 {
        format!("{sign}{:.2}ms", a / 1e6)
    } else {
        format!("{sign}{:.1}µs", a / 1e3)
    }
}

/// A delay and what it rests on: `delay` (measured), `delay (estimated
/// ±bound)`, `delay variation` (offsets unknown).
fn delay_text(d: &Option<DelayStats>, kind: &str, bound_ns: Option<u64>) -> String {
    let label = match (kind, bound_ns) {
        ("one-way", Some(b)) if b > 0 => format!("delay (±{})", duration(b as i64)),
        ("one-way", _) => "delay".to_string(),
        ("estimated", Some(b)) => format!("delay (estimated, ±{})", duration(b as i64)),
        _ => "delay variation".to_string(),
    };
    match d {
        None => "delay -".into(),
        Some(d) => format!(
            "{label} p50 {}  p95 {}  max {}{}",
            duration(d.median_ns),
            duration(d.p95_ns),
            duration(d.max_ns),
            if d.negative > 0 {
                format!("  ({} negative)", d.negative)
            } else {
                String::new()
            }
        ),
    }
}

/// One journey as a path diagram: each hop, and between hops the
/// segment's delay and loss.
fn draw(out: &mut impl Write, j: &Journey) -> std::io::Result<()> {
    let loss = if j.packets > 0 {
        j.lost as f64 * 100.0 / j.packets as f64
    } else {
        0.0
    };
    writeln!(
        out,
        "{}  [{}]\n  {} packets selected, {} delivered, {} lost in the network ({loss:.2} %), {} missing as telemetry{}",
        j.tuple.display(),
        j.community_id,
        j.packets,
        j.delivered,
        j.lost,
        j.telemetry_lost,
        if j.flags.is_empty() {
            String::new()
        } else {
            format!("  flags: {}", j.flags.join(","))
        }
    )?;
    for (i, hop) in j.hops.iter().enumerate() {
        let names: Vec<String> = hop
            .points
            .iter()
            .map(|p| format!("{} ({} pkts, ttl {})", p.name, p.packets, p.ttl_max))
            .collect();
        writeln!(out, "  ● {}", names.join("  |  "))?;
        if let Some(s) = j.segments.get(i) {
            let mark = if s.loss.lost > 0 { "✗" } else { "│" };
            writeln!(
                out,
                "  {mark}   {}   loss {}/{} ({:.2} %, 95% [{:.2}, {:.2}] %){}",
                delay_text(&s.delay, s.delay_kind, s.delay_bound_ns),
                s.loss.lost,
                s.loss.sent,
                s.loss.ratio * 100.0,
                s.loss.ratio_low * 100.0,
                s.loss.ratio_high * 100.0,
                if s.loss.telemetry_explained > 0 {
                    format!(
                        ", {} explained by telemetry loss",
                        s.loss.telemetry_explained
                    )
                } else {
                    String::new()
                }
            )?;
        }
    }
    if let Some(e) = &j.end_to_end {
        writeln!(
            out,
            "  end to end: {}",
            delay_text(&Some(*e), j.end_to_end_kind, j.end_to_end_bound_ns)
        )?;
    }
    for t in &j.nat {
        writeln!(
            out,
            "  NAT at {}: {} -> {} ({} pkts)",
            t.at,
            t.before.display(),
            t.after.display(),
            t.packets
        )?;
    }
    writeln!(out)
}
