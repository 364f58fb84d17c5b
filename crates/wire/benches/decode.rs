//! Decoder and encoder throughput, in records per second on one core, with
//! netflow_parser on the same messages in the same run for the ratio.
//!
//! Messages: a realistic 20-element template (addresses, ports, protocol,
//! ToS, TCP flags, counters, millisecond times, interfaces, AS numbers, next
//! hop, masks, VLAN, end reason; 73 octets a record) packed into messages of
//! about 1400 octets, as a router sends them over UDP.

use std::hint::black_box;

/// The allocator of the `hopscope` binary, so that batches are allocated
/// and freed here as they are in the collector (both decoders get it alike).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hopscope_schema::{FlowBatchBuilder, FlowRecord, ipv4_mapped};
use hopscope_wire::encoder::{FlowEncoder, MessageBuilder};
use hopscope_wire::template::{FieldSpec, Template};
use hopscope_wire::{DecodeOutput, Decoder, Transport};

const FIELDS: [(u16, u16); 20] = [
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (5, 1),
    (6, 2),
    (1, 8),
    (2, 8),
    (152, 8),
    (153, 8),
    (10, 4),
    (14, 4),
    (16, 4),
    (17, 4),
    (15, 4),
    (9, 1),
    (13, 1),
    (58, 2),
    (136, 1),
];
const MESSAGES: usize = 2000;

fn record(i: u64) -> Vec<u8> {
    let mut r = Vec::with_capacity(73);
    r.extend_from_slice(&(0x0a00_0000u32 + (i as u32 & 0xffff)).to_be_bytes());
    r.extend_from_slice(&(0xc0a8_0000u32 + (i as u32 % 251)).to_be_bytes());
    r.extend_from_slice(&(1024 + (i % 50000) as u16).to_be_bytes());
    r.extend_from_slice(&443u16.to_be_bytes());
    r.push(6);
    r.push(0);
    r.extend_from_slice(&0x18u16.to_be_bytes());
    r.extend_from_slice(&(1500 * (i % 97 + 1)).to_be_bytes());
    r.extend_from_slice(&(i % 97 + 1).to_be_bytes());
    r.extend_from_slice(&(1_764_000_000_000 + i).to_be_bytes());
    r.extend_from_slice(&(1_764_000_001_000 + i).to_be_bytes());
    r.extend_from_slice(&3u32.to_be_bytes());
    r.extend_from_slice(&7u32.to_be_bytes());
    r.extend_from_slice(&64512u32.to_be_bytes());
    r.extend_from_slice(&(65000 + (i % 10) as u32).to_be_bytes());
    r.extend_from_slice(&[192, 0, 2, 1]);
    r.push(24);
    r.push(16);
    r.extend_from_slice(&100u16.to_be_bytes());
    r.push(2);
    r
}

/// IPFIX messages of ~1400 octets; the template rides in the first.
fn ipfix_messages() -> (Vec<Vec<u8>>, u64) {
    let template = Template::new(
        256,
        0,
        FIELDS
            .iter()
            .map(|&(id, len)| FieldSpec::iana(id, len))
            .collect(),
    );
    let mut b = MessageBuilder::new(1, 1400);
    b.set_export_time(1_764_000_100);
    b.add_template(&template);
    let mut n = 0u64;
    loop {
        b.add_record(256, &record(n));
        n += 1;
        if b.messages_closed() as usize >= MESSAGES {
            break;
        }
    }
    let messages = b.finish();
    (messages, u64::from(b.records_sent()))
}

/// The same records as NetFlow v9 export packets.
fn v9_messages() -> (Vec<Vec<u8>>, u64) {
    let per_message = (1400 - 20 - 4) / 73;
    let mut out = Vec::new();
    let mut n = 0u64;
    for seq in 0..MESSAGES as u32 {
        let mut m = Vec::with_capacity(1400);
        m.extend_from_slice(&9u16.to_be_bytes());
        m.extend_from_slice(&0u16.to_be_bytes());
        m.extend_from_slice(&3_600_000u32.to_be_bytes());
        m.extend_from_slice(&1_764_000_100u32.to_be_bytes());
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(&1u32.to_be_bytes());
        if seq == 0 {
            m.extend_from_slice(&0u16.to_be_bytes());
            m.extend_from_slice(&((8 + FIELDS.len() * 4) as u16).to_be_bytes());
            m.extend_from_slice(&256u16.to_be_bytes());
            m.extend_from_slice(&(FIELDS.len() as u16).to_be_bytes());
            for (id, len) in FIELDS {
                m.extend_from_slice(&id.to_be_bytes());
                m.extend_from_slice(&len.to_be_bytes());
            }
        }
        m.extend_from_slice(&256u16.to_be_bytes());
        m.extend_from_slice(&((4 + per_message * 73) as u16).to_be_bytes());
        for _ in 0..per_message {
            m.extend_from_slice(&record(n));
            n += 1;
        }
        out.push(m);
    }
    (out, n)
}

