//! Segmentation policy: zones of addresses, intent rules between them, and
//! path rules that the journeys verify. A flow outside the intent is a
//! violation; violations are aggregated into one alert per (rule, client,
//! service), never one per flow. A path rule ("branch to dc must cross
//! branch-fw") is checked on each journey's real path, which no flow
//! record alone can say: a journey between the zones that did not cross
//! the point bypassed it.
//!
//! Flow records are judged in the direction of the connection: a TCP
//! source that sent a SYN and acknowledged nothing opened it; otherwise
//! the side with the lower port is the service (a reply, from port 443 to
//! port 50000, is the same connection as its request), and an ICMP echo
//! reply answers its request. Addresses in no zone
//! are in the zone `outside`; `*` in a rule is any zone.

use std::collections::BTreeMap;

use hopscope_schema::{Cidr, PrefixTable, format_addr};
use serde::Deserialize;
use serde_json::json;

use crate::AnalyzeError;
use crate::detect::flows::Connection;
use crate::detect::{Finding, FlowEvent};
use crate::slo::side_matches;

pub const RULE: &str = "policy";
pub const PATH_RULE: &str = "path-policy";
/// The zone of addresses no zone holds.
pub const OUTSIDE: &str = "outside";
/// A violation's alert resolves after this long without another.
pub const QUIET_NS: i64 = 600_000_000_000;

/// `[policy]` in the configuration file, or a rules file of its own for
/// `hopscope policy check`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicyConfig {
    /// What no rule says: `allow` (the default) or `deny`.
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub zone: Vec<ZoneConfig>,
    /// Intent rules, the first that matches a flow decides.
    #[serde(default)]
    pub rule: Vec<RuleConfig>,
    /// Path rules, each checked on every journey between its zones.
    #[serde(default)]
    pub path: Vec<PathRuleConfig>,
}

/// `[[policy.zone]]`: addresses by network, or the configured networks
/// (`[[serve.networks]]`) by name, role or site.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ZoneConfig {
    pub name: String,
    #[serde(default)]
    pub cidr: Vec<Cidr>,
    #[serde(default)]
    pub networks: Vec<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub site: Option<String>,
}

/// `[[policy.rule]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuleConfig {
    pub name: String,
    pub from: String,
    pub to: String,
    /// `tcp`, `udp`, `icmp`, `icmp6` or a number; any when not given.
    #[serde(default)]
    pub proto: Option<String>,
    /// Service ports: numbers or ranges (`"8000-8080"`); any when empty.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// `allow` or `deny`.
    pub action: String,
}

/// `[[policy.path]]`: traffic between two zones must cross `via` (a node,
/// a point, or alternatives `a|b`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PathRuleConfig {
    pub name: String,
    pub from: String,
    pub to: String,
    pub via: String,
    /// Service ports of the `from` to `to` direction; any when empty.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
}

/// A port or a range of ports.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PortSpec {
    One(u16),
    Text(String),
}

impl PortSpec {
    fn range(&self) -> Option<(u16, u16)> {
        match self {
            PortSpec::One(p) => Some((*p, *p)),
            PortSpec::Text(t) => match t.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                    (a <= b).then_some((a, b))
                }
                None => t.trim().parse().ok().map(|p| (p, p)),
            },
        }
    }
}

/// A configured network as zones see it (`[[serve.networks]]`).
#[derive(Debug, Clone, Copy)]
pub struct Network<'a> {
    pub cidr: Cidr,
    pub name: &'a str,
    pub role: Option<&'a str>,
    pub site: Option<&'a str>,
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    from: Option<usize>,
    to: Option<usize>,
    proto: Option<u8>,
    ports: Vec<(u16, u16)>,
    allow: bool,
}

#[derive(Debug, Clone)]
struct PathRule {
    name: String,
    from: Option<usize>,
    to: Option<usize>,
    via: String,
    ports: Vec<(u16, u16)>,
}

/// A policy ready to judge flows and journeys.
#[derive(Debug, Clone)]
pub struct Policy {
    zones: PrefixTable<usize>,
    /// Zone names by index; the last is `outside`.
    zone_names: Vec<String>,
    rules: Vec<Rule>,
    paths: Vec<PathRule>,
    default_allow: bool,
}

