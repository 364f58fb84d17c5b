//! Security detections over flow records: port scans, floods, beaconing,
//! lateral movement and address lists, each a rule with documented defaults and thresholds in
//! `[detect]`, each raising alerts of the one [`Alert`] model with the
//! evidence behind them.
//!
//! A [`Detector`] reads the flows table's rows only, so it runs the same on
//! the bus as records arrive and over a past range of the store
//! (`hopscope detect --recompute`). Time is the records' own (their flows'
//! last packets), so a replay at any pace finds the same.
//!
//! The same traffic is often exported by several observation points: scans
//! count distinct targets (a target seen at five points is one), floods
//! take the busiest point's view of a destination (never the sum of the
//! points'). Behind a source NAT a scan shows twice, from the scanner and
//! from the NAT's address; the most specific source whose targets explain
//! the other's is named, the other listed as where it was also seen.

mod beacon;
mod flood;
pub mod flows;
mod lateral;
pub mod lists;
mod scan;

use std::collections::BTreeMap;

/// Maps and sets of the detections, hashed fast with a seed of the process
/// (so spoofed addresses chosen to collide do not know it), as the
/// collector hashes.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

use hopscope_schema::{Cidr, Inside};

use serde::Deserialize;
use serde_json::Value;

use crate::AnalyzeError;
use crate::alert::{Alert, AlertState};

pub use beacon::BeaconConfig;
pub use flood::FloodConfig;
pub use flows::FlowEvent;
pub use lateral::LateralConfig;
use lists::AddressList;
pub use lists::ListConfig;
pub use scan::ScanConfig;

/// `[detect]` in the configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DetectConfig {
    /// Off: no detection runs (the default is on).
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub scan: ScanConfig,
    #[serde(default)]
    pub flood: FloodConfig,
    #[serde(default)]
    pub beacon: BeaconConfig,
    #[serde(default)]
    pub lateral: LateralConfig,
    /// The networks inside: beacons go from inside to outside, lateral
    /// movement stays inside. The private ranges (RFC 1918, RFC 4193)
    /// when not given.
    #[serde(default)]
    pub inside: Vec<Cidr>,
    /// `[[detect.blocklist]]`: address lists (one address or network per
    /// line), read again when their file changes.
    #[serde(default)]
    pub blocklist: Vec<ListConfig>,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            enabled: true,
            scan: ScanConfig::default(),
            flood: FloodConfig::default(),
            beacon: BeaconConfig::default(),
            lateral: LateralConfig::default(),
            inside: Vec::new(),
            blocklist: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// The rules of detection alerts (the `rule` of their [`Alert`]s).
pub const RULES: &[&str] = &[
    scan::RULE,
    flood::RULE,
    beacon::RULE,
    lateral::RULE,
    lists::RULE,
    crate::policy::RULE,
    crate::policy::PATH_RULE,
];

/// Whether an alert was raised by a detection.
pub fn is_detection(alert: &Alert) -> bool {
    RULES.contains(&alert.rule.as_str())
}

/// What a detection found about one subject (a source, a destination, a
/// listed address): the alert it raises if it is not firing already.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub rule: &'static str,
    /// Alertmanager's `alertname`.
    pub name: &'static str,
    pub severity: &'static str,
    /// What it is about, unique within the rule: it keys the alert.
    pub subject: String,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    pub evidence: Value,
    /// The last time the evidence was seen.
    pub seen_ns: i64,
    /// The alert resolves once nothing is seen for this long.
    pub quiet_ns: i64,
}

#[derive(Debug, Clone)]
struct Active {
    alert: Alert,
    seen_ns: i64,
    quiet_ns: i64,
}

/// Firing detection alerts, one per (rule, subject): raised once, kept up
/// while their evidence goes on, resolved once it has stopped for the
/// rule's quiet time.
/// How long the evidence of a resolved alert is remembered at least.
const RESOLVED_KEPT_NS: i64 = 86_400_000_000_000;

#[derive(Debug, Default)]
pub(crate) struct Tracker {
    active: BTreeMap<(String, String), Active>,
    /// The evidence's last time of alerts resolved, kept a quiet time:
    /// a detection that still holds on that old evidence (a scan's
    /// attempts stay in its window after the alert resolved) does not
    /// fire again; only newer evidence does.
    resolved: BTreeMap<(String, String), (i64, i64)>,
}

