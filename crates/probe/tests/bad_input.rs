//! Bad input and bad luck: captures cut mid-record, link types the probe
//! does not follow, a collector that is not there. The probe goes on,
//! counts what it could not do, and never blocks.

use std::path::{Path, PathBuf};

use hopscope_probe::{
    CacheConfig, ExportTarget, Exporter, Meter, MeterConfig, PacketSource, PcapFileSource,
};

fn synthetic() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/interop/synthetic.pcap")
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("probe-bad-input");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn config() -> MeterConfig {
    MeterConfig {
        observation_point_id: 1,
        domain: 0,
        cache: CacheConfig::default(),
        selection: None,
        decapsulate: true,
    }
}

#[test]
fn a_capture_cut_mid_record_meters_what_came_before() {
    let bytes = std::fs::read(synthetic()).unwrap();
    let cut = scratch("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() / 2 + 7]).unwrap();
    let mut source = PcapFileSource::open(&cut).unwrap();
    let mut meter = Meter::new(config());
    let mut error = None;
    while let Some(frame) = source.next_frame() {
        match frame {
            Ok(f) => meter.observe(&f),
            Err(e) => error = Some(e.to_string()),
        }
    }
    let error = error.expect("the cut is reported");
    assert!(error.contains("ends inside the record"), "{error}");
    assert!(
        meter.stats.packets > 4000 && meter.stats.packets < 6000,
        "{}",
        meter.stats.packets
    );
    meter.finish();
    assert!(meter.take_flows().unwrap().num_rows() > 0);
}

#[test]
fn frames_of_unknown_link_types_are_counted_not_parsed() {
    let mut bytes = std::fs::read(synthetic()).unwrap();
    bytes[20..24].copy_from_slice(&147u32.to_le_bytes()); // LINKTYPE_USER0
    let path = scratch("user-link.pcap");
    std::fs::write(&path, &bytes).unwrap();
    let mut source = PcapFileSource::open(&path).unwrap();
    let mut meter = Meter::new(config());
    while let Some(frame) = source.next_frame() {
        meter.observe(&frame.unwrap());
    }
    assert_eq!(source.counters().frames, 10_000);
    assert_eq!(source.counters().unknown_link, 10_000);
    assert_eq!(meter.stats.frames, 0);
}

#[test]
fn garbage_frames_are_counted_by_reason() {
    use hopscope_packet::LinkType;
    use hopscope_probe::Frame;
    let mut meter = Meter::new(config());
    let frames: [&[u8]; 4] = [
        &[0u8; 10],                                        // shorter than Ethernet
        &[0xff; 60],                                       // ethertype 0xffff
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0x41], // IPv4 with IHL 1
        &[0x60; 80], // raw IPv6 looping in hop-by-hop... as Ethernet
    ];
    for data in frames {
        meter.observe(&Frame {
            timestamp_ns: 0,
            link: LinkType::Ethernet,
            data,
            wire_len: data.len() as u32,
            interface: 0,
            vlan: None,
        });
    }
    let s = &meter.stats;
    assert_eq!(s.frames, 4);
    assert_eq!(s.packets, 0);
    assert_eq!(s.not_ip + s.malformed, 4, "{s:?}");
}

#[test]
fn an_unreachable_tcp_collector_costs_buffered_then_counted_records() {
    // a port nobody listens on
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut meter = Meter::new(config());
    let mut source = PcapFileSource::open(&synthetic()).unwrap();
    while let Some(frame) = source.next_frame() {
        meter.observe(&frame.unwrap());
    }
    meter.finish();
    let flows = meter.take_flows().unwrap();
    let mut exporter = Exporter::open(&ExportTarget::Tcp(addr), 0).unwrap();
    let rounds = 200u64;
    for _ in 0..rounds {
        exporter.export_flows(&flows, 1_800_000_000).unwrap();
        exporter.flush().unwrap();
    }
    let c = exporter.counters.clone();
    let (_, waiting) = exporter.buffered();
    assert_eq!(c.records_sent, 0);
    assert!(
        c.messages_dropped > 0,
        "the bounded buffer overflowed: {c:?}"
    );
    // every record is sent, waiting or counted as not sent
    assert_eq!(
        c.records_sent + waiting + c.records_not_sent,
        rounds * flows.num_rows() as u64
    );

    // the collector comes up: what waits is delivered on the next attempt
    let listener = std::net::TcpListener::bind(addr).unwrap();
    let reader = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut received = Vec::new();
        std::io::Read::read_to_end(&mut conn, &mut received).unwrap();
        received.len()
    });
    std::thread::sleep(std::time::Duration::from_millis(1100)); // reconnects at most once a second
    exporter
        .export_flows(&flows.slice(0, 1), 1_800_000_000)
        .unwrap();
    exporter.flush().unwrap();
    let delivered = exporter.counters.octets_sent;
    assert_eq!(exporter.buffered().0, 0);
    drop(exporter);
    assert_eq!(reader.join().unwrap() as u64, delivered);
}

