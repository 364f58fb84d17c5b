//! Scenarios and their simulation.

use serde::{Deserialize, Serialize};

use crate::frames::{Header, build_frame, encapsulate};
use crate::rng::Rng;

/// A path, its points, its faults and its traffic.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub seed: u64,
    /// Unix time of the first packet.
    #[serde(default = "default_start")]
    pub start_ns: i64,
    pub duration_ms: u64,
    /// Positions on the path, first to last; each one point or an ECMP cluster.
    pub hops: Vec<HopSpec>,
    /// `links[i]` joins `hops[i]` and `hops[i + 1]`.
    pub links: Vec<LinkSpec>,
    pub traffic: Traffic,
}

fn default_start() -> i64 {
    1_790_000_000_000_000_000
}

/// One position on the path.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HopSpec {
    /// One point, or several ECMP members (a flow takes one by its hash).
    pub points: Vec<PointSpec>,
    /// The hop is inside a tunnel: its points capture the packets
    /// encapsulated (GRE or VXLAN between two tunnel endpoints), and
    /// routers between hops inside one tunnel decrement the outer TTL only.
    #[serde(default)]
    pub tunnel: Option<TunnelSpec>,
}

/// A tunnel's encapsulation and endpoints (the forward direction's outer
/// source and destination).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelSpec {
    /// `gre` or `vxlan`.
    pub kind: String,
    pub from: std::net::IpAddr,
    pub to: std::net::IpAddr,
}

/// An observation point.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointSpec {
    /// `node:interface`.
    pub name: String,
    /// Clock error at the start, microseconds (positive: ahead).
    #[serde(default)]
    pub clock_offset_us: f64,
    #[serde(default)]
    pub drift_ppm: f64,
    /// Probability that one of its reports never reaches the collector.
    #[serde(default)]
    pub telemetry_loss: f64,
}

impl PointSpec {
    /// The observation point id, derived from the name as `hopscope probe` does.
    pub fn id(&self) -> u64 {
        hopscope_probe::observation_point_id(&self.name)
    }

    /// This point's clock at true time `t`.
    fn clock(&self, t_ns: i64, start_ns: i64) -> i64 {
        let offset =
            self.clock_offset_us * 1_000.0 + self.drift_ppm * 1e-6 * (t_ns - start_ns) as f64;
        t_ns + offset.round() as i64
    }
}

/// What happens between two hops.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// Minimum one-way delay, microseconds (the same both ways).
    pub delay_us: f64,
    /// Mean of the exponential queueing delay added to it.
    #[serde(default)]
    pub jitter_us: f64,
    /// Probability that a packet is dropped crossing this link.
    #[serde(default)]
    pub loss: f64,
    /// A router forwards across it: TTL decremented.
    #[serde(default)]
    pub router: bool,
    /// Source NAT of forward packets crossing it.
    #[serde(default)]
    pub nat: Option<NatSpec>,
}

/// Source NAT: forward packets leave with this address and a port from
/// `port_base` up; replies are translated back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatSpec {
    pub address: std::net::IpAddr,
    pub port_base: u16,
}

/// The traffic mix: flows between clients and servers, packets spread
/// uniformly over the duration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    pub flows: u32,
    pub packets_per_flow: u32,
    /// Reply packets per request packet.
    #[serde(default = "default_reverse")]
    pub reverse_ratio: f64,
    #[serde(default)]
    pub ipv6_share: f64,
    /// Share of TCP flows (the rest UDP).
    #[serde(default = "default_tcp")]
    pub tcp_share: f64,
    /// Clients drawn from a pool of this many hosts (and servers from a
    /// quarter as many), a few of them much busier than the rest, as real
    /// top-talker lists look; 0 draws every flow's hosts afresh.
    #[serde(default)]
    pub hosts: u32,
    /// One host probing this many (server, port) pairs with a single TCP
    /// SYN each, never answered: a port scan crossing the path.
    #[serde(default)]
    pub scan_probes: u32,
}

fn default_reverse() -> f64 {
    1.0
}
fn default_tcp() -> f64 {
    0.7
}

/// A frame as one point captured it, stamped by that point's clock.
#[derive(Debug, Clone)]
pub struct SimFrame {
    pub time_ns: i64,
    pub data: Vec<u8>,
}

