//! One alert model for everything that fires (SLO burn rates now): an id,
//! the rule, severity, labels, when it started and resolved, and the
//! evidence behind it. [`Evaluator`] turns judged buckets into alert
//! events, one per state change: an alert firing stays one alert however
//! many buckets keep it firing (deduplicated by SLO and severity), and
//! resolves once no rule of its severity holds.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::bucket::BucketFigure;
use crate::budget::{Budget, History, window_name};
use crate::slo::{BUCKET_NS, Severity, Slo, bucket_start};

/// Whether an alert holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn name(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<AlertState> {
        match text {
            "firing" => Some(AlertState::Firing),
            "resolved" => Some(AlertState::Resolved),
            _ => None,
        }
    }
}

/// An alert as of one of its events (a row of the `alerts` table).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub id: String,
    /// What raised it: `slo-burn`.
    pub rule: String,
    /// Alertmanager's `alertname`.
    pub name: String,
    pub severity: String,
    pub state: AlertState,
    /// When the event happened (the start, or the resolve).
    pub at_ns: i64,
    pub starts_ns: i64,
    pub ends_ns: Option<i64>,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    pub evidence: Value,
}

/// The alert name of SLO burn-rate alerts.
pub const SLO_ALERT_NAME: &str = "HopscopeSLOBurn";

/// SLO verdicts in, alert events out.
#[derive(Debug)]
pub struct Evaluator {
    slos: Vec<Slo>,
    histories: Vec<History>,
    /// Firing alerts by (SLO, severity).
    active: BTreeMap<(String, Severity), Alert>,
    /// The last bucket end evaluated.
    evaluated_until: Option<i64>,
}

impl Evaluator {
    pub fn new(slos: Vec<Slo>) -> Self {
        let histories = vec![History::default(); slos.len()];
        Evaluator {
            slos,
            histories,
            active: BTreeMap::new(),
            evaluated_until: None,
        }
    }

    /// Picks up where a previous run stopped: its judged buckets and its
    /// alerts' last events (an alert still firing is not raised again).
    /// An alert still firing for an SLO no longer configured resolves at
    /// `now_ns`: the returned events say so.
    pub fn restore(
        &mut self,
        figures: &[BucketFigure],
        events: &[Alert],
        now_ns: i64,
    ) -> Vec<Alert> {
        for f in figures {
            if let Some(k) = self.slos.iter().position(|s| s.name == f.slo) {
                self.histories[k].record(f.start_ns, f.good);
                let end = f.start_ns.saturating_add(BUCKET_NS);
                self.evaluated_until = Some(self.evaluated_until.map_or(end, |e| e.max(end)));
            }
        }
        let mut firing: BTreeMap<(String, Severity), Alert> = BTreeMap::new();
        for e in events {
            let (Some(severity), Some(slo)) = (Severity::parse(&e.severity), e.labels.get("slo"))
            else {
                continue;
            };
            let key = (slo.clone(), severity);
            match e.state {
                AlertState::Firing => {
                    firing.insert(key, e.clone());
                }
                AlertState::Resolved => {
                    if firing.get(&key).is_some_and(|a| a.id == e.id) {
                        firing.remove(&key);
                    }
                }
            }
        }
        let mut resolved = Vec::new();
        for (key, alert) in firing {
            if self.slos.iter().any(|s| s.name == key.0) {
                self.active.insert(key, alert);
            } else {
                resolved.push(resolve(alert, now_ns));
            }
        }
        resolved
    }

    pub fn slos(&self) -> &[Slo] {
        &self.slos
    }

    pub fn history(&self, k: usize) -> &History {
        &self.histories[k]
    }

    /// The alerts firing now.
    pub fn active(&self) -> impl Iterator<Item = &Alert> {
        self.active.values()
    }

    /// Takes judged buckets (oldest first) and evaluates every SLO at each
    /// bucket end up to `until_ns`; returns the alert events, in order.
    pub fn advance(&mut self, figures: &[BucketFigure], until_ns: i64) -> Vec<Alert> {
        let mut events = Vec::new();
        let until = bucket_start(until_ns);
        let first_figure = figures
            .iter()
            .map(|f| f.start_ns.saturating_add(BUCKET_NS))
            .min();
        let Some(mut end) = self
            .evaluated_until
            .map(|e| e.saturating_add(BUCKET_NS))
            .or(first_figure)
        else {
            return events;
        };
        let first_end = end;
        let mut ordered: Vec<&BucketFigure> = figures.iter().collect();
        ordered.sort_by_key(|f| f.start_ns);
        // buckets judged late (after their end was evaluated) count from now on
        for f in ordered
            .iter()
            .filter(|f| f.start_ns.saturating_add(BUCKET_NS) < first_end)
        {
            self.record(f);
        }
        let mut pending = ordered
            .into_iter()
            .filter(|f| f.start_ns.saturating_add(BUCKET_NS) >= first_end)
            .peekable();
        // past the longest window after the last change, every window is
        // empty and nothing more changes: a long gap (a restart after
        // days, a journey stamped in 1970) is skipped, not walked minute
        // by minute
        let longest = self
            .slos
            .iter()
            .map(Slo::longest_window_ns)
            .max()
            .unwrap_or(0);
        let mut last_change = end;
        while end <= until {
            while let Some(f) = pending.next_if(|f| f.start_ns.saturating_add(BUCKET_NS) <= end) {
                self.record(f);
                last_change = end;
            }
            for k in 0..self.slos.len() {
                events.extend(self.evaluate(k, end));
            }
            self.evaluated_until = Some(end);
            let next = pending
                .peek()
                .map_or(until, |f| f.start_ns.saturating_add(BUCKET_NS).min(until));
            end = if end.saturating_sub(last_change) > longest && next > end {
                next
            } else {
                match end.checked_add(BUCKET_NS) {
                    Some(e) => e,
                    None => break,
                }
            };
        }
        for (slo, h) in self.slos.iter().zip(&mut self.histories) {
            h.forget_before(until.saturating_sub(slo.longest_window_ns()));
        }
        events
    }

