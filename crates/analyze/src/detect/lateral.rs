//! Lateral movement: an inside host that reaches, within a window, several
//! inside peers it had never reached before on administrative ports (SSH,
//! SMB, RDP, WinRM, VNC, telnet, RPC), as an intruder does when it moves
//! from the host it took to the next ones.
//!
//! Which peers a host reaches on those ports is learned for a while
//! first (default an hour of event time): an administrator's jump host
//! that logs into fifty servers every day is known by then. After it,
//! every established connection to a peer not seen before is new; a
//! source that makes `peers` new ones within `window` raises an alert
//! naming it and them. Failed attempts, and SYN scans that found a port
//! open, are the scan detection's; here only connections the client
//! completed count (a SYN and an ACK in the client's own record).

use std::collections::BTreeSet;

use super::{HashMap, HashSet};

use hopscope_schema::{Inside, format_addr};
use serde::Deserialize;
use serde_json::json;

use super::Finding;
use super::flows::FlowEvent;
use super::scan::duration;
use crate::AnalyzeError;

pub const RULE: &str = "lateral";
const NAME: &str = "HopscopeLateralMovement";
/// Known (client, peer) pairs kept at most, so that a sweep of a /8 stays
/// bounded: past it, a new pair is neither learned nor counted as new
/// (it is counted as untracked: the detection is blind to it).
const MAX_KNOWN: usize = 1_000_000;

/// `[detect.lateral]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LateralConfig {
    /// The administrative ports (TCP).
    #[serde(default = "default_ports")]
    pub ports: Vec<u16>,
    /// New peers within the window that make lateral movement.
    #[serde(default = "default_peers")]
    pub peers: usize,
    #[serde(default = "default_window")]
    pub window: String,
    /// How long peers are learned before anything new counts.
    #[serde(default = "default_learning")]
    pub learning: String,
    /// The alert resolves after this long without a new peer.
    #[serde(default = "default_quiet")]
    pub quiet: String,
}

fn default_ports() -> Vec<u16> {
    vec![22, 23, 135, 139, 445, 3389, 5900, 5985, 5986]
}
fn default_peers() -> usize {
    5
}
fn default_window() -> String {
    "10m".into()
}
fn default_learning() -> String {
    "1h".into()
}
fn default_quiet() -> String {
    "30m".into()
}

impl Default for LateralConfig {
    fn default() -> Self {
        LateralConfig {
            ports: default_ports(),
            peers: default_peers(),
            window: default_window(),
            learning: default_learning(),
            quiet: default_quiet(),
        }
    }
}

/// A new peer a source reached: when, and on which port.
#[derive(Debug, Clone, Copy)]
struct Reached {
    peer: [u8; 16],
    port: u16,
    at_ns: i64,
}

/// The lateral-movement detection's state.
#[derive(Debug)]
pub(super) struct Lateral {
    ports: Vec<u16>,
    peers: usize,
    window_ns: i64,
    learning_ns: i64,
    quiet_ns: i64,
    /// Event time from which peers are new (the first flow's time plus
    /// the learning period).
    learned_at_ns: Option<i64>,
    known: HashSet<([u8; 16], [u8; 16])>,
    /// New peers by source, within the window.
    reached: HashMap<[u8; 16], Vec<Reached>>,
    sampling: HashMap<[u8; 16], u64>,
    untracked: u64,
}

impl Lateral {
    pub fn new(c: &LateralConfig) -> Result<Lateral, AnalyzeError> {
        if c.peers < 2 || c.ports.is_empty() {
            return Err(AnalyzeError::Setting {
                key: "detect.lateral".into(),
                message: "peers is at least 2, and ports names at least one".into(),
            });
        }
        Ok(Lateral {
            ports: c.ports.clone(),
            peers: c.peers,
            window_ns: duration("detect.lateral.window", &c.window)?,
            learning_ns: duration("detect.lateral.learning", &c.learning)?,
            quiet_ns: duration("detect.lateral.quiet", &c.quiet)?,
            learned_at_ns: None,
            known: HashSet::default(),
            reached: HashMap::default(),
            sampling: HashMap::default(),
            untracked: 0,
        })
    }

