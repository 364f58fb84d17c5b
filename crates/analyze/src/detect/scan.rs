//! Port scans: a source whose connection attempts fail on many hosts or
//! many ports. The defaults are Zeek's scan policy: 25 hosts on one port
//! (horizontal) or 15 ports on one host (vertical) within 5 minutes.
//!
//! A failed attempt is a TCP record whose source acknowledged nothing (a
//! SYN that got no connection, or a FIN, NULL or Xmas probe) to a target
//! (host, port) it has no established connection with, a UDP datagram to
//! a port that sent nothing back, or a ping left unanswered; each waits a
//! grace time (10 s) for its answer or a connection that worked, so that a
//! NAT gateway whose clients fail now and then is not a scanner. Records
//! from a server's port to a client's (below 1024 to above) are answers,
//! never attempts. On sampled records only TCP probes count: an answer
//! may not have been sampled.

use std::collections::hash_map::Entry;

use super::{HashMap, HashSet};

use hopscope_schema::{Inside, format_addr};
use serde::Deserialize;
use serde_json::json;

use super::Finding;
use super::flows::{ACK, FIN, FlowEvent, PSH, RST, SYN, URG};
use crate::AnalyzeError;
use hopscope_store::query::parse_duration;

pub const RULE: &str = "scan";
const NAME: &str = "HopscopeScan";
/// Sources followed at most, and targets kept per source: a flood of
/// spoofed sources or a scan of a /8 stays bounded (and counted).
const MAX_SOURCES: usize = 200_000;
const MAX_TARGETS: usize = 20_000;
/// Two scans whose targets are this share of each other's are one scan
/// seen from two sides of a NAT.
const EXPLAINED: f64 = 0.9;

/// `[detect.scan]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScanConfig {
    /// Failed attempts are counted over this window.
    #[serde(default = "default_window")]
    pub window: String,
    /// Horizontal: distinct hosts tried on one port.
    #[serde(default = "default_hosts")]
    pub hosts: usize,
    /// Vertical: distinct ports tried on one host.
    #[serde(default = "default_ports")]
    pub ports: usize,
    /// How long a UDP datagram or a ping waits for its answer.
    #[serde(default = "default_grace")]
    pub grace: String,
    /// The alert resolves after this long without a failed attempt.
    #[serde(default = "default_quiet")]
    pub quiet: String,
}

fn default_window() -> String {
    "5m".into()
}
fn default_hosts() -> usize {
    25
}
fn default_ports() -> usize {
    15
}
fn default_grace() -> String {
    "10s".into()
}
fn default_quiet() -> String {
    "5m".into()
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            window: default_window(),
            hosts: default_hosts(),
            ports: default_ports(),
            grace: default_grace(),
            quiet: default_quiet(),
        }
    }
}

/// What was tried: a host, a protocol and a port (0 for pings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Target {
    dst: [u8; 16],
    proto: u8,
    port: u16,
}

/// How an attempt probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Probe {
    Syn,
    Fin,
    Null,
    Xmas,
    OtherTcp,
    Udp,
    Ping,
}

