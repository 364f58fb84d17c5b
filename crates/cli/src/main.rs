//! `hopscope`: the command line. Each subcommand lives in its own module;
//! this file only parses arguments and dispatches.

mod decode;
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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
