//! Error budgets and burn rates from judged buckets. A bucket without
//! enough traffic to judge is neither good nor bad: it spends nothing and
//! earns nothing.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::bucket::BucketFigure;
use crate::slo::{BUCKET_NS, Slo};

/// One SLO's verdicts by bucket start, as far back as its longest window.
#[derive(Debug, Clone, Default)]
pub struct History {
    verdicts: BTreeMap<i64, bool>,
}

impl History {
    pub fn record(&mut self, start_ns: i64, good: bool) {
        self.verdicts.insert(start_ns, good);
    }

    /// Forgets buckets that start before `from_ns`.
    pub fn forget_before(&mut self, from_ns: i64) {
        self.verdicts = self.verdicts.split_off(&from_ns);
    }

    /// (judged, bad) buckets of the window that ends at `end_ns`: those
    /// that start in `[end_ns - window_ns, end_ns - 1 bucket]` (windows
    /// are whole minutes, ends are bucket ends).
    pub fn counts(&self, end_ns: i64, window_ns: i64) -> (u64, u64) {
        let from = end_ns.saturating_sub(window_ns);
        let mut judged = 0;
        let mut bad = 0;
        for (_, &good) in self
            .verdicts
            .range(from..end_ns.saturating_sub(BUCKET_NS).saturating_add(1))
        {
            judged += 1;
            bad += u64::from(!good);
        }
        (judged, bad)
    }

    /// How fast the budget burns over the window ending at `end_ns`: the
    /// bad share of judged buckets over the share the objective allows (1
    /// spends the budget exactly over the objective's window).
    pub fn burn_rate(&self, slo: &Slo, end_ns: i64, window_ns: i64) -> f64 {
        let (judged, bad) = self.counts(end_ns, window_ns);
        if judged == 0 {
            return 0.0;
        }
        bad as f64 / judged as f64 / (1.0 - slo.objective)
    }

    pub fn latest(&self) -> Option<i64> {
        self.verdicts.keys().next_back().copied()
    }
}

/// Where an SLO stands at a time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Budget {
    pub judged: u64,
    pub bad: u64,
    /// Bad buckets the objective allows over the window, at this traffic.
    pub allowed: f64,
    /// Share of the budget left (negative once overspent).
    pub remaining: f64,
    /// Burn rate over each rule's long and short window, by its name
    /// (`1h`, `5m`).
    pub burn: BTreeMap<String, f64>,
    /// At the last hour's burn rate, when the budget runs out; none when
    /// nothing burns or it is already spent.
    pub exhausted_in_ns: Option<i64>,
}

impl Budget {
    pub fn at(slo: &Slo, history: &History, end_ns: i64) -> Budget {
        let (judged, bad) = history.counts(end_ns, slo.window_ns);
        let allowed = judged as f64 * (1.0 - slo.objective);
        let remaining = if allowed > 0.0 {
            1.0 - bad as f64 / allowed
        } else {
            1.0
        };
        let mut burn = BTreeMap::new();
        for rule in &slo.burn {
            for w in [rule.long_ns, rule.short_ns] {
                burn.insert(window_name(w), history.burn_rate(slo, end_ns, w));
            }
        }
        let hourly = history.burn_rate(slo, end_ns, 3_600_000_000_000);
        let exhausted_in_ns = (hourly > 0.0 && remaining > 0.0)
            .then(|| (remaining * slo.window_ns as f64 / hourly) as i64);
        Budget {
            judged,
            bad,
            allowed,
            remaining,
            burn,
            exhausted_in_ns,
        }
    }
}

/// `5m`, `1h`, `3d`: a window as the rules name it.
pub fn window_name(ns: i64) -> String {
    const UNITS: [(i64, &str); 3] = [
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
    ];
    for (unit, name) in UNITS {
        if ns % unit == 0 {
            return format!("{}{name}", ns / unit);
        }
    }
    format!("{}s", ns / 1_000_000_000)
}

/// Each SLO's history, from judged buckets (stored or just closed).
pub fn histories(slos: &[Slo], figures: &[BucketFigure]) -> Vec<History> {
    let mut out = vec![History::default(); slos.len()];
    for f in figures {
        if let Some(k) = slos.iter().position(|s| s.name == f.slo) {
            out[k].record(f.start_ns, f.good);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::{Slo, SloConfig};

    fn slo() -> Slo {
        Slo::compile(&SloConfig {
            name: "web".into(),
            indicator: "loss".into(),
            threshold: "1%".into(),
            objective: "99%".into(),
            window: Some("1d".into()),
            ..SloConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn burn_rate_is_the_bad_share_over_the_allowed_share() {
        let slo = slo();
        let mut h = History::default();
        // an hour of buckets, the last five of them bad
        for m in 0..60 {
            h.record(m * BUCKET_NS, m < 55);
        }
        let end = 60 * BUCKET_NS;
        // 5 of 5 bad: 100 % over the 1 % allowed
        assert!((h.burn_rate(&slo, end, 5 * BUCKET_NS) - 100.0).abs() < 1e-9);
        // 5 of 60
        assert!((h.burn_rate(&slo, end, 3600 * 1_000_000_000) - 5.0 / 60.0 / 0.01).abs() < 1e-9);
        // a bucket ending after `end` is not in a window ending at `end`
        h.record(60 * BUCKET_NS, false);
        assert_eq!(h.counts(end, 5 * BUCKET_NS), (5, 5));
        let b = Budget::at(&slo, &h, end);
        assert_eq!((b.judged, b.bad), (60, 5));
        assert!((b.allowed - 0.6).abs() < 1e-9);
        assert!(b.remaining < 0.0, "5 bad where 0.6 are allowed: overspent");
        assert_eq!(b.exhausted_in_ns, None);
        assert!(b.burn.contains_key("5m") && b.burn.contains_key("3d"));
    }

    #[test]
    fn window_names() {
        assert_eq!(window_name(300_000_000_000), "5m");
        assert_eq!(window_name(3_600_000_000_000), "1h");
        assert_eq!(window_name(259_200_000_000_000), "3d");
        assert_eq!(window_name(90_000_000_000), "90s");
    }
}
