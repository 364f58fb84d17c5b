//! One batch fed by templates that fill different columns, and by a
//! NetFlow v5 record (decoded row by row), keeps every value in its record's
//! row and nulls everywhere else: the columns a template does not fill get
//! their nulls lazily (`FlowBatchBuilder::open_columns`), which this pins.

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt16Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use hopscope_schema::ipv4_mapped;
use hopscope_wire::encoder::MessageBuilder;
use hopscope_wire::template::{FieldSpec, Template};
use hopscope_wire::{DecodeOutput, Decoder, Transport};

/// Template 256: sourceIPv4Address, octetDeltaCount.
fn template_a() -> Template {
    Template::new(256, 0, vec![FieldSpec::iana(8, 4), FieldSpec::iana(1, 8)])
}

/// Template 257: destinationTransportPort, packetDeltaCount.
fn template_b() -> Template {
    Template::new(257, 0, vec![FieldSpec::iana(11, 2), FieldSpec::iana(2, 8)])
}

fn record_a(last_octet: u8, bytes: u64) -> Vec<u8> {
    [&[10, 0, 0, last_octet][..], &bytes.to_be_bytes()].concat()
}

fn record_b(port: u16, packets: u64) -> Vec<u8> {
    [&port.to_be_bytes()[..], &packets.to_be_bytes()].concat()
}

/// One IPFIX message holding `records` of one template (announced first).
fn message(template: &Template, records: &[Vec<u8>]) -> Vec<u8> {
    let mut b = MessageBuilder::new(1, 1400);
    b.add_template(template);
    for r in records {
        b.add_record(template.id, r);
    }
    let mut messages = b.finish();
    assert_eq!(messages.len(), 1);
    messages.remove(0)
}

/// A NetFlow v5 packet with one record: 10.9.9.9:1234 → 192.0.2.7:80, 10 packets, 1000 octets.
fn netflow_v5() -> Vec<u8> {
    let mut m = Vec::new();
    for v in [5u16, 1] {
        m.extend_from_slice(&v.to_be_bytes());
    }
    for v in [60_000u32, 1_800_000_000, 0, 1] {
        m.extend_from_slice(&v.to_be_bytes());
    }
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(&[10, 9, 9, 9, 192, 0, 2, 7, 0, 0, 0, 0]);
    m.extend_from_slice(&[0, 1, 0, 2]);
    for v in [10u32, 1000, 59_000, 59_500] {
        m.extend_from_slice(&v.to_be_bytes());
    }
    m.extend_from_slice(&1234u16.to_be_bytes());
    m.extend_from_slice(&80u16.to_be_bytes());
    m.extend_from_slice(&[0, 0x18, 6, 0, 0, 0, 0, 0, 24, 24, 0, 0]);
    m
}

fn decode(messages: &[Vec<u8>]) -> RecordBatch {
    let mut decoder = Decoder::new();
    let mut out = DecodeOutput::default();
    let exporter = "192.0.2.1:4739".parse().unwrap();
    for m in messages {
        decoder
            .decode(exporter, Transport::Udp, 0, m, &mut out)
            .expect("a valid message");
    }
    out.flows.finish().expect("aligned columns")
}

#[test]
fn templates_filling_different_columns_share_a_batch() {
    let batch = decode(&[
        message(&template_a(), &[record_a(1, 100), record_a(2, 200)]),
        message(&template_b(), &[record_b(53, 7)]),
        message(&template_a(), &[record_a(3, 300)]),
        netflow_v5(),
        message(&template_b(), &[record_b(443, 9)]),
    ]);
    assert_eq!(batch.num_rows(), 6);
    let src = batch
        .column_by_name("src_addr")
        .unwrap()
        .as_fixed_size_binary();
    let bytes = batch
        .column_by_name("bytes")
        .unwrap()
        .as_primitive::<UInt64Type>();
    let packets = batch
        .column_by_name("packets")
        .unwrap()
        .as_primitive::<UInt64Type>();
    let dst_port = batch
        .column_by_name("dst_port")
        .unwrap()
        .as_primitive::<UInt16Type>();
    let opt = |a: &dyn Array, row: usize| a.is_valid(row);

    let a_rows = [(0, 1, 100), (1, 2, 200), (3, 3, 300)];
    for (row, last_octet, octets) in a_rows {
        assert_eq!(
            src.value(row),
            ipv4_mapped([10, 0, 0, last_octet]),
            "row {row}"
        );
        assert_eq!(bytes.value(row), octets, "row {row}");
        assert!(!opt(packets, row) && !opt(dst_port, row), "row {row}");
    }
    for (row, port, count) in [(2, 53, 7), (5, 443, 9)] {
        assert_eq!(
            (dst_port.value(row), packets.value(row)),
            (port, count),
            "row {row}"
        );
        assert!(!opt(src, row) && !opt(bytes, row), "row {row}");
    }
    // the v5 record, decoded row by row in the middle of the batch
    assert_eq!(src.value(4), ipv4_mapped([10, 9, 9, 9]));
    assert_eq!(
        (bytes.value(4), packets.value(4), dst_port.value(4)),
        (1000, 10, 80)
    );
    // a column no record fills
    let nat = batch.column_by_name("post_nat_src_addr").unwrap();
    assert_eq!(nat.null_count(), 6);
    // message columns are in every row
    assert_eq!(
        batch
            .column_by_name("time_received_ns")
            .unwrap()
            .null_count(),
        0
    );
}

#[test]
fn a_batch_after_finish_starts_with_no_column_open() {
    let mut decoder = Decoder::new();
    let mut out = DecodeOutput::default();
    let exporter = "192.0.2.1:4739".parse().unwrap();
    let first = message(&template_a(), &[record_a(1, 100)]);
    let second = message(&template_b(), &[record_b(53, 7)]);
    decoder
        .decode(exporter, Transport::Udp, 0, &first, &mut out)
        .unwrap();
    let one = out.flows.finish().unwrap();
    decoder
        .decode(exporter, Transport::Udp, 0, &second, &mut out)
        .unwrap();
    let two = out.flows.finish().unwrap();
    assert_eq!((one.num_rows(), two.num_rows()), (1, 1));
    assert_eq!(one.column_by_name("packets").unwrap().null_count(), 1);
    assert_eq!(two.column_by_name("src_addr").unwrap().null_count(), 1);
    let packets = two
        .column_by_name("packets")
        .unwrap()
        .as_primitive::<UInt64Type>();
    assert_eq!(packets.value(0), 7);
}
