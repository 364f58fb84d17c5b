//! The store end to end: segments written, pruned, compacted, rolled up,
//! retained, recovered, and queried with the same answers throughout.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use hopscope_schema::{FlowBatchBuilder, FlowRecord, format_addr, ipv4_mapped, stored_flow_schema};
use hopscope_store::layout::{HOUR_NS, Table};
use hopscope_store::query::{
    Aggregate, Counting, OrderBy, Query, Source, Volumes, execute, parse_filter,
};
use hopscope_store::{RetentionPolicy, Store, WriteOptions};

const T0: i64 = 1_795_651_200_000_000_000; // 2026-11-26T00:00:00Z
const MIN: i64 = 60_000_000_000;

/// A flow batch in the stored schema: `n` flows at `t`, sources cycling
/// over 10.0.0.1..=10.0.0.5, source i sending i × 100 bytes in i packets.
fn flows(t: i64, n: usize) -> RecordBatch {
    let mut b = FlowBatchBuilder::default();
    for k in 0..n {
        let i = (k % 5) as u8 + 1;
        b.append(&FlowRecord {
            time_received_ns: Some(t + k as i64),
            sampler_address: Some(ipv4_mapped([192, 0, 2, 1])),
            src_addr: Some(ipv4_mapped([10, 0, 0, i])),
            dst_addr: Some(ipv4_mapped([198, 51, 100, 7])),
            src_port: Some(40000 + k as u16),
            dst_port: Some(if i == 5 { 53 } else { 443 }),
            proto: Some(if i == 5 { 17 } else { 6 }),
            ip_version: Some(4),
            bytes: Some(u64::from(i) * 100),
            packets: Some(u64::from(i)),
            ..FlowRecord::default()
        });
    }
    enrich(b.finish().unwrap())
}

/// Adds the enrichment columns (a site name on every flow).
fn enrich(batch: RecordBatch) -> RecordBatch {
    let schema = stored_flow_schema();
    let n = batch.num_rows();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None if f.name() == "exporter_name" => Arc::new(StringArray::from(vec!["edge-1"; n])),
            None => arrow_array::new_null_array(f.data_type(), n),
        })
        .collect();
    RecordBatch::try_new(schema, columns).unwrap()
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), WriteOptions::default()).unwrap();
    (dir, store)
}

fn u64s(batch: &RecordBatch, name: &str) -> Vec<u64> {
    batch
        .column_by_name(name)
        .unwrap()
        .as_primitive::<UInt64Type>()
        .values()
        .to_vec()
}

fn addrs(batch: &RecordBatch, name: &str) -> Vec<String> {
    let a = batch.column_by_name(name).unwrap().as_fixed_size_binary();
    (0..a.len()).map(|i| format_addr(a.value(i))).collect()
}

fn top_sources(store: &Store, source: Source, filter: &str) -> RecordBatch {
    let mut q = Query {
        filter: parse_filter(filter).unwrap(),
        aggregates: vec![
            Aggregate::Sum("bytes"),
            Aggregate::Flows,
            Aggregate::Sum("packets"),
        ],
        limit: Some(3),
        source,
        ..Query::default()
    };
    q.group_by_names(&["src_addr"]).unwrap();
    execute(store, &q).unwrap().rows
}

