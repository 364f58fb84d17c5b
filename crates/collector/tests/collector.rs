//! The collector over loopback: what is sent is stored, counted, enriched;
//! a restart resumes with the templates; strangers are turned away.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use hopscope_collector::{Cidr, Collector, CollectorConfig, Metrics, NetworkTag, now_ns};
use hopscope_schema::{FlowBatchBuilder, FlowRecord, ipv4_mapped};
use hopscope_store::query::{Aggregate, Query, execute, parse_filter};
use hopscope_store::{Store, WriteOptions};
use hopscope_wire::encoder::FlowEncoder;

/// `n` flows from 10.0.0.(1..=4) to 192.0.2.9, each of 1000 bytes in 2 packets.
fn flows(n: usize) -> RecordBatch {
    let mut b = FlowBatchBuilder::default();
    let now = now_ns();
    for k in 0..n {
        b.append(&FlowRecord {
            time_flow_start_ns: Some(now - 1_000_000_000),
            time_flow_end_ns: Some(now),
            ip_version: Some(4),
            src_addr: Some(ipv4_mapped([10, 0, 0, (k % 4) as u8 + 1])),
            dst_addr: Some(ipv4_mapped([192, 0, 2, 9])),
            src_port: Some(1024 + k as u16),
            dst_port: Some(443),
            proto: Some(6),
            bytes: Some(1000),
            packets: Some(2),
            in_if: Some(3),
            ..FlowRecord::default()
        });
    }
    b.finish().unwrap()
}

fn config() -> CollectorConfig {
    CollectorConfig {
        udp: vec!["127.0.0.1:0".parse().unwrap()],
        tcp: vec!["127.0.0.1:0".parse().unwrap()],
        udp_sockets: 2,
        flush_interval: Duration::from_millis(200),
        ..CollectorConfig::default()
    }
}

fn start(dir: &std::path::Path, config: &CollectorConfig) -> (Collector, Arc<Store>) {
    let store = Arc::new(Store::open(dir, WriteOptions::default()).unwrap());
    let metrics = Arc::new(Metrics::new(now_ns()));
    (
        Collector::start(config, store.clone(), metrics).unwrap(),
        store,
    )
}

fn totals(store: &Store, filter: &str) -> (u64, u64) {
    let q = Query {
        filter: parse_filter(filter).unwrap(),
        aggregates: vec![Aggregate::Flows, Aggregate::Sum("bytes")],
        ..Query::default()
    };
    let rows = execute(store, &q).unwrap().rows;
    let get = |name| {
        rows.column_by_name(name)
            .unwrap()
            .as_primitive::<UInt64Type>()
            .value(0)
    };
    (get("flows"), get("bytes"))
}

