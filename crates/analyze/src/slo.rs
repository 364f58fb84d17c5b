//! Service level objectives as the configuration states them (`[[slo]]`)
//! and as the evaluation uses them: the selector compiled, thresholds in
//! the units the tables hold, the burn-rate rules with their defaults.

use std::collections::BTreeMap;

use hopscope_store::query::{Expr, filter_fields, parse_duration, parse_journey_filter};
use serde::{Deserialize, Serialize};

use crate::AnalyzeError;

/// Width of the buckets SLOs are judged in.
pub const BUCKET_NS: i64 = 60_000_000_000;

/// The start of the bucket holding `ns` (times at the ends of the range
/// saturate rather than overflow).
pub fn bucket_start(ns: i64) -> i64 {
    ns.div_euclid(BUCKET_NS).saturating_mul(BUCKET_NS)
}

/// One `[[slo]]` of the configuration file. `Default` leaves the keys a
/// file must give empty, for code that builds one key by key.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SloConfig {
    pub name: String,
    /// The service's journeys, in the filter language over the journeys
    /// table (`dst_port = 443 and dst_addr = 10.2.0.0/16`); empty for all.
    #[serde(default)]
    pub selector: String,
    /// `loss` (network loss ratio, telemetry loss excluded) or `delay`.
    pub indicator: String,
    /// The most a good bucket may have: a share for loss (`1%`, `0.01`,
    /// `500ppm`), a duration for delay (`20ms`).
    pub threshold: String,
    /// For delay: the journeys' `median`, `p95` (the default) or `max`.
    #[serde(default)]
    pub percentile: Option<String>,
    /// One segment (`core-a > dc-gw`, by node or point name on each side,
    /// `core-a|core-b` for either member of an ECMP group) instead of end
    /// to end.
    #[serde(default)]
    pub segment: Option<String>,
    /// The share of buckets that must be good (`99.9%` or `0.999`).
    pub objective: String,
    /// The period the objective is over (`30d` unless said).
    #[serde(default)]
    pub window: Option<String>,
    /// `packets` (journeys from packet reports, the default) or `flow totals`.
    #[serde(default)]
    pub basis: Option<String>,
    /// A bucket resting on fewer packets (loss) or delay samples is not
    /// judged (default 20).
    #[serde(default)]
    pub min_events: Option<u64>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Burn-rate rules; the SRE workbook's three when none are given.
    #[serde(default)]
    pub burn: Vec<BurnRuleConfig>,
}

/// One multiwindow burn-rate rule: fire when the budget burns at least
/// `factor` times the sustainable rate over both windows.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BurnRuleConfig {
    pub long: String,
    pub short: String,
    pub factor: f64,
    pub severity: String,
}

/// What a bucket's figure is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Indicator {
    /// Lost over sent at most this, parts per million.
    Loss { max_ppm: u32 },
    /// The delay at `stat` at most this.
    Delay { stat: DelayStat, max_ns: u64 },
}

impl Indicator {
    pub fn name(self) -> &'static str {
        match self {
            Indicator::Loss { .. } => "loss",
            Indicator::Delay { .. } => "delay",
        }
    }

    /// The threshold in the unit the bucket rows hold it in.
    pub fn threshold(self) -> u64 {
        match self {
            Indicator::Loss { max_ppm } => u64::from(max_ppm),
            Indicator::Delay { max_ns, .. } => max_ns,
        }
    }
}

/// Which of a journey's (or segment's) delay figures a delay SLO reads.
/// The bucket's figure is the same statistic over the bucket's journeys,
/// each weighted by its packets: a percentile of percentiles, which is
/// what the stored rows allow (they keep no histograms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayStat {
    Median,
    P95,
    Max,
}

impl DelayStat {
    pub fn column(self) -> &'static str {
        match self {
            DelayStat::Median => "delay_median_ns",
            DelayStat::P95 => "delay_p95_ns",
            DelayStat::Max => "delay_max_ns",
        }
    }

    /// The quantile taken over the bucket's journeys.
    pub fn quantile(self) -> f64 {
        match self {
            DelayStat::Median => 0.5,
            DelayStat::P95 => 0.95,
            DelayStat::Max => 1.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DelayStat::Median => "median",
            DelayStat::P95 => "p95",
            DelayStat::Max => "max",
        }
    }
}

/// Which journeys an SLO counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    Packets,
    FlowTotals,
}

impl Basis {
    /// The basis of a journey, from its `flags` column.
    pub fn of_flags(flags: &str) -> Basis {
        if flags.split(',').any(|f| f == "flow-totals") {
            Basis::FlowTotals
        } else {
            Basis::Packets
        }
    }

