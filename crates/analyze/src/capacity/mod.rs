//! Capacity planning: which links fill up, and when. Per interface and
//! direction, 5-minute utilisation from three sources kept apart (flows
//! scaled by sampling, sFlow counter samples, SNMP octet counters) and
//! compared; the billing world's percentiles (the 95th of 5-minute
//! samples, per direction, the larger of the two, summed over a group of
//! ports); a forecast of each link's daily 95th percentile with the day
//! it will cross a share of its speed; the services, networks and ASes
//! that grew the most.
//!
//! Everything is read through the store trait, so `hopscope capacity`,
//! `/api/capacity` and the capacity alerts of `serve` give one answer.

pub mod forecast;
mod samples;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use hopscope_store::query::{Aggregate, Counting, Query, parse_filter, percentile};
use hopscope_store::{Backend, StoreError};
use serde::{Deserialize, Serialize};

pub use forecast::{Crossing, DailyModel, Predicted};
pub use samples::{Direction, LinkKey, LinkSamples, SAMPLE_NS, Samples, Source};

use crate::AnalyzeError;
use crate::alert::{Alert, AlertState};

pub const DAY_NS: i64 = 86_400_000_000_000;
/// A link whose last whole day of samples is older than this has no
/// forecast: it went quiet, or its exporter did.
const STALE_DAYS: i64 = 7;

/// `[capacity]` of the configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CapacityConfig {
    /// The percentile of 5-minute samples links are judged by (95).
    pub percentile: f64,
    /// The share of a link's speed at that percentile that counts as
    /// full (0.8).
    pub threshold: f64,
    /// How far ahead forecasts look, and alerts warn (`"90d"`).
    pub horizon: String,
    /// How much history `serve` reads for its capacity alerts (`"28d"`).
    pub history: String,
    /// The width of the samples percentiles are taken of (`"5m"`, as
    /// billing has it; `"1m"` for a closer look).
    pub sample: String,
    /// Two sources whose volumes differ by more than this share are
    /// flagged (0.1): how wrong sampling rates are found.
    pub disagreement: f64,
    /// `[[capacity.interface]]`: names and speeds set by hand, over what
    /// SNMP and sFlow report.
    #[serde(rename = "interface")]
    pub interfaces: Vec<InterfaceSetting>,
    /// `[[capacity.group]]`: ports billed together.
    #[serde(rename = "group")]
    pub groups: Vec<PortGroup>,
}

impl Default for CapacityConfig {
    fn default() -> Self {
        CapacityConfig {
            percentile: 95.0,
            threshold: 0.8,
            horizon: "90d".into(),
            history: "28d".into(),
            sample: "5m".into(),
            disagreement: 0.1,
            interfaces: Vec::new(),
            groups: Vec::new(),
        }
    }
}

/// One interface's name and speed, set by hand.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceSetting {
    pub exporter: IpAddr,
    pub if_index: u32,
    #[serde(default)]
    pub name: Option<String>,
    /// Bits per second: `"10G"`, `"100M"`, `"2.5G"` or a number.
    #[serde(default)]
    pub speed: Option<String>,
}

/// Ports billed together: each `"exporter:ifIndex"` or
/// `"exporter:ifName"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortGroup {
    pub name: String,
    pub ports: Vec<String>,
}

/// A configuration checked: speeds and durations parsed.
#[derive(Debug, Clone)]
pub struct Settings {
    pub percentile: f64,
    pub threshold: f64,
    pub horizon_days: i64,
    pub history_ns: i64,
    pub sample_ns: i64,
    pub disagreement: f64,
    overrides: BTreeMap<LinkKey, (Option<String>, Option<u64>)>,
    groups: Vec<PortGroup>,
}

