//! The demo network: a simulated multi-hop path (a branch firewall doing
//! NAT, a WAN link, a provider edge, two core routers sharing the load by
//! ECMP, a data-centre gateway) whose devices meter their interfaces with
//! hopscope's own probe and export IPFIX live to a collector, as real
//! devices would, each from its own loopback address.
//!
//! Every second the [`DemoNetwork`] simulates the second that just passed
//! (many hosts and services, a steady loss on the WAN link, the clock errors
//! of real devices) and now and then an [incident](Incident): a loss burst
//! on the core-to-DC link, a delay spike on the provider's uplink, a port
//! scan. This crate owns the scenario and its schedule; the simulation is
//! `hopscope-simulate`'s and the metering and export `hopscope-probe`'s.

#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hopscope_probe::{
    CacheConfig, ExportError, ExportTarget, Exporter, Frame, HashFunction, Meter, MeterConfig,
    MeteringProcess, ProcessError, Profile, SelectorConfig,
};
use hopscope_simulate::{HopSpec, LinkSpec, NatSpec, PointSpec, Scenario, Traffic, simulate};

/// One second of simulated traffic per step.
pub const STEP_NS: i64 = 1_000_000_000;

/// The WAN link (branch firewall to provider edge) that always loses a
/// little: the loss a newcomer should find on the journeys page.
pub const LOSSY_SEGMENT: (&str, &str) = ("branch-fw:wan", "isp-pe:ge-0/0/1");
/// Its loss probability per packet, each way.
pub const LOSSY_SEGMENT_LOSS: f64 = 0.02;
/// The branch's uplink: where every packet of the demo leaves or enters the
/// branch's network, once. The demo's collector counts traffic there; the
/// other points are inside.
pub const BOUNDARY_POINT: &str = "branch-fw:wan";

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Where the devices send IPFIX (UDP).
    pub collector: SocketAddr,
    pub seed: u64,
    /// New flows per second.
    pub flows_per_second: u32,
    /// Packet selection: one in this many packets is reported.
    pub select_one_in: u32,
    /// Incidents on their schedule (off: the steady state only).
    pub incidents: bool,
}

impl DemoConfig {
    pub fn new(collector: SocketAddr) -> Self {
        Self {
            collector,
            seed: 7,
            flows_per_second: 150,
            select_one_in: 4,
            incidents: true,
        }
    }
}

/// Something going wrong on the demo network for a while.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Incident {
    /// A link drops this share of its packets.
    LossBurst { link: usize, loss: f64 },
    /// A link's queues add this much mean delay, microseconds.
    DelaySpike { link: usize, extra_us: f64 },
    /// One host probes this many (host, port) pairs per second.
    Scan { probes_per_second: u32 },
}

/// When incidents happen: the schedule repeats every [`CYCLE_SECONDS`],
/// quiet for the first minute so that the steady state is seen first.
const CYCLE_SECONDS: u64 = 180;
const SCHEDULE: [(u64, u64, Incident); 3] = [
    (
        60,
        80,
        Incident::LossBurst {
            link: 3,
            loss: 0.15,
        },
    ),
    (
        100,
        115,
        Incident::DelaySpike {
            link: 2,
            extra_us: 20_000.0,
        },
    ),
    (
        135,
        145,
        Incident::Scan {
            probes_per_second: 300,
        },
    ),
];

impl Incident {
    /// The incidents under way `elapsed_s` seconds after the demo started.
    pub fn active_at(elapsed_s: u64) -> Vec<Incident> {
        let t = elapsed_s % CYCLE_SECONDS;
        SCHEDULE
            .iter()
            .filter(|(from, until, _)| (*from..*until).contains(&t))
            .map(|&(_, _, i)| i)
            .collect()
    }

    /// A sentence for the console.
    pub fn describe(&self, scenario: &Scenario) -> String {
        let link_name = |link: usize| {
            format!(
                "{} > {}",
                scenario.hops[link].points[0].name,
                scenario.hops[link + 1]
                    .points
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join("|")
            )
        };
        match *self {
            Incident::LossBurst { link, loss } => {
                format!(
                    "loss burst: {:.0} % lost on {}",
                    loss * 100.0,
                    link_name(link)
                )
            }
            Incident::DelaySpike { link, extra_us } => format!(
                "delay spike: +{:.0} ms queueing on {}",
                extra_us / 1000.0,
                link_name(link)
            ),
            Incident::Scan { probes_per_second } => {
                format!("port scan: 10.1.66.6 probing {probes_per_second} host ports a second")
            }
        }
    }
}

/// A device of the demo network and the loopback address it exports from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    pub address: IpAddr,
}

