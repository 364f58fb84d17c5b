//! Alerts out, to the tools observability stacks already run:
//! Prometheus Alertmanager (its v2 API), webhooks (JSON), syslog (RFC 5424
//! over UDP or TCP) and JSON lines on standard error. Each destination has
//! its own thread and bounded queue, so a slow or dead one never holds up
//! the evaluation or the others; what it could not deliver is retried with
//! back-off, then counted as failed, and what did not fit in its queue is
//! counted as dropped.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hopscope_schema::format_time;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::AnalyzeError;
use crate::alert::{Alert, AlertState};

/// `[alerts]` of the configuration: where alerts go.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NotifyConfig {
    /// Alertmanager base URLs (`http://127.0.0.1:9093`).
    #[serde(default)]
    pub alertmanager: Vec<String>,
    /// URLs that each event is POSTed to as JSON.
    #[serde(default)]
    pub webhook: Vec<String>,
    /// Syslog receivers: `udp://host:port` or `tcp://host:port`.
    #[serde(default)]
    pub syslog: Vec<String>,
    /// Each event as a JSON line on standard error.
    #[serde(default)]
    pub log: bool,
    /// The base URL of hopscope's own UI, for links in what is sent.
    #[serde(default)]
    pub external_url: Option<String>,
}

/// Events a destination's queue holds before it drops.
const QUEUE: usize = 256;
/// Attempts per event, and the first back-off (doubled each time).
const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_secs(5);
/// Alertmanager forgets an alert not sent again within its resolve
/// timeout (5 minutes by default): firing alerts are sent every minute.
const RESEND: Duration = Duration::from_secs(60);

/// A destination's counters.
#[derive(Debug, Default)]
pub struct SinkCounters {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    pub retried: AtomicU64,
}

impl SinkCounters {
    fn report(&self, kind: &'static str, target: &str) -> SinkReport {
        SinkReport {
            kind,
            target: target.to_string(),
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
        }
    }
}

/// A destination as `status` and `/metrics` show it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SinkReport {
    pub kind: &'static str,
    pub target: String,
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
    pub retried: u64,
}

/// Where an event is delivered.
#[derive(Debug, Clone)]
enum Target {
    Alertmanager(HttpUrl),
    Webhook(HttpUrl),
    /// host:port, resolved at each attempt
    SyslogUdp(String),
    SyslogTcp(String),
}

impl Target {
    fn kind(&self) -> &'static str {
        match self {
            Target::Alertmanager(_) => "alertmanager",
            Target::Webhook(_) => "webhook",
            Target::SyslogUdp(_) | Target::SyslogTcp(_) => "syslog",
        }
    }
}

struct Sink {
    kind: &'static str,
    target: String,
    queue: SyncSender<Alert>,
    counters: Arc<SinkCounters>,
    /// Alertmanager's firing alerts, kept here as events are sent (not as
    /// the worker gets them), so that an event dropped from a full queue
    /// still leaves the right alerts being sent again every minute.
    firing: Arc<Mutex<BTreeMap<String, Alert>>>,
    thread: JoinHandle<()>,
}

/// Every destination of a configuration, started.
pub struct Notifiers {
    sinks: Vec<Sink>,
    log: bool,
    /// Set at stop: each event gets one attempt, no back-off.
    stopping: Arc<AtomicBool>,
}

/// How long `stop` waits for the destinations to deliver what is queued.
const STOP_WAIT: Duration = Duration::from_secs(10);

impl std::fmt::Debug for Notifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifiers")
            .field("sinks", &self.reports())
            .field("log", &self.log)
            .finish()
    }
}