impl CapacityConfig {
    pub fn check(&self) -> Result<Settings, AnalyzeError> {
        let bad = |key: &str, message: String| AnalyzeError::Setting {
            key: format!("[capacity] {key}"),
            message,
        };
        if !(self.percentile > 0.0 && self.percentile <= 100.0) {
            return Err(bad(
                "percentile",
                format!("{} is not in (0, 100]", self.percentile),
            ));
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(bad(
                "threshold",
                format!("{} is not a share in (0, 1]", self.threshold),
            ));
        }
        if self.disagreement.is_nan() || self.disagreement <= 0.0 {
            return Err(bad(
                "disagreement",
                format!("{} is not a positive share", self.disagreement),
            ));
        }
        let days = |key: &str, text: &str| {
            hopscope_store::query::parse_duration(text)
                .filter(|&ns| ns >= DAY_NS)
                .ok_or_else(|| bad(key, format!("'{text}' is not a duration of a day or more")))
        };
        let mut overrides = BTreeMap::new();
        for i in &self.interfaces {
            let speed = i
                .speed
                .as_deref()
                .map(|s| {
                    parse_speed(s).ok_or_else(|| {
                        bad(
                            "interface",
                            format!(
                                "{}:{}: speed '{s}' is not bits per second (10G, 100M)",
                                i.exporter, i.if_index
                            ),
                        )
                    })
                })
                .transpose()?;
            let key = LinkKey {
                exporter: i.exporter,
                if_index: i.if_index,
            };
            overrides.insert(key, (i.name.clone(), speed));
        }
        for g in &self.groups {
            for p in &g.ports {
                if parse_port(p).is_none() {
                    return Err(bad(
                        "group",
                        format!(
                            "'{}': port '{p}' is not exporter:ifIndex or exporter:ifName",
                            g.name
                        ),
                    ));
                }
            }
        }
        Ok(Settings {
            percentile: self.percentile,
            threshold: self.threshold,
            horizon_days: days("horizon", &self.horizon)? / DAY_NS,
            history_ns: days("history", &self.history)?,
            sample_ns: hopscope_store::query::parse_duration(&self.sample)
                .filter(|&ns| (1_000_000_000..=DAY_NS).contains(&ns) && DAY_NS % ns == 0)
                .ok_or_else(|| {
                    bad(
                        "sample",
                        format!(
                            "'{}' is not a duration from 1s to 1d that divides a day",
                            self.sample
                        ),
                    )
                })?,
            disagreement: self.disagreement,
            overrides,
            groups: self.groups.clone(),
        })
    }
}

/// Bits per second from `10G`, `2.5G`, `100M`, `64k` or a plain number.
pub fn parse_speed(text: &str) -> Option<u64> {
    let t = text.trim();
    let (number, scale) = match t.char_indices().last()? {
        (i, 'k' | 'K') => (&t[..i], 1e3),
        (i, 'M') => (&t[..i], 1e6),
        (i, 'G' | 'g') => (&t[..i], 1e9),
        (i, 'T') => (&t[..i], 1e12),
        _ => (t, 1.0),
    };
    let v: f64 = number.trim().parse().ok()?;
    (v > 0.0 && v.is_finite()).then(|| (v * scale).round() as u64)
}

/// `exporter:ifIndex` or `exporter:ifName` (an IPv6 exporter in brackets).
fn parse_port(text: &str) -> Option<(IpAddr, PortRef)> {
    let (addr, rest) = if let Some(r) = text.strip_prefix('[') {
        let (a, rest) = r.split_once(']')?;
        (a, rest.strip_prefix(':')?)
    } else {
        text.split_once(':')?
    };
    let exporter: IpAddr = addr.parse().ok()?;
    let port = match rest.parse::<u32>() {
        Ok(i) => PortRef::Index(i),
        Err(_) if !rest.is_empty() => PortRef::Name(rest.to_string()),
        Err(_) => return None,
    };
    Some((exporter, port))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortRef {
    Index(u32),
    Name(String),
}

/// What SNMP polls said of each exporter's interfaces, kept by `serve` in
/// the store's `state/interfaces.json`.
pub type Directory = BTreeMap<IpAddr, BTreeMap<u32, PolledInterface>>;

/// The file in the store's `state` directory.
pub const DIRECTORY_FILE: &str = "interfaces.json";

/// One interface's identity and speed, as polled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolledInterface {
    pub name: Option<String>,
    pub alias: Option<String>,
    pub descr: Option<String>,
    pub speed_bps: Option<u64>,
    pub oper_up: Option<bool>,
    pub polled_ns: i64,
}

/// Reads `state/interfaces.json` of a store (empty when there is none).
/// Reads `state/interfaces.json` of a store: empty when there is none yet,
/// an error naming the file when it does not read.
pub fn load_directory(store_root: &Path) -> Result<Directory, AnalyzeError> {
    let path = store_root.join("state").join(DIRECTORY_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Directory::new()),
        Err(source) => return Err(StoreError::Io { path, source }.into()),
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| AnalyzeError::Rows(format!("{}: {e}", path.display())))
}