#[test]
fn top_talkers_filters_and_totals() {
    let (_dir, store) = store();
    // three flushes in the first hour, one in the second
    for t in [T0, T0 + 10 * MIN, T0 + 20 * MIN, T0 + HOUR_NS + MIN] {
        store
            .writer()
            .write(Table::Flows, &[flows(t, 1000)])
            .unwrap();
    }
    assert_eq!(store.segments(Table::Flows).unwrap().len(), 4);

    let rows = top_sources(&store, Source::Raw, "");
    assert_eq!(
        addrs(&rows, "src_addr"),
        ["10.0.0.5", "10.0.0.4", "10.0.0.3"]
    );
    // 4 flushes × 200 flows per source
    assert_eq!(u64s(&rows, "bytes"), [500 * 800, 400 * 800, 300 * 800]);
    assert_eq!(u64s(&rows, "flows"), [800, 800, 800]);

    let rows = top_sources(
        &store,
        Source::Raw,
        "proto tcp and dst port 443 and not src ip 10.0.0.4",
    );
    assert_eq!(
        addrs(&rows, "src_addr"),
        ["10.0.0.3", "10.0.0.2", "10.0.0.1"]
    );

    // totals and rates over an explicit range: only the first hour
    let q = Query {
        from_ns: T0,
        to_ns: T0 + HOUR_NS,
        aggregates: vec![
            Aggregate::Flows,
            Aggregate::Sum("bytes"),
            Aggregate::Bps,
            Aggregate::Percentile("bytes", 50),
        ],
        ..Query::default()
    };
    let out = execute(&store, &q).unwrap();
    assert_eq!(u64s(&out.rows, "flows"), [3000]);
    assert_eq!(u64s(&out.rows, "bytes"), [3 * 200 * 1500]);
    let bps = out
        .rows
        .column_by_name("bps")
        .unwrap()
        .as_primitive::<Float64Type>()
        .value(0);
    assert!(
        (bps - (3.0 * 200.0 * 1500.0 * 8.0 / 3600.0)).abs() < 1e-6,
        "{bps}"
    );
    assert_eq!(u64s(&out.rows, "p50_bytes"), [300]);
    // the second hour's segment was never opened
    assert_eq!(out.scan.segments, 3);
    assert_eq!(out.scan.segments_pruned, 1);
}

#[test]
fn time_buckets_keep_the_top_series_in_every_bucket() {
    let (_dir, store) = store();
    for m in 0..3 {
        store
            .writer()
            .write(Table::Flows, &[flows(T0 + m * MIN, 50)])
            .unwrap();
    }
    let mut q = Query {
        bucket_ns: Some(MIN),
        aggregates: vec![Aggregate::Sum("bytes")],
        limit: Some(2),
        ..Query::default()
    };
    q.group_by_names(&["src_addr"]).unwrap();
    let rows = execute(&store, &q).unwrap().rows;
    assert_eq!(rows.num_rows(), 6, "2 series × 3 buckets");
    assert_eq!(
        addrs(&rows, "src_addr"),
        [
            "10.0.0.5", "10.0.0.4", "10.0.0.5", "10.0.0.4", "10.0.0.5", "10.0.0.4"
        ]
    );
    let buckets = rows
        .column(0)
        .as_primitive::<arrow_array::types::TimestampNanosecondType>();
    assert_eq!(buckets.value(0), T0);
    assert_eq!(buckets.value(5), T0 + 2 * MIN);
}

#[test]
fn listing_flows_and_ordering_by_a_field() {
    let (_dir, store) = store();
    store
        .writer()
        .write(Table::Flows, &[flows(T0, 20)])
        .unwrap();
    let mut q = Query {
        filter: parse_filter("bytes >= 400").unwrap(),
        limit: Some(5),
        order_by: Some(OrderBy {
            column: "bytes".into(),
            descending: true,
        }),
        ..Query::default()
    };
    q.column_names(&["src_addr", "bytes", "exporter_name"])
        .unwrap();
    let rows = execute(&store, &q).unwrap().rows;
    assert_eq!(rows.num_columns(), 3);
    assert_eq!(u64s(&rows, "bytes"), [500, 500, 500, 500, 400]);
    assert_eq!(rows.column(2).as_string::<i32>().value(0), "edge-1");
}