/// The path, first hop to last, in its quiet state.
pub fn topology(seed: u64) -> Scenario {
    let point = |name: &str, offset_us: f64, drift_ppm: f64| PointSpec {
        name: name.into(),
        clock_offset_us: offset_us,
        drift_ppm,
        telemetry_loss: 0.0,
    };
    let hop = |p: PointSpec| HopSpec {
        points: vec![p],
        tunnel: None,
    };
    let link = |delay_us: f64, jitter_us: f64| LinkSpec {
        delay_us,
        jitter_us,
        router: true,
        ..LinkSpec::default()
    };
    Scenario {
        name: "demo".into(),
        seed,
        start_ns: 0,
        duration_ms: (STEP_NS / 1_000_000) as u64,
        hops: vec![
            hop(point("branch-fw:lan", 0.0, 0.0)),
            hop(point("branch-fw:wan", 0.0, 0.0)),
            hop(point("isp-pe:ge-0/0/1", 250.0, 0.0)),
            HopSpec {
                points: vec![
                    point("core-a:et-1", -120.0, 0.0),
                    point("core-b:et-1", 60.0, 0.0),
                ],
                tunnel: None,
            },
            hop(point("dc-gw:eth0", 80.0, 0.0)),
            hop(point("dc-gw:eth1", 80.0, 0.0)),
        ],
        links: vec![
            // the firewall: source NAT from the branch LAN
            LinkSpec {
                nat: Some(NatSpec {
                    address: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10)),
                    port_base: 20_000,
                }),
                ..link(40.0, 20.0)
            },
            LinkSpec {
                loss: LOSSY_SEGMENT_LOSS,
                ..link(6_000.0, 400.0)
            },
            link(2_000.0, 100.0),
            link(1_500.0, 80.0),
            link(30.0, 10.0),
        ],
        traffic: Traffic {
            flows: 0,
            packets_per_flow: 24,
            reverse_ratio: 1.5,
            ipv6_share: 0.0,
            tcp_share: 0.75,
            hosts: 400,
            scan_probes: 0,
        },
    }
}

fn node_of(point: &str) -> &str {
    point.split(':').next().unwrap_or(point)
}

/// The scenario's devices (the nodes of its `node:interface` points), each
/// with an address of 127.0.0.0/8 to export from, in path order.
pub fn devices(scenario: &Scenario) -> Vec<Device> {
    let mut devices: Vec<Device> = Vec::new();
    for p in scenario.hops.iter().flat_map(|h| &h.points) {
        let node = node_of(&p.name);
        if !devices.iter().any(|d| d.name == node) {
            devices.push(Device {
                name: node.to_string(),
                address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11 + devices.len() as u8)),
            });
        }
    }
    devices
}

/// An interface of a demo device: one observation point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub device: IpAddr,
    /// The point's place among its device's points, from 1: what the
    /// device's flows carry in `in_if`.
    pub if_index: u32,
    /// The observation point (`branch-fw:wan`).
    pub point: String,
    /// The link's nominal speed: the provider's access link is the
    /// narrow one (25 Mb/s), the core's 1 Gb/s, the rest 100 Mb/s.
    pub speed_bps: u64,
}

/// Every point's interface, in the scenario's point order.
pub fn interfaces(scenario: &Scenario) -> Vec<Interface> {
    let devices = devices(scenario);
    let mut out: Vec<Interface> = Vec::new();
    for p in scenario.hops.iter().flat_map(|h| &h.points) {
        let node = node_of(&p.name);
        let device = devices
            .iter()
            .find(|d| d.name == node)
            .expect("every point's node is a device")
            .address;
        let if_index = 1 + out.iter().filter(|i| i.device == device).count() as u32;
        out.push(Interface {
            device,
            if_index,
            point: p.name.clone(),
            speed_bps: match node {
                "isp-pe" => 25_000_000,
                _ if p.name == "branch-fw:wan" => 25_000_000,
                "core-a" | "core-b" => 1_000_000_000,
                _ => 100_000_000,
            },
        });
    }
    out
}

/// Days of interface counters the demo starts with.
pub const HISTORY_DAYS: i64 = 42;