/// Writes `state/interfaces.json` atomically.
pub fn save_directory(store_root: &Path, directory: &Directory) -> Result<(), StoreError> {
    let dir = store_root.join("state");
    std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
        path: dir.clone(),
        source,
    })?;
    let bytes = serde_json::to_vec_pretty(directory)
        .map_err(|e| StoreError::Schema(format!("{DIRECTORY_FILE}: {e}")))?;
    hopscope_store::write_atomically(&dir, DIRECTORY_FILE, &bytes)
}

/// One direction of a link over the range.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DirectionFigures {
    /// The configured percentile of the samples.
    pub percentile_bps: Option<f64>,
    pub max_bps: Option<f64>,
    pub mean_bps: Option<f64>,
    /// Samples with a value.
    pub samples: usize,
}

/// The days of a range as slices of its samples: (day since 1970-01-01,
/// first sample, end), and how many samples a whole day has.
///
/// Only whole days count: a day the range starts or ends in, today among
/// them, holds part of the daily cycle, and its percentile would pull the
/// trend down (and move it as the day fills).
fn day_slices(samples: &Samples) -> (Vec<(i64, usize, usize)>, usize) {
    let width = samples.sample_ns;
    let per_day = (DAY_NS / width) as usize;
    let first_day = (samples.start_ns + DAY_NS - 1).div_euclid(DAY_NS);
    let end_day = samples.until_ns.div_euclid(DAY_NS);
    let slices = (first_day..end_day)
        .map(|day| {
            let first = (day * DAY_NS - samples.start_ns).div_euclid(width);
            let clamp = |slot: i64| slot.clamp(0, samples.len as i64) as usize;
            (day, clamp(first), clamp(first + per_day as i64))
        })
        .collect();
    (slices, per_day)
}

/// The larger of two figures, either of which may be missing: a link is
/// billed, and fills, by its busier direction.
fn larger(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// One direction's figures over the range, and its percentile per day of
/// `days` (a day counts with at least half of its samples), from one pass
/// over its samples: a month of them for 10,000 links is 1.4 GB, read
/// once. Percentiles are the query layer's nearest rank, selected on the
/// samples' bit patterns (rates are never negative, and non-negative
/// floats order as their bits do, which compare faster).
fn scan_direction(
    series: &[f64],
    p: f64,
    days: &[(i64, usize, usize)],
    per_day: usize,
) -> (DirectionFigures, Vec<Option<f64>>) {
    const UNKNOWN: u64 = u64::MAX;
    let (mut sum, mut max, mut n) = (0.0, f64::MIN, 0usize);
    let mut bits: Vec<u64> = series
        .iter()
        .map(|&x| {
            if x.is_nan() {
                return UNKNOWN;
            }
            let x = x.max(0.0);
            sum += x;
            max = max.max(x);
            n += 1;
            x.to_bits()
        })
        .collect();
    let mut day = Vec::with_capacity(per_day);
    let daily = days
        .iter()
        .map(|&(_, from, to)| {
            day.clear();
            day.extend(bits[from..to].iter().copied().filter(|&b| b != UNKNOWN));
            if day.len() < per_day / 2 {
                return None;
            }
            percentile(&mut day, p).map(f64::from_bits)
        })
        .collect();
    bits.retain(|&b| b != UNKNOWN);
    let figures = if n == 0 {
        DirectionFigures::default()
    } else {
        DirectionFigures {
            percentile_bps: percentile(&mut bits, p).map(f64::from_bits),
            max_bps: Some(max),
            mean_bps: Some(sum / n as f64),
            samples: n,
        }
    };
    (figures, daily)
}

/// A link's figures in both directions from `source`, and its daily
/// percentile (the larger direction's), days without one trimmed off
/// both ends.
fn scan_link(
    samples: &Samples,
    link: &LinkSamples,
    source: Source,
    p: f64,
) -> (DirectionFigures, DirectionFigures, Vec<(i64, Option<f64>)>) {
    let (days, per_day) = day_slices(samples);
    let scan = |direction| {
        link.series(source, direction)
            .map(|s| scan_direction(s, p, &days, per_day))
            .unwrap_or_else(|| (DirectionFigures::default(), vec![None; days.len()]))
    };
    let ((inbound, daily_in), (outbound, daily_out)) = (scan(Direction::In), scan(Direction::Out));
    let mut daily: Vec<(i64, Option<f64>)> = days
        .iter()
        .zip(daily_in.into_iter().zip(daily_out))
        .map(|(&(day, _, _), (a, b))| (day, larger(a, b)))
        .collect();
    // no leading or trailing days without data
    let first = daily
        .iter()
        .position(|d| d.1.is_some())
        .unwrap_or(daily.len());
    daily.drain(..first);
    while daily.last().is_some_and(|d| d.1.is_none()) {
        daily.pop();
    }
    (inbound, outbound, daily)
}

/// How two sources' volumes of one direction compare over the samples
/// both have.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub direction: Direction,
    pub source: Source,
    pub reference: Source,
    /// `source`'s volume over `reference`'s.
    pub ratio: f64,
    pub samples: usize,
    /// The ratio is further from 1 than `[capacity] disagreement`.
    pub disagrees: bool,
}

