//! `hopscope policy`: a segmentation policy run over the stored flows and
//! journeys of a range: the configured one, or a proposed rules file
//! (what it would have allowed, denied, and found bypassed).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use hopscope_analyze::{PolicyConfig, PolicyReport, policy_report};

use crate::PolicyArgs;
use crate::config::ConfigFile;

pub fn run(args: &PolicyArgs, config: &ConfigFile) -> Result<ExitCode> {
    let rules = match args.action.as_slice() {
        [] => config.policy.clone(),
        [check, file] if check == "check" => read_rules(file)?,
        [check] if check == "check" => config.policy.clone(),
        other => bail!("hopscope policy [check [RULES.toml]]: not {other:?}"),
    };
    let policy = config.serve.policy(&rules)?;
    if policy.is_empty() {
        bail!("no policy: give zones and rules in [policy] of --config, or a rules file to check");
    }
    let store = crate::open_store(&args.data_dir)?;
    let (from_ns, to_ns) = args.range.or_last("1h")?;
    let report = policy_report(&store, &policy, from_ns, to_ns)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"report": report, "from_ns": from_ns, "to_ns": to_ns})
        );
    } else {
        print(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// A rules file: the keys of `[policy]` at its top, or a configuration
/// file holding `[policy]`.
fn read_rules(path: &str) -> Result<PolicyConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let value: toml::Table = toml::from_str(&text).with_context(|| path.to_string())?;
    let table = match value.get("policy") {
        Some(toml::Value::Table(t)) => t.clone(),
        _ => value,
    };
    table
        .try_into()
        .with_context(|| format!("{path}: a policy (default, zone, rule, path)"))
}

fn print(report: &PolicyReport) {
    println!("{} flows, {} journeys", report.flows, report.journeys);
    for r in &report.rules {
        println!(
            "rule {} ({}): {} flows, {} bytes, {} connections",
            r.rule, r.action, r.flows, r.bytes, r.connections
        );
        for (connection, flows) in r.examples.iter().take(5) {
            println!("    {connection}: {flows} flows");
        }
    }
    for p in &report.paths {
        println!(
            "path {} (via {}): {} journeys, {} crossed, {} bypassed, {} unproven (packets or telemetry lost)",
            p.rule, p.via, p.journeys, p.crossed, p.bypassed, p.unproven
        );
        for (journey, n) in p.examples.iter().take(5) {
            println!("    {journey}: {n} journeys");
        }
    }
}