impl Notifiers {
    /// Checks every destination and starts one thread for each.
    pub fn start(config: &NotifyConfig) -> Result<Notifiers, AnalyzeError> {
        let mut targets = Vec::new();
        for url in &config.alertmanager {
            let mut u = HttpUrl::parse(url)?;
            u.path = format!("{}/api/v2/alerts", u.path.trim_end_matches('/'));
            targets.push((url.clone(), Target::Alertmanager(u)));
        }
        for url in &config.webhook {
            targets.push((url.clone(), Target::Webhook(HttpUrl::parse(url)?)));
        }
        for url in &config.syslog {
            let bad = |m: &str| AnalyzeError::Destination(format!("syslog '{url}': {m}"));
            let (scheme, rest) = url
                .split_once("://")
                .ok_or_else(|| bad("udp://host:port or tcp://host:port"))?;
            let addr =
                host_port(rest, None).ok_or_else(|| bad("udp://host:port or tcp://host:port"))?;
            let target = match scheme {
                "udp" => Target::SyslogUdp(addr),
                "tcp" => Target::SyslogTcp(addr),
                _ => return Err(bad("udp:// or tcp://")),
            };
            targets.push((url.clone(), target));
        }
        let generator = config.external_url.clone().unwrap_or_default();
        let stopping = Arc::new(AtomicBool::new(false));
        let mut sinks = Vec::new();
        for (text, target) in targets {
            let (queue, rx) = sync_channel(QUEUE);
            let counters = Arc::new(SinkCounters::default());
            let firing = Arc::new(Mutex::new(BTreeMap::new()));
            let kind = target.kind();
            let worker = Worker {
                target,
                counters: counters.clone(),
                generator: generator.clone(),
                firing: firing.clone(),
                stopping: stopping.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("alerts to {kind}"))
                .spawn(move || worker.run(rx))
                .map_err(|e| AnalyzeError::Destination(format!("starting a thread: {e}")))?;
            sinks.push(Sink {
                kind,
                target: text,
                queue,
                counters,
                firing,
                thread,
            });
        }
        Ok(Notifiers {
            sinks,
            log: config.log,
            stopping,
        })
    }

    /// Queues events for every destination; never blocks.
    pub fn send(&self, events: &[Alert]) {
        for e in events {
            if self.log {
                eprintln!("{}", json!({ "alert": e }));
            }
            for s in &self.sinks {
                s.track(e);
                s.offer(e);
            }
        }
    }

    /// Alerts still firing from before a restart: Alertmanager is told
    /// again (and keeps being told); webhooks and syslog, which log
    /// events, already have them.
    pub fn resume(&self, firing: &[Alert]) {
        for s in self.sinks.iter().filter(|s| s.kind == "alertmanager") {
            for a in firing {
                s.track(a);
                s.offer(a);
            }
        }
    }

    pub fn reports(&self) -> Vec<SinkReport> {
        self.sinks
            .iter()
            .map(|s| s.counters.report(s.kind, &s.target))
            .collect()
    }

    /// Delivers what is queued (one attempt each, for at most 10 s in
    /// all: a dead receiver does not hold up the process's stop), stops
    /// the threads, and says what each delivered.
    pub fn stop(self) -> Vec<SinkReport> {
        self.stopping.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + STOP_WAIT;
        let mut reports = Vec::new();
        for s in self.sinks {
            drop(s.queue);
            while !s.thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            // past the deadline the thread is left to end on its own
            if s.thread.is_finished() {
                let _ = s.thread.join();
            }
            reports.push(s.counters.report(s.kind, &s.target));
        }
        reports
    }
}

impl Sink {
    /// Keeps Alertmanager's firing alerts as events are sent.
    fn track(&self, e: &Alert) {
        if self.kind != "alertmanager" {
            return;
        }
        let mut firing = self.firing.lock().expect("no panics hold it");
        match e.state {
            AlertState::Firing => firing.insert(e.id.clone(), e.clone()),
            AlertState::Resolved => firing.remove(&e.id),
        };
    }

