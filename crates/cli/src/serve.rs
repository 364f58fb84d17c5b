//! `hopscope serve`: the collector, the store's maintenance and the HTTP
//! API in one process, stopped cleanly by SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hopscope_collector::{Cidr, Collector, CollectorConfig, Metrics, TcpLimits, now_ns};
use hopscope_store::{RetentionPolicy, Store, WriteOptions};
use hopscope_wire::SessionLimits;

use crate::ServeArgs;
use crate::config::ServeSection;
use crate::probe::parse_duration;

/// How often compaction, rollups and retention run.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);

fn addresses(list: &[String], what: &str) -> Result<Vec<SocketAddr>> {
    list.iter()
        .filter(|a| !a.trim().is_empty() && a.trim() != "none")
        .map(|a| {
            a.trim().parse().with_context(|| {
                format!("--{what} {a}: expected ADDRESS:PORT such as 0.0.0.0:4739")
            })
        })
        .collect()
}

/// "50G", "512M", "0" → bytes (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (digits, scale) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 1 << 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 1 << 30),
        Some('t' | 'T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: u64 = digits
        .parse()
        .with_context(|| format!("{s}: not a size such as 512M or 50G"))?;
    Ok(n.saturating_mul(scale))
}

pub fn run(args: &ServeArgs, section: &ServeSection) -> Result<ExitCode> {
    run_with(args, section, |_| Ok(()))
}

/// Where a started server listens.
#[derive(Debug)]
pub struct Listening<'a> {
    pub udp: &'a [SocketAddr],
    pub http: Option<SocketAddr>,
}

