//! The API's description (OpenAPI 3.1), served at `/api/openapi.json`.
//! Written by hand next to the routes; a test requests every path it names.

use axum::Json;
use serde_json::{Value, json};

fn param(name: &str, doc: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": {"type": "string"}, "description": doc})
}

fn range_params() -> Vec<Value> {
    vec![
        param("since", "A duration back from now: 10m, 1h, 7d."),
        param("from", "Start, RFC 3339 or Unix nanoseconds."),
        param("to", "End (exclusive), RFC 3339 or Unix nanoseconds."),
    ]
}

fn get(summary: &str, params: Vec<Value>, response: &str) -> Value {
    json!({"get": {
        "summary": summary,
        "parameters": params,
        "responses": {
            "200": {"description": response, "content": {"application/json": {}}},
            "400": {"$ref": "#/components/responses/BadRequest"},
            "401": {"$ref": "#/components/responses/Unauthorized"}
        }
    }})
}

fn unscaled() -> Value {
    param(
        "unscaled",
        "`true`: volumes as the exporters counted them, not scaled by sampling rates. Every answer's `volumes` says which it holds and how many flows had no known rate.",
    )
}

fn every_point() -> Value {
    param(
        "every_point",
        "`true`: aggregates count every record at every point that saw it. By default they count traffic once: records of points the collector classes as internal ([[serve.boundary]]), of transit traffic leaving the network (counted where it came in) and event records (NAT events; firewall events other than a flow's teardown) are left out, unless the query groups or filters by a point, exporter or interface.",
    )
}

