//! The configuration file: one TOML file whose sections say what flags say.
//! A flag or a `HOPSCOPE_*` variable wins over the file, the file over the
//! built-in default.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::ArgMatches;
use clap::parser::ValueSource;
use hopscope_probe::observation_point_id;
use serde::Deserialize;

use crate::{ProbeArgs, ServeArgs};

/// The whole file; sections for later subcommands are added as they come.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub probe: ProbeSection,
    #[serde(default)]
    pub serve: ServeSection,
    /// `[[slo]]`: the service level objectives `serve` judges journeys by.
    #[serde(default)]
    pub slo: Vec<hopscope_analyze::SloConfig>,
    /// `[alerts]`: where alerts go.
    #[serde(default)]
    pub alerts: hopscope_analyze::NotifyConfig,
    /// `[detect]`: security detections over flows (on by default).
    #[serde(default)]
    pub detect: hopscope_analyze::DetectConfig,
    /// `[policy]`: zones, intent rules and path rules.
    #[serde(default)]
    pub policy: hopscope_analyze::PolicyConfig,
    /// `[capacity]`: percentile, threshold, horizon, links by hand, port
    /// groups.
    #[serde(default)]
    pub capacity: hopscope_analyze::capacity::CapacityConfig,
}

/// One `[[serve.snmp]]` agent: the exporter whose interfaces it describes, how
/// to reach it (`agent`, the exporter's port 161 by default) and how to
/// authenticate (SNMPv2c's `community`, or SNMPv3's `user` with `auth`
/// and `privacy` protocols and passwords).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpEntry {
    pub exporter: std::net::IpAddr,
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub community: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub auth_password: Option<String>,
    #[serde(default)]
    pub privacy: Option<String>,
    #[serde(default)]
    pub privacy_password: Option<String>,
    /// How often the interfaces are read (`"60s"` by default).
    #[serde(default)]
    pub interval: Option<String>,
    /// How long to wait for each answer (`"2s"`), and how many times to
    /// ask again (1).
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub retries: Option<u32>,
}

impl std::fmt::Debug for SnmpEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the community and the passwords stay out of logs
        f.debug_struct("SnmpEntry")
            .field("exporter", &self.exporter)
            .field("agent", &self.agent)
            .field("version", &self.version)
            .field("user", &self.user)
            .field("auth", &self.auth)
            .field("privacy", &self.privacy)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl SnmpEntry {
    pub fn agent(&self) -> Result<hopscope_pipeline::snmp::SnmpAgent> {
        use hopscope_snmp::{AuthProtocol, PrivProtocol, Security, User};
        let at = |what: &str| format!("[[serve.snmp]] for {}: {what}", self.exporter);
        let address: std::net::SocketAddr = match &self.agent {
            Some(a) => a
                .parse()
                .or_else(|_| a.parse::<std::net::IpAddr>().map(|ip| (ip, 161).into()))
                .map_err(|_| {
                    anyhow::anyhow!(at(&format!(
                        "agent '{a}' is not an address or address:port"
                    )))
                })?,
            None => (self.exporter, 161).into(),
        };
        let duration =
            |value: &Option<String>, default: &str, what: &str| -> Result<std::time::Duration> {
                let text = value.as_deref().unwrap_or(default);
                let ns = crate::probe::parse_duration(text)
                    .ok()
                    .filter(|&ns| ns > 0)
                    .ok_or_else(|| {
                        anyhow::anyhow!(at(&format!("{what} '{text}' is not a duration")))
                    })?;
                Ok(std::time::Duration::from_nanos(ns as u64))
            };
        let security = match self.version.as_deref().unwrap_or("2c") {
            "2c" | "2" => {
                anyhow::ensure!(
                    self.user.is_none(),
                    at("user is SNMPv3's: set version = \"3\"")
                );
                Security::Community(self.community.clone().unwrap_or_else(|| "public".into()))
            }
            "3" => {
                let name = self
                    .user
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!(at("SNMPv3 needs a user")))?;
                let auth = match (&self.auth, &self.auth_password) {
                    (Some(p), Some(password)) => Some((
                        AuthProtocol::parse(p).ok_or_else(|| {
                            anyhow::anyhow!(at(&format!("auth '{p}': use md5, sha or sha256")))
                        })?,
                        password.clone(),
                    )),
                    (None, None) => None,
                    _ => anyhow::bail!(at("auth and auth_password go together")),
                };
                let privacy = match (&self.privacy, &self.privacy_password) {
                    (Some(p), Some(password)) => Some((
                        PrivProtocol::parse(p).ok_or_else(|| {
                            anyhow::anyhow!(at(&format!("privacy '{p}': use aes")))
                        })?,
                        password.clone(),
                    )),
                    (None, None) => None,
                    _ => anyhow::bail!(at("privacy and privacy_password go together")),
                };
                anyhow::ensure!(
                    privacy.is_none() || auth.is_some(),
                    at("privacy needs authentication (auth and auth_password)")
                );
                Security::Usm(User {
                    name,
                    auth,
                    privacy,
                })
            }
            v => anyhow::bail!(at(&format!("version '{v}': use \"2c\" or \"3\""))),
        };
        Ok(hopscope_pipeline::snmp::SnmpAgent {
            exporter: self.exporter,
            target: hopscope_snmp::Target {
                address,
                security,
                timeout: duration(&self.timeout, "2s", "timeout")?,
                retries: match self.retries.unwrap_or(1) {
                    // every try of a dead agent holds the poller up
                    r @ 0..=5 => r,
                    r => anyhow::bail!(at(&format!("retries {r}: at most 5"))),
                },
            },
            interval: duration(&self.interval, "60s", "interval")?,
        })
    }
}

