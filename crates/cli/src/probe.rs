//! `hopscope probe`: meter packets from a capture into flows and packet
//! reports and export them as IPFIX.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use hopscope_packet::bpf::BpfProgram;
use hopscope_probe::{
    CacheConfig, ExportTarget, Exporter, HashFunction, Meter, MeterConfig, PacketSource,
    PcapFileSource, ProbeReport, Profile, SelectorConfig, crc32,
};

use crate::ProbeArgs;

/// Flows or reports waiting before they are encoded and sent.
const EXPORT_BATCH: usize = 4096;

pub fn run(args: &ProbeArgs) -> Result<ExitCode> {
    if args.interface.len() > 1 {
        bail!(
            "one --interface per probe process; run one probe per interface (a fanout group shares one)"
        );
    }
    let selection = match &args.select {
        None => None,
        Some(ratio) => {
            let (selected, population) = parse_ratio(ratio)?;
            Some(SelectorConfig {
                function: match args.hash.as_str() {
                    "bob" => HashFunction::Bob,
                    "crc32" => HashFunction::Crc32,
                    other => bail!("--hash {other}: expected bob or crc32"),
                },
                seed: args.seed,
                selected,
                population,
                profile: match args.profile.as_str() {
                    "nat-free" => Profile::NatFree,
                    "nat-crossing" => Profile::NatCrossing,
                    "tunnel" if args.tunnels == "outer" => {
                        bail!("--profile tunnel hashes the inner packet: it needs --tunnels inner")
                    }
                    "tunnel" => Profile::Tunnel,
                    other => bail!("--profile {other}: expected nat-free, nat-crossing or tunnel"),
                },
                payload_prefix: args.payload_prefix,
                selector_id: 1,
            })
        }
    };
    let observation_point_id = args
        .observation_point_id
        .unwrap_or_else(|| u64::from(crc32(args.observation_point.as_bytes(), 0)));
    let config = MeterConfig {
        observation_point_id,
        domain: args.domain,
        cache: CacheConfig {
            biflow: args.biflow,
            active_timeout_ns: parse_duration(&args.active_timeout)?,
            idle_timeout_ns: parse_duration(&args.idle_timeout)?,
            max_flows: args.max_flows,
            ..CacheConfig::default()
        },
        selection,
        decapsulate: args.tunnels == "inner",
    };
    if args.pcap.is_empty() && args.interface.is_empty() {
        bail!(
            "nothing to meter: give --pcap FILE or --interface IF (or pcap/interface in [probe] of --config)"
        );
    }
    let target_text = args
        .export
        .as_deref()
        .context("--export is needed (or export in [probe] of --config)")?;
    let target: ExportTarget = target_text.parse().map_err(anyhow::Error::msg)?;
    let mut exporter = Exporter::open(&target, args.domain)?;
    let mut meter = Meter::new(config);
    let filter = match &args.bpf {
        Some(text) => Some(
            BpfProgram::parse(text)
                .context("--bpf: expected the output of tcpdump -ddd 'EXPRESSION'")?,
        ),
        None => None,
    };
    if let Some(f) = &filter {
        meter = meter.with_filter(f.clone());
    }
    let mut read_errors = 0u64;
    let mut capture_frames = 0u64;
    let mut kernel_drops = 0u64;
    if let Some(interface) = args.interface.first() {
        (capture_frames, kernel_drops) =
            capture_live(interface, args, filter.as_ref(), &mut meter, &mut exporter)?;
    }
    for path in &args.pcap {
        let mut source =
            PcapFileSource::open(path).with_context(|| format!("opening {}", path.display()))?;
        while let Some(frame) = source.next_frame() {
            match frame {
                Ok(frame) => meter.observe(&frame),
                Err(e) => {
                    // a capture cut mid-record: what came before is metered
                    eprintln!("warning: {}: {e}", path.display());
                    read_errors += 1;
                    break;
                }
            }
            if meter.pending_flows() >= EXPORT_BATCH || meter.pending_reports() >= EXPORT_BATCH {
                export(&mut meter, &mut exporter)?;
            }
        }
        capture_frames += source.counters().frames;
    }
    meter.finish();
    export(&mut meter, &mut exporter)?;
    let s = meter.stats.clone();
    exporter.export_options(
        &ProbeReport {
            observation_point_id,
            observation_point_name: &args.observation_point,
            metering_process_id: 1,
            selector: meter.selector(),
            ignored_packets: s.not_ip + s.malformed + kernel_drops,
            flows_exported: s.flows_exported,
        },
        now_secs(),
    );
    exporter.flush()?;
    let c = &exporter.counters;
    eprintln!(
        "{} frames read ({} dropped by the kernel), {} packets metered ({} octets); {} flows and {} packet reports exported in {} messages \
         ({} records not sent); not metered: {} non-IP, {} malformed; {} truncated, {} orphan fragments, \
         {} flows expired early (cache full), {} filtered out, {} read errors",
        capture_frames,
        kernel_drops,
        s.packets,
        s.octets,
        s.flows_exported,
        s.packet_reports,
        c.messages_sent,
        c.records_not_sent,
        s.not_ip,
        s.malformed,
        s.truncated,
        s.orphan_fragments,
        meter.cache().emergency_expiries,
        s.filtered,
        read_errors,
    );
    Ok(if read_errors > 0 || c.records_not_sent > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Captures from a live interface until `--duration` passes or SIGINT/SIGTERM
/// arrives; returns the frames seen and the kernel's drops.
#[cfg(target_os = "linux")]
fn capture_live(
    interface: &str,
    args: &ProbeArgs,
    filter: Option<&BpfProgram>,
    meter: &mut Meter,
    exporter: &mut Exporter,
) -> Result<(u64, u64)> {
    use hopscope_probe::{AfPacketSource, LiveConfig, stop_requested};
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    let stop = stop_requested();
    let config = LiveConfig {
        fanout_group: args.fanout_group,
        ..LiveConfig::default()
    };
    let mut source = AfPacketSource::open(interface, config)
        .with_context(|| format!("capturing on {interface}"))?;
    if let Some(f) = filter {
        source.attach_filter(f)?;
    }
    let deadline = args
        .duration
        .as_deref()
        .map(parse_duration)
        .transpose()?
        .map(|ns| Instant::now() + Duration::from_nanos(ns as u64));
    let mut last_export = Instant::now();
    while !stop.load(Ordering::SeqCst) && deadline.is_none_or(|d| Instant::now() < d) {
        match source.next_frame_within(Duration::from_millis(200))? {
            Some(frame) => meter.observe(&frame),
            None => meter.tick(now_ns()),
        }
        // a live probe exports as it goes, not only when batches fill
        if meter.pending_flows() >= EXPORT_BATCH || last_export.elapsed() >= Duration::from_secs(1)
        {
            meter.tick(now_ns());
            export(meter, exporter)?;
            last_export = Instant::now();
        }
    }
    source.refresh_drops();
    let c = source.counters();
    Ok((c.frames, c.kernel_drops))
}

#[cfg(not(target_os = "linux"))]
fn capture_live(
    _: &str,
    _: &ProbeArgs,
    _: Option<&BpfProgram>,
    _: &mut Meter,
    _: &mut Exporter,
) -> Result<(u64, u64)> {
    bail!("live capture needs Linux (AF_PACKET); use --pcap")
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn export(meter: &mut Meter, exporter: &mut Exporter) -> Result<()> {
    let now = now_secs();
    if meter.pending_flows() > 0 {
        exporter.export_flows(&meter.take_flows()?, now)?;
    }
    if meter.pending_reports() > 0 {
        exporter.export_reports(&meter.take_reports()?, now)?;
    }
    exporter.flush()?;
    Ok(())
}

fn now_secs() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

/// "1/100" → (1, 100).
fn parse_ratio(s: &str) -> Result<(u32, u32)> {
    let (a, b) = s
        .split_once('/')
        .with_context(|| format!("--select {s}: expected N/M, such as 1/100"))?;
    let (a, b): (u32, u32) = (a.trim().parse()?, b.trim().parse()?);
    if a == 0 || b == 0 || a > b {
        bail!("--select {s}: need 0 < N <= M");
    }
    Ok((a, b))
}

/// "15s", "500ms", "2m", "1h" → nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: i64 = number
        .parse()
        .with_context(|| format!("{s}: not a duration such as 15s or 500ms"))?;
    let scale = match unit {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" | "" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        other => bail!("{s}: unknown unit {other}"),
    };
    Ok(n.saturating_mul(scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_ratios() {
        assert_eq!(parse_duration("15s").unwrap(), 15_000_000_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500_000_000);
        assert_eq!(parse_duration("2m").unwrap(), 120_000_000_000);
        assert!(parse_duration("fast").is_err());
        assert_eq!(parse_ratio("1/100").unwrap(), (1, 100));
        assert!(parse_ratio("0/10").is_err());
        assert!(parse_ratio("5").is_err());
    }
}