impl Default for Policy {
    /// No zones, no rules: everything allowed.
    fn default() -> Self {
        Policy::compile(&PolicyConfig::default(), &[]).expect("the empty policy compiles")
    }
}

/// What a flow's connection is: its client, its service and the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub client: [u8; 16],
    pub server: [u8; 16],
    pub proto: u8,
    pub port: u16,
    pub from_zone: String,
    pub to_zone: String,
    /// The rule that decided (`default` when none did).
    pub rule: String,
    pub allowed: bool,
}

fn protocol(text: &str) -> Option<u8> {
    match text {
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmp" => Some(1),
        "icmp6" => Some(58),
        "sctp" => Some(132),
        n => n.parse().ok(),
    }
}

pub(crate) fn protocol_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmp6".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

impl Policy {
    /// Checks zones and rules; `networks` are the configured ones zones
    /// may name.
    pub fn compile(c: &PolicyConfig, networks: &[Network<'_>]) -> Result<Policy, AnalyzeError> {
        let bad = |key: String, message: String| AnalyzeError::Setting { key, message };
        let mut zones = PrefixTable::default();
        let mut zone_names: Vec<String> = Vec::new();
        for (i, z) in c.zone.iter().enumerate() {
            let key = format!("policy.zone '{}'", z.name);
            if z.name.is_empty()
                || z.name == "*"
                || z.name == OUTSIDE
                || zone_names.contains(&z.name)
            {
                return Err(bad(
                    key,
                    "a zone needs a name of its own (not '*' or 'outside')".into(),
                ));
            }
            let mut cidrs = z.cidr.clone();
            for n in &z.networks {
                let found: Vec<Cidr> = networks
                    .iter()
                    .filter(|m| m.name == n)
                    .map(|m| m.cidr)
                    .collect();
                if found.is_empty() {
                    return Err(bad(key, format!("no network '{n}' in [[serve.networks]]")));
                }
                cidrs.extend(found);
            }
            for (tag, value) in [("role", &z.role), ("site", &z.site)] {
                if let Some(v) = value {
                    let found: Vec<Cidr> = networks
                        .iter()
                        .filter(|m| if tag == "role" { m.role } else { m.site } == Some(v.as_str()))
                        .map(|m| m.cidr)
                        .collect();
                    if found.is_empty() {
                        return Err(bad(
                            key,
                            format!("no network of [[serve.networks]] has {tag} '{v}'"),
                        ));
                    }
                    cidrs.extend(found);
                }
            }
            if cidrs.is_empty() {
                return Err(bad(key, "a zone needs cidr, networks, role or site".into()));
            }
            for c in cidrs {
                zones.insert(c, i);
            }
            zone_names.push(z.name.clone());
        }
        zone_names.push(OUTSIDE.into());
        let zone = |key: &str, name: &str| -> Result<Option<usize>, AnalyzeError> {
            if name == "*" {
                return Ok(None);
            }
            zone_names
                .iter()
                .position(|z| z == name)
                .map(Some)
                .ok_or_else(|| bad(key.into(), format!("no zone '{name}'")))
        };
        let ports = |key: &str, specs: &[PortSpec]| -> Result<Vec<(u16, u16)>, AnalyzeError> {
            specs
                .iter()
                .map(|p| {
                    p.range().ok_or_else(|| {
                        bad(
                            key.into(),
                            format!("ports: '{p:?}' is not a port or a range 'a-b'"),
                        )
                    })
                })
                .collect()
        };
        // a rule's name labels its alerts and verdicts: one of its own each
        let mut names: Vec<String> = Vec::new();
        let mut named = |key: &str, name: &str| -> Result<(), AnalyzeError> {
            if name.trim().is_empty() || name == "default" || names.iter().any(|n| n == name) {
                return Err(bad(
                    key.into(),
                    "a rule needs a name of its own: not empty, not 'default', not another rule's or path's".into(),
                ));
            }
            names.push(name.to_string());
            Ok(())
        };
        let mut rules = Vec::new();
        for r in &c.rule {
            let key = format!("policy.rule '{}'", r.name);
            named(&key, &r.name)?;
            let allow = match r.action.as_str() {
                "allow" => true,
                "deny" => false,
                other => return Err(bad(key, format!("action '{other}': allow or deny"))),
            };
            rules.push(Rule {
                name: r.name.clone(),
                from: zone(&key, &r.from)?,
                to: zone(&key, &r.to)?,
                proto: match &r.proto {
                    None => None,
                    Some(p) => {
                        Some(protocol(p).ok_or_else(|| bad(key.clone(), format!("proto '{p}'")))?)
                    }
                },
                ports: ports(&key, &r.ports)?,
                allow,
            });
        }
        let mut paths = Vec::new();
        for p in &c.path {
            let key = format!("policy.path '{}'", p.name);
            named(&key, &p.name)?;
            if p.via.trim().is_empty() {
                return Err(bad(key, "via names the node or point to cross".into()));
            }
            paths.push(PathRule {
                name: p.name.clone(),
                from: zone(&key, &p.from)?,
                to: zone(&key, &p.to)?,
                via: p.via.clone(),
                ports: ports(&key, &p.ports)?,
            });
        }
        let default_allow = match c.default.as_deref().unwrap_or("allow") {
            "allow" => true,
            "deny" => false,
            other => {
                return Err(bad(
                    "policy.default".into(),
                    format!("'{other}': allow or deny"),
                ));
            }
        };
        Ok(Policy {
            zones,
            zone_names,
            rules,
            paths,
            default_allow,
        })
    }

    /// Whether there is anything to judge.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.paths.is_empty() && self.default_allow
    }

