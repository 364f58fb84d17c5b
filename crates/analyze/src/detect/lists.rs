//! Address lists (blocklists): traffic to or from a listed address or
//! network raises an alert per (list, listed address). Files hold one
//! address or CIDR a line, as Spamhaus DROP, FireHOL and most feeds
//! publish them: text after the address (`;` or `#` comments, a second
//! column) is ignored. A file is read again when it changes; a line that
//! is not an address is counted and the first such line named.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::SystemTime;

use hopscope_schema::{Cidr, PrefixTable, format_addr};
use serde::Deserialize;
use serde_json::json;

use super::Finding;
use super::flows::FlowEvent;
use crate::AnalyzeError;

pub const RULE: &str = "blocklist";
const NAME: &str = "HopscopeBlocklist";
/// The alert resolves after this long without traffic to or from the
/// listed address.
pub const QUIET_NS: i64 = 600_000_000_000;

/// `[[detect.blocklist]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ListConfig {
    /// Names the list in alerts (a label).
    pub name: String,
    pub path: PathBuf,
}

/// One list, loaded.
#[derive(Debug)]
pub(crate) struct AddressList {
    name: String,
    path: PathBuf,
    modified: Option<SystemTime>,
    /// Each entry's own text (its network), by network.
    table: PrefixTable<Cidr>,
    bad_lines: u64,
    /// Lines of the version read that are not addresses, and why the file
    /// could not be read the last time it was tried, if it could not.
    lines_problem: Option<String>,
    read_problem: Option<String>,
}

impl AddressList {
    /// Reads the list. A file that cannot be read is an error here (at
    /// start, a mistake in the configuration); lines that are not
    /// addresses are counted and said (`problem`), the others used.
    pub fn open(config: &ListConfig) -> Result<AddressList, AnalyzeError> {
        let mut list = AddressList {
            name: config.name.clone(),
            path: config.path.clone(),
            modified: None,
            table: PrefixTable::default(),
            bad_lines: 0,
            lines_problem: None,
            read_problem: None,
        };
        list.refresh();
        if list.modified.is_none() {
            return Err(AnalyzeError::Setting {
                key: format!("detect.blocklist '{}'", config.name),
                message: list.read_problem.unwrap_or_default(),
            });
        }
        Ok(list)
    }

    /// Reads the file again if it changed since it was read; a file that
    /// cannot be read leaves the list as it was.
    pub fn refresh(&mut self) {
        let read = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .and_then(|modified| {
                if self.modified == Some(modified) {
                    return Ok(None);
                }
                std::fs::read_to_string(&self.path).map(|text| Some((modified, text)))
            });
        match read {
            Ok(None) => self.read_problem = None,
            Ok(Some((modified, text))) => {
                let (table, bad, first_bad) = parse(&text);
                self.table = table;
                self.bad_lines = bad;
                self.modified = Some(modified);
                self.read_problem = None;
                self.lines_problem = first_bad.map(|(line, text)| {
                    format!(
                        "{}: {bad} lines are not addresses, the first line {line}: '{text}'",
                        self.path.display()
                    )
                });
            }
            Err(e) => {
                self.read_problem = Some(format!(
                    "{}: {e} (the list as last read is used)",
                    self.path.display()
                ))
            }
        }
    }

