//! Enrichment from an MMDB file: the test writes its own small database in
//! the MaxMind DB format (a binary search tree over address bits, a data
//! section, a metadata map) and checks that flows get the country and, when
//! the exporter sent none, the AS number.

use std::net::{IpAddr, Ipv4Addr};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::{Array, RecordBatch};
use hopscope_collector::enrich::EnrichCache;
use hopscope_collector::{Enricher, NetworkTag};
use hopscope_schema::{FlowBatchBuilder, FlowRecord, ipv4_mapped};
use hopscope_wire::Decoder;

/// A value of the MaxMind DB data section.
enum Value {
    Str(&'static str),
    U32(u32),
    U16(u16),
    U64(u64),
    Map(Vec<(&'static str, Value)>),
    Array(Vec<Value>),
}

fn encode(v: &Value, out: &mut Vec<u8>) {
    // control byte: type in the top 3 bits (extended types after a 0), size below
    let control = |out: &mut Vec<u8>, ty: u8, size: usize| {
        assert!(size < 29);
        if ty <= 7 {
            out.push((ty << 5) | size as u8);
        } else {
            out.push(size as u8);
            out.push(ty - 7);
        }
    };
    let uint = |out: &mut Vec<u8>, ty: u8, v: u64| {
        let bytes = v.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        control(out, ty, 8 - skip);
        out.extend_from_slice(&bytes[skip..]);
    };
    match v {
        Value::Str(s) => {
            control(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::U16(n) => uint(out, 5, u64::from(*n)),
        Value::U32(n) => uint(out, 6, u64::from(*n)),
        Value::U64(n) => uint(out, 9, *n),
        Value::Map(entries) => {
            control(out, 7, entries.len());
            for (k, v) in entries {
                encode(&Value::Str(k), out);
                encode(v, out);
            }
        }
        Value::Array(items) => {
            control(out, 11, items.len());
            for item in items {
                encode(item, out);
            }
        }
    }
}

/// An IPv4 database (24-bit records) mapping each network to its value.
fn mmdb(networks: &[(Ipv4Addr, u8, Value)]) -> Vec<u8> {
    const EMPTY: u32 = u32::MAX;
    let mut nodes: Vec<[u32; 2]> = vec![[EMPTY; 2]];
    let mut data = Vec::new();
    let mut leaves = Vec::new(); // (node, side, data offset)
    for (net, len, value) in networks {
        let offset = data.len() as u32;
        encode(value, &mut data);
        let bits = u32::from(*net);
        let mut node = 0usize;
        for depth in 0..*len {
            let side = ((bits >> (31 - depth)) & 1) as usize;
            if depth + 1 == *len {
                leaves.push((node, side, offset));
            } else {
                if nodes[node][side] == EMPTY {
                    nodes.push([EMPTY; 2]);
                    nodes[node][side] = (nodes.len() - 1) as u32;
                }
                node = nodes[node][side] as usize;
            }
        }
    }
    let count = nodes.len() as u32;
    for (node, side, offset) in leaves {
        nodes[node][side] = count + 16 + offset;
    }
    let mut out = Vec::new();
    for n in &nodes {
        for r in n {
            let r = if *r == EMPTY { count } else { *r };
            out.extend_from_slice(&r.to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    encode(
        &Value::Map(vec![
            ("node_count", Value::U32(count)),
            ("record_size", Value::U16(24)),
            ("ip_version", Value::U16(4)),
            ("database_type", Value::Str("hopscope-test")),
            ("languages", Value::Array(vec![Value::Str("en")])),
            ("binary_format_major_version", Value::U16(2)),
            ("binary_format_minor_version", Value::U16(0)),
            ("build_epoch", Value::U64(1_795_651_200)),
            ("description", Value::Map(vec![("en", Value::Str("test"))])),
        ]),
        &mut out,
    );
    out
}

fn country(code: &'static str, asn: Option<u32>) -> Value {
    let mut entries = vec![("country", Value::Map(vec![("iso_code", Value::Str(code))]))];
    if let Some(a) = asn {
        entries.push(("autonomous_system_number", Value::U32(a)));
    }
    Value::Map(entries)
}

fn flows() -> RecordBatch {
    let mut b = FlowBatchBuilder::default();
    for (src, dst, src_as) in [
        ([10, 1, 2, 3], [192, 0, 2, 7], None),
        ([10, 1, 9, 9], [203, 0, 113, 1], Some(65001)),
        ([172, 16, 0, 1], [10, 1, 0, 1], None),
    ] {
        b.append(&FlowRecord {
            time_received_ns: Some(1),
            sampler_address: Some(ipv4_mapped([127, 0, 0, 1])),
            src_addr: Some(ipv4_mapped(src)),
            dst_addr: Some(ipv4_mapped(dst)),
            src_as,
            ..FlowRecord::default()
        });
    }
    b.finish().unwrap()
}

fn texts(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let c = batch.column_by_name(name).unwrap().as_string::<i32>();
    (0..c.len())
        .map(|i| c.is_valid(i).then(|| c.value(i).to_string()))
        .collect()
}

#[test]
fn countries_and_as_numbers_come_from_the_mmdb_and_networks_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.mmdb");
    std::fs::write(
        &path,
        mmdb(&[
            ("10.1.0.0".parse().unwrap(), 16, country("FR", Some(64500))),
            ("192.0.2.0".parse().unwrap(), 24, country("JP", None)),
        ]),
    )
    .unwrap();
    let networks = vec![NetworkTag {
        cidr: "10.1.0.0/16".parse().unwrap(),
        name: "paris-dc".into(),
        role: Some("server".into()),
        site: Some("par".into()),
    }];
    let exporters = vec![(IpAddr::from([127, 0, 0, 1]), "edge-1".to_string())];
    let enricher = Enricher::new(&exporters, &networks, &[&path]).unwrap();
    let out = enricher
        .enrich(&flows(), &Decoder::new(), &mut EnrichCache::default())
        .unwrap();
    let fr = Some("FR".to_string());
    assert_eq!(texts(&out, "src_country"), [fr.clone(), fr.clone(), None]);
    assert_eq!(texts(&out, "dst_country"), [Some("JP".into()), None, fr]);
    let src_as = out
        .column_by_name("src_as")
        .unwrap()
        .as_primitive::<UInt32Type>();
    // the MMDB fills the AS only where the exporter sent none
    assert_eq!(
        src_as.iter().collect::<Vec<_>>(),
        [Some(64500), Some(65001), None]
    );
    assert_eq!(
        texts(&out, "src_net_name"),
        [Some("paris-dc".into()), Some("paris-dc".into()), None]
    );
    assert_eq!(texts(&out, "dst_net_site")[2], Some("par".into()));
    assert_eq!(texts(&out, "exporter_name"), vec![Some("edge-1".into()); 3]);
    assert_eq!(out.schema(), hopscope_schema::stored_flow_schema());
}

#[test]
fn an_unreadable_mmdb_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.mmdb");
    std::fs::write(&path, b"not a database").unwrap();
    let e = Enricher::new(&[], &[], &[&path]).unwrap_err();
    assert!(e.to_string().contains("broken.mmdb"), "{e}");
}
