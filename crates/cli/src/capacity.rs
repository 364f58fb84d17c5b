//! `hopscope capacity`: every link's utilisation, billing percentile,
//! headroom and forecast over a range, the fullest first; one link's days
//! and growth with `--link`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use hopscope_analyze::capacity::{
    Capacity, CapacityReport, LinkKey, LinkReport, find_link, format_bps, format_day, growth,
    load_directory,
};
use hopscope_schema::format_time;

use crate::CapacityArgs;
use crate::config::ConfigFile;

pub fn run(args: &CapacityArgs, config: &ConfigFile) -> Result<ExitCode> {
    let mut capacity_config = config.capacity.clone();
    if let Some(sample) = &args.sample {
        capacity_config.sample = sample.clone();
    }
    let settings = capacity_config.check()?;
    let store = crate::open_store(&args.data_dir)?;
    let (from_ns, to_ns) = args.range.or_last(&config.capacity.history)?;
    let directory = load_directory(&args.data_dir)?;
    let capacity = Capacity::read(&store, from_ns, to_ns, &settings, &directory)?;
    let report = &capacity.report;
    if let Some(port) = &args.link {
        let link = find_link(&report.links, port).with_context(|| {
            format!("no link '{port}' in the range: give EXPORTER:IFINDEX or EXPORTER:IFNAME of one listed by hopscope capacity")
        })?;
        let key = LinkKey {
            exporter: link.exporter,
            if_index: link.if_index,
        };
        let detail = capacity
            .detail(key, &settings)
            .context("the link has no samples")?;
        let direction = link.busier();
        let grew = growth(&store, key, direction, report.from_ns, report.to_ns, 5)?;
        if args.json {
            println!("{}", serde_json::json!({"detail": detail, "growth": grew}));
            return Ok(ExitCode::SUCCESS);
        }
        print_header(report);
        print_link(link, report.percentile);
        println!("\nday          {}th percentile", report.percentile);
        for d in detail.daily.iter().rev().take(14).rev() {
            let value = d.value.map_or("-".into(), format_bps);
            println!("{}   {value}", format_day(d.day));
        }
        if let Some(f) = &link.forecast {
            println!(
                "\ntrend: {} a day ({} days fitted, residual {})",
                signed_bps(f.model.slope_per_day),
                f.model.days,
                format_bps(f.model.residual_sd)
            );
            for p in detail.forecast.iter().step_by(7).take(6) {
                println!(
                    "{}   {} (95 % between {} and {})",
                    format_day(p.day),
                    format_bps(p.value.max(0.0)),
                    format_bps(p.low.max(0.0)),
                    format_bps(p.high.max(0.0))
                );
            }
        }
        println!(
            "\ngrowth through {} between the halves of the range:",
            direction.name()
        );
        if grew.is_empty() {
            println!("  nothing grew");
        }
        for c in &grew {
            println!(
                "  {:13} {:30} {} → {} ({})",
                c.dimension,
                c.key,
                format_bps(c.before_bps),
                format_bps(c.after_bps),
                signed_bps(c.change_bps)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.json {
        println!("{}", serde_json::to_string(report)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_header(report);
    if report.links.is_empty() && report.links_without_samples == 0 {
        println!("no interface counters or flows with interfaces in the range");
    }
    if report.links_without_samples > 0 {
        println!(
            "{} interfaces have counter readings but no whole sample yet",
            report.links_without_samples
        );
    }
    for link in report.links.iter().take(args.top) {
        print_link(link, report.percentile);
    }
    if report.links.len() > args.top {
        println!("({} more links; --top N)", report.links.len() - args.top);
    }
    for g in &report.groups {
        let missing = if g.missing.is_empty() {
            String::new()
        } else {
            format!("; no samples for {}", g.missing.join(", "))
        };
        println!(
            "group {}: {} ports summed per sample, {}th percentile in {}, out {}; of {} {}{missing}",
            g.name,
            g.ports.len() - g.missing.len(),
            report.percentile,
            g.inbound.percentile_bps.map_or("-".into(), format_bps),
            g.outbound.percentile_bps.map_or("-".into(), format_bps),
            g.speed_bps
                .map_or("unknown speed".into(), |s| format_bps(s as f64)),
            g.utilisation
                .map_or(String::new(), |u| format!("({:.1} %)", u * 100.0)),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_header(report: &CapacityReport) {
    println!(
        "{} to {}: {}-second samples, {}th percentile per direction, full at {:.0} % of speed",
        format_time(report.from_ns),
        format_time(report.to_ns),
        report.sample_ns / 1_000_000_000,
        report.percentile,
        report.threshold * 100.0
    );
}

fn print_link(l: &LinkReport, percentile: f64) {
    let name = l
        .name
        .clone()
        .unwrap_or_else(|| format!("ifIndex {}", l.if_index));
    let speed = l.speed_bps.map_or("speed unknown".into(), |s| {
        format!(
            "{} ({})",
            format_bps(s as f64),
            l.speed_source.unwrap_or("-")
        )
    });
    let utilisation = l.utilisation.map_or(String::new(), |u| {
        format!(
            ", {:.1} % used, {:+.1} points to the threshold",
            u * 100.0,
            l.headroom.unwrap_or(0.0) * 100.0
        )
    });
    println!(
        "{} {name} [{}]: {speed}; {percentile}th in {}, out {}{utilisation}; from {}",
        l.exporter,
        l.if_index,
        l.inbound.percentile_bps.map_or("-".into(), format_bps),
        l.outbound.percentile_bps.map_or("-".into(), format_bps),
        l.source.name()
    );
    if let Some(alias) = &l.alias {
        println!("    \"{alias}\"");
    }
    match &l.forecast {
        Some(f) => match (f.crossing, f.threshold_bps) {
            (Some(c), Some(t)) => println!(
                "    forecast: reaches {} on {} (in {} days; between {} and {})",
                format_bps(t),
                format_day(c.day),
                f.days_to_crossing.unwrap_or(0),
                format_day(c.earliest),
                c.latest.map_or("later".into(), format_day)
            ),
            (None, Some(_)) => println!(
                "    forecast: below the threshold for the horizon ({} a day)",
                signed_bps(f.model.slope_per_day)
            ),
            _ => println!(
                "    forecast: {} a day; no speed, so no threshold",
                signed_bps(f.model.slope_per_day)
            ),
        },
        None => println!("    forecast: needs 7 days of samples"),
    }
    for c in l.comparisons.iter().filter(|c| c.disagrees) {
        println!(
            "    ! {} carries {:.2}× what {} counts ({}, {} samples){}",
            c.source.name(),
            c.ratio,
            c.reference.name(),
            c.direction.name(),
            c.samples,
            if c.source.name() == "flows" {
                ": is the sampling rate right?"
            } else {
                ""
            }
        );
    }
}

fn signed_bps(v: f64) -> String {
    if v < 0.0 {
        format!("-{}", format_bps(-v))
    } else {
        format!("+{}", format_bps(v))
    }
}
