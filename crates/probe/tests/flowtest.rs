//! CESNET FlowTest probe-validation cases (tests/data/flowtest): each pcap
//! goes through the probe as a biflow meter, out as IPFIX, back through the
//! decoder, and every expected flow of the YAML annotation, read as given,
//! must be there with the same values field by field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use hopscope_probe::{
    CacheConfig, ExportTarget, Exporter, Meter, MeterConfig, PacketSource, PcapFileSource,
};
use hopscope_schema::format_addr;
use hopscope_wire::file::replay_file;
use hopscope_wire::{DecodeOutput, Decoder};
use serde_yaml::Value;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/flowtest")
}

/// Protocols whose fields hopscope's probe parses and exports.
const SUPPORTED: &[&str] = &[
    "eth", "ipv4", "ipv6", "tcp", "udp", "icmp", "icmpv6", "vlan", "mpls", "gre", "vxlan",
];

/// Annotation fields and the flow column holding the same value (None:
/// the probe exports no such field, so it is not compared).
fn column_of(field: &str) -> Option<&'static str> {
    Some(match field {
        "src_ip" => "src_addr",
        "dst_ip" => "dst_addr",
        "ip_version" => "ip_version",
        "protocol" => "proto",
        "bytes" => "bytes",
        "packets" => "packets",
        "bytes@rev" => "reverse_bytes",
        "packets@rev" => "reverse_packets",
        "src_port" => "src_port",
        "dst_port" => "dst_port",
        "tos" => "ip_tos",
        "ttl" => "minimum_ttl",
        "tcp_flags" => "tcp_flags",
        "tcp_flags@rev" => "reverse_tcp_flags",
        "ttl@rev" => "reverse_minimum_ttl",
        "icmp_type" => "icmp_type",
        "icmp_code" => "icmp_code",
        "vlan_id" => "src_vlan",
        "src_mac" => "src_mac",
        "dst_mac" => "dst_mac",
        "mpls_label_1" => "mpls_top_label",
        "vxlan_id" => "layer2_segment_id",
        _ => return None,
    })
}

fn cell(batch: &RecordBatch, column: &str, row: usize) -> Option<String> {
    let c = batch.column_by_name(column)?;
    if c.is_null(row) {
        return None;
    }
    Some(match c.data_type() {
        arrow_schema::DataType::UInt8 => c.as_primitive::<UInt8Type>().value(row).to_string(),
        arrow_schema::DataType::UInt16 => c.as_primitive::<UInt16Type>().value(row).to_string(),
        arrow_schema::DataType::UInt32 => c.as_primitive::<UInt32Type>().value(row).to_string(),
        arrow_schema::DataType::UInt64 if column.ends_with("_mac") => {
            let b = c.as_primitive::<UInt64Type>().value(row).to_be_bytes();
            b[2..]
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        }
        arrow_schema::DataType::UInt64 => c.as_primitive::<UInt64Type>().value(row).to_string(),
        arrow_schema::DataType::FixedSizeBinary(_) => {
            format_addr(c.as_fixed_size_binary().value(row))
        }
        other => panic!("{other}"),
    })
}

