//! Floods: a destination receiving more packets, bits or new flows a second
//! than it should (volumetric DDoS), or a storm of half-open connections
//! (SYN flood). The defaults are FastNetMon's per-host thresholds: 20,000
//! packets, 1 Gb/s or 3,500 flows a second; a SYN flood is 1,000 flows of
//! SYNs only a second, half of the destination's flows at least.
//!
//! Packets and bits count what is not an established TCP connection (UDP,
//! ICMP, TCP without an acknowledgement): a backup at line rate is no
//! flood, a UDP or SYN flood is. Rates are of scaled volumes (sampling applied), over a sliding window
//! of whole seconds by the flows' own times: a record's packets are spread
//! over the seconds it lasted, so a long flow exported at once does not
//! look like a burst. Each observation point's view is kept apart and the
//! busiest one judged: five routers exporting one flood are one flood.

use std::collections::VecDeque;

use super::HashMap;

use hopscope_schema::format_addr;
use serde::Deserialize;
use serde_json::json;

use super::Finding;
use super::flows::{ACK, FlowEvent};
use super::scan::duration;
use crate::AnalyzeError;

pub const RULE: &str = "flood";
const NAME: &str = "HopscopeFlood";
const SECOND: i64 = 1_000_000_000;
/// Destinations (times points) followed at most; sources kept per second.
const MAX_DESTINATIONS: usize = 100_000;
const MAX_SOURCES: usize = 64;
/// The fewest seconds a rate is averaged over.
const MIN_SECONDS: i64 = 3;
/// How often (event time) the seconds out of every window are forgotten.
const SWEEP_NS: i64 = 10_000_000_000;

/// `[detect.flood]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FloodConfig {
    /// Rates are averaged over this window (whole seconds).
    #[serde(default = "default_window")]
    pub window: String,
    /// Packets a second to one destination.
    #[serde(default = "default_pps")]
    pub pps: u64,
    /// Bits a second to one destination.
    #[serde(default = "default_bps")]
    pub bps: u64,
    /// New flows a second to one destination.
    #[serde(default = "default_flows")]
    pub flows: u64,
    /// Flows of SYNs only a second (a SYN flood)...
    #[serde(default = "default_syn")]
    pub syn: u64,
    /// ...being at least this share of the destination's flows.
    #[serde(default = "default_syn_share")]
    pub syn_share: f64,
    /// The alert resolves after this long under every threshold.
    #[serde(default = "default_quiet")]
    pub quiet: String,
}

fn default_window() -> String {
    "10s".into()
}
fn default_pps() -> u64 {
    20_000
}
fn default_bps() -> u64 {
    1_000_000_000
}
fn default_flows() -> u64 {
    3_500
}
fn default_syn() -> u64 {
    1_000
}
fn default_syn_share() -> f64 {
    0.5
}
fn default_quiet() -> String {
    "1m".into()
}

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig {
            window: default_window(),
            pps: default_pps(),
            bps: default_bps(),
            flows: default_flows(),
            syn: default_syn(),
            syn_share: default_syn_share(),
            quiet: default_quiet(),
        }
    }
}

/// One second of traffic to a destination at a point.
#[derive(Debug, Clone, Default)]
struct Tally {
    packets: f64,
    bytes: f64,
    flows: u64,
    syn_flows: u64,
    sampling: u64,
    /// Packets by source, the first [`MAX_SOURCES`] sources; the rest
    /// counted together.
    sources: HashMap<[u8; 16], f64>,
    other_sources: u64,
}

#[derive(Debug, Default)]
struct Seconds {
    /// (second, tally), oldest first.
    tallies: VecDeque<(i64, Tally)>,
}

impl Seconds {
    /// Forgets the seconds before `second`.
    fn forget_before(&mut self, second: i64) {
        while self.tallies.front().is_some_and(|(sec, _)| *sec < second) {
            self.tallies.pop_front();
        }
    }

    fn at(&mut self, second: i64) -> &mut Tally {
        let i = match self.tallies.binary_search_by_key(&second, |(s, _)| *s) {
            Ok(i) => i,
            Err(i) => {
                self.tallies.insert(i, (second, Tally::default()));
                i
            }
        };
        &mut self.tallies[i].1
    }
}