impl Tracker {
    /// The finding holds: its alert fires unless it already does, or
    /// resolved on the same evidence.
    pub fn hold(&mut self, f: Finding) -> Option<Alert> {
        let key = (f.rule.to_string(), f.subject.clone());
        if let Some(a) = self.active.get_mut(&key) {
            a.seen_ns = a.seen_ns.max(f.seen_ns);
            return None;
        }
        if self
            .resolved
            .get(&key)
            .is_some_and(|(seen, _)| f.seen_ns <= *seen)
        {
            return None;
        }
        let mut labels = f.labels;
        labels.insert("alertname".into(), f.name.into());
        labels.insert("rule".into(), f.rule.into());
        labels.insert("severity".into(), f.severity.into());
        let alert = Alert {
            id: format!("{}-{}-{}", f.rule, f.subject, f.seen_ns / 1_000_000_000),
            rule: f.rule.into(),
            name: f.name.into(),
            severity: f.severity.into(),
            state: AlertState::Firing,
            at_ns: f.seen_ns,
            starts_ns: f.seen_ns,
            ends_ns: None,
            labels,
            summary: f.summary,
            evidence: f.evidence,
        };
        self.active.insert(
            key,
            Active {
                alert: alert.clone(),
                seen_ns: f.seen_ns,
                quiet_ns: f.quiet_ns,
            },
        );
        Some(alert)
    }

    /// Alerts whose evidence stopped a quiet time before `now_ns` resolve.
    pub fn expire(&mut self, now_ns: i64) -> Vec<Alert> {
        // kept a day (or two quiet times): long enough for its evidence to
        // have left any rule's window; only old evidence is held back
        self.resolved.retain(|_, (seen, quiet)| {
            seen.saturating_add(quiet.saturating_mul(2).max(RESOLVED_KEPT_NS)) > now_ns
        });
        let done: Vec<(String, String)> = self
            .active
            .iter()
            .filter(|(_, a)| a.seen_ns.saturating_add(a.quiet_ns) <= now_ns)
            .map(|(k, _)| k.clone())
            .collect();
        done.into_iter()
            .filter_map(|k| {
                let a = self.active.remove(&k)?;
                self.resolved.insert(k, (a.seen_ns, a.quiet_ns));
                Some(a)
            })
            .map(|a| {
                let at = a.seen_ns.saturating_add(a.quiet_ns);
                let mut alert = a.alert;
                alert.state = AlertState::Resolved;
                alert.at_ns = at;
                alert.ends_ns = Some(at);
                alert
            })
            .collect()
    }

    /// Resolves everything still firing (the end of a range recomputed).
    pub fn finish(&mut self) -> Vec<Alert> {
        self.expire(i64::MAX)
    }

    pub fn active(&self) -> impl Iterator<Item = &Alert> {
        self.active.values().map(|a| &a.alert)
    }

    /// Takes back an alert that was firing when the process stopped; its
    /// evidence counts as last seen when it fired or was restored.
    fn restore(&mut self, alert: Alert, quiet_ns: i64, now_ns: i64) {
        let subject = alert
            .labels
            .get("subject")
            .cloned()
            .unwrap_or_else(|| alert.id.clone());
        self.active.insert(
            (alert.rule.clone(), subject),
            Active {
                seen_ns: alert.at_ns.max(now_ns),
                quiet_ns,
                alert,
            },
        );
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Jitter of the tests: a small deterministic generator.
    pub(crate) struct Jitter(pub u64);

    impl Jitter {
        /// A value within `[-bound, bound]`.
        pub fn next(&mut self, bound: i64) -> i64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % (2 * bound.unsigned_abs() + 1)) as i64 - bound
        }
    }

    fn finding(seen_s: i64) -> Finding {
        Finding {
            rule: "scan",
            name: "HopscopeScan",
            severity: "ticket",
            subject: "10.0.0.6".into(),
            labels: BTreeMap::new(),
            summary: String::new(),
            evidence: Value::Null,
            seen_ns: seen_s * 1_000_000_000,
            quiet_ns: 300_000_000_000,
        }
    }

    /// A scan's attempts stay in its 5-minute window after its alert
    /// resolved: the same evidence does not fire it again, new evidence
    /// does.
    #[test]
    fn an_alert_resolves_once_and_fires_again_only_on_new_evidence() {
        let mut t = Tracker::default();
        assert!(t.hold(finding(10)).is_some());
        assert!(t.hold(finding(20)).is_none());
        let resolved = t.expire(320_000_000_000);
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].at_ns, 320_000_000_000);
        for now in [321, 330, 400] {
            assert!(t.hold(finding(20)).is_none());
            assert!(t.expire(now * 1_000_000_000).is_empty());
        }
        assert!(t.hold(finding(401)).is_some());
    }
}