    fn zone_of(&self, addr: [u8; 16]) -> usize {
        self.zones
            .lookup(addr)
            .copied()
            .unwrap_or(self.zone_names.len() - 1)
    }

    /// The connection a flow record is part of, and what the intent says
    /// of it. ICMP has no service port (0).
    pub fn judge(&self, e: &FlowEvent) -> Verdict {
        let Connection {
            client,
            server,
            port,
            ..
        } = e.connection();
        let (from, to) = (self.zone_of(client), self.zone_of(server));
        let rule = self.rules.iter().find(|r| {
            r.from.is_none_or(|z| z == from)
                && r.to.is_none_or(|z| z == to)
                && r.proto.is_none_or(|p| p == e.proto)
                && (r.ports.is_empty() || r.ports.iter().any(|(a, b)| (*a..=*b).contains(&port)))
        });
        Verdict {
            client,
            server,
            proto: e.proto,
            port,
            from_zone: self.zone_names[from].clone(),
            to_zone: self.zone_names[to].clone(),
            rule: rule.map_or_else(|| "default".to_string(), |r| r.name.clone()),
            allowed: rule.map_or(self.default_allow, |r| r.allow),
        }
    }

    /// The violations among flow records, one finding per (rule, client,
    /// service) with its counts.
    pub(crate) fn violations(&self, events: &[FlowEvent]) -> Vec<Finding> {
        let mut by_key: BTreeMap<ViolationKey, Tally> = BTreeMap::new();
        for e in events {
            let v = self.judge(e);
            if v.allowed {
                continue;
            }
            let t = by_key
                .entry((v.rule.clone(), v.client, v.server, v.proto, v.port))
                .or_insert_with(|| Tally::new(&v));
            t.add(e.packets, e.bytes, e.end_ns);
        }
        by_key
            .into_values()
            .map(|t| {
                let service = format!("{}:{}/{}", format_addr(&t.server), t.port, protocol_name(t.proto));
                let client = format_addr(&t.client);
                let subject = format!("{}|{client}>{service}", t.rule);
                Finding {
                    rule: RULE,
                    name: "HopscopePolicyViolation",
                    severity: "ticket",
                    subject: subject.clone(),
                    labels: [
                        ("subject".to_string(), subject),
                        ("policy_rule".to_string(), t.rule.clone()),
                        ("source".to_string(), client.clone()),
                        ("service".to_string(), service.clone()),
                    ]
                    .into(),
                    summary: format!(
                        "{client} ({}) reached {service} ({}), which {} denies: {} flows, {} bytes",
                        t.from_zone,
                        t.to_zone,
                        if t.rule == "default" { "the default".to_string() } else { format!("rule '{}'", t.rule) },
                        t.flows,
                        t.bytes
                    ),
                    evidence: json!({
                        "policy_rule": t.rule,
                        "client": client,
                        "service": service,
                        "from_zone": t.from_zone,
                        "to_zone": t.to_zone,
                        "flows_seen": t.flows,
                        "packets": t.packets,
                        "bytes": t.bytes,
                        "flows": {
                            "filter": format!("host {client} and host {} and port {}", format_addr(&t.server), t.port),
                            "from_ns": t.first_ns,
                            "to_ns": t.last_ns.saturating_add(1),
                        },
                    }),
                    seen_ns: t.last_ns,
                    quiet_ns: QUIET_NS,
                }
            })
            .collect()
    }

