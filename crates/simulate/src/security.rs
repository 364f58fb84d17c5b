//! Labelled security scenarios at the level of flow records: ten minutes
//! of a network's ordinary traffic, benign traffic that looks like an
//! attack (a busy server, a backup job, a monitoring system polling many
//! hosts, a NAT gateway with many clients), and attacks of each kind,
//! with the truth of which sources and destinations are attacking or
//! attacked. Detections are scored against them (precision and recall per
//! detection).
//!
//! Records are what an exporter sends for each connection, one per
//! direction (or cut by the active timeout), from one or two observation
//! points, optionally with sampling.

use hopscope_schema::{FlowBatchBuilder, FlowRecord, ipv4_mapped};

use crate::Rng;

const SECOND: i64 = 1_000_000_000;
use hopscope_schema::tcp_flags::{ACK, FIN, PSH, RST, SYN, URG};

/// What an attack is, as detections name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attack {
    /// `scan`, `flood`, `blocklist`, `beacon` or `lateral`.
    pub rule: &'static str,
    /// The scanner, the flooded destination, the list entry (`list:addr`).
    pub subject: String,
    /// What it was, for reports: `syn scan`, `udp flood`...
    pub kind: &'static str,
}

/// A scenario's records and its truth.
#[derive(Debug)]
pub struct SecurityRun {
    pub records: Vec<FlowRecord>,
    pub attacks: Vec<Attack>,
    /// The benign look-alikes it holds, for reports.
    pub lookalikes: Vec<&'static str>,
    /// The address list's entries (one per line) its blocklist attack uses.
    pub blocklist: Vec<String>,
    pub start_ns: i64,
    pub end_ns: i64,
}

impl SecurityRun {
    /// The records in order of receive time, as Arrow batches of `per`.
    pub fn batches(&self, per: usize) -> Vec<arrow_array::RecordBatch> {
        self.records
            .chunks(per.max(1))
            .map(|c| {
                let mut b = FlowBatchBuilder::with_capacity(c.len());
                for r in c {
                    b.append(r);
                }
                b.finish().expect("the flow schema")
            })
            .collect()
    }
}

/// The kinds of attacks and look-alikes a campaign draws from.
pub const ATTACKS: &[&str] = &[
    "syn scan (horizontal)",
    "syn scan (vertical)",
    "fin/null/xmas scan",
    "udp scan",
    "ping sweep",
    "syn flood",
    "udp flood",
    "blocklisted peer",
    "beacon",
    "lateral movement",
];
pub const LOOKALIKES: &[&str] = &[
    "busy server",
    "backup job",
    "monitoring poller",
    "nat gateway",
    "failed connections",
    "web browsing",
    "admin jump host",
];

/// How long lateral movement learns the peers hosts reach in these
/// scenarios (its attacks come after it).
pub const LATERAL_LEARNING_S: f64 = 180.0;

struct Gen {
    rng: Rng,
    start_ns: i64,
    records: Vec<FlowRecord>,
    /// One in this many packets sampled (1: none).
    sampling: u64,
    points: u64,
}

impl Gen {
    fn addr(&mut self, net: [u8; 2], pool: u32) -> [u8; 16] {
        let n = self.rng.below(u64::from(pool.max(1))) as u32;
        ipv4_mapped([net[0], net[1], (n / 250) as u8, (n % 250 + 1) as u8])
    }

    fn at(&mut self, from_s: f64, to_s: f64) -> i64 {
        self.start_ns + ((from_s + self.rng.unit() * (to_s - from_s)) * 1e9) as i64
    }

