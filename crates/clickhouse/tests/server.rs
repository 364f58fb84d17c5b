//! The ClickHouse backend against a real server: Debian's ClickHouse
//! 18.16, started by the test on loopback (run by `scripts/integration`:
//! `cargo test -p hopscope-clickhouse --test server -- --ignored`).
//!
//! The same flows are written to the embedded Parquet store and to
//! ClickHouse; every scan and query must answer the same from both.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use hopscope_clickhouse::{ClickHouse, Dialect};
use hopscope_schema::{FlowBatchBuilder, FlowRecord, ipv4_mapped, stored_flow_schema};
use hopscope_store::query::{Aggregate, Query, parse_filter};
use hopscope_store::{Backend, Store, Table, WriteOptions};

const T0: i64 = 1_795_651_200_000_000_000; // 2026-11-26T00:00:00Z
const MIN: i64 = 60_000_000_000;

/// A clickhouse-server of its own, on ports of its own, stopped on drop.
struct Server {
    child: Child,
    http: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let (http, tcp, interserver) = (free_port(), free_port(), free_port());
    std::fs::write(
        d.join("users.xml"),
        "<?xml version=\"1.0\"?><yandex><profiles><default/></profiles>\
         <users><default><password></password><networks><ip>127.0.0.1</ip></networks>\
         <profile>default</profile><quota>default</quota></default></users>\
         <quotas><default/></quotas></yandex>",
    )
    .unwrap();
    let path = |p: &str| d.join(p).display().to_string();
    std::fs::write(
        d.join("config.xml"),
        format!(
            "<?xml version=\"1.0\"?><yandex>\
             <logger><level>warning</level><log>{}</log><errorlog>{}</errorlog></logger>\
             <listen_host>127.0.0.1</listen_host><http_port>{http}</http_port>\
             <tcp_port>{tcp}</tcp_port><interserver_http_port>{interserver}</interserver_http_port>\
             <mark_cache_size>67108864</mark_cache_size>\
             <path>{}/</path><tmp_path>{}/</tmp_path><user_files_path>{}/</user_files_path>\
             <users_config>{}</users_config><default_profile>default</default_profile>\
             <default_database>default</default_database><timezone>UTC</timezone>\
             <mlock_executable>false</mlock_executable></yandex>",
            path("server.log"),
            path("server.err.log"),
            path("data"),
            path("tmp"),
            path("user_files"),
            path("users.xml"),
        ),
    )
    .unwrap();
    let child = Command::new("clickhouse-server")
        .arg(format!("--config-file={}", path("config.xml")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("clickhouse-server (Debian's clickhouse-server package) starts");
    let server = Server {
        child,
        http,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pings(http) {
        assert!(
            Instant::now() < deadline,
            "clickhouse-server not up in 60 s: {}",
            std::fs::read_to_string(d.join("server.err.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server
}

fn pings(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.write_all(b"GET /ping HTTP/1.0\r\n\r\n");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.ends_with("Ok.\n")
}

/// `n` flows from `t` on, a minute apart every 7: five sources over
/// three exporters, some sampled 1 in 10, some with no rate, a name on
/// the exporters that have one.
fn flows(t: i64, n: usize) -> RecordBatch {
    let mut b = FlowBatchBuilder::default();
    for k in 0..n {
        let i = (k % 5) as u8 + 1;
        b.append(&FlowRecord {
            time_received_ns: Some(t + (k / 7) as i64 * MIN + k as i64),
            sampler_address: Some(ipv4_mapped([192, 0, 2, (k % 3) as u8 + 1])),
            src_addr: Some(ipv4_mapped([10, 0, 0, i])),
            dst_addr: Some(ipv4_mapped([198, 51, 100, (k % 11) as u8])),
            src_port: Some(40_000 + k as u16),
            dst_port: Some(if i == 5 { 53 } else { 443 }),
            proto: Some(if i == 5 { 17 } else { 6 }),
            ip_version: Some(4),
            bytes: Some(u64::from(i) * 100 + k as u64),
            packets: Some(u64::from(i)),
            sampling_rate: match k % 4 {
                0 => Some(10),
                1 => None,
                _ => Some(1),
            },
            ..FlowRecord::default()
        });
    }
    let batch = b.finish().unwrap();
    let schema = stored_flow_schema();
    let rows = batch.num_rows();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None if f.name() == "exporter_name" => Arc::new(StringArray::from(
                (0..rows)
                    .map(|k| (k % 3 != 2).then(|| format!("edge-{}", k % 3)))
                    .collect::<Vec<_>>(),
            )),
            None => arrow_array::new_null_array(f.data_type(), rows),
        })
        .collect();
    RecordBatch::try_new(schema, columns).unwrap()
}

fn scanned(
    backend: &dyn Backend,
    table: Table,
    columns: &[&str],
    from: i64,
    to: i64,
) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    backend
        .scan(table, columns, from, to, &mut |b| {
            out.push(b);
            Ok(())
        })
        .unwrap();
    out
}

/// The rows of batches as text, column by column in `columns`' order.
fn rows(batches: &[RecordBatch], columns: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let text: Vec<_> = columns
            .iter()
            .map(|c| {
                let i = b.schema().index_of(c).unwrap();
                arrow_cast_display(b.column(i))
            })
            .collect();
        for r in 0..b.num_rows() {
            out.push(
                text.iter()
                    .map(|t| t[r].clone())
                    .collect::<Vec<_>>()
                    .join(" | "),
            );
        }
    }
    out
}

fn arrow_cast_display(a: &ArrayRef) -> Vec<String> {
    // an array's Debug shows its values (and its nulls as null)
    (0..a.len())
        .map(|i| format!("{:?}", a.slice(i, 1)))
        .collect()
}

#[test]
#[ignore = "needs clickhouse-server (Debian's package); run by scripts/integration"]
fn answers_as_the_embedded_store_does() {
    let server = start_server();
    let url = format!("clickhouse://127.0.0.1:{}/hopscope_test", server.http);
    let ch = ClickHouse::connect(&url).unwrap();
    assert!(ch.version().starts_with("18.16"), "{}", ch.version());
    assert_eq!(ch.dialect(), Dialect::Portable);

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), WriteOptions::default()).unwrap();
    // two writes over two hours: the first without other_fields (an
    // older hopscope's rows), so that the second adds its columns
    let older = flows(T0 + 30 * MIN, 300);
    let older = older
        .project(&(0..older.num_columns() - 1).collect::<Vec<_>>())
        .unwrap();
    let newer = [flows(T0, 700), flows(T0 + 60 * MIN, 500)];
    for backend in [&store as &dyn Backend, &ch] {
        backend
            .write(Table::Flows, std::slice::from_ref(&older))
            .unwrap();
        backend.write(Table::Flows, &newer).unwrap();
    }

    // a scan: the same rows, in time order, the range cut at both ends
    let columns = [
        "time_received_ns",
        "src_addr",
        "bytes",
        "sampling_rate",
        "exporter_name",
    ];
    let (from, to) = (T0 + 10 * MIN, T0 + 70 * MIN);
    let mut embedded = rows(&scanned(&store, Table::Flows, &columns, from, to), &columns);
    let mut server_rows = rows(&scanned(&ch, Table::Flows, &columns, from, to), &columns);
    assert!(embedded.len() > 500, "{}", embedded.len());
    embedded.sort();
    server_rows.sort();
    assert_eq!(server_rows, embedded);

    // queries: totals, top-N, time buckets, a filter, a listing
    let queries: Vec<Query> = vec![
        Query {
            aggregates: vec![
                Aggregate::Sum("bytes"),
                Aggregate::Flows,
                Aggregate::Sum("packets"),
            ],
            ..Query::default()
        },
        {
            let mut q = Query {
                filter: parse_filter("proto tcp").unwrap(),
                aggregates: vec![Aggregate::Sum("bytes"), Aggregate::Flows],
                limit: Some(3),
                ..Query::default()
            };
            q.group_by_names(&["src_addr", "exporter_name"]).unwrap();
            q
        },
        Query {
            bucket_ns: Some(10 * MIN),
            aggregates: vec![Aggregate::Sum("bytes"), Aggregate::Max("bytes")],
            ..Query::default()
        },
        Query {
            filter: parse_filter("dst port 53").unwrap(),
            limit: Some(20),
            columns: vec!["time_received_ns", "src_addr", "dst_addr", "bytes"],
            ..Query::default()
        },
    ];
    for q in queries {
        let q = Query {
            from_ns: T0 - MIN,
            to_ns: T0 + 3 * 60 * MIN,
            ..q
        };
        let a = store.query(&q).unwrap();
        let b = ch.query(&q).unwrap();
        assert!(a.rows.num_rows() > 0, "{q:?}");
        assert_eq!(b.rows, a.rows, "{q:?}");
    }

    // another connection learns the table from the server
    let again = ClickHouse::connect(&url).unwrap();
    assert_eq!(
        rows(&scanned(&again, Table::Flows, &columns, from, to), &columns).len(),
        embedded.len()
    );
    // a table never written holds nothing; a bad statement says why
    assert!(scanned(&again, Table::Alerts, &["name"], T0, T0 + MIN).is_empty());
    let missing = hopscope_clickhouse::Target::parse(&format!(
        "clickhouse://127.0.0.1:{}/nosuchdb",
        server.http
    ))
    .unwrap()
    .open();
    assert!(
        missing
            .unwrap_err()
            .to_string()
            .contains("no database nosuchdb")
    );
    let wrong = ClickHouse::connect(&format!("clickhouse://nobody@127.0.0.1:{}/x", server.http));
    assert!(wrong.unwrap_err().to_string().contains("nobody"));
}