    fn record(&mut self, f: &BucketFigure) {
        if let Some(k) = self.slos.iter().position(|s| s.name == f.slo) {
            self.histories[k].record(f.start_ns, f.good);
        }
    }

    /// One SLO at one bucket end: fires or resolves its alert of each
    /// severity.
    fn evaluate(&mut self, k: usize, end_ns: i64) -> Vec<Alert> {
        let slo = &self.slos[k];
        let history = &self.histories[k];
        let mut events = Vec::new();
        for severity in [Severity::Page, Severity::Ticket] {
            let burning = slo
                .burn
                .iter()
                .filter(|r| r.severity == severity)
                .find(|r| {
                    history.burn_rate(slo, end_ns, r.long_ns) >= r.factor
                        && history.burn_rate(slo, end_ns, r.short_ns) >= r.factor
                });
            let key = (slo.name.clone(), severity);
            match (burning, self.active.get(&key)) {
                (Some(rule), None) => {
                    let budget = Budget::at(slo, history, end_ns);
                    let long = history.burn_rate(slo, end_ns, rule.long_ns);
                    let short = history.burn_rate(slo, end_ns, rule.short_ns);
                    let mut labels = slo.labels.clone();
                    labels.insert("alertname".into(), SLO_ALERT_NAME.into());
                    labels.insert("slo".into(), slo.name.clone());
                    labels.insert("severity".into(), severity.name().into());
                    let alert = Alert {
                        id: format!(
                            "slo-{}-{}-{}",
                            slo.name,
                            severity.name(),
                            end_ns / 1_000_000_000
                        ),
                        rule: "slo-burn".into(),
                        name: SLO_ALERT_NAME.into(),
                        severity: severity.name().into(),
                        state: AlertState::Firing,
                        at_ns: end_ns,
                        starts_ns: end_ns,
                        ends_ns: None,
                        labels,
                        summary: format!(
                            "SLO {}: the error budget burns {:.1}x over {} and {:.1}x over {} (the rule fires at {}x); {}",
                            slo.name,
                            long,
                            window_name(rule.long_ns),
                            short,
                            window_name(rule.short_ns),
                            rule.factor,
                            slo.describe()
                        ),
                        evidence: json!({
                            "slo": slo.name,
                            "indicator": slo.indicator.name(),
                            "basis": slo.basis.name(),
                            "scope": slo.scope(),
                            "selector": slo.selector,
                            "burn": {
                                window_name(rule.long_ns): long,
                                window_name(rule.short_ns): short,
                            },
                            "factor": rule.factor,
                            "budget_remaining": budget.remaining,
                            // the journeys behind it: the short window's
                            "journeys": {
                                "filter": slo.selector,
                                "from_ns": end_ns - rule.short_ns,
                                "to_ns": end_ns,
                            },
                        }),
                    };
                    self.active.insert(key, alert.clone());
                    events.push(alert);
                }
                (None, Some(_)) => {
                    let alert = self.active.remove(&key).expect("just seen");
                    events.push(resolve(alert, end_ns));
                }
                _ => {}
            }
        }
        events
    }
}