    /// Whether any path rule is configured (journeys are then read).
    pub fn has_path_rules(&self) -> bool {
        !self.paths.is_empty()
    }

    /// The path rules a journey is under, and for each whether its path
    /// crossed the point.
    pub fn check_path<'a>(
        &'a self,
        j: &JourneyPath<'_>,
    ) -> impl Iterator<Item = (&'a str, &'a str, bool)> {
        let (src, dst) = (self.zone_of(j.src), self.zone_of(j.dst));
        let hops: Vec<&str> = j.path.split(" > ").collect();
        self.paths
            .iter()
            .filter(move |r| {
                let forward = r.from.is_none_or(|z| z == src)
                    && r.to.is_none_or(|z| z == dst)
                    && (r.ports.is_empty()
                        || r.ports.iter().any(|(a, b)| (*a..=*b).contains(&j.dst_port)));
                // replies cross the same point; their port is the client's
                let back = r.ports.is_empty()
                    && r.from.is_none_or(|z| z == dst)
                    && r.to.is_none_or(|z| z == src);
                forward || back
            })
            .map(move |r| {
                let crossed = hops.iter().any(|h| side_matches(&r.via, h));
                (r.name.as_str(), r.via.as_str(), crossed)
            })
    }

    /// The journeys that bypassed a path rule's point, one finding per
    /// (rule, source, destination service). A journey that lost packets
    /// or telemetry proves nothing (its path may end before the point, or
    /// the point's report be lost) and is counted apart.
    pub(crate) fn bypasses(&self, journeys: &[JourneyPath<'_>]) -> (Vec<Finding>, u64) {
        let mut unproven = 0;
        let mut by_key: BTreeMap<ViolationKey, Tally> = BTreeMap::new();
        for j in journeys {
            for (rule, via, crossed) in self.check_path(j) {
                if crossed {
                    continue;
                }
                if j.unproven {
                    unproven += 1;
                    continue;
                }
                let v = Verdict {
                    client: j.src,
                    server: j.dst,
                    proto: 0,
                    port: j.dst_port,
                    from_zone: self.zone_names[self.zone_of(j.src)].clone(),
                    to_zone: self.zone_names[self.zone_of(j.dst)].clone(),
                    rule: rule.to_string(),
                    allowed: false,
                };
                let t = by_key
                    .entry((rule.to_string(), j.src, j.dst, 0, j.dst_port))
                    .or_insert_with(|| Tally {
                        via: via.to_string(),
                        ..Tally::new(&v)
                    });
                t.add(j.packets, j.bytes, j.at_ns);
                t.paths.insert(j.path.to_string());
            }
        }
        let findings = by_key
            .into_values()
            .map(|t| {
                let via = t.via.clone();
                let (src, dst) = (format_addr(&t.client), format_addr(&t.server));
                let subject = format!("{}|{src}>{dst}:{}", t.rule, t.port);
                let paths: Vec<&String> = t.paths.iter().take(5).collect();
                Finding {
                    rule: PATH_RULE,
                    name: "HopscopePathBypass",
                    severity: "ticket",
                    subject: subject.clone(),
                    labels: [
                        ("subject".to_string(), subject),
                        ("policy_rule".to_string(), t.rule.clone()),
                        ("source".to_string(), src.clone()),
                        ("via".to_string(), via.clone()),
                    ]
                    .into(),
                    summary: format!(
                        "{src} ({}) to {dst}:{} ({}) did not cross {via}, as path rule '{}' requires: {} journeys, by {}",
                        t.from_zone,
                        t.port,
                        t.to_zone,
                        t.rule,
                        t.flows,
                        paths.iter().map(|p| p.as_str()).collect::<Vec<_>>().join("; ")
                    ),
                    evidence: json!({
                        "policy_rule": t.rule,
                        "via": via,
                        "source": src,
                        "destination": dst,
                        "port": t.port,
                        "from_zone": t.from_zone,
                        "to_zone": t.to_zone,
                        "paths_taken": paths,
                        "journeys_seen": t.flows,
                        "journeys": {
                            "filter": format!("src host {src} and dst host {dst}"),
                            "from_ns": t.first_ns,
                            "to_ns": t.last_ns.saturating_add(1),
                        },
                    }),
                    seen_ns: t.last_ns,
                    quiet_ns: QUIET_NS,
                }
            })
            .collect();
        (findings, unproven)
    }
}

