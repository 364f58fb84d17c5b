//! A paced IPFIX sender for the collector benchmarks (`bench/collector.sh`):
//! sends N unique flows, about 27 records a datagram as softflowd exports
//! them, at a fixed rate of records per second, to one UDP address, and
//! prints what it sent. Every collector in the benchmark gets the same
//! stream, so their counts compare directly.
//!
//! ```text
//! cargo run --release -p hopscope-collector --example blast -- \
//!     --to 127.0.0.1:4739 --records 1000000 --rate 500000 [--seed 1]
//! ```

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hopscope_schema::{FlowBatchBuilder, FlowRecord, ipv4_mapped};
use hopscope_wire::encoder::FlowEncoder;

struct Args {
    to: SocketAddr,
    records: usize,
    rate: u64,
    seed: u32,
}

fn args() -> Args {
    let mut a = Args {
        to: "127.0.0.1:4739".parse().unwrap(),
        records: 1_000_000,
        rate: 100_000,
        seed: 1,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).expect("every flag takes a value");
        match pair[0].as_str() {
            "--to" => a.to = value.parse().expect("--to ADDRESS:PORT"),
            "--records" => a.records = value.parse().expect("--records N"),
            "--rate" => a.rate = value.parse().expect("--rate RECORDS_PER_SECOND"),
            "--seed" => a.seed = value.parse().expect("--seed N"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// The datagrams of `records` unique flows with softflowd's fields; the
/// seed moves the address space so that runs do not repeat flows.
fn datagrams(records: usize, seed: u32) -> Vec<(Vec<u8>, u32)> {
    let mut encoder = FlowEncoder::new(1, 1400, Some(64));
    let mut out = Vec::new();
    let start = 1_795_000_000_000_000_000i64;
    for chunk in (0..records).collect::<Vec<_>>().chunks(100_000) {
        let mut b = FlowBatchBuilder::with_capacity(chunk.len());
        for &k in chunk {
            let k = k as u32;
            // 65,536 sources and 65,521 destinations; the source port
            // counts the rounds over the sources, so every 5-tuple is unique
            let src = (k & 0xffff).wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503);
            let dst = (k % 65_521) | 0x0a00_0000;
            b.append(&FlowRecord {
                time_flow_start_ns: Some(start + i64::from(k) * 1000),
                time_flow_end_ns: Some(start + i64::from(k) * 1000 + 2_000_000_000),
                ip_version: Some(4),
                src_addr: Some(ipv4_mapped(src.to_be_bytes())),
                dst_addr: Some(ipv4_mapped(dst.to_be_bytes())),
                src_port: Some(1024 + ((k >> 16) % 60_000) as u16),
                dst_port: Some([443, 80, 53, 22, 8080][(k % 5) as usize]),
                proto: Some(if k % 5 == 2 { 17 } else { 6 }),
                tcp_flags: Some(0x1b),
                ip_tos: Some(0),
                bytes: Some(u64::from(40 + k % 1460) * u64::from(1 + k % 7)),
                packets: Some(u64::from(1 + k % 7)),
                in_if: Some(1 + k % 4),
                out_if: Some(5),
                ..FlowRecord::default()
            });
        }
        let batch = b.finish().expect("valid batch");
        for m in encoder.encode(&batch, 1_795_000_000).expect("encodes") {
            out.push(m);
        }
    }
    out.extend(encoder.flush());
    let seq = |m: &[u8]| u32::from_be_bytes([m[8], m[9], m[10], m[11]]);
    let mut with_counts = Vec::with_capacity(out.len());
    for (i, m) in out.iter().enumerate() {
        let next = out.get(i + 1).map_or(records as u32, |n| seq(n));
        with_counts.push((m.clone(), next - seq(m)));
    }
    with_counts
}

fn main() {
    let a = args();
    let messages = datagrams(a.records, a.seed);
    let socket = UdpSocket::bind("0.0.0.0:0").expect("a local socket");
    socket.connect(a.to).expect("connect");
    let started = Instant::now();
    let mut sent_records: u64 = 0;
    let mut errors = 0u64;
    for (m, n) in &messages {
        // pace by records: wait until this record's time has come
        let due = Duration::from_secs_f64(sent_records as f64 / a.rate as f64);
        let now = started.elapsed();
        if due > now + Duration::from_micros(200) {
            std::thread::sleep(due - now);
        }
        if socket.send(m).is_err() {
            errors += 1;
        }
        sent_records += u64::from(*n);
    }
    let secs = started.elapsed().as_secs_f64();
    // a real exporter's next message would show a loss at the very end as
    // a sequence gap; this one does, once the collector has drained its
    // socket: an IPFIX header with the next sequence number and no records
    std::thread::sleep(Duration::from_millis(500));
    let mut closing = vec![0, 10, 0, 16];
    closing.extend_from_slice(&1_795_000_000u32.to_be_bytes());
    closing.extend_from_slice(&(sent_records as u32).to_be_bytes());
    closing.extend_from_slice(&1u32.to_be_bytes());
    let _ = socket.send(&closing);
    println!(
        "sent {} records in {} datagrams in {secs:.2} s ({:.0} records/s), {errors} send errors",
        sent_records,
        messages.len(),
        sent_records as f64 / secs
    );
}