impl ConfigFile {
    /// The SLOs checked and compiled, the detections checked (their
    /// address lists read), and where their alerts go.
    pub fn assurance(&self) -> Result<Assurance> {
        let detect = self.detect();
        hopscope_analyze::Detector::new(&detect)?;
        self.capacity.check()?;
        Ok(Assurance {
            slos: hopscope_analyze::Slo::compile_all(&self.slo)?,
            alerts: self.alerts.clone(),
            detect,
            policy: self.serve.policy(&self.policy)?,
            capacity: self.capacity.clone(),
        })
    }

    /// `[detect]`, whose networks inside are `[serve] inside` unless it
    /// names its own: one definition of inside for counting and detecting.
    fn detect(&self) -> hopscope_analyze::DetectConfig {
        let mut detect = self.detect.clone();
        if detect.inside.is_empty() {
            detect.inside = self.serve.inside.clone();
        }
        detect
    }
}

/// What `serve` judges and detects, and where it sends alerts.
#[derive(Debug, Clone, Default)]
pub struct Assurance {
    pub slos: Vec<hopscope_analyze::Slo>,
    pub alerts: hopscope_analyze::NotifyConfig,
    pub detect: hopscope_analyze::DetectConfig,
    pub policy: hopscope_analyze::Policy,
    /// Checked: `[capacity]` for the API and the forecast alerts.
    pub capacity: hopscope_analyze::capacity::CapacityConfig,
}

impl Assurance {
    /// The detections, with the policy; none when `[detect]` is off.
    pub fn detector(&self) -> Result<Option<hopscope_analyze::Detector>> {
        if !self.detect.enabled {
            return Ok(None);
        }
        Ok(Some(
            hopscope_analyze::Detector::new(&self.detect)?.with_policy(self.policy.clone()),
        ))
    }
}

/// `[serve]`: the keys of `hopscope serve`'s flags, in kebab-case, the
/// networks that tag flows (`[[serve.networks]]` with cidr, name, role,
/// site), and the address spaces of observation points for journeys
/// (`[serve.address-spaces]`, point name = number: points of one VRF or
/// customer network share a number; flows with equal addresses in
/// different spaces are different journeys).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeSection {
    data_dir: Option<PathBuf>,
    udp: Option<Vec<String>>,
    tcp: Option<Vec<String>>,
    udp_sockets: Option<usize>,
    receive_buffer: Option<usize>,
    replay: Option<Vec<PathBuf>>,
    allow: Option<Vec<String>>,
    exporter_name: Option<Vec<String>>,
    mmdb: Option<Vec<PathBuf>>,
    flush_interval: Option<String>,
    http: Option<String>,
    token: Option<String>,
    clickhouse: Option<String>,
    retention: Option<String>,
    max_size: Option<String>,
    max_sessions: Option<usize>,
    max_sessions_per_exporter: Option<usize>,
    session_idle_timeout: Option<String>,
    max_templates_per_exporter: Option<usize>,
    tcp_max_connections: Option<usize>,
    tcp_max_per_source: Option<usize>,
    tcp_max_handshakes: Option<usize>,
    tcp_handshake_timeout: Option<String>,
    tcp_idle_timeout: Option<String>,
    tcp_closed_linger: Option<String>,
    #[serde(default)]
    pub networks: Vec<hopscope_collector::NetworkTag>,
    /// The networks inside: traffic from elsewhere that leaves through an
    /// external interface is transit, counted where it came in (none given:
    /// no transit); detections read it too (none given: the private ranges).
    #[serde(default)]
    pub inside: Vec<hopscope_schema::Cidr>,
    #[serde(default)]
    pub sampling: Vec<SamplingEntry>,
    /// `[[serve.boundary]]`: the points and interfaces where traffic enters
    /// or leaves the network, where queries count it once.
    #[serde(default)]
    pub boundary: Vec<hopscope_collector::BoundaryRule>,
    #[serde(default)]
    pub address_spaces: std::collections::HashMap<String, u16>,
    /// `[[serve.clocks]]`: observation points that share a clock (one host,
    /// or devices PTP or NTP keeps within `bound`): delays between them are
    /// measured, not estimated.
    #[serde(default)]
    pub clocks: Vec<ClockEntry>,
    /// `[[serve.snmp]]`: the agents whose IF-MIB is polled for interface
    /// names, speeds and counters.
    #[serde(default)]
    pub snmp: Vec<SnmpEntry>,
}