/// What path rules read of a journey.
#[derive(Debug, Clone, Copy)]
pub struct JourneyPath<'a> {
    pub at_ns: i64,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub dst_port: u16,
    /// Points in path order, `a > b|c > d`.
    pub path: &'a str,
    pub packets: u64,
    pub bytes: u64,
    /// Its exporters lost telemetry, or the network lost some of its
    /// packets: a point missing from its path may have been on the way of
    /// what is missing, so a bypass is not proven.
    pub unproven: bool,
}

/// What violations are aggregated by: the rule, the client, the server,
/// the protocol (0 for journeys) and the service port.
type ViolationKey = (String, [u8; 16], [u8; 16], u8, u16);

/// A violation's counts.
#[derive(Debug, Clone)]
struct Tally {
    /// The point a path rule requires (empty for intent rules).
    via: String,
    rule: String,
    client: [u8; 16],
    server: [u8; 16],
    proto: u8,
    port: u16,
    from_zone: String,
    to_zone: String,
    flows: u64,
    packets: u64,
    bytes: u64,
    first_ns: i64,
    last_ns: i64,
    paths: std::collections::BTreeSet<String>,
}

impl Tally {
    fn new(v: &Verdict) -> Tally {
        Tally {
            via: String::new(),
            rule: v.rule.clone(),
            client: v.client,
            server: v.server,
            proto: v.proto,
            port: v.port,
            from_zone: v.from_zone.clone(),
            to_zone: v.to_zone.clone(),
            flows: 0,
            packets: 0,
            bytes: 0,
            first_ns: i64::MAX,
            last_ns: i64::MIN,
            paths: Default::default(),
        }
    }

    fn add(&mut self, packets: u64, bytes: u64, at_ns: i64) {
        self.flows += 1;
        self.packets = self.packets.saturating_add(packets);
        self.bytes = self.bytes.saturating_add(bytes);
        self.first_ns = self.first_ns.min(at_ns);
        self.last_ns = self.last_ns.max(at_ns);
    }
}

/// The journeys of a batch of the journeys table, as path rules read them.
pub fn read_journeys(
    batch: &arrow_array::RecordBatch,
) -> Result<Vec<JourneyPath<'_>>, AnalyzeError> {
    use arrow_array::Array;
    use arrow_array::types::{UInt16Type, UInt64Type};
    let times = crate::columns::times(batch)?;
    let address = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| {
                c.as_any()
                    .downcast_ref::<arrow_array::FixedSizeBinaryArray>()
            })
            .ok_or_else(|| AnalyzeError::Rows(format!("no address column {name}")))
    };
    let (src, dst) = (address("src_addr")?, address("dst_addr")?);
    let port = crate::columns::primitive::<UInt16Type>(batch, "dst_port")?;
    let packets = crate::columns::primitive::<UInt64Type>(batch, "packets")?;
    let bytes = crate::columns::primitive::<UInt64Type>(batch, "bytes")?;
    let lost = crate::columns::primitive::<UInt64Type>(batch, "lost")?;
    let path = crate::columns::text(batch, "path")?;
    let flags = crate::columns::text(batch, "flags")?;
    let addr = |a: &arrow_array::FixedSizeBinaryArray, i: usize| -> Option<[u8; 16]> {
        (!a.is_null(i))
            .then(|| a.value(i).try_into().ok())
            .flatten()
    };
    Ok((0..batch.num_rows())
        .filter_map(|i| {
            Some(JourneyPath {
                at_ns: times.value(i),
                src: addr(src, i)?,
                dst: addr(dst, i)?,
                dst_port: if port.is_null(i) { 0 } else { port.value(i) },
                path: if path.is_null(i) { "" } else { path.value(i) },
                packets: if packets.is_null(i) {
                    0
                } else {
                    packets.value(i)
                },
                bytes: if bytes.is_null(i) { 0 } else { bytes.value(i) },
                // no path, packets lost or telemetry lost: no bypass proven
                unproven: path.is_null(i)
                    || path.value(i).is_empty()
                    || (!lost.is_null(i) && lost.value(i) > 0)
                    || (!flags.is_null(i)
                        && flags.value(i).split(',').any(|f| f == "telemetry-loss")),
            })
        })
        .collect())
}