/// A YAML value as the text our cells print (hex numbers as decimal).
fn expected_text(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.starts_with("0x") => {
            u64::from_str_radix(&s[2..], 16).map_or(s.clone(), |n| n.to_string())
        }
        Value::String(s) => s.to_lowercase(),
        Value::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// Probe → IPFIX file → decoder, biflow, as an exporter would run it.
fn probe_and_decode(pcap: &Path, name: &str) -> RecordBatch {
    let config = MeterConfig {
        observation_point_id: 1,
        domain: 0,
        cache: CacheConfig {
            biflow: true,
            ..CacheConfig::default()
        },
        selection: None,
        decapsulate: true,
    };
    let mut meter = Meter::new(config);
    let mut source = PcapFileSource::open(pcap).unwrap();
    while let Some(frame) = source.next_frame() {
        meter.observe(&frame.unwrap());
    }
    meter.finish();
    let out_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("flowtest-{name}.ipfix"));
    let mut exporter = Exporter::open(&ExportTarget::File(out_path.clone()), 0).unwrap();
    exporter
        .export_flows(&meter.take_flows().unwrap(), 1_800_000_000)
        .unwrap();
    exporter.flush().unwrap();
    let mut decoder = Decoder::new();
    let mut out = DecodeOutput::default();
    replay_file(&out_path, &mut decoder, &mut out, 0).unwrap();
    assert_eq!(decoder.totals().total_errors(), 0, "{name}");
    out.flows.finish().unwrap()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_sequence()
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn flowtest_cases_pass_field_by_field() {
    let mut passed = Vec::new();
    let mut skipped = Vec::new();
    let mut cases: Vec<_> = std::fs::read_dir(data().join("validation"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    cases.sort();
    for case in cases {
        let name = case.file_stem().unwrap().to_string_lossy().to_string();
        let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&case).unwrap()).unwrap();
        if let Some(p) = strings(&doc["probe"]["protocols"])
            .iter()
            .find(|p| !SUPPORTED.contains(p))
        {
            skipped.push(format!("{name} ({p})"));
            continue;
        }
        let batch = probe_and_decode(
            &data().join("pcap").join(doc["pcap"].as_str().unwrap()),
            &name,
        );
        let mut key = strings(&doc["key"]);
        if key.is_empty() {
            key = vec!["src_ip", "dst_ip", "protocol", "src_port", "dst_port"];
        }
        let mut exported_fields = std::collections::BTreeSet::new();
        let mut used = Vec::new();
        for (i, flow) in doc["flows"].as_sequence().unwrap().iter().enumerate() {
            let expected: BTreeMap<String, String> = flow
                .as_mapping()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let k = k.as_str().unwrap().to_string();
                    let mut v = expected_text(v);
                    // flowtest gives the label stack entry's top three octets
                    // (label, traffic class, bottom-of-stack); the column holds the label
                    if k == "mpls_label_1" {
                        v = (v.parse::<u32>().unwrap() >> 4).to_string();
                    }
                    // the VNI, as a layer-2 segment id of type VXLAN (RFC 7133)
                    if k == "vxlan_id" {
                        v = ((1u64 << 56) | v.parse::<u64>().unwrap()).to_string();
                    }
                    (k, v)
                })
                .collect();
            // the key may leave several flows (ICMP types): take the one that agrees on every field
            let candidates: Vec<usize> = (0..batch.num_rows())
                .filter(|r| !used.contains(r))
                .filter(|&r| {
                    key.iter().all(|k| match (expected.get(*k), column_of(k)) {
                        (Some(v), Some(col)) => cell(&batch, col, r).as_deref() == Some(v.as_str()),
                        _ => true,
                    })
                })
                .collect();
            let agrees = |r: usize| {
                expected.iter().all(|(field, value)| {
                    column_of(field)
                        .is_none_or(|col| cell(&batch, col, r).as_deref() == Some(value.as_str()))
                })
            };
            let Some(&row) = candidates
                .iter()
                .find(|&&r| agrees(r))
                .or(candidates.first())
            else {
                panic!(
                    "{name}: flow {i} ({expected:?}) not exported; {} flows were",
                    batch.num_rows()
                );
            };
            used.push(row);
            for (field, value) in &expected {
                let Some(col) = column_of(field) else {
                    continue;
                };
                assert_eq!(
                    cell(&batch, col, row).as_deref(),
                    Some(value.as_str()),
                    "{name}: flow {i}: {field}"
                );
                exported_fields.insert(field.clone());
            }
        }
        // the case's point: at least one of these fields is exported (and was right above)
        let any = strings(&doc["at_least_one"]);
        if !any.is_empty() {
            assert!(
                any.iter().any(|n| exported_fields.contains(*n)),
                "{name}: none of {any:?} exported"
            );
        }
        passed.push(name);
    }
    eprintln!("flowtest: passed {passed:?}; skipped (protocol not supported) {skipped:?}");
    for must in [
        "gre",
        "vxlan",
        "icmp",
        "icmpv6",
        "ipv4",
        "ipv4_fragmented",
        "ipv6",
        "ipv6_hop_by_hop",
        "mac",
        "mpls_single",
        "tcp",
        "udp",
        "vlan",
    ] {
        assert!(passed.iter().any(|p| p == must), "{must} did not run");
    }
}
