//! Beaconing: an inside host that opens connections to one outside
//! service at a regular interval with requests of a regular size, as
//! implants call their command-and-control server home. Scored as RITA
//! scores it, over the connections of one window (default an hour):
//! the intervals' and the sizes' Bowley skewness (a regular series is
//! symmetric) and their median absolute deviation relative to their
//! median (a regular series barely varies: 0 from half the median on),
//! each turned into a score from 0 to 1 and averaged.
//!
//! Only connections a client opened count (a record of an established TCP
//! connection's later part, cut by the exporter's active timeout, is no
//! new connection), one observation point's view at a time (five routers
//! exporting one beacon are one beacon), inside to outside only; NTP and
//! DNS are left out by default (they are periodic by design).

use super::HashMap;

use hopscope_schema::{Inside, format_addr};
use serde::Deserialize;
use serde_json::json;

use super::Finding;
use super::flows::{FlowEvent, SYN};
use super::scan::duration;
use crate::AnalyzeError;

pub const RULE: &str = "beacon";
const NAME: &str = "HopscopeBeacon";
/// Pairs followed at most (a client and a service at a point), connections
/// kept per pair (the newest) and in all: bounded (about 50 MB), and what
/// is left out counted. Near the bound, the pairs with the fewest
/// connections (a site visited once) make room.
const MAX_PAIRS: usize = 200_000;
const MAX_CONNECTIONS: usize = 1_000;
const MAX_STORED: usize = 2_000_000;
/// A record that starts within this of its pair's last record's end
/// continues it (a flow cut by the active timeout), when its flags cannot
/// say.
const CONTINUES_NS: i64 = 1_000_000_000;
/// Connections more often than this are no beacon (streaming, retries).
const MIN_INTERVAL_NS: i64 = 1_000_000_000;
/// How often (event time) pairs are judged.
const JUDGE_EVERY_NS: i64 = 10_000_000_000;

/// `[detect.beacon]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BeaconConfig {
    /// Connections are judged over this window.
    #[serde(default = "default_window")]
    pub window: String,
    /// Connections in the window needed before a pair is judged.
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// The score (0 to 1) from which a pair beacons.
    #[serde(default = "default_score")]
    pub score: f64,
    /// Service ports never judged (periodic by design).
    #[serde(default = "default_ignore_ports")]
    pub ignore_ports: Vec<u16>,
    /// The alert resolves after this long without a connection.
    #[serde(default = "default_quiet")]
    pub quiet: String,
}

fn default_window() -> String {
    "1h".into()
}
fn default_connections() -> usize {
    10
}
fn default_score() -> f64 {
    0.8
}
fn default_ignore_ports() -> Vec<u16> {
    vec![53, 123]
}
fn default_quiet() -> String {
    "30m".into()
}

impl Default for BeaconConfig {
    fn default() -> Self {
        BeaconConfig {
            window: default_window(),
            connections: default_connections(),
            score: default_score(),
            ignore_ports: default_ignore_ports(),
            quiet: default_quiet(),
        }
    }
}

/// A client and a service, at one observation point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Pair {
    client: [u8; 16],
    server: [u8; 16],
    proto: u8,
    port: u16,
    point: u64,
}

#[derive(Debug, Default)]
struct Series {
    /// Each connection's start and request size, oldest first.
    connections: Vec<(i64, u64)>,
    /// The newest record's end: where a record continuing it would start.
    last_end_ns: i64,
    sampling: u64,
    /// Whether connections came since the pair was last judged.
    changed: bool,
}

/// The beacon detection's state: connection series by pair.
#[derive(Debug)]
pub(super) struct Beacons {
    window_ns: i64,
    quiet_ns: i64,
    connections: usize,
    score: f64,
    ignore_ports: Vec<u16>,
    pairs: HashMap<Pair, Series>,
    /// Connections kept over all pairs.
    stored: usize,
    judged_ns: i64,
    untracked: u64,
}

impl Beacons {
    pub fn new(c: &BeaconConfig) -> Result<Beacons, AnalyzeError> {
        if !(4..=MAX_CONNECTIONS).contains(&c.connections) || !(0.0..=1.0).contains(&c.score) {
            return Err(AnalyzeError::Setting {
                key: "detect.beacon".into(),
                message: format!(
                    "connections is from 4 to {MAX_CONNECTIONS}, score between 0 and 1"
                ),
            });
        }
        Ok(Beacons {
            window_ns: duration("detect.beacon.window", &c.window)?,
            quiet_ns: duration("detect.beacon.quiet", &c.quiet)?,
            connections: c.connections,
            score: c.score,
            ignore_ports: c.ignore_ports.clone(),
            pairs: HashMap::default(),
            stored: 0,
            judged_ns: i64::MIN,
            untracked: 0,
        })
    }

