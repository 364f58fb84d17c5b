//! Where the network ends. Each observation point and interface is on the
//! network's boundary (`external`: traffic enters or leaves the network
//! there) or inside it (`internal`), from `[[serve.boundary]]` rules that
//! match points and interfaces by name (globs, as Akvorado's interface
//! classifiers do) or exporters and interfaces by address and ifIndex.
//!
//! Every flow record gets a `boundary` column; queries count traffic once,
//! at the boundary, by leaving out the records of internal points (see the
//! store's query view), so that a packet seen by six devices on its way is
//! not six packets.
//!
//! A packet crosses the boundary once on its way in and once on its way
//! out; transit traffic does both, at two edge routers. A record is where
//! the packet is counted (`external`) when the point itself is on the
//! boundary (an edge probe sees each packet once), when the packet came in
//! through an external interface, or when it leaves through one and did not
//! come from outside. Given the networks inside (`[serve] inside`), a packet
//! from outside them that leaves through an external interface entered
//! through another one, where it was counted: that record is `transit`.
//! Without them, nothing is taken for transit, which then counts twice.

use std::net::IpAddr;

use hopscope_schema::{Cidr, Inside, ip_to_mapped};
use serde::Deserialize;

use crate::enrich::canonical;

/// Which side of the network's edge a point or interface is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Boundary {
    External,
    Internal,
}

/// One `[[serve.boundary]]` rule: what it matches, and the boundary of
/// what it matches. Every criterion given must match.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BoundaryRule {
    /// An observation point's name (`*` matches any run of characters).
    pub point: Option<String>,
    /// The exporter's address (`sampler_address`).
    pub exporter: Option<IpAddr>,
    /// An interface of the exporter, by ifIndex: the input or the output one.
    pub interface: Option<u32>,
    /// An interface by name (`*` globs), from the exporter's options.
    pub interface_name: Option<String>,
    pub boundary: Boundary,
}

impl BoundaryRule {
    /// Whether the rule says anything at all: a rule without a criterion
    /// would classify every record.
    pub fn check(&self) -> Result<(), String> {
        if self.point.is_none()
            && self.exporter.is_none()
            && self.interface.is_none()
            && self.interface_name.is_none()
        {
            return Err(
                "a [[serve.boundary]] rule needs a point, an exporter, an interface or an interface-name"
                    .into(),
            );
        }
        Ok(())
    }
}

/// What a record says about where it was observed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed<'a> {
    pub exporter: Option<[u8; 16]>,
    pub point: Option<&'a str>,
    /// The input and output interfaces: ifIndex and name.
    pub interfaces: [(Option<u32>, Option<&'a str>); 2],
    /// The packets' source address.
    pub source: Option<[u8; 16]>,
}

/// Where a record stands against the boundary: its `boundary` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Where its packets cross the boundary and are counted.
    External,
    /// Inside the network: the packets are counted at the boundary.
    Internal,
    /// Packets from outside leaving the network: counted where they came in.
    Transit,
}

impl Place {
    pub fn name(self) -> &'static str {
        match self {
            Place::External => "external",
            Place::Internal => "internal",
            Place::Transit => "transit",
        }
    }
}

/// The rules, ready to match.
#[derive(Debug, Clone, Default)]
pub struct Boundaries {
    rules: Vec<(Option<[u8; 16]>, BoundaryRule)>,
    /// The networks inside, when given: without them nothing leaving is
    /// taken for transit (a network of public addresses, or behind a NAT
    /// whose public side the records show, would lose its outbound traffic).
    inside: Option<Inside>,
}

