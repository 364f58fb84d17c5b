//! `hopscope`: the command line. Each subcommand lives in its own module;
//! this file only parses arguments and dispatches.

#![forbid(unsafe_code)]

mod config;
mod decode;
mod probe;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// End-to-end flow telemetry: collect, meter, correlate and query flows.
#[derive(Debug, Parser)]
#[command(name = "hopscope", version, about, propagate_version = true)]
struct Cli {
    /// Configuration file (TOML); flags and HOPSCOPE_* variables win over it.
    #[arg(long, global = true, env = "HOPSCOPE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode captures of flow exports (pcap/pcapng of NetFlow v5/v9, IPFIX,
    /// sFlow; IPFIX files; raw datagram payloads) and print the records.
    ///
    /// Files are read in the order given as one exporter session, so a file
    /// of templates followed by a file of data decodes as it would live.
    Decode(DecodeArgs),
    /// Meter packets from captures into flows, select packets with a hash
    /// shared by every probe (PSAMP), and export flows, packet reports and
    /// metadata as IPFIX.
    Probe(Box<ProbeArgs>),
}

#[derive(Debug, clap::Args)]
struct ProbeArgs {
    /// Capture files (pcap or pcapng) to meter, in order.
    #[arg(long, env = "HOPSCOPE_PROBE_PCAP", value_delimiter = ',')]
    pcap: Vec<PathBuf>,
    /// Live interface to capture from (Linux AF_PACKET ring; needs CAP_NET_RAW).
    #[arg(long, env = "HOPSCOPE_PROBE_INTERFACE")]
    interface: Vec<String>,
    /// Stop a live capture after this long (10s, 5m); by default on SIGINT/SIGTERM.
    #[arg(long, env = "HOPSCOPE_PROBE_DURATION")]
    duration: Option<String>,
    /// Capture threads on the live interface, sharing it by flow (each exports on its own session).
    #[arg(long, env = "HOPSCOPE_PROBE_WORKERS", default_value_t = 1)]
    workers: usize,
    /// Share the interface with other probes in this fanout group (hashed by flow).
    #[arg(long, env = "HOPSCOPE_PROBE_FANOUT_GROUP")]
    fanout_group: Option<u16>,
    /// Where IPFIX goes: file:PATH, udp://HOST:PORT or tcp://HOST:PORT.
    #[arg(long, env = "HOPSCOPE_PROBE_EXPORT")]
    export: Option<String>,
    /// Name of this observation point (exported in an options record).
    #[arg(
        long,
        env = "HOPSCOPE_PROBE_OBSERVATION_POINT",
        default_value = "probe"
    )]
    observation_point: String,
    /// Observation point id (IE 138); by default derived from the name.
    #[arg(long, env = "HOPSCOPE_PROBE_OBSERVATION_POINT_ID")]
    observation_point_id: Option<u64>,
    /// Observation domain id of the exported messages.
    #[arg(long, env = "HOPSCOPE_PROBE_DOMAIN", default_value_t = 0)]
    domain: u32,
    /// Export both directions of a connection in one record (RFC 5103).
    #[arg(long, env = "HOPSCOPE_PROBE_BIFLOW")]
    biflow: bool,
    /// Export long flows after this long (15s, 2m...).
    #[arg(long, env = "HOPSCOPE_PROBE_ACTIVE_TIMEOUT", default_value = "60s")]
    active_timeout: String,
    /// Export flows idle for this long.
    #[arg(long, env = "HOPSCOPE_PROBE_IDLE_TIMEOUT", default_value = "15s")]
    idle_timeout: String,
    /// Most flows kept at once; beyond it flows are exported early (and counted).
    #[arg(long, env = "HOPSCOPE_PROBE_MAX_FLOWS", default_value_t = 1 << 20)]
    max_flows: usize,
    /// Select N packets in M for packet reports, such as 1/100.
    #[arg(long, env = "HOPSCOPE_PROBE_SELECT")]
    select: Option<String>,
    /// Selection hash: bob or crc32 (RFC 5475), the same at every probe.
    #[arg(long, env = "HOPSCOPE_PROBE_HASH", default_value = "bob")]
    hash: String,
    /// Selection hash seed, the same at every probe.
    #[arg(long, env = "HOPSCOPE_PROBE_SEED", default_value_t = 0x6870_7363)]
    seed: u32,
    /// Invariant fields hashed: nat-free, nat-crossing or tunnel (the inner packet's).
    #[arg(long, env = "HOPSCOPE_PROBE_PROFILE", default_value = "nat-free")]
    profile: String,
    /// Tunnels (GRE, VXLAN): meter the inner packet (keyed by tunnel id too) or the outer one.
    #[arg(long, env = "HOPSCOPE_PROBE_TUNNELS", default_value = "inner", value_parser = ["inner", "outer"])]
    tunnels: String,
    /// Meter only what this classic BPF program accepts: the output of
    /// `tcpdump -ddd 'EXPRESSION'` (also attached to a live socket).
    #[arg(long, env = "HOPSCOPE_PROBE_BPF")]
    bpf: Option<String>,
    /// Transport payload octets included in the hash.
    #[arg(long, env = "HOPSCOPE_PROBE_PAYLOAD_PREFIX", default_value_t = 8)]
    payload_prefix: usize,
}

#[derive(Debug, clap::Args)]
struct DecodeArgs {
    /// Files to decode, in order.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
    /// Which table to print.
    #[arg(long, value_enum, default_value_t = Table::Flows)]
    table: Table,
    /// Print at most this many rows (0 for all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
}

#[derive(Debug, Clone, clap::Args)]
struct OutputArgs {
    /// Output as JSON lines (one object per record).
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Output as CSV.
    #[arg(long)]
    csv: bool,
}

impl OutputArgs {
    fn format(&self) -> render::Format {
        if self.json {
            render::Format::Json
        } else if self.csv {
            render::Format::Csv
        } else {
            render::Format::Table
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Table {
    Flows,
    PacketReports,
    InterfaceCounters,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let result = Cli::from_arg_matches(&matches)
        .map_err(anyhow::Error::from)
        .and_then(|cli| {
            let config = match &cli.config {
                Some(path) => config::load(path)?,
                None => config::ConfigFile::default(),
            };
            match cli.command {
                Command::Decode(args) => decode::run(&args),
                Command::Probe(mut args) => {
                    if let Some(sub) = matches.subcommand_matches("probe") {
                        config.probe.apply(&mut args, sub);
                    }
                    probe::run(&args)
                }
            }
        });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The wall clock, Unix nanoseconds (receive times, export times, live timeouts).
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