/// Waits until the collector has decoded `records` flow records.
fn wait_for(collector: &Collector, records: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let status = collector.metrics.status(now_ns());
        if status.exporters.iter().map(|e| e.flow_records).sum::<u64>() >= records {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the collector did not decode {records} records in time");
}

fn send_udp(from: &UdpSocket, to: SocketAddr, messages: &[Vec<u8>]) {
    for m in messages {
        from.send_to(m, to).unwrap();
        // loopback is fast; a little pacing keeps the test far from buffer limits
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn udp_and_tcp_flows_are_stored_enriched_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config();
    config.exporter_names = vec![("127.0.0.1".parse().unwrap(), "edge-1".to_string())];
    config.networks = vec![NetworkTag {
        cidr: "10.0.0.0/30".parse().unwrap(),
        name: "clients".into(),
        role: Some("user".into()),
        site: Some("par".into()),
    }];
    let (collector, store) = start(dir.path(), &config);

    let mut udp_encoder = FlowEncoder::new(7, 1400, Some(16));
    let mut messages = udp_encoder.encode(&flows(3000), 1).unwrap();
    messages.extend(udp_encoder.flush());
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    send_udp(&sender, collector.udp_addrs[0], &messages);

    let mut tcp_encoder = FlowEncoder::new(8, 65_000, None);
    let mut stream = TcpStream::connect(collector.tcp_addrs[0]).unwrap();
    for m in tcp_encoder
        .encode(&flows(500), 1)
        .unwrap()
        .into_iter()
        .chain(tcp_encoder.flush())
    {
        stream.write_all(&m).unwrap();
    }
    drop(stream);
    wait_for(&collector, 3500);
    let status = collector.metrics.status(now_ns());
    collector.stop();

    assert_eq!(totals(&store, ""), (3500, 3_500_000));
    assert_eq!(totals(&store, "observation_domain_id = 8").0, 500);
    // 10.0.0.1-3 are in 10.0.0.0/30 (10.0.0.0-3); 10.0.0.4 is not
    assert_eq!(
        totals(&store, "src_net_name = clients and src_net_site = par").0,
        2625
    );
    assert_eq!(totals(&store, "exporter_name = edge-1").0, 3500);

    let udp = status
        .exporters
        .iter()
        .find(|e| e.transport == "udp")
        .unwrap();
    assert_eq!(udp.flow_records, 3000);
    assert_eq!(udp.lost_records, 0);
    assert!(udp.templates_active >= 1);
    let tcp = status
        .exporters
        .iter()
        .find(|e| e.transport == "tcp")
        .unwrap();
    assert_eq!(tcp.flow_records, 500);
    let text = status.prometheus();
    assert!(
        // labelled by address: an exporter's source ports are one exporter
        text.contains(
            "hopscope_exporter_flow_records_total{exporter=\"127.0.0.1\",transport=\"udp\"} 3000"
        ),
        "{text}"
    );
}

#[test]
fn a_restart_keeps_templates_and_counts_what_was_missed() {
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let mut encoder = FlowEncoder::new(7, 1400, None);
    // templates go only in the first message (no refresh)
    let messages: Vec<Vec<u8>> = encoder
        .encode(&flows(400), 1)
        .unwrap()
        .into_iter()
        .chain(encoder.flush())
        .collect();
    assert!(messages.len() >= 8);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();

    let (collector, store) = start(dir.path(), &config);
    let half = messages.len() / 2;
    let count = |ms: &[Vec<u8>]| ms.iter().map(|m| record_count(m) as u64).sum::<u64>();
    send_udp(&sender, collector.udp_addrs[0], &messages[..half]);
    wait_for(&collector, count(&messages[..half]));
    let port = collector.udp_addrs[0];
    collector.stop();
    drop(store);

    // same port, a new collector: the exporter will not resend its template
    let mut config = config.clone();
    config.udp = vec![port];
    let (collector, store) = start(dir.path(), &config);
    // and one message never arrives
    send_udp(&sender, port, &messages[half + 1..]);
    wait_for(&collector, count(&messages[half + 1..]));
    let status = collector.metrics.status(now_ns());
    collector.stop();
    let (stored, _) = totals(&store, "");
    let udp = status
        .exporters
        .iter()
        .find(|e| e.transport == "udp")
        .unwrap();
    assert!(udp.decode_errors.is_empty(), "{:?}", udp.decode_errors);
    assert_eq!(udp.lost_records, count(&messages[half..half + 1]));
    assert_eq!(
        stored + udp.lost_records,
        400,
        "stored {stored}, lost {}",
        udp.lost_records
    );
}

/// Data records in an IPFIX message of this test's fixed-size template.
fn record_count(message: &[u8]) -> usize {
    let mut at = 16;
    let mut n = 0;
    while at + 4 <= message.len() {
        let id = u16::from_be_bytes([message[at], message[at + 1]]);
        let len = usize::from(u16::from_be_bytes([message[at + 2], message[at + 3]]));
        if id >= 256 {
            // ip_version, times, addresses, ports, proto, bytes, packets, in_if
            n += (len - 4) / record_length(message);
        }
        at += len;
    }
    n
}

fn record_length(_message: &[u8]) -> usize {
    // the encoder's IPv4 template for these columns (see FLOW_ELEMENTS)
    RECORD_LENGTH.with(|l| *l)
}

thread_local! {
    static RECORD_LENGTH: usize = {
        let mut e = FlowEncoder::new(1, 65_000, None);
        let one: Vec<Vec<u8>> = e.encode(&flows(1), 1).unwrap().into_iter().chain(e.flush()).collect();
        let mut e = FlowEncoder::new(1, 65_000, None);
        let two: Vec<Vec<u8>> = e.encode(&flows(2), 1).unwrap().into_iter().chain(e.flush()).collect();
        two[0].len() - one[0].len()
    };
}

#[test]
fn exporters_outside_the_allow_list_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config();
    config.allow = vec!["192.0.2.0/24".parse::<Cidr>().unwrap()];
    let (collector, store) = start(dir.path(), &config);
    let mut encoder = FlowEncoder::new(7, 1400, None);
    let messages: Vec<_> = encoder
        .encode(&flows(50), 1)
        .unwrap()
        .into_iter()
        .chain(encoder.flush())
        .collect();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    send_udp(&sender, collector.udp_addrs[0], &messages);
    let deadline = Instant::now() + Duration::from_secs(10);
    while collector.metrics.status(now_ns()).denied_datagrams < messages.len() as u64 {
        assert!(Instant::now() < deadline, "denials not counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = collector.metrics.status(now_ns());
    collector.stop();
    assert_eq!(
        status.denied_sources.get("127.0.0.1"),
        Some(&(messages.len() as u64))
    );
    assert_eq!(totals(&store, "").0, 0);
}

/// Polls the collector's status until `done` holds (at most 10 s).
fn wait_until(collector: &Collector, done: impl Fn(&hopscope_collector::Status) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if done(&collector.metrics.status(now_ns())) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{:#?}", collector.metrics.status(now_ns()).tcp);
}

#[test]
fn tcp_clients_are_held_to_their_limits_and_every_refusal_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = CollectorConfig {
        udp: Vec::new(),
        tcp_limits: hopscope_collector::TcpLimits {
            max_connections: 6,
            max_per_source: 3,
            max_handshaking: 2,
            handshake_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(1500),
            closed_linger: Duration::from_millis(200),
        },
        ..config()
    };
    let (collector, _store) = start(dir.path(), &config);
    let to = collector.tcp_addrs[0];
    let connect = |from: [u8; 4]| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::from((from, 0)).into()).unwrap();
        s.connect(&to.into()).unwrap();
        TcpStream::from(s)
    };
    let mut encoder = FlowEncoder::new(3, 1400, None);
    let encoded = encoder.encode(&flows(10), 1).unwrap();
    let message: Vec<u8> = encoded
        .into_iter()
        .chain(encoder.flush())
        .flatten()
        .collect();

    // an exporter whose first message is there at once is never weighed as
    // a handshake; three from one source fill its share
    let mut exporters: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = connect([127, 0, 5, 1]);
            s.write_all(&message).unwrap();
            s
        })
        .collect();
    wait_until(&collector, |s| s.tcp.open == 3);
    let fourth = connect([127, 0, 5, 1]);
    wait_until(&collector, |s| s.tcp.refused["source_limit"] == 1);
    // silent clients: two handshakes are let in, the third is refused
    let silent: Vec<TcpStream> = (0..3).map(|_| connect([127, 0, 5, 2])).collect();
    wait_until(&collector, |s| {
        s.tcp.refused["handshake_limit"] == 1 && s.tcp.open == 5
    });
    // the two silent ones are closed at their handshake timeout
    wait_until(&collector, |s| {
        s.tcp.closed["handshake_timeout"] == 2 && s.tcp.open == 3
    });
    // a connection that keeps sending stays; the silent exporters go idle
    let mut busy = connect([127, 0, 5, 3]);
    for _ in 0..20 {
        busy.write_all(&message).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until(&collector, |s| {
        s.tcp.closed["idle_timeout"] == 3 && s.tcp.open == 1
    });
    // closed connections leave the status after the linger
    drop(busy);
    wait_until(&collector, |s| {
        s.tcp.closed["peer"] == 1 && s.exporters.iter().all(|e| e.transport != "tcp")
    });
    let s = collector.metrics.status(now_ns());
    // every connection: accepted (and counted once) or refused (once)
    let refused: u64 = s.tcp.refused.values().sum();
    assert_eq!((s.tcp_connections, refused), (6, 2), "{:#?}", s.tcp);
    assert_eq!(s.denied_datagrams, 0);
    drop((fourth, silent, exporters.drain(..)));
    collector.stop();
}