    pub fn quiet_ns(&self) -> i64 {
        self.quiet_ns
    }

    pub fn tracked(&self) -> u64 {
        self.pairs.len() as u64
    }

    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    pub fn add(&mut self, events: &[FlowEvent], inside: &Inside) {
        for e in events.iter().filter(|e| matches!(e.proto, 6 | 17)) {
            let c = e.connection();
            if c.reply
                || self.ignore_ports.contains(&c.port)
                || !inside.holds(c.client)
                || inside.holds(c.server)
            {
                continue;
            }
            let pair = Pair {
                client: c.client,
                server: c.server,
                proto: e.proto,
                port: c.port,
                point: e.point,
            };
            if !self.pairs.contains_key(&pair) && self.pairs.len() >= MAX_PAIRS {
                self.untracked += 1;
                continue;
            }
            let s = self.pairs.entry(pair).or_default();
            // a TCP record with a SYN opened a connection; one without
            // (or a flagless record that starts as the last one ended)
            // continues one
            let opens = match e.tcp_flags {
                Some(f) if e.proto == 6 => f & SYN != 0,
                _ => {
                    e.start_ns > s.last_end_ns.saturating_add(CONTINUES_NS)
                        || s.connections.is_empty()
                }
            };
            s.last_end_ns = s.last_end_ns.max(e.end_ns);
            s.sampling = s.sampling.max(e.sampling);
            if !opens
                || s.connections
                    .iter()
                    .rev()
                    .take(4)
                    .any(|(t, _)| *t == e.start_ns)
            {
                continue;
            }
            if s.connections.len() >= MAX_CONNECTIONS {
                s.connections.remove(0);
            } else if self.stored >= MAX_STORED {
                self.untracked += 1;
                continue;
            } else {
                self.stored += 1;
            }
            s.connections.push((e.start_ns, e.bytes));
            s.changed = true;
        }
    }

    /// The next evaluation judges whatever time it is (the end of a
    /// recomputation: what reached the threshold in its last seconds).
    pub fn judge_next(&mut self) {
        self.judged_ns = i64::MIN;
    }

    /// Forgets connections older than the window; names the pairs that
    /// beacon at `now_ns`, judged every 10 s of event time.
    pub fn evaluate(&mut self, now_ns: i64) -> Vec<Finding> {
        if now_ns.saturating_sub(self.judged_ns) < JUDGE_EVERY_NS {
            return Vec::new();
        }
        self.judged_ns = now_ns;
        let oldest = now_ns.saturating_sub(self.window_ns);
        let mut found = Vec::new();
        let mut stored = 0;
        self.pairs.retain(|pair, s| {
            s.connections.sort_unstable();
            let keep_from = s.connections.partition_point(|(t, _)| *t < oldest);
            s.connections.drain(..keep_from);
            stored += s.connections.len();
            if std::mem::take(&mut s.changed)
                && s.connections.len() >= self.connections
                && let Some(score) = Score::of(&s.connections)
                && score.total >= self.score
            {
                found.push((*pair, score, s.sampling, s.last_end_ns));
            }
            !s.connections.is_empty() || s.last_end_ns >= oldest
        });
        self.stored = stored;
        self.make_room();
        found
            .into_iter()
            .map(|(pair, score, sampling, last_end_ns)| {
                self.finding(pair, &score, sampling, last_end_ns)
            })
            .collect()
    }

    /// Near the bound of pairs, forgets those with the fewest connections
    /// (the oldest first) down to four fifths of it: a site visited once
    /// makes room for a client that calls out again and again.
    fn make_room(&mut self) {
        if self.pairs.len() < MAX_PAIRS / 20 * 19 {
            return;
        }
        let mut by_use: Vec<(usize, i64, Pair)> = self
            .pairs
            .iter()
            .map(|(p, s)| (s.connections.len(), s.last_end_ns, *p))
            .collect();
        by_use.sort_unstable_by_key(|(n, last, _)| (*n, *last));
        for (n, _, p) in by_use
            .into_iter()
            .take(self.pairs.len() - MAX_PAIRS / 5 * 4)
        {
            self.pairs.remove(&p);
            self.stored -= n;
            self.untracked += n as u64;
        }
    }

