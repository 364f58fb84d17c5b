//! `hopscope decode`: captures and files in, records out.

use std::fs::File;
use std::io::{BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use hopscope_wire::file::{CaptureDatagrams, IpfixReader, is_capture};
use hopscope_wire::{DecodeOutput, Decoder, ErrorKind, Transport};

use crate::{DecodeArgs, Table, render};

/// Exporter address given to files that carry no sender (raw datagrams, IPFIX files).
const FILE_EXPORTER: &str = "0.0.0.0:0";

pub fn run(args: &DecodeArgs) -> Result<ExitCode> {
    let mut decoder = Decoder::new();
    let mut out = DecodeOutput::with_capacity(4096);
    let mut stream_errors = 0u64;
    for path in &args.files {
        stream_errors += decode_file(path, &mut decoder, &mut out)
            .with_context(|| format!("decoding {}", path.display()))?;
    }
    decoder.flush_pending();

    let batch = match args.table {
        Table::Flows => out.flows.finish()?,
        Table::PacketReports => out.packet_reports.finish()?,
        Table::InterfaceCounters => out.interface_counters.finish()?,
    };
    let batch = if args.limit > 0 && batch.num_rows() > args.limit { batch.slice(0, args.limit) } else { batch };
    let stdout = std::io::stdout();
    render::write(&mut stdout.lock(), &batch, args.output.format())?;

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
    Ok(if totals.total_errors() + stream_errors > 0 { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

/// Feeds one file to the decoder; returns the count of stream-level errors.
fn decode_file(path: &Path, decoder: &mut Decoder, out: &mut DecodeOutput) -> Result<u64> {
    let mut head = [0u8; 4];
    let mut file = File::open(path)?;
    let n = file.read(&mut head)?;
    drop(file);
    let reader = BufReader::new(File::open(path)?);
    let received_ns = now_ns();
    let file_exporter: SocketAddr = FILE_EXPORTER.parse()?;
    if is_capture(&head[..n]) {
        let mut datagrams = CaptureDatagrams::new(reader, head == [0x0a, 0x0d, 0x0d, 0x0a])?;
        while let Some(d) = datagrams.next_datagram() {
            let d = d?;
            // message-level errors are counted by the decoder; keep going
            let _ = decoder.decode(d.source, Transport::Udp, d.timestamp_ns, &d.payload, out);
        }
        Ok(0)
    } else if head[..n.min(2)] == [0, 10] && looks_like_ipfix_file(path)? {
        let mut messages = IpfixReader::new(reader);
        while let Some(m) = messages.next_message() {
            match m {
                Ok(m) => {
                    let _ = decoder.decode(file_exporter, Transport::File, received_ns, m, out);
                }
                Err(e) => {
                    eprintln!("  error: {}: {e}", path.display());
                    return Ok(1);
                }
            }
        }
        Ok(0)
    } else {
        // one raw datagram payload per file (as the logstash and telegraf fixtures are)
        let bytes = std::fs::read(path)?;
        let _ = decoder.decode(file_exporter, Transport::Udp, received_ns, &bytes, out);
        Ok(0)
    }
}

/// An IPFIX file holds several messages; a raw datagram holds one whose
/// length field equals the file size (or is wrong, which the decoder reports).
fn looks_like_ipfix_file(path: &Path) -> Result<bool> {
    let bytes = std::fs::read(path)?;
    let first = hopscope_wire::file::ipfix_message_length(&bytes);
    Ok(matches!(first, Some(l) if l < bytes.len()))
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