    pub fn quiet_ns(&self) -> i64 {
        self.quiet_ns
    }

    pub fn tracked(&self) -> u64 {
        self.reached.len() as u64
    }

    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// Whether peers are still being learned at `now_ns`.
    pub fn learning(&self, now_ns: i64) -> bool {
        self.learned_at_ns.is_none_or(|at| now_ns < at)
    }

    pub fn add(&mut self, events: &[FlowEvent], inside: &Inside) {
        // learning starts with the first flows read, when they ended (a
        // long session's record started long before)
        if let Some(first) = events.iter().map(|e| e.end_ns).min() {
            self.learned_at_ns
                .get_or_insert(first.saturating_add(self.learning_ns));
        }
        let Some(learned_at) = self.learned_at_ns else {
            return;
        };
        for e in events.iter().filter(|e| e.answered_handshake()) {
            let c = e.connection();
            // the client's own record: it completed the handshake (a SYN
            // scan of an open port has the server's SYN-ACK, and the
            // client's reset)
            if c.reply
                || !self.ports.contains(&c.port)
                || c.client == c.server
                || !inside.holds(c.client)
                || !inside.holds(c.server)
            {
                continue;
            }
            let pair = (c.client, c.server);
            if self.known.contains(&pair) {
                continue;
            }
            if self.known.len() >= MAX_KNOWN {
                self.untracked += 1;
                continue;
            }
            self.known.insert(pair);
            if e.end_ns < learned_at {
                continue;
            }
            self.reached.entry(c.client).or_default().push(Reached {
                peer: c.server,
                port: c.port,
                at_ns: e.end_ns,
            });
            let s = self.sampling.entry(c.client).or_default();
            *s = (*s).max(e.sampling);
        }
    }

    /// Forgets new peers older than the window; names the sources that
    /// reached enough of them.
    pub fn evaluate(&mut self, now_ns: i64) -> Vec<Finding> {
        let oldest = now_ns.saturating_sub(self.window_ns);
        self.reached.retain(|_, r| {
            r.retain(|x| x.at_ns >= oldest);
            !r.is_empty()
        });
        self.sampling
            .retain(|src, _| self.reached.contains_key(src));
        self.reached
            .iter()
            .filter(|(_, r)| r.len() >= self.peers)
            .map(|(src, r)| self.finding(*src, r))
            .collect()
    }

