//! The probe against ground truth and against independent tools: a
//! synthetic capture whose flows are known (tests/data/interop), softflowd
//! metering the same capture, nfdump's collector storing our export, and
//! tshark decoding it. The tests that run outside tools are ignored by
//! plain `cargo test`; `scripts/integration` installs the tools and runs them.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt8Type, UInt16Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use hopscope_probe::{
    CacheConfig, ExportTarget, Exporter, Meter, MeterConfig, PacketSource, PcapFileSource,
};
use hopscope_schema::format_addr;
use hopscope_wire::{DecodeOutput, Decoder, Transport};

fn synthetic() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/interop/synthetic.pcap")
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("probe-interop");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn meter(biflow: bool) -> RecordBatch {
    let mut m = Meter::new(MeterConfig {
        observation_point_id: 1,
        domain: 0,
        cache: CacheConfig {
            biflow,
            ..CacheConfig::default()
        },
        selection: None,
        decapsulate: true,
    });
    let mut source = PcapFileSource::open(&synthetic()).unwrap();
    while let Some(frame) = source.next_frame() {
        m.observe(&frame.unwrap());
    }
    m.finish();
    m.take_flows().unwrap()
}

type Key = (String, u16, String, u16, u8);

/// (packets, bytes, reverse packets, reverse bytes) per 5-tuple.
fn by_key(batch: &RecordBatch) -> BTreeMap<Key, [u64; 4]> {
    let addr = |n: &str| {
        batch
            .column_by_name(n)
            .unwrap()
            .as_fixed_size_binary()
            .clone()
    };
    let u16c = |n: &str| {
        batch
            .column_by_name(n)
            .unwrap()
            .as_primitive::<UInt16Type>()
            .clone()
    };
    let u64c = |n: &str| {
        batch
            .column_by_name(n)
            .unwrap()
            .as_primitive::<UInt64Type>()
            .clone()
    };
    let (src, dst, sp, dp) = (
        addr("src_addr"),
        addr("dst_addr"),
        u16c("src_port"),
        u16c("dst_port"),
    );
    let proto = batch
        .column_by_name("proto")
        .unwrap()
        .as_primitive::<UInt8Type>()
        .clone();
    let (packets, bytes, rp, rb) = (
        u64c("packets"),
        u64c("bytes"),
        u64c("reverse_packets"),
        u64c("reverse_bytes"),
    );
    let mut out: BTreeMap<Key, [u64; 4]> = BTreeMap::new();
    for i in 0..batch.num_rows() {
        let key = (
            format_addr(src.value(i)),
            sp.value(i),
            format_addr(dst.value(i)),
            dp.value(i),
            proto.value(i),
        );
        let rev = |a: &arrow_array::UInt64Array| if a.is_valid(i) { a.value(i) } else { 0 };
        let e = out.entry(key).or_default();
        e[0] += packets.value(i);
        e[1] += bytes.value(i);
        e[2] += rev(&rp);
        e[3] += rev(&rb);
    }
    out
}

#[test]
fn synthetic_capture_matches_its_ground_truth() {
    let truth_csv =
        std::fs::read_to_string(synthetic().with_file_name("synthetic_flows.csv")).unwrap();
    let mut truth: BTreeMap<Key, [u64; 4]> = BTreeMap::new();
    for line in truth_csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let key = (
            f[2].to_string(),
            f[3].parse().unwrap(),
            f[4].to_string(),
            f[5].parse().unwrap(),
            f[1].parse().unwrap(),
        );
        let n = |i: usize| f[i].parse::<u64>().unwrap();
        truth.insert(key, [n(9), n(10), n(11), n(12)]);
    }
    assert_eq!(truth.len(), 500);
    assert_eq!(by_key(&meter(true)), truth);
}

/// Runs a command, failing the test with its output if it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (is it installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Collects IPFIX datagrams on a loopback socket until `quiet` passes without one.
fn collect(socket: &UdpSocket, quiet: Duration, limit: Duration) -> Vec<Vec<u8>> {
    socket.set_read_timeout(Some(quiet)).unwrap();
    let start = Instant::now();
    let mut datagrams = Vec::new();
    let mut buf = vec![0u8; 65536];
    while start.elapsed() < limit {
        match socket.recv(&mut buf) {
            Ok(n) => datagrams.push(buf[..n].to_vec()),
            Err(_) if !datagrams.is_empty() => break,
            Err(_) => {}
        }
    }
    datagrams
}