    /// What is wrong with the list now: unreadable, or lines that are not
    /// addresses.
    pub fn problem(&self) -> Option<&str> {
        self.read_problem
            .as_deref()
            .or(self.lines_problem.as_deref())
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn bad_lines(&self) -> u64 {
        self.bad_lines
    }

    /// What these records did with listed addresses: one finding per
    /// listed network touched.
    pub fn check(&self, events: &[FlowEvent]) -> Vec<Finding> {
        if self.table.is_empty() {
            return Vec::new();
        }
        #[derive(Default)]
        struct Hits {
            from_listed: u64,
            to_listed: u64,
            packets: u64,
            bytes: u64,
            peers: std::collections::BTreeSet<[u8; 16]>,
            addresses: std::collections::BTreeSet<[u8; 16]>,
            last_ns: i64,
        }
        let mut hits: HashMap<Cidr, Hits> = HashMap::new();
        for e in events {
            for (listed, peer, to_listed) in [(e.src, e.dst, false), (e.dst, e.src, true)] {
                if let Some(net) = self.table.lookup(listed) {
                    let h = hits.entry(*net).or_default();
                    if to_listed {
                        h.to_listed += 1;
                    } else {
                        h.from_listed += 1;
                    }
                    h.packets = h.packets.saturating_add(e.packets);
                    h.bytes = h.bytes.saturating_add(e.bytes);
                    if h.peers.len() < 20 {
                        h.peers.insert(peer);
                    }
                    if h.addresses.len() < 20 {
                        h.addresses.insert(listed);
                    }
                    h.last_ns = h.last_ns.max(e.end_ns);
                }
            }
        }
        hits.into_iter()
            .map(|(net, h)| {
                let entry = if net.prefix == 128 {
                    format_addr(&net.net.to_be_bytes())
                } else {
                    net.to_string()
                };
                let peers: Vec<String> = h.peers.iter().map(|p| format_addr(p)).collect();
                Finding {
                    rule: RULE,
                    name: NAME,
                    severity: "ticket",
                    subject: format!("{}:{entry}", self.name),
                    labels: [
                        ("subject".to_string(), format!("{}:{entry}", self.name)),
                        ("list".to_string(), self.name.clone()),
                        ("listed".to_string(), entry.clone()),
                    ]
                    .into(),
                    summary: format!(
                        "traffic with {entry} (on list {}): {} flows from it, {} to it, with {}",
                        self.name,
                        h.from_listed,
                        h.to_listed,
                        peers.join(", ")
                    ),
                    evidence: json!({
                        "list": self.name,
                        "listed": entry,
                        "addresses": h.addresses.iter().map(|a| format_addr(a)).collect::<Vec<_>>(),
                        "flows_from_listed": h.from_listed,
                        "flows_to_listed": h.to_listed,
                        "packets": h.packets,
                        "bytes": h.bytes,
                        "peers": peers,
                        "flows": {
                            "filter": if net.prefix == 128 { format!("host {entry}") } else { format!("net {entry}") },
                            "from_ns": h.last_ns.saturating_sub(QUIET_NS),
                            "to_ns": h.last_ns.saturating_add(1),
                        },
                    }),
                    seen_ns: h.last_ns,
                    quiet_ns: QUIET_NS,
                }
            })
            .collect()
    }
}

/// The networks of a list's text, the count of lines that are not, and the
/// first of them (its line number and text).
pub fn parse(text: &str) -> (PrefixTable<Cidr>, u64, Option<(usize, String)>) {
    let mut table = PrefixTable::default();
    let mut bad = 0;
    let mut first_bad = None;
    for (n, line) in text.lines().enumerate() {
        let entry = line
            .split(['#', ';'])
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next()
            .unwrap_or("");
        if entry.is_empty() {
            continue;
        }
        match entry.parse::<Cidr>() {
            Ok(c) => table.insert(c, c),
            Err(_) => {
                bad += 1;
                first_bad.get_or_insert((n + 1, line.trim().to_string()));
            }
        }
    }
    (table, bad, first_bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopscope_schema::ipv4_mapped;

    #[test]
    fn lists_in_the_common_formats() {
        let (t, bad, first) = parse(
            "; Spamhaus DROP List\n192.0.2.0/24 ; SBL1\n# FireHOL\n198.51.100.7\n2001:db8::/32\nnot-an-address\n\n",
        );
        assert_eq!(t.len(), 3);
        assert_eq!(bad, 1);
        assert_eq!(first, Some((6, "not-an-address".into())));
        assert!(t.lookup(ipv4_mapped([192, 0, 2, 9])).is_some());
    }

    #[test]
    fn a_listed_peer_raises_one_finding_per_entry_and_reloads() {
        let dir = std::env::temp_dir().join(format!("hopscope-list-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("drop.txt");
        std::fs::write(&path, "203.0.113.0/24\n").unwrap();
        let mut list = AddressList::open(&ListConfig {
            name: "drop".into(),
            path: path.clone(),
        })
        .unwrap();
        let flow = |src: [u8; 4], dst: [u8; 4]| FlowEvent {
            end_ns: 5,
            start_ns: 5,
            point: 1,
            src: ipv4_mapped(src),
            dst: ipv4_mapped(dst),
            src_port: 1,
            dst_port: 2,
            proto: 6,
            packets: 3,
            bytes: 300,
            reverse_packets: None,
            tcp_flags: None,
            icmp_type: None,
            sampling: 1,
        };
        let found = list.check(&[
            flow([10, 0, 0, 1], [203, 0, 113, 5]),
            flow([203, 0, 113, 9], [10, 0, 0, 2]),
            flow([10, 0, 0, 1], [192, 0, 2, 1]),
        ]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].subject, "drop:203.0.113.0/24");
        assert_eq!(found[0].evidence["flows_to_listed"], 1);
        assert_eq!(found[0].evidence["flows_from_listed"], 1);
        // a new version of the file (a later modification time)
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "192.0.2.1\nbogus\n").unwrap();
        let f = std::fs::File::options().append(true).open(&path).unwrap();
        f.set_modified(SystemTime::now() + std::time::Duration::from_secs(1))
            .unwrap();
        list.refresh();
        let problem = list.problem().unwrap();
        assert!(problem.contains("line 2"), "{problem}");
        let found = list.check(&[flow([10, 0, 0, 1], [192, 0, 2, 1])]);
        assert_eq!(found[0].subject, "drop:192.0.2.1");
        let _ = std::fs::remove_dir_all(dir);
    }
}