/// The flood detection's state: recent seconds by destination and point.
#[derive(Debug)]
pub(super) struct Floods {
    window_s: i64,
    quiet_ns: i64,
    pps: f64,
    bps: f64,
    flows: f64,
    syn: f64,
    syn_share: f64,
    by_destination: HashMap<([u8; 16], u64), Seconds>,
    /// The destinations (and points) given traffic since the last
    /// evaluation: only their rates can have risen.
    touched: std::collections::HashSet<([u8; 16], u64), foldhash::fast::RandomState>,
    /// The last evaluation that forgot the seconds out of every window.
    swept_ns: i64,
    untracked: u64,
}

impl Floods {
    pub fn new(c: &FloodConfig) -> Result<Floods, AnalyzeError> {
        let window_ns = duration("detect.flood.window", &c.window)?;
        if !(0.0..=1.0).contains(&c.syn_share) {
            return Err(AnalyzeError::Setting {
                key: "detect.flood.syn-share".into(),
                message: "a share between 0 and 1".into(),
            });
        }
        Ok(Floods {
            window_s: (window_ns / SECOND).max(1),
            quiet_ns: duration("detect.flood.quiet", &c.quiet)?,
            pps: c.pps as f64,
            bps: c.bps as f64,
            flows: c.flows as f64,
            syn: c.syn as f64,
            syn_share: c.syn_share,
            by_destination: HashMap::default(),
            touched: Default::default(),
            swept_ns: i64::MIN,
            untracked: 0,
        })
    }

    pub fn quiet_ns(&self) -> i64 {
        self.quiet_ns
    }