/// What an SNMP poller would have read of the demo's interfaces every 5
/// minutes over the `days` before `until_ns`: a daily cycle peaking in the
/// afternoon, lighter weekends, and traffic growing every day, so that the
/// capacity page has weeks to forecast from: the provider's 25 Mb/s link,
/// at 60 % at its daily peak now, is forecast to reach 80 % in about two
/// months; the other links stay far from theirs.
pub fn counter_history(
    scenario: &Scenario,
    until_ns: i64,
    days: i64,
) -> Vec<hopscope_schema::InterfaceCounterRecord> {
    const DAY_NS: i64 = 86_400_000_000_000;
    const STEP_NS: i64 = 300_000_000_000;
    let interfaces = interfaces(scenario);
    let start = until_ns - days * DAY_NS;
    let mut octets: Vec<(u64, u64)> = vec![(1 << 30, 1 << 28); interfaces.len()];
    let mut rows = Vec::new();
    let mut t = start - start.rem_euclid(STEP_NS);
    let mut step = 0u64;
    while t < until_ns {
        let days_before = (until_ns - t) as f64 / DAY_NS as f64;
        let hour = (t.rem_euclid(DAY_NS)) as f64 / 3.6e12;
        let daily = 0.3 + 0.7 * (0.5 + 0.5 * ((hour - 15.0) / 24.0 * std::f64::consts::TAU).cos());
        let weekend = (t.div_euclid(DAY_NS) + 3).rem_euclid(7) >= 5;
        for (k, (i, counter)) in interfaces.iter().zip(&mut octets).enumerate() {
            // today's peak: 60 % of the narrow links, 4 % of the others,
            // grown by a 120th a day
            let share = if i.speed_bps <= 25_000_000 {
                0.60
            } else {
                0.04
            };
            let peak = share * i.speed_bps as f64 / (1.0 + days_before / 120.0);
            let noise = 0.92 + 0.16 * unit(step.wrapping_mul(31).wrapping_add(k as u64));
            let bps = peak * daily * noise * if weekend { 0.55 } else { 1.0 };
            counter.0 += (bps / 8.0 * (STEP_NS as f64 / 1e9)) as u64;
            counter.1 += (0.4 * bps / 8.0 * (STEP_NS as f64 / 1e9)) as u64;
            rows.push(hopscope_schema::InterfaceCounterRecord {
                time_received_ns: Some(t),
                sampler_address: Some(hopscope_schema::ip_to_mapped(i.device)),
                if_index: Some(i.if_index),
                if_speed: Some(i.speed_bps),
                if_status: Some(3),
                in_octets: Some(counter.0),
                out_octets: Some(counter.1),
                counter_source: Some(hopscope_schema::COUNTER_SOURCE_SNMP),
                ..hopscope_schema::InterfaceCounterRecord::default()
            });
        }
        t += STEP_NS;
        step += 1;
    }
    rows
}

/// A deterministic number in [0, 1) from `k`.
fn unit(k: u64) -> f64 {
    let x = k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((x ^ (x >> 29)) >> 11) as f64 / (1u64 << 53) as f64
}

/// The demo network: the scenario and a metering process per point.
#[derive(Debug)]
pub struct DemoNetwork {
    config: DemoConfig,
    scenario: Scenario,
    /// One per observation point, in the scenario's point order.
    processes: Vec<MeteringProcess>,
    /// Each process's interface index, in the same order.
    if_indexes: Vec<u32>,
    devices: Vec<Device>,
    steps: u64,
}

/// What one step did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    pub packets: u64,
    pub incidents: Vec<Incident>,
}

impl DemoNetwork {
    /// Opens an exporter per observation point, each device sending from
    /// its own address of 127.0.0.0/8.
    pub fn new(config: DemoConfig) -> Result<Self, ExportError> {
        let scenario = topology(config.seed);
        let devices = devices(&scenario);
        let mut processes = Vec::new();
        let target = ExportTarget::Udp(config.collector);
        for p in scenario.hops.iter().flat_map(|h| &h.points) {
            let device = devices
                .iter()
                .find(|d| d.name == node_of(&p.name))
                .expect("every point's node is a device");
            let source = config
                .collector
                .ip()
                .is_loopback()
                .then_some(device.address);
            let meter = Meter::new(MeterConfig {
                observation_point_id: p.id(),
                domain: processes.len() as u32 + 1,
                cache: CacheConfig {
                    // the demo's flows are short: export them soon after they end
                    idle_timeout_ns: 2_000_000_000,
                    active_timeout_ns: 10_000_000_000,
                    ..CacheConfig::default()
                },
                // the firewall rewrites addresses and ports: hash what it leaves alone
                selection: Some(SelectorConfig {
                    function: HashFunction::Bob,
                    profile: Profile::NatCrossing,
                    population: config.select_one_in.max(1),
                    ..SelectorConfig::default()
                }),
                decapsulate: true,
            });
            processes.push(MeteringProcess {
                meter,
                exporter: Exporter::open_from(&target, processes.len() as u32 + 1, source)?,
                observation_point: p.name.clone(),
                observation_point_id: p.id(),
                // each simulated device keeps its own, erring clock
                clock: None,
            });
        }
        let if_indexes = interfaces(&scenario).iter().map(|i| i.if_index).collect();
        Ok(Self {
            config,
            scenario,
            processes,
            if_indexes,
            devices,
            steps: 0,
        })
    }

