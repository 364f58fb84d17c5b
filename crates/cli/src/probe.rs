//! `hopscope probe`: meter packets from a capture into flows and packet
//! reports and export them as IPFIX.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use hopscope_packet::bpf::BpfProgram;
use hopscope_probe::{
    CacheConfig, ExportTarget, Exporter, HashFunction, Meter, MeterConfig, MeterStats,
    MeteringProcess, PacketSource, PcapFileSource, Profile, SelectorConfig, crc32,
    observation_point_id,
};

use hopscope_wire::PointClock;

use crate::{ProbeArgs, now_ns};

/// Flows or reports waiting before they are encoded and sent.
const EXPORT_BATCH: usize = 4096;
/// How often a live probe repeats its options records (as template refreshes are repeated over UDP).
const OPTIONS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

pub fn run(args: &ProbeArgs) -> Result<ExitCode> {
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
    let cache = CacheConfig {
        biflow: args.biflow,
        active_timeout_ns: parse_duration(&args.active_timeout)?,
        idle_timeout_ns: parse_duration(&args.idle_timeout)?,
        max_flows: args.max_flows,
        ..CacheConfig::default()
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
    let filter = match &args.bpf {
        Some(text) => Some(
            BpfProgram::parse(text)
                .context("--bpf: expected the output of tcpdump -ddd 'EXPRESSION'")?,
        ),
        None => None,
    };
    let clock = announced_clock(args)?;
    // each interface is its own observation point: "name/interface" when there are several
    let new_probe = |interface: Option<&str>| -> Result<Probe> {
        let observation_point = match interface {
            Some(i) if args.interface.len() > 1 => format!("{}/{i}", args.observation_point),
            _ => args.observation_point.clone(),
        };
        // a given id names the one observation point; several get ids from their names
        let observation_point_id = args
            .observation_point_id
            .filter(|_| args.interface.len() <= 1)
            .unwrap_or_else(|| observation_point_id(&observation_point));
        let mut meter = Meter::new(MeterConfig {
            observation_point_id,
            domain: args.domain,
            cache,
            selection,
            decapsulate: args.tunnels == "inner",
        });
        if let Some(f) = &filter {
            meter = meter.with_filter(f.clone());
        }
        Ok(Probe {
            process: MeteringProcess {
                meter,
                exporter: Exporter::open(&target, args.domain)?,
                observation_point,
                observation_point_id,
                clock,
            },
            summary: Summary::default(),
        })
    };
    let summary = match args.interface.is_empty() {
        false => capture_live(args, filter.as_ref(), &target, &new_probe)?,
        true => {
            let mut probe = new_probe(None)?;
            // what the flows are (1:1, the point's name) before the first of them
            probe.process.export_options(0, now_secs())?;
            for path in &args.pcap {
                let mut source = PcapFileSource::open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                while let Some(frame) = source.next_frame() {
                    match frame {
                        Ok(frame) => probe.process.meter.observe(&frame),
                        Err(e) => {
                            // a capture cut mid-record: what came before is metered
                            eprintln!("warning: {}: {e}", path.display());
                            probe.summary.read_errors += 1;
                            break;
                        }
                    }
                    if probe.process.meter.pending_flows() >= EXPORT_BATCH
                        || probe.process.meter.pending_reports() >= EXPORT_BATCH
                    {
                        probe.export()?;
                    }
                }
                probe.summary.frames += source.counters().frames;
            }
            probe.finish()?
        }
    };
    summary.print();
    Ok(summary.exit_code())
}

/// The clock to announce (`--clock`, `--clock-bound`).
fn announced_clock(args: &ProbeArgs) -> Result<Option<PointClock>> {
    let bound_ns = match &args.clock_bound {
        Some(b) => Some(clock_bound_ns(b).with_context(|| format!("--clock-bound {b}"))?),
        None => None,
    };
    let live = !args.interface.is_empty();
    Ok(match args.clock.as_str() {
        "none" => None,
        "auto" if !live => None,
        "auto" | "host" => {
            if bound_ns.is_some_and(|b| b > 0) {
                bail!(
                    "--clock-bound: the host's clock is one clock (bound 0); name a clock shared by hosts to give a bound"
                );
            }
            Some(PointClock {
                id: host_clock_id()?,
                bound_ns: 0,
            })
        }
        name => Some(PointClock {
            id: named_clock_id(name),
            bound_ns: bound_ns.context(
                "--clock NAME: give --clock-bound, the most the clocks of its hosts differ by",
            )?,
        }),
    })
}

/// The id of a clock shared by name (a PTP or NTP domain): the same for a
/// probe's `--clock NAME` and a `[[serve.clocks]]` group of that name, and
/// apart from host clocks (boot ids), whatever the name.
pub(crate) fn named_clock_id(name: &str) -> u64 {
    u64::from(crc32(name.as_bytes(), 0)) | 1 << 62
}

/// A clock bound: `0`, or a duration (`50us`, `2ms`).
pub(crate) fn clock_bound_ns(text: &str) -> Result<u64> {
    if text.trim() == "0" {
        return Ok(0);
    }
    Ok(parse_duration(text)?.max(0) as u64)
}

/// This kernel's clock: every probe that reads it (on this host, in any
/// network namespace or container) announces the same id, from the boot
/// id, which a reboot changes (and with it, possibly, the clock).
fn host_clock_id() -> Result<u64> {
    let path = "/proc/sys/kernel/random/boot_id";
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--clock host: reading {path} (give --clock none or a name)"))?;
    let hex: String = text
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(16)
        .collect();
    let id = u64::from_str_radix(&hex, 16)
        .with_context(|| format!("--clock host: {path} holds no boot id"))?;
    Ok(id & !(3 << 62))
}

/// One metering process and what it has done.
struct Probe {
    process: MeteringProcess,
    summary: Summary,
}

impl Probe {
    fn export(&mut self) -> Result<()> {
        Ok(self.process.export(now_secs())?)
    }

    /// Exports every flow left, then the options records, and says what happened.
    fn finish(mut self) -> Result<Summary> {
        self.process.meter.finish();
        self.export()?;
        self.process
            .export_options(self.summary.kernel_drops, now_secs())?;
        let p = &self.process;
        let mut summary = self.summary;
        summary.stats = p.meter.stats.clone();
        summary.emergency_expiries = p.meter.cache().emergency_expiries;
        summary.messages = p.exporter.counters.messages_sent;
        summary.not_sent = p.exporter.counters.records_not_sent;
        Ok(summary)
    }
}

/// What a probe (or all its capture workers) did.
#[derive(Debug, Default)]
struct Summary {
    frames: u64,
    kernel_drops: u64,
    loopback_copies: u64,
    read_errors: u64,
    stats: MeterStats,
    emergency_expiries: u64,
    messages: u64,
    not_sent: u64,
}

impl Summary {
    fn add(&mut self, o: &Summary) {
        self.frames += o.frames;
        self.kernel_drops += o.kernel_drops;
        self.loopback_copies += o.loopback_copies;
        self.read_errors += o.read_errors;
        self.stats.accumulate(&o.stats);
        self.emergency_expiries += o.emergency_expiries;
        self.messages += o.messages;
        self.not_sent += o.not_sent;
    }

    fn print(&self) {
        let s = &self.stats;
        eprintln!(
            "{} frames read ({} dropped by the kernel, {} loopback copies of sent packets skipped), {} packets metered ({} octets); {} flows and {} packet reports \
             exported in {} messages ({} records not sent); not metered: {} non-IP, {} malformed; {} truncated, \
             {} orphan fragments, {} flows expired early (cache full), {} filtered out, {} read errors",
            self.frames,
            self.kernel_drops,
            self.loopback_copies,
            s.packets,
            s.octets,
            s.flows_exported,
            s.packet_reports,
            self.messages,
            self.not_sent,
            s.not_ip,
            s.malformed,
            s.truncated,
            s.orphan_fragments,
            self.emergency_expiries,
            s.filtered,
            self.read_errors,
        );
    }

    fn exit_code(&self) -> ExitCode {
        if self.read_errors > 0 || self.not_sent > 0 {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// Captures from a live interface until `--duration` passes or SIGINT/SIGTERM
/// arrives, with `--workers` threads sharing the interface through a fanout
/// group (hashed by flow, so each flow stays with one worker, which meters
/// and exports it on its own transport session).
#[cfg(target_os = "linux")]
fn capture_live(
    args: &ProbeArgs,
    filter: Option<&BpfProgram>,
    target: &ExportTarget,
    new_probe: &(dyn Fn(Option<&str>) -> Result<Probe> + Sync),
) -> Result<Summary> {
    use hopscope_probe::{AfPacketSource, LiveConfig, stop_requested};
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    let workers = args.workers.max(1);
    if workers > 1 && matches!(target, ExportTarget::File(_)) {
        bail!(
            "--workers {workers} needs udp:// or tcp:// export: several workers cannot share one file"
        );
    }
    let stop = stop_requested();
    let fanout_group = args
        .fanout_group
        .or((workers > 1).then(|| (std::process::id() & 0xffff) as u16));
    let config = LiveConfig {
        fanout_group,
        ..LiveConfig::default()
    };
    let deadline = deadline(args.duration.as_deref())?;
    // a fanout group is per interface: each interface gets its own group id
    let worker = |index: usize, interface: &str| -> Result<Summary> {
        let mut probe = new_probe(Some(interface))?;
        let config = LiveConfig {
            fanout_group: config.fanout_group.map(|g| g.wrapping_add(index as u16)),
            ..config
        };
        let mut source = AfPacketSource::open(interface, config)
            .with_context(|| format!("capturing on {interface}"))?;
        if let Some(f) = filter {
            source.attach_filter(f)?;
        }
        let mut last_export = Instant::now();
        let mut last_options: Option<Instant> = None;
        while !stop.load(Ordering::SeqCst) && deadline.is_none_or(|d| Instant::now() < d) {
            // the options at once and then again: UDP may lose them, and a
            // collector that restarts learns the point's name and rate anew
            if last_options.is_none_or(|t| t.elapsed() >= OPTIONS_INTERVAL) {
                source.refresh_drops();
                probe
                    .process
                    .export_options(source.counters().kernel_drops, now_secs())?;
                last_options = Some(Instant::now());
            }
            match source.next_frame_within(Duration::from_millis(200))? {
                Some(frame) => probe.process.meter.observe(&frame),
                None => probe.process.meter.tick(now_ns()),
            }
            // a live probe exports as it goes, not only when batches fill
            if probe.process.meter.pending_flows() >= EXPORT_BATCH
                || last_export.elapsed() >= Duration::from_secs(1)
            {
                probe.process.meter.tick(now_ns());
                probe.export()?;
                last_export = Instant::now();
            }
        }
        source.refresh_drops();
        let c = source.counters();
        probe.summary.frames = c.frames;
        probe.summary.kernel_drops = c.kernel_drops;
        probe.summary.loopback_copies = c.loopback_copies;
        probe.finish()
    };
    let results: Vec<Result<Summary>> = std::thread::scope(|scope| {
        let handles: Vec<_> = args
            .interface
            .iter()
            .enumerate()
            .flat_map(|(index, interface)| (0..workers).map(move |_| (index, interface)))
            .map(|(index, interface)| scope.spawn(move || worker(index, interface)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a capture worker panicked")))
            })
            .collect()
    });
    let mut total = Summary::default();
    for r in results {
        total.add(&r?);
    }
    Ok(total)
}

#[cfg(not(target_os = "linux"))]
fn capture_live(
    _: &ProbeArgs,
    _: Option<&BpfProgram>,
    _: &ExportTarget,
    _: &(dyn Fn(Option<&str>) -> Result<Probe> + Sync),
) -> Result<Summary> {
    bail!("live capture needs Linux (AF_PACKET); use --pcap")
}

/// When a `--duration` given now runs out.
pub fn deadline(duration: Option<&str>) -> Result<Option<std::time::Instant>> {
    Ok(duration
        .map(parse_duration)
        .transpose()?
        .map(|ns| std::time::Instant::now() + std::time::Duration::from_nanos(ns as u64)))
}

fn now_secs() -> u32 {
    (now_ns() / 1_000_000_000) as u32
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
    hopscope_store::query::parse_duration(s)
        .with_context(|| format!("{s}: not a duration such as 15s, 500ms or 1h"))
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