    pub fn tracked(&self) -> u64 {
        self.by_destination.len() as u64
    }

    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    pub fn add(&mut self, events: &[FlowEvent]) {
        for e in events {
            let key = (e.dst, e.point);
            if !self.by_destination.contains_key(&key)
                && self.by_destination.len() >= MAX_DESTINATIONS
            {
                self.untracked += 1;
                continue;
            }
            self.touched.insert(key);
            let seconds = self.by_destination.entry(key).or_default();
            let first = e.start_ns.div_euclid(SECOND);
            let last = e.end_ns.div_euclid(SECOND);
            let span = (last - first + 1) as f64;
            // an established TCP transfer (a backup at line rate) is not a
            // flood: its packets count for no volumetric threshold
            let volume = if e.proto == 6 && e.tcp_flags.is_some_and(|f| f & ACK != 0) {
                0.0
            } else {
                1.0
            };
            // only the seconds a window can still hold
            for second in first.max(last - self.window_s)..=last {
                let t = seconds.at(second);
                t.packets += volume * e.packets as f64 / span;
                t.bytes += volume * e.bytes as f64 / span;
                t.sampling = t.sampling.max(e.sampling);
                if second == last {
                    t.flows += e.sampling;
                    if e.syn_only() {
                        t.syn_flows += e.sampling;
                    }
                }
                let full = t.sources.len() >= MAX_SOURCES;
                match t.sources.entry(e.src) {
                    std::collections::hash_map::Entry::Occupied(mut p) => {
                        *p.get_mut() += e.packets as f64 / span
                    }
                    std::collections::hash_map::Entry::Vacant(_) if full => t.other_sources += 1,
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(e.packets as f64 / span);
                    }
                }
            }
        }
    }

    /// Rates over the window of whole seconds before `now_ns`; the
    /// destinations flooded, each at its busiest point.
    pub fn evaluate(&mut self, now_ns: i64) -> Vec<Finding> {
        let until = now_ns.div_euclid(SECOND);
        let from = until.saturating_sub(self.window_s);
        // each point's rates over a threshold, by destination
        let mut over: Vec<([u8; 16], Rates)> = Vec::new();
        let limits = (self.pps, self.bps, self.flows, self.syn);
        if now_ns.saturating_sub(self.swept_ns) >= SWEEP_NS {
            self.by_destination.retain(|_, s| {
                s.forget_before(from);
                !s.tallies.is_empty()
            });
            self.swept_ns = now_ns;
        }
        for key in std::mem::take(&mut self.touched) {
            let Some(s) = self.by_destination.get_mut(&key) else {
                continue;
            };
            s.forget_before(from);
            let window: Vec<&Tally> = s
                .tallies
                .iter()
                .filter(|(sec, _)| *sec < until)
                .map(|(_, t)| t)
                .collect();
            if let Some((first, _)) = s.tallies.front() {
                // traffic that began within the window is averaged over
                // the seconds it has lasted (3 at least): a flood is
                // judged as its first seconds arrive, not once it has
                // filled the window
                let lasted = until
                    .saturating_sub(*first)
                    .clamp(MIN_SECONDS.min(self.window_s), self.window_s);
                let r = Rates::of(&window, lasted as f64, key.1);
                if exceeds(&r, &limits) {
                    over.push((key.0, r));
                }
            }
            // the current second is not whole: judged again next time
            if s.tallies.back().is_some_and(|(sec, _)| *sec >= until) {
                self.touched.insert(key);
            }
        }
        // per destination, the busiest point whose rates make a flood
        // (the same point whatever order the points were judged in)
        over.sort_by(|(a, x), (b, y)| {
            a.cmp(b)
                .then(y.packets_per_s.total_cmp(&x.packets_per_s))
                .then(x.point.cmp(&y.point))
        });
        let at_ns = until.saturating_sub(1).saturating_mul(SECOND);
        let mut findings: Vec<Finding> = Vec::new();
        let mut judged: Option<[u8; 16]> = None;
        for (dst, mut r) in over {
            if judged == Some(dst) {
                continue;
            }
            // who sends it, for the destinations over a threshold only
            if let Some(s) = self.by_destination.get(&(dst, r.point)) {
                for (_, t) in s.tallies.iter().filter(|(sec, _)| *sec < until) {
                    for (src, p) in &t.sources {
                        *r.sources.entry(*src).or_default() += p;
                    }
                }
            }
            if let Some(f) = self.judge(dst, &r, at_ns) {
                findings.push(f);
                judged = Some(dst);
            }
        }
        findings
    }

    fn judge(&self, dst: [u8; 16], r: &Rates, at_ns: i64) -> Option<Finding> {
        let syn_share = if r.flows_per_s > 0.0 {
            r.syn_flows_per_s / r.flows_per_s
        } else {
            0.0
        };
        let syn_flood = r.syn_flows_per_s >= self.syn && syn_share >= self.syn_share;
        let mut over = Vec::new();
        if r.packets_per_s >= self.pps {
            over.push("pps");
        }
        if r.bits_per_s >= self.bps {
            over.push("bps");
        }
        if r.flows_per_s >= self.flows {
            over.push("flows");
        }
        if syn_flood {
            over.push("syn");
        }
        if over.is_empty() {
            return None;
        }
        let kind = if syn_flood {
            "SYN flood"
        } else {
            "volumetric flood"
        };
        let dst_text = format_addr(&dst);
        let mut top: Vec<(&[u8; 16], &f64)> = r.sources.iter().collect();
        top.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
        let top: Vec<_> = top
            .into_iter()
            .take(5)
            .map(|(s, p)| json!({"source": format_addr(s), "packets_per_s": p / r.seconds}))
            .collect();
        let sampled = if r.sampling > 1 {
            format!("; sampled 1 in {}: rates scaled", r.sampling)
        } else {
            String::new()
        };
        Some(Finding {
            rule: RULE,
            name: NAME,
            severity: "page",
            subject: dst_text.clone(),
            labels: [
                ("subject".to_string(), dst_text.clone()),
                ("destination".to_string(), dst_text.clone()),
            ]
            .into(),
            summary: format!(
                "{kind} on {dst_text}: {:.0} packets/s, {:.1} Mb/s, {:.0} flows/s ({:.0} % SYN only) from {}{} sources over {:.0} s{sampled}",
                r.packets_per_s,
                r.bits_per_s / 1e6,
                r.flows_per_s,
                syn_share * 100.0,
                r.sources.len(),
                if r.more_sources { "+" } else { "" },
                r.seconds,
            ),
            evidence: json!({
                "destination": dst_text,
                "kind": kind,
                "over": over,
                "packets_per_s": r.packets_per_s,
                "bits_per_s": r.bits_per_s,
                "flows_per_s": r.flows_per_s,
                "syn_flows_per_s": r.syn_flows_per_s,
                "syn_share": syn_share,
                "top_sources": top,
                "distinct_sources": r.sources.len(),
                "more_sources": r.more_sources,
                "observation_point_id": r.point,
                "sampling": r.sampling,
                "thresholds": {"pps": self.pps, "bps": self.bps, "flows": self.flows, "syn": self.syn, "syn_share": self.syn_share},
                "flows": {
                    "filter": format!("dst host {dst_text}"),
                    "from_ns": at_ns.saturating_sub(self.window_s.saturating_mul(SECOND)),
                    "to_ns": at_ns.saturating_add(SECOND),
                },
            }),
            seen_ns: at_ns,
            quiet_ns: self.quiet_ns,
        })
    }
}

/// Whether rates pass any threshold (packets, bits, flows, SYN flows a
/// second): the SYN share is the judge's to weigh.
fn exceeds(r: &Rates, (pps, bps, flows, syn): &(f64, f64, f64, f64)) -> bool {
    r.packets_per_s >= *pps
        || r.bits_per_s >= *bps
        || r.flows_per_s >= *flows
        || r.syn_flows_per_s >= *syn
}