/// How much a detector has read and kept.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct DetectStats {
    /// Flow records read.
    pub records: u64,
    /// Records without both addresses: nothing to detect on.
    pub skipped: u64,
    /// Records of sampled traffic (their volumes scaled).
    pub sampled: u64,
    /// Journeys checked against path rules, and those that did not cross
    /// a rule's point but whose exporters lost telemetry (no proof).
    pub journeys: u64,
    pub unproven_paths: u64,
    /// Sources, destinations and probes not tracked because a bound was hit.
    pub untracked: u64,
    /// The sources and destinations being followed now.
    pub tracked: u64,
    /// Address-list entries loaded, and lines that were not addresses.
    pub listed: u64,
    pub list_errors: u64,
    /// Whether lateral movement still learns which peers hosts reach.
    pub learning: bool,
}

/// Every detection, fed flow records, raising alerts.
#[derive(Debug)]
pub struct Detector {
    scans: scan::Scans,
    floods: flood::Floods,
    beacons: beacon::Beacons,
    lateral: lateral::Lateral,
    inside: Inside,
    lists: Vec<AddressList>,
    policy: Option<crate::policy::Policy>,
    tracker: Tracker,
    /// What the address lists and the policy found since the last advance.
    found: Vec<Finding>,
    /// The newest flow end seen: the detector's event time.
    newest_ns: Option<i64>,
    stats: DetectStats,
}

impl Detector {
    /// Checks the thresholds and reads the address lists.
    pub fn new(config: &DetectConfig) -> Result<Detector, AnalyzeError> {
        let lists = config
            .blocklist
            .iter()
            .map(AddressList::open)
            .collect::<Result<_, _>>()?;
        Ok(Detector {
            scans: scan::Scans::new(&config.scan, Inside::new(&config.inside))?,
            floods: flood::Floods::new(&config.flood)?,
            beacons: beacon::Beacons::new(&config.beacon)?,
            lateral: lateral::Lateral::new(&config.lateral)?,
            inside: Inside::new(&config.inside),
            lists,
            policy: None,
            tracker: Tracker::default(),
            found: Vec::new(),
            newest_ns: None,
            stats: DetectStats::default(),
        })
    }

    /// Also judges flows against a segmentation policy, and journeys
    /// against its path rules.
    pub fn with_policy(mut self, policy: crate::policy::Policy) -> Detector {
        self.policy = (!policy.is_empty()).then_some(policy);
        self
    }

    /// Whether journeys are of use (a policy has path rules).
    pub fn wants_journeys(&self) -> bool {
        self.policy.as_ref().is_some_and(|p| p.has_path_rules())
    }

    /// Reads journeys (rows of the journeys table) for the path rules.
    pub fn add_journeys(
        &mut self,
        batches: &[arrow_array::RecordBatch],
    ) -> Result<(), AnalyzeError> {
        let Some(policy) = &self.policy else {
            return Ok(());
        };
        for b in batches {
            let journeys = crate::policy::read_journeys(b)?;
            let (found, unproven) = policy.bypasses(&journeys);
            self.stats.journeys += journeys.len() as u64;
            self.stats.unproven_paths += unproven;
            self.found.extend(found);
        }
        Ok(())
    }

    /// Reads flow records (rows of the flows table).
    pub fn add(&mut self, batches: &[arrow_array::RecordBatch]) -> Result<(), AnalyzeError> {
        for b in batches {
            let (events, skipped) = flows::read(b)?;
            self.stats.skipped += skipped;
            self.add_events(&events);
        }
        Ok(())
    }

    /// Reads flow records already in rows.
    pub fn add_events(&mut self, events: &[FlowEvent]) {
        self.stats.records += events.len() as u64;
        self.stats.sampled += events.iter().filter(|e| e.sampling > 1).count() as u64;
        self.scans.add(events);
        self.floods.add(events);
        self.beacons.add(events, &self.inside);
        self.lateral.add(events, &self.inside);
        for list in &self.lists {
            self.found.extend(list.check(events));
        }
        if let Some(p) = &self.policy {
            self.found.extend(p.violations(events));
        }
        if let Some(newest) = events.iter().map(|e| e.end_ns).max() {
            self.newest_ns = Some(self.newest_ns.map_or(newest, |n| n.max(newest)));
        }
    }