    fn offer(&self, e: &Alert) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(e.clone())
        {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Worker {
    target: Target,
    counters: Arc<SinkCounters>,
    generator: String,
    /// Alertmanager's firing alerts, sent again every minute.
    firing: Arc<Mutex<BTreeMap<String, Alert>>>,
    stopping: Arc<AtomicBool>,
}

impl Worker {
    fn run(self, rx: Receiver<Alert>) {
        let mut last_resend = Instant::now();
        loop {
            match rx.recv_timeout(RESEND) {
                Ok(alert) => self.deliver(&[alert]),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if last_resend.elapsed() >= RESEND {
                let firing: Vec<Alert> = self
                    .firing
                    .lock()
                    .expect("no panics hold it")
                    .values()
                    .cloned()
                    .collect();
                if !firing.is_empty() {
                    self.deliver(&firing);
                }
                last_resend = Instant::now();
            }
        }
    }

    /// Sends, retrying with back-off (but once only when stopping);
    /// counts the outcome per event.
    fn deliver(&self, alerts: &[Alert]) {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            match self.attempt(alerts) {
                Ok(()) => {
                    self.counters
                        .sent
                        .fetch_add(alerts.len() as u64, Ordering::Relaxed);
                    return;
                }
                Err(_) if attempt < ATTEMPTS && !self.stopping.load(Ordering::Relaxed) => {
                    self.counters.retried.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(backoff);
                    backoff *= 2;
                }
                Err(_) => break,
            }
        }
        self.counters
            .failed
            .fetch_add(alerts.len() as u64, Ordering::Relaxed);
    }

    fn attempt(&self, alerts: &[Alert]) -> Result<(), String> {
        match &self.target {
            Target::Alertmanager(url) => {
                let body: Vec<_> = alerts
                    .iter()
                    .map(|a| alertmanager_alert(a, &self.generator))
                    .collect();
                post_json(url, &serde_json::Value::Array(body).to_string())
            }
            Target::Webhook(url) => {
                for a in alerts {
                    let body = json!({"version": "1", "source": "hopscope", "status": a.state.name(), "alert": a});
                    post_json(url, &body.to_string())?;
                }
                Ok(())
            }
            Target::SyslogUdp(host) => {
                let addr = resolve(host)?;
                let socket = UdpSocket::bind(if addr.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                })
                .map_err(|e| e.to_string())?;
                for a in alerts {
                    socket
                        .send_to(syslog_message(a).as_bytes(), addr)
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            Target::SyslogTcp(host) => {
                let mut stream = connect(host)?;
                stream
                    .set_write_timeout(Some(TIMEOUT))
                    .map_err(|e| e.to_string())?;
                for a in alerts {
                    // RFC 6587 octet counting: a length, a space, the message
                    let m = syslog_message(a);
                    write!(stream, "{} {m}", m.len()).map_err(|e| e.to_string())?;
                }
                stream.flush().map_err(|e| e.to_string())
            }
        }
    }
}

/// An alert as Alertmanager's `POST /api/v2/alerts` takes it. A firing
/// alert ends five minutes from now unless sent again; a resolved one
/// ended when it resolved.
pub fn alertmanager_alert(a: &Alert, generator: &str) -> serde_json::Value {
    let ends = match a.state {
        AlertState::Firing => hopscope_store::now_ns() + 300_000_000_000,
        AlertState::Resolved => a.ends_ns.unwrap_or(a.at_ns),
    };
    let mut alert = json!({
        "labels": a.labels,
        "annotations": {
            "summary": a.summary,
            "alert_id": a.id,
            "evidence": a.evidence.to_string(),
        },
        "startsAt": format_time(a.starts_ns),
        "endsAt": format_time(ends),
    });
    if !generator.is_empty() {
        alert["generatorURL"] = json!(format!(
            "{}/#/alerts?id={}",
            generator.trim_end_matches('/'),
            a.id
        ));
    }
    alert
}

/// RFC 5424: facility local0, critical for a page, warning for a ticket,
/// notice for a resolve; the alert's fields as structured data.
pub fn syslog_message(a: &Alert) -> String {
    let severity = match (a.state, a.severity.as_str()) {
        (AlertState::Resolved, _) => 5,
        (_, "page") => 2,
        _ => 4,
    };
    let pri = 16 * 8 + severity;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && h.is_ascii() && !h.contains(' '))
        .unwrap_or_else(|| "-".into());
    let escape = |v: &str| {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace(']', "\\]")
    };
    format!(
        "<{pri}>1 {} {host} hopscope {} ALERT [alert@32473 id=\"{}\" state=\"{}\" severity=\"{}\" rule=\"{}\"] {}",
        syslog_time(a.at_ns),
        std::process::id(),
        escape(&a.id),
        a.state.name(),
        escape(&a.severity),
        escape(&a.rule),
        a.summary
    )
}

/// RFC 5424's TIMESTAMP: at most six digits of fractions.
fn syslog_time(ns: i64) -> String {
    let full = format_time(ns);
    // YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ: keep the microseconds
    format!("{}Z", &full[..26])
}

/// A plain `http://` URL (hopscope does not speak TLS to alert receivers:
/// put them on a local address or behind a proxy). The name is resolved at
/// each attempt, every address it has tried in turn, so a receiver that
/// moves or starts later is still reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// As the URL says it, for the Host header.
    pub authority: String,
    /// host:port, the port 80 unless said.
    pub host_port: String,
    pub path: String,
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<HttpUrl, AnalyzeError> {
        let bad = |m: &str| AnalyzeError::Destination(format!("'{url}': {m}"));
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// URLs (no TLS): use a local receiver or a proxy"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(bad("a host[:port], without credentials"));
        }
        let host_port = host_port(authority, Some(80)).ok_or_else(|| bad("a host[:port]"))?;
        Ok(HttpUrl {
            authority: authority.to_string(),
            host_port,
            path: path.to_string(),
        })
    }
}

/// `host:port` from `host[:port]`, with `default` when no port is said
/// (none: a port is required).
fn host_port(authority: &str, default: Option<u16>) -> Option<String> {
    if authority.is_empty() {
        return None;
    }
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok() && !h.ends_with(':'));
    match (has_port, default) {
        (true, _) => Some(authority.to_string()),
        (false, Some(port)) => Some(format!("{authority}:{port}")),
        (false, None) => None,
    }
}