/// [`run`], calling `on_ready` once the listeners are bound (so that `hopscope
/// demo` can point its exporters at them), before serving until stopped.
pub fn run_with(
    args: &ServeArgs,
    section: &ServeSection,
    on_ready: impl FnOnce(&Listening<'_>) -> Result<()>,
) -> Result<ExitCode> {
    let flush = parse_duration(&args.flush_interval)?;
    let udp_sockets = match args.udp_sockets {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let duration = |flag: &str, text: &str| -> Result<Duration> {
        let ns = parse_duration(text).with_context(|| format!("--{flag} {text}"))?;
        Ok(Duration::from_nanos(ns.max(0) as u64))
    };
    let session_limits = SessionLimits {
        // each socket's decoder keeps its share: the kernel spreads
        // exporters over the sockets by address
        max_sessions: args.max_sessions.div_ceil(udp_sockets).max(1),
        max_sessions_per_address: args.max_sessions_per_exporter.max(1),
        session_idle_ns: duration("session-idle-timeout", &args.session_idle_timeout)?.as_nanos()
            as i64,
        max_templates_per_session: args.max_templates_per_exporter,
        ..SessionLimits::default()
    };
    let tcp_limits = TcpLimits {
        max_connections: args.tcp_max_connections,
        max_per_source: args.tcp_max_per_source,
        max_handshaking: args.tcp_max_handshakes,
        handshake_timeout: duration("tcp-handshake-timeout", &args.tcp_handshake_timeout)?,
        idle_timeout: duration("tcp-idle-timeout", &args.tcp_idle_timeout)?,
        closed_linger: duration("tcp-closed-linger", &args.tcp_closed_linger)?,
    };
    let config = CollectorConfig {
        session_limits,
        tcp_limits,
        udp: addresses(&args.udp, "udp")?,
        tcp: addresses(&args.tcp, "tcp")?,
        udp_sockets,
        udp_receive_buffer: args.receive_buffer,
        replay: args.replay.clone(),
        allow: args
            .allow
            .iter()
            .map(|a| a.parse::<Cidr>().map_err(anyhow::Error::msg))
            .collect::<Result<_>>()?,
        exporter_names: args
            .exporter_name
            .iter()
            .map(|pair| {
                let (addr, name) = pair
                    .split_once('=')
                    .with_context(|| format!("--exporter-name {pair}: expected ADDRESS=NAME"))?;
                Ok((
                    addr.trim()
                        .parse()
                        .with_context(|| format!("--exporter-name {pair}"))?,
                    name.trim().to_string(),
                ))
            })
            .collect::<Result<_>>()?,
        networks: section.networks.clone(),
        sampling: section
            .sampling
            .iter()
            .map(crate::config::SamplingEntry::rule)
            .collect::<Result<_>>()?,
        boundaries: section
            .boundary
            .iter()
            .map(|r| r.check().map(|()| r.clone()).map_err(anyhow::Error::msg))
            .collect::<Result<_>>()?,
        mmdb: args.mmdb.clone(),
        flush_interval: Duration::from_nanos(flush as u64),
        ..CollectorConfig::default()
    };
    let retention = parse_duration(&args.retention).ok().filter(|&d| d > 0);
    let max_bytes = parse_size(&args.max_size)?;
    let policy = RetentionPolicy {
        flows_max_age_ns: retention,
        max_bytes: (max_bytes > 0).then_some(max_bytes),
        close_after_ns: (2 * flush).max(60_000_000_000),
        ..RetentionPolicy::default()
    };
    let store = Arc::new(
        Store::open(&args.data_dir, WriteOptions::default())
            .with_context(|| format!("opening the store in {}", args.data_dir.display()))?,
    );
    let metrics = Arc::new(Metrics::new(now_ns()));
    // the correlator follows what each flush commits and writes journeys;
    // a few flushes may wait for it (a flush holds up to a million rows):
    // beyond, the sink drops them for the correlator, counted, and stores on
    let (follow, committed) = std::sync::mpsc::sync_channel(2);
    let mut config = config;
    config.follow = Some(follow);
    let correlator = crate::journeys::follow(
        store.clone(),
        committed,
        metrics.clone(),
        hopscope_correlate::CorrelatorConfig {
            address_spaces: section.address_spaces(),
            clock_domains: section.clock_domains()?,
            ..hopscope_correlate::CorrelatorConfig::default()
        },
    );
    let collector = Collector::start(&config, store.clone(), metrics.clone())?;
    drop(config);
    for a in &collector.udp_addrs {
        eprintln!("hopscope: collecting UDP (NetFlow, IPFIX, sFlow) on {a}");
    }
    for a in &collector.tcp_addrs {
        eprintln!("hopscope: collecting IPFIX over TCP on {a}");
    }
    eprintln!("hopscope: store in {}", args.data_dir.display());

    let stop = hopscope_probe::stop_requested();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    let http_addr: Option<SocketAddr> = match args.http.trim() {
        "none" | "" => None,
        addr => Some(addr.parse().with_context(|| format!("--http {addr}"))?),
    };
    let http = match http_addr {
        None => None,
        Some(addr) => {
            let server = runtime.spawn(hopscope_server::serve(
                addr,
                store.clone(),
                metrics.clone(),
                args.token.clone(),
                async {
                    while !hopscope_probe::stop_requested().load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            ));
            eprintln!("hopscope: API and /metrics on http://{addr}");
            Some(server)
        }
    };

    on_ready(&Listening {
        udp: &collector.udp_addrs,
        http: http_addr,
    })?;
    let mut last_maintenance = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(h) = &http
            && h.is_finished()
        {
            break;
        }
        if stop.load(Ordering::Relaxed) || (args.exit_after_replay && collector.idle()) {
            break;
        }
        if last_maintenance.elapsed() >= MAINTENANCE_EVERY {
            last_maintenance = Instant::now();
            maintain(&store, &policy, &metrics);
        }
    }
    stop.store(true, Ordering::Relaxed);
    eprintln!("hopscope: stopping; committing what was received");
    collector.stop();
    // the writer has gone, so the correlator closes its last windows
    let _ = correlator.join();
    if let Some(h) = http
        && let Ok(Err(e)) = runtime.block_on(h)
    {
        bail!(e);
    }
    Ok(ExitCode::SUCCESS)
}

fn maintain(store: &Store, policy: &RetentionPolicy, metrics: &Metrics) {
    let m = &metrics.store;
    m.maintenance_runs.fetch_add(1, Ordering::Relaxed);
    match store.maintain(policy, now_ns()) {
        Ok(r) => {
            m.segments_compacted
                .fetch_add(r.segments_compacted, Ordering::Relaxed);
            m.rollups_written
                .fetch_add(r.rollups_written, Ordering::Relaxed);
            m.segments_deleted.fetch_add(
                r.segments_deleted_by_age + r.segments_deleted_by_size,
                Ordering::Relaxed,
            );
        }
        Err(e) => {
            m.maintenance_errors.fetch_add(1, Ordering::Relaxed);
            metrics.publish(0, Vec::new(), vec![format!("maintenance: {e}")]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("50G").unwrap(), 50 << 30);
        assert!(parse_size("lots").is_err());
    }
}