/// Everything one point saw.
#[derive(Debug, Clone)]
pub struct Capture {
    pub point: PointSpec,
    pub frames: Vec<SimFrame>,
}

/// What really happened on one link, in one direction.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkTruth {
    /// Packets that entered the link.
    pub sent: u64,
    pub lost: u64,
    /// True one-way delays of the packets that crossed, nanoseconds.
    #[serde(skip)]
    pub delays_ns: Vec<i64>,
}

/// A point's true clock.
#[derive(Debug, Clone, Serialize)]
pub struct PointTruth {
    pub id: u64,
    pub name: String,
    pub offset_at_start_ns: f64,
    pub drift_ppm: f64,
}

/// The true answer.
#[derive(Debug, Clone, Serialize)]
pub struct Truth {
    /// Per link, packets going from the first hop towards the last.
    pub forward: Vec<LinkTruth>,
    /// Per link (same index), replies going back.
    pub reverse: Vec<LinkTruth>,
    pub points: Vec<PointTruth>,
    pub packets: u64,
}

/// A simulated run.
#[derive(Debug, Clone)]
pub struct Run {
    pub captures: Vec<Capture>,
    pub truth: Truth,
    /// What each NAT would report (RFC 8158 session creation), in time order.
    pub nat_bindings: Vec<NatBinding>,
}

/// A translation a NAT made, as its session-creation event would say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatBinding {
    /// True time of the first packet translated.
    pub time_ns: i64,
    /// (source, source port, destination, destination port, protocol) before and after.
    pub inside: ([u8; 16], u16, [u8; 16], u16, u8),
    pub outside: ([u8; 16], u16, [u8; 16], u16, u8),
}

#[derive(Debug, Clone, Copy)]
struct Flow {
    client: [u8; 16],
    server: [u8; 16],
    v6: bool,
    client_port: u16,
    server_port: u16,
    proto: u8,
    /// The NAT port this flow is translated to.
    nat_port: u16,
    /// ECMP choice seed.
    hash: u64,
    /// Packets each way.
    forward_packets: u64,
    reverse_packets: u64,
}

const TCP_SYN: u8 = hopscope_schema::tcp_flags::SYN as u8;
const TCP_PSH: u8 = hopscope_schema::tcp_flags::PSH as u8;
const TCP_ACK: u8 = hopscope_schema::tcp_flags::ACK as u8;