#[test]
#[ignore = "needs softflowd: run by scripts/integration"]
fn same_flows_packets_and_bytes_as_softflowd() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    // -a: pcap times, -c none: offline mode without a control socket (it hangs otherwise)
    let mut child = Command::new("softflowd")
        .args([
            "-d",
            "-a",
            "-A",
            "milli",
            "-c",
            "none",
            "-v",
            "10",
            "-n",
            &format!("127.0.0.1:{port}"),
            "-r",
        ])
        .arg(synthetic())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("softflowd runs (apt-get install softflowd)");
    let datagrams = collect(&socket, Duration::from_secs(2), Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    let mut decoder = Decoder::new();
    let mut out = DecodeOutput::default();
    for d in &datagrams {
        decoder
            .decode(
                "127.0.0.1:9".parse().unwrap(),
                Transport::Udp,
                0,
                d,
                &mut out,
            )
            .unwrap();
    }
    let theirs = by_key(&out.flows.finish().unwrap());
    let ours = by_key(&meter(false));
    // softflowd meters each direction as its own flow, as our uniflow mode does;
    // every flow of this capture ends within it, so no timeout splits any
    assert_eq!(ours.len(), 966);
    assert_eq!(ours, theirs);
}

#[test]
#[ignore = "needs nfdump: run by scripts/integration"]
fn nfcapd_stores_our_export_with_the_same_counts() {
    let dir = scratch("nfcapd");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut nfcapd = Command::new("nfcapd")
        .args([
            "-b",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "3600",
            "-w",
        ])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nfcapd runs (apt-get install nfdump)");
    std::thread::sleep(Duration::from_millis(1500));
    let flows = meter(false);
    let mut exporter = Exporter::open(
        &ExportTarget::Udp(format!("127.0.0.1:{port}").parse().unwrap()),
        0,
    )
    .unwrap();
    // paced: loopback buffers are large, but nfcapd is not the fastest reader
    for start in (0..flows.num_rows()).step_by(100) {
        let n = 100.min(flows.num_rows() - start);
        exporter
            .export_flows(&flows.slice(start, n), 1_800_000_000)
            .unwrap();
        exporter.flush().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(1000));
    // SIGTERM makes nfcapd close its file with its statistics
    run(Command::new("kill").args(["-TERM", &nfcapd.id().to_string()]));
    let _ = nfcapd.wait();
    let csv = run(Command::new("nfdump")
        .arg("-R")
        .arg(&dir)
        .args(["-o", "csv"]));
    // nfdump closes its CSV with "Summary", a header and "flows,bytes,packets,..."
    let lines: Vec<&str> = csv.lines().collect();
    let summary = lines
        .iter()
        .position(|l| *l == "Summary")
        .expect("nfdump summary");
    let totals: Vec<u64> = lines[summary + 2]
        .split(',')
        .take(3)
        .map(|v| v.trim().parse().unwrap())
        .collect();
    assert_eq!(
        totals,
        vec![966, 6_716_174, 10_000],
        "flows, bytes, packets as nfcapd stored them"
    );
    // and the times it stored are the capture's (2024-01-01), from our millisecond IEs
    let first_record = lines[1];
    assert!(
        first_record.starts_with("2024-01-01 10:00:"),
        "{first_record}"
    );
}