/// Two probes on one host (one per interface of a router) share its
/// address and domain 0: their flows carry each probe's point by name, the
/// probes say they meter every packet (rate 1, from their options), and
/// their health is told apart by point in status and `/metrics`.
#[test]
fn the_probes_of_one_host_are_told_apart_by_their_points_name() {
    use hopscope_probe::{ExportTarget, Exporter, ProbeReport};
    let dir = tempfile::tempdir().unwrap();
    let (collector, store) = start(dir.path(), &config());
    let target = ExportTarget::Udp(collector.udp_addrs[0]);
    for (point, n) in [("r1:eth0", 300u32), ("r1:eth1", 200)] {
        let id = u64::from(hopscope_probe::crc32(point.as_bytes(), 0));
        let mut exporter = Exporter::open(&target, 0).unwrap();
        // names and rate first, as the probe sends them
        exporter.export_options(
            &ProbeReport {
                observation_point_id: id,
                observation_point_name: point,
                clock: None,
                metering_process_id: 1,
                selector: None,
                ignored_packets: 0,
                left_out: (0, 0),
                flows_exported: 0,
            },
            1,
        );
        exporter.flush().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let batch = flows(n as usize);
        let points = arrow_array::UInt64Array::from(vec![id; n as usize]);
        let index = batch.schema().index_of("observation_point_id").unwrap();
        let mut columns = batch.columns().to_vec();
        columns[index] = Arc::new(points);
        let batch = RecordBatch::try_new(batch.schema(), columns).unwrap();
        exporter.export_flows(&batch, 1).unwrap();
        exporter.flush().unwrap();
    }
    wait_for(&collector, 500);
    let status = collector.metrics.status(now_ns());
    collector.stop();

    assert_eq!(
        totals(&store, "observation_point_name = \"r1:eth0\"").0,
        300
    );
    assert_eq!(
        totals(&store, "observation_point_name = \"r1:eth1\"").0,
        200
    );
    assert_eq!(
        totals(&store, "sampling_rate = 1 and sampling_rate_source = 2").0,
        500,
        "the probes announce 1:1"
    );
    let mut points: Vec<(Vec<String>, u64)> = status
        .exporters
        .iter()
        .map(|e| (e.points.clone(), e.flow_records))
        .collect();
    points.sort();
    assert_eq!(
        points,
        [
            (vec!["r1:eth0".to_string()], 300),
            (vec!["r1:eth1".to_string()], 200)
        ]
    );
    let text = status.prometheus();
    assert!(
        text.contains(
            "hopscope_exporter_flow_records_total{exporter=\"127.0.0.1\",transport=\"udp\",point=\"r1:eth1\"} 200"
        ),
        "{text}"
    );
    assert_eq!(
        status
            .exporters
            .iter()
            .map(|e| e.sampling_unknown)
            .sum::<u64>(),
        0
    );
}