/// The resolve event of a firing alert.
fn resolve(mut alert: Alert, at_ns: i64) -> Alert {
    alert.state = AlertState::Resolved;
    alert.at_ns = at_ns;
    alert.ends_ns = Some(at_ns);
    alert
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::SloConfig;

    fn slo() -> Slo {
        Slo::compile(&SloConfig {
            name: "web".into(),
            selector: "dst_port = 443".into(),
            indicator: "loss".into(),
            threshold: "1%".into(),
            objective: "99.9%".into(),
            labels: [("team".to_string(), "web".to_string())].into(),
            ..SloConfig::default()
        })
        .unwrap()
    }

    fn figure(minute: i64, good: bool) -> BucketFigure {
        BucketFigure {
            slo: "web".into(),
            start_ns: minute * BUCKET_NS,
            indicator: "loss",
            scope: "end to end".into(),
            good,
            events: 100,
            lost: if good { 0 } else { 10 },
            loss_ppm: Some(if good { 0 } else { 100_000 }),
            delay_ns: None,
            threshold: 10_000,
        }
    }

    #[test]
    fn a_burst_pages_once_and_resolves() {
        let mut e = Evaluator::new(vec![slo()]);
        // ten good minutes, two bad, then good again
        let figures: Vec<BucketFigure> =
            (0..60).map(|m| figure(m, !(10..12).contains(&m))).collect();
        let mut events = Vec::new();
        for f in &figures {
            events.extend(e.advance(std::slice::from_ref(f), f.start_ns + BUCKET_NS));
        }
        let pages: Vec<&Alert> = events.iter().filter(|a| a.severity == "page").collect();
        assert_eq!(pages.len(), 2, "one firing and one resolve: {events:#?}");
        assert_eq!(pages[0].state, AlertState::Firing);
        assert_eq!(
            pages[0].starts_ns,
            11 * BUCKET_NS,
            "fires at the end of the first bad bucket"
        );
        assert_eq!(pages[0].labels["team"], "web");
        assert_eq!(pages[0].labels["alertname"], SLO_ALERT_NAME);
        assert_eq!(pages[1].state, AlertState::Resolved);
        assert_eq!(pages[1].id, pages[0].id);
        // the 6-hour rule's 30-minute window burns 6x (2 bad of 30) until
        // the last bad bucket leaves it
        assert_eq!(pages[1].ends_ns, Some(42 * BUCKET_NS));
        // 2 bad buckets in an hour spend the budget of a 30-day 99.9 %
        // objective 33 times too fast for three days: the ticket stays
        let tickets: Vec<&Alert> = events.iter().filter(|a| a.severity == "ticket").collect();
        assert_eq!(tickets.len(), 1);
        assert_eq!(e.active().count(), 1);
    }

    #[test]
    fn the_same_events_in_one_go_or_bucket_by_bucket() {
        let figures: Vec<BucketFigure> = (0..40).map(|m| figure(m, m % 13 != 5)).collect();
        let mut stepwise = Evaluator::new(vec![slo()]);
        let mut a = Vec::new();
        for f in &figures {
            a.extend(stepwise.advance(std::slice::from_ref(f), f.start_ns + BUCKET_NS));
        }
        let mut at_once = Evaluator::new(vec![slo()]);
        let b = at_once.advance(&figures, 40 * BUCKET_NS);
        assert_eq!(a, b);
        assert!(!a.is_empty());
    }

    #[test]
    fn an_alert_of_an_slo_no_longer_configured_resolves_at_restore() {
        let figures: Vec<BucketFigure> = (0..12).map(|m| figure(m, m < 10)).collect();
        let events = Evaluator::new(vec![slo()]).advance(&figures, 12 * BUCKET_NS);
        let mut other = slo();
        other.name = "other".into();
        let mut e = Evaluator::new(vec![other]);
        let resolved = e.restore(&figures, &events, 99 * BUCKET_NS);
        assert!(
            !resolved.is_empty()
                && resolved
                    .iter()
                    .all(|a| a.state == AlertState::Resolved && a.ends_ns == Some(99 * BUCKET_NS))
        );
        assert_eq!(e.active().count(), 0);
    }

    /// Days without traffic after an incident: evaluated in a few steps,
    /// the alert resolving, and a far-future watermark does not overflow.
    #[test]
    fn a_long_gap_is_skipped_and_the_end_of_time_is_safe() {
        let mut e = Evaluator::new(vec![slo()]);
        let figures: Vec<BucketFigure> = (0..12).map(|m| figure(m, m < 10)).collect();
        let fired = e.advance(&figures, 12 * BUCKET_NS);
        assert!(fired.iter().any(|a| a.state == AlertState::Firing));
        let started = std::time::Instant::now();
        let later = e.advance(&[], 365 * 86_400_000_000_000);
        assert!(later.iter().all(|a| a.state == AlertState::Resolved) && !later.is_empty());
        assert_eq!(e.active().count(), 0);
        let _ = e.advance(&[], i64::MAX);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_restored_firing_alert_is_not_raised_again() {
        let figures: Vec<BucketFigure> = (0..12).map(|m| figure(m, m < 10)).collect();
        let mut first = Evaluator::new(vec![slo()]);
        let events = first.advance(&figures, 12 * BUCKET_NS);
        assert!(events.iter().any(|a| a.state == AlertState::Firing));
        let mut second = Evaluator::new(vec![slo()]);
        assert!(second.restore(&figures, &events, 12 * BUCKET_NS).is_empty());
        let more = second.advance(&[figure(12, false)], 13 * BUCKET_NS);
        assert!(more.is_empty(), "{more:#?}");
    }
}