/// The columns of the journeys table path rules read.
pub const JOURNEY_COLUMNS: &[&str] = &[
    "src_addr", "dst_addr", "dst_port", "packets", "bytes", "lost", "path", "flags",
];

/// What a policy did, or would have done, over a range: per rule the
/// connections it decided, per path rule the journeys it checked.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PolicyReport {
    pub rules: Vec<RuleOutcome>,
    pub paths: Vec<PathOutcome>,
    pub flows: u64,
    pub journeys: u64,
}

/// One intent rule (or `default`) over a range.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleOutcome {
    pub rule: String,
    pub action: &'static str,
    pub flows: u64,
    pub bytes: u64,
    /// Distinct (client, service) connections.
    pub connections: u64,
    /// The busiest connections: `client (zone) > service (zone)` and flows.
    pub examples: Vec<(String, u64)>,
}

/// One path rule over a range.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PathOutcome {
    pub rule: String,
    pub via: String,
    pub journeys: u64,
    pub crossed: u64,
    pub bypassed: u64,
    /// Journeys that did not cross but lost packets or telemetry.
    pub unproven: u64,
    /// The busiest bypassing (source > destination:port, path) and journeys.
    pub examples: Vec<(String, u64)>,
}

impl Policy {
    /// Judges flows and journeys into a report (what `policy check` prints).
    pub fn report(
        &self,
        flows: &[FlowEvent],
        journeys: &[JourneyPath<'_>],
        into: &mut ReportBuilder,
    ) {
        into.flows += flows.len() as u64;
        into.journeys += journeys.len() as u64;
        for e in flows {
            let v = self.judge(e);
            let r = into.rules.entry(v.rule.clone()).or_default();
            r.allowed = v.allowed;
            r.flows += 1;
            r.bytes = r.bytes.saturating_add(e.bytes);
            let key = format!(
                "{} ({}) > {}:{}/{} ({})",
                format_addr(&v.client),
                v.from_zone,
                format_addr(&v.server),
                v.port,
                protocol_name(v.proto),
                v.to_zone
            );
            *r.connections.entry(key).or_default() += 1;
        }
        for j in journeys {
            for (rule, via, crossed) in self.check_path(j) {
                let p = into.paths.entry(rule.to_string()).or_default();
                p.via = via.to_string();
                p.journeys += 1;
                if crossed {
                    p.crossed += 1;
                } else if j.unproven {
                    p.unproven += 1;
                } else {
                    p.bypassed += 1;
                    let key = format!(
                        "{} > {}:{} by {}",
                        format_addr(&j.src),
                        format_addr(&j.dst),
                        j.dst_port,
                        j.path
                    );
                    *p.examples.entry(key).or_default() += 1;
                }
            }
        }
    }
}

/// A [`PolicyReport`] being gathered.
#[derive(Debug, Default)]
pub struct ReportBuilder {
    flows: u64,
    journeys: u64,
    rules: BTreeMap<String, RuleTally>,
    paths: BTreeMap<String, PathTally>,
}

#[derive(Debug, Default)]
struct RuleTally {
    allowed: bool,
    flows: u64,
    bytes: u64,
    connections: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct PathTally {
    via: String,
    journeys: u64,
    crossed: u64,
    unproven: u64,
    bypassed: u64,
    examples: BTreeMap<String, u64>,
}

fn busiest(counts: BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(10);
    v
}

impl ReportBuilder {
    /// The report, rules in the policy's order (`default` last).
    pub fn finish(mut self, policy: &Policy) -> PolicyReport {
        let mut order: Vec<String> = policy.rules.iter().map(|r| r.name.clone()).collect();
        order.push("default".into());
        let rules = order
            .into_iter()
            .filter_map(|name| {
                let t = self.rules.remove(&name)?;
                Some(RuleOutcome {
                    rule: name,
                    action: if t.allowed { "allow" } else { "deny" },
                    flows: t.flows,
                    bytes: t.bytes,
                    connections: t.connections.len() as u64,
                    examples: busiest(t.connections),
                })
            })
            .collect();
        let paths = policy
            .paths
            .iter()
            .map(|r| {
                let t = self.paths.remove(&r.name).unwrap_or_default();
                PathOutcome {
                    rule: r.name.clone(),
                    via: r.via.clone(),
                    journeys: t.journeys,
                    crossed: t.crossed,
                    bypassed: t.bypassed,
                    unproven: t.unproven,
                    examples: busiest(t.examples),
                }
            })
            .collect();
        PolicyReport {
            rules,
            paths,
            flows: self.flows,
            journeys: self.journeys,
        }
    }
}

/// Runs `policy` over the stored flows and journeys of `[from_ns, to_ns)`:
/// what it allowed or denied, and which journeys bypassed its points (a
/// proposed rule set run over the past: what-if).
pub fn policy_report(
    store: &dyn hopscope_store::Backend,
    policy: &Policy,
    from_ns: i64,
    to_ns: i64,
) -> Result<PolicyReport, AnalyzeError> {
    use hopscope_store::Table;
    let mut builder = ReportBuilder::default();
    let mut failed = None;
    store.scan(
        Table::Flows,
        crate::detect::flows::COLUMNS,
        from_ns,
        to_ns,
        &mut |b| {
            match crate::detect::flows::read(&b) {
                Ok((events, _)) => policy.report(&events, &[], &mut builder),
                Err(e) => failed = Some(e),
            }
            Ok(())
        },
    )?;
    if policy.has_path_rules() {
        store.scan(Table::Journeys, JOURNEY_COLUMNS, from_ns, to_ns, &mut |b| {
            match read_journeys(&b) {
                Ok(j) => policy.report(&[], &j, &mut builder),
                Err(e) => failed = Some(e),
            }
            Ok(())
        })?;
    }
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(builder.finish(policy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopscope_schema::ipv4_mapped;

    fn policy() -> Policy {
        let config: PolicyConfig = toml::from_str(
            r#"
            default = "deny"
            [[zone]]
            name = "branch"
            networks = ["branch-lan"]
            [[zone]]
            name = "dc"
            cidr = ["10.2.0.0/16"]
            [[rule]]
            name = "branch-web"
            from = "branch"
            to = "dc"
            proto = "tcp"
            ports = [80, 443, "8000-8080"]
            action = "allow"
            [[rule]]
            name = "no-telnet"
            from = "*"
            to = "*"
            ports = [23]
            action = "deny"
            [[rule]]
            name = "internet"
            from = "*"
            to = "outside"
            action = "allow"
            [[path]]
            name = "through-the-firewall"
            from = "branch"
            to = "dc"
            via = "branch-fw"
            "#,
        )
        .unwrap();
        Policy::compile(
            &config,
            &[Network {
                cidr: "10.1.0.0/16".parse().unwrap(),
                name: "branch-lan",
                role: None,
                site: Some("paris"),
            }],
        )
        .unwrap()
    }

    fn flow(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> FlowEvent {
        FlowEvent {
            end_ns: 1_000,
            start_ns: 1_000,
            point: 1,
            src: ipv4_mapped(src),
            dst: ipv4_mapped(dst),
            src_port: sport,
            dst_port: dport,
            proto: 6,
            packets: 10,
            bytes: 1_000,
            reverse_packets: None,
            tcp_flags: None,
            icmp_type: None,
            sampling: 1,
        }
    }

    #[test]
    fn the_first_rule_that_matches_decides_and_replies_are_their_connection() {
        let p = policy();
        let web = p.judge(&flow([10, 1, 0, 5], 50_000, [10, 2, 0, 1], 443));
        assert!(web.allowed);
        assert_eq!((web.rule.as_str(), web.port), ("branch-web", 443));
        // the reply of the same connection, judged in its direction
        let reply = p.judge(&flow([10, 2, 0, 1], 443, [10, 1, 0, 5], 50_000));
        assert_eq!(reply, web);
        let ssh = p.judge(&flow([10, 1, 0, 5], 50_000, [10, 2, 0, 1], 22));
        assert!(!ssh.allowed);
        assert_eq!(ssh.rule, "default");
        assert!(
            p.judge(&flow([10, 1, 0, 5], 50_000, [192, 0, 2, 1], 443))
                .allowed
        );
        let telnet = p.judge(&flow([10, 1, 0, 5], 50_000, [192, 0, 2, 1], 23));
        assert_eq!((telnet.rule.as_str(), telnet.allowed), ("no-telnet", false));
        assert_eq!(telnet.to_zone, "outside");
    }

    #[test]
    fn violations_are_one_finding_per_client_and_service() {
        let p = policy();
        let events: Vec<FlowEvent> = (0..50)
            .map(|i| flow([10, 1, 0, 5], 40_000 + i, [10, 2, 0, 1], 22))
            .chain((0..5).map(|i| flow([10, 1, 0, 6], 40_000 + i, [10, 2, 0, 1], 22)))
            .collect();
        let found = p.violations(&events);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].evidence["flows_seen"], 50);
        assert_eq!(found[0].labels["service"], "10.2.0.1:22/tcp");
    }

    #[test]
    fn a_journey_that_missed_the_firewall_bypassed_it_unless_it_lost_packets_or_telemetry() {
        let p = policy();
        let journey = |path, unproven| JourneyPath {
            at_ns: 5,
            src: ipv4_mapped([10, 1, 0, 5]),
            dst: ipv4_mapped([10, 2, 0, 1]),
            dst_port: 443,
            path,
            packets: 10,
            bytes: 1_000,
            unproven,
        };
        let (found, unproven) = p.bypasses(&[
            journey("branch-fw:lan > branch-fw:wan > isp-pe:ge-0/0/1", false),
            journey(
                "branch-sw:1 > isp-pe:ge-0/0/1 > core-a:et-1|core-b:et-1",
                false,
            ),
            journey("branch-sw:1 > isp-pe:ge-0/0/1", true),
        ]);
        assert_eq!(unproven, 1);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].summary.contains("did not cross branch-fw"),
            "{}",
            found[0].summary
        );
    }

