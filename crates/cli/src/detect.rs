//! `hopscope detect`: the security detections' alerts over a range (what
//! `serve` raised, or every detection run again over the stored flows),
//! and the subjects with the most of them.

use std::process::ExitCode;

use anyhow::{Context, Result};
use hopscope_analyze::{AlertState, DetectionReport, detect_range, detection_report};
use hopscope_schema::format_time;

use crate::DetectArgs;
use crate::config::ConfigFile;

pub fn run(args: &DetectArgs, config: &ConfigFile) -> Result<ExitCode> {
    let store = crate::open_store(&args.data_dir)?;
    let (from_ns, to_ns) = args.range.or_last("1h")?;
    let report = if args.recompute {
        let assurance = config.assurance()?;
        let detector = assurance
            .detector()?
            .context("[detect] is off (enabled = false) in the configuration")?;
        let (events, stats) = detect_range(&store, detector, from_ns, to_ns)?;
        if !args.json {
            println!(
                "{} flow records read ({} sampled, {} without addresses)",
                stats.records, stats.sampled, stats.skipped
            );
        }
        // a recomputation has no "now": every alert resolves, a quiet time
        // after its last evidence
        DetectionReport::new(events, Vec::new())
    } else {
        detection_report(&store, from_ns, to_ns)?
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "events": report.events,
                "firing": report.firing,
                "offenders": report.offenders,
                "from_ns": from_ns,
                "to_ns": to_ns,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("firing: {}", report.firing.len());
    for a in &report.firing {
        println!(
            "  {} since {}: {}",
            a.rule,
            format_time(a.starts_ns),
            a.summary
        );
    }
    println!("offenders:");
    for o in report.offenders.iter().take(10) {
        println!(
            "  {:40} {} alerts ({}), last {}",
            o.subject,
            o.alerts,
            o.rules.join(", "),
            format_time(o.last_ns)
        );
    }
    println!("events in the range: {}", report.events.len());
    for a in &report.events {
        println!(
            "  {} {:8} {:9} {}",
            format_time(a.at_ns),
            a.state.name(),
            a.rule,
            match a.state {
                AlertState::Firing => &a.summary,
                AlertState::Resolved => &a.id,
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