    /// One direction of a connection, at every point, sampled as set.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        start_ns: i64,
        end_ns: i64,
        src: [u8; 16],
        dst: [u8; 16],
        ports: (u16, u16),
        proto: u8,
        packets: u64,
        bytes: u64,
        flags: u16,
        icmp_type: Option<u8>,
    ) {
        // sampled: each packet kept with probability 1/N
        let seen = if self.sampling > 1 {
            (0..packets.min(10_000))
                .filter(|_| self.rng.below(self.sampling) == 0)
                .count() as u64
                * (packets / 10_000).max(1)
        } else {
            packets
        };
        if seen == 0 {
            return;
        }
        for point in 0..self.points {
            // a point downstream sees it a little later
            let delay = (point as i64) * 2_000_000;
            self.records.push(FlowRecord {
                time_received_ns: Some(end_ns + delay + SECOND),
                flow_type: Some(4),
                sampler_address: Some(ipv4_mapped([127, 0, 0, 11 + point as u8])),
                observation_point_id: Some(100 + point),
                time_flow_start_ns: Some(start_ns + delay),
                time_flow_end_ns: Some(end_ns + delay),
                ip_version: Some(4),
                src_addr: Some(src),
                dst_addr: Some(dst),
                src_port: Some(ports.0),
                dst_port: Some(ports.1),
                proto: Some(proto),
                packets: Some(seen),
                bytes: Some(bytes * seen / packets.max(1)),
                sampling_rate: Some(self.sampling),
                sampling_rate_source: Some(if self.sampling > 1 { 2 } else { 0 }),
                tcp_flags: (proto == 6).then_some(flags),
                icmp_type,
                flow_end_reason: Some(1),
                ..FlowRecord::default()
            });
        }
    }

    /// An established TCP connection (both directions) or a UDP exchange.
    fn connection(
        &mut self,
        at_ns: i64,
        client: [u8; 16],
        server: [u8; 16],
        port: u16,
        proto: u8,
        packets: u64,
    ) {
        let cport = 20_000 + self.rng.below(40_000) as u16;
        let end = at_ns + (self.rng.unit() * 5e9) as i64;
        let f = SYN | ACK | PSH | FIN;
        self.record(
            at_ns,
            end,
            client,
            server,
            (cport, port),
            proto,
            packets,
            packets * 120,
            f,
            None,
        );
        self.record(
            at_ns,
            end,
            server,
            client,
            (port, cport),
            proto,
            packets,
            packets * 900,
            f,
            None,
        );
    }
}