impl Boundaries {
    /// The rules, and the networks inside (none given: no transit).
    pub fn new(rules: &[BoundaryRule], inside: &[Cidr]) -> Self {
        Self {
            rules: rules
                .iter()
                .map(|r| (r.exporter.map(|ip| ip_to_mapped(canonical(ip))), r.clone()))
                .collect(),
            inside: (!inside.is_empty()).then(|| Inside::new(inside)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// External when a rule puts the point or the input interface on the
    /// boundary, or the output interface and the source is not known to be
    /// outside; transit when only the output interface is external and the
    /// source is outside the networks inside (when they are given); else
    /// internal when a rule puts it inside; else unknown.
    pub fn classify(&self, seen: &Observed<'_>) -> Option<Place> {
        let mut found = None;
        let mut leaves = false;
        for (exporter, rule) in &self.rules {
            if exporter.is_some() && *exporter != seen.exporter {
                continue;
            }
            if let Some(point) = &rule.point
                && !seen.point.is_some_and(|p| glob(point, p))
            {
                continue;
            }
            let interface_given = rule.interface.is_some() || rule.interface_name.is_some();
            let matches = |(index, name): &(Option<u32>, Option<&str>)| {
                rule.interface.is_none_or(|i| *index == Some(i))
                    && rule
                        .interface_name
                        .as_deref()
                        .is_none_or(|g| name.is_some_and(|n| glob(g, n)))
            };
            let [input, output] = &seen.interfaces;
            let (comes_in, goes_out) = (matches(input), matches(output));
            if interface_given && !comes_in && !goes_out {
                continue;
            }
            match rule.boundary {
                Boundary::External if !interface_given || comes_in => {
                    return Some(Place::External);
                }
                Boundary::External => leaves = true,
                Boundary::Internal => found = Some(Place::Internal),
            }
        }
        if leaves {
            let from_outside = self
                .inside
                .as_ref()
                .zip(seen.source)
                .is_some_and(|(inside, source)| !inside.holds(source));
            return Some(if from_outside {
                Place::Transit
            } else {
                Place::External
            });
        }
        found
    }
}

/// `pattern` with `*` for any run of characters, matched against all of `text`.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        assert!(glob("branch-fw:wan", "branch-fw:wan"));
        assert!(!glob("branch-fw:wan", "branch-fw:wan2"));
        assert!(glob("*:wan", "branch-fw:wan"));
        assert!(glob("Transit*", "Transit: Cogent"));
        assert!(glob("*ge-*/1", "isp-pe:ge-0/0/1"));
        assert!(!glob("*ge-*/1", "isp-pe:ge-0/0/2"));
        assert!(glob("*", ""));
        assert!(!glob("a*a", "a"));
    }

    #[test]
    fn an_external_rule_wins_and_criteria_all_match() {
        let router: IpAddr = "192.0.2.1".parse().unwrap();
        let rule = |point: Option<&str>, interface, name: Option<&str>, boundary| BoundaryRule {
            point: point.map(String::from),
            exporter: (point.is_none()).then_some(router),
            interface,
            interface_name: name.map(String::from),
            boundary,
        };
        let rules = [
            rule(None, None, None, Boundary::Internal),
            rule(None, Some(7), None, Boundary::External),
            rule(None, None, Some("Transit*"), Boundary::External),
            rule(Some("*:wan"), None, None, Boundary::External),
        ];
        let b = Boundaries::new(&rules, &["10.0.0.0/8".parse().unwrap()]);
        let inside = ip_to_mapped("10.1.2.3".parse().unwrap());
        let outside = ip_to_mapped("198.51.100.7".parse().unwrap());
        let at = |interfaces: [(Option<u32>, Option<&'static str>); 2]| Observed {
            exporter: Some(ip_to_mapped(router)),
            point: None,
            interfaces,
            source: Some(inside),
        };
        assert_eq!(
            b.classify(&at([(Some(3), None), (Some(4), None)])),
            Some(Place::Internal)
        );
        assert_eq!(
            b.classify(&at([(Some(3), None), (Some(7), None)])),
            Some(Place::External),
            "leaving by interface 7, from inside"
        );
        let transit = Observed {
            source: Some(outside),
            ..at([(Some(3), None), (Some(7), None)])
        };
        assert_eq!(
            b.classify(&transit),
            Some(Place::Transit),
            "from outside, out by 7: it came in elsewhere"
        );
        assert_eq!(
            b.classify(&Observed {
                source: Some(outside),
                ..at([(Some(7), None), (Some(3), None)])
            }),
            Some(Place::External),
            "from outside, in by 7"
        );
        assert_eq!(
            b.classify(&Observed {
                source: None,
                ..transit
            }),
            Some(Place::External),
            "no source: not known to come from outside, counted"
        );
        let no_inside = Boundaries::new(&rules, &[]);
        assert_eq!(
            no_inside.classify(&transit),
            Some(Place::External),
            "without the networks inside, nothing is taken for transit"
        );
        assert_eq!(
            b.classify(&at([(Some(9), Some("Transit: Cogent")), (None, None)])),
            Some(Place::External)
        );
        let probe = Observed {
            exporter: Some(ip_to_mapped("127.0.0.11".parse().unwrap())),
            point: Some("branch-fw:wan"),
            ..Observed::default()
        };
        assert_eq!(b.classify(&probe), Some(Place::External));
        let lan = Observed {
            point: Some("branch-fw:lan"),
            ..probe
        };
        assert_eq!(b.classify(&lan), None, "no rule for it");
    }
}