#[test]
fn compaction_and_rollups_answer_like_the_raw_flows() {
    let (_dir, store) = store();
    for t in [T0, T0 + 10 * MIN, T0 + 20 * MIN, T0 + HOUR_NS + MIN] {
        store
            .writer()
            .write(Table::Flows, &[flows(t, 1000)])
            .unwrap();
    }
    let before = top_sources(&store, Source::Raw, "proto tcp");
    // the second hour is still open: only the first is compacted and rolled up
    let now = T0 + HOUR_NS + 5 * MIN;
    let report = store.maintain(&RetentionPolicy::default(), now).unwrap();
    assert_eq!(report.compactions, 1);
    assert_eq!(report.segments_compacted, 3);
    assert_eq!(report.rollups_written, 2);
    assert_eq!(store.segments(Table::Flows).unwrap().len(), 2);
    assert_eq!(store.segments(Table::Flows1m).unwrap().len(), 1);
    assert_eq!(store.segments(Table::Flows1h).unwrap().len(), 1);

    assert_eq!(top_sources(&store, Source::Raw, "proto tcp"), before);
    // a range covering the closed hour whole is answered from its rollup
    let mut q = Query {
        filter: parse_filter("proto tcp").unwrap(),
        aggregates: vec![
            Aggregate::Sum("bytes"),
            Aggregate::Flows,
            Aggregate::Sum("packets"),
        ],
        limit: Some(3),
        ..Query::default()
    };
    q.group_by_names(&["src_addr"]).unwrap();
    let out = execute(&store, &q).unwrap();
    assert_eq!(out.rollup_segments, 1);
    assert_eq!(out.rows, before);
    let mut by_proto = Query {
        aggregates: vec![Aggregate::Flows, Aggregate::Sum("bytes")],
        ..Query::default()
    };
    by_proto.group_by_names(&["proto"]).unwrap();
    let auto = execute(&store, &by_proto).unwrap();
    by_proto.source = Source::Raw;
    let raw = execute(&store, &by_proto).unwrap();
    assert_eq!(auto.rows, raw.rows);
    assert_eq!(
        auto.rollup_segments, 1,
        "the 1-hour rollup: proto is one of its dimensions"
    );

    // a second pass has nothing left to do
    let again = store.maintain(&RetentionPolicy::default(), now).unwrap();
    assert_eq!(again.compactions + again.rollups_written, 0);

    // late data for the closed hour makes its rollups stale until redone
    store
        .writer()
        .write(Table::Flows, &[flows(T0 + 30 * MIN, 10)])
        .unwrap();
    let late = execute(&store, &by_proto).unwrap();
    by_proto.source = Source::Auto;
    let auto = execute(&store, &by_proto).unwrap();
    assert_eq!(auto.rollup_segments, 0);
    assert_eq!(auto.rows, late.rows);
    let redo = store.maintain(&RetentionPolicy::default(), now).unwrap();
    assert_eq!(redo.rollups_written, 2);
    assert_eq!(execute(&store, &by_proto).unwrap().rows, late.rows);
}

#[test]
fn retention_by_age_and_by_size() {
    let (_dir, store) = store();
    for h in 0..4 {
        store
            .writer()
            .write(Table::Flows, &[flows(T0 + h * HOUR_NS, 500)])
            .unwrap();
    }
    let policy = RetentionPolicy {
        flows_max_age_ns: Some(2 * HOUR_NS),
        close_after_ns: i64::MAX / 4, // no compaction or rollups in this test
        ..RetentionPolicy::default()
    };
    let report = store.maintain(&policy, T0 + 4 * HOUR_NS).unwrap();
    assert_eq!(report.segments_deleted_by_age, 2);
    let left = store.segments(Table::Flows).unwrap();
    assert_eq!(left.len(), 2);
    assert_eq!(left[0].hour(), T0 + 2 * HOUR_NS);

    let one = left[0].bytes;
    let policy = RetentionPolicy {
        flows_max_age_ns: None,
        max_bytes: Some(one + 1),
        close_after_ns: i64::MAX / 4,
        ..RetentionPolicy::default()
    };
    let report = store.maintain(&policy, T0 + 4 * HOUR_NS).unwrap();
    assert_eq!(report.segments_deleted_by_size, 1);
    assert_eq!(
        store.segments(Table::Flows).unwrap()[0].hour(),
        T0 + 3 * HOUR_NS
    );
}

