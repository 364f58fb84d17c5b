//! `hopscope serve` as a process: fed by real exporters (softflowd,
//! pmacct, nfdump's nfreplay: ignored here, run by scripts/integration),
//! killed with SIGKILL mid-stream, and overloaded; then `hopscope query`
//! and `/api/status` must account for every record sent.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_tcp_port, http_get};
use hopscope_schema::{FlowBatchBuilder, FlowRecord, ipv4_mapped};

mod common;
use hopscope_wire::encoder::FlowEncoder;

fn hopscope() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hopscope"))
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("serve")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `hopscope serve`, killed when dropped.
struct Serve {
    child: Child,
    http: u16,
}

impl Serve {
    fn start(data: &Path, udp: u16, extra: &[&str]) -> Serve {
        let http = free_tcp_port();
        let child = hopscope()
            .args(["serve", "--tcp", "none", "--flush-interval", "1s"])
            .arg("--data-dir")
            .arg(data)
            .args(["--udp", &format!("127.0.0.1:{udp}")])
            .args(["--http", &format!("127.0.0.1:{http}")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let serve = Serve { child, http };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(serve.http, "/health").is_none() {
            assert!(Instant::now() < deadline, "serve did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        serve
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&http_get(self.http, "/api/status").expect("status")).unwrap()
    }

    /// Flow records decoded so far (every exporter).
    fn records(&self) -> u64 {
        sum(&self.status(), "flow_records")
    }

    /// Waits until `records` are decoded, or the stream stays quiet for 3 s.
    fn wait_for(&self, records: u64) -> u64 {
        let mut last = (0, Instant::now());
        loop {
            let n = self.records();
            if n >= records || last.1.elapsed() > Duration::from_secs(3) {
                return n;
            }
            if n != last.0 {
                last = (n, Instant::now());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM: receivers stop, what was received is committed.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "serve exited with {status}");
    }

    fn peak_memory_kib(&self) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sum(status: &serde_json::Value, field: &str) -> u64 {
    status["exporters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[field].as_u64().unwrap())
        .sum()
}

/// What `hopscope query ARGS` prints over the store in `data`; it must
/// succeed.
fn query_text(data: &Path, args: &[&str]) -> String {
    let out = hopscope()
        .arg("query")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// flows, packets, bytes of the stored records, as `hopscope query`
/// reports them; `args` add a filter or flags.
fn stored_with(data: &Path, args: &[&str]) -> (u64, u64, u64) {
    let mut all = vec!["-a", "flows,packets,bytes", "--json", "--source", "raw"];
    all.extend(args);
    let text = query_text(data, &all);
    let row: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let n = |f: &str| row[f].as_u64().unwrap_or(0);
    (n("flows"), n("packets"), n("bytes"))
}

/// [`stored_with`] a filter.
fn stored(data: &Path, filter: &str) -> (u64, u64, u64) {
    stored_with(data, &[filter])
}

/// IPFIX messages of `flows` flows from domain 1, templates only in the first.
fn export_stream(flows: usize) -> Vec<(Vec<u8>, u64)> {
    let mut b = FlowBatchBuilder::default();
    for k in 0..flows {
        b.append(&FlowRecord {
            time_flow_start_ns: Some(1_795_000_000_000_000_000),
            time_flow_end_ns: Some(1_795_000_001_000_000_000),
            ip_version: Some(4),
            src_addr: Some(ipv4_mapped([10, (k >> 16) as u8, (k >> 8) as u8, k as u8])),
            dst_addr: Some(ipv4_mapped([192, 0, 2, 1])),
            src_port: Some(k as u16),
            dst_port: Some(443),
            proto: Some(6),
            bytes: Some(1500),
            packets: Some(1),
            ..FlowRecord::default()
        });
    }
    let mut encoder = FlowEncoder::new(1, 1400, None);
    let batch = b.finish().unwrap();
    let mut messages = encoder.encode(&batch, 1).unwrap();
    messages.extend(encoder.flush());
    // records per message, from the IPFIX sequence numbers of consecutive messages
    let seq = |m: &[u8]| u64::from(u32::from_be_bytes([m[8], m[9], m[10], m[11]]));
    let mut out = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let next = messages.get(i + 1).map_or(flows as u64, |n| seq(n));
        out.push((m.clone(), next - seq(m)));
    }
    out
}

/// Two edge routers export with their interfaces: A takes transit from
/// ISP 1 (interface 1) into the core (2), B hands it from the core (3) to
/// ISP 2 (4) and sends the LAN's (5) traffic out there too. Counted once,
/// the transit flow counts where it came in (A), not again where it left
/// (B: `transit`); the LAN's outbound flow counts where it leaves, its
/// source being inside; the inbound one where it comes in.
#[test]
fn transit_counts_where_it_enters_and_outbound_where_it_leaves() {
    let data = scratch("transit");
    let udp = free_port();
    let config = data.join("hopscope.toml");
    std::fs::write(
        &config,
        r#"
[serve]
inside = ["10.0.0.0/8"]

[[serve.boundary]]
exporter = "127.0.0.2"
interface = 1
boundary = "external"

[[serve.boundary]]
exporter = "127.0.0.3"
interface = 4
boundary = "external"

[[serve.boundary]]
interface = 2
boundary = "internal"

[[serve.boundary]]
interface = 3
boundary = "internal"
"#,
    )
    .unwrap();
    let serve = Serve::start(&data, udp, &["--config", config.to_str().unwrap()]);
    let record = |src: [u8; 4], dst: [u8; 4], (in_if, out_if), packets| FlowRecord {
        time_flow_start_ns: Some(1_795_000_000_000_000_000),
        time_flow_end_ns: Some(1_795_000_001_000_000_000),
        ip_version: Some(4),
        src_addr: Some(ipv4_mapped(src)),
        dst_addr: Some(ipv4_mapped(dst)),
        src_port: Some(40000),
        dst_port: Some(443),
        proto: Some(6),
        bytes: Some(1000 * packets),
        packets: Some(packets),
        in_if: Some(in_if),
        out_if: Some(out_if),
        ..FlowRecord::default()
    };
    let (transit, outside, lan) = ([198, 51, 100, 7], [203, 0, 113, 9], [10, 0, 0, 5]);
    let routers = [
        (
            "127.0.0.2",
            vec![
                record(transit, outside, (1, 2), 10),
                record(outside, lan, (1, 2), 7),
            ],
        ),
        (
            "127.0.0.3",
            vec![
                record(transit, outside, (3, 4), 10),
                record(lan, outside, (5, 4), 5),
            ],
        ),
    ];
    for (address, records) in routers {
        let mut b = FlowBatchBuilder::default();
        for r in &records {
            b.append(r);
        }
        let mut encoder = FlowEncoder::new(1, 1400, None);
        let mut messages = encoder.encode(&b.finish().unwrap(), 1).unwrap();
        messages.extend(encoder.flush());
        let socket = UdpSocket::bind(format!("{address}:0")).unwrap();
        for m in &messages {
            socket.send_to(m, ("127.0.0.1", udp)).unwrap();
        }
    }
    serve.wait_for(4);
    serve.stop();
    let counted = |args: &[&str]| {
        let (flows, packets, _) = stored_with(&data, args);
        (flows, packets)
    };
    assert_eq!(
        counted(&[]),
        (3, 22),
        "each packet once: 10 transit, 7 in, 5 out"
    );
    assert_eq!(counted(&["--every-point"]), (4, 32));
    assert_eq!(counted(&["boundary = \"transit\""]), (1, 10));

    // the same store, read as nfdump's users do
    let table = |args: &[&str]| query_text(&data, args);
    let ordered = table(&["-g", "src_addr", "-a", "packets", "--order", "-packets"]);
    assert!(
        ordered.lines().nth(1).unwrap().starts_with("198.51.100.7"),
        "the biggest first:\n{ordered}"
    );
    let by_country = table(&["-g", "src_country", "-a", "flows"]);
    assert!(
        by_country.starts_with("src_country  flows\n-            3\n"),
        "a key empty in every group is still shown:\n{by_country}"
    );
    assert!(by_country.contains("total (1 group):"), "{by_country}");
    // `hopscope query | head`: a reader that goes away ends nothing in error
    let mut child = hopscope()
        .args(["query", "--data-dir"])
        .arg(&data)
        .args(["-g", "src_addr", "-a", "flows"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kill_9_mid_stream_loses_at_most_a_flush_interval_and_knows_how_much() {
    let data = scratch("kill9");
    let udp = free_port();
    let stream = export_stream(60_000);
    let total: u64 = stream.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 60_000);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cut = stream.len() * 2 / 3;

    let first = Serve::start(&data, udp, &[]);
    // ~3 s of steady export, so that several flushes happen before the kill
    let pace = Duration::from_secs(3) / cut as u32;
    let mut sent_last_second = std::collections::VecDeque::new();
    for (m, n) in &stream[..cut] {
        sender.send_to(m, ("127.0.0.1", udp)).unwrap();
        sent_last_second.push_back((Instant::now(), *n));
        while sent_last_second
            .front()
            .is_some_and(|(t, _)| t.elapsed() > Duration::from_millis(2500))
        {
            sent_last_second.pop_front();
        }
        std::thread::sleep(pace);
    }
    let recent: u64 = sent_last_second.iter().map(|(_, n)| n).sum();
    drop(first); // SIGKILL

    let second = Serve::start(&data, udp, &[]);
    for (m, _) in &stream[cut..] {
        sender.send_to(m, ("127.0.0.1", udp)).unwrap();
        std::thread::sleep(pace);
    }
    let after: u64 = stream[cut..].iter().map(|(_, n)| n).sum();
    assert_eq!(
        second.wait_for(after),
        after,
        "nothing is lost after the restart"
    );
    let status = second.status();
    second.stop();

    let (flows, _, bytes) = stored(&data, "");
    let lost = sum(&status, "lost_records");
    assert_eq!(
        sum(&status, "flow_records"),
        after,
        "templates were restored"
    );
    assert_eq!(flows + lost, total, "stored {flows} + counted lost {lost}");
    assert_eq!(bytes, flows * 1500);
    assert!(
        lost <= recent,
        "lost {lost}, more than the last flush interval and hand-off ({recent})"
    );
    // no file in the store is half written
    for entry in walk(&data) {
        let name = entry.to_string_lossy();
        assert!(!name.ends_with(".tmp"), "{name} left behind");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn overload_keeps_memory_bounded_and_every_record_accounted_for() {
    let data = scratch("overload");
    let udp = free_port();
    // one small socket buffer, so the kernel drops when the collector falls behind
    let serve = Serve::start(
        &data,
        udp,
        &["--udp-sockets", "1", "--receive-buffer", "262144"],
    );
    let stream = export_stream(400_000);
    let total: u64 = stream.iter().map(|(_, n)| n).sum();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    // as fast as one thread can send: far beyond a debug build's decode rate
    let (burst, tail) = stream.split_at(stream.len() - 20);
    for (m, _) in burst {
        let _ = sender.send_to(m, ("127.0.0.1", udp));
    }
    // then at a pace the collector keeps up with, as an exporter carries on:
    // the gaps before these messages count what the burst lost
    std::thread::sleep(Duration::from_secs(1));
    for (m, _) in tail {
        sender.send_to(m, ("127.0.0.1", udp)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let received = serve.wait_for(total);
    let status = serve.status();
    let peak = serve.peak_memory_kib();
    serve.stop();
    let (flows, _, _) = stored(&data, "");
    let lost = sum(&status, "lost_records");
    assert_eq!(flows, received, "everything decoded was stored");
    assert_eq!(flows + lost, total, "sent = stored + counted lost");
    assert!(
        status["socket_drops"].as_u64().unwrap() > 0 || lost == 0,
        "loss without socket drops"
    );
    assert!(peak < 1024 * 1024, "peak memory {peak} KiB");
    eprintln!(
        "overload: sent {total}, stored {flows}, lost by gaps {lost}, socket drops {}, peak {peak} KiB",
        status["socket_drops"]
    );
}

// ---- real exporters (scripts/integration installs them) ----

fn synthetic() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/interop/synthetic.pcap")
}

/// The capture's ground truth (tests/data/interop/synthetic_flows.csv,
/// each direction a flow): 966 flows, 10,000 packets, 6,716,174 bytes.
const TRUTH: (u64, u64, u64) = (966, 10_000, 6_716_174);

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (is it installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs softflowd: run by scripts/integration"]
fn softflowd_export_is_stored_with_the_ground_truth_counts() {
    let data = scratch("softflowd");
    let udp = free_port();
    let serve = Serve::start(&data, udp, &[]);
    run(Command::new("softflowd")
        .args(["-d", "-a", "-A", "milli", "-c", "none", "-v", "10"])
        .args(["-n", &format!("127.0.0.1:{udp}"), "-r"])
        .arg(synthetic())
        .stdout(Stdio::null()));
    serve.wait_for(TRUTH.0);
    let status = serve.status();
    serve.stop();
    assert_eq!(sum(&status, "lost_records"), 0);
    assert_eq!(stored(&data, ""), TRUTH);
    assert_eq!(
        stored(&data, "proto tcp").0 + stored(&data, "not proto tcp").0,
        TRUTH.0
    );
}

#[test]
#[ignore = "needs pmacct: run by scripts/integration"]
fn pmacct_nfprobe_export_is_stored_with_the_ground_truth_counts() {
    let data = scratch("pmacct");
    let udp = free_port();
    let serve = Serve::start(&data, udp, &[]);
    let conf = data.join("pmacctd.conf");
    std::fs::write(
        &conf,
        format!(
            "daemonize: false\npcap_savefile: {}\npcap_savefile_wait: false\n\
             plugins: nfprobe\nnfprobe_receiver: 127.0.0.1:{udp}\nnfprobe_version: 10\n\
             aggregate: src_host, dst_host, src_port, dst_port, proto\n\
             nfprobe_timeouts: expint=1:general=1:maxlife=60\n",
            synthetic().display()
        ),
    )
    .unwrap();
    let mut pmacctd = Command::new("pmacctd")
        .arg("-f")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pmacctd (apt-get install pmacct)");
    // pmacctd reads the file, exports what it metered and exits by itself
    // (a SIGTERM while it reads makes it count some packets twice)
    let deadline = Instant::now() + Duration::from_secs(120);
    while pmacctd.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "pmacctd did not finish the capture"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    serve.wait_for(TRUTH.0);
    let status = serve.status();
    serve.stop();
    let (flows, packets, bytes) = stored(&data, "");
    assert!(flows > 0, "pmacct exported nothing");
    assert_eq!(sum(&status, "lost_records"), 0);
    assert_eq!((packets, bytes), (TRUTH.1, TRUTH.2), "{flows} flows");
}

/// pmacctd with `sampling_rate: 10` meters one packet in ten at random
/// and announces the rate in its options: the store keeps what it counted
/// (a tenth), and `hopscope query` shows the traffic, the ground truth
/// within the sampling error, saying so.
#[test]
#[ignore = "needs pmacct: run by scripts/integration"]
fn a_sampled_pmacct_export_is_scaled_back_to_the_ground_truth() {
    let data = scratch("pmacct-sampled");
    let udp = free_port();
    let serve = Serve::start(&data, udp, &[]);
    let conf = data.join("pmacctd.conf");
    std::fs::write(
        &conf,
        format!(
            "daemonize: false\npcap_savefile: {}\npcap_savefile_wait: false\n\
             plugins: nfprobe\nnfprobe_receiver: 127.0.0.1:{udp}\nnfprobe_version: 10\n\
             aggregate: src_host, dst_host, src_port, dst_port, proto\n\
             nfprobe_timeouts: expint=1:general=1:maxlife=60\nsampling_rate: 10\n",
            synthetic().display()
        ),
    )
    .unwrap();
    let mut pmacctd = Command::new("pmacctd")
        .arg("-f")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pmacctd (apt-get install pmacct)");
    let deadline = Instant::now() + Duration::from_secs(120);
    while pmacctd.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "pmacctd did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    // about a tenth of the flows have a packet sampled
    serve.wait_for(TRUTH.0 / 4);
    std::thread::sleep(Duration::from_secs(2));
    let status = serve.status();
    serve.stop();
    assert_eq!(
        sum(&status, "sampling_unknown"),
        0,
        "pmacct announced its rate"
    );
    let out = hopscope()
        .args([
            "query",
            "-a",
            "packets,bytes,raw_packets,raw_bytes",
            "--json",
        ])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let row: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let n = |f: &str| row[f].as_u64().unwrap();
    assert_eq!(n("packets"), 10 * n("raw_packets"));
    assert_eq!(n("bytes"), 10 * n("raw_bytes"));
    // a random one-in-ten sample of 10,000 packets: the count's standard
    // error is sqrt(10,000 × 0.1 × 0.9) = 30 sampled packets, 3 %; bytes
    // vary with packet sizes as well
    let error = |estimate: u64, truth: u64| (estimate as f64 / truth as f64 - 1.0).abs();
    assert!(
        error(n("packets"), TRUTH.1) < 0.09,
        "{} packets",
        n("packets")
    );
    assert!(error(n("bytes"), TRUTH.2) < 0.15, "{} bytes", n("bytes"));
    let note = String::from_utf8(out.stderr).unwrap();
    assert!(
        note.contains("scaled by each record's sampling rate")
            && note.contains("every flow of known sampling rate"),
        "{note}"
    );
}

#[test]
#[ignore = "needs nfdump: run by scripts/integration"]
fn nfreplay_export_is_stored_with_nfdumps_counts() {
    let data = scratch("nfreplay");
    let nf = data.join("nfcapd");
    std::fs::create_dir_all(&nf).unwrap();
    // nfpcapd turns the capture into nfdump files; nfreplay sends them as NetFlow v9
    run(Command::new("nfpcapd")
        .arg("-r")
        .arg(synthetic())
        .arg("-w")
        .arg(&nf));
    let file = std::fs::read_dir(&nf)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let udp = free_port();
    let serve = Serve::start(&data, udp, &[]);
    run(Command::new("nfreplay").arg("-r").arg(&file).args([
        "-H",
        "127.0.0.1",
        "-p",
        &udp.to_string(),
        "-v",
        "9",
        "-d",
        "1000",
    ]));
    let csv = String::from_utf8(
        Command::new("nfdump")
            .arg("-R")
            .arg(&nf)
            .args(["-o", "csv"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    let summary = lines
        .iter()
        .position(|l| *l == "Summary")
        .expect("nfdump summary");
    let t: Vec<u64> = lines[summary + 2]
        .split(',')
        .take(3)
        .map(|v| v.trim().parse().unwrap())
        .collect();
    let (flows, bytes, packets) = (t[0], t[1], t[2]);
    serve.wait_for(flows);
    serve.stop();
    assert_eq!(stored(&data, ""), (flows, packets, bytes));
}

#[test]
#[ignore = "needs DuckDB's Python package: run by scripts/integration"]
fn duckdb_reads_the_segments_as_plain_parquet() {
    let data = scratch("duckdb");
    let out = hopscope()
        .args(["serve", "--udp", "none", "--tcp", "none", "--http", "none", "--exit-after-replay"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--replay")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "../../tests/data/real/NetGauze/assets/pcaps/pmacct-tests/100-IPFIXv10-CISCO/traffic-00.pcap",
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    let python = std::env::var("HOPSCOPE_DUCKDB_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!(
        "import duckdb\nprint(duckdb.sql(\"select count(*), sum(bytes), sum(packets) from read_parquet('{}/flows/*/*/*.parquet')\").fetchall()[0])",
        data.display()
    );
    let out = Command::new(python).args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (flows, packets, bytes) = stored(&data, "");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("({flows}, {bytes}, {packets})")
    );
    assert_eq!(flows, 12);
}
