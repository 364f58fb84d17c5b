//! Journeys end to end through the real binaries: `hopscope simulate`
//! writes one capture per point, `hopscope probe` meters each and exports
//! IPFIX, `hopscope serve` collects it (the streaming correlator writes the
//! journeys table), and `hopscope journeys` puts the simulated loss on the
//! right segment.

use std::path::Path;
use std::process::Command;

use common::{hopscope, simulated_exports};

mod common;

#[test]
fn simulated_loss_is_found_on_its_segment_through_probe_serve_and_journeys() {
    let dir = std::env::temp_dir().join(format!("hopscope-journeys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut serve = vec![
        "serve",
        "--data-dir",
        "data",
        "--udp",
        "none",
        "--tcp",
        "none",
        "--http",
        "none",
        "--exit-after-replay",
        // many small flushes: each file's reports reach the correlator in
        // several batches, as a long capture's would
        "--flush-interval",
        "20ms",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    serve.extend(simulated_exports(&dir, "0.02", None));
    // SLOs that the 2 % loss on R2 breaks (end to end and on its segment)
    // and one that it keeps
    std::fs::write(
        dir.join("slo.toml"),
        r#"
[[slo]]
name = "e2e-loss"
indicator = "loss"
threshold = "0.5%"
objective = "99%"
min-events = 1

[[slo]]
name = "r2-loss"
indicator = "loss"
segment = "r2:r2-r1 > r2:r2-r3"
threshold = "0.5%"
objective = "99%"
min-events = 1

[[slo]]
name = "e2e-delay"
indicator = "delay"
percentile = "max"
threshold = "1s"
objective = "99%"
min-events = 1
"#,
    )
    .unwrap();
    serve.extend(["--config".to_string(), "slo.toml".to_string()]);
    let serve: Vec<&str> = serve.iter().map(String::as_str).collect();
    hopscope(&serve, &dir);
    assert!(
        dir.join("data/journeys")
            .read_dir()
            .unwrap()
            .next()
            .is_some(),
        "the streaming correlator wrote journeys"
    );
    // the streaming correlator, fed as fast as the files replay (their
    // captures are older than the replay), found what the batch rebuild
    // finds: the same packets lost on each basis
    let streamed = streamed_loss_by_basis(&dir.join("data"));

    let json = hopscope(
        &["journeys", "--data-dir", "data", "--segments", "--json"],
        &dir,
    );
    let pooled: serde_json::Value = serde_json::from_str(&json).unwrap();
    let segments = &pooled["segments"];
    let mut rebuilt = std::collections::BTreeMap::<String, u64>::new();
    for s in segments.as_array().unwrap() {
        *rebuilt
            .entry(s["basis"].as_str().unwrap().to_string())
            .or_default() += s["lost"].as_u64().unwrap();
    }
    assert!(
        rebuilt.get("packets").is_some_and(|&n| n > 0),
        "{rebuilt:?}"
    );
    assert_eq!(
        streamed, rebuilt,
        "streamed and rebuilt journeys lose the same packets"
    );
    let worst = &segments[0];
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("caps/truth.json")).unwrap()).unwrap();
    let forward = &truth["truth"]["forward"][2];
    let reverse = &truth["truth"]["reverse"][2];
    let lossy = [
        ("r2:r2-r1", "r2:r2-r3", forward),
        ("r2:r2-r3", "r2:r2-r1", reverse),
    ];
    assert!(
        lossy
            .iter()
            .any(|(from, to, _)| worst["from"] == *from && worst["to"] == *to),
        "{worst}"
    );
    for s in segments.as_array().unwrap() {
        let on_r2 = lossy
            .iter()
            .find(|(f, t, _)| s["from"] == *f && s["to"] == *t);
        match on_r2 {
            Some((_, _, t)) => {
                let ratio = t["lost"].as_f64().unwrap() / t["sent"].as_f64().unwrap();
                let (lo, hi) = (
                    s["ratio_low"].as_f64().unwrap(),
                    s["ratio_high"].as_f64().unwrap(),
                );
                assert!(lo <= ratio && ratio <= hi, "{s}: true ratio {ratio}");
            }
            None => assert_eq!(s["lost"], 0, "{s}"),
        }
    }

    slos_streamed_as_rebuilt(&dir);

    // the diagram names the hops and marks the lossy segment
    let text = hopscope(
        &["journeys", "--data-dir", "data", "-n", "1", "lost > 0"],
        &dir,
    );
    assert!(text.contains("● r2:r2-r1") && text.contains('✗'), "{text}");
    // a bad filter is a clear error with its position
    let out = Command::new(env!("CARGO_BIN_EXE_hopscope"))
        .args(["journeys", "--data-dir", "data", "lost >"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Packets lost in the journeys `serve` stored, by basis (as pooled
/// segments name it).
fn streamed_loss_by_basis(data: &Path) -> std::collections::BTreeMap<String, u64> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::UInt64Type;
    use hopscope_store::{Store, Table, WriteOptions};
    let store = Store::open(data, WriteOptions::default()).unwrap();
    let mut lost = std::collections::BTreeMap::<String, u64>::new();
    store
        .scan(
            Table::Segments,
            &["basis", "lost"],
            i64::MIN,
            i64::MAX,
            |b| {
                let basis = b.column_by_name("basis").unwrap().as_string::<i32>();
                let n = b
                    .column_by_name("lost")
                    .unwrap()
                    .as_primitive::<UInt64Type>();
                for i in 0..b.num_rows() {
                    *lost.entry(basis.value(i).to_string()).or_default() += n.value(i);
                }
                Ok(())
            },
        )
        .unwrap();
    lost
}

/// The buckets the analyzer judged as `serve` streamed the journeys are
/// those judged again from the store; the loss SLOs' buckets are bad, the
/// delay SLO's good, and the bad buckets raised a page.
fn slos_streamed_as_rebuilt(dir: &Path) {
    let check = hopscope(&["slo", "check", "--config", "slo.toml"], dir);
    assert!(
        check.contains("r2-loss: network loss at most 0.5 % (r2:r2-r1 > r2:r2-r3)"),
        "{check}"
    );
    let slo = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "slo",
            "--config",
            "slo.toml",
            "--data-dir",
            "data",
            "--from",
            "0",
            "--json",
        ];
        args.extend(extra);
        serde_json::from_str(&hopscope(&args, dir)).unwrap()
    };
    let (stored, rebuilt) = (slo(&[]), slo(&["--recompute"]));
    for (s, r) in stored["slos"]
        .as_array()
        .unwrap()
        .iter()
        .zip(rebuilt["slos"].as_array().unwrap())
    {
        assert!(!s["buckets"].as_array().unwrap().is_empty(), "{s}");
        assert_eq!(
            s["buckets"], r["buckets"],
            "{}: streamed and rebuilt",
            s["name"]
        );
        let bad = s["bad_buckets"].as_u64().unwrap();
        let judged = s["buckets"].as_array().unwrap().len() as u64;
        if s["name"] == "e2e-delay" {
            assert_eq!(bad, 0, "{s}");
        } else {
            assert_eq!(bad, judged, "2 % lost against 0.5 %: {s}");
        }
    }
    let alerts: serde_json::Value = serde_json::from_str(&hopscope(
        &["alerts", "--data-dir", "data", "--from", "0", "--json"],
        dir,
    ))
    .unwrap();
    let paged: Vec<&str> = alerts["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["severity"] == "page" && a["state"] == "firing")
        .map(|a| a["labels"]["slo"].as_str().unwrap())
        .collect();
    assert!(
        paged.contains(&"e2e-loss") && paged.contains(&"r2-loss") && !paged.contains(&"e2e-delay"),
        "{alerts}"
    );
}