/// A destination's rates at one point over the window.
#[derive(Debug, Clone)]
struct Rates {
    point: u64,
    /// The seconds averaged over.
    seconds: f64,
    packets_per_s: f64,
    bits_per_s: f64,
    flows_per_s: f64,
    syn_flows_per_s: f64,
    sampling: u64,
    sources: HashMap<[u8; 16], f64>,
    more_sources: bool,
}

impl Rates {
    /// The rates of a window; its sources are gathered later, for the
    /// destinations judged.
    fn of(window: &[&Tally], seconds: f64, point: u64) -> Rates {
        Rates {
            point,
            seconds,
            packets_per_s: window.iter().map(|t| t.packets).sum::<f64>() / seconds,
            bits_per_s: window.iter().map(|t| t.bytes).sum::<f64>() * 8.0 / seconds,
            flows_per_s: window.iter().map(|t| t.flows).sum::<u64>() as f64 / seconds,
            syn_flows_per_s: window.iter().map(|t| t.syn_flows).sum::<u64>() as f64 / seconds,
            sampling: window.iter().map(|t| t.sampling).max().unwrap_or(1),
            more_sources: window.iter().any(|t| t.other_sources > 0),
            sources: HashMap::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::flows::{ACK, PSH, SYN};
    use hopscope_schema::ipv4_mapped;

    fn syn(src: u32, at_ns: i64, point: u64) -> FlowEvent {
        FlowEvent {
            end_ns: at_ns,
            start_ns: at_ns,
            point,
            src: ipv4_mapped(src.to_be_bytes()),
            dst: ipv4_mapped([192, 0, 2, 80]),
            src_port: (src % 60000) as u16,
            dst_port: 80,
            proto: 6,
            packets: 1,
            bytes: 60,
            reverse_packets: None,
            tcp_flags: Some(SYN),
            icmp_type: None,
            sampling: 1,
        }
    }

    #[test]
    fn a_syn_flood_seen_at_two_points_is_one_flood_at_its_rate() {
        let mut f = Floods::new(&FloodConfig::default()).unwrap();
        // 2,000 SYNs a second for 12 s from random sources, at two points
        let events: Vec<FlowEvent> = (0..24_000i64)
            .flat_map(|i| {
                let at = i * SECOND / 2_000;
                [
                    syn(0x0a00_0000 + i as u32, at, 1),
                    syn(0x0a00_0000 + i as u32, at, 2),
                ]
            })
            .collect();
        f.add(&events);
        let found = f.evaluate(12 * SECOND);
        assert_eq!(found.len(), 1);
        let e = &found[0].evidence;
        assert_eq!(e["kind"], "SYN flood");
        let rate = e["syn_flows_per_s"].as_f64().unwrap();
        assert!((rate - 2_000.0).abs() < 1.0, "{rate}");
    }

    #[test]
    fn a_window_of_one_second_judges_each_second() {
        let mut f = Floods::new(&FloodConfig {
            window: "1s".into(),
            ..FloodConfig::default()
        })
        .unwrap();
        let events: Vec<FlowEvent> = (0..3_000i64)
            .map(|i| syn(0x0a00_0000 + i as u32, i * SECOND / 1_500, 1))
            .collect();
        f.add(&events);
        let found = f.evaluate(2 * SECOND);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].evidence["kind"], "SYN flood");
    }

    #[test]
    fn a_busy_server_and_a_long_backup_are_not_floods() {
        let mut f = Floods::new(&FloodConfig::default()).unwrap();
        let mut events = Vec::new();
        // 500 clients a second, established connections
        for i in 0..5_000i64 {
            let mut e = syn(i as u32, i * SECOND / 500, 1);
            e.tcp_flags = Some(SYN | ACK | PSH);
            e.packets = 20;
            events.push(e);
        }
        // a backup: one flow of 10 minutes, 30 million packets (50,000 a
        // second, over the threshold), exported at once
        let mut backup = syn(7, 600 * SECOND, 1);
        backup.start_ns = 0;
        backup.packets = 30_000_000;
        backup.bytes = 30_000_000 * 1_000;
        backup.tcp_flags = Some(SYN | ACK | PSH);
        events.push(backup);
        f.add(&events);
        assert!(f.evaluate(10 * SECOND).is_empty());
        assert!(f.evaluate(600 * SECOND).is_empty());
    }
}
