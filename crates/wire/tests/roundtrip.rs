//! Property tests: what the encoder writes, the decoder reads back the same,
//! for generated flows and for generated templates of any shape.

use arrow_array::RecordBatch;
use hopscope_schema::{FlowBatchBuilder, FlowRecord, ipv4_mapped};
use hopscope_wire::encoder::{FlowEncoder, MessageBuilder, push_variable};
use hopscope_wire::template::{FieldSpec, Template, VARIABLE_LENGTH};
use hopscope_wire::{DecodeOutput, Decoder, Transport};
use proptest::prelude::*;

fn exporter() -> std::net::SocketAddr {
    "127.0.0.1:9995".parse().unwrap()
}

fn address() -> impl Strategy<Value = (u8, [u8; 16])> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|v4| (4u8, ipv4_mapped(v4))),
        // IPv6 that is not IPv4-mapped
        any::<[u8; 16]>().prop_map(|mut v6| {
            v6[0] = 0x20;
            (6u8, v6)
        }),
    ]
}

prop_compose! {
    fn flow()(
        (version, src) in address(),
        dst_raw in any::<[u8; 16]>(),
        ports in any::<(u16, u16)>(),
        proto in any::<u8>(),
        bytes in any::<u64>(),
        packets in any::<u64>(),
        start in 0i64..4_000_000_000_000_000_000,
        duration in 0i64..3_600_000_000_000,
        ttl in any::<(u8, u8)>(),
        flags in 0u16..0x1ff,
        ifs in any::<(u32, u32)>(),
        vlan in 0u16..4096,
        end_reason in 1u8..6,
        observation_point in any::<u64>(),
        mpls in 0u32..(1 << 20),
        rate in 1u32..u32::MAX,
    ) -> FlowRecord {
        let dst = if version == 4 { ipv4_mapped([dst_raw[0], dst_raw[1], dst_raw[2], dst_raw[3]]) } else { dst_raw };
        FlowRecord {
            ip_version: Some(version),
            src_addr: Some(src),
            dst_addr: Some(dst),
            src_port: Some(ports.0),
            dst_port: Some(ports.1),
            proto: Some(proto),
            bytes: Some(bytes),
            packets: Some(packets),
            time_flow_start_ns: Some(start),
            time_flow_end_ns: Some(start + duration),
            minimum_ttl: Some(ttl.0.min(ttl.1)),
            maximum_ttl: Some(ttl.0.max(ttl.1)),
            tcp_flags: Some(flags),
            in_if: Some(ifs.0),
            out_if: Some(ifs.1),
            src_vlan: Some(vlan),
            flow_end_reason: Some(end_reason),
            observation_point_id: Some(observation_point),
            mpls_top_label: Some(mpls),
            sampling_rate: Some(u64::from(rate)),
            ..FlowRecord::default()
        }
    }
}

/// The columns a flow keeps through export (what a collector re-derives is left out).
fn exported(r: &FlowRecord) -> FlowRecord {
    FlowRecord {
        ip_version: r.ip_version,
        src_addr: r.src_addr,
        dst_addr: r.dst_addr,
        src_port: r.src_port,
        dst_port: r.dst_port,
        proto: r.proto,
        bytes: r.bytes,
        packets: r.packets,
        time_flow_start_ns: r.time_flow_start_ns,
        time_flow_end_ns: r.time_flow_end_ns,
        minimum_ttl: r.minimum_ttl,
        maximum_ttl: r.maximum_ttl,
        tcp_flags: r.tcp_flags,
        in_if: r.in_if,
        out_if: r.out_if,
        src_vlan: r.src_vlan,
        flow_end_reason: r.flow_end_reason,
        observation_point_id: r.observation_point_id,
        mpls_top_label: r.mpls_top_label,
        sampling_rate: r.sampling_rate,
        ..FlowRecord::default()
    }
}

fn to_batch(rows: &[FlowRecord]) -> RecordBatch {
    let mut b = FlowBatchBuilder::with_capacity(rows.len());
    for r in rows {
        b.append(r);
    }
    b.finish().unwrap()
}