/// Runs a scenario.
pub fn simulate(s: &Scenario) -> Result<Run, String> {
    if s.hops.is_empty() || s.hops.iter().any(|h| h.points.is_empty()) {
        return Err("every hop needs at least one point".into());
    }
    if s.links.len() + 1 != s.hops.len() {
        return Err(format!(
            "{} hops need {} links, not {}",
            s.hops.len(),
            s.hops.len() - 1,
            s.links.len()
        ));
    }
    let mut rng = Rng::new(s.seed);
    let t = &s.traffic;
    let forward_packets = u64::from(t.packets_per_flow);
    let reverse_packets = (forward_packets as f64 * t.reverse_ratio).round() as u64;
    let mut flows: Vec<Flow> = Vec::with_capacity((t.flows + t.scan_probes) as usize);
    for _ in 0..t.flows {
        let v6 = rng.chance(t.ipv6_share);
        let client = host(&mut rng, 1, v6, t.hosts);
        let server = host(&mut rng, 2, v6, t.hosts / 4);
        let client_port = 20_000 + (rng.below(40_000) as u16);
        let pick = rng.below(SERVICES.len() as u64) as usize;
        let proto = if rng.chance(t.tcp_share) { 6 } else { 17 };
        flows.push(Flow {
            client,
            server,
            v6,
            client_port,
            server_port: service(proto, pick),
            proto,
            nat_port: flows.len() as u16,
            hash: rng.next_u64(),
            forward_packets,
            reverse_packets,
        });
        let f = flows.last_mut().expect("just pushed");
        // logins go to one of the client's own two servers, not to any:
        // an operator reaches the same machines again (no lateral movement)
        if f.server_port == 22 {
            let own = f
                .client
                .iter()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)));
            f.server = address(2, v6, (own + f.hash % 2) % u64::from((t.hosts / 4).max(1)));
        }
    }
    let scanner = hopscope_schema::ipv4_mapped([10, 1, 66, 6]);
    for _ in 0..t.scan_probes {
        flows.push(Flow {
            client: scanner,
            server: host(&mut rng, 2, false, t.hosts / 4),
            v6: false,
            client_port: 40_000 + (rng.below(20_000) as u16),
            server_port: 1 + rng.below(1024) as u16,
            proto: 6,
            nat_port: flows.len() as u16,
            hash: rng.next_u64(),
            forward_packets: 1,
            reverse_packets: 0,
        });
    }

    // every packet: (true send time, flow, reverse?)
    let duration_ns = (s.duration_ms * 1_000_000) as i64;
    let mut packets: Vec<(i64, u32, bool)> = Vec::new();
    for (i, flow) in flows.iter().enumerate() {
        for reverse in [false, true] {
            let n = if reverse {
                flow.reverse_packets
            } else {
                flow.forward_packets
            };
            for _ in 0..n {
                let at = s.start_ns + rng.below(duration_ns as u64) as i64;
                packets.push((at, i as u32, reverse));
            }
        }
    }
    packets.sort_unstable();

    let hops = s.hops.len();
    let mut captures: Vec<Vec<Capture>> = s
        .hops
        .iter()
        .map(|h| {
            h.points
                .iter()
                .map(|p| Capture {
                    point: p.clone(),
                    frames: Vec::new(),
                })
                .collect()
        })
        .collect();
    let mut truth = Truth {
        forward: vec![LinkTruth::default(); s.links.len()],
        reverse: vec![LinkTruth::default(); s.links.len()],
        points: s
            .hops
            .iter()
            .flat_map(|h| &h.points)
            .map(|p| PointTruth {
                id: p.id(),
                name: p.name.clone(),
                offset_at_start_ns: p.clock_offset_us * 1_000.0,
                drift_ppm: p.drift_ppm,
            })
            .collect(),
        packets: packets.len() as u64,
    };
    let mut counters = vec![(0u16, 0u32); flows.len()];
    // packets sent so far by each flow, each way: the first of each way
    // opens the connection (SYN, SYN-ACK)
    let mut sent = vec![[0u32; 2]; flows.len()];
    let mut nat_bindings = Vec::new();
    // (flow, link) pairs already bound
    let mut bound = std::collections::HashSet::new();
    let mut payload = Vec::with_capacity(512);
    for &(t0, fi, reverse) in &packets {
        let flow = &flows[fi as usize];
        let len = 40 + rng.below(400) as usize;
        payload.clear();
        payload.extend((0..len).map(|_| rng.next_u64() as u8));
        let (id, seq) = &mut counters[fi as usize];
        *id = id.wrapping_add(1);
        *seq = seq.wrapping_add(len as u32);
        let opening = sent[fi as usize][usize::from(reverse)] == 0;
        sent[fi as usize][usize::from(reverse)] += 1;
        let mut h = Header {
            src: if reverse { flow.server } else { flow.client },
            dst: if reverse { flow.client } else { flow.server },
            v6: flow.v6,
            src_port: if reverse {
                flow.server_port
            } else {
                flow.client_port
            },
            dst_port: if reverse {
                flow.client_port
            } else {
                flow.server_port
            },
            proto: flow.proto,
            ttl: 64,
            ip_id: *id ^ if reverse { 0x8000 } else { 0 },
            tcp_seq: *seq,
            tcp_flags: match (opening, reverse) {
                (true, false) => TCP_SYN,
                (true, true) => TCP_SYN | TCP_ACK,
                (false, _) => TCP_PSH | TCP_ACK,
            },
        };
        // a reply starts behind every NAT it will cross: addressed to the translation
        if reverse {
            for link in &s.links {
                if let Some(nat) = &link.nat {
                    h.dst = hopscope_schema::ip_to_mapped(nat.address);
                    h.dst_port = flow.nat_port.wrapping_add(nat.port_base);
                }
            }
        }
        let order: Vec<usize> = if reverse {
            (0..hops).rev().collect()
        } else {
            (0..hops).collect()
        };
        let mut t = t0 as f64;
        let mut outer_ttl = 64u8;
        for (step, &hop) in order.iter().enumerate() {
            if step > 0 {
                let link_index = if reverse { hop } else { hop - 1 };
                let link = &s.links[link_index];
                let lt = if reverse {
                    &mut truth.reverse[link_index]
                } else {
                    &mut truth.forward[link_index]
                };
                lt.sent += 1;
                if rng.chance(link.loss) {
                    lt.lost += 1;
                    break;
                }
                let d = link.delay_us * 1_000.0 + rng.exponential(link.jitter_us * 1_000.0);
                lt.delays_ns.push(d.round() as i64);
                t += d;
                let (here, before) = (&s.hops[hop].tunnel, &s.hops[order[step - 1]].tunnel);
                if link.router {
                    match (here, before) {
                        // an underlay router: the outer header is its business
                        (Some(a), Some(b)) if a == b => outer_ttl = outer_ttl.saturating_sub(1),
                        _ => h.ttl = h.ttl.saturating_sub(1),
                    }
                }
                if let Some(nat) = &link.nat {
                    let outside = hopscope_schema::ip_to_mapped(nat.address);
                    if !reverse && bound.insert((fi, link_index)) {
                        let port = flow.nat_port.wrapping_add(nat.port_base);
                        nat_bindings.push(NatBinding {
                            time_ns: t.round() as i64,
                            inside: (h.src, h.src_port, h.dst, h.dst_port, h.proto),
                            outside: (outside, port, h.dst, h.dst_port, h.proto),
                        });
                    }
                    if reverse {
                        h.dst = flow.client;
                        h.dst_port = flow.client_port;
                    } else {
                        h.src = outside;
                        h.src_port = flow.nat_port.wrapping_add(nat.port_base);
                    }
                }
            }
            let members = &mut captures[hop];
            let m = (flow.hash % members.len() as u64) as usize;
            let capture = &mut members[m];
            let time_ns = capture.point.clock(t.round() as i64, s.start_ns);
            let frame = build_frame(&h, &payload);
            let data = match &s.hops[hop].tunnel {
                Some(tunnel) => encapsulate(&frame, tunnel, reverse, outer_ttl, h.ip_id)?,
                None => frame,
            };
            capture.frames.push(SimFrame { time_ns, data });
        }
    }
    let mut captures: Vec<Capture> = captures.into_iter().flatten().collect();
    for c in &mut captures {
        c.frames.sort_by_key(|f| f.time_ns);
    }
    nat_bindings.sort_by_key(|b| b.time_ns);
    Ok(Run {
        captures,
        truth,
        nat_bindings,
    })
}

