//! `hopscope status`: asks a running `serve` for its health and prints it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hopscope_collector::Status;
use hopscope_pipeline::{Overflow, SubscriberStats};

use crate::StatusArgs;

pub fn run(args: &StatusArgs) -> Result<ExitCode> {
    let body = get(&args.url, "/api/status", args.token.as_deref())?;
    if args.json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let status: Status = serde_json::from_str(&body).context("reading the status")?;
    let bus: Bus = serde_json::from_str(&body).context("reading the status")?;
    let whole: serde_json::Value = serde_json::from_str(&body).context("reading the status")?;
    print!(
        "{}{}{}{}",
        describe(&status),
        describe_bus(&bus.bus),
        describe_analysis(&whole["analysis"]),
        describe_detection(&whole["detection"])
    );
    Ok(ExitCode::SUCCESS)
}

/// A plain HTTP/1.1 GET: the API is local and small, no client library needed.
fn get(url: &str, path: &str, token: Option<&str>) -> Result<String> {
    let host = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?
        .trim_end_matches('/');
    let mut stream = TcpStream::connect(host)
        .with_context(|| format!("connecting to {host}: is `hopscope serve` running?"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("the server's answer is not HTTP")?;
    let code = head.split_whitespace().nth(1).unwrap_or("");
    if code != "200" {
        bail!("{host}{path}: HTTP {code}: {body}");
    }
    Ok(body.to_string())
}

/// The pipeline's part of the status: its bus subscribers.
#[derive(Debug, serde::Deserialize)]
struct Bus {
    #[serde(default)]
    bus: Vec<SubscriberStats>,
}

fn describe_bus(subscribers: &[SubscriberStats]) -> String {
    let said: Vec<String> = subscribers
        .iter()
        .map(|s| {
            format!(
                "{} {}/{} queued, {} offered, {} dropped{}",
                s.name,
                s.queued,
                s.capacity,
                s.offered,
                s.dropped,
                match s.overflow {
                    Overflow::Block => format!(
                        ", publishers waited {:.3} s",
                        s.publisher_wait_ns as f64 / 1e9
                    ),
                    Overflow::Drop => String::new(),
                }
            )
        })
        .collect();
    if said.is_empty() {
        String::new()
    } else {
        format!("bus: {}\n", said.join("; "))
    }
}

/// What the security detections read and found (`detection` in the
/// status, when they run).
fn describe_detection(d: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let stats = &d["stats"];
    if !stats.is_object() {
        return String::new();
    }
    let mut out = format!(
        "detections: {} flow records read ({} sampled), {} sources and destinations followed, {} left out at a bound",
        stats["records"], stats["sampled"], stats["tracked"], stats["untracked"]
    );
    if stats["listed"].as_u64().unwrap_or(0) > 0 || stats["list_errors"].as_u64().unwrap_or(0) > 0 {
        let _ = write!(
            out,
            "; {} listed addresses, {} bad list lines",
            stats["listed"], stats["list_errors"]
        );
    }
    if stats["learning"].as_bool() == Some(true) {
        out.push_str("; lateral movement still learning which peers hosts reach");
    }
    let firing = d["firing"].as_array().map_or(&[][..], Vec::as_slice);
    let _ = writeln!(out, "; {} firing", firing.len());
    for f in firing {
        let _ = writeln!(
            out,
            "  {}: {}",
            f["rule"].as_str().unwrap_or(""),
            f["summary"].as_str().unwrap_or("")
        );
    }
    for p in d["problems"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  problem: {}", p.as_str().unwrap_or(""));
    }
    out
}

/// The SLOs' standing, the alerts firing and what the destinations
/// delivered (`analysis` in the status, when SLOs are configured).
fn describe_analysis(a: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let Some(slos) = a["slos"].as_array() else {
        return String::new();
    };
    let mut out = String::new();
    for s in slos {
        let last = &s["last"];
        let figure = match (last["loss_ppm"].as_u64(), last["delay_ns"].as_u64()) {
            (Some(ppm), _) => format!("{:.3} % lost", ppm as f64 / 1e4),
            (None, Some(d)) => format!("{:.2} ms", d as f64 / 1e6),
            _ => "none judged yet".into(),
        };
        let verdict = match last["good"].as_bool() {
            Some(true) => "good",
            Some(false) => "BAD",
            None => "-",
        };
        let _ = writeln!(
            out,
            "slo {}: last bucket {verdict} ({figure}), {:.1} % of the budget left, {} good and {} bad buckets since start",
            s["name"].as_str().unwrap_or("?"),
            s["budget"]["remaining"].as_f64().unwrap_or(1.0) * 100.0,
            s["buckets_good"],
            s["buckets_bad"]
        );
    }
    let firing = a["firing"].as_array().map_or(0, Vec::len);
    let _ = write!(out, "alerts: {firing} firing");
    for f in a["firing"].as_array().into_iter().flatten() {
        let _ = write!(
            out,
            "; {} {}",
            f["severity"].as_str().unwrap_or(""),
            f["id"].as_str().unwrap_or("")
        );
    }
    let _ = writeln!(out, "; {} late journeys", a["late_journeys"]);
    for d in a["destinations"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "alerts to {} {}: {} sent, {} failed, {} dropped",
            d["kind"].as_str().unwrap_or(""),
            d["target"].as_str().unwrap_or(""),
            d["sent"],
            d["failed"],
            d["dropped"]
        );
    }
    out
}

fn describe(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let st = &s.store;
    let _ = writeln!(
        out,
        "up {:.0} s; {} datagrams, {} TCP connections, {} files replayed",
        s.uptime_seconds, s.datagrams, s.tcp_connections, s.replayed_files
    );
    let _ = writeln!(
        out,
        "dropped: {} datagrams from sources not allowed, {} by the kernel (socket buffers full), {} receive errors",
        s.denied_datagrams, s.socket_drops, s.receive_errors
    );
    let reasons = |counts: &std::collections::BTreeMap<String, u64>| {
        let said: Vec<String> = counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        if said.is_empty() {
            "none".to_string()
        } else {
            said.join(" ")
        }
    };
    let _ = writeln!(
        out,
        "tcp: {} open; refused: {}; closed: {}",
        s.tcp.open,
        reasons(&s.tcp.refused),
        reasons(&s.tcp.closed)
    );
    let _ = writeln!(
        out,
        "udp sessions: {} held; let go: {}",
        s.udp_sessions,
        reasons(&s.sessions_evicted)
    );
    let _ = writeln!(
        out,
        "store: {} rows in {} segments ({} bytes); {} pending, lag {:.1} s; {} flush errors, {} rows lost to them",
        st.rows_written,
        st.segments_written,
        st.bytes_written,
        st.rows_pending,
        st.lag_seconds,
        st.flush_errors,
        st.rows_dropped
    );
    // a counter the correlator has not published (or does not run) is 0
    let j = |key: &str| s.journeys.get(key).copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "correlator: {} journeys in {} windows from {} reports ({} matched) and {} flow records; \
         not used: {} late, {} incomplete, {} link-scoped reports, {} implausible (digest collisions), {} unusable flow records, {} unfinished flows, \
         {} flow records compared early (buffer full), {} flow records of points sharing no flows; \
         {} waiting, {} write errors",
        j("journeys"),
        j("windows"),
        j("reports"),
        j("matched"),
        j("flow_records"),
        j("late"),
        j("incomplete"),
        j("link_scoped"),
        j("implausible"),
        j("flow_records_unusable"),
        j("flows_unfinished"),
        j("flow_records_settled_early"),
        j("flow_records_unshared"),
        j("pending"),
        j("write_errors")
    );
    let _ = writeln!(
        out,
        "\n{:<28} {:>5} {:>10} {:>12} {:>9} {:>9} {:>9} {:>7} {:>14}  errors, skipped formats",
        "exporter",
        "proto",
        "messages",
        "records",
        "lost rec",
        "lost msg",
        "templates",
        "pending",
        "rate unknown"
    );
    for e in &s.exporters {
        let errors: Vec<String> = e
            .decode_errors
            .iter()
            .chain(&e.skipped_records)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        // records of unknown sampling rate count once: how much of it there is
        let unknown = match e.sampling_unknown {
            0 => "0".to_string(),
            n => format!(
                "{n} ({:.0} %)",
                100.0 * n as f64 / e.flow_records.max(1) as f64
            ),
        };
        let _ = writeln!(
            out,
            "{:<28} {:>5} {:>10} {:>12} {:>9} {:>9} {:>9} {:>7} {:>14}  {}",
            // the configured name, and the points that tell a host's probes apart
            [e.exporter.as_str()]
                .into_iter()
                .chain(e.name.as_deref())
                .chain(e.points.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            e.transport,
            e.messages,
            e.flow_records,
            e.lost_records,
            e.lost_messages,
            e.templates_active,
            e.pending_sets,
            unknown,
            if errors.is_empty() {
                "-".to_string()
            } else {
                errors.join(" ")
            }
        );
    }
    if s.exporters_not_listed > 0 {
        let _ = writeln!(
            out,
            "... and {} more sessions, silent longer",
            s.exporters_not_listed
        );
    }
    if !s.recent_errors.is_empty() {
        let _ = writeln!(out, "\nrecent errors:");
        for e in &s.recent_errors {
            let _ = writeln!(out, "  {e}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_correlators_counts_are_shown() {
        let mut s = Status::default();
        s.journeys.insert("journeys".into(), 12);
        s.journeys.insert("link_scoped".into(), 3);
        s.journeys.insert("flows_unfinished".into(), 2);
        let text = describe(&s);
        assert!(text.contains("correlator: 12 journeys"), "{text}");
        assert!(text.contains("3 link-scoped reports"), "{text}");
        assert!(text.contains("2 unfinished flows"), "{text}");
    }

    #[test]
    fn the_bus_subscribers_are_shown() {
        let body = serde_json::json!({"bus": [
            {"name": "correlator", "overflow": "drop", "capacity": 2, "offered": 9,
             "dropped": 3, "queued": 1, "peak_queued": 2, "publisher_wait_ns": 0},
            {"name": "store writer", "overflow": "block", "capacity": 16, "offered": 4,
             "dropped": 0, "queued": 0, "peak_queued": 1, "publisher_wait_ns": 1_500_000_000u64},
        ]});
        let bus: Bus = serde_json::from_value(body).unwrap();
        assert_eq!(
            describe_bus(&bus.bus),
            "bus: correlator 1/2 queued, 9 offered, 3 dropped; \
             store writer 0/16 queued, 4 offered, 0 dropped, publishers waited 1.500 s\n"
        );
    }

    #[test]
    fn the_slos_and_alerts_are_shown() {
        let analysis = serde_json::json!({
            "slos": [{"name": "web", "last": {"good": false, "loss_ppm": 25_000, "delay_ns": null},
                      "budget": {"remaining": -0.5}, "buckets_good": 9, "buckets_bad": 1}],
            "firing": [{"severity": "page", "id": "slo-web-page-60"}],
            "late_journeys": 0,
            "destinations": [{"kind": "alertmanager", "target": "http://127.0.0.1:9093",
                              "sent": 2, "failed": 0, "dropped": 0}],
        });
        assert_eq!(
            describe_analysis(&analysis),
            "slo web: last bucket BAD (2.500 % lost), -50.0 % of the budget left, 9 good and 1 bad buckets since start\n\
             alerts: 1 firing; page slo-web-page-60; 0 late journeys\n\
             alerts to alertmanager http://127.0.0.1:9093: 2 sent, 0 failed, 0 dropped\n"
        );
        assert_eq!(describe_analysis(&serde_json::Value::Null), "");
    }

    #[test]
    fn the_detections_are_shown() {
        let detection = serde_json::json!({
            "stats": {"records": 120, "sampled": 0, "tracked": 7, "untracked": 0,
                      "listed": 2, "list_errors": 1},
            "firing": [{"rule": "scan", "summary": "10.1.66.6 scans (vertical, syn)"}],
            "problems": ["drop.txt: 1 lines are not addresses, the first line 3: 'x'"],
        });
        assert_eq!(
            describe_detection(&detection),
            "detections: 120 flow records read (0 sampled), 7 sources and destinations followed, 0 left out at a bound; \
             2 listed addresses, 1 bad list lines; 1 firing\n  scan: 10.1.66.6 scans (vertical, syn)\n  \
             problem: drop.txt: 1 lines are not addresses, the first line 3: 'x'\n"
        );
        assert_eq!(describe_detection(&serde_json::Value::Null), "");
    }

    /// The counters are named by string where they are published and where
    /// they are shown: a name shown must be one published (a misspelt one
    /// would read 0 forever), and every one published must reach `/metrics`.
    #[test]
    fn every_counter_shown_is_published() {
        let metrics = hopscope_collector::Metrics::default();
        let correlator = hopscope_correlate::Correlator::new(Default::default());
        hopscope_pipeline::follow::publish(&correlator, &metrics);
        let status = metrics.status(0);
        let source = include_str!("status.rs");
        let shown: Vec<&str> = source
            .split("j(\"")
            .skip(1)
            .filter_map(|rest| rest.split_once('"').map(|(key, _)| key))
            .collect();
        assert!(shown.len() >= 14, "{shown:?}");
        for key in shown {
            assert!(status.journeys.contains_key(key), "{key} is not published");
        }
        let text = status.prometheus();
        for c in &status.journey_counters {
            assert!(
                text.contains(&format!("hopscope_{} ", c.metric)),
                "{}",
                c.metric
            );
        }
    }
}
