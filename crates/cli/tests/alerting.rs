//! Alerts out, to the real tools: `hopscope serve` judges an SLO that the
//! simulated chain's loss breaks, and its page reaches Prometheus
//! Alertmanager (Debian's `prometheus-alertmanager`, on loopback, checked
//! through its v2 API), a syslog receiver (Debian's `rsyslog`, writing
//! what it receives over UDP and TCP to a file), and Prometheus (Debian's
//! `prometheus`), which scrapes `/metrics` and evaluates a rule of its own
//! over the SLO gauges. `scripts/integration` installs the tools and runs
//! these (`--ignored`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_tcp_port, http_get, simulated_exports};

mod common;

/// A child process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(program: &str, args: &[String], dir: &Path) -> Running {
    let log =
        std::fs::File::create(dir.join(format!("{}.log", program.replace('/', "_")))).unwrap();
    Running(
        Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e} (scripts/integration installs it)")),
    )
}

/// Polls `check` every half second for up to `limit`.
fn within<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(v) = check() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    None
}

fn json(port: u16, path: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&http_get(port, path)?).ok()
}

#[test]
#[ignore = "needs prometheus-alertmanager, prometheus and rsyslog (scripts/integration)"]
fn a_page_reaches_alertmanager_syslog_and_prometheus() {
    let dir = std::env::temp_dir().join(format!("hopscope-alerting-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (am, prom, api) = (free_tcp_port(), free_tcp_port(), free_tcp_port());
    let (syslog_udp, syslog_tcp) = (free_udp_port(), free_tcp_port());

    std::fs::write(
        dir.join("alertmanager.yml"),
        "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n",
    )
    .unwrap();
    let _alertmanager = start(
        "prometheus-alertmanager",
        &[
            "--config.file=alertmanager.yml".into(),
            format!("--storage.path={}", dir.join("am").display()),
            format!("--web.listen-address=127.0.0.1:{am}"),
            // one instance, no gossip
            "--cluster.listen-address=".into(),
        ],
        &dir,
    );
    std::fs::write(
        dir.join("rsyslog.conf"),
        format!(
            r#"module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="{syslog_udp}")
input(type="imtcp" address="127.0.0.1" port="{syslog_tcp}")
template(name="raw" type="string" string="%rawmsg%\n")
*.* action(type="omfile" file="{}" template="raw")
"#,
            dir.join("syslog.txt").display()
        ),
    )
    .unwrap();
    let _rsyslog = start(
        "rsyslogd",
        &[
            "-n".into(),
            "-f".into(),
            dir.join("rsyslog.conf").display().to_string(),
            "-i".into(),
            dir.join("rsyslog.pid").display().to_string(),
        ],
        &dir,
    );

    // the simulated chain's 2 % loss, now, against a 0.5 % objective
    let mut serve: Vec<String> = [
        "serve",
        "--data-dir",
        "data",
        "--udp",
        "none",
        "--tcp",
        "none",
        "--flush-interval",
        "20ms",
        "--config",
        "hopscope.toml",
    ]
    .map(String::from)
    .to_vec();
    serve.extend(["--http".into(), format!("127.0.0.1:{api}")]);
    serve.extend(simulated_exports(&dir, "0.02", Some("now")));
    std::fs::write(
        dir.join("hopscope.toml"),
        format!(
            r#"
[[slo]]
name = "e2e-loss"
indicator = "loss"
threshold = "0.5%"
objective = "99%"
min-events = 1
labels = {{ team = "network" }}

[alerts]
alertmanager = ["http://127.0.0.1:{am}"]
syslog = ["udp://127.0.0.1:{syslog_udp}", "tcp://127.0.0.1:{syslog_tcp}"]
external-url = "http://127.0.0.1:{api}"
"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n\
             scrape_configs:\n  - job_name: hopscope\n    static_configs:\n      - targets: ['127.0.0.1:{api}']\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("rules.yml"),
        "groups:\n  - name: hopscope\n    rules:\n      - alert: SloBudgetSpent\n        expr: hopscope_slo_budget_remaining < 0\n",
    )
    .unwrap();
    let _prometheus = start(
        "prometheus",
        &[
            "--config.file=prometheus.yml".into(),
            format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{prom}"),
        ],
        &dir,
    );
    let bin = env!("CARGO_BIN_EXE_hopscope");
    let _serve = start(bin, &serve, &dir);

    // the page, in Alertmanager: its bucket is judged once the journeys'
    // watermark is 17 s past its end; after the replay the correlator's
    // watermark follows the wall 10 s after its input went quiet, the
    // analyzer's 30 s after the journeys did: up to two and a half minutes
    let page = within(Duration::from_secs(200), || {
        let alerts = json(am, "/api/v2/alerts")?;
        alerts
            .as_array()?
            .iter()
            .find(|a| a["labels"]["slo"] == "e2e-loss" && a["labels"]["severity"] == "page")
            .cloned()
    })
    .unwrap_or_else(|| panic!("no page in Alertmanager; hopscope said: {}", log(&dir, bin)));
    assert_eq!(page["labels"]["alertname"], "HopscopeSLOBurn", "{page}");
    assert_eq!(page["labels"]["team"], "network");
    assert_eq!(page["status"]["state"], "active", "{page}");
    assert!(
        page["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("first suspect: r2:r2-")),
        "the summary names R2 first: {page}"
    );
    assert!(
        page["generatorURL"]
            .as_str()
            .unwrap()
            .starts_with(&format!("http://127.0.0.1:{api}/"))
    );

    // syslog, both ways: RFC 5424 with the alert as structured data
    let lines = within(Duration::from_secs(30), || {
        let text = std::fs::read_to_string(dir.join("syslog.txt")).ok()?;
        let ours: Vec<String> = text
            .lines()
            .filter(|l| l.contains("[alert@32473 id=\"slo-e2e-loss-page-"))
            .map(String::from)
            .collect();
        (ours.len() >= 2).then_some(ours)
    })
    .unwrap_or_else(|| {
        panic!(
            "syslog: {:?}",
            std::fs::read_to_string(dir.join("syslog.txt"))
        )
    });
    for l in &lines {
        assert!(l.starts_with("<130>1 ") && l.contains(" hopscope "), "{l}");
    }

    // Prometheus scraped the SLO gauges and its own rule over them fires
    let fired = within(Duration::from_secs(60), || {
        let v = json(prom, "/api/v1/alerts")?;
        v["data"]["alerts"]
            .as_array()?
            .iter()
            .find(|a| {
                a["labels"]["alertname"] == "SloBudgetSpent" && a["labels"]["slo"] == "e2e-loss"
            })
            .cloned()
    })
    .unwrap_or_else(|| panic!("Prometheus' rule did not fire"));
    assert_eq!(fired["state"], "firing", "{fired}");

    // and hopscope counted what it delivered: the analyzer refreshes the
    // counts between its steps, and a step that ranks the root cause of
    // a new alert over the store (a debug build, a busy machine) can take
    // a while
    let sent = |metrics: &str, kind: &str| {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("hopscope_alert_notifications_total{")
                    && l.contains(&format!("kind=\"{kind}\""))
                    && l.contains("outcome=\"sent\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let counted = within(Duration::from_secs(60), || {
        let metrics = http_get(api, "/metrics")?;
        (sent(&metrics, "alertmanager") >= 1.0 && sent(&metrics, "syslog") >= 2.0)
            .then_some(metrics)
    });
    let metrics = counted.unwrap_or_else(|| {
        panic!(
            "deliveries not counted: {}",
            http_get(api, "/metrics").unwrap_or_default()
        )
    });
    // every segment's last minute as gauges: the lossy one inside R2 loses
    let r2 = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "hopscope_segment_loss_ratio{upstream=\"r2:r2-r1\",downstream=\"r2:r2-r3\"}",
            )
        })
        .unwrap_or_else(|| panic!("no gauge of R2's inside: {metrics}"));
    let ratio: f64 = r2.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(ratio > 0.005 && ratio < 0.06, "{r2}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn log(dir: &Path, bin: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{}.log", bin.replace('/', "_")))).unwrap_or_default()
}