/// The options of a probe at `point` that selects nothing and has lost
/// nothing, to be varied by the test.
fn options_of(point: u64, name: &str) -> hopscope_probe::ProbeReport<'_> {
    hopscope_probe::ProbeReport {
        observation_point_id: point,
        observation_point_name: name,
        clock: None,
        metering_process_id: 1,
        selector: None,
        ignored_packets: 0,
        left_out: (0, 0),
        flows_exported: 0,
    }
}

/// What the probe says it lost (packets it could not observe, records it
/// could not send) reaches the collector as telemetry loss: the increase of
/// each total between options records, counted once.
#[test]
fn reported_drops_and_unsent_records_are_counted_as_they_grow() {
    use hopscope_probe::{ExportTarget, Exporter, ProbeReport};
    use hopscope_wire::file::replay_file;
    use hopscope_wire::{DecodeOutput, Decoder};
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("reliability-options.ipfix");
    let mut exporter = Exporter::open(&ExportTarget::File(path.clone()), 3).unwrap();
    for (ignored, not_sent) in [(5, 0), (12, 4), (12, 4)] {
        exporter.counters.records_not_sent = not_sent;
        exporter.export_options(
            &ProbeReport {
                ignored_packets: ignored,
                ..options_of(9, "r1:eth0")
            },
            1_800_000_000,
        );
        exporter.flush().unwrap();
    }
    let mut decoder = Decoder::new();
    let mut out = DecodeOutput::default();
    replay_file(&path, &mut decoder, &mut out, 0).unwrap();
    let session = decoder.sessions().next().unwrap();
    assert_eq!(session.stats().exporter_drops, 12);
    assert_eq!(session.stats().lost_records, 4);
    let domain = session.domain(3).unwrap();
    assert_eq!(domain.exporter_drops(), 12);
    assert_eq!(domain.lost_records(), 4);
}

/// The clock a probe announces reaches the collector's session state with
/// the point's name; a point that announces none has none.
#[test]
fn an_announced_clock_is_learnt_with_the_points_name() {
    use hopscope_probe::{ExportTarget, Exporter, ProbeReport};
    use hopscope_wire::file::replay_file;
    use hopscope_wire::{DecodeOutput, Decoder, PointClock};
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("clock-options.ipfix");
    let mut exporter = Exporter::open(&ExportTarget::File(path.clone()), 3).unwrap();
    let clock = PointClock {
        id: 0x1234_5678_9abc,
        bound_ns: 50_000,
    };
    for (point, name, clock) in [(9, "r1:eth0", Some(clock)), (10, "r1:eth1", None)] {
        exporter.export_options(
            &ProbeReport {
                clock,
                ..options_of(point, name)
            },
            1_800_000_000,
        );
    }
    exporter.flush().unwrap();
    let mut decoder = Decoder::new();
    let mut out = DecodeOutput::default();
    replay_file(&path, &mut decoder, &mut out, 0).unwrap();
    let domain = decoder.sessions().next().unwrap().domain(3).unwrap();
    let clocks: Vec<(u64, PointClock)> = domain.point_clocks().collect();
    assert_eq!(clocks, [(9, clock)]);
    let mut names: Vec<(u64, &str)> = domain.point_names().collect();
    names.sort_unstable();
    assert_eq!(names, [(9, "r1:eth0"), (10, "r1:eth1")]);
}