/// Server ports the traffic mix draws from, by protocol: web, iperf3,
/// SSH, databases; DNS, NTP, QUIC and iperf3 over UDP.
const SERVICES: [u16; 8] = [443, 80, 5201, 8080, 22, 3306, 6379, 8443];
const UDP_SERVICES: [u16; 4] = [53, 123, 443, 5201];

/// The server port of the `pick`th service (a draw below the number of
/// TCP services) of protocol `proto`: TCP to 53 or UDP to 22 look like
/// nothing a network carries.
fn service(proto: u8, pick: usize) -> u16 {
    match proto {
        6 => SERVICES[pick % SERVICES.len()],
        _ => UDP_SERVICES[pick % UDP_SERVICES.len()],
    }
}

/// A host of network `10.net.0.0/16` (or `2001:db8:0:net::/64`): from a
/// pool of `pool` hosts when `pool > 0`, the low numbers far busier (the
/// square of a uniform draw), else anywhere in the network.
fn host(rng: &mut Rng, net: u8, v6: bool, pool: u32) -> [u8; 16] {
    let n = if pool > 0 {
        (rng.unit() * rng.unit() * f64::from(pool)) as u64
    } else {
        rng.below(250 * 250)
    };
    address(net, v6, n)
}

/// Host number `n` of network `10.net.0.0/16` (or `2001:db8:0:net::/64`).
fn address(net: u8, v6: bool, n: u64) -> [u8; 16] {
    let (x, y) = ((n / 250) as u8, (n % 250) as u8 + 1);
    if v6 {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        a[5] = net;
        a[14] = x;
        a[15] = y;
        a
    } else {
        hopscope_schema::ipv4_mapped([10, net, x, y])
    }
}

