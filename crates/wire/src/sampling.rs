//! Sampling: every way an exporter says "one packet in N", read into one
//! rate, and the rates a collector's configuration gives devices that say
//! nothing.
//!
//! The IANA registry has three generations of elements for the same fact:
//! NetFlow v9's samplingInterval (34) and Cisco's samplerRandomInterval
//! (50), then PSAMP's (RFC 5477) count-based interval and space (305, 306),
//! time-based interval and space (307, 308), random n-out-of-N size and
//! population (309, 310, as Cisco IOS XR sends them) and probability (311).
//! A selector algorithm (304) that filters rather than samples (property
//! match and hash-based filtering, 5 to 8, as hopscope's own probe selects
//! packets for journeys) gives no flow sampling rate.

use std::net::IpAddr;

use hopscope_schema::{FlowBatchBuilder, SamplingSource, ip_to_mapped};

use crate::cursor::be_uint;
use crate::flow_plan::column_index;
use crate::template::Action;

/// Sampling elements of one record (a data record, or an options record
/// announcing a sampler).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Sampling {
    /// samplingInterval (34), samplerRandomInterval (50).
    pub interval: Option<u64>,
    /// samplingPacketInterval (305), samplingPacketSpace (306).
    pub packet_interval: Option<u64>,
    pub packet_space: Option<u64>,
    /// samplingTimeInterval (307), samplingTimeSpace (308), microseconds.
    pub time_interval: Option<u64>,
    pub time_space: Option<u64>,
    /// samplingSize (309) packets out of samplingPopulation (310).
    pub size: Option<u64>,
    pub population: Option<u64>,
    /// samplingProbability (311).
    pub probability: Option<f64>,
    /// selectorAlgorithm (304).
    pub algorithm: Option<u64>,
    /// samplerId (48) or selectorId (302): which sampler's options apply.
    pub sampler: Option<u64>,
}

/// selectorAlgorithm values that filter packets rather than sample them
/// (RFC 5477 §8.2.1): property match and the three hash functions.
const FILTERING_ALGORITHMS: std::ops::RangeInclusive<u64> = 5..=8;

impl Sampling {
    /// Takes the value of one sampling element (`action.is_sampling()`).
    pub fn read(&mut self, action: Action, value: &[u8]) {
        let v = Some(be_uint(value));
        match action {
            Action::SamplingInterval => self.interval = v,
            Action::SamplingPacketInterval => self.packet_interval = v,
            Action::SamplingPacketSpace => self.packet_space = v,
            Action::SamplingTimeInterval => self.time_interval = v,
            Action::SamplingTimeSpace => self.time_space = v,
            Action::SamplingSize => self.size = v,
            Action::SamplingPopulation => self.population = v,
            Action::SamplingProbability => {
                self.probability = match *value {
                    [a, b, c, d] => Some(f64::from(f32::from_be_bytes([a, b, c, d]))),
                    [a, b, c, d, e, f, g, h] => Some(f64::from_be_bytes([a, b, c, d, e, f, g, h])),
                    _ => None,
                }
            }
            Action::SelectorAlgorithm => self.algorithm = v,
            Action::SamplerId | Action::SelectorId => self.sampler = v,
            _ => {}
        }
    }

    /// One in N, from whichever encoding the record carries; `None` when it
    /// carries none, or a selector that filters.
    pub fn rate(&self) -> Option<u64> {
        if self
            .algorithm
            .is_some_and(|a| FILTERING_ALGORITHMS.contains(&a))
        {
            return None;
        }
        // selected and skipped: one in (selected + skipped) / selected
        let ratio = |selected: Option<u64>, skipped: Option<u64>| {
            selected
                .filter(|&s| s > 0)
                .map(|s| rounded_ratio(s.saturating_add(skipped.unwrap_or(0)), s))
        };
        self.interval
            .filter(|&i| i > 0)
            .or_else(|| ratio(self.packet_interval, self.packet_space))
            .or_else(|| {
                // n out of N: N / n
                let (n, population) = (self.size?, self.population?);
                (n > 0 && population >= n).then(|| rounded_ratio(population, n))
            })
            .or_else(|| {
                let p = self.probability.filter(|p| *p > 0.0 && *p <= 1.0)?;
                Some((1.0 / p).round() as u64)
            })
            // time-based: the share of time selected stands for the share of packets
            .or_else(|| ratio(self.time_interval, self.time_space))
            // no device samples more sparsely: beyond, the exporter's word is absurd
            .filter(|&rate| rate <= MAX_RATE)
    }
}

/// The sparsest sampling believed, one in 2^32: a larger rate is a
/// corrupt or hostile record, and scaling by it would saturate every sum.
const MAX_RATE: u64 = 1 << 32;

/// `a / b` to the nearest integer, at least 1.
fn rounded_ratio(a: u64, b: u64) -> u64 {
    (a.saturating_add(b / 2) / b).max(1)
}

/// A sampling rate the configuration gives an exporter (`[[serve.sampling]]`),
/// for devices that announce none, or announce a wrong one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplingRule {
    /// The exporter: its address as the flows carry it (`sampler_address`).
    pub exporter: IpAddr,
    /// Only flows entering by this interface (ifIndex); `None`: all.
    pub interface: Option<u32>,
    /// One packet in `rate`.
    pub rate: u64,
    /// Replace the rate the exporter announces, not only fill in a missing one.
    pub replace: bool,
}