    /// The devices and the addresses they export from (for exporter names).
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// The quiet scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Simulates the second before `now_ns`, meters it at every point and
    /// exports what the meters have ready.
    pub fn step(&mut self, now_ns: i64) -> Result<Step, ProcessError> {
        let incidents = match self.config.incidents {
            true => Incident::active_at(self.steps),
            false => Vec::new(),
        };
        let mut scenario = self.scenario.clone();
        // one mixed seed per second: seeds that differ by a multiple of
        // SplitMix's increment would replay the same flows shifted by a draw
        scenario.seed =
            hopscope_simulate::Rng::new(self.config.seed.wrapping_add(self.steps)).next_u64();
        scenario.start_ns = now_ns - STEP_NS;
        scenario.traffic.flows = self.config.flows_per_second;
        // the firewall hands out ports in turn, as NATs do, so a port comes
        // back only after minutes (and a flow's record ends when it does)
        if let Some(nat) = &mut scenario.links[0].nat {
            let turn = self.steps * u64::from(self.config.flows_per_second);
            nat.port_base = 10_000 + (turn % 50_000) as u16;
        }
        for incident in &incidents {
            match *incident {
                Incident::LossBurst { link, loss } => scenario.links[link].loss = loss,
                Incident::DelaySpike { link, extra_us } => {
                    scenario.links[link].jitter_us += extra_us
                }
                Incident::Scan { probes_per_second } => {
                    scenario.traffic.scan_probes = probes_per_second
                }
            }
        }
        let run = simulate(&scenario).expect("the demo topology is valid");
        let now_secs = (now_ns / 1_000_000_000) as u32;
        // names and rates before the records they describe, then every ten
        // seconds (UDP may lose them)
        if self.steps.is_multiple_of(10) {
            for process in &mut self.processes {
                process.export_options(0, now_secs)?;
            }
        }
        // the firewall reports its translations (RFC 8158 NAT44 session
        // events) from its WAN side, as NAT devices do
        if !run.nat_bindings.is_empty() {
            let events = hopscope_simulate::nat_event_batch(&run.nat_bindings)?;
            let wan = &mut self.processes[1];
            wan.exporter.export_flows(&events, now_secs)?;
            wan.exporter.flush()?;
        }
        let interfaces = self.if_indexes.iter().copied();
        for ((process, capture), if_index) in
            self.processes.iter_mut().zip(&run.captures).zip(interfaces)
        {
            for f in &capture.frames {
                process.meter.observe(&Frame {
                    interface: if_index,
                    ..f.as_frame()
                });
            }
            process.meter.tick(now_ns);
            process.export(now_secs)?;
        }
        self.steps += 1;
        Ok(Step {
            packets: run.truth.packets,
            incidents,
        })
    }

    /// Exports every flow still in the caches.
    pub fn finish(&mut self, now_ns: i64) -> Result<(), ProcessError> {
        let now_secs = (now_ns / 1_000_000_000) as u32;
        for p in &mut self.processes {
            p.meter.finish();
            p.export(now_secs)?;
            p.export_options(0, now_secs)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    #[test]
    fn incidents_follow_the_schedule() {
        assert!(Incident::active_at(0).is_empty());
        assert!(Incident::active_at(59).is_empty());
        assert!(matches!(
            Incident::active_at(60)[..],
            [Incident::LossBurst { .. }]
        ));
        assert!(matches!(
            Incident::active_at(CYCLE_SECONDS + 140)[..],
            [Incident::Scan { .. }]
        ));
    }

    #[test]
    fn the_lossy_segment_is_in_the_topology() {
        let s = topology(1);
        let names: Vec<&str> = s.hops.iter().map(|h| h.points[0].name.as_str()).collect();
        let at = names.iter().position(|n| *n == LOSSY_SEGMENT.0).unwrap();
        assert_eq!(names[at + 1], LOSSY_SEGMENT.1);
        assert_eq!(s.links[at].loss, LOSSY_SEGMENT_LOSS);
    }

    #[test]
    fn devices_export_ipfix_from_their_own_addresses() {
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut config = DemoConfig::new(collector.local_addr().unwrap());
        config.flows_per_second = 20;
        let mut demo = DemoNetwork::new(config).unwrap();
        assert_eq!(demo.devices().len(), 5);
        let start = 1_790_000_000_000_000_000;
        let step = demo.step(start).unwrap();
        assert!(step.packets > 0);
        demo.finish(start + STEP_NS).unwrap();
        let mut sources = std::collections::BTreeSet::new();
        let mut buf = [0u8; 65536];
        while let Ok((n, from)) = collector.recv_from(&mut buf) {
            // IPFIX version 10 in every datagram
            assert_eq!(&buf[..2], &[0, 10], "{n} bytes from {from}");
            sources.insert(from.ip());
            if sources.len() == 5 {
                break;
            }
        }
        let expected: std::collections::BTreeSet<IpAddr> =
            demo.devices().iter().map(|d| d.address).collect();
        assert_eq!(sources, expected);
    }
}