#[test]
#[ignore = "needs tshark: run by scripts/integration"]
fn tshark_decodes_the_probe_export_cleanly() {
    use hopscope_probe::{ProbeReport, SelectorConfig};
    use hopscope_wire::file::{CaptureWriter, IpfixReader};
    // flows, packet reports and options, as the probe exports them
    let mut m = Meter::new(MeterConfig {
        observation_point_id: 7,
        domain: 3,
        cache: CacheConfig {
            biflow: true,
            ..CacheConfig::default()
        },
        selection: Some(SelectorConfig {
            selected: 1,
            population: 10,
            ..SelectorConfig::default()
        }),
        decapsulate: true,
    });
    let mut source = PcapFileSource::open(&synthetic()).unwrap();
    while let Some(frame) = source.next_frame() {
        m.observe(&frame.unwrap());
    }
    m.finish();
    let ipfix = scratch("probe.ipfix");
    let mut exporter = Exporter::open(&ExportTarget::File(ipfix.clone()), 3).unwrap();
    exporter
        .export_flows(&m.take_flows().unwrap(), 1_800_000_000)
        .unwrap();
    exporter
        .export_reports(&m.take_reports().unwrap(), 1_800_000_000)
        .unwrap();
    let report = ProbeReport {
        observation_point_id: 7,
        observation_point_name: "r1-eth0",
        clock: None,
        metering_process_id: 1,
        selector: m.selector(),
        ignored_packets: 0,
        left_out: (0, 0),
        flows_exported: m.stats.flows_exported,
    };
    exporter.export_options(&report, 1_800_000_000);
    exporter.flush().unwrap();
    // the messages as they would cross a TCP connection to port 4739
    let pcap = scratch("probe.pcap");
    let bytes = std::fs::read(&ipfix).unwrap();
    let mut reader = IpfixReader::new(&bytes[..]);
    let mut writer = CaptureWriter::new(std::fs::File::create(&pcap).unwrap()).unwrap();
    let (from, to) = (
        "127.0.0.1:40000".parse().unwrap(),
        "127.0.0.1:4739".parse().unwrap(),
    );
    let mut messages = 0;
    while let Some(message) = reader.next_message() {
        writer
            .write_datagram(
                1_800_000_000_000_000_000 + messages,
                from,
                to,
                message.unwrap(),
            )
            .unwrap();
        messages += 1;
    }
    drop(writer.into_inner());
    let out = run(Command::new("tshark").arg("-r").arg(&pcap).args([
        "-d",
        "udp.port==4739,cflow",
        "-T",
        "fields",
        "-e",
        "_ws.expert.severity",
        "-e",
        "_ws.expert.message",
        "-e",
        "cflow.octets",
    ]));
    let mut octets = 0u64;
    for line in out.lines() {
        let cells: Vec<&str> = line.split('\t').collect();
        // chat and comment levels are informational; notes, warnings and errors are not
        for severity in cells[0].split(',').filter(|s| !s.is_empty()) {
            assert!(matches!(severity, "2097152" | "1048576"), "tshark: {line}");
        }
        octets += cells
            .get(2)
            .unwrap_or(&"")
            .split(',')
            .filter_map(|v| v.parse::<u64>().ok())
            .sum::<u64>();
    }
    // tshark shows forward and reverse (RFC 5103) octet counters under one
    // field name: together, every octet of the capture
    assert_eq!(octets, 6_716_174);
}

#[test]
fn a_bpf_filter_meters_only_what_it_accepts() {
    // tcpdump -y EN10MB -ddd 'udp port 53'
    let program = "20\n40 0 0 12\n21 0 6 34525\n48 0 0 20\n21 0 15 17\n40 0 0 54\n21 12 0 53\n40 0 0 56\n21 10 11 53\n21 0 10 2048\n48 0 0 23\n21 0 8 17\n40 0 0 20\n69 6 0 8191\n177 0 0 14\n72 0 0 14\n21 2 0 53\n72 0 0 16\n21 0 1 53\n6 0 0 262144\n6 0 0 0\n";
    let filter = hopscope_packet::bpf::BpfProgram::parse(program).unwrap();
    let mut m = Meter::new(MeterConfig {
        observation_point_id: 1,
        domain: 0,
        cache: CacheConfig::default(),
        selection: None,
        decapsulate: true,
    })
    .with_filter(filter);
    let mut source = PcapFileSource::open(&synthetic()).unwrap();
    while let Some(frame) = source.next_frame() {
        m.observe(&frame.unwrap());
    }
    m.finish();
    let flows = by_key(&m.take_flows().unwrap());
    let all = by_key(&meter(false));
    let dns: BTreeMap<_, _> = all
        .into_iter()
        .filter(|(k, _)| k.4 == 17 && (k.1 == 53 || k.3 == 53))
        .collect();
    assert!(!dns.is_empty());
    assert_eq!(flows, dns);
    assert_eq!(m.stats.filtered + m.stats.frames, 10_000);
}