/// One link over the range.
#[derive(Debug, Clone, Serialize)]
pub struct LinkReport {
    pub exporter: IpAddr,
    pub if_index: u32,
    pub name: Option<String>,
    pub alias: Option<String>,
    pub speed_bps: Option<u64>,
    /// `configured`, `snmp` or `sflow`.
    pub speed_source: Option<&'static str>,
    /// The source the figures below are from (the first of SNMP, sFlow,
    /// flows that has samples).
    pub source: Source,
    pub sources: Vec<Source>,
    #[serde(rename = "in")]
    pub inbound: DirectionFigures,
    #[serde(rename = "out")]
    pub outbound: DirectionFigures,
    /// The larger direction's percentile: what 95th-percentile billing
    /// charges.
    pub billing_bps: Option<f64>,
    /// `billing_bps` over the speed.
    pub utilisation: Option<f64>,
    /// The threshold's share of the speed left above `billing_bps`
    /// (negative: over it).
    pub headroom: Option<f64>,
    pub comparisons: Vec<Comparison>,
    pub forecast: Option<LinkForecast>,
}

impl LinkReport {
    /// The direction that fills first: the one with the higher percentile.
    pub fn busier(&self) -> Direction {
        if self.outbound.percentile_bps > self.inbound.percentile_bps {
            Direction::Out
        } else {
            Direction::In
        }
    }
}

/// The forecast of a link's daily percentile.
#[derive(Debug, Clone, Serialize)]
pub struct LinkForecast {
    pub model: DailyModel,
    pub threshold_bps: Option<f64>,
    /// When the forecast reaches the threshold within the horizon.
    pub crossing: Option<Crossing>,
    /// Days from the last day of history to the crossing.
    pub days_to_crossing: Option<i64>,
}

/// A group of ports billed together.
#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub name: String,
    pub ports: Vec<String>,
    /// Ports the group names that have no samples.
    pub missing: Vec<String>,
    #[serde(rename = "in")]
    pub inbound: DirectionFigures,
    #[serde(rename = "out")]
    pub outbound: DirectionFigures,
    pub billing_bps: Option<f64>,
    pub speed_bps: Option<u64>,
    pub utilisation: Option<f64>,
}

/// Every link of a range, the fullest first.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityReport {
    pub from_ns: i64,
    pub to_ns: i64,
    pub sample_ns: i64,
    pub percentile: f64,
    pub threshold: f64,
    pub horizon_days: i64,
    pub links: Vec<LinkReport>,
    /// Interfaces with counter readings but no whole sample yet
    /// (a poller started minutes ago).
    pub links_without_samples: usize,
    pub groups: Vec<GroupReport>,
}

/// The samples and figures of a range, ready for reports and details.
#[derive(Debug)]
pub struct Capacity {
    pub samples: Samples,
    pub report: CapacityReport,
}

impl Capacity {
    /// Reads `[from_ns, to_ns)` and judges every link in it.
    pub fn read(
        store: &dyn Backend,
        from_ns: i64,
        to_ns: i64,
        settings: &Settings,
        directory: &Directory,
    ) -> Result<Capacity, AnalyzeError> {
        let samples = Samples::read(store, from_ns, to_ns, settings.sample_ns)?;
        Ok(Capacity::judge(samples, settings, directory))
    }