#[test]
fn a_crash_leaves_no_partial_segment_visible() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), WriteOptions::default()).unwrap();
        store
            .writer()
            .write(Table::Flows, &[flows(T0, 100)])
            .unwrap();
    }
    // a segment half written when the process died
    let staged = dir.path().join("staging").join("seg-x.parquet.tmp");
    std::fs::write(&staged, b"PAR1 half a file").unwrap();
    let store = Store::open(dir.path(), WriteOptions::default()).unwrap();
    assert!(!staged.exists());
    let q = Query {
        aggregates: vec![Aggregate::Flows],
        ..Query::default()
    };
    assert_eq!(u64s(&execute(&store, &q).unwrap().rows, "flows"), [100]);
}

#[test]
fn a_newer_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("store.json"), br#"{"schema_version": 999}"#).unwrap();
    let e = Store::open(dir.path(), WriteOptions::default()).unwrap_err();
    assert!(e.to_string().contains("999"), "{e}");
}

#[test]
fn a_wide_key_gives_the_same_answer_on_one_worker_and_on_several() {
    let (_dir, store) = store();
    // six segments holding the same 1000 five-tuples: every group spans them all
    for s in 0..6 {
        store
            .writer()
            .write(Table::Flows, &[flows(T0 + s * MIN, 1000)])
            .unwrap();
    }
    let run = |threads: usize, limit: Option<usize>| {
        let mut q = Query {
            aggregates: vec![
                Aggregate::Sum("bytes"),
                Aggregate::Flows,
                Aggregate::Percentile("packets", 50),
            ],
            limit,
            threads,
            order_by: Some(OrderBy {
                column: "bytes".into(),
                descending: true,
            }),
            source: Source::Raw,
            ..Query::default()
        };
        q.group_by_names(&["src_addr", "dst_addr", "src_port", "dst_port", "proto"])
            .unwrap();
        let out = execute(&store, &q).unwrap();
        let ports = out
            .rows
            .column_by_name("src_port")
            .unwrap()
            .as_primitive::<arrow_array::types::UInt16Type>()
            .values()
            .to_vec();
        let mut rows: Vec<(u64, u16, u64, u64)> = u64s(&out.rows, "bytes")
            .into_iter()
            .zip(ports)
            .zip(u64s(&out.rows, "flows"))
            .zip(u64s(&out.rows, "p50_packets"))
            .map(|(((b, p), f), m)| (b, p, f, m))
            .collect();
        // ties in bytes come in any order: compare as sets of equal-bytes runs
        rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let totals = out.totals.unwrap();
        (
            rows,
            out.groups,
            u64s(&totals, "bytes"),
            u64s(&totals, "flows"),
        )
    };
    let one = run(1, None);
    assert_eq!(one.1, 1000);
    assert!(
        one.0.iter().all(|r| r.2 == 6),
        "each group seen in all six segments"
    );
    for threads in [2, 3] {
        assert_eq!(run(threads, None), one, "{threads} workers");
        let top = run(threads, Some(7));
        assert_eq!(top.0.len(), 7);
        assert!(
            top.0.iter().all(|r| r.0 == 500 * 6),
            "the top groups are source 5's"
        );
        assert_eq!((top.1, &top.2, &top.3), (one.1, &one.2, &one.3));
    }
}