    /// The newest flow end read: the event time the detector can be
    /// advanced to.
    pub fn newest_ns(&self) -> Option<i64> {
        self.newest_ns
    }

    /// Judges everything read up to `now_ns` (event time): the alert
    /// events, firing and resolving, in order.
    pub fn advance(&mut self, now_ns: i64) -> Vec<Alert> {
        let mut findings = std::mem::take(&mut self.found);
        findings.extend(self.scans.evaluate(now_ns));
        findings.extend(self.floods.evaluate(now_ns));
        findings.extend(self.beacons.evaluate(now_ns));
        findings.extend(self.lateral.evaluate(now_ns));
        let mut events: Vec<Alert> = findings
            .into_iter()
            .filter_map(|f| self.tracker.hold(f))
            .collect();
        events.extend(self.tracker.expire(now_ns));
        events.sort_by_key(|a| a.at_ns);
        events
    }

    /// The end of what there is to read: every alert still firing
    /// resolves once its quiet time has passed.
    pub fn finish(&mut self) -> Vec<Alert> {
        let now = self.newest_ns.unwrap_or(0);
        self.beacons.judge_next();
        let mut events = self.advance(now);
        events.extend(self.tracker.finish());
        events
    }

    /// Alerts firing when a previous run stopped (their last events):
    /// kept firing while their evidence goes on, resolved a quiet time
    /// after `now_ns` otherwise. Events of other rules are ignored.
    pub fn restore(&mut self, last_events: &[Alert], now_ns: i64) {
        let mut last: BTreeMap<&str, &Alert> = BTreeMap::new();
        for a in last_events.iter().filter(|a| is_detection(a)) {
            last.insert(&a.id, a);
        }
        for a in last.into_values().filter(|a| a.state == AlertState::Firing) {
            let quiet = match a.rule.as_str() {
                scan::RULE => self.scans.quiet_ns(),
                flood::RULE => self.floods.quiet_ns(),
                beacon::RULE => self.beacons.quiet_ns(),
                lateral::RULE => self.lateral.quiet_ns(),
                lists::RULE => lists::QUIET_NS,
                _ => crate::policy::QUIET_NS,
            };
            self.tracker.restore(a.clone(), quiet, now_ns);
        }
    }

    /// The detection alerts firing now.
    pub fn active(&self) -> impl Iterator<Item = &Alert> {
        self.tracker.active()
    }

    /// Reads the address lists whose files changed; says what is wrong
    /// with each now (unreadable ones keep their last content).
    pub fn refresh_lists(&mut self) -> Vec<String> {
        self.lists
            .iter_mut()
            .filter_map(|l| {
                l.refresh();
                l.problem().map(str::to_string)
            })
            .collect()
    }

    pub fn stats(&self) -> DetectStats {
        DetectStats {
            tracked: self.scans.tracked()
                + self.floods.tracked()
                + self.beacons.tracked()
                + self.lateral.tracked(),
            untracked: self.scans.untracked()
                + self.floods.untracked()
                + self.beacons.untracked()
                + self.lateral.untracked(),
            learning: self.newest_ns.is_none_or(|n| self.lateral.learning(n)),
            listed: self.lists.iter().map(|l| l.len() as u64).sum(),
            list_errors: self.lists.iter().map(|l| l.bad_lines()).sum(),
            ..self.stats
        }
    }
}

/// The detections' account, for `status` and `/metrics`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DetectSnapshot {
    pub enabled: bool,
    pub stats: DetectStats,
    /// Detection alerts firing now.
    pub firing: Vec<Alert>,
    /// Alert events raised since the start, by rule.
    pub events: BTreeMap<String, u64>,
    /// The detector's event time: the newest flow end judged.
    pub judged_until_ns: Option<i64>,
    /// What went wrong last (an address list that could not be read).
    pub problems: Vec<String>,
}

impl DetectSnapshot {
    /// The account after a step of `detector` that raised `events`.
    pub fn update(&mut self, detector: &Detector, events: &[Alert], judged_ns: i64) {
        self.stats = detector.stats();
        self.firing = detector.active().cloned().collect();
        for e in events.iter().filter(|e| e.state == AlertState::Firing) {
            *self.events.entry(e.rule.clone()).or_default() += 1;
        }
        self.judged_until_ns = Some(judged_ns);
    }