    /// Judges every link of `samples`: percentiles, comparisons,
    /// forecasts, groups.
    pub fn judge(samples: Samples, settings: &Settings, directory: &Directory) -> Capacity {
        // links apart from each other: one share of them per core
        let all: Vec<(&LinkKey, &LinkSamples)> = samples.links.iter().collect();
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let share = all.len().div_ceil(workers).max(64);
        let mut links: Vec<LinkReport> = std::thread::scope(|scope| {
            let running: Vec<_> = all
                .chunks(share)
                .map(|chunk| {
                    let samples = &samples;
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .filter_map(|(key, link)| {
                                judge(**key, link, samples, settings, directory)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            running
                .into_iter()
                .flat_map(|r| r.join().expect("judging a link does not panic"))
                .collect()
        });
        // the least headroom first; links of unknown speed by volume after
        links.sort_by(|a, b| match (a.headroom, b.headroom) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => b
                .billing_bps
                .unwrap_or(0.0)
                .total_cmp(&a.billing_bps.unwrap_or(0.0)),
        });
        let groups = settings
            .groups
            .iter()
            .map(|g| group_report(g, &samples, &links, settings))
            .collect();
        Capacity {
            report: CapacityReport {
                from_ns: samples.start_ns,
                to_ns: samples.start_ns + samples.len as i64 * samples.sample_ns,
                sample_ns: samples.sample_ns,
                percentile: settings.percentile,
                threshold: settings.threshold,
                horizon_days: settings.horizon_days,
                links_without_samples: samples.links.len() - links.len(),
                links,
                groups,
            },
            samples,
        }
    }

    /// One link's samples of every source, its daily percentiles and
    /// forecast days, for a chart.
    pub fn detail(&self, key: LinkKey, settings: &Settings) -> Option<LinkDetail> {
        let link = self.samples.links.get(&key)?;
        let report = self
            .report
            .links
            .iter()
            .find(|l| l.exporter == key.exporter && l.if_index == key.if_index)?
            .clone();
        let series = Source::ALL
            .iter()
            .flat_map(|&s| Direction::BOTH.map(|d| (s, d)))
            .filter_map(|(source, direction)| {
                link.series(source, direction).map(|values| SeriesOut {
                    source,
                    direction,
                    values: values.clone(),
                })
            })
            .collect();
        let (_, _, daily) = scan_link(&self.samples, link, report.source, settings.percentile);
        let forecast = report
            .forecast
            .as_ref()
            .map(|f| {
                let last = daily.last().map_or(0, |d| d.0);
                (last + 1..=last + settings.horizon_days)
                    .map(|day| f.model.predict(day))
                    .collect()
            })
            .unwrap_or_default();
        Some(LinkDetail {
            threshold: settings.threshold,
            start_ns: self.samples.start_ns,
            sample_ns: self.samples.sample_ns,
            series,
            daily: daily
                .into_iter()
                .map(|(day, v)| DailyValue { day, value: v })
                .collect(),
            forecast,
            link: report,
        })
    }
}

/// One series of a link's detail.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesOut {
    pub source: Source,
    pub direction: Direction,
    /// Bits per second; null where the source says nothing.
    pub values: Vec<f64>,
}

/// A day's percentile (days since 1970-01-01).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DailyValue {
    pub day: i64,
    pub value: Option<f64>,
}

/// A link's chart.
#[derive(Debug, Clone, Serialize)]
pub struct LinkDetail {
    pub link: LinkReport,
    /// `[capacity] threshold`: the share of the speed that counts as full.
    pub threshold: f64,
    pub start_ns: i64,
    pub sample_ns: i64,
    pub series: Vec<SeriesOut>,
    pub daily: Vec<DailyValue>,
    pub forecast: Vec<Predicted>,
}

/// A link's figures: speed and names by precedence (configured, polled,
/// reported by sFlow), percentiles of the preferred source, comparisons
/// of the others, the forecast.
fn judge(
    key: LinkKey,
    link: &LinkSamples,
    samples: &Samples,
    settings: &Settings,
    directory: &Directory,
) -> Option<LinkReport> {
    let sources = link.sources();
    let source = *sources.first()?;
    let polled = directory
        .get(&key.exporter)
        .and_then(|d| d.get(&key.if_index));
    let configured = settings.overrides.get(&key);
    let (speed_bps, speed_source) = if let Some(s) = configured.and_then(|c| c.1) {
        (Some(s), Some("configured"))
    } else if let Some(s) = polled
        .and_then(|p| p.speed_bps)
        .or(link.speeds.get(&Source::Snmp).copied())
    {
        (Some(s), Some("snmp"))
    } else if let Some(&s) = link.speeds.get(&Source::Sflow) {
        (Some(s), Some("sflow"))
    } else {
        (None, None)
    };
    let speed_bps = speed_bps.filter(|&s| s > 0);
    let p = settings.percentile;
    let (inbound, outbound, daily) = scan_link(samples, link, source, p);
    let billing_bps = larger(inbound.percentile_bps, outbound.percentile_bps);
    let utilisation = billing_bps.zip(speed_bps).map(|(b, s)| b / s as f64);
    let mut comparisons = Vec::new();
    for direction in Direction::BOTH {
        for (i, &a) in sources.iter().enumerate() {
            for &b in &sources[i + 1..] {
                let (Some(x), Some(y)) = (link.series(b, direction), link.series(a, direction))
                else {
                    continue;
                };
                let (mut sum_x, mut sum_y, mut n) = (0.0, 0.0, 0);
                for (x, y) in x.iter().zip(y) {
                    if !(x.is_nan() || y.is_nan()) {
                        sum_x += x;
                        sum_y += y;
                        n += 1;
                    }
                }
                if n == 0 || sum_y <= 0.0 {
                    continue;
                }
                let ratio = sum_x / sum_y;
                comparisons.push(Comparison {
                    direction,
                    source: b,
                    reference: a,
                    ratio,
                    samples: n,
                    disagrees: (ratio - 1.0).abs() > settings.disagreement,
                });
            }
        }
    }
    // forecasts look ahead from the range's last whole day, not from a
    // link's last day of data: a link silent for a week has none
    let today = samples.until_ns.div_euclid(DAY_NS) - 1;
    let recent = daily.last().is_some_and(|d| today - d.0 <= STALE_DAYS);
    let forecast = {
        let first_day = daily.first().map(|d| d.0).filter(|_| recent);
        let values: Vec<Option<f64>> = daily.iter().map(|d| d.1).collect();
        first_day
            .and_then(|first| DailyModel::fit(first, &values))
            .map(|model| {
                let threshold_bps = speed_bps.map(|s| s as f64 * settings.threshold);
                let crossing =
                    threshold_bps.and_then(|t| model.crossing(today, settings.horizon_days, t));
                LinkForecast {
                    days_to_crossing: crossing.map(|c| c.day - today),
                    model,
                    threshold_bps,
                    crossing,
                }
            })
    };
    Some(LinkReport {
        exporter: key.exporter,
        if_index: key.if_index,
        name: configured
            .and_then(|c| c.0.clone())
            .or_else(|| polled.and_then(|p| p.name.clone())),
        alias: polled.and_then(|p| p.alias.clone()),
        speed_bps,
        speed_source,
        source,
        sources,
        inbound,
        outbound,
        billing_bps,
        utilisation,
        headroom: utilisation.map(|u| settings.threshold - u),
        comparisons,
        forecast,
    })
}

/// The link a port names: `exporter:ifIndex` or `exporter:ifName`.
pub fn find_link<'a>(links: &'a [LinkReport], port: &str) -> Option<&'a LinkReport> {
    let (exporter, r) = parse_port(port)?;
    links.iter().find(|l| {
        l.exporter == exporter
            && match &r {
                PortRef::Index(i) => l.if_index == *i,
                PortRef::Name(n) => l.name.as_deref() == Some(n.as_str()),
            }
    })
}