    #[test]
    fn mistakes_name_the_rule_and_the_key() {
        let bad = |text: &str| {
            let c: PolicyConfig = toml::from_str(text).unwrap();
            Policy::compile(&c, &[]).unwrap_err().to_string()
        };
        assert!(
            bad("[[rule]]\nname='r'\nfrom='nowhere'\nto='*'\naction='allow'")
                .contains("policy.rule 'r': no zone 'nowhere'")
        );
        assert!(
            bad("[[rule]]\nname='r'\nfrom='*'\nto='*'\naction='permit'").contains("allow or deny")
        );
        assert!(bad("[[zone]]\nname='z'\nnetworks=['lan']").contains("no network 'lan'"));
        assert!(
            bad("[[rule]]\nname='r'\nfrom='*'\nto='*'\nports=['9-1']\naction='deny'")
                .contains("ports")
        );
        // a rule's name labels its alerts: none empty, none twice
        let rule =
            |name: &str| format!("[[rule]]\nname='{name}'\nfrom='*'\nto='*'\naction='deny'\n");
        for text in [rule(""), rule("default"), rule("r") + &rule("r")] {
            assert!(bad(&text).contains("a name of its own"), "{text}");
        }
        assert!(bad("[[path]]\nname=''\nfrom='*'\nto='*'\nvia='fw'").contains("a name of its own"));
    }
}