#[test]
fn ipv4_and_ipv6_groups_stay_apart_whatever_the_key_layout() {
    let (_dir, store) = store();
    // the same flows from IPv4 and from IPv6 sources, in separate and in mixed segments
    let v6 = |batch: RecordBatch| {
        let src = batch
            .column_by_name("src_addr")
            .unwrap()
            .as_fixed_size_binary();
        let mut b = arrow_array::builder::FixedSizeBinaryBuilder::new(16);
        for i in 0..src.len() {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            a[15] = src.value(i)[15];
            b.append_value(a).unwrap();
        }
        let index = batch.schema().index_of("src_addr").unwrap();
        let mut columns = batch.columns().to_vec();
        columns[index] = Arc::new(b.finish());
        RecordBatch::try_new(batch.schema(), columns).unwrap()
    };
    let mixed = arrow_select::concat::concat_batches(
        &stored_flow_schema(),
        &[flows(T0 + 2 * MIN, 100), v6(flows(T0 + 2 * MIN, 100))],
    )
    .unwrap();
    let segments = [flows(T0, 1000), v6(flows(T0 + MIN, 1000)), mixed];
    for batch in segments {
        store.writer().write(Table::Flows, &[batch]).unwrap();
    }
    let run = |fields: &[&str], threads: usize| {
        let mut q = Query {
            aggregates: vec![Aggregate::Sum("bytes"), Aggregate::Flows],
            threads,
            source: Source::Raw,
            ..Query::default()
        };
        q.group_by_names(fields).unwrap();
        let out = execute(&store, &q).unwrap();
        let mut rows: Vec<(String, u64, u64)> = addrs(&out.rows, "src_addr")
            .into_iter()
            .zip(u64s(&out.rows, "bytes"))
            .zip(u64s(&out.rows, "flows"))
            .map(|((a, b), f)| (a, b, f))
            .collect();
        rows.sort();
        rows
    };
    let by_source = run(&["src_addr"], 1);
    assert_eq!(by_source.len(), 10);
    // source i sends i x 100 bytes in 1100 flows / 5 of each family
    assert_eq!(by_source[0], ("10.0.0.1".to_string(), 100 * 220, 220));
    assert_eq!(by_source[5], ("2001:db8::1".to_string(), 100 * 220, 220));
    for threads in [2, 3] {
        assert_eq!(run(&["src_addr"], threads), by_source, "{threads} workers");
    }
    let by_pair = run(&["src_addr", "dst_addr", "proto"], 1);
    assert_eq!(by_pair, by_source);
    for threads in [2, 3] {
        assert_eq!(run(&["src_addr", "dst_addr", "proto"], threads), by_source);
    }
}

/// Columns with values are zstd-compressed; a column of nulls only is
/// written as it is (a few octets of definition levels), and reads back
/// as nulls.
#[test]
fn only_columns_with_values_are_compressed() {
    use parquet::basic::Compression;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let (_dir, store) = store();
    let segments = store
        .writer()
        .write(Table::Flows, &[flows(HOUR_NS, 1000)])
        .unwrap();
    let file = std::fs::File::open(&segments[0].path).unwrap();
    let reader = SerializedFileReader::new(file).unwrap();
    let row_group = reader.metadata().row_group(0);
    let compression = |name: &str| {
        let column = (0..row_group.num_columns())
            .map(|i| row_group.column(i))
            .find(|c| c.column_path().string() == name)
            .unwrap();
        column.compression()
    };
    assert!(matches!(compression("bytes"), Compression::ZSTD(_)));
    assert!(matches!(compression("exporter_name"), Compression::ZSTD(_)));
    assert_eq!(compression("ip_tos"), Compression::UNCOMPRESSED);
    let (mut rows, mut nulls) = (0, 0);
    store
        .scan(Table::Flows, &["ip_tos"], i64::MIN, i64::MAX, |batch| {
            let tos = batch.column_by_name("ip_tos").unwrap();
            rows += tos.len();
            nulls += tos.null_count();
            Ok(())
        })
        .unwrap();
    assert_eq!((rows, nulls), (1000, 1000));
}

/// `flows(t, n)` with sampling: source i's records are sampled one in
/// `rates[i - 1]` (`None`: the rate is unknown).
fn sampled_flows(t: i64, n: usize, rates: [Option<u64>; 5]) -> RecordBatch {
    let batch = flows(t, n);
    let rates: arrow_array::UInt64Array = (0..n).map(|k| rates[k % 5]).collect();
    let index = batch.schema().index_of("sampling_rate").unwrap();
    let mut columns = batch.columns().to_vec();
    columns[index] = Arc::new(rates);
    RecordBatch::try_new(batch.schema(), columns).unwrap()
}