/// The group's ports summed per sample (each port's preferred source),
/// then the percentile of the sums: what aggregate 95th-percentile
/// billing charges, less than the sum of the ports' own percentiles.
fn group_report(
    group: &PortGroup,
    samples: &Samples,
    links: &[LinkReport],
    settings: &Settings,
) -> GroupReport {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for port in &group.ports {
        match find_link(links, port) {
            Some(l) => found.push(l),
            None => missing.push(port.clone()),
        }
    }
    // a sample of the group counts when every port has one: a sum of some
    // of them would bill less than the group carried
    let summed = |direction| -> Option<Vec<f64>> {
        let mut total = vec![0.0; samples.len];
        let mut known = vec![0usize; samples.len];
        let mut ports = 0;
        for l in &found {
            let key = LinkKey {
                exporter: l.exporter,
                if_index: l.if_index,
            };
            let Some(series) = samples
                .links
                .get(&key)
                .and_then(|s| s.series(l.source, direction))
            else {
                continue;
            };
            ports += 1;
            for ((t, k), &v) in total.iter_mut().zip(&mut known).zip(series) {
                if !v.is_nan() {
                    *t += v;
                    *k += 1;
                }
            }
        }
        for (t, &k) in total.iter_mut().zip(&known) {
            if k < ports {
                *t = f64::NAN;
            }
        }
        (ports > 0).then_some(total)
    };
    let p = settings.percentile;
    let figures = |direction| {
        summed(direction).map_or_else(DirectionFigures::default, |s| {
            scan_direction(&s, p, &[], 0).0
        })
    };
    let (inbound, outbound) = (figures(Direction::In), figures(Direction::Out));
    let billing_bps = larger(inbound.percentile_bps, outbound.percentile_bps);
    let speeds: Option<u64> = found.iter().map(|l| l.speed_bps).sum();
    GroupReport {
        name: group.name.clone(),
        ports: group.ports.clone(),
        missing,
        inbound,
        outbound,
        billing_bps,
        speed_bps: speeds.filter(|_| !found.is_empty()),
        utilisation: billing_bps
            .zip(speeds)
            .filter(|(_, s)| *s > 0)
            .map(|(b, s)| b / s as f64),
    }
}