impl Probe {
    fn name(self) -> &'static str {
        match self {
            Probe::Syn => "syn",
            Probe::Fin => "fin",
            Probe::Null => "null",
            Probe::Xmas => "xmas",
            Probe::OtherTcp => "tcp",
            Probe::Udp => "udp",
            Probe::Ping => "ping",
        }
    }

    fn of_tcp(flags: u16) -> Probe {
        match flags & (FIN | SYN | RST | PSH | ACK | URG) {
            f if f & SYN != 0 => Probe::Syn,
            0 => Probe::Null,
            FIN => Probe::Fin,
            f if f == FIN | PSH | URG => Probe::Xmas,
            _ => Probe::OtherTcp,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Attempt {
    last_ns: i64,
    probe: Probe,
    /// Answered (UDP, pings), or established by another connection of the
    /// source to the target (TCP): an attempt fails once its grace has
    /// passed without either.
    answered: bool,
    sampling: u64,
}

impl Attempt {
    fn failed(&self, now_ns: i64, grace_ns: i64) -> bool {
        !self.answered && self.last_ns.saturating_add(grace_ns) <= now_ns
    }
}

#[derive(Debug, Default)]
struct Source {
    attempts: HashMap<Target, Attempt>,
    /// The newest attempt's time: a source whose newest attempt's grace
    /// passed before the last evaluation has nothing new to judge.
    newest_ns: i64,
}

/// The scan detection's state: attempts by source over the window.
#[derive(Debug)]
pub(super) struct Scans {
    window_ns: i64,
    grace_ns: i64,
    quiet_ns: i64,
    hosts: usize,
    ports: usize,
    /// Which side of a source NAT is inside.
    inside: Inside,
    sources: HashMap<[u8; 16], Source>,
    /// The sources found scanning when last judged.
    flagged: HashMap<[u8; 16], Scan>,
    /// When the last evaluation ran, and the last that judged every
    /// source and forgot what left the window.
    judged_ns: i64,
    swept_ns: i64,
    untracked: u64,
}

/// How often (event time) every source is judged again and old attempts
/// forgotten; in between, only sources with attempts still in their grace.
const SWEEP_NS: i64 = 10_000_000_000;

/// A duration setting of `[detect]`, or an error naming its key.
pub(super) fn duration(key: &str, text: &str) -> Result<i64, AnalyzeError> {
    parse_duration(text).ok_or_else(|| AnalyzeError::Setting {
        key: key.into(),
        message: format!("'{text}' is not a duration such as '30s' or '5m'"),
    })
}

impl Scans {
    pub fn new(c: &ScanConfig, inside: Inside) -> Result<Scans, AnalyzeError> {
        if c.hosts < 2 || c.ports < 2 {
            return Err(AnalyzeError::Setting {
                key: "detect.scan".into(),
                message: "hosts and ports are at least 2".into(),
            });
        }
        Ok(Scans {
            window_ns: duration("detect.scan.window", &c.window)?,
            grace_ns: duration("detect.scan.grace", &c.grace)?,
            quiet_ns: duration("detect.scan.quiet", &c.quiet)?,
            hosts: c.hosts,
            ports: c.ports,
            inside,
            sources: HashMap::default(),
            flagged: HashMap::default(),
            judged_ns: i64::MIN,
            swept_ns: i64::MIN,
            untracked: 0,
        })
    }

    pub fn quiet_ns(&self) -> i64 {
        self.quiet_ns
    }

    pub fn tracked(&self) -> u64 {
        self.sources.len() as u64
    }

    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    pub fn add(&mut self, events: &[FlowEvent]) {
        // attempts first, then what answers them, so that a request and
        // its reply in one batch meet whatever their order
        for e in events {
            let Some((target, probe)) = attempt(e) else {
                continue;
            };
            if !self.sources.contains_key(&e.src) && self.sources.len() >= MAX_SOURCES {
                self.untracked += 1;
                continue;
            }
            let source = self.sources.entry(e.src).or_default();
            source.newest_ns = source.newest_ns.max(e.end_ns);
            let answered = matches!(probe, Probe::Udp) && e.reverse_packets.is_some_and(|p| p > 0);
            let full = source.attempts.len() >= MAX_TARGETS;
            match source.attempts.entry(target) {
                Entry::Occupied(mut a) => {
                    let a = a.get_mut();
                    a.last_ns = a.last_ns.max(e.end_ns);
                    a.answered |= answered;
                }
                Entry::Vacant(_) if full => self.untracked += 1,
                Entry::Vacant(v) => {
                    v.insert(Attempt {
                        last_ns: e.end_ns,
                        probe,
                        answered,
                        sampling: e.sampling,
                    });
                }
            }
        }
        for e in events {
            let answers = match e.proto {
                // an established connection to the target (a NAT's clients
                // reaching a server: one failed SYN among many that worked)
                6 if e.tcp_flags.is_some_and(|f| f & ACK != 0) => Some((
                    e.src,
                    Target {
                        dst: e.dst,
                        proto: 6,
                        port: e.dst_port,
                    },
                )),
                17 => Some((
                    e.dst,
                    Target {
                        dst: e.src,
                        proto: 17,
                        port: e.src_port,
                    },
                )),
                1 | 58 if e.is_echo_reply() => Some((
                    e.dst,
                    Target {
                        dst: e.src,
                        proto: e.proto,
                        port: 0,
                    },
                )),
                _ => None,
            };
            if let Some((source, t)) = answers
                && let Some(a) = self
                    .sources
                    .get_mut(&source)
                    .and_then(|s| s.attempts.get_mut(&t))
            {
                a.answered = true;
            }
        }
    }

    /// Forgets attempts older than the window, and names the sources
    /// scanning at `now_ns`.
    pub fn evaluate(&mut self, now_ns: i64) -> Vec<Finding> {
        let sweep = now_ns.saturating_sub(self.swept_ns) >= SWEEP_NS;
        if sweep {
            let oldest = now_ns.saturating_sub(self.window_ns);
            self.sources.retain(|_, s| {
                s.attempts.retain(|_, a| a.last_ns >= oldest);
                !s.attempts.is_empty()
            });
            self.flagged.clear();
            self.swept_ns = now_ns;
        }
        let least = self.ports.min(self.hosts);
        let judged = self.judged_ns;
        let changed: Vec<([u8; 16], Option<Scan>)> = self
            .sources
            .iter()
            .filter(|(_, s)| sweep || s.newest_ns.saturating_add(self.grace_ns) > judged)
            .map(|(src, s)| {
                let scan = (s.attempts.len() >= least)
                    .then(|| self.judge(*src, s, now_ns))
                    .flatten();
                (*src, scan)
            })
            .collect();
        for (src, scan) in changed {
            match scan {
                Some(scan) => self.flagged.insert(src, scan),
                None => self.flagged.remove(&src),
            };
        }
        self.judged_ns = now_ns;
        let mut flagged: Vec<Scan> = self.flagged.drain().map(|(_, s)| s).collect();
        explain_behind_nat(&mut flagged, &self.inside);
        let findings = flagged
            .iter()
            .filter(|s| s.explained_by.is_none())
            .map(|s| s.finding(self))
            .collect();
        for mut scan in flagged {
            scan.explained_by = None;
            scan.also_seen_as.clear();
            self.flagged.insert(scan.src, scan);
        }
        findings
    }

    fn judge(&self, src: [u8; 16], s: &Source, now_ns: i64) -> Option<Scan> {
        let failed: Vec<(&Target, &Attempt)> = s
            .attempts
            .iter()
            .filter(|(_, a)| a.failed(now_ns, self.grace_ns))
            .collect();
        if failed.len() < self.ports.min(self.hosts) {
            return None;
        }
        let mut ports_by_host: HashMap<[u8; 16], usize> = HashMap::default();
        let mut hosts_by_port: HashMap<(u8, u16), usize> = HashMap::default();
        for (t, _) in &failed {
            *ports_by_host.entry(t.dst).or_default() += 1;
            *hosts_by_port.entry((t.proto, t.port)).or_default() += 1;
        }
        let vertical: Vec<([u8; 16], usize)> = top(&ports_by_host, self.ports);
        let horizontal: Vec<((u8, u16), usize)> = top(&hosts_by_port, self.hosts);
        if vertical.is_empty() && horizontal.is_empty() {
            return None;
        }
        let mut probes: HashMap<Probe, usize> = HashMap::default();
        for (_, a) in &failed {
            *probes.entry(a.probe).or_default() += 1;
        }
        Some(Scan {
            src,
            targets: failed.iter().map(|(t, _)| **t).collect(),
            last_ns: failed
                .iter()
                .map(|(_, a)| a.last_ns)
                .max()
                .unwrap_or(now_ns),
            sampling: failed.iter().map(|(_, a)| a.sampling).max().unwrap_or(1),
            hosts: ports_by_host.len(),
            ports: hosts_by_port.len(),
            vertical,
            horizontal,
            probes,
            explained_by: None,
            also_seen_as: Vec::new(),
        })
    }
}

/// The keys whose count reaches `threshold`, the largest first (ten).
fn top<K: Copy + Ord + std::hash::Hash>(
    counts: &HashMap<K, usize>,
    threshold: usize,
) -> Vec<(K, usize)> {
    let mut over: Vec<(K, usize)> = counts
        .iter()
        .filter(|(_, n)| **n >= threshold)
        .map(|(k, n)| (*k, *n))
        .collect();
    over.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    over.truncate(10);
    over
}

/// One source found scanning.
#[derive(Debug)]
struct Scan {
    src: [u8; 16],
    targets: HashSet<Target>,
    last_ns: i64,
    sampling: u64,
    hosts: usize,
    ports: usize,
    vertical: Vec<([u8; 16], usize)>,
    horizontal: Vec<((u8, u16), usize)>,
    probes: HashMap<Probe, usize>,
    explained_by: Option<usize>,
    also_seen_as: Vec<[u8; 16]>,
}

/// Whether most of `a`'s targets are `b`'s too.
fn contained(a: &Scan, b: &Scan) -> bool {
    let shared = a.targets.iter().filter(|t| b.targets.contains(t)).count();
    shared as f64 >= EXPLAINED * a.targets.len() as f64
}

/// Whether `a` names a scan more specifically than `b`: `a` is inside and
/// `b` not (a source NAT's inside and outside), and `a`'s targets are
/// mostly `b`'s (the NAT's address carries the attempts of every host
/// behind it). Two outside scanners of the same targets are two scanners.
fn more_specific(a: &Scan, b: &Scan, inside: &Inside) -> bool {
    inside.holds(a.src) && !inside.holds(b.src) && contained(a, b)
}

/// A scan from behind a source NAT shows from the scanner and from the
/// NAT's address, with the same targets: an address whose targets are
/// mostly those of more specific scans is marked as explained by them.
fn explain_behind_nat(scans: &mut [Scan], inside: &Inside) {
    for b in 0..scans.len() {
        let specific: Vec<usize> = (0..scans.len())
            .filter(|&a| a != b && more_specific(&scans[a], &scans[b], inside))
            .collect();
        if specific.is_empty() {
            continue;
        }
        let explained = scans[b]
            .targets
            .iter()
            .filter(|t| specific.iter().any(|&a| scans[a].targets.contains(t)))
            .count();
        if explained as f64 >= EXPLAINED * scans[b].targets.len() as f64 {
            let by = specific
                .iter()
                .copied()
                .max_by_key(|&a| scans[a].targets.intersection(&scans[b].targets).count())
                .expect("not empty");
            scans[b].explained_by = Some(by);
        }
    }
    for b in 0..scans.len() {
        if let Some(a) = scans[b].explained_by {
            let src = scans[b].src;
            scans[a].also_seen_as.push(src);
        }
    }
}

impl Scan {
    fn finding(&self, scans: &Scans) -> Finding {
        let src = format_addr(&self.src);
        let kind = match (self.vertical.is_empty(), self.horizontal.is_empty()) {
            (false, false) => "horizontal and vertical",
            (true, false) => "horizontal",
            _ => "vertical",
        };
        let mut probes: Vec<(&Probe, &usize)> = self.probes.iter().collect();
        probes.sort();
        let probe_names: Vec<&str> = probes.iter().map(|(p, _)| p.name()).collect();
        let sampled = (self.sampling > 1).then(|| {
            format!(
                "; sampled 1 in {}: the counts are of sampled flows",
                self.sampling
            )
        });
        let also: Vec<String> = self.also_seen_as.iter().map(|a| format_addr(a)).collect();
        let summary = format!(
            "{src} scans ({kind}, {}): {} failed attempts on {} hosts and {} ports in {}{}{}",
            probe_names.join("/"),
            self.targets.len(),
            self.hosts,
            self.ports,
            crate::budget::window_name(scans.window_ns),
            if also.is_empty() {
                String::new()
            } else {
                format!("; also seen as {} (behind NAT)", also.join(", "))
            },
            sampled.unwrap_or_default(),
        );
        let protocol = |p: u8| match p {
            6 => "tcp",
            17 => "udp",
            1 => "icmp",
            58 => "icmp6",
            _ => "other",
        };
        Finding {
            rule: RULE,
            name: NAME,
            severity: "ticket",
            subject: src.clone(),
            labels: [
                ("subject".to_string(), src.clone()),
                ("source".to_string(), src.clone()),
            ]
            .into(),
            summary,
            evidence: json!({
                "source": src,
                "kind": kind,
                "probes": probes.iter().map(|(p, n)| (p.name(), **n)).collect::<std::collections::BTreeMap<_, _>>(),
                "failed_attempts": self.targets.len(),
                "hosts": self.hosts,
                "ports": self.ports,
                "ports_on_one_host": self.vertical.iter().map(|(h, n)| json!({"host": format_addr(h), "ports": n})).collect::<Vec<_>>(),
                "hosts_on_one_port": self.horizontal.iter().map(|((p, port), n)| json!({"proto": protocol(*p), "port": port, "hosts": n})).collect::<Vec<_>>(),
                "also_seen_as": also,
                "sampling": self.sampling,
                "thresholds": {"hosts": scans.hosts, "ports": scans.ports, "window": crate::budget::window_name(scans.window_ns)},
                "flows": {
                    "filter": format!("src host {src}"),
                    "from_ns": self.last_ns.saturating_sub(scans.window_ns),
                    "to_ns": self.last_ns.saturating_add(1),
                },
            }),
            seen_ns: self.last_ns,
            quiet_ns: scans.quiet_ns,
        }
    }
}

/// The attempt a record makes, if it is one.
fn attempt(e: &FlowEvent) -> Option<(Target, Probe)> {
    let target = |port| Target {
        dst: e.dst,
        proto: e.proto,
        port,
    };
    match e.proto {
        6 if e.unestablished_tcp() => Some((target(e.dst_port), Probe::of_tcp(e.tcp_flags?))),
        // sampled, a reply may not be: unanswered proves nothing
        17 if e.sampling == 1 && !(e.src_port < 1024 && e.dst_port >= 1024) => {
            Some((target(e.dst_port), Probe::Udp))
        }
        1 | 58 if e.sampling == 1 && e.is_echo_request() => Some((target(0), Probe::Ping)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopscope_schema::ipv4_mapped;

    fn flow(
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        proto: u8,
        flags: Option<u16>,
        at_s: i64,
    ) -> FlowEvent {
        FlowEvent {
            end_ns: at_s * 1_000_000_000,
            start_ns: at_s * 1_000_000_000,
            point: 1,
            src: ipv4_mapped(src),
            dst: ipv4_mapped(dst),
            src_port: sport,
            dst_port: dport,
            proto,
            packets: 1,
            bytes: 60,
            reverse_packets: None,
            tcp_flags: flags,
            icmp_type: None,
            sampling: 1,
        }
    }

    fn scans() -> Scans {
        Scans::new(&ScanConfig::default(), Inside::default()).unwrap()
    }

    #[test]
    fn a_syn_scan_of_ports_on_one_host_is_vertical() {
        let mut s = scans();
        let events: Vec<FlowEvent> = (1..=20)
            .map(|p| flow([10, 0, 0, 6], [10, 0, 1, 1], 40000, p, 6, Some(SYN), 1))
            .collect();
        s.add(&events);
        let found = s.evaluate(12_000_000_000);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].subject, "10.0.0.6");
        assert_eq!(found[0].evidence["kind"], "vertical");
        assert_eq!(found[0].evidence["probes"]["syn"], 20);
    }

    #[test]
    fn fourteen_ports_or_established_connections_are_not_a_scan() {
        let mut s = scans();
        let mut events: Vec<FlowEvent> = (1..=14)
            .map(|p| flow([10, 0, 0, 6], [10, 0, 1, 1], 40000, p, 6, Some(SYN), 1))
            .collect();
        // a busy client: many hosts and ports, every connection established
        events.extend((0..200).map(|i| {
            flow(
                [10, 0, 0, 7],
                [10, 0, 2, i as u8],
                40000 + i,
                443 + i % 30,
                6,
                Some(SYN | ACK | PSH),
                1,
            )
        }));
        s.add(&events);
        assert!(s.evaluate(12_000_000_000).is_empty());
    }

    #[test]
    fn a_udp_sweep_fails_only_where_nothing_answers_after_the_grace() {
        let mut s = scans();
        let mut events: Vec<FlowEvent> = (0..40)
            .map(|h| flow([10, 0, 0, 8], [10, 0, 3, h], 5000, 161, 17, None, 1))
            .collect();
        s.add(&events);
        assert!(s.evaluate(5_000_000_000).is_empty(), "within the grace");
        // 30 of the 40 hosts answer: 10 failed is below 25 hosts
        events = (0..30)
            .map(|h| flow([10, 0, 3, h], [10, 0, 0, 8], 161, 5000, 17, None, 2))
            .collect();
        s.add(&events);
        assert!(s.evaluate(20_000_000_000).is_empty());
        let sweep: Vec<FlowEvent> = (0..40)
            .map(|h| flow([10, 0, 0, 9], [10, 0, 4, h], 5000, 161, 17, None, 30))
            .collect();
        s.add(&sweep);
        let found = s.evaluate(45_000_000_000);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].evidence["kind"], "horizontal");
        assert_eq!(found[0].evidence["probes"]["udp"], 40);
    }

    #[test]
    fn two_public_scanners_of_the_same_targets_are_two_scans() {
        let mut s = scans();
        let events: Vec<FlowEvent> = (1..=30u16)
            .flat_map(|p| {
                [
                    flow([203, 0, 113, 1], [192, 0, 2, 1], 40000, p, 6, Some(SYN), 1),
                    flow([203, 0, 113, 2], [192, 0, 2, 1], 40000, p, 6, Some(SYN), 1),
                ]
            })
            .collect();
        s.add(&events);
        let mut found: Vec<String> = s
            .evaluate(12_000_000_000)
            .into_iter()
            .map(|f| f.subject)
            .collect();
        found.sort();
        assert_eq!(found, ["203.0.113.1", "203.0.113.2"]);
    }

    #[test]
    fn a_nat_gateway_whose_clients_fail_now_and_then_is_not_a_scanner() {
        let mut s = scans();
        let mut events = Vec::new();
        for h in 0..30u8 {
            // one failed SYN to each of 30 servers, many that worked
            events.push(flow(
                [198, 51, 100, 20],
                [10, 2, 0, h],
                40000,
                443,
                6,
                Some(SYN),
                1,
            ));
            events.push(flow(
                [198, 51, 100, 20],
                [10, 2, 0, h],
                40001,
                443,
                6,
                Some(SYN | ACK | PSH),
                3,
            ));
        }
        s.add(&events);
        assert!(s.evaluate(20_000_000_000).is_empty());
    }

    #[test]
    fn fin_null_and_xmas_probes_are_named() {
        assert_eq!(Probe::of_tcp(FIN), Probe::Fin);
        assert_eq!(Probe::of_tcp(0), Probe::Null);
        assert_eq!(Probe::of_tcp(FIN | PSH | URG), Probe::Xmas);
        assert_eq!(Probe::of_tcp(SYN | RST), Probe::Syn);
    }

    #[test]
    fn behind_a_nat_the_inside_scanner_is_named() {
        let mut s = scans();
        let mut events = Vec::new();
        for p in 1..=30u16 {
            // the scanner inside, and the same attempts after the NAT
            events.push(flow(
                [10, 1, 66, 6],
                [192, 0, 2, 1],
                40000,
                p,
                6,
                Some(SYN),
                1,
            ));
            events.push(flow(
                [198, 51, 100, 10],
                [192, 0, 2, 1],
                20000 + p,
                p,
                6,
                Some(SYN),
                1,
            ));
        }
        // the NAT's side missed two probes and has another host's failures
        events.retain(|e| !(e.src[15] == 10 && e.dst_port < 3));
        events.extend((0..2).map(|p| {
            flow(
                [198, 51, 100, 10],
                [192, 0, 2, 9],
                20100,
                9000 + p,
                6,
                Some(SYN),
                1,
            )
        }));
        s.add(&events);
        let found = s.evaluate(12_000_000_000);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].subject, "10.1.66.6");
        assert_eq!(found[0].evidence["also_seen_as"][0], "198.51.100.10");
    }

    #[test]
    fn attempts_leave_the_window() {
        let mut s = scans();
        let events: Vec<FlowEvent> = (1..=20)
            .map(|p| flow([10, 0, 0, 6], [10, 0, 1, 1], 40000, p, 6, Some(SYN), 1))
            .collect();
        s.add(&events);
        assert!(s.evaluate(400_000_000_000).is_empty());
        assert_eq!(s.tracked(), 0);
    }
}