/// One `[[serve.clocks]]` group: a name, the points by name, and the most
/// their clocks differ by (`"0"` for one host, `"50us"` for PTP, a few
/// milliseconds for NTP over a WAN).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockEntry {
    pub name: String,
    pub points: Vec<String>,
    #[serde(default)]
    pub bound: Option<String>,
}

/// `[[serve.sampling]]`: the rate of an exporter (and optionally of one
/// of its input interfaces) that announces none, as Akvorado's and
/// pmacct's sampling maps give it; `override = true` replaces a rate the
/// exporter does announce.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingEntry {
    pub exporter: std::net::IpAddr,
    pub interface: Option<u32>,
    pub rate: u64,
    #[serde(default, rename = "override")]
    pub replace: bool,
}

impl SamplingEntry {
    pub fn rule(&self) -> Result<hopscope_wire::SamplingRule> {
        anyhow::ensure!(
            self.rate >= 1,
            "[[serve.sampling]] for {}: rate must be 1 or more (one packet in N)",
            self.exporter
        );
        Ok(hopscope_wire::SamplingRule {
            exporter: self.exporter,
            interface: self.interface,
            rate: self.rate,
            replace: self.replace,
        })
    }
}

impl ServeSection {
    /// A policy compiled against these networks (zones may name them).
    pub fn policy(
        &self,
        config: &hopscope_analyze::PolicyConfig,
    ) -> Result<hopscope_analyze::Policy> {
        let networks: Vec<hopscope_analyze::policy::Network<'_>> = self
            .networks
            .iter()
            .map(|n| hopscope_analyze::policy::Network {
                cidr: n.cidr,
                name: &n.name,
                role: n.role.as_deref(),
                site: n.site.as_deref(),
            })
            .collect();
        Ok(hopscope_analyze::Policy::compile(config, &networks)?)
    }

    /// The clock domain of every point named in `[[serve.clocks]]`, by
    /// point id; a point in two groups is an error.
    pub fn clock_domains(
        &self,
    ) -> Result<std::collections::HashMap<u64, hopscope_correlate::ClockDomain>> {
        let mut domains = std::collections::HashMap::new();
        for group in &self.clocks {
            let bound_ns = match &group.bound {
                Some(b) => crate::probe::clock_bound_ns(b)
                    .with_context(|| format!("[[serve.clocks]] {}: bound {b}", group.name))?,
                None => 0,
            };
            anyhow::ensure!(
                !group.points.is_empty(),
                "[[serve.clocks]] {}: no points",
                group.name
            );
            for name in &group.points {
                // the clock probes announce with `--clock NAME`
                let domain = hopscope_correlate::ClockDomain::shared(
                    crate::probe::named_clock_id(&group.name),
                    bound_ns,
                );
                if domains.insert(observation_point_id(name), domain).is_some() {
                    anyhow::bail!("[[serve.clocks]]: point {name} is in two groups");
                }
            }
        }
        Ok(domains)
    }

    /// The address spaces by observation point id (derived from the names
    /// as `hopscope probe` derives them).
    pub fn address_spaces(&self) -> std::collections::HashMap<u64, u16> {
        self.address_spaces
            .iter()
            .map(|(name, &space)| (observation_point_id(name), space))
            .collect()
    }
}

/// `[probe]`: the keys of `hopscope probe`'s flags, in kebab-case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProbeSection {
    pcap: Option<Vec<PathBuf>>,
    interface: Option<Vec<String>>,
    export: Option<String>,
    observation_point: Option<String>,
    observation_point_id: Option<u64>,
    domain: Option<u32>,
    biflow: Option<bool>,
    active_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_flows: Option<usize>,
    select: Option<String>,
    hash: Option<String>,
    seed: Option<u32>,
    profile: Option<String>,
    payload_prefix: Option<usize>,
    duration: Option<String>,
    fanout_group: Option<u16>,
    tunnels: Option<String>,
    bpf: Option<String>,
    workers: Option<usize>,
    clock: Option<String>,
    clock_bound: Option<String>,
}

