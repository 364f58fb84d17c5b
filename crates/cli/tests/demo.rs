//! `hopscope demo` end to end: the simulated devices export IPFIX live to
//! the collector, the streaming correlator writes journeys, and the API
//! puts the demo's WAN loss (2 %, `hopscope_demo::LOSSY_SEGMENT`) on the
//! right segment while the demo runs; Ctrl-C stops it cleanly.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_tcp_port, http_get};
use hopscope_demo::{LOSSY_SEGMENT, LOSSY_SEGMENT_LOSS};

mod common;

/// The API's answer on `port` as JSON, when it answers 200.
fn get(port: u16, path: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&http_get(port, path)?).ok()
}

#[test]
fn the_demo_shows_its_wan_loss_on_the_right_segment() {
    let dir = std::env::temp_dir().join(format!("hopscope-demo-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_tcp_port();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_hopscope"))
        .args([
            "demo",
            "--calm",
            "--duration",
            "60s",
            "--flows-per-second",
            "100",
        ])
        .arg("--http")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");

    // journeys appear once the first correlation window has closed
    let deadline = Instant::now() + Duration::from_secs(55);
    let mut found = None;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
        let Some(s) = get(port, "/api/journeys/segments?since=5m") else {
            continue;
        };
        if s["journeys"].as_u64().unwrap_or(0) >= 500 {
            found = Some(s);
            break;
        }
    }
    let status = get(port, "/api/status");
    // Ctrl-C stops it cleanly
    let interrupted = Command::new("kill")
        .args(["-INT", &demo.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(interrupted.success());
    let exit = demo.wait().expect("the demo stops");
    let mut stderr = String::new();
    demo.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(exit.success(), "demo failed: {stderr}");
    let segments = found.unwrap_or_else(|| panic!("no journeys while the demo ran: {stderr}"));

    // the most lossy segment is the WAN link (either direction) and its
    // interval is near the loss probability (the realised loss of a few
    // thousand packets strays from it: a margin keeps this from flaking);
    // every other segment loses nothing
    let list = segments["segments"].as_array().unwrap();
    let wan = |s: &serde_json::Value| {
        let ends = [s["from"].as_str().unwrap(), s["to"].as_str().unwrap()];
        ends.contains(&LOSSY_SEGMENT.0) && ends.contains(&LOSSY_SEGMENT.1)
    };
    assert!(wan(&list[0]), "{}", list[0]);
    for s in list {
        if wan(s) {
            let (low, high) = (
                s["ratio_low"].as_f64().unwrap(),
                s["ratio_high"].as_f64().unwrap(),
            );
            assert!(
                low <= LOSSY_SEGMENT_LOSS * 1.6 && LOSSY_SEGMENT_LOSS / 1.6 <= high,
                "interval [{low}, {high}] far from the loss probability: {s}"
            );
        } else {
            assert_eq!(s["lost"], 0, "{s}");
        }
    }

    // five devices, named, with no decode errors and no telemetry loss
    let status = status.expect("status while running");
    let exporters = status["exporters"].as_array().unwrap();
    let mut names: Vec<&str> = exporters
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names, ["branch-fw", "core-a", "core-b", "dc-gw", "isp-pe"]);
    for e in exporters {
        assert!(e["decode_errors"].as_object().unwrap().is_empty(), "{e}");
        assert_eq!(e["lost_records"], 0, "{e}");
    }
    assert!(stderr.contains("hopscope demo: open http://"));
    assert!(stderr.contains("committing what was received"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
