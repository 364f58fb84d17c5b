//! `hopscope demo`: `serve` on a temporary data directory, fed live by the
//! demo network (`hopscope-demo`), until Ctrl-C or `--duration`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hopscope_collector::{Boundary, BoundaryRule};
use hopscope_demo::{DemoConfig, DemoNetwork, Incident, STEP_NS};

use crate::config::ServeSection;
use crate::{DemoArgs, ServeArgs, now_ns};

pub fn run(args: &DemoArgs) -> Result<ExitCode> {
    let (data_dir, temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => {
            let dir = std::env::temp_dir().join(format!("hopscope-demo-{}", std::process::id()));
            (dir, true)
        }
    };
    let deadline = crate::probe::deadline(args.duration.as_deref())?;
    // the devices' names, for the collector to know them from the start
    let devices = hopscope_demo::devices(&hopscope_demo::topology(args.seed));
    let serve = ServeArgs {
        data_dir: data_dir.clone(),
        udp: vec!["127.0.0.1:0".into()],
        tcp: vec!["none".into()],
        udp_sockets: 1,
        receive_buffer: 8 << 20,
        replay: Vec::new(),
        exit_after_replay: false,
        allow: vec!["127.0.0.0/8".into()],
        exporter_name: devices
            .iter()
            .map(|d| format!("{}={}", d.address, d.name))
            .collect(),
        mmdb: Vec::new(),
        flush_interval: "2s".into(),
        http: args.http.clone(),
        token: None,
        clickhouse: args.clickhouse.clone(),
        retention: "1d".into(),
        max_size: "2G".into(),
        ..crate::ServeArgs::defaults()
    };
    let (flows_per_second, seed, incidents) = (args.flows_per_second, args.seed, !args.calm);
    let mut driver = None;
    // traffic is counted once, where it crosses the branch's uplink
    let mut section = ServeSection::default();
    section.boundary = hopscope_demo::topology(args.seed)
        .hops
        .iter()
        .flat_map(|h| &h.points)
        .map(|p| BoundaryRule {
            point: Some(p.name.clone()),
            exporter: None,
            interface: None,
            interface_name: None,
            boundary: if p.name == hopscope_demo::BOUNDARY_POINT {
                Boundary::External
            } else {
                Boundary::Internal
            },
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut assurance = demo_assurance()?;
    // what an SNMP poller would say of the devices' interfaces: names and
    // speeds; the core's two ECMP links billed as one
    let interfaces = hopscope_demo::interfaces(&hopscope_demo::topology(args.seed));
    assurance.capacity.interfaces = interfaces
        .iter()
        .map(|i| hopscope_analyze::capacity::InterfaceSetting {
            exporter: i.device,
            if_index: i.if_index,
            name: Some(i.point.clone()),
            speed: Some(i.speed_bps.to_string()),
        })
        .collect();
    assurance.capacity.groups = vec![hopscope_analyze::capacity::PortGroup {
        name: "core ECMP pair".into(),
        ports: interfaces
            .iter()
            .filter(|i| i.point.starts_with("core-"))
            .map(|i| format!("{}:{}", i.device, i.if_index))
            .collect(),
    }];
    // weeks of interface counters, as a poller would have read them, for
    // the capacity page's forecasts (a store that has them keeps its own)
    let scenario = hopscope_demo::topology(args.seed);
    let store = hopscope_store::Store::open(&data_dir, hopscope_store::WriteOptions::default())
        .with_context(|| format!("opening {}", data_dir.display()))?;
    let mut held = false;
    hopscope_store::Backend::scan(
        &store,
        hopscope_store::Table::InterfaceCounters,
        &["time_received_ns"],
        i64::MIN,
        i64::MAX,
        &mut |b| {
            held |= b.num_rows() > 0;
            Ok(())
        },
    )?;
    if !held {
        let mut rows = hopscope_schema::InterfaceCounterBuilder::with_capacity(1 << 16);
        for r in hopscope_demo::counter_history(&scenario, now_ns(), hopscope_demo::HISTORY_DAYS) {
            rows.append(&r);
        }
        hopscope_store::Backend::write(
            &store,
            hopscope_store::Table::InterfaceCounters,
            &[rows.finish()?],
        )?;
    }
    drop(store);
    let result = crate::serve::run_with(&serve, &section, assurance, stop.clone(), |listening| {
        let collector = *listening.udp.first().context("no UDP listener")?;
        let mut network = DemoNetwork::new(DemoConfig {
            flows_per_second,
            seed,
            incidents,
            ..DemoConfig::new(collector)
        })
        .context("opening the demo's exporters")?;
        if let Some(http) = listening.http {
            eprintln!();
            eprintln!("  hopscope demo: open http://{http} (Ctrl-C stops)");
            eprintln!();
        }
        eprintln!(
            "demo: {} devices exporting IPFIX to {collector}: {}",
            devices.len(),
            devices
                .iter()
                .map(|d| format!("{} ({})", d.name, d.address))
                .collect::<Vec<_>>()
                .join(", ")
        );
        driver = Some(
            std::thread::Builder::new()
                .name("demo-network".into())
                .spawn(move || drive(&mut network, deadline, &stop))?,
        );
        Ok(())
    });
    if let Some(d) = driver {
        let _ = d.join();
    }
    if temporary && !args.keep {
        let _ = std::fs::remove_dir_all(&data_dir);
    } else {
        eprintln!("demo: the store stays in {}", data_dir.display());
    }
    result
}

/// Steps the network once a second until stopped, saying when incidents
/// start and end.
fn drive(network: &mut DemoNetwork, deadline: Option<Instant>, stop: &AtomicBool) {
    let mut next = Instant::now() + Duration::from_nanos(STEP_NS as u64);
    let mut active: Vec<Incident> = Vec::new();
    let mut offered = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            finish(network);
            eprintln!("demo: {offered} packets offered on the path");
            // give the collector the last datagrams, then end the server,
            // which commits what it received
            std::thread::sleep(Duration::from_millis(500));
            stop.store(true, Ordering::Relaxed);
            return;
        }
        let wait = next.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait.min(Duration::from_millis(200)));
            continue;
        }
        next += Duration::from_nanos(STEP_NS as u64);
        match network.step(now_ns()) {
            Ok(step) => {
                offered += step.packets;
                for i in step.incidents.iter().filter(|i| !active.contains(i)) {
                    eprintln!("demo: incident begins: {}", i.describe(network.scenario()));
                }
                for i in active.iter().filter(|i| !step.incidents.contains(i)) {
                    eprintln!("demo: incident ends: {}", i.describe(network.scenario()));
                }
                active = step.incidents;
            }
            Err(e) => eprintln!("demo: exporting: {e}"),
        }
    }
    finish(network);
    eprintln!("demo: {offered} packets offered on the path");
}

fn finish(network: &mut DemoNetwork) {
    if let Err(e) = network.finish(now_ns()) {
        eprintln!("demo: exporting the last flows: {e}");
    }
}

/// The demo's SLOs, detections and policy (`demo.toml`).
fn demo_assurance() -> Result<crate::config::Assurance> {
    let file: crate::config::ConfigFile =
        toml::from_str(include_str!("demo.toml")).context("demo.toml")?;
    file.assurance().context("demo.toml")
}