#[test]
fn volumes_are_scaled_by_each_records_rate_from_raw_flows_and_rollups_alike() {
    let (_dir, store) = store();
    let rates = [Some(1000), Some(100), Some(100), None, Some(1)];
    for t in [T0, T0 + 10 * MIN] {
        store
            .writer()
            .write(Table::Flows, &[sampled_flows(t, 1000, rates)])
            .unwrap();
    }
    // each source has 400 records of i × 100 bytes, i packets
    let scaled = |i: u64, rate: Option<u64>| 400 * i * 100 * rate.unwrap_or(1);
    let expected: Vec<u64> = (1..=5).map(|i| scaled(i, rates[i as usize - 1])).collect();
    let total = |store: &Store, volumes, source| {
        let mut q = Query {
            aggregates: vec![
                Aggregate::Sum("bytes"),
                Aggregate::Sum("raw_bytes"),
                Aggregate::Sum("packets"),
                Aggregate::Flows,
            ],
            volumes,
            source,
            order_by: Some(OrderBy {
                column: "src_addr".into(),
                descending: false,
            }),
            ..Query::default()
        };
        q.group_by_names(&["src_addr"]).unwrap();
        execute(store, &q).unwrap()
    };
    let out = total(&store, Volumes::Scaled, Source::Raw);
    assert_eq!(u64s(&out.rows, "bytes"), expected);
    assert_eq!(
        u64s(&out.rows, "raw_bytes"),
        [40_000, 80_000, 120_000, 160_000, 200_000]
    );
    assert_eq!(
        u64s(&out.rows, "packets"),
        [400_000, 80_000, 120_000, 1600, 2000]
    );
    assert_eq!(out.volumes, Volumes::Scaled);
    assert_eq!(out.coverage.flows, 2000);
    assert_eq!(out.coverage.unknown_rate_flows, 400, "source 4's records");
    let counted = total(&store, Volumes::Counted, Source::Raw);
    assert_eq!(
        u64s(&counted.rows, "bytes"),
        u64s(&counted.rows, "raw_bytes")
    );

    // a filter on a volume reads the scaled one; raw_bytes the count
    let mut listing = Query {
        filter: parse_filter("bytes >= 20000 and raw_bytes < 300").unwrap(),
        ..Query::default()
    };
    listing
        .column_names(&["src_addr", "bytes", "raw_bytes", "sampling_rate"])
        .unwrap();
    let rows = execute(&store, &listing).unwrap().rows;
    assert_eq!(rows.num_rows(), 800, "sources 2 (×100) and 1 (×1000)");
    assert!(
        u64s(&rows, "bytes")
            .iter()
            .all(|&b| b == 100_000 || b == 20_000)
    );

    // the closed hour's rollups keep each rate apart and answer the same
    let report = store
        .maintain(&RetentionPolicy::default(), T0 + HOUR_NS + 5 * MIN)
        .unwrap();
    assert_eq!(report.rollups_written, 2);
    let range = |mut out: hopscope_store::query::QueryOutput| {
        out.scan = Default::default();
        (out.rows, out.coverage)
    };
    let from_rollups = total(&store, Volumes::Scaled, Source::Auto);
    assert_eq!(from_rollups.rollup_segments, 1);
    assert_eq!(range(from_rollups), range(out));
    let counted_rollups = total(&store, Volumes::Counted, Source::Auto);
    assert_eq!(range(counted_rollups), range(counted));
}

