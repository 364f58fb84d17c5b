//! The API over a real store filled by the simulator, the probe's metering
//! and the correlator: a chain with 5 % loss on one link. The same rows
//! also go into a [`MemoryStore`], and both backends must answer alike.

use std::sync::{Arc, OnceLock};

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use hopscope_correlate::{Correlator, CorrelatorConfig, journeys_to_batch, segments_to_batch};
use hopscope_probe::{Profile, SelectorConfig};
use hopscope_simulate::{Scenario, probe_reports, simulate};
use hopscope_store::{Backend, MemoryStore, Store, Table, WriteOptions};
use serde_json::Value;
use tower::ServiceExt;

use super::router;

/// The lossy link of the fixture: between these two points, 5 % each way.
const LOSSY: (&str, &str) = ("r2:r2-r1", "r2:r2-r3");

/// The same rows in both backends.
struct Backends {
    parquet: Arc<Store>,
    memory: Arc<MemoryStore>,
}

/// A store with two minutes ago's simulated flows and journeys, built once.
fn store() -> Arc<Store> {
    backends().parquet.clone()
}

fn backends() -> &'static Backends {
    static STORE: OnceLock<Backends> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hopscope-api-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir, WriteOptions::default()).unwrap();
        let memory = MemoryStore::default();
        let write = |table: Table, batch: arrow_array::RecordBatch| {
            Backend::write(&store, table, std::slice::from_ref(&batch)).unwrap();
            memory.write(table, &[batch]).unwrap();
        };
        let mut scenario = Scenario::chain(3);
        scenario.start_ns = now() - 120_000_000_000;
        scenario.duration_ms = 5_000;
        scenario.traffic.flows = 60;
        scenario.links[2].loss = 0.05;
        let run = simulate(&scenario).unwrap();
        let selection = SelectorConfig {
            profile: Profile::NatFree,
            ..SelectorConfig::default()
        };
        let mut correlator = Correlator::new(CorrelatorConfig::default());
        for point in probe_reports(&run, selection, 3) {
            correlator.set_name(point.point, &point.name);
            correlator.add_reports(&point.reports).unwrap();
            write(Table::Flows, received_at_end(point.flows));
        }
        let journeys = correlator.finish();
        assert!(!journeys.is_empty());
        write(Table::Journeys, journeys_to_batch(&journeys).unwrap());
        write(Table::Segments, segments_to_batch(&journeys).unwrap());
        write(Table::InterfaceCounters, snmp_readings());
        Backends {
            parquet: Arc::new(store),
            memory: Arc::new(memory),
        }
    })
}

/// An SNMP poller's readings of one router interface every 30 s over the
/// last ten minutes: 8 Mb/s in, 4 Mb/s out, on a 1 Gb/s link.
fn snmp_readings() -> arrow_array::RecordBatch {
    use hopscope_schema::{COUNTER_SOURCE_SNMP, InterfaceCounterBuilder, InterfaceCounterRecord};
    let mut b = InterfaceCounterBuilder::with_capacity(20);
    let start = now() - 600_000_000_000;
    for i in 0..20u64 {
        b.append(&InterfaceCounterRecord {
            time_received_ns: Some(start + i as i64 * 30_000_000_000),
            sampler_address: Some(hopscope_schema::ipv4_mapped([192, 0, 2, 1])),
            if_index: Some(3),
            if_speed: Some(1_000_000_000),
            in_octets: Some(i * 30_000_000),
            out_octets: Some(i * 15_000_000),
            counter_source: Some(COUNTER_SOURCE_SNMP),
            ..InterfaceCounterRecord::default()
        });
    }
    b.finish().unwrap()
}

/// A probe's flows as a collector stores them: received when they ended.
fn received_at_end(flows: arrow_array::RecordBatch) -> arrow_array::RecordBatch {
    let schema = flows.schema();
    let end = flows.column_by_name("time_flow_end_ns").unwrap().clone();
    let columns = schema
        .fields()
        .iter()
        .zip(flows.columns())
        .map(|(f, c)| match f.name().as_str() {
            "time_received_ns" => end.clone(),
            _ => c.clone(),
        })
        .collect();
    arrow_array::RecordBatch::try_new(schema, columns).unwrap()
}