/// sFlow v5 datagrams of 7 flow samples, each with a 128-octet raw header
/// (Ethernet, IPv4, TCP) and extended switch data, as switches send them.
fn sflow_datagrams() -> (Vec<Vec<u8>>, u64) {
    let mut frame = vec![0u8; 128];
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    frame[14] = 0x45;
    frame[16..18].copy_from_slice(&1500u16.to_be_bytes());
    frame[22] = 64;
    frame[23] = 6;
    frame[26..30].copy_from_slice(&[10, 0, 0, 1]);
    frame[30..34].copy_from_slice(&[10, 0, 0, 2]);
    frame[34..36].copy_from_slice(&40000u16.to_be_bytes());
    frame[36..38].copy_from_slice(&443u16.to_be_bytes());
    frame[46] = 0x50;
    frame[47] = 0x10;
    let u32s = |v: &mut Vec<u8>, xs: &[u32]| {
        xs.iter()
            .for_each(|x| v.extend_from_slice(&x.to_be_bytes()))
    };
    let mut out = Vec::new();
    for seq in 0..MESSAGES as u32 {
        let mut d = Vec::with_capacity(1400);
        u32s(&mut d, &[5, 1, 0xc000_0201, 0, seq, 1000, 7]);
        for s in 0..7u32 {
            let mut sample = Vec::new();
            u32s(&mut sample, &[seq * 7 + s, 3, 1000, 0, 0, 3, 4, 2]);
            u32s(&mut sample, &[1, 16 + 128, 1, 1514, 4, 128]);
            sample.extend_from_slice(&frame);
            u32s(&mut sample, &[1001, 16, 100, 0, 200, 0]);
            u32s(&mut d, &[1, sample.len() as u32]);
            d.extend_from_slice(&sample);
        }
        out.push(d);
    }
    (out, MESSAGES as u64 * 7)
}

fn decode_all(messages: &[Vec<u8>]) -> usize {
    let mut decoder = Decoder::new();
    let mut out = DecodeOutput::with_capacity(8192 + 2048);
    let exporter = "192.0.2.1:4739".parse().unwrap();
    let mut rows = 0;
    for (i, m) in messages.iter().enumerate() {
        let _ = decoder.decode(exporter, Transport::Udp, i as i64, m, &mut out);
        if out.flows.len() >= 8192 {
            rows += out.flows.finish().map(|b| b.num_rows()).unwrap_or(0);
        }
    }
    rows + out.flows.finish().map(|b| b.num_rows()).unwrap_or(0)
}

fn netflow_parser_all(messages: &[Vec<u8>]) -> usize {
    let mut parser = netflow_parser::NetflowParser::default();
    messages
        .iter()
        .map(|m| parser.parse_bytes(m).packets.len())
        .sum()
}

fn benches(c: &mut Criterion) {
    let (ipfix, ipfix_records) = ipfix_messages();
    let (v9, v9_records) = v9_messages();
    let (sflow, sflow_records) = sflow_datagrams();
    assert_eq!(decode_all(&ipfix) as u64, ipfix_records);
    assert_eq!(decode_all(&v9) as u64, v9_records);
    assert_eq!(decode_all(&sflow) as u64, sflow_records);

    let mut g = c.benchmark_group("ipfix_decode");
    g.throughput(Throughput::Elements(ipfix_records));
    g.bench_function("hopscope", |b| {
        b.iter(|| black_box(decode_all(black_box(&ipfix))))
    });
    g.bench_function("netflow_parser", |b| {
        b.iter(|| black_box(netflow_parser_all(black_box(&ipfix))))
    });
    g.finish();

    let mut g = c.benchmark_group("netflow_v9_decode");
    g.throughput(Throughput::Elements(v9_records));
    g.bench_function("hopscope", |b| {
        b.iter(|| black_box(decode_all(black_box(&v9))))
    });
    g.bench_function("netflow_parser", |b| {
        b.iter(|| black_box(netflow_parser_all(black_box(&v9))))
    });
    g.finish();

    let mut g = c.benchmark_group("sflow_decode");
    g.throughput(Throughput::Elements(sflow_records));
    g.bench_function("hopscope", |b| {
        b.iter(|| black_box(decode_all(black_box(&sflow))))
    });
    g.finish();

    // the encoder: a batch of flows to UDP-sized IPFIX messages
    let mut batch = FlowBatchBuilder::with_capacity(50_000);
    for i in 0..50_000u64 {
        batch.append(&FlowRecord {
            ip_version: Some(4),
            src_addr: Some(ipv4_mapped((i as u32).to_be_bytes())),
            dst_addr: Some(ipv4_mapped([192, 0, 2, 1])),
            src_port: Some(i as u16),
            dst_port: Some(443),
            proto: Some(6),
            bytes: Some(i * 100),
            packets: Some(i),
            time_flow_start_ns: Some(1_764_000_000_000_000_000 + i as i64),
            time_flow_end_ns: Some(1_764_000_001_000_000_000 + i as i64),
            tcp_flags: Some(0x1b),
            in_if: Some(1),
            out_if: Some(2),
            minimum_ttl: Some(60),
            maximum_ttl: Some(64),
            flow_end_reason: Some(3),
            ..FlowRecord::default()
        });
    }
    let batch = batch.finish().unwrap();
    let mut g = c.benchmark_group("ipfix_encode");
    g.throughput(Throughput::Elements(batch.num_rows() as u64));
    g.bench_function("hopscope", |b| {
        b.iter(|| {
            let mut e = FlowEncoder::new(1, 1400, Some(100));
            let mut m = e.encode(black_box(&batch), 1_764_000_100).unwrap();
            m.extend(e.flush());
            black_box(m.len())
        })
    });
    g.finish();
}

criterion_group! {
    name = wire;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = benches
}
criterion_main!(wire);