    /// The detections' counters and gauges in Prometheus' text format.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
            crate::live::write_family(&mut out, name, kind, help, samples)
        };
        let one = |v: u64| vec![(String::new(), v as f64)];
        family(
            "detect_records_total",
            "counter",
            "Flow records the detections read.",
            one(self.stats.records),
        );
        family(
            "detect_records_skipped_total",
            "counter",
            "Flow records without both addresses (nothing to detect on).",
            one(self.stats.skipped),
        );
        family(
            "detect_records_sampled_total",
            "counter",
            "Flow records of sampled traffic (volumes scaled by the rate).",
            one(self.stats.sampled),
        );
        family(
            "detect_tracked",
            "gauge",
            "Sources and destinations the detections follow now.",
            one(self.stats.tracked),
        );
        family(
            "detect_untracked_total",
            "counter",
            "Sources, destinations and targets not followed because a bound was reached.",
            one(self.stats.untracked),
        );
        family(
            "detect_list_entries",
            "gauge",
            "Entries of the address lists.",
            one(self.stats.listed),
        );
        family(
            "detect_list_bad_lines",
            "gauge",
            "Lines of the address lists that are not addresses.",
            one(self.stats.list_errors),
        );
        family(
            "detect_lateral_learning",
            "gauge",
            "1 while lateral movement learns which inside peers hosts reach (nothing new counts yet).",
            one(u64::from(self.stats.learning)),
        );
        family(
            "detect_alerts_firing",
            "gauge",
            "Detection alerts firing, by rule.",
            RULES
                .iter()
                .map(|r| {
                    (
                        format!("{{rule=\"{r}\"}}"),
                        self.firing.iter().filter(|a| a.rule == *r).count() as f64,
                    )
                })
                .collect(),
        );
        family(
            "detect_alerts_total",
            "counter",
            "Detection alerts raised, by rule.",
            RULES
                .iter()
                .map(|r| {
                    (
                        format!("{{rule=\"{r}\"}}"),
                        self.events.get(*r).copied().unwrap_or(0) as f64,
                    )
                })
                .collect(),
        );
        out
    }
}

/// Runs `detector` over the flows (and, for path rules, the journeys) of
/// `[from_ns, to_ns)` in the store, in the order the flows ended: the
/// alert events a live run would have raised, and those still firing at
/// the end resolved.
pub fn detect_range(
    store: &dyn hopscope_store::Backend,
    mut detector: Detector,
    from_ns: i64,
    to_ns: i64,
) -> Result<(Vec<Alert>, DetectStats), AnalyzeError> {
    use hopscope_store::Table;
    let mut events = Vec::new();
    let mut failed = None;
    let hour = hopscope_store::layout::HOUR_NS;
    // an hour at a time, of the hours that hold flows
    for start in crate::columns::hours_holding(store, Table::Flows, from_ns, to_ns)? {
        let (at, until) = (start.max(from_ns), start.saturating_add(hour).min(to_ns));
        let mut rows = Vec::new();
        store.scan(Table::Flows, flows::COLUMNS, at, until, &mut |b| {
            match flows::read(&b) {
                Ok((e, _)) => rows.extend(e),
                Err(e) => failed = Some(e),
            }
            Ok(())
        })?;
        let mut journeys: Vec<(i64, arrow_array::RecordBatch)> = Vec::new();
        if detector.wants_journeys() {
            store.scan(
                Table::Journeys,
                crate::policy::JOURNEY_COLUMNS,
                at,
                until,
                &mut |b| {
                    // one journey a batch, so that each is read at its time
                    if let Ok(t) = crate::columns::times(&b) {
                        let t = t.clone();
                        journeys.extend((0..b.num_rows()).map(|i| (t.value(i), b.slice(i, 1))));
                    }
                    Ok(())
                },
            )?;
            journeys.sort_by_key(|(t, _)| *t);
        }
        if let Some(e) = failed.take() {
            return Err(e);
        }
        rows.sort_by_key(|e| e.end_ns);
        let mut journeys = journeys.into_iter().peekable();
        // a second of flows at a time, judged as a live run judges them
        for chunk in rows.chunk_by(|a, b| a.end_ns / 1_000_000_000 == b.end_ns / 1_000_000_000) {
            let now = chunk[chunk.len() - 1].end_ns;
            detector.add_events(chunk);
            while let Some((_, j)) = journeys.next_if(|(t, _)| *t <= now) {
                detector.add_journeys(&[j])?;
            }
            events.extend(detector.advance(now));
        }
        for (_, j) in journeys {
            detector.add_journeys(&[j])?;
        }
    }
    events.extend(detector.finish());
    Ok((events, detector.stats()))
}