/// The most groups each half of a growth query keeps.
const GROWTH_GROUPS: usize = 100_000;

/// One contributor to a link's growth.
#[derive(Debug, Clone, Serialize)]
pub struct Contributor {
    /// What was grouped by: `service`, `dst_as`, `src_as`, `dst_net_name`.
    pub dimension: &'static str,
    pub key: String,
    pub before_bps: f64,
    pub after_bps: f64,
    pub change_bps: f64,
}

/// The groups whose traffic through the link's busier direction grew the
/// most between the first and second halves of `[from_ns, to_ns)`:
/// services (protocol and destination port), destination and source ASes,
/// destination networks.
pub fn growth(
    store: &dyn Backend,
    key: LinkKey,
    direction: Direction,
    from_ns: i64,
    to_ns: i64,
    top: usize,
) -> Result<Vec<Contributor>, AnalyzeError> {
    let field = match direction {
        Direction::In => "in_if",
        Direction::Out => "out_if",
    };
    let filter = parse_filter(&format!(
        "exporter {} and {field} = {}",
        key.exporter, key.if_index
    ))
    .map_err(|e| AnalyzeError::Rows(e.to_string()))?;
    // up to now: a range that ends in the future would halve unevenly
    let to_ns = to_ns.min(hopscope_store::now_ns());
    let middle = from_ns + (to_ns - from_ns) / 2;
    let half_seconds = (middle - from_ns) as f64 / 1e9;
    let mut out = Vec::new();
    for (dimension, fields) in [
        ("service", &["proto", "dst_port"][..]),
        ("dst_as", &["dst_as"][..]),
        ("src_as", &["src_as"][..]),
        ("dst_net_name", &["dst_net_name"][..]),
    ] {
        let mut by_key: BTreeMap<String, [f64; 2]> = BTreeMap::new();
        for (half, (lo, hi)) in [(from_ns, middle), (middle, to_ns)].into_iter().enumerate() {
            let q = Query {
                from_ns: lo,
                to_ns: hi,
                filter: filter.clone(),
                group_by: fields.to_vec(),
                aggregates: vec![Aggregate::Sum("bytes")],
                counting: Counting::EveryPoint,
                // every group of each half, so that one just short of a
                // first half's top is not taken for new
                limit: Some(GROWTH_GROUPS),
                ..Query::default()
            };
            let result = store
                .query(&q)
                .map_err(|e| AnalyzeError::Rows(format!("growth by {dimension}: {e}")))?;
            let rows = &result.rows;
            let Some(bytes) = rows
                .column_by_name("bytes")
                .map(|c| c.as_primitive::<UInt64Type>())
            else {
                continue;
            };
            let keys: Vec<_> = fields
                .iter()
                .filter_map(|f| rows.column_by_name(f))
                .collect();
            for row in 0..rows.num_rows() {
                let values: Vec<String> = keys
                    .iter()
                    .map(|c| display_value(c.as_ref(), row))
                    .collect();
                // a service as its users name it: 443/tcp
                let label = match (dimension, values.as_slice()) {
                    ("service", [proto, port]) => match proto.parse::<u8>() {
                        Ok(p) => format!("{port}/{}", crate::policy::protocol_name(p)),
                        Err(_) => format!("{port}/{proto}"),
                    },
                    _ => values.join("/"),
                };
                by_key.entry(label).or_default()[half] +=
                    bytes.value(row) as f64 * 8.0 / half_seconds;
            }
        }
        let mut ranked: Vec<Contributor> = by_key
            .into_iter()
            .filter(|(k, _)| !k.is_empty() && k != "-")
            .map(|(key, [before, after])| Contributor {
                dimension,
                key,
                before_bps: before,
                after_bps: after,
                change_bps: after - before,
            })
            .collect();
        ranked.sort_by(|a, b| b.change_bps.total_cmp(&a.change_bps));
        out.extend(ranked.into_iter().take(top).filter(|c| c.change_bps > 0.0));
    }
    Ok(out)
}