/// Flows with a `boundary` (every fifth internal, one in ten external, one
/// in ten transit, the rest unclassified), a NAT event on each twentieth,
/// and firewall events on two others of twenty: a flow created (an event)
/// and a flow deleted (its totals, traffic).
fn classified_flows(t: i64, n: usize) -> RecordBatch {
    let batch = flows(t, n);
    let boundary: StringArray = (0..n)
        .map(|k| match k % 10 {
            0 | 5 => Some("internal"),
            1 => Some("external"),
            7 => Some("transit"),
            _ => None,
        })
        .collect();
    let nat: arrow_array::UInt8Array = (0..n).map(|k| (k % 20 == 3).then_some(1u8)).collect();
    let firewall: arrow_array::UInt8Array = (0..n)
        .map(|k| match k % 20 {
            13 => Some(1u8),
            9 => Some(2),
            _ => None,
        })
        .collect();
    let schema = batch.schema();
    let mut columns = batch.columns().to_vec();
    columns[schema.index_of("boundary").unwrap()] = Arc::new(boundary);
    columns[schema.index_of("nat_event").unwrap()] = Arc::new(nat);
    columns[schema.index_of("firewall_event").unwrap()] = Arc::new(firewall);
    RecordBatch::try_new(schema, columns).unwrap()
}

#[test]
fn traffic_is_counted_once_without_internal_points_and_events() {
    let (_dir, store) = store();
    store
        .writer()
        .write(Table::Flows, &[classified_flows(T0, 1000)])
        .unwrap();
    let flows_of = |counting, group: &[&str], source| {
        let mut q = Query {
            aggregates: vec![Aggregate::Flows],
            counting,
            source,
            ..Query::default()
        };
        q.group_by_names(group).unwrap();
        let out = execute(&store, &q).unwrap();
        (u64s(out.totals.as_ref().unwrap(), "flows")[0], out.left_out)
    };
    let (once, left) = flows_of(Counting::Once, &[], Source::Raw);
    assert_eq!(
        (
            once,
            left.internal_records,
            left.transit_records,
            left.event_records
        ),
        (600, 200, 100, 100)
    );
    assert_eq!(flows_of(Counting::EveryPoint, &[], Source::Raw).0, 1000);
    // a view per exporter sees every point
    let (per_exporter, left) = flows_of(Counting::Once, &["exporter_name"], Source::Raw);
    assert_eq!((per_exporter, left.counting), (1000, Counting::EveryPoint));
    // asking about events keeps them (not the internal records), and the other way round
    // each kind of event separately: naming NAT events keeps them, not the
    // firewall's (50 each)
    for events in ["nat_event", "firewall_event"] {
        let (by_event, left) = flows_of(Counting::Once, &[events], Source::Raw);
        assert_eq!(
            (by_event, left.internal_records, left.event_records),
            (650, 200, 50),
            "{events}"
        );
    }
    let (by_boundary, left) = flows_of(Counting::Once, &["boundary"], Source::Raw);
    assert_eq!(
        (
            by_boundary,
            left.internal_records,
            left.transit_records,
            left.event_records
        ),
        (900, 0, 0, 100)
    );
    // rollups keep the boundary and the events apart, and answer the same
    store
        .maintain(&RetentionPolicy::default(), T0 + HOUR_NS + 5 * MIN)
        .unwrap();
    let mut q = Query {
        aggregates: vec![Aggregate::Flows],
        ..Query::default()
    };
    q.group_by_names(&["proto"]).unwrap();
    let out = execute(&store, &q).unwrap();
    assert_eq!(out.rollup_segments, 1);
    assert_eq!(u64s(out.totals.as_ref().unwrap(), "flows"), [600]);
    assert_eq!(
        (out.left_out.internal_records, out.left_out.transit_records),
        (200, 100)
    );
    // 1-minute rollups keep the IP version (a chart by version per minute)
    q.group_by_names(&["ip_version"]).unwrap();
    q.bucket_ns = Some(MIN);
    let out = execute(&store, &q).unwrap();
    assert_eq!(out.rollup_segments, 1, "read from the 1-minute rollups");
    assert_eq!(u64s(out.totals.as_ref().unwrap(), "flows"), [600]);
}