/// The rules, matched by exporter and interface; the most specific wins.
#[derive(Debug, Clone, Default)]
pub(crate) struct SamplingRules {
    rules: Vec<([u8; 16], SamplingRule)>,
}

impl SamplingRules {
    pub fn new(rules: &[SamplingRule]) -> Self {
        let mut rules: Vec<([u8; 16], SamplingRule)> = rules
            .iter()
            .map(|r| {
                (
                    ip_to_mapped(hopscope_schema::canonical(r.exporter)),
                    r.clone(),
                )
            })
            .collect();
        // interface rules before an exporter's catch-all
        rules.sort_by_key(|(_, r)| r.interface.is_none());
        Self { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn find(&self, exporter: [u8; 16], in_if: Option<u32>) -> Option<&SamplingRule> {
        self.rules
            .iter()
            .find(|(addr, r)| *addr == exporter && r.interface.is_none_or(|i| Some(i) == in_if))
            .map(|(_, r)| r)
    }

    /// Applies the rules to the flow rows from `first_row` on; returns how
    /// many rows of unknown rate were given one.
    pub fn apply(&self, flows: &mut FlowBatchBuilder, first_row: usize) -> u64 {
        let rows = flows.len();
        if rows == first_row {
            return 0;
        }
        // every decoder fills them; opened here all the same, so that `set` has its rows
        flows.open_columns(
            1 << column_index("sampling_rate") | 1 << column_index("sampling_rate_source"),
        );
        let cols = flows.columns_mut();
        let mut resolved = 0;
        for row in first_row..rows {
            let Some(exporter) = cols.sampler_address.get(row) else {
                continue;
            };
            let Some(rule) = self.find(exporter, cols.in_if.get(row)) else {
                continue;
            };
            let announced = cols.sampling_rate.get(row);
            if announced.is_some() && !rule.replace {
                continue;
            }
            resolved += u64::from(announced.is_none());
            cols.sampling_rate.set(row, rule.rate);
            cols.sampling_rate_source
                .set(row, SamplingSource::Configured as u8);
        }
        resolved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_encoding_gives_one_rate() {
        let s = |f: fn(&mut Sampling)| {
            let mut s = Sampling::default();
            f(&mut s);
            s.rate()
        };
        assert_eq!(s(|s| s.interval = Some(1000)), Some(1000));
        assert_eq!(s(|s| s.interval = Some(0)), None);
        assert_eq!(
            s(|s| {
                s.packet_interval = Some(1);
                s.packet_space = Some(99);
            }),
            Some(100)
        );
        // IOS XR's random 1 out of 4000
        assert_eq!(
            s(|s| {
                s.algorithm = Some(3);
                s.size = Some(1);
                s.population = Some(4000);
            }),
            Some(4000)
        );
        assert_eq!(
            s(|s| {
                s.size = Some(3);
                s.population = Some(1000);
            }),
            Some(333)
        );
        assert_eq!(s(|s| s.probability = Some(0.01)), Some(100));
        assert_eq!(s(|s| s.probability = Some(0.0)), None);
        assert_eq!(
            s(|s| {
                s.time_interval = Some(10);
                s.time_space = Some(90);
            }),
            Some(10)
        );
        // 1:1 said the PSAMP way, as hopscope's probe says it
        assert_eq!(
            s(|s| {
                s.algorithm = Some(1);
                s.packet_interval = Some(1);
                s.packet_space = Some(0);
            }),
            Some(1)
        );
        // a hash-based filter selects packets; it is no flow sampling
        assert_eq!(
            s(|s| {
                s.algorithm = Some(6);
                s.packet_interval = Some(1);
            }),
            None
        );
        assert_eq!(
            s(|s| {
                s.size = Some(5);
                s.population = Some(4);
            }),
            None
        );
    }

    #[test]
    fn rules_fill_in_or_replace_by_exporter_and_interface() {
        use hopscope_schema::FlowRecord;
        let router: IpAddr = "192.0.2.1".parse().unwrap();
        let rules = SamplingRules::new(&[
            SamplingRule {
                exporter: router,
                interface: None,
                rate: 100,
                replace: false,
            },
            SamplingRule {
                exporter: router,
                interface: Some(7),
                rate: 2048,
                replace: true,
            },
        ]);
        let mut flows = FlowBatchBuilder::default();
        let row = |in_if, rate| FlowRecord {
            sampler_address: Some(ip_to_mapped(router)),
            in_if: Some(in_if),
            sampling_rate: rate,
            sampling_rate_source: Some(if rate.is_some() { 2 } else { 0 }),
            ..FlowRecord::default()
        };
        for r in [
            row(1, None),
            row(1, Some(10)),
            row(7, Some(10)),
            row(7, None),
        ] {
            flows.append(&r);
        }
        let other = FlowRecord {
            sampler_address: Some(ip_to_mapped("192.0.2.2".parse().unwrap())),
            ..FlowRecord::default()
        };
        flows.append(&other);
        assert_eq!(rules.apply(&mut flows, 0), 2);
        let cols = flows.columns_mut();
        let rates: Vec<_> = (0..5).map(|r| cols.sampling_rate.get(r)).collect();
        assert_eq!(rates, [Some(100), Some(10), Some(2048), Some(2048), None]);
        let sources: Vec<_> = (0..5).map(|r| cols.sampling_rate_source.get(r)).collect();
        assert_eq!(sources, [Some(4), Some(2), Some(4), Some(4), None]);
    }
}
