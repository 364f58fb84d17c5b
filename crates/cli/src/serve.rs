//! `hopscope serve`: the flags and the `[serve]` section made into the
//! pipeline's configuration; `hopscope_pipeline::serve` runs it.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result};
use hopscope_collector::{Cidr, CollectorConfig, TcpLimits};
use hopscope_pipeline::{Listening, ServeConfig};
use hopscope_store::RetentionPolicy;
use hopscope_wire::SessionLimits;

use crate::ServeArgs;
use crate::config::{Assurance, ServeSection, SnmpEntry};
use crate::probe::parse_duration;

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

pub fn run(args: &ServeArgs, section: &ServeSection, assurance: Assurance) -> Result<ExitCode> {
    run_with(
        args,
        section,
        assurance,
        Arc::new(AtomicBool::new(false)),
        |_| Ok(()),
    )
}

/// [`run`], calling `on_ready` once the listeners are bound (so that `hopscope
/// demo` can point its exporters at them), before serving until `stop` is
/// set or a signal arrives.
pub fn run_with(
    args: &ServeArgs,
    section: &ServeSection,
    assurance: Assurance,
    stop: Arc<AtomicBool>,
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
        inside: section.inside.clone(),
        mmdb: args.mmdb.clone(),
        flush_interval: Duration::from_nanos(flush as u64),
        ..CollectorConfig::default()
    };
    let retention = parse_duration(&args.retention).ok().filter(|&d| d > 0);
    let max_bytes = parse_size(&args.max_size)?;
    let retention = RetentionPolicy {
        flows_max_age_ns: retention,
        max_bytes: (max_bytes > 0).then_some(max_bytes),
        close_after_ns: (2 * flush).max(60_000_000_000),
        ..RetentionPolicy::default()
    };
    let http: Option<SocketAddr> = match args.http.trim() {
        "none" | "" => None,
        addr => Some(addr.parse().with_context(|| format!("--http {addr}"))?),
    };
    let config = ServeConfig {
        collector: config,
        data_dir: args.data_dir.clone(),
        retention,
        correlator: hopscope_correlate::CorrelatorConfig {
            address_spaces: section.address_spaces(),
            clock_domains: section.clock_domains()?,
            ..hopscope_correlate::CorrelatorConfig::default()
        },
        http,
        token: args.token.clone(),
        exit_after_replay: args.exit_after_replay,
        detector: assurance.detector()?,
        slos: assurance.slos,
        alerts: assurance.alerts,
        policy: (!assurance.policy.is_empty()).then_some(assurance.policy),
        snmp: section
            .snmp
            .iter()
            .map(SnmpEntry::agent)
            .collect::<Result<_>>()?,
        capacity: assurance.capacity,
        clickhouse: args.clickhouse.clone(),
    };
    hopscope_pipeline::serve(config, stop, |listening| {
        for a in listening.udp {
            eprintln!("hopscope: collecting UDP (NetFlow, IPFIX, sFlow) on {a}");
        }
        for a in listening.tcp {
            eprintln!("hopscope: collecting IPFIX over TCP on {a}");
        }
        eprintln!("hopscope: store in {}", args.data_dir.display());
        if let Some(addr) = listening.http {
            eprintln!("hopscope: API and /metrics on http://{addr}");
        }
        on_ready(listening)
    })?;
    Ok(ExitCode::SUCCESS)
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
