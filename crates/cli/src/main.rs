//! `hopscope`: the command line. Each subcommand lives in its own module;
//! this file only parses arguments and dispatches.

#![forbid(unsafe_code)]

mod decode;
mod probe;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// End-to-end flow telemetry: collect, meter, correlate and query flows.
#[derive(Debug, Parser)]
#[command(name = "hopscope", version, about, propagate_version = true)]
struct Cli {
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
    #[arg(long, required_unless_present = "interface")]
    pcap: Vec<PathBuf>,
    /// Live interface to capture from (Linux AF_PACKET ring; needs CAP_NET_RAW).
    #[arg(long)]
    interface: Vec<String>,
    /// Stop a live capture after this long (10s, 5m); by default on SIGINT/SIGTERM.
    #[arg(long)]
    duration: Option<String>,
    /// Share the interface with other probes in this fanout group (hashed by flow).
    #[arg(long)]
    fanout_group: Option<u16>,
    /// Where IPFIX goes: file:PATH, udp://HOST:PORT or tcp://HOST:PORT.
    #[arg(long)]
    export: String,
    /// Name of this observation point (exported in an options record).
    #[arg(long, default_value = "probe")]
    observation_point: String,
    /// Observation point id (IE 138); by default derived from the name.
    #[arg(long)]
    observation_point_id: Option<u64>,
    /// Observation domain id of the exported messages.
    #[arg(long, default_value_t = 0)]
    domain: u32,
    /// Export both directions of a connection in one record (RFC 5103).
    #[arg(long)]
    biflow: bool,
    /// Export long flows after this long (15s, 2m...).
    #[arg(long, default_value = "60s")]
    active_timeout: String,
    /// Export flows idle for this long.
    #[arg(long, default_value = "15s")]
    idle_timeout: String,
    /// Most flows kept at once; beyond it flows are exported early (and counted).
    #[arg(long, default_value_t = 1 << 20)]
    max_flows: usize,
    /// Select N packets in M for packet reports, such as 1/100.
    #[arg(long)]
    select: Option<String>,
    /// Selection hash: bob or crc32 (RFC 5475), the same at every probe.
    #[arg(long, default_value = "bob")]
    hash: String,
    /// Selection hash seed, the same at every probe.
    #[arg(long, default_value_t = 0x6870_7363)]
    seed: u32,
    /// Invariant fields hashed: nat-free or nat-crossing.
    #[arg(long, default_value = "nat-free")]
    profile: String,
    /// Transport payload octets included in the hash.
    #[arg(long, default_value_t = 8)]
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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode(args) => decode::run(&args),
        Command::Probe(args) => probe::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