/// VRF names announced in options records the way Cisco IOS XR defines
/// them (template 334: ingressVRFID 234 as scope, VRFname 236 in 32
/// octets) reach the flows that carry the VRF id, to group by.
#[test]
fn vrf_names_from_options_reach_the_flows() {
    use hopscope_wire::encoder::{MessageBuilder, TemplateSet};
    use hopscope_wire::template::FieldSpec;
    let dir = tempfile::tempdir().unwrap();
    let (collector, store) = start(dir.path(), &config());
    let mut templates = TemplateSet::new(None);
    let mut builder = MessageBuilder::new(2177, 1400);
    builder.set_export_time(1);
    let names = templates.id_for(1, vec![FieldSpec::iana(234, 4), FieldSpec::iana(236, 32)]);
    for (vrf, name) in [(1u32, "customer-a"), (2, "customer-b")] {
        let mut r = vrf.to_be_bytes().to_vec();
        let mut text = name.as_bytes().to_vec();
        text.resize(32, 0);
        r.extend_from_slice(&text);
        templates.add_record(&mut builder, names, &r);
    }
    let flow = templates.id_for(
        0,
        vec![
            FieldSpec::iana(8, 4),
            FieldSpec::iana(1, 8),
            FieldSpec::iana(234, 4),
        ],
    );
    for k in 0..30u32 {
        let mut r = vec![10, 0, 0, 1];
        r.extend_from_slice(&100u64.to_be_bytes());
        r.extend_from_slice(&(1 + k % 3).to_be_bytes());
        templates.add_record(&mut builder, flow, &r);
    }
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    send_udp(&sender, collector.udp_addrs[0], &builder.finish());
    wait_for(&collector, 30);
    collector.stop();
    assert_eq!(totals(&store, "ingress_vrf_name = customer-a").0, 10);
    assert_eq!(totals(&store, "ingress_vrf_name = customer-b").0, 10);
    assert_eq!(
        totals(
            &store,
            "ingress_vrf_id = 3 and not ingress_vrf_name = customer-a"
        )
        .0,
        10
    );
}