/// Built-in scenarios, for `hopscope simulate` and the tests.
impl Scenario {
    /// A chain A – R1 – R2 – R3 – B with a probe on both interfaces of each
    /// router, as the recorded lab run has.
    pub fn chain(seed: u64) -> Scenario {
        let point = |name: &str| HopSpec {
            points: vec![PointSpec {
                name: name.to_string(),
                clock_offset_us: 0.0,
                drift_ppm: 0.0,
                telemetry_loss: 0.0,
            }],
            tunnel: None,
        };
        let wire = |us: f64| LinkSpec {
            delay_us: us,
            jitter_us: us / 4.0,
            ..LinkSpec::default()
        };
        let router = LinkSpec {
            delay_us: 5.0,
            jitter_us: 10.0,
            router: true,
            ..LinkSpec::default()
        };
        Scenario {
            name: "chain".into(),
            seed,
            start_ns: default_start(),
            duration_ms: 10_000,
            hops: [
                "r1:r1-a", "r1:r1-r2", "r2:r2-r1", "r2:r2-r3", "r3:r3-r2", "r3:r3-b",
            ]
            .into_iter()
            .map(point)
            .collect(),
            links: vec![
                router.clone(),
                wire(300.0),
                router.clone(),
                wire(250.0),
                router,
            ],
            traffic: Traffic {
                flows: 200,
                packets_per_flow: 60,
                reverse_ratio: 1.0,
                ipv6_share: 0.3,
                tcp_share: 0.7,
                hosts: 0,
                scan_probes: 0,
            },
        }
    }

    /// An ECMP diamond: one ingress, two parallel routers, one egress.
    pub fn diamond(seed: u64) -> Scenario {
        let p = |name: &str| PointSpec {
            name: name.to_string(),
            clock_offset_us: 0.0,
            drift_ppm: 0.0,
            telemetry_loss: 0.0,
        };
        let link = |us: f64| LinkSpec {
            delay_us: us,
            jitter_us: us / 5.0,
            router: true,
            ..LinkSpec::default()
        };
        Scenario {
            name: "diamond".into(),
            seed,
            start_ns: default_start(),
            duration_ms: 10_000,
            hops: vec![
                HopSpec {
                    points: vec![p("edge1:up")],
                    tunnel: None,
                },
                HopSpec {
                    points: vec![p("spine1:in"), p("spine2:in")],
                    tunnel: None,
                },
                HopSpec {
                    points: vec![p("edge2:down")],
                    tunnel: None,
                },
            ],
            links: vec![link(200.0), link(150.0)],
            traffic: Traffic {
                flows: 300,
                packets_per_flow: 40,
                reverse_ratio: 1.0,
                ipv6_share: 0.0,
                tcp_share: 0.7,
                hosts: 0,
                scan_probes: 0,
            },
        }
    }

    /// A path through a source NAT (a firewall between inside and outside).
    pub fn nat(seed: u64) -> Scenario {
        let mut s = Scenario::chain(seed);
        s.name = "nat".into();
        s.traffic.ipv6_share = 0.0;
        s.links[2].nat = Some(NatSpec {
            address: std::net::IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 7)),
            port_base: 30_000,
        });
        s
    }

    /// The chain with a GRE tunnel from R1 to R3: the points between them
    /// (R1's and R3's tunnel-side interfaces and R2, an underlay router)
    /// capture the packets encapsulated.
    pub fn tunnel(seed: u64) -> Scenario {
        let mut s = Scenario::chain(seed);
        s.name = "tunnel".into();
        let tunnel = TunnelSpec {
            kind: "gre".into(),
            from: std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)),
            to: std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 3)),
        };
        for hop in &mut s.hops[1..5] {
            hop.tunnel = Some(tunnel.clone());
        }
        s
    }

    /// The named built-in scenario.
    pub fn builtin(name: &str, seed: u64) -> Option<Scenario> {
        match name {
            "chain" => Some(Scenario::chain(seed)),
            "diamond" => Some(Scenario::diamond(seed)),
            "nat" => Some(Scenario::nat(seed)),
            "tunnel" => Some(Scenario::tunnel(seed)),
            _ => None,
        }
    }
}
