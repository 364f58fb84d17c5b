//! The store's hot paths: committing flow batches as Parquet segments (what
//! bounds the collector's ingest rate) and the query executor's top-N and
//! 5-tuple group-by over stored flows, with the default view (volumes
//! scaled by sampling, traffic counted once at the boundary) and without
//! it, to measure what the view costs.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hopscope_schema::{FlowBatchBuilder, FlowRecord, ipv4_mapped, stored_flow_schema};
use hopscope_store::layout::Table;
use hopscope_store::query::{Aggregate, Counting, Query, Volumes, execute};
use hopscope_store::{Store, WriteOptions};

const ROWS: usize = 256 * 1024;

/// Flows as the collector stores them: the blast example's fields, sampled
/// one in 100 or one in 1000 (known from options), seen at a boundary
/// point and at an internal one (a third of the records), the other
/// enrichment columns empty.
fn flows(rows: usize, seed: u32) -> RecordBatch {
    let mut b = FlowBatchBuilder::with_capacity(rows);
    let t0 = 1_795_651_200_000_000_000i64;
    for k in 0..rows as u32 {
        let k = k.wrapping_add(seed.wrapping_mul(1 << 20));
        let src = (k & 0xffff).wrapping_mul(2_654_435_761);
        b.append(&FlowRecord {
            time_received_ns: Some(t0 + i64::from(k) * 1000),
            sampler_address: Some(ipv4_mapped([192, 0, 2, 1])),
            observation_domain_id: Some(1),
            flow_type: Some(4),
            sequence_num: Some(k / 18 * 18),
            template_id: Some(256),
            time_flow_start_ns: Some(t0 + i64::from(k) * 1000),
            time_flow_end_ns: Some(t0 + i64::from(k) * 1000 + 2_000_000_000),
            ip_version: Some(4),
            src_addr: Some(ipv4_mapped(src.to_be_bytes())),
            dst_addr: Some(ipv4_mapped(((k % 65_521) | 0x0a00_0000).to_be_bytes())),
            src_port: Some(1024 + ((k >> 16) % 60_000) as u16),
            dst_port: Some([443, 80, 53, 22, 8080][(k % 5) as usize]),
            proto: Some(if k % 5 == 2 { 17 } else { 6 }),
            tcp_flags: Some(0x1b),
            ip_tos: Some(0),
            bytes: Some(u64::from(40 + k % 1460) * u64::from(1 + k % 7)),
            packets: Some(u64::from(1 + k % 7)),
            in_if: Some(1 + k % 4),
            out_if: Some(5),
            sampling_rate: Some(if k % 4 == 0 { 1000 } else { 100 }),
            sampling_rate_source: Some(2),
            ..FlowRecord::default()
        });
    }
    let decoded = b.finish().unwrap();
    let schema = stored_flow_schema();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "boundary" => Arc::new(
                (0..rows)
                    .map(|k| Some(if k % 3 == 0 { "internal" } else { "external" }))
                    .collect::<StringArray>(),
            ) as ArrayRef,
            name => decoded
                .column_by_name(name)
                .cloned()
                .unwrap_or_else(|| arrow_array::new_null_array(f.data_type(), rows)),
        })
        .collect();
    RecordBatch::try_new(schema, columns).unwrap()
}

fn write(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), WriteOptions::default()).unwrap();
    let batch = flows(ROWS, 0);
    let segment = store
        .writer()
        .write(Table::Flows, std::slice::from_ref(&batch))
        .unwrap();
    eprintln!(
        "segment size: {:.1} bytes per flow",
        segment[0].bytes as f64 / ROWS as f64
    );
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(10);
    g.bench_function("write segment (rows/s)", |b| {
        b.iter(|| {
            store
                .writer()
                .write(Table::Flows, std::slice::from_ref(&batch))
                .unwrap()
        })
    });
    g.finish();
}

fn query(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), WriteOptions::default()).unwrap());
    let segments = 8;
    for s in 0..segments {
        store
            .writer()
            .write(Table::Flows, &[flows(ROWS, s)])
            .unwrap();
    }
    let mut g = c.benchmark_group("query");
    g.throughput(Throughput::Elements(ROWS as u64 * u64::from(segments)));
    g.sample_size(10);
    let mut top = Query {
        aggregates: vec![Aggregate::Sum("bytes")],
        limit: Some(10),
        ..Query::default()
    };
    top.group_by_names(&["src_addr"]).unwrap();
    let mut five = Query {
        aggregates: vec![Aggregate::Sum("bytes")],
        limit: Some(10),
        ..Query::default()
    };
    five.group_by_names(&["src_addr", "dst_addr", "src_port", "dst_port", "proto"])
        .unwrap();
    // the default view, and its two parts taken away: what each costs
    let views = [
        ("", Volumes::Scaled, Counting::Once),
        (", unscaled", Volumes::Counted, Counting::Once),
        (", every point", Volumes::Scaled, Counting::EveryPoint),
        (", as stored", Volumes::Counted, Counting::EveryPoint),
    ];
    for (name, query) in [
        ("top 10 sources by bytes", &top),
        ("5-tuple group-by", &five),
    ] {
        for (view, volumes, counting) in views {
            let q = Query {
                volumes,
                counting,
                ..query.clone()
            };
            g.bench_function(format!("{name}{view} (rows/s)"), |b| {
                b.iter(|| execute(&store, &q).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, write, query);
criterion_main!(benches);