/// The document.
pub(crate) fn openapi() -> Value {
    let filter = param(
        "filter",
        "Filter in the flow language (docs/query.md): `src net 10.0.0.0/8 and dst port 443`, `bytes > 1M`.",
    );
    let journey_filter = param(
        "filter",
        "The flow language over journey columns: `lost > 0`, `path \"isp-pe\"`, `proto tcp`.",
    );
    let mut flows = vec![
        filter.clone(),
        param("group_by", "Comma-separated fields (see /api/fields)."),
        param(
            "aggregates",
            "Comma-separated: flows, bytes, packets, bps, pps, bpp, raw_bytes, raw_packets, sum(F), min(F), max(F), avg(F), pNN(F). Volumes are scaled by each record's sampling rate; raw_ ones are as counted.",
        ),
        param("bucket", "Time bucket width: 10s, 1m, 1h."),
        param("limit", "Rows (top-N)."),
        param("order", "A result column; a leading '-' orders descending."),
        param("columns", "Columns when listing flows (no group_by)."),
        param(
            "source",
            "`raw` to read raw flows only (default: rollups where exact).",
        ),
        unscaled(),
        every_point(),
    ];
    flows.extend(range_params());
    let mut series = vec![
        filter,
        param("group_by", "Fields whose values make the series."),
        param("aggregate", "One aggregate (default bytes)."),
        param(
            "bucket",
            "Bucket width (default: about a hundred buckets over the range).",
        ),
        param(
            "top",
            "Series kept, the largest by total (default 8); the rest are summed as `other`.",
        ),
        unscaled(),
        every_point(),
    ];
    series.extend(range_params());
    let mut journeys = vec![
        journey_filter.clone(),
        param(
            "sort",
            "loss (packets lost; default), ratio (share lost), delay (end-to-end p95) or time; descending.",
        ),
        param("limit", "Journeys returned (default 100, at most 10000)."),
    ];
    journeys.extend(range_params());
    let mut slos = range_params();
    slos.push(param(
        "recompute",
        "true: judge the range again from the journeys and segments instead of reading the judged buckets.",
    ));
    let mut rca = range_params();
    rca.extend([
        param("alert", "The journeys behind this alert (its id)."),
        param("slo", "The journeys of this SLO."),
        param(
            "filter",
            "Journeys in the filter language over journey columns.",
        ),
        param(
            "baseline",
            "How long before the range the baseline runs (1h).",
        ),
        param("limit", "Candidates at most (10)."),
    ]);
    let mut segments = vec![
        journey_filter,
        param(
            "bucket",
            "Per bucket of this width (1m, 5m) instead of pooled.",
        ),
        param(
            "limit",
            "With bucket: segments at most, the most lossy first (20).",
        ),
    ];
    segments.extend(range_params());
    let mut capacity = range_params();
    capacity.push(param(
        "sample",
        "The samples' width: 5m (the default, as billing has it) or 1m; any width from 1s to 1d that divides a day.",
    ));
    let mut capacity_link = capacity.clone();
    capacity_link.push(json!({"name": "port", "in": "query", "required": true, "schema": {"type": "string"}, "description": "EXPORTER:IFINDEX or EXPORTER:IFNAME, as the report lists the link."}));
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "hopscope",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "End-to-end flow telemetry: flows, journeys across observation points, exporters' health. Bound to 127.0.0.1 by default; elsewhere every request needs `Authorization: Bearer TOKEN`. Errors are JSON: {\"error\": message, \"position\": offset in the filter}."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "BadRequest": {"description": "A bad filter (with the position of the mistake) or parameter", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "Unauthorized": {"description": "A token is required", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}, "position": {"type": "integer"}}}
            }
        },
        "security": [{"bearer": []}, {}],
        "paths": {
            "/health": get("Liveness", vec![], "{\"status\": \"ok\"}"),
            "/metrics": {"get": {"summary": "Prometheus metrics of the collector, store and correlator", "responses": {"200": {"description": "text exposition format", "content": {"text/plain": {}}}}}},
            "/api/status": get("The collector's health: exporters, drops at every stage, store, correlator", vec![], "Status"),
            "/api/exporters": get("Exporters (per address, port and transport): records, templates, decode errors by reason, telemetry loss", vec![], "{exporters: [...]}"),
            "/api/fields": get("Fields a filter or group-by may name", vec![param("table", "flows (default) or journeys")], "[{name, kind, unit, doc}]"),
            "/api/flows": get("Flows: filter, group-by, aggregates, time buckets, top-N", flows, "{rows, totals, groups, scan}"),
            "/api/timeseries": get("One aggregate per time bucket for the largest groups, with each series' total and 95th percentile", series, "{timestamps_ms, series: [{key, values, total, p95}]}"),
            "/api/journeys": get("Journeys (flows followed across observation points), the worst first", journeys, "{journeys: [...], matched}"),
            "/api/journeys/segments": get("Loss and delay per segment, pooled over the journeys of a range; with bucket=1m (whole minutes), per segment and bucket instead (packet reports' journeys)", segments, "{segments: [{from, to, journeys, sent, lost, ratio, ratio_low, ratio_high, telemetry_explained, evidence, delay_median_ns}]}, or with bucket {series: {bucket_ns, buckets, segments: [{segment, place, lost, points: [{journeys, sent, lost, loss_ratio, telemetry_explained, delay_mean_ns} or null]}]}}"),
            "/api/journeys/{id}": {"get": {
                "summary": "One journey with its hops, per-hop delay, per-segment loss and the evidence",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The `id` of a listed journey"}],
                "responses": {"200": {"description": "The journey's columns and `detail`", "content": {"application/json": {}}}, "404": {"description": "No such journey"}}
            }},
            "/api/slos": get("Each configured SLO: its error budget and burn rates at the end of the range and the range's judged 1-minute buckets (the last 6 hours unless told)", slos, "{slos: [{name, description, indicator, scope, objective, budget: {judged, bad, allowed, remaining, burn, exhausted_in_ns}, buckets: [{start_ns, good, events, lost, loss_ppm, delay_ns, threshold}]}]}"),
            "/api/alerts": get("Alert events (firing, resolved) of the range (the last 24 hours unless told) and the alerts firing now", range_params(), "{events: [alert], firing: [alert]}; an alert: {id, rule, name, severity, state, starts_ns, ends_ns, labels, summary, evidence}"),
            "/api/detections": get("Security detections (port scans, floods, beacons, lateral movement, address lists) and policy violations: their alert events of the range (the last hour unless told), those firing now, and the subjects with the most alerts", range_params(), "{events: [alert], firing: [alert], offenders: [{subject, rules, alerts, last_ns}]}; each alert's evidence holds the flows behind it as {filter, from_ns, to_ns}"),
            "/api/policy": get("The configured segmentation policy over the range (the last hour unless told): per intent rule the flows, bytes and connections it allowed or denied, per path rule the journeys that crossed its point, bypassed it or proved nothing, and the violations' alerts; {configured: false} without [policy]", range_params(), "{configured, rules: [{rule, action, flows, bytes, connections, examples}], paths: [{rule, via, journeys, crossed, bypassed, unproven, examples}], flows, journeys, violations: [alert]}"),
            "/api/rca": get("Root cause: the segments of the path ranked by the evidence against them, for an alert, an SLO or a journey filter (the last 15 minutes unless told)", rca, "{journeys, affected_journeys, candidates: [{segment, place, score, confidence, now, baseline, excess_lost, excess_delay, votes, why}]}"),
            "/api/capacity": get("Capacity: every link's 5-minute (or sample=1m) utilisation per direction from SNMP, sFlow counters and flows scaled by sampling (kept apart and compared), its percentile of the samples as billing computes it, headroom to [capacity] threshold of its speed, and the day its daily-percentile forecast crosses it; the least headroom first; port groups summed per sample (the last [capacity] history, 28 days, unless told)", capacity.clone(), "{from_ns, to_ns, sample_ns, percentile, threshold, horizon_days, links: [{exporter, if_index, name, alias, speed_bps, speed_source, source, sources, in: {percentile_bps, max_bps, mean_bps, samples}, out, billing_bps, utilisation, headroom, comparisons: [{direction, source, reference, ratio, samples, disagrees}], forecast: {model, threshold_bps, crossing: {day, earliest, latest}, days_to_crossing}}], links_without_samples, groups: [{name, ports, missing, in, out, billing_bps, speed_bps, utilisation}]}"),
            "/api/capacity/link": get("One link (port=EXPORTER:IFINDEX or EXPORTER:IFNAME): its samples from each source, daily percentiles and forecast days with 95 % intervals, and the services, ASes and networks whose traffic through its busier direction grew the most between the halves of the range", capacity_link, "{detail: {link, start_ns, sample_ns, series: [{source, direction, values}], daily: [{day, value}], forecast: [{day, value, low, high}]}, growth: [{dimension, key, before_bps, after_bps, change_bps}], growth_direction}"),
            "/api/sql": get("Read-only SQL (DataFusion) over flows, flows_1m, flows_1h, health, packet_reports, interface_counters, journeys; 30 s, 512 MiB, 10000 rows at most; 501 in builds without the sql feature", vec![json!({"name": "q", "in": "query", "required": true, "schema": {"type": "string"}}), param("max_rows", "Rows at most (cap 10000)")], "{rows, truncated}"),
            "/api/openapi.json": get("This document", vec![], "OpenAPI 3.1")
        }
    })
}

pub(crate) async fn document() -> Json<Value> {
    Json(openapi())
}