    /// As the configuration and an alert's evidence say it.
    pub fn name(self) -> &'static str {
        match self {
            Basis::Packets => "packets",
            Basis::FlowTotals => "flow totals",
        }
    }

    pub fn parse(text: &str) -> Option<Basis> {
        match text {
            "packets" => Some(Basis::Packets),
            "flow totals" => Some(Basis::FlowTotals),
            _ => None,
        }
    }
}

/// A page wakes someone; a ticket waits for working hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Page,
    Ticket,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }

    pub fn parse(text: &str) -> Option<Severity> {
        match text {
            "page" => Some(Severity::Page),
            "ticket" => Some(Severity::Ticket),
            _ => None,
        }
    }
}

/// A burn-rate rule in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnRule {
    pub long_ns: i64,
    pub short_ns: i64,
    pub factor: f64,
    pub severity: Severity,
}

impl BurnRule {
    /// The SRE workbook's multiwindow, multi-burn-rate alerts for a 30-day
    /// objective: 2 % of the budget in an hour or 5 % in six hours pages,
    /// 10 % in three days opens a ticket.
    pub const WORKBOOK: [BurnRule; 3] = [
        BurnRule {
            long_ns: 3_600_000_000_000,
            short_ns: 300_000_000_000,
            factor: 14.4,
            severity: Severity::Page,
        },
        BurnRule {
            long_ns: 6 * 3_600_000_000_000,
            short_ns: 1_800_000_000_000,
            factor: 6.0,
            severity: Severity::Page,
        },
        BurnRule {
            long_ns: 3 * 86_400_000_000_000,
            short_ns: 6 * 3_600_000_000_000,
            factor: 1.0,
            severity: Severity::Ticket,
        },
    ];
}

/// The segment a per-segment SLO is of: each side a node (`core-a`) or a
/// point (`core-a:et-2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSpec {
    pub upstream: String,
    pub downstream: String,
}

impl SegmentSpec {
    /// Whether a segment row's hops (`a:x|b:y` for an ECMP cluster) are
    /// this segment's.
    pub fn matches(&self, upstream: &str, downstream: &str) -> bool {
        side_matches(&self.upstream, upstream) && side_matches(&self.downstream, downstream)
    }

    pub fn text(&self) -> String {
        format!("{} > {}", self.upstream, self.downstream)
    }
}

/// A side of a segment spec is one or more alternatives (`core-a|core-b`,
/// the members of an ECMP group), each a node or a point.
pub(crate) fn side_matches(spec: &str, hop: &str) -> bool {
    spec.split('|').map(str::trim).any(|alternative| {
        hop.split('|')
            .any(|point| point == alternative || point.split(':').next() == Some(alternative))
    })
}

/// An SLO ready to evaluate.
#[derive(Debug, Clone)]
pub struct Slo {
    pub name: String,
    pub selector: String,
    pub filter: Option<Expr>,
    pub indicator: Indicator,
    pub segment: Option<SegmentSpec>,
    /// The share of buckets that must be good, below 1.
    pub objective: f64,
    pub window_ns: i64,
    pub basis: Basis,
    pub min_events: u64,
    pub labels: BTreeMap<String, String>,
    pub burn: Vec<BurnRule>,
}

