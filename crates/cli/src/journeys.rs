//! `hopscope journeys`: journeys rebuilt in batch from the stored packet
//! reports and flow records of a time range, as `serve`'s correlator
//! (`hopscope_pipeline::follow`) builds them as they arrive.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use arrow_array::Array;
use hopscope_correlate::{
    ClockDomain, Correlator, CorrelatorConfig, DelayStats, Journey, journeys_to_batch,
    summarize_segments,
};
use hopscope_pipeline::follow::{CLOCKS_FILE, NAMES_FILE, configured_then_announced, load_points};
use hopscope_store::Table;
use hopscope_store::query::{evaluate, parse_duration, parse_journey_filter, time_range};
use hopscope_wire::PointClock;

use crate::{JourneysArgs, now_ns};

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
    let (from, to) = time_range(
        args.range.since.as_deref(),
        args.range.from.as_deref(),
        args.range.to.as_deref(),
        now_ns(),
    )?;
    let store = crate::open_store(&args.data_dir)?;
    if let Some(bucket) = &args.bucket {
        return print_series(&store, &filter, from, to, bucket, args);
    }
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
            format!(
                "  flags: {}",
                j.flags
                    .iter()
                    .map(|f| f.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )
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

/// `--segments --bucket 1m`: loss and delay per segment and bucket, from
/// the segments `serve` stored (not rebuilt), the most lossy first.
fn print_series(
    store: &hopscope_store::Store,
    filter: &str,
    from: i64,
    to: i64,
    bucket: &str,
    args: &JourneysArgs,
) -> Result<ExitCode> {
    let bucket_ns = parse_duration(bucket)
        .with_context(|| format!("--bucket {bucket}: a duration such as 1m"))?;
    let mut series = hopscope_analyze::segment_series(
        store,
        filter,
        hopscope_analyze::slo::Basis::Packets,
        from,
        to,
        bucket_ns,
    )?;
    series.segments.truncate(args.limit.unwrap_or(10));
    if args.json {
        println!("{}", serde_json::to_string(&series)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    for s in &series.segments {
        writeln!(out, "{} ({}): {} lost", s.segment, s.place, s.lost)?;
        for (start, p) in series.buckets.iter().zip(&s.points) {
            let Some(p) = p else { continue };
            writeln!(
                out,
                "  {}  {:>8} sent {:>6} lost {:>7.3} %  delay {}",
                hopscope_schema::format_time(*start),
                p.sent,
                p.lost,
                p.loss_ratio * 100.0,
                p.delay_mean_ns
                    .map_or("-".into(), |d| format!("{:.2} ms", d / 1e6))
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