/// Reads the rows of a decoded batch back into records (the exported columns).
fn rows_of(batch: &RecordBatch) -> Vec<FlowRecord> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    let u8c = |n: &str| {
        batch
            .column_by_name(n)
            .unwrap()
            .as_primitive::<UInt8Type>()
            .clone()
    };
    let u16c = |n: &str| {
        batch
            .column_by_name(n)
            .unwrap()
            .as_primitive::<UInt16Type>()
            .clone()
    };
    let u32c = |n: &str| {
        batch
            .column_by_name(n)
            .unwrap()
            .as_primitive::<UInt32Type>()
            .clone()
    };
    let u64c = |n: &str| {
        batch
            .column_by_name(n)
            .unwrap()
            .as_primitive::<UInt64Type>()
            .clone()
    };
    let ts = |n: &str| {
        batch
            .column_by_name(n)
            .unwrap()
            .as_primitive::<TimestampNanosecondType>()
            .clone()
    };
    let addr = |n: &str| {
        batch
            .column_by_name(n)
            .unwrap()
            .as_fixed_size_binary()
            .clone()
    };
    let get8 = |a: &arrow_array::UInt8Array, i: usize| a.is_valid(i).then(|| a.value(i));
    let get16 = |a: &arrow_array::UInt16Array, i: usize| a.is_valid(i).then(|| a.value(i));
    let get32 = |a: &arrow_array::UInt32Array, i: usize| a.is_valid(i).then(|| a.value(i));
    let get64 = |a: &arrow_array::UInt64Array, i: usize| a.is_valid(i).then(|| a.value(i));
    let (version, proto, min_ttl, max_ttl, reason) = (
        u8c("ip_version"),
        u8c("proto"),
        u8c("minimum_ttl"),
        u8c("maximum_ttl"),
        u8c("flow_end_reason"),
    );
    let (sp, dp, flags, vlan) = (
        u16c("src_port"),
        u16c("dst_port"),
        u16c("tcp_flags"),
        u16c("src_vlan"),
    );
    let (in_if, out_if, mpls) = (u32c("in_if"), u32c("out_if"), u32c("mpls_top_label"));
    let (bytes, packets, op, rate) = (
        u64c("bytes"),
        u64c("packets"),
        u64c("observation_point_id"),
        u64c("sampling_rate"),
    );
    let (start, end) = (ts("time_flow_start_ns"), ts("time_flow_end_ns"));
    let (src, dst) = (addr("src_addr"), addr("dst_addr"));
    (0..batch.num_rows())
        .map(|i| FlowRecord {
            ip_version: get8(&version, i),
            src_addr: src.is_valid(i).then(|| src.value(i).try_into().unwrap()),
            dst_addr: dst.is_valid(i).then(|| dst.value(i).try_into().unwrap()),
            src_port: get16(&sp, i),
            dst_port: get16(&dp, i),
            proto: get8(&proto, i),
            bytes: get64(&bytes, i),
            packets: get64(&packets, i),
            time_flow_start_ns: start.is_valid(i).then(|| start.value(i)),
            time_flow_end_ns: end.is_valid(i).then(|| end.value(i)),
            minimum_ttl: get8(&min_ttl, i),
            maximum_ttl: get8(&max_ttl, i),
            tcp_flags: get16(&flags, i),
            in_if: get32(&in_if, i),
            out_if: get32(&out_if, i),
            src_vlan: get16(&vlan, i),
            flow_end_reason: get8(&reason, i),
            observation_point_id: get64(&op, i),
            mpls_top_label: get32(&mpls, i),
            sampling_rate: get64(&rate, i),
            ..FlowRecord::default()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Flows of both families, packed into messages of any size from 200
    /// octets to 64 KiB, decode to the same values, with no loss reported.
    #[test]
    fn flows_survive_encode_then_decode(rows in prop::collection::vec(flow(), 1..200), mtu in 200usize..65535, refresh in prop::option::of(1u64..5)) {
        let batch = to_batch(&rows);
        let mut encoder = FlowEncoder::new(42, mtu, refresh);
        let mut messages = encoder.encode(&batch, 1_800_000_000).unwrap();
        messages.extend(encoder.flush());
        prop_assert_eq!(encoder.records_sent() as usize, rows.len());
        let mut decoder = Decoder::new();
        let mut out = DecodeOutput::default();
        for m in &messages {
            prop_assert!(m.len() <= mtu.max(36));
            decoder.decode(exporter(), Transport::Udp, 0, m, &mut out).unwrap();
        }
        let totals = decoder.totals();
        prop_assert_eq!(totals.total_errors(), 0);
        prop_assert_eq!(totals.lost_records, 0);
        let decoded = rows_of(&out.flows.finish().unwrap());
        let expected: Vec<_> = rows.iter().map(exported).collect();
        prop_assert_eq!(decoded, expected);
    }
}

/// A generated field: an IANA element we keep raw, an enterprise element, or a variable one.
fn field_spec() -> impl Strategy<Value = FieldSpec> {
    prop_oneof![
        (400u16..450, 1u16..20).prop_map(|(id, length)| FieldSpec {
            enterprise: 0,
            id,
            length
        }),
        (1u32..100_000, 1u16..0x7fff, 1u16..20).prop_map(|(enterprise, id, length)| FieldSpec {
            enterprise,
            id,
            length
        }),
        (1u32..100_000, 1u16..0x7fff).prop_map(|(enterprise, id)| FieldSpec {
            enterprise,
            id,
            length: VARIABLE_LENGTH
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any template shape (fixed, enterprise and variable-length fields of
    /// short and long values) round-trips: every value comes back, raw, in
    /// `other_fields`.
    #[test]
    fn any_template_round_trips(
        fields in prop::collection::vec(field_spec(), 1..12),
        values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..400), 12 * 5),
        records in 1usize..5,
    ) {
        let template = Template::new(300, 0, fields.clone());
        let mut b = MessageBuilder::new(1, 65535);
        prop_assert!(b.add_template(&template));
        let mut expected = Vec::new();
        for r in 0..records {
            let mut record = Vec::new();
            for (i, f) in fields.iter().enumerate() {
                let v = &values[r * 12 + i];
                if f.length == VARIABLE_LENGTH {
                    push_variable(&mut record, v);
                    expected.push(v.clone());
                } else {
                    let mut fixed = v.clone();
                    fixed.resize(usize::from(f.length), 0);
                    record.extend_from_slice(&fixed);
                    expected.push(fixed);
                }
            }
            prop_assert!(b.add_record(300, &record));
        }
        let messages = b.finish();
        let mut decoder = Decoder::new();
        let mut out = DecodeOutput::default();
        for m in &messages {
            decoder.decode(exporter(), Transport::Tcp, 0, m, &mut out).unwrap();
        }
        prop_assert_eq!(decoder.totals().total_errors(), 0);
        let batch = out.flows.finish().unwrap();
        prop_assert_eq!(batch.num_rows(), records);
        use arrow_array::Array;
        use arrow_array::cast::AsArray;
        let list = batch.column_by_name("other_fields").unwrap().as_list::<i32>();
        let mut got = Vec::new();
        for row in 0..records {
            let items = list.value(row);
            let items = items.as_struct();
            let value = items.column(2).as_binary::<i32>();
            for i in 0..items.len() {
                got.push(value.value(i).to_vec());
            }
        }
        prop_assert_eq!(got, expected);
    }
}
