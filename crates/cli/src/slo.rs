//! `hopscope slo` and `hopscope alerts`: the store's account of the SLOs
//! (budgets, burn rates, bad buckets) and of the alerts they raised.

use std::process::ExitCode;

use anyhow::Result;
use hopscope_analyze::budget::window_name;
use hopscope_analyze::slo::format_share;
use hopscope_analyze::{
    AlertReport, BucketFigure, RcaTarget, SloReport, alert_report, rca_report, slo_report,
};
use hopscope_schema::format_time;

use crate::config::ConfigFile;
use crate::{AlertsArgs, RcaArgs, SloArgs, now_ns};

pub fn run_slo(args: &SloArgs, config: &ConfigFile) -> Result<ExitCode> {
    let assurance = config.assurance()?;
    if args.action.as_deref() == Some("check") {
        if assurance.slos.is_empty() {
            println!("no [[slo]] in the configuration (give one with --config)");
        }
        for s in &assurance.slos {
            let rules: Vec<String> = s
                .burn
                .iter()
                .map(|r| {
                    format!(
                        "{} at {}x over {} and {}",
                        r.severity.name(),
                        r.factor,
                        window_name(r.long_ns),
                        window_name(r.short_ns)
                    )
                })
                .collect();
            println!("{}: {}", s.name, s.describe());
            println!(
                "  journeys: {}",
                if s.selector.is_empty() {
                    "all"
                } else {
                    &s.selector
                }
            );
            println!("  alerts: {}", rules.join("; "));
        }
        hopscope_analyze::Notifiers::start(&assurance.alerts)?.stop();
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(
        !assurance.slos.is_empty(),
        "no [[slo]] in the configuration: give the file serve runs with (--config)"
    );
    let store = crate::open_store(&args.data_dir)?;
    let (from, to) = args.range.or_last("6h")?;
    let reports = slo_report(&store, &assurance.slos, from, to, now_ns(), args.recompute)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"slos": reports, "recomputed": args.recompute, "from_ns": from, "to_ns": to})
        );
    } else {
        for r in &reports {
            print_slo(r);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_slo(r: &SloReport) {
    let b = &r.budget;
    println!("{}: {}", r.name, r.description);
    println!(
        "  budget: {} left ({} bad of {} judged buckets; {:.1} allowed)",
        format_share(b.remaining),
        b.bad,
        b.judged,
        b.allowed
    );
    let burn: Vec<String> = b.burn.iter().map(|(w, v)| format!("{w} {v:.1}x")).collect();
    println!("  burn rate: {}", burn.join(", "));
    if let Some(ns) = b.exhausted_in_ns {
        println!(
            "  at the last hour's rate, the budget runs out in {:.1} h",
            ns as f64 / 3.6e12
        );
    }
    println!(
        "  this range: {} buckets judged, {} bad",
        r.buckets.len(),
        r.bad_buckets
    );
    for f in r.buckets.iter().filter(|f| !f.good).take(20) {
        println!("    bad {}  {}", format_time(f.start_ns), figure(f));
    }
    if r.bad_buckets > 20 {
        println!("    ... {} more", r.bad_buckets - 20);
    }
}

/// A bucket's figure against its threshold.
fn figure(f: &BucketFigure) -> String {
    match (f.loss_ppm, f.delay_ns) {
        (Some(ppm), _) => format!(
            "loss {:.3} % ({} of {} packets; threshold {:.3} %)",
            f64::from(ppm) / 1e4,
            f.lost,
            f.events,
            f.threshold as f64 / 1e4
        ),
        (None, Some(d)) => format!(
            "delay {:.2} ms ({} samples; threshold {:.2} ms)",
            d as f64 / 1e6,
            f.events,
            f.threshold as f64 / 1e6
        ),
        (None, None) => "-".into(),
    }
}

pub fn run_alerts(args: &AlertsArgs) -> Result<ExitCode> {
    let store = crate::open_store(&args.data_dir)?;
    let (from, to) = args.range.or_last("24h")?;
    let report = alert_report(&store, from, to)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"events": report.events, "firing": report.firing, "from_ns": from, "to_ns": to})
        );
    } else {
        print_alerts(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_alerts(report: &AlertReport) {
    println!("firing: {}", report.firing.len());
    for a in &report.firing {
        println!(
            "  {} {} since {}: {}",
            a.severity,
            a.id,
            format_time(a.starts_ns),
            a.summary
        );
    }
    println!("events in the range: {}", report.events.len());
    for a in &report.events {
        println!(
            "  {} {:8} {:6} {}",
            format_time(a.at_ns),
            a.state.name(),
            a.severity,
            a.id
        );
    }
}

pub fn run_rca(args: &RcaArgs, config: &ConfigFile) -> Result<ExitCode> {
    let store = crate::open_store(&args.data_dir)?;
    let (from_ns, to_ns) = args.range.or_last("15m")?;
    let target = match (&args.alert, &args.slo) {
        (Some(id), _) => RcaTarget::Alert { id: id.clone() },
        (None, Some(name)) => RcaTarget::Slo {
            name: name.clone(),
            from_ns,
            to_ns,
        },
        (None, None) => RcaTarget::Selector {
            selector: args.filter.join(" "),
            from_ns,
            to_ns,
        },
    };
    let baseline = crate::probe::parse_duration(&args.baseline)?;
    let slos = config.assurance()?.slos;
    let mut report = rca_report(&store, &slos, &target, baseline)?;
    report.candidates.truncate(args.limit);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} journeys from {} to {} ({} affected), against the {} before",
        report.journeys,
        format_time(report.from_ns),
        format_time(report.to_ns.min(now_ns())),
        report.affected_journeys,
        args.baseline
    );
    for (i, c) in report.candidates.iter().enumerate() {
        println!(
            "{:>2}. {:<44} score {:.2}  confidence {:.2}  {}",
            i + 1,
            c.segment,
            c.score,
            c.confidence,
            c.place
        );
        println!("      {}", c.why);
    }
    Ok(ExitCode::SUCCESS)
}