    fn finding(&self, src: [u8; 16], reached: &[Reached]) -> Finding {
        let source = format_addr(&src);
        let peers: BTreeSet<String> = reached.iter().map(|r| format_addr(&r.peer)).collect();
        let ports: BTreeSet<u16> = reached.iter().map(|r| r.port).collect();
        let first = reached.iter().map(|r| r.at_ns).min().unwrap_or(0);
        let last = reached.iter().map(|r| r.at_ns).max().unwrap_or(0);
        let sampling = self.sampling.get(&src).copied().unwrap_or(1);
        let shown: Vec<&String> = peers.iter().take(10).collect();
        Finding {
            rule: RULE,
            name: NAME,
            severity: "page",
            subject: source.clone(),
            labels: [
                ("subject".to_string(), source.clone()),
                ("source".to_string(), source.clone()),
            ]
            .into(),
            summary: format!(
                "{source} reached {} inside peers it had never reached, on port {} within {}: {}{}{}",
                peers.len(),
                ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                crate::budget::window_name(self.window_ns),
                shown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if peers.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                },
                if sampling > 1 {
                    format!("; sampled 1 in {sampling}: more may have been missed")
                } else {
                    String::new()
                },
            ),
            evidence: json!({
                "source": source,
                "new_peers": peers,
                "ports": ports,
                "sampling": sampling,
                "thresholds": {"peers": self.peers, "window_ns": self.window_ns},
                "flows": {
                    "filter": format!("src host {source} and ({})",
                        ports.iter().map(|p| format!("dst port {p}")).collect::<Vec<_>>().join(" or ")),
                    "from_ns": first,
                    "to_ns": last.saturating_add(self.window_ns),
                },
            }),
            seen_ns: last,
            quiet_ns: self.quiet_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::flows::{ACK, PSH, RST, SYN};
    use hopscope_schema::ipv4_mapped;

    const M: i64 = 60_000_000_000;

    fn ssh(client: [u8; 4], server: [u8; 4], at_ns: i64, flags: u16) -> FlowEvent {
        FlowEvent {
            end_ns: at_ns + 1_000_000_000,
            start_ns: at_ns,
            point: 1,
            src: ipv4_mapped(client),
            dst: ipv4_mapped(server),
            src_port: 50_000,
            dst_port: 22,
            proto: 6,
            packets: 20,
            bytes: 4_000,
            reverse_packets: None,
            tcp_flags: Some(flags),
            icmp_type: None,
            sampling: 1,
        }
    }

    #[test]
    fn a_host_reaching_new_peers_after_learning_moves_laterally() {
        let mut l = Lateral::new(&LateralConfig::default()).unwrap();
        let inside = Inside::default();
        // an hour of learning: the jump host logs into 30 servers
        let learned: Vec<FlowEvent> = (0..30)
            .map(|h| ssh([10, 0, 0, 2], [10, 2, 0, h], h as i64 * M, SYN | ACK | PSH))
            .collect();
        l.add(&learned, &inside);
        assert!(l.learning(30 * M));
        // then it does again (known), and a workstation reaches six new
        // peers, one of them only with a failed SYN (the scan's)
        let mut later: Vec<FlowEvent> = (0..30)
            .map(|h| {
                ssh(
                    [10, 0, 0, 2],
                    [10, 2, 0, h],
                    70 * M + h as i64,
                    SYN | ACK | PSH,
                )
            })
            .collect();
        later.extend((0..5).map(|h| {
            ssh(
                [10, 1, 0, 9],
                [10, 1, 0, 20 + h],
                71 * M + h as i64,
                SYN | ACK,
            )
        }));
        later.push(ssh([10, 1, 0, 9], [10, 1, 0, 99], 71 * M, SYN));
        // a SYN scan of an open port: the server's SYN-ACK, the client's reset
        let mut open = ssh([10, 1, 0, 98], [10, 1, 0, 9], 71 * M, SYN | ACK);
        (open.src_port, open.dst_port) = (22, 50_000);
        later.push(open);
        later.push(ssh([10, 1, 0, 9], [10, 1, 0, 98], 71 * M, SYN | RST));
        l.add(&later, &inside);
        assert!(!l.learning(70 * M));
        let found = l.evaluate(72 * M);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].subject, "10.1.0.9");
        assert_eq!(found[0].evidence["new_peers"].as_array().unwrap().len(), 5);
        // the window passes: nothing new
        assert!(l.evaluate(90 * M).is_empty());
    }

    #[test]
    fn outside_peers_web_ports_and_learning_raise_nothing() {
        let mut l = Lateral::new(&LateralConfig::default()).unwrap();
        let inside = Inside::default();
        let mut events: Vec<FlowEvent> = (0..20)
            .map(|h| ssh([10, 1, 0, 9], [10, 1, 1, h], h as i64, SYN | ACK))
            .collect();
        events.extend((0..20).map(|h| ssh([10, 1, 0, 9], [203, 0, 113, h], 61 * M, SYN | ACK)));
        let mut web = ssh([10, 1, 0, 9], [10, 1, 2, 1], 61 * M, SYN | ACK);
        web.dst_port = 443;
        events.push(web);
        l.add(&events, &inside);
        assert!(l.evaluate(62 * M).is_empty());
    }
}