fn resolve(host_port: &str) -> Result<SocketAddr, String> {
    host_port
        .to_socket_addrs()
        .map_err(|e| format!("{host_port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host_port}: no address"))
}

/// A TCP connection to the first of `host_port`'s addresses that answers.
fn connect(host_port: &str) -> Result<TcpStream, String> {
    let mut last = format!("{host_port}: no address");
    for addr in host_port
        .to_socket_addrs()
        .map_err(|e| format!("{host_port}: {e}"))?
    {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(s) => {
                s.set_read_timeout(Some(TIMEOUT))
                    .and_then(|()| s.set_write_timeout(Some(TIMEOUT)))
                    .map_err(|e| e.to_string())?;
                return Ok(s);
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

/// POSTs JSON; a 2xx answer is success.
fn post_json(url: &HttpUrl, body: &str) -> Result<(), String> {
    let mut stream = connect(&url.host_port)?;
    write!(
        stream,
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hopscope\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        url.path,
        url.authority,
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match stream.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(e.to_string()),
        }
    }
    let line = String::from_utf8_lossy(&head[..got]);
    let status = line.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(s) if (200..300).contains(&s) => Ok(()),
        Some(s) => Err(format!("answered {s}")),
        None => Err(format!("not an HTTP answer: {line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::net::TcpListener;

    fn alert(state: AlertState) -> Alert {
        Alert {
            id: "slo-web-page-1".into(),
            rule: "slo-burn".into(),
            name: "HopscopeSLOBurn".into(),
            severity: "page".into(),
            state,
            at_ns: 1_800_000_000_000_000_000,
            starts_ns: 1_800_000_000_000_000_000,
            ends_ns: None,
            labels: [("alertname".to_string(), "HopscopeSLOBurn".to_string())].into(),
            summary: "SLO web burns".into(),
            evidence: json!({}),
        }
    }

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://127.0.0.1:9093/prefix").unwrap();
        assert_eq!(u.host_port, "127.0.0.1:9093");
        assert_eq!(u.path, "/prefix");
        assert!(HttpUrl::parse("https://127.0.0.1").is_err());
        assert!(HttpUrl::parse("http://user:pw@127.0.0.1").is_err());
        assert_eq!(
            HttpUrl::parse("http://localhost").unwrap().host_port,
            "localhost:80"
        );
        assert_eq!(
            HttpUrl::parse("http://[::1]:9093/").unwrap().host_port,
            "[::1]:9093"
        );
    }

    #[test]
    fn syslog_is_rfc5424() {
        let m = syslog_message(&alert(AlertState::Firing));
        assert!(m.starts_with("<130>1 2027-01-15T08:00:00.000000Z "), "{m}");
        assert!(m.contains(" hopscope "));
        assert!(m.contains("[alert@32473 id=\"slo-web-page-1\" state=\"firing\""));
        assert!(m.ends_with("] SLO web burns"));
    }

    /// A receiver that fails twice and then answers 200: the event is
    /// delivered, with two retries counted.
    #[test]
    fn a_webhook_is_retried_until_it_answers() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let mut bodies = Vec::new();
            for (i, stream) in listener.incoming().take(3).enumerate() {
                let mut stream = stream.unwrap();
                let mut buf = vec![0u8; 65536];
                let mut n = 0;
                // read the head and the body it announces
                loop {
                    n += stream.read(&mut buf[n..]).unwrap();
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .unwrap()
                            .parse()
                            .unwrap();
                        if body.len() >= length {
                            bodies.push(body.to_string());
                            break;
                        }
                    }
                }
                let status = if i < 2 { "503 Busy" } else { "200 OK" };
                write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").unwrap();
            }
            bodies
        });
        let notifiers = Notifiers::start(&NotifyConfig {
            webhook: vec![format!("http://127.0.0.1:{port}/hook")],
            ..NotifyConfig::default()
        })
        .unwrap();
        notifiers.send(&[alert(AlertState::Firing)]);
        let bodies = server.join().unwrap();
        let reports = notifiers.stop();
        assert_eq!(bodies.len(), 3);
        let v: Value = serde_json::from_str(&bodies[2]).unwrap();
        assert_eq!(v["status"], "firing");
        assert_eq!(v["alert"]["id"], "slo-web-page-1");
        assert_eq!(
            (reports[0].sent, reports[0].retried, reports[0].failed),
            (1, 2, 0)
        );
    }
}
