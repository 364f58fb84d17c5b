//! `hopscope simulate`: a scenario's captures, one pcap per observation
//! point, and its true answer, for `hopscope probe` and the correlator to be
//! held to.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use hopscope_simulate::{Scenario, simulate, write_pcap};

use crate::SimulateArgs;

pub fn run(args: &SimulateArgs) -> Result<ExitCode> {
    let mut scenario = match Scenario::builtin(&args.scenario, args.seed) {
        Some(s) => s,
        None => {
            let text = std::fs::read_to_string(&args.scenario).with_context(|| {
                format!(
                    "{}: neither a built-in scenario (chain, diamond, nat, tunnel) nor a readable file",
                    args.scenario
                )
            })?;
            toml::from_str::<Scenario>(&text).with_context(|| args.scenario.clone())?
        }
    };
    match args.start.as_deref() {
        None => {}
        Some("now") => scenario.start_ns = crate::now_ns(),
        Some(t) => {
            scenario.start_ns = hopscope_store::query::parse_time(t)
                .with_context(|| format!("--start {t}: RFC 3339, ns or now"))?
        }
    }
    if let Some(loss) = args.loss {
        let Some(link) = scenario.links.get_mut(args.loss_link) else {
            bail!(
                "--loss-link {}: the scenario has {} links",
                args.loss_link,
                scenario.links.len()
            );
        };
        link.loss = loss;
    }
    let run = simulate(&scenario).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for c in &run.captures {
        let file = args
            .out
            .join(format!("{}.pcap", c.point.name.replace([':', '/'], "_")));
        write_pcap(&file, &c.frames).with_context(|| format!("writing {}", file.display()))?;
        println!(
            "{:<24} {:>8} frames  {}",
            c.point.name,
            c.frames.len(),
            file.display()
        );
    }
    let truth = serde_json::json!({
        "scenario": scenario,
        "truth": run.truth,
    });
    let path = args.out.join("truth.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&truth)?)
        .with_context(|| format!("writing {}", path.display()))?;
    for (i, (f, r)) in run.truth.forward.iter().zip(&run.truth.reverse).enumerate() {
        println!(
            "link {i}: forward {} sent {} lost, reverse {} sent {} lost",
            f.sent, f.lost, r.sent, r.lost
        );
    }
    println!("truth: {}", path.display());
    Ok(ExitCode::SUCCESS)
}