/// A group key's value as text (protocol numbers stay numbers).
fn display_value(column: &dyn Array, row: usize) -> String {
    use arrow_array::types::{UInt8Type, UInt16Type, UInt32Type};
    use arrow_schema::DataType;
    if column.is_null(row) {
        return "-".into();
    }
    match column.data_type() {
        DataType::UInt8 => column.as_primitive::<UInt8Type>().value(row).to_string(),
        DataType::UInt16 => column.as_primitive::<UInt16Type>().value(row).to_string(),
        DataType::UInt32 => column.as_primitive::<UInt32Type>().value(row).to_string(),
        DataType::Utf8 => column.as_string::<i32>().value(row).to_string(),
        _ => "?".into(),
    }
}

/// A day (days since 1970-01-01) as its date: `2027-01-19`.
pub fn format_day(day: i64) -> String {
    let (y, m, d) = hopscope_schema::civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The rule of capacity forecast alerts, by which they are found again.
pub const CAPACITY_RULE: &str = "capacity-forecast";

/// The alert name of capacity forecasts.
pub const CAPACITY_ALERT_NAME: &str = "HopscopeCapacityForecast";

/// A firing alert for each link forecast to cross its threshold within
/// the horizon, from a report.
pub fn forecast_alerts(report: &CapacityReport, now_ns: i64) -> Vec<Alert> {
    report
        .links
        .iter()
        .filter_map(|l| {
            let f = l.forecast.as_ref()?;
            let crossing = f.crossing?;
            let speed = l.speed_bps?;
            let name = l.name.clone().unwrap_or_else(|| format!("ifIndex {}", l.if_index));
            let mut labels = BTreeMap::new();
            labels.insert("exporter".to_string(), l.exporter.to_string());
            labels.insert("if_index".to_string(), l.if_index.to_string());
            labels.insert("interface".to_string(), name.clone());
            // the one thing the alert is about, as the detections' alerts say it
            labels.insert("subject".to_string(), format!("{}:{}", l.exporter, l.if_index));
            Some(Alert {
                id: format!("capacity:{}:{}", l.exporter, l.if_index),
                rule: CAPACITY_RULE.into(),
                name: CAPACITY_ALERT_NAME.into(),
                severity: "warning".into(),
                state: AlertState::Firing,
                at_ns: now_ns,
                starts_ns: now_ns,
                ends_ns: None,
                labels,
                summary: format!(
                    "{name} on {} is forecast to reach {:.0} % of {} at the {}th percentile on {} (in {} days)",
                    l.exporter,
                    report.threshold * 100.0,
                    format_bps(speed as f64),
                    report.percentile,
                    format_day(crossing.day),
                    f.days_to_crossing.unwrap_or(0),
                ),
                evidence: serde_json::json!({
                    "billing_bps": l.billing_bps,
                    "speed_bps": speed,
                    "threshold_bps": f.threshold_bps,
                    "slope_bps_per_day": f.model.slope_per_day,
                    "crossing_day": crossing.day,
                    "earliest_day": crossing.earliest,
                    "latest_day": crossing.latest,
                }),
            })
        })
        .collect()
}

/// Bits per second with a unit (`1.2 Gb/s`).
pub fn format_bps(bps: f64) -> String {
    let (v, unit) = if bps >= 1e12 {
        (bps / 1e12, "Tb/s")
    } else if bps >= 1e9 {
        (bps / 1e9, "Gb/s")
    } else if bps >= 1e6 {
        (bps / 1e6, "Mb/s")
    } else if bps >= 1e3 {
        (bps / 1e3, "kb/s")
    } else {
        (bps, "b/s")
    };
    if v >= 100.0 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.1} {unit}")
    }
}

#[cfg(test)]
mod tests;
