//! `hopscope decode`: captures and files in, records out.

use std::process::ExitCode;

use anyhow::Result;
use hopscope_wire::file::replay_file;
use hopscope_wire::{DecodeOutput, Decoder, ErrorKind};

use crate::{DecodeArgs, Table, now_ns};

pub fn run(args: &DecodeArgs) -> Result<ExitCode> {
    let mut decoder = Decoder::new();
    let mut out = DecodeOutput::with_capacity(4096);
    let mut stream_errors = 0u64;
    for path in &args.files {
        if let Err(e) = replay_file(path, &mut decoder, &mut out, now_ns()) {
            // what was read before the damage is decoded and printed
            eprintln!("  error: {}: {e}", path.display());
            stream_errors += 1;
        }
    }
    decoder.flush_pending();

    let batch = match args.table {
        Table::Flows => out.flows.finish()?,
        Table::PacketReports => out.packet_reports.finish()?,
        Table::InterfaceCounters => out.interface_counters.finish()?,
    };
    let batch = if args.limit > 0 && batch.num_rows() > args.limit {
        batch.slice(0, args.limit)
    } else {
        batch
    };
    let stdout = std::io::stdout();
    hopscope_store::render::write(
        &mut stdout.lock(),
        &batch,
        args.output.format(),
        hopscope_store::render::Columns::Filled,
    )?;

    let totals = decoder.totals();
    eprintln!(
        "{} messages, {} flow records, {} packet reports, {} counter records, {} options records; \
         {} records lost in transit (sequence gaps), {} decode errors",
        totals.messages,
        totals.flow_records,
        totals.packet_reports,
        totals.counter_records,
        totals.options_records,
        totals.lost_records + totals.lost_messages,
        totals.total_errors() + stream_errors,
    );
    for kind in ErrorKind::ALL {
        let n = totals.error_count(*kind);
        if n > 0 {
            eprintln!("  {:>8} {}", n, kind.label());
        }
    }
    for e in decoder.recent_errors().iter().take(10) {
        eprintln!("  error: {e}");
    }
    Ok(if totals.total_errors() + stream_errors > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