    fn finding(&self, p: Pair, s: &Score, sampling: u64, last_end_ns: i64) -> Finding {
        let client = format_addr(&p.client);
        let server = format_addr(&p.server);
        let proto = if p.proto == 6 { "tcp" } else { "udp" };
        let service = format!("{server}:{}/{proto}", p.port);
        let subject = format!("{client}>{service}");
        let sampled = if sampling > 1 {
            format!("; sampled 1 in {sampling}: connections may be missing")
        } else {
            String::new()
        };
        Finding {
            rule: RULE,
            name: NAME,
            severity: "ticket",
            subject: subject.clone(),
            labels: [
                ("subject".to_string(), subject),
                ("source".to_string(), client.clone()),
                ("destination".to_string(), server.clone()),
                ("service".to_string(), service.clone()),
            ]
            .into(),
            summary: format!(
                "{client} beacons to {service}: {} connections every {:.1} s (±{:.1} s) of {} bytes (±{}), score {:.2}{sampled}",
                s.connections, s.interval_s, s.interval_mad_s, s.size, s.size_mad, s.total,
            ),
            evidence: json!({
                "client": client,
                "service": service,
                "point": p.point,
                "connections": s.connections,
                "interval_s": s.interval_s,
                "interval_mad_s": s.interval_mad_s,
                "size_bytes": s.size,
                "size_mad_bytes": s.size_mad,
                "scores": {
                    "interval_skew": s.interval_skew,
                    "interval_spread": s.interval_spread,
                    "size_skew": s.size_skew,
                    "size_spread": s.size_spread,
                },
                "score": s.total,
                "sampling": sampling,
                "flows": {
                    "filter": format!("src host {client} and dst host {server} and dst port {}", p.port),
                    "from_ns": s.first_ns,
                    // records arrive after their flows end
                    "to_ns": last_end_ns.saturating_add(60_000_000_000),
                },
            }),
            seen_ns: s.last_ns,
            quiet_ns: self.quiet_ns,
        }
    }
}

/// How regular a series of connections is.
#[derive(Debug, Clone, PartialEq)]
struct Score {
    connections: usize,
    first_ns: i64,
    last_ns: i64,
    interval_s: f64,
    interval_mad_s: f64,
    size: u64,
    size_mad: u64,
    interval_skew: f64,
    interval_spread: f64,
    size_skew: f64,
    size_spread: f64,
    total: f64,
}

impl Score {
    /// The score of connections (start, size) in order of start; None
    /// when they come too often to be a beacon.
    fn of(connections: &[(i64, u64)]) -> Option<Score> {
        let intervals: Vec<f64> = connections
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) as f64)
            .collect();
        let sizes: Vec<f64> = connections.iter().map(|(_, b)| *b as f64).collect();
        let (interval, interval_mad) = median_mad(&intervals);
        if interval < MIN_INTERVAL_NS as f64 {
            return None;
        }
        let (size, size_mad) = median_mad(&sizes);
        let interval_skew = 1.0 - bowley(&intervals).abs();
        let interval_spread = spread_score(interval, interval_mad);
        let size_skew = 1.0 - bowley(&sizes).abs();
        let size_spread = spread_score(size, size_mad);
        Some(Score {
            connections: connections.len(),
            first_ns: connections[0].0,
            last_ns: connections[connections.len() - 1].0,
            interval_s: interval / 1e9,
            interval_mad_s: interval_mad / 1e9,
            size: size as u64,
            size_mad: size_mad as u64,
            interval_skew,
            interval_spread,
            size_skew,
            size_spread,
            total: (interval_skew + interval_spread + size_skew + size_spread) / 4.0,
        })
    }
}

/// The value at quantile `q` of sorted values (linear interpolation).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let at = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo as f64)
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// The median and the median absolute deviation from it.
fn median_mad(values: &[f64]) -> (f64, f64) {
    let v = sorted(values);
    let median = quantile(&v, 0.5);
    let deviations: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
    (median, quantile(&sorted(&deviations), 0.5))
}

/// Quartiles closer than this share of the median: the series is regular,
/// and the shape of its small variation says nothing (a `curl` every 2 s
/// varies by milliseconds, its requests by a packet: 400 or 452 bytes;
/// random arrivals' quartiles lie a whole median apart).
const NARROW: f64 = 0.15;

/// Bowley's skewness, from -1 to 1: 0 for a symmetric series (and for one
/// whose quartiles all but meet).
fn bowley(values: &[f64]) -> f64 {
    let v = sorted(values);
    let (q1, q2, q3) = (quantile(&v, 0.25), quantile(&v, 0.5), quantile(&v, 0.75));
    if q3 - q1 <= NARROW * q2.abs() || q3 - q1 <= f64::EPSILON {
        0.0
    } else {
        ((q1 + q3 - 2.0 * q2) / (q3 - q1)).clamp(-1.0, 1.0)
    }
}