impl Slo {
    /// Checks a configured SLO and puts it in the evaluation's units.
    pub fn compile(config: &SloConfig) -> Result<Slo, AnalyzeError> {
        let bad = |what: String| AnalyzeError::Config {
            slo: config.name.clone(),
            message: what,
        };
        if config.name.is_empty()
            || !config
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(bad(
                "a name is letters, digits, '-', '_' or '.' (it becomes a label)".into(),
            ));
        }
        let filter =
            parse_journey_filter(&config.selector).map_err(|e| bad(format!("selector: {e}")))?;
        let indicator = match config.indicator.as_str() {
            "loss" => {
                if config.percentile.is_some() {
                    return Err(bad("a percentile is for delay, not loss".into()));
                }
                let ratio = parse_share(&config.threshold)
                    .filter(|r| (0.0..1.0).contains(r))
                    .ok_or_else(|| {
                        bad(format!(
                            "threshold '{}': a loss share under 100 % ('1%', '0.01', '500ppm')",
                            config.threshold
                        ))
                    })?;
                Indicator::Loss {
                    max_ppm: (ratio * 1e6).round() as u32,
                }
            }
            "delay" => {
                let stat = match config.percentile.as_deref().unwrap_or("p95") {
                    "median" | "p50" => DelayStat::Median,
                    "p95" => DelayStat::P95,
                    "max" => DelayStat::Max,
                    other => {
                        return Err(bad(format!(
                            "percentile '{other}': median, p95 or max (what journeys keep)"
                        )));
                    }
                };
                let max_ns = parse_duration(&config.threshold).ok_or_else(|| {
                    bad(format!(
                        "threshold '{}': a delay such as '20ms'",
                        config.threshold
                    ))
                })?;
                Indicator::Delay {
                    stat,
                    max_ns: max_ns as u64,
                }
            }
            other => {
                return Err(bad(format!(
                    "indicator '{other}': loss or delay (availability and throughput are not measured yet)"
                )));
            }
        };
        let segment = match &config.segment {
            None => None,
            Some(text) => {
                let (up, down) = text
                    .split_once('>')
                    .map(|(a, b)| (a.trim(), b.trim()))
                    .filter(|(a, b)| !a.is_empty() && !b.is_empty())
                    .ok_or_else(|| {
                        bad(format!(
                            "segment '{text}': 'upstream > downstream', each a node or point name"
                        ))
                    })?;
                Some(SegmentSpec {
                    upstream: up.to_string(),
                    downstream: down.to_string(),
                })
            }
        };
        let objective = parse_share(&config.objective)
            .filter(|o| *o > 0.0 && *o < 1.0)
            .ok_or_else(|| {
                bad(format!(
                    "objective '{}': a share of good buckets under 100 % ('99.9%')",
                    config.objective
                ))
            })?;
        let window_ns = match &config.window {
            None => 30 * 86_400_000_000_000,
            Some(w) => parse_duration(w)
                .filter(|&w| w >= BUCKET_NS && w % BUCKET_NS == 0)
                .ok_or_else(|| bad(format!("window '{w}': whole minutes, one or more")))?,
        };
        let basis = match config.basis.as_deref() {
            None => Basis::Packets,
            Some(text) => Basis::parse(text)
                .ok_or_else(|| bad(format!("basis '{text}': packets or flow totals")))?,
        };
        let burn = if config.burn.is_empty() {
            BurnRule::WORKBOOK.to_vec()
        } else {
            config
                .burn
                .iter()
                .map(|r| {
                    let d = |t: &str| {
                        parse_duration(t)
                            .filter(|&d| d >= BUCKET_NS && d % BUCKET_NS == 0)
                            .ok_or_else(|| {
                                bad(format!("burn window '{t}': whole minutes, one or more"))
                            })
                    };
                    let (long_ns, short_ns) = (d(&r.long)?, d(&r.short)?);
                    if short_ns > long_ns {
                        return Err(bad(format!(
                            "burn: the short window ({}) is longer than the long one ({})",
                            r.short, r.long
                        )));
                    }
                    if !(r.factor > 0.0 && r.factor.is_finite()) {
                        return Err(bad(format!("burn factor {}: above 0", r.factor)));
                    }
                    let severity = Severity::parse(&r.severity)
                        .ok_or_else(|| bad(format!("severity '{}': page or ticket", r.severity)))?;
                    Ok(BurnRule {
                        long_ns,
                        short_ns,
                        factor: r.factor,
                        severity,
                    })
                })
                .collect::<Result<_, _>>()?
        };
        Ok(Slo {
            name: config.name.clone(),
            selector: config.selector.clone(),
            filter,
            indicator,
            segment,
            objective,
            window_ns,
            basis,
            min_events: config.min_events.unwrap_or(20),
            labels: config.labels.clone(),
            burn,
        })
    }

    /// Every SLO of a configuration; names must differ.
    pub fn compile_all(configs: &[SloConfig]) -> Result<Vec<Slo>, AnalyzeError> {
        let mut slos: Vec<Slo> = Vec::with_capacity(configs.len());
        for c in configs {
            let slo = Slo::compile(c)?;
            if slos.iter().any(|s| s.name == slo.name) {
                return Err(AnalyzeError::Config {
                    slo: slo.name,
                    message: "two SLOs have this name".into(),
                });
            }
            slos.push(slo);
        }
        Ok(slos)
    }

    /// 'end to end' or the segment.
    pub fn scope(&self) -> String {
        self.segment
            .as_ref()
            .map_or_else(|| "end to end".to_string(), SegmentSpec::text)
    }

    /// The journey columns the selector reads.
    pub fn selector_columns(&self, columns: &mut Vec<&'static str>) {
        if let Some(f) = &self.filter {
            filter_fields(f, columns);
        }
    }

    /// The longest window any burn rule or the budget looks back over.
    pub fn longest_window_ns(&self) -> i64 {
        self.burn
            .iter()
            .map(|r| r.long_ns)
            .chain([self.window_ns])
            .max()
            .unwrap_or(self.window_ns)
    }

    /// One sentence: what is promised.
    pub fn describe(&self) -> String {
        let what = match self.indicator {
            Indicator::Loss { max_ppm } => {
                format!(
                    "network loss at most {}",
                    format_share(f64::from(max_ppm) / 1e6)
                )
            }
            Indicator::Delay { stat, max_ns } => {
                format!("{} delay at most {} ms", stat.name(), max_ns as f64 / 1e6)
            }
        };
        format!(
            "{what} ({}) in {} of 1-minute buckets over {} days",
            self.scope(),
            format_share(self.objective),
            self.window_ns as f64 / 86_400e9
        )
    }
}