/// The policy the API judges the fixture by: the simulator's clients
/// (10.1/16) may reach its servers (10.2/16) over TCP, nothing else; their
/// traffic crosses r2 and no firewall.
fn policy() -> hopscope_analyze::Policy {
    let config: hopscope_analyze::PolicyConfig = toml::from_str(
        r#"
        default = "deny"
        [[zone]]
        name = "clients"
        cidr = ["10.1.0.0/16"]
        [[zone]]
        name = "servers"
        cidr = ["10.2.0.0/16"]
        [[rule]]
        name = "clients-tcp"
        from = "clients"
        to = "servers"
        proto = "tcp"
        action = "allow"
        [[path]]
        name = "through-r2"
        from = "clients"
        to = "servers"
        via = "r2"
        [[path]]
        name = "through-a-firewall"
        from = "clients"
        to = "servers"
        via = "fw"
        "#,
    )
    .unwrap();
    hopscope_analyze::Policy::compile(&config, &[]).unwrap()
}

/// The simulator's TCP is allowed and its UDP denied by default; every
/// journey crossed r2 and bypassed the firewall that is not there.
#[tokio::test]
async fn the_policy_is_judged_on_flows_and_journeys() {
    let v = get("/api/policy?since=1h").await;
    let rule = |name: &str| {
        v["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == name)
            .unwrap_or_else(|| panic!("{name}: {v}"))
            .clone()
    };
    assert_eq!(rule("clients-tcp")["action"], "allow");
    assert!(rule("clients-tcp")["flows"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(rule("default")["action"], "deny");
    assert!(rule("default")["flows"].as_u64().unwrap() > 0, "{v}");
    let journeys = v["journeys"].as_u64().unwrap();
    assert!(journeys > 0);
    assert_eq!(v["paths"][0]["crossed"], v["paths"][0]["journeys"], "{v}");
    assert_eq!(v["paths"][0]["bypassed"], 0);
    assert_eq!(v["paths"][1]["crossed"], 0);
    assert!(v["paths"][1]["bypassed"].as_u64().unwrap() > 0, "{v}");
}

/// The SLOs the API judges the fixture by: the lossy link's loss (5 %
/// against a 1 % threshold) and the end-to-end delay (well under 1 s).
fn slos() -> Arc<[hopscope_analyze::Slo]> {
    let config = |name: &str, indicator: &str, threshold: &str, segment: Option<&str>| {
        hopscope_analyze::SloConfig {
            name: name.into(),
            indicator: indicator.into(),
            threshold: threshold.into(),
            segment: segment.map(String::from),
            objective: "99%".into(),
            min_events: Some(1),
            ..Default::default()
        }
    };
    hopscope_analyze::Slo::compile_all(&[
        config(
            "lossy-link",
            "loss",
            "1%",
            Some(&format!("{} > {}", LOSSY.0, LOSSY.1)),
        ),
        config("end-to-end", "delay", "1s", None),
    ])
    .unwrap()
    .into()
}

fn now() -> i64 {
    hopscope_store::now_ns()
}

/// The account of a process that has received nothing yet.
#[derive(Debug)]
struct Quiet;

impl crate::Telemetry for Quiet {
    fn status(&self, _: i64) -> Value {
        serde_json::json!({"exporters": []})
    }
    fn prometheus(&self, _: i64) -> String {
        "# nothing counted\n".into()
    }
}

async fn call(token: Option<&str>, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    call_on(store(), token, uri, headers).await
}

async fn call_on(
    backend: Arc<dyn Backend>,
    token: Option<&str>,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let analytics = crate::Analytics {
        slos: slos(),
        policy: Some(Arc::new(policy())),
        ..crate::Analytics::default()
    };
    let app = router(backend, Arc::new(Quiet), token.map(String::from), analytics);
    let mut request = Request::get(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = app
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = to_bytes(response.into_body(), 16 << 20).await.unwrap();
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    (status, value)
}

async fn get(uri: &str) -> Value {
    let (status, body) = call(None, uri, &[]).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    body
}

#[tokio::test]
async fn every_documented_path_answers() {
    let doc = get("/api/openapi.json").await;
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 12);
    for path in paths.keys() {
        let uri = path
            .replace("{id}", "1-31")
            .replace("/api/sql", "/api/sql?q=select%201");
        let (status, body) = call(None, &uri, &[]).await;
        // the fallback's 404 says "no such page": a documented path must never reach it
        assert!(
            !body.to_string().contains("no such page"),
            "{path} is documented but not routed ({status}: {body})"
        );
    }
}

/// What the backend may answer differently: how much it read, and how.
fn without_scan_statistics(mut body: Value) -> Value {
    if let Some(o) = body.as_object_mut() {
        o.remove("scan");
        o.remove("rollup_segments");
    }
    body
}

#[tokio::test]
async fn both_backends_answer_alike() {
    // one range for both, not "the last 10 minutes" twice
    let range = format!("from={}&to={}", now() - 600_000_000_000, now());
    let first_id = get(&format!("/api/journeys?{range}&limit=1")).await["journeys"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let uris = [
        format!(
            "/api/flows?{range}&group_by=src_addr,dst_port&aggregates=flows,bytes,packets,bps&order=-bytes&limit=7"
        ),
        format!(
            "/api/flows?{range}&group_by=proto&aggregates=flows,p95(bytes),min(packets),max(packets)"
        ),
        format!(
            "/api/flows?{range}&columns=src_addr,dst_addr,bytes&order=-bytes&limit=5&filter=proto%20tcp"
        ),
        format!("/api/timeseries?{range}&bucket=1m&group_by=dst_port&top=3"),
        format!("/api/journeys?{range}&sort=loss&limit=20"),
        format!("/api/journeys?{range}&sort=delay&limit=20&filter=lost%20%3E%200"),
        format!("/api/journeys?{range}&sort=time&limit=3"),
        format!("/api/journeys/{first_id}"),
        format!("/api/journeys/segments?{range}"),
        format!("/api/journeys/segments?{range}&filter=lost%20%3D%200"),
        format!("/api/slos?{range}&recompute=true"),
        format!("/api/journeys/segments?{range}&bucket=1m"),
        format!("/api/alerts?{range}"),
        format!("/api/detections?{range}"),
        format!("/api/policy?{range}"),
        format!("/api/capacity?{range}&sample=1m"),
    ];
    let b = backends();
    for uri in &uris {
        let (parquet_status, parquet) = call_on(b.parquet.clone(), None, uri, &[]).await;
        let (memory_status, memory) = call_on(b.memory.clone(), None, uri, &[]).await;
        assert_eq!(parquet_status, StatusCode::OK, "{uri}: {parquet}");
        assert_eq!(memory_status, parquet_status, "{uri}: {memory}");
        assert_ne!(parquet, Value::Null, "{uri}");
        assert_eq!(
            without_scan_statistics(memory),
            without_scan_statistics(parquet),
            "{uri}"
        );
    }
}

/// Per minute, the lossy link's segments come first and lose what they
/// lose pooled.
#[tokio::test]
async fn segment_series_put_the_lossy_link_first() {
    let v = get("/api/journeys/segments?since=1h&bucket=1m").await;
    let series = &v["series"];
    let buckets = series["buckets"].as_array().unwrap();
    assert!(!buckets.is_empty(), "{v}");
    let first = &series["segments"][0];
    let segment = first["segment"].as_str().unwrap();
    assert!(
        segment.contains(LOSSY.0) && segment.contains(LOSSY.1),
        "{first}"
    );
    assert_eq!(first["points"].as_array().unwrap().len(), buckets.len());
    let (status, body) = call(None, "/api/journeys/segments?since=1h&bucket=90s", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// Judged again from the journeys and segments: the lossy link's buckets
/// are bad, the end-to-end delay's good; nothing was stored as judged.
#[tokio::test]
async fn slos_are_judged_from_the_journeys() {
    let v = get("/api/slos?since=1h&recompute=true").await;
    let slos = v["slos"].as_array().unwrap();
    let lossy = &slos[0];
    assert_eq!(lossy["name"], "lossy-link");
    assert_eq!(lossy["scope"], format!("{} > {}", LOSSY.0, LOSSY.1));
    let buckets = lossy["buckets"].as_array().unwrap();
    assert!(!buckets.is_empty(), "{v}");
    for b in buckets {
        let ppm = b["loss_ppm"].as_u64().unwrap();
        assert!(
            b["good"] == false && (20_000..=100_000).contains(&ppm),
            "{b}"
        );
    }
    assert!(lossy["budget"]["remaining"].as_f64().unwrap() < 0.0);
    let delay = &slos[1];
    assert!(!delay["buckets"].as_array().unwrap().is_empty());
    assert!(
        delay["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["good"] == true && b["delay_ns"].as_u64().unwrap() > 0)
    );
    let stored = get("/api/slos?since=1h").await;
    assert!(
        stored["slos"][0]["buckets"].as_array().unwrap().is_empty(),
        "{stored}"
    );
}

#[tokio::test]
async fn a_bad_filter_is_a_400_with_its_position() {
    for uri in [
        "/api/flows?filter=dst%20port%20http&since=1h",
        "/api/timeseries?filter=dst%20port%20http&since=1h",
        "/api/journeys?filter=lost%20%3E%20many",
        "/api/journeys/segments?filter=lost%20%3E%20many",
    ] {
        let (status, body) = call(None, uri, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(body["error"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(body["position"].as_u64().is_some(), "{uri}: {body}");
    }
    let (status, body) = call(None, "/api/journeys?sort=colour", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("loss"));
}

#[tokio::test]
async fn journeys_put_the_loss_on_the_lossy_link() {
    let segments = get("/api/journeys/segments?since=10m").await;
    let worst = &segments["segments"][0];
    let ends = [
        worst["from"].as_str().unwrap(),
        worst["to"].as_str().unwrap(),
    ];
    assert!(
        ends.contains(&LOSSY.0) && ends.contains(&LOSSY.1),
        "{worst}"
    );
    assert!(worst["ratio_low"].as_f64().unwrap() < 0.05);
    assert!(worst["ratio_high"].as_f64().unwrap() > 0.05);

    let list = get("/api/journeys?since=10m&sort=loss&limit=5").await;
    let journeys = list["journeys"].as_array().unwrap();
    assert_eq!(journeys.len(), 5);
    assert!(list["matched"].as_u64().unwrap() > 5);
    let lost: Vec<u64> = journeys
        .iter()
        .map(|j| j["lost"].as_u64().unwrap())
        .collect();
    assert!(
        lost.windows(2).all(|w| w[0] >= w[1]),
        "sorted by loss: {lost:?}"
    );
    assert!(lost[0] > 0);

    let id = journeys[0]["id"].as_str().unwrap();
    let one = get(&format!("/api/journeys/{id}")).await;
    assert_eq!(one["community_id"], journeys[0]["community_id"]);
    let detail = &one["detail"];
    assert_eq!(detail["hops"].as_array().unwrap().len(), 6);
    let lossy: Vec<&Value> = detail["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["loss"]["lost"].as_u64().unwrap() > 0)
        .collect();
    assert!(!lossy.is_empty());
    for s in lossy {
        assert!(
            s["loss"]["evidence"]
                .as_str()
                .unwrap()
                .contains("trajectories")
        );
        let ends = [s["from"].as_str().unwrap(), s["to"].as_str().unwrap()];
        assert!(ends.contains(&LOSSY.0) && ends.contains(&LOSSY.1), "{s}");
    }

    let (status, _) = call(None, "/api/journeys/5-31", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let filtered = get("/api/journeys?since=10m&filter=lost%20%3D%200").await;
    assert!(
        filtered["journeys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["lost"] == 0)
    );
}

#[tokio::test]
async fn time_series_add_up_to_the_flows_total() {
    let total = get("/api/flows?since=10m&aggregates=bytes&group_by=proto").await;
    let bytes = total["totals"]["bytes"].as_f64().unwrap();
    assert!(bytes > 0.0);
    let series =
        get("/api/timeseries?since=10m&group_by=proto&aggregate=bytes&bucket=1s&top=1").await;
    let list = series["series"].as_array().unwrap();
    // one kept and the rest summed as "other"
    assert_eq!(list.len(), 2, "{series}");
    assert!(list[1]["key"].as_str().unwrap().starts_with("other"));
    let sum: f64 = list.iter().map(|s| s["total"].as_f64().unwrap()).sum();
    assert_eq!(sum, bytes);
    let stamps = series["timestamps_ms"].as_array().unwrap();
    for s in list {
        let values = s["values"].as_array().unwrap();
        assert_eq!(values.len(), stamps.len());
        let max = values
            .iter()
            .map(|v| v.as_f64().unwrap())
            .fold(0.0, f64::max);
        assert!(s["p95"].as_f64().unwrap() <= max);
    }
}

#[tokio::test]
async fn a_token_guards_everything_but_health() {
    let token = Some("s3cret");
    assert_eq!(call(token, "/health", &[]).await.0, StatusCode::OK);
    for uri in ["/api/status", "/", "/api/journeys"] {
        assert_eq!(
            call(token, uri, &[]).await.0,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
        let bearer = [(header::AUTHORIZATION.as_str(), "Bearer s3cret")];
        assert_eq!(call(token, uri, &bearer).await.0, StatusCode::OK, "{uri}");
        let cookie = [(header::COOKIE.as_str(), "theme=dark; token=s3cret")];
        assert_eq!(call(token, uri, &cookie).await.0, StatusCode::OK, "{uri}");
        let wrong = [(header::AUTHORIZATION.as_str(), "Bearer guess")];
        assert_eq!(call(token, uri, &wrong).await.0, StatusCode::UNAUTHORIZED);
        // the scheme's name is case-insensitive; the token is not
        let lower = [(header::AUTHORIZATION.as_str(), "bearer s3cret")];
        assert_eq!(call(token, uri, &lower).await.0, StatusCode::OK, "{uri}");
        for near in [
            "Bearer S3cret",
            "Bearer s3cre",
            "Bearer s3crett",
            "Basic s3cret",
        ] {
            let near = [(header::AUTHORIZATION.as_str(), near)];
            assert_eq!(call(token, uri, &near).await.0, StatusCode::UNAUTHORIZED);
        }
    }
}

#[tokio::test]
async fn a_filter_too_deep_is_a_400_naming_the_limit() {
    let deep = format!("{}port%2080{}", "(".repeat(2200), ")".repeat(2200));
    for uri in [
        format!("/api/flows?since=1h&filter={deep}"),
        format!("/api/journeys?filter={deep}"),
    ] {
        let (status, body) = call(None, &uri, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("64 levels"),
            "{body}"
        );
    }
    let groups = vec!["proto"; 17].join(",");
    let (status, body) = call(None, &format!("/api/flows?since=1h&group_by={groups}"), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");
}

#[tokio::test]
async fn the_ui_is_served_from_the_binary() {
    let (status, page) = call(None, "/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let page = page.as_str().unwrap();
    // every asset the page names is embedded
    for asset in [
        "/assets/app.js",
        "/assets/app.css",
        "/assets/echarts.min.js",
    ] {
        assert!(page.contains(asset), "{asset}");
        let (status, _) = call(None, asset, &[]).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
    }
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no CDN"
    );
    let (status, _) = call(None, "/assets/nothing.js", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[cfg(feature = "sql")]
#[tokio::test]
async fn sql_reads_the_same_store_with_limits() {
    let flows = get("/api/flows?since=10m&aggregates=flows").await;
    let count = flows["totals"]["flows"]
        .as_u64()
        .or_else(|| flows["rows"][0]["flows"].as_u64())
        .unwrap();
    let answer = get("/api/sql?q=SELECT%20count(*)%20AS%20n%20FROM%20flows").await;
    assert_eq!(answer["rows"][0]["n"].as_u64(), Some(count), "{answer}");
    let cut = get("/api/sql?q=SELECT%20*%20FROM%20journeys&max_rows=3").await;
    assert_eq!(cut["rows"].as_array().unwrap().len(), 3);
    assert_eq!(cut["truncated"], true);
    let (status, body) = call(None, "/api/sql?q=DROP%20TABLE%20flows", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// Capacity from the fixture's SNMP readings: the link, its one-minute
/// samples; one link's chart by its port; ports that are not there say so.
#[tokio::test]
async fn capacity_lists_links_and_charts_one() {
    let range = format!("from={}&to={}&sample=1m", now() - 600_000_000_000, now());
    let report = get(&format!("/api/capacity?{range}")).await;
    let links = report["links"].as_array().unwrap();
    assert!(!links.is_empty(), "{report}");
    let first = &links[0];
    assert_eq!(first["source"], "snmp");
    let bps = |v: &Value| v.as_f64().unwrap().round();
    assert_eq!(bps(&first["in"]["percentile_bps"]), 8e6, "{first}");
    assert_eq!(bps(&first["billing_bps"]), 8e6, "{first}");
    assert_eq!(bps(&first["out"]["max_bps"]), 4e6, "{first}");
    let port = format!(
        "{}:{}",
        first["exporter"].as_str().unwrap(),
        first["if_index"]
    );
    let detail = get(&format!("/api/capacity/link?{range}&port={port}")).await;
    let series = detail["detail"]["series"].as_array().unwrap();
    assert!(
        series
            .iter()
            .any(|s| s["source"] == "snmp" && s["direction"] == "out"),
        "{detail}"
    );
    assert_eq!(detail["detail"]["sample_ns"], 60_000_000_000i64);
    let (status, body) = call(
        None,
        &format!("/api/capacity/link?{range}&port=192.0.2.99:1"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = call(None, &format!("/api/capacity/link?{range}"), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = call(None, "/api/capacity?sample=7m", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