/// Fills every flag the user did not give (on the command line or in its
/// variable) from the file's section.
macro_rules! fill_unsaid {
    ($section:ident, $args:ident, $matches:ident; $($field:ident),* $(,)?) => {$(
        if let Some(v) = $section.$field.take() {
            if !said($matches, stringify!($field)) {
                $args.$field = v.into();
            }
        }
    )*};
}

pub fn load(path: &Path) -> Result<ConfigFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text)
        .with_context(|| format!("{}: not a valid hopscope configuration", path.display()))
}

/// Whether the user said this flag (or its variable) rather than leaving the default.
fn said(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

impl ServeSection {
    pub fn apply(&mut self, args: &mut ServeArgs, matches: &ArgMatches) {
        fill_unsaid!(self, args, matches;
            data_dir, udp, tcp, udp_sockets, receive_buffer, replay, allow,
            exporter_name, mmdb, flush_interval, http, token, clickhouse, retention, max_size,
            max_sessions, max_sessions_per_exporter, session_idle_timeout,
            max_templates_per_exporter, tcp_max_connections, tcp_max_per_source,
            tcp_max_handshakes, tcp_handshake_timeout, tcp_idle_timeout, tcp_closed_linger,
        );
    }
}

impl ProbeSection {
    /// Fills every flag the user did not give from the file.
    pub fn apply(mut self, args: &mut ProbeArgs, matches: &ArgMatches) {
        fill_unsaid!(self, args, matches;
            pcap, interface, export, observation_point, observation_point_id,
            domain, biflow, active_timeout, idle_timeout, max_flows, select, hash,
            seed, profile, payload_prefix, duration, fanout_group, tunnels, bpf, workers,
            clock, clock_bound,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    fn probe_args(argv: &[&str], file: &str) -> ProbeArgs {
        let matches = crate::Cli::command().get_matches_from(argv);
        let sub = matches.subcommand_matches("probe").unwrap();
        let mut args = ProbeArgs::from_arg_matches(sub).unwrap();
        let config: ConfigFile = toml::from_str(file).unwrap();
        config.probe.apply(&mut args, sub);
        args
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file = r#"
            [probe]
            export = "udp://127.0.0.1:4739"
            idle-timeout = "30s"
            biflow = true
            select = "1/64"
        "#;
        let args = probe_args(
            &[
                "hopscope",
                "probe",
                "--pcap",
                "x.pcap",
                "--idle-timeout",
                "5s",
            ],
            file,
        );
        assert_eq!(args.export.as_deref(), Some("udp://127.0.0.1:4739"));
        assert_eq!(args.idle_timeout, "5s");
        assert!(args.biflow);
        assert_eq!(args.select.as_deref(), Some("1/64"));
        assert_eq!(args.active_timeout, "60s");
    }

    #[test]
    fn address_spaces_map_point_names_to_their_ids() {
        let file = r#"
            [serve.address-spaces]
            "pe1:vrf-blue" = 2
            "pe2:vrf-blue" = 2
        "#;
        let config: ConfigFile = toml::from_str(file).unwrap();
        let spaces = config.serve.address_spaces();
        let id = u64::from(hopscope_probe::crc32(b"pe1:vrf-blue", 0));
        assert_eq!(spaces.get(&id), Some(&2));
        assert_eq!(spaces.len(), 2);
    }

    #[test]
    fn clock_groups_give_their_points_one_domain() {
        let file = r#"
            [[serve.clocks]]
            name = "lab host"
            points = ["r1:r1-a", "r1:r1-r2"]
            [[serve.clocks]]
            name = "ptp"
            points = ["r2:r2-r1"]
            bound = "50us"
        "#;
        let config: ConfigFile = toml::from_str(file).unwrap();
        let domains = config.serve.clock_domains().unwrap();
        let of = |n: &str| domains[&observation_point_id(n)];
        assert_eq!(of("r1:r1-a"), of("r1:r1-r2"));
        assert_ne!(of("r1:r1-a").id, of("r2:r2-r1").id);
        assert_eq!(of("r2:r2-r1").bound_ns, 50_000);
        // the clock a probe announces with `--clock ptp`
        assert_eq!(of("r2:r2-r1").id, crate::probe::named_clock_id("ptp"));
        let zero = "[[serve.clocks]]\nname = \"h\"\nbound = \"0\"\npoints = [\"x\"]";
        let config: ConfigFile = toml::from_str(zero).unwrap();
        assert_eq!(
            config.serve.clock_domains().unwrap()[&observation_point_id("x")].bound_ns,
            0
        );
        let twice = "[[serve.clocks]]\nname = \"a\"\npoints = [\"x\"]\n[[serve.clocks]]\nname = \"b\"\npoints = [\"x\"]";
        let config: ConfigFile = toml::from_str(twice).unwrap();
        assert!(config.serve.clock_domains().is_err());
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<ConfigFile>("[probe]\nexprot = \"x\"").is_err());
    }
}