/// 1 for a series that does not vary, 0 for one whose deviation is half
/// its median or more (random arrivals deviate by about 0.7 of theirs; a
/// beacon's jitter of ±20 % by about 0.06).
fn spread_score(median: f64, mad: f64) -> f64 {
    if median <= 0.0 {
        return if mad <= 0.0 { 1.0 } else { 0.0 };
    }
    (1.0 - 2.0 * mad / median).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopscope_schema::ipv4_mapped;

    const S: i64 = 1_000_000_000;

    fn open(client: [u8; 4], server: [u8; 4], at_ns: i64, bytes: u64) -> FlowEvent {
        FlowEvent {
            end_ns: at_ns + S / 10,
            start_ns: at_ns,
            point: 1,
            src: ipv4_mapped(client),
            dst: ipv4_mapped(server),
            src_port: 40_000 + (at_ns / S) as u16,
            dst_port: 443,
            proto: 6,
            packets: 8,
            bytes,
            reverse_packets: None,
            tcp_flags: Some(0x1b),
            icmp_type: None,
            sampling: 1,
        }
    }

    fn beacons() -> Beacons {
        Beacons::new(&BeaconConfig::default()).unwrap()
    }

    #[test]
    fn a_regular_call_home_beacons_and_says_its_period() {
        let mut b = beacons();
        let mut rng = crate::detect::tests::Jitter(7);
        let events: Vec<FlowEvent> = (0..30)
            .map(|i| {
                let jitter = rng.next(S); // up to a second either way
                open(
                    [10, 1, 0, 5],
                    [203, 0, 113, 9],
                    i * 60 * S + jitter,
                    1_200 + i as u64 % 3,
                )
            })
            .collect();
        b.add(&events, &Inside::default());
        let found = b.evaluate(31 * 60 * S);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].subject, "10.1.0.5>203.0.113.9:443/tcp");
        let interval = found[0].evidence["interval_s"].as_f64().unwrap();
        assert!((interval - 60.0).abs() < 2.0, "{interval}");
        assert!(found[0].evidence["score"].as_f64().unwrap() > 0.9);
    }

    #[test]
    fn browsing_the_same_site_at_random_is_no_beacon() {
        let mut b = beacons();
        let mut rng = crate::detect::tests::Jitter(11);
        let mut at = 0;
        let events: Vec<FlowEvent> = (0..40)
            .map(|_| {
                at += S + rng.next(120 * S).abs() * 3;
                open(
                    [10, 1, 0, 6],
                    [203, 0, 113, 10],
                    at,
                    500 + rng.next(50_000).unsigned_abs(),
                )
            })
            .collect();
        b.add(&events, &Inside::default());
        assert!(b.evaluate(at + S).is_empty());
    }

    #[test]
    fn inside_to_inside_ntp_and_active_timeout_pieces_are_left_out() {
        let mut b = beacons();
        let mut events = Vec::new();
        for i in 0..30 {
            // a poller inside, NTP out, and one long connection cut every 60 s
            events.push(open([10, 1, 0, 7], [10, 2, 0, 1], i * 60 * S, 90));
            let mut ntp = open([10, 1, 0, 7], [192, 0, 2, 123], i * 64 * S, 90);
            (ntp.proto, ntp.dst_port, ntp.tcp_flags) = (17, 123, None);
            events.push(ntp);
            let mut piece = open([10, 1, 0, 8], [203, 0, 113, 11], i * 60 * S, 90_000);
            piece.tcp_flags = Some(if i == 0 { 0x1a } else { 0x18 });
            events.push(piece);
        }
        b.add(&events, &Inside::default());
        assert!(b.evaluate(31 * 60 * S).is_empty());
    }

    /// A curl every 2 s, as the lab's probe saw it: the intervals vary by
    /// milliseconds and the requests by a packet (400 or 452 bytes), whose
    /// skews are noise; the series is a beacon from its tenth connection.
    #[test]
    fn a_jitter_of_milliseconds_and_a_packet_does_not_hide_a_beacon() {
        let mut rng = crate::detect::tests::Jitter(3);
        let connections: Vec<(i64, u64)> = [400, 452, 452, 400, 452, 452, 452, 400, 452, 400]
            .into_iter()
            .enumerate()
            .map(|(i, size)| (i as i64 * 2_010_000_000 + rng.next(5_000_000), size))
            .collect();
        let s = Score::of(&connections).unwrap();
        assert!(s.total > 0.95, "{s:?}");
    }

    #[test]
    fn the_score_of_a_perfect_series_is_one() {
        let s = Score::of(&(0..10).map(|i| (i * 30 * S, 100)).collect::<Vec<_>>()).unwrap();
        assert_eq!(s.total, 1.0);
        assert!(Score::of(&(0..10).map(|i| (i * S / 10, 100)).collect::<Vec<_>>()).is_none());
    }
}