/// One labelled scenario of ten minutes: background traffic, the given
/// look-alikes and attacks, from `points` observation points, sampled one
/// in `sampling` packets.
pub fn security_scenario(
    seed: u64,
    start_ns: i64,
    attacks: &[&'static str],
    lookalikes: &[&'static str],
    points: u64,
    sampling: u64,
) -> SecurityRun {
    let mut g = Gen {
        rng: Rng::new(seed),
        start_ns,
        records: Vec::new(),
        sampling,
        points,
    };
    let minutes = 10.0;
    let span = minutes * 60.0;
    // ordinary traffic: 200 clients, 40 servers, web, DNS, SSH, pings
    for _ in 0..6_000 {
        let at = g.at(0.0, span);
        let client = g.addr([10, 1], 200);
        let server = g.addr([10, 2], 40);
        match g.rng.below(10) {
            0..=5 => {
                let p = [443u16, 80, 8080, 22][g.rng.below(4) as usize];
                let n = 5 + g.rng.below(200);
                // a client logs into its own two servers, not any
                let server = if p == 22 {
                    let own = (u32::from(client[15]) + (at / SECOND % 2) as u32) % 40;
                    ipv4_mapped([10, 2, 0, own as u8 + 1])
                } else {
                    server
                };
                g.connection(at, client, server, p, 6, n);
            }
            6..=8 => g.connection(at, client, server, 53, 17, 1),
            _ => {
                g.record(at, at, client, server, (0, 0x0800), 1, 3, 252, 0, Some(8));
                g.record(at, at, server, client, (0, 0), 1, 3, 252, 0, Some(0));
            }
        }
    }
    let mut truth = Vec::new();
    for &kind in lookalikes {
        match kind {
            // 3,000 clients a minute on one web server
            "busy server" => {
                let server = ipv4_mapped([10, 2, 200, 1]);
                for _ in 0..30_000 {
                    let at = g.at(0.0, span);
                    let client = g.addr([10, 1], 3_000);
                    g.connection(at, client, server, 443, 6, 10);
                }
            }
            // 800 Mb/s for ten minutes, cut by a 60 s active timeout
            "backup job" => {
                let (c, s) = (ipv4_mapped([10, 1, 200, 9]), ipv4_mapped([10, 2, 200, 9]));
                for minute in 0..10 {
                    let at = start_ns + minute * 60 * SECOND;
                    let packets = 66_000 * 60;
                    g.record(
                        at,
                        at + 60 * SECOND,
                        c,
                        s,
                        (40_000, 873),
                        6,
                        packets,
                        packets * 1_500,
                        ACK | PSH,
                        None,
                    );
                    g.record(
                        at,
                        at + 60 * SECOND,
                        s,
                        c,
                        (873, 40_000),
                        6,
                        packets / 20,
                        packets / 20 * 60,
                        ACK,
                        None,
                    );
                }
            }
            // SNMP and pings to 400 hosts every minute; 4 % are down
            "monitoring poller" => {
                let poller = ipv4_mapped([10, 2, 250, 250]);
                for minute in 0..10 {
                    for h in 0..400u32 {
                        let host = ipv4_mapped([10, 3, (h / 250) as u8, (h % 250 + 1) as u8]);
                        let at = start_ns + minute * 60 * SECOND + i64::from(h) * 100_000_000;
                        let down = h % 25 == 7;
                        let port = 30_000 + (h % 1000) as u16;
                        g.record(at, at, poller, host, (port, 161), 17, 1, 90, 0, None);
                        g.record(at, at, poller, host, (0, 0x0800), 1, 1, 84, 0, Some(8));
                        if !down {
                            g.record(at, at, host, poller, (161, port), 17, 1, 300, 0, None);
                            g.record(at, at, host, poller, (0, 0), 1, 1, 84, 0, Some(0));
                        }
                    }
                }
            }
            // 500 hosts behind one address, 2 % of their connections failing
            "nat gateway" => {
                let nat = ipv4_mapped([198, 51, 100, 20]);
                for _ in 0..8_000 {
                    let at = g.at(0.0, span);
                    let server = g.addr([10, 2], 40);
                    if g.rng.chance(0.02) {
                        let port = 20_000 + g.rng.below(40_000) as u16;
                        g.record(at, at, nat, server, (port, 443), 6, 2, 120, SYN, None);
                    } else {
                        g.connection(at, nat, server, 443, 6, 20);
                    }
                }
            }
            // clients whose connections to a dead server fail, retried
            "failed connections" => {
                let dead = ipv4_mapped([10, 2, 201, 1]);
                for _ in 0..300 {
                    let at = g.at(0.0, span);
                    let client = g.addr([10, 1], 200);
                    let port = 20_000 + g.rng.below(40_000) as u16;
                    g.record(
                        at,
                        at + 3 * SECOND,
                        client,
                        dead,
                        (port, 5432),
                        6,
                        3,
                        180,
                        SYN,
                        None,
                    );
                }
            }
            // clients visiting the same outside sites at their own pace
            "web browsing" => {
                for c in 0..20u8 {
                    let client = ipv4_mapped([10, 1, 180, c + 1]);
                    let site = ipv4_mapped([198, 18, 10, c % 3 + 1]);
                    for _ in 0..30 {
                        let at = g.at(0.0, span);
                        let n = 3 + g.rng.below(300);
                        g.connection(at, client, site, 443, 6, n);
                    }
                }
            }
            // an administrator's host logging into 30 servers every minute
            "admin jump host" => {
                let jump = ipv4_mapped([10, 1, 190, 1]);
                for minute in 0..10 {
                    for h in 0..30u8 {
                        let at = start_ns + minute * 60 * SECOND + i64::from(h) * 500_000_000;
                        let port = [22, 3389, 5985][usize::from(h % 3)];
                        g.connection(at, jump, ipv4_mapped([10, 2, 100, h + 1]), port, 6, 40);
                    }
                }
            }
            other => panic!("no look-alike '{other}'"),
        }
    }
    let mut blocklist = Vec::new();
    for (i, &kind) in attacks.iter().enumerate() {
        let attacker = ipv4_mapped([10, 1, 150, 10 + i as u8]);
        let name = hopscope_schema::format_addr(&attacker);
        let from = 60.0 + g.rng.unit() * 300.0;
        match kind {
            "syn scan (horizontal)" | "syn scan (vertical)" | "fin/null/xmas scan" => {
                let targets = 100 + g.rng.below(400) as u32;
                let victim = g.addr([10, 2], 40);
                for t in 0..targets {
                    let at = g.at(from, from + 60.0);
                    let (dst, port) = match kind {
                        "syn scan (horizontal)" => (
                            ipv4_mapped([10, 2, (t / 250) as u8, (t % 250 + 1) as u8]),
                            22,
                        ),
                        _ => (victim, 1 + t as u16),
                    };
                    let flags = match kind {
                        "fin/null/xmas scan" => [FIN, 0, FIN | PSH | URG][t as usize % 3],
                        _ => SYN,
                    };
                    g.record(
                        at,
                        at,
                        attacker,
                        dst,
                        (40_000 + (t % 100) as u16, port),
                        6,
                        1,
                        40,
                        flags,
                        None,
                    );
                    // closed ports answer with a reset
                    g.record(
                        at,
                        at,
                        dst,
                        attacker,
                        (port, 40_000),
                        6,
                        1,
                        40,
                        RST | ACK,
                        None,
                    );
                }
                truth.push(Attack {
                    rule: "scan",
                    subject: name,
                    kind,
                });
            }
            "udp scan" => {
                let victim = g.addr([10, 2], 40);
                for port in 1..=200u16 {
                    let at = g.at(from, from + 60.0);
                    g.record(at, at, attacker, victim, (50_000, port), 17, 1, 40, 0, None);
                    // port unreachable
                    g.record(at, at, victim, attacker, (0, 0x0303), 1, 1, 70, 0, Some(3));
                }
                truth.push(Attack {
                    rule: "scan",
                    subject: name,
                    kind,
                });
            }
            "ping sweep" => {
                for h in 0..254u32 {
                    let at = g.at(from, from + 30.0);
                    let dst = ipv4_mapped([10, 4, 0, 1 + h as u8]);
                    g.record(at, at, attacker, dst, (0, 0x0800), 1, 1, 28, 0, Some(8));
                }
                truth.push(Attack {
                    rule: "scan",
                    subject: name,
                    kind,
                });
            }
            "syn flood" => {
                let victim = ipv4_mapped([10, 2, 210, 1 + i as u8]);
                let rate = 2_000 + g.rng.below(8_000);
                for k in 0..rate * 20 {
                    let at = start_ns + ((from + k as f64 / rate as f64) * 1e9) as i64;
                    let spoofed = ipv4_mapped((g.rng.next_u64() as u32).to_be_bytes());
                    g.record(
                        at,
                        at,
                        spoofed,
                        victim,
                        ((k % 60_000) as u16 + 1024, 80),
                        6,
                        1,
                        60,
                        SYN,
                        None,
                    );
                }
                truth.push(Attack {
                    rule: "flood",
                    subject: hopscope_schema::format_addr(&victim),
                    kind,
                });
            }
            "udp flood" => {
                let victim = ipv4_mapped([10, 2, 220, 1 + i as u8]);
                for s in 0..30i64 {
                    for bot in 0..20u8 {
                        let at = start_ns + ((from + s as f64) * 1e9) as i64;
                        let src = ipv4_mapped([203, 0, 113, bot + 1]);
                        g.record(
                            at,
                            at + SECOND - 1,
                            src,
                            victim,
                            (53, 40_000 + u16::from(bot)),
                            17,
                            3_000,
                            3_000 * 512,
                            0,
                            None,
                        );
                    }
                }
                truth.push(Attack {
                    rule: "flood",
                    subject: hopscope_schema::format_addr(&victim),
                    kind,
                });
            }
            "blocklisted peer" => {
                let c2 = ipv4_mapped([192, 0, 2, 66 + i as u8]);
                let entry = format!("192.0.2.{}", 66 + i);
                blocklist.push(entry.clone());
                let at = g.at(from, from + 10.0);
                g.connection(at, attacker, c2, 443, 6, 30);
                truth.push(Attack {
                    rule: "blocklist",
                    subject: format!("drop:{entry}"),
                    kind,
                });
            }
            // a call home every 20 to 50 s (2 % jitter), the same request
            "beacon" => {
                let c2 = ipv4_mapped([198, 18, 20, 1 + i as u8]);
                let period = 20.0 + g.rng.unit() * 30.0;
                let mut t = g.rng.unit() * period;
                while t < span {
                    let jitter = (g.rng.unit() - 0.5) * 0.04 * period;
                    let at = start_ns + ((t + jitter) * 1e9) as i64;
                    g.connection(at, attacker, c2, 443, 6, 8);
                    t += period;
                }
                truth.push(Attack {
                    rule: "beacon",
                    subject: format!("{name}>{}:443/tcp", hopscope_schema::format_addr(&c2)),
                    kind,
                });
            }
            // logins to 6 to 12 inside hosts it never reached, in 2 minutes
            "lateral movement" => {
                let from = from.max(LATERAL_LEARNING_S + 30.0);
                for h in 0..6 + g.rng.below(7) as u8 {
                    let at = g.at(from, from + 120.0);
                    let port = [22, 445, 3389][usize::from(h % 3)];
                    g.connection(at, attacker, ipv4_mapped([10, 1, 160, h + 1]), port, 6, 30);
                }
                truth.push(Attack {
                    rule: "lateral",
                    subject: name,
                    kind,
                });
            }
            other => panic!("no attack '{other}'"),
        }
    }
    g.records.sort_by_key(|r| r.time_received_ns);
    SecurityRun {
        records: g.records,
        attacks: truth,
        lookalikes: lookalikes.to_vec(),
        blocklist,
        start_ns,
        end_ns: start_ns + (span * 1e9) as i64,
    }
}