/// Interface descriptions (ifAlias, IE 83, beside the name 82, scoped by
/// the ifIndex) and sampler names (84, beside a random sampler's id 48 and
/// interval 50, as Cisco IOS XR announces them) reach the flows that carry
/// the ifIndex and the sampler's id, whose volumes its rate scales.
#[test]
fn interface_descriptions_and_sampler_names_from_options_reach_the_flows() {
    use hopscope_wire::encoder::{MessageBuilder, TemplateSet};
    use hopscope_wire::template::FieldSpec;
    let dir = tempfile::tempdir().unwrap();
    let (collector, store) = start(dir.path(), &config());
    let mut templates = TemplateSet::new(None);
    let mut builder = MessageBuilder::new(2177, 1400);
    builder.set_export_time(1);
    let text = |s: &str, len: usize| {
        let mut t = s.as_bytes().to_vec();
        t.resize(len, 0);
        t
    };
    let interfaces = templates.id_for(
        1,
        vec![
            FieldSpec::iana(10, 4),
            FieldSpec::iana(82, 16),
            FieldSpec::iana(83, 32),
        ],
    );
    for (index, name, description) in [(1u32, "Te0/0/0", "transit: ISP A"), (2, "Te0/0/1", "")] {
        let mut r = index.to_be_bytes().to_vec();
        r.extend(text(name, 16));
        r.extend(text(description, 32));
        templates.add_record(&mut builder, interfaces, &r);
    }
    let samplers = templates.id_for(
        1,
        vec![
            FieldSpec::iana(48, 1),
            FieldSpec::iana(50, 4),
            FieldSpec::iana(84, 24),
        ],
    );
    let mut r = vec![3];
    r.extend_from_slice(&100u32.to_be_bytes());
    r.extend(text("NETFLOW-SAMPLER-MAP", 24));
    templates.add_record(&mut builder, samplers, &r);
    let flow = templates.id_for(
        0,
        vec![
            FieldSpec::iana(8, 4),
            FieldSpec::iana(1, 8),
            FieldSpec::iana(10, 4),
            FieldSpec::iana(48, 1),
        ],
    );
    for k in 0..20u32 {
        let mut r = vec![10, 0, 0, 1];
        r.extend_from_slice(&100u64.to_be_bytes());
        r.extend_from_slice(&(1 + k % 2).to_be_bytes());
        r.push(3);
        templates.add_record(&mut builder, flow, &r);
    }
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    send_udp(&sender, collector.udp_addrs[0], &builder.finish());
    wait_for(&collector, 20);
    collector.stop();
    assert_eq!(
        totals(&store, "in_if_description = \"transit: ISP A\"").0,
        10
    );
    assert_eq!(
        totals(&store, "in_if_name = Te0/0/1 and in_if_description = \"\"").0,
        10,
        "an empty description is empty, not absent"
    );
    assert_eq!(
        totals(
            &store,
            "sampler_name = NETFLOW-SAMPLER-MAP and sampler_id = 3"
        ),
        (20, 20 * 100 * 100),
        "the sampler's name, and its rate scaling the volumes"
    );
}