/// A share: `99.9%`, `500ppm` or a plain ratio (`0.999`).
pub fn parse_share(text: &str) -> Option<f64> {
    let t = text.trim();
    let value = if let Some(p) = t.strip_suffix('%') {
        p.trim().parse::<f64>().ok()? / 100.0
    } else if let Some(p) = t.strip_suffix("ppm") {
        p.trim().parse::<f64>().ok()? / 1e6
    } else {
        t.parse::<f64>().ok()?
    };
    value.is_finite().then_some(value)
}

/// A share as a percentage, without trailing zeros.
pub fn format_share(share: f64) -> String {
    let text = format!("{:.4}", share * 100.0);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} %")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(indicator: &str, threshold: &str) -> SloConfig {
        SloConfig {
            name: "web".into(),
            selector: "dst_port = 443".into(),
            indicator: indicator.into(),
            threshold: threshold.into(),
            objective: "99.9%".into(),
            ..SloConfig::default()
        }
    }

    #[test]
    fn thresholds_and_objectives_in_the_units_rows_keep() {
        let loss = Slo::compile(&config("loss", "1%")).unwrap();
        assert_eq!(loss.indicator, Indicator::Loss { max_ppm: 10_000 });
        assert!((loss.objective - 0.999).abs() < 1e-12);
        assert_eq!(loss.window_ns, 30 * 86_400_000_000_000);
        assert_eq!(loss.burn, BurnRule::WORKBOOK.to_vec());
        let delay = Slo::compile(&config("delay", "20ms")).unwrap();
        assert_eq!(
            delay.indicator,
            Indicator::Delay {
                stat: DelayStat::P95,
                max_ns: 20_000_000
            }
        );
        assert_eq!(
            delay.describe(),
            "p95 delay at most 20 ms (end to end) in 99.9 % of 1-minute buckets over 30 days"
        );
    }

    #[test]
    fn mistakes_are_named_with_the_slo() {
        for (c, message) in [
            (config("loss", "20ms"), "threshold '20ms'"),
            (config("delay", "1%"), "threshold '1%'"),
            (config("availability", "1%"), "indicator 'availability'"),
            (
                SloConfig {
                    selector: "dst_port = 443 and".into(),
                    ..config("loss", "1%")
                },
                "selector",
            ),
            (
                SloConfig {
                    objective: "100%".into(),
                    ..config("loss", "1%")
                },
                "objective",
            ),
            (
                SloConfig {
                    segment: Some("core-a".into()),
                    ..config("loss", "1%")
                },
                "segment 'core-a'",
            ),
        ] {
            let e = Slo::compile(&c).unwrap_err().to_string();
            assert!(e.starts_with("SLO 'web': "), "{e}");
            assert!(e.contains(message), "{e} should say {message}");
        }
        let twice = [config("loss", "1%"), config("delay", "5ms")];
        assert!(
            Slo::compile_all(&twice)
                .unwrap_err()
                .to_string()
                .contains("two SLOs")
        );
    }

    #[test]
    fn a_segment_side_is_a_node_or_a_point() {
        let s = SegmentSpec {
            upstream: "core-a".into(),
            downstream: "dc-gw:eth0".into(),
        };
        assert!(s.matches("core-a:et-2", "dc-gw:eth0"));
        assert!(s.matches("core-b:et-2|core-a:et-2", "dc-gw:eth0"));
        assert!(!s.matches("core-ab:et-2", "dc-gw:eth0"));
        assert!(!s.matches("core-a:et-2", "dc-gw:eth1"));
        let either = SegmentSpec {
            upstream: "core-a|core-b".into(),
            downstream: "dc-gw".into(),
        };
        assert!(either.matches("core-b:et-1", "dc-gw:eth0"));
        assert!(!either.matches("core-c:et-1", "dc-gw:eth0"));
    }

    #[test]
    fn shares() {
        let near = |text: &str, v: f64| (parse_share(text).unwrap() - v).abs() < 1e-12;
        assert!(near("99.9%", 0.999));
        assert!(near("500ppm", 0.0005));
        assert_eq!(parse_share("0.25"), Some(0.25));
        assert_eq!(parse_share("x%"), None);
        assert_eq!(format_share(0.999), "99.9 %");
        assert_eq!(format_share(0.05), "5 %");
    }
}
