// hopscope's web UI: six pages (and one per journey, host and link) over the HTTP API (see /api/openapi.json),
// routed by the URL's hash so that every view, filters included, can be
// shared as a link. No framework: the pages are small and the API does the work.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const page = $("#page");
const charts = [];

// ---- formatting -----------------------------------------------------------

const SI = ["", "k", "M", "G", "T", "P"];
function si(v, unit = "") {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  let i = 0;
  let x = Math.abs(v);
  while (x >= 1000 && i < SI.length - 1) { x /= 1000; i++; }
  const s = (v < 0 ? "-" : "") + (x >= 100 || i === 0 ? x.toFixed(0) : x.toFixed(1));
  return s + (SI[i] || "") + unit;
}
function bytes(v) { return si(v, "B"); }
function ns(v) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(2) + " s";
  if (a >= 1e6) return (v / 1e6).toFixed(2) + " ms";
  if (a >= 1e3) return (v / 1e3).toFixed(1) + " µs";
  return v + " ns";
}
function pct(r, digits = 2) { return r === null || r === undefined ? "–" : (r * 100).toFixed(digits) + " %"; }
function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function el(html) {
  const t = document.createElement("template");
  t.innerHTML = html.trim();
  return t.content.firstElementChild;
}

// ---- the API --------------------------------------------------------------

class ApiError extends Error {
  constructor(message, position) { super(message); this.position = position; }
}

async function api(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const url = path + (q.toString() ? "?" + q : "");
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  if (!r.ok) throw new ApiError(body.error || r.statusText, body.position);
  return body;
}

function showError(e) {
  const box = $("#error");
  if (!e) { box.hidden = true; return; }
  box.textContent = e.message || String(e);
  box.hidden = false;
}

// ---- routing and shared state ---------------------------------------------

function route() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  return { name: parts[0] || "overview", arg: parts[1], params: new URLSearchParams(query || "") };
}

function setHash(name, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const next = "#/" + name + (q.toString() ? "?" + q : "");
  if (location.hash !== next) history.replaceState(null, "", next);
}

function range() { return $("#range").value; }

function chart(node) {
  const c = echarts.init(node, null, { renderer: "canvas" });
  charts.push(c);
  return c;
}

window.addEventListener("resize", () => charts.forEach((c) => c.resize()));

let refreshTimer = null;
async function render() {
  clearInterval(refreshTimer);
  charts.splice(0).forEach((c) => c.dispose());
  showError(null);
  const r = route();
  if (r.params.get("since")) $("#range").value = r.params.get("since");
  const parent = { journey: "journeys", host: "security", link: "capacity" }[r.name] || r.name;
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === parent));
  const pages = { overview, explorer, journeys, journey, security, host, capacity, link, status };
  const view = pages[r.name] || overview;
  page.innerHTML = "";
  try {
    await view(r);
  } catch (e) {
    showError(e);
  }
}

window.addEventListener("hashchange", render);
$("#range").addEventListener("change", () => {
  const r = route();
  r.params.set("since", range());
  setHash(r.arg ? `${r.name}/${r.arg}` : r.name, Object.fromEntries(r.params));
  render();
});

// ---- Overview ---------------------------------------------------------------

async function overview() {
  page.append(el(`<div class="kpis" id="kpis"></div>`));
  page.append(el(`<p class="note" id="volumes-note"></p>`));
  page.append(el(`<div class="grid2">
      <section class="panel"><h2>Traffic <small>bits per second, each packet counted once</small></h2><div class="chart" id="traffic"></div></section>
      <section class="panel"><h2>Flow rate <small>flow records per second, per exporter</small></h2><div class="chart" id="flowrate"></div></section>
    </div>`));
  page.append(el(`<div class="grid2">
      <section class="panel"><h2>Top talkers <small>by bytes</small></h2><div id="talkers"></div></section>
      <section class="panel"><h2>Exporters <small>health</small></h2><div id="exporters"></div></section>
    </div>`));
  const load = async () => {
    const since = range();
    const [bps, fps, talkers, exporters, status, segments, total] = await Promise.all([
      api("/api/timeseries", { since, aggregate: "bps" }),
      api("/api/timeseries", { since, aggregate: "flows", group_by: "exporter_name", top: 8 }),
      api("/api/flows", { since, group_by: "src_addr", aggregates: "bytes,flows,packets", limit: 10, order: "-bytes" }),
      api("/api/exporters"),
      api("/api/status"),
      api("/api/journeys/segments", { since }),
      api("/api/flows", { since, aggregates: "bytes" }),
    ]);
    const totalBytes = total.rows[0]?.bytes ?? 0;
    const totalBps = bps.series.reduce((s, x) => s + (x.values.at(-2) ?? x.values.at(-1) ?? 0), 0);
    const worst = segments.segments[0];
    $("#kpis").innerHTML = [
      kpi(si(totalBps, "b/s"), "traffic (last full bucket)"),
      kpi(bytes(totalBytes), "traffic in range", `${totalBytes.toLocaleString("en")} bytes`, "traffic-total"),
      kpi(si(fps.series.reduce((s, x) => s + x.total, 0)), "flow records in range"),
      kpi(exporters.exporters.length, "exporter sessions"),
      kpi(si(status.journeys.journeys), "journeys correlated"),
      kpi(worst && worst.lost > 0 ? pct(worst.ratio) : "none", worst && worst.lost > 0 ? `worst loss: ${esc(worst.from)} › ${esc(worst.to)}` : "network loss seen"),
    ].join("");
    $("#volumes-note").textContent = volumesNote(bps.volumes);
    stacked(chart($("#traffic")), bps, "b/s");
    // flow records per bucket, shown per second
    stacked(chart($("#flowrate")), fps, "", fps.bucket_ns / 1e9);
    $("#talkers").innerHTML = table(
      ["source", "bytes", "flows", "packets"],
      talkers.rows.map((r) => [hostLink(r.src_addr), bytes(r.bytes), si(r.flows), si(r.packets)]),
      [0, 1, 1, 1],
    );
    $("#exporters").innerHTML = exporterTable(exporters.exporters);
  };
  await load();
  refreshTimer = setInterval(() => load().catch(showError), 15000);
}

// what an answer's volumes are: scaled by sampling or as counted, and how
// much of it had no known sampling rate (counted once)
function volumesNote(v) {
  if (!v) return "";
  const unknown = v.unknown_rate_flows
    ? `${si(v.unknown_rate_flows)} of ${si(v.flows)} flows (${pct(v.unknown_rate_share, 1)}) of unknown sampling rate, counted once`
    : "every flow of known sampling rate";
  return `Volumes: ${v.describe}; ${unknown}; ${v.counting_describe}.`;
}

// offers in `list` the `words` that complete the word being typed in
// `input`: its last run of what `word` matches
function complete(input, list, words, word) {
  const offer = () => {
    const head = input.value.replace(word, "");
    const tail = input.value.slice(head.length).toLowerCase();
    list.innerHTML = words
      .filter((w) => w.startsWith(tail))
      .slice(0, 30)
      .map((w) => `<option value="${esc(head + w)}">`)
      .join("");
  };
  input.addEventListener("input", offer);
  offer();
}

function kpi(v, label, title = "", id = "") {
  const attrs = `${title ? ` title="${esc(title)}"` : ""}${id ? ` id="${id}"` : ""}`;
  return `<div class="kpi"${attrs}><div class="v">${v}</div><div class="l">${label}</div></div>`;
}

function table(head, rows, numeric = [], totals = null, attrs = () => "") {
  if (!rows.length) return `<div class="empty">nothing in this range yet</div>`;
  const cls = (i) => (numeric[i] ? ' class="n"' : "");
  return `<table><thead><tr>${head.map((h, i) => `<th${cls(i)}>${h}</th>`).join("")}</tr></thead><tbody>${
    rows.map((r, ri) => `<tr ${attrs(ri)}>${r.map((c, i) => `<td${cls(i)}>${c}</td>`).join("")}</tr>`).join("")
  }${totals ? `<tr class="total">${totals.map((c, i) => `<td${cls(i)}>${c}</td>`).join("")}</tr>` : ""}</tbody></table>`;
}

function exporterTable(list) {
  return table(
    ["exporter", "name, points", "records", "reports", "templates", "lost records", "decode errors", "last seen"],
    list.map((e) => {
      const errors = Object.values(e.decode_errors || {}).reduce((a, b) => a + b, 0);
      const age = e.last_seen_ns ? Math.max(0, Math.round(Date.now() / 1000 - e.last_seen_ns / 1e9)) + " s ago" : "–";
      return [
        `<code>${esc(e.transport)} ${esc(e.exporter)}</code>`,
        esc([e.name, ...(e.points || [])].filter(Boolean).join(" · ")),
        // records of unknown sampling rate count once: say how many
        si(e.flow_records) + (e.sampling_unknown ? ` <span class="warn" title="of unknown sampling rate">(${si(e.sampling_unknown)} rate?)</span>` : ""),
        si(e.packet_reports),
        e.templates_active, e.lost_records ? `<span class="warn">${si(e.lost_records)}</span>` : "0",
        errors ? `<span class="bad">${errors}</span>` : "0", age,
      ];
    }),
    [0, 0, 1, 1, 1, 1, 1, 1],
  );
}

// a stacked area chart of a /api/timeseries answer, each value divided by
// `div` (the bucket's seconds turn counts into rates)
function stacked(c, ts, unit, div = 1) {
  c.setOption({
    animation: false,
    tooltip: { trigger: "axis", valueFormatter: (v) => si(v, unit) },
    legend: { type: "scroll", bottom: 0 },
    grid: { left: 60, right: 16, top: 16, bottom: 56 },
    xAxis: { type: "time" },
    yAxis: { type: "value", axisLabel: { formatter: (v) => si(v, unit) } },
    series: ts.series.map((s) => ({
      name: s.key, type: "line", stack: "total", areaStyle: {}, symbol: "none", lineStyle: { width: 1 },
      data: s.values.map((v, i) => [ts.timestamps_ms[i], v / div]),
    })),
  }, true); // replace, not merge: a re-run's series are not the last one's
}

// ---- Explorer ---------------------------------------------------------------

const KEYWORDS = ["and", "or", "not", "src", "dst", "host", "net", "port", "proto", "tcp", "udp", "icmp", "ip", "ip6"];

async function explorer(r) {
  const p = r.params;
  const state = {
    filter: p.get("filter") || "",
    group_by: p.get("group_by") || "dst_port",
    aggregate: p.get("aggregate") || "bytes",
    sankey: p.get("sankey") || "src_addr,dst_port",
  };
  page.append(el(`<section class="panel">
    <form class="controls" id="query" autocomplete="off">
      <label>filter<input class="filter" name="filter" list="fields" placeholder="src net 10.1.0.0/16 and dst port 443 and not proto udp"></label>
      <label>group by<input name="group_by" list="groupable" size="22"></label>
      <label>aggregate<select name="aggregate">
        <option>bytes</option><option>packets</option><option>flows</option><option>bps</option><option>pps</option>
      </select></label>
      <label>sankey<input name="sankey" size="22" title="two fields: left,right"></label>
      <button type="submit">Run</button>
      <datalist id="fields"></datalist>
      <datalist id="groupable"></datalist>
    </form>
    <div class="hint" id="hint"></div>
  </section>`));
  page.append(el(`<section class="panel"><h2>Over time <small id="series-note"></small></h2><div class="chart tall" id="series"></div></section>`));
  page.append(el(`<div class="grid2">
    <section class="panel"><h2>Groups <small>total, share and 95th percentile per bucket</small></h2><div id="groups"></div></section>
    <section class="panel"><h2>Sankey <small id="sankey-note"></small></h2><div class="chart tall" id="sankey"></div></section>
  </div>`));
  const form = $("#query");
  for (const k of Object.keys(state)) form.elements[k].value = state[k];
  // completion for the word being typed: field names and keywords in the
  // filter, field names only in the group-by list
  api("/api/fields").then((fields) => {
    const names = fields.map((f) => f.name);
    complete(form.elements.filter, $("#fields"), names.concat(KEYWORDS), /[^\s()]*$/);
    complete(form.elements.group_by, $("#groupable"), names, /[^,\s]*$/);
  }).catch(showError);
  const seriesChart = chart($("#series"));
  const sankeyChart = chart($("#sankey"));
  const run = async () => {
    const s = Object.fromEntries(["filter", "group_by", "aggregate", "sankey"].map((k) => [k, form.elements[k].value.trim()]));
    setHash("explorer", { ...s, since: range() });
    $("#hint").textContent = "";
    const [left, right] = s.sankey.split(",").map((x) => x.trim());
    let ts, flows, pairs;
    try {
      [ts, flows, pairs] = await Promise.all([
        api("/api/timeseries", { filter: s.filter, group_by: s.group_by, aggregate: s.aggregate, since: range(), top: 10 }),
        api("/api/flows", { filter: s.filter, aggregates: "bytes,packets,flows", since: range() }),
        left && right
          ? api("/api/flows", { filter: s.filter, group_by: `${left},${right}`, aggregates: s.aggregate, since: range(), limit: 40, order: "-" + s.aggregate })
          : Promise.resolve({ rows: [] }),
      ]);
    } catch (e) {
      if (e.position !== undefined) {
        $("#hint").textContent = `${e.message} (at character ${e.position + 1})`;
        form.elements.filter.focus();
        form.elements.filter.setSelectionRange(e.position, e.position + 1);
        return;
      }
      throw e;
    }
    const unit = { bytes: "B", bps: "b/s", pps: "p/s" }[s.aggregate] || "";
    stacked(seriesChart, ts, unit);
    const total = ts.series.reduce((a, x) => a + x.total, 0);
    $("#series-note").textContent = `${s.aggregate} per ${ts.bucket}${s.group_by ? " by " + s.group_by : ""}; ${ts.groups} groups. ${volumesNote(ts.volumes)}`;
    const all = flows.rows[0] || {};
    $("#groups").innerHTML = table(
      [esc(s.group_by || "all"), esc(s.aggregate), "share", "p95 / bucket"],
      ts.series.map((x) => [esc(x.key), si(x.total, unit), pct(total ? x.total / total : 0, 1), si(x.p95, unit)]),
      [0, 1, 1, 1],
      [`total: ${si(all.flows)} flows, ${si(all.packets)} packets`, si(total, unit), "100 %", ""],
    );
    sankey(sankeyChart, pairs.rows, left, right, s.aggregate);
    $("#sankey-note").textContent = left && right ? `${left} → ${right}, top 40 pairs` : "give two fields";
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); run().catch(showError); });
  await run();
}

function sankey(c, rows, left, right, value) {
  const nodes = new Map();
  const links = [];
  for (const r of rows) {
    // the same value on both sides (a host talking to itself) would loop
    const a = "‹ " + String(r[left]);
    const b = String(r[right]) + " ›";
    nodes.set(a, { name: a });
    nodes.set(b, { name: b });
    links.push({ source: a, target: b, value: Math.max(Number(r[value]) || 0, 1e-9) });
  }
  c.setOption({
    animation: false,
    tooltip: { trigger: "item", valueFormatter: (v) => si(v) },
    series: [{ type: "sankey", data: [...nodes.values()], links, emphasis: { focus: "adjacency" },
      nodeGap: 6, label: { fontSize: 11 }, lineStyle: { color: "gradient", curveness: 0.5 } }],
  }, true);
}

// ---- Journeys ---------------------------------------------------------------

async function journeys(r) {
  const sort = r.params.get("sort") || "loss";
  const filter = r.params.get("filter") || "";
  page.append(el(`<section class="panel"><h2>Segments <small>loss and delay pooled over every journey in range, the most lossy first; selected packets and whole-flow totals apart</small></h2><div id="segments"></div></section>`));
  page.append(el(`<section class="panel">
    <h2>Journeys <small id="jcount"></small></h2>
    <form class="controls" id="jform" autocomplete="off">
      <label>filter<input class="filter" name="filter" placeholder='lost > 0 and path "isp-pe"'></label>
      <div class="tabs">
        <a href="#" data-sort="loss">by loss</a><a href="#" data-sort="delay">by delay</a><a href="#" data-sort="time">latest</a>
      </div>
      <button type="submit">Filter</button>
    </form>
    <div class="hint" id="hint"></div>
    <div id="jlist"></div>
  </section>`));
  const form = $("#jform");
  form.elements.filter.value = filter;
  document.querySelectorAll(".tabs a").forEach((a) => {
    a.classList.toggle("active", a.dataset.sort === sort);
    a.addEventListener("click", (e) => {
      e.preventDefault();
      setHash("journeys", { sort: a.dataset.sort, filter: form.elements.filter.value, since: range() });
      render();
    });
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    setHash("journeys", { sort, filter: form.elements.filter.value.trim(), since: range() });
    render();
  });
  let segs, list;
  try {
    [segs, list] = await Promise.all([
      api("/api/journeys/segments", { filter, since: range() }),
      api("/api/journeys", { filter, sort, since: range(), limit: 50 }),
    ]);
  } catch (e) {
    if (e.position !== undefined) { $("#hint").textContent = `${e.message} (at character ${e.position + 1})`; return; }
    throw e;
  }
  $("#segments").innerHTML = table(
    ["segment", "basis", "journeys", "packets", "lost", "loss", "95 % interval", "telemetry explained", "median delay"],
    segs.segments.map((s) => [
      `${esc(s.from)} › ${esc(s.to)}`, `<span class="muted" title="${s.basis === "packets" ? "selected packets followed hop by hop" : "whole-flow records compared"}">${esc(s.basis)}</span>`,
      si(s.journeys), si(s.sent), s.lost,
      `<span class="${s.ratio_low > 0 ? "bad" : ""}">${pct(s.ratio)}</span>`,
      `${pct(s.ratio_low)} – ${pct(s.ratio_high)}`, s.telemetry_explained, ns(s.delay_median_ns),
    ]),
    [0, 0, 1, 1, 1, 1, 1, 1, 1],
  );
  // parallel paths (ECMP members, parallel links) side by side
  for (const set of segs.ecmp || []) {
    $("#segments").append(el(`<h3>Parallel paths ${esc(set.fork)} › ${esc(set.join)} <small class="muted">${esc(set.basis)}</small></h3>`));
    $("#segments").append(el(`<div>${table(
      ["via", "journeys", "packets", "lost", "loss", "95 % interval", "median delay, fork to join"],
      set.members.map((m) => [
        esc(m.via.join(" › ")), si(m.journeys), si(m.sent), m.lost,
        `<span class="${m.ratio_low > 0 ? "bad" : ""}">${pct(m.ratio)}</span>`,
        `${pct(m.ratio_low)} – ${pct(m.ratio_high)}`,
        `${ns(m.delay_median_ns)} <span class="muted">${esc(m.delay_kind)}</span>`,
      ]),
      [0, 1, 1, 1, 1, 1, 1],
    )}</div>`));
  }
  $("#jcount").textContent = `${list.matched} in range, ${list.journeys.length} shown`;
  $("#jlist").innerHTML = table(
    ["start", "flow", "path", "packets", "lost", "loss", "worst segment", "delay p95", "flags"],
    list.journeys.map((j) => [
      esc(String(j.time_received_ns).slice(11, 19)),
      `<code>${esc(j.src_addr)}:${j.src_port} → ${esc(j.dst_addr)}:${j.dst_port} ${protoName(j.proto)}</code>`,
      `${j.hop_count} hops`, j.packets, j.lost,
      `<span class="${j.lost > 0 ? "bad" : ""}">${pct(j.loss_ppm / 1e6)}</span>`,
      esc(j.loss_segment || ""), ns(j.delay_p95_ns), esc(j.flags || ""),
    ]),
    [0, 0, 0, 1, 1, 1, 0, 1, 0],
    null,
    (i) => `class="click" data-id="${esc(list.journeys[i].id)}"`,
  );
  document.querySelectorAll("#jlist tr[data-id]").forEach((tr) =>
    tr.addEventListener("click", () => { location.hash = `#/journey/${tr.dataset.id}`; }));
}

function protoName(p) { return { 6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6", 132: "sctp" }[p] || `proto ${p}`; }

// ---- One journey --------------------------------------------------------------

async function journey(r) {
  const j = await api(`/api/journeys/${encodeURIComponent(r.arg || "")}`);
  const d = j.detail || {};
  page.append(el(`<section class="panel"><h2>Journey <small><code>${esc(j.community_id)}</code></small></h2>
    <dl class="kv">
      <dt>flow</dt><dd><code>${esc(j.src_addr)}:${j.src_port} → ${esc(j.dst_addr)}:${j.dst_port} ${protoName(j.proto)}</code></dd>
      <dt>time</dt><dd>${esc(j.time_received_ns)} – ${esc(j.time_end_ns)}</dd>
      <dt>selected packets</dt><dd>${d.packets} at the first hop, ${d.delivered} at the last; ${d.lost} lost in the network, ${d.telemetry_lost} missing from telemetry only</dd>
      <dt>end to end</dt><dd>${d.end_to_end ? `median ${ns(d.end_to_end.median_ns)}, p95 ${ns(d.end_to_end.p95_ns)}, max ${ns(d.end_to_end.max_ns)}` : "unknown (clock offsets not estimated)"}</dd>
      <dt>NAT</dt><dd>${(d.nat || []).map((n) => `at ${esc(n.at)}: <code>${esc(n.before)}</code> → <code>${esc(n.after)}</code>`).join("<br>") || "none seen"}</dd>
      <dt>flags</dt><dd>${esc((d.flags || []).join(", ") || "none")}</dd>
    </dl></section>`));
  const path = el(`<section class="panel"><h2>Path <small>hops in order; per segment the one-way delay and the loss, with the evidence</small></h2><div class="path" id="path"></div></section>`);
  page.append(path);
  const box = $("#path");
  (d.hops || []).forEach((h, i) => {
    if (i > 0) box.append(segmentNode(d.segments[i - 1]));
    box.append(hopNode(h));
  });
  if (!(d.hops || []).length) box.innerHTML = `<div class="empty">no hops recorded</div>`;
}

function hopNode(h) {
  const points = h.points.map((p) => `<div class="node">${esc(p.node)}</div><div class="if">${esc(p.interface)}</div>
    <div class="stat">${p.packets} pkts · TTL ${p.ttl_min === p.ttl_max ? p.ttl_min : `${p.ttl_min}–${p.ttl_max}`}
    ${p.clock ? `<br>clock ${ns(Math.round(p.clock.offset_ns))} ± ${ns(Math.round(p.clock.bound_ns))}` : ""}</div>`).join("<hr>");
  const missing = h.telemetry_missing ? `<div class="stat warn">${h.telemetry_missing} reports missing (telemetry)</div>` : "";
  return el(`<div class="hop ${h.points.length > 1 ? "ecmp" : ""}" data-hop="${esc(h.points.map((p) => p.name).join("|"))}">${points}${missing}</div>`);
}

function segmentNode(s) {
  const l = s.loss;
  const lossy = l.lost > 0;
  // what the figure rests on: one clock (measured), an offset estimated
  // from traffic (the split of the round trip is an estimate), or nothing
  const bound = s.delay_bound_ns ? ` ±${ns(s.delay_bound_ns)}` : "";
  const kind = s.delay_kind === "one-way" ? `one-way delay${bound}`
    : s.delay_kind === "estimated" ? `<span class="warn" title="clock offsets estimated from packets seen both ways, assuming equal minimum delays">estimated one-way delay${bound}</span>`
    : s.delay_kind === "variation" ? "delay variation (clock offsets unknown)" : esc(s.delay_kind);
  const delay = s.delay
    ? `${kind}: median ${ns(s.delay.median_ns)}, p95 ${ns(s.delay.p95_ns)}, min ${ns(s.delay.min_ns)}, max ${ns(s.delay.max_ns)} (${s.delay.samples} packets${s.delay.negative ? `, <span class="warn">${s.delay.negative} negative</span>` : ""})`
    : "delay unknown";
  return el(`<div class="seg ${lossy ? "lossy" : ""}" data-from="${esc(s.from)}" data-to="${esc(s.to)}">
    <div class="arrow"></div>
    <div class="figures">
      <div>${delay}</div>
      <div class="${lossy ? "bad" : ""}">loss: ${l.lost} of ${l.sent} selected packets (${pct(l.ratio, 1)}; 95 % interval ${pct(l.ratio_low, 1)} – ${pct(l.ratio_high, 1)})</div>
      <div class="evidence">evidence: ${esc(l.evidence)}</div>
    </div>
  </div>`);
}

// ---- Security -----------------------------------------------------------------

// a host's address as a link to its page
function hostLink(addr) {
  return addr ? `<a href="#/host/${encodeURIComponent(addr)}">${esc(addr)}</a>` : "–";
}

// the explorer over the flows behind an alert's evidence
function flowsLink(ev) {
  const f = ev && ev.flows;
  if (!f || !f.filter) return "";
  return `<a href="#/explorer?${new URLSearchParams({ filter: f.filter, group_by: "dst_port", since: range() })}">flows</a>`;
}

function when(ns_) { return ns_ ? new Date(ns_ / 1e6).toISOString().replace("T", " ").slice(0, 19) : "–"; }

// the alert's subject, its addresses linked to their host pages
function subjectCell(a) {
  const l = a.labels || {};
  const who = [l.source, l.destination].filter(Boolean);
  return who.length ? who.map(hostLink).join(" › ") : esc(l.subject || a.id);
}

function alertRows(list) {
  return list.map((a) => [
    `<span class="${a.severity === "page" ? "bad" : "warn"}">${esc(a.rule)}</span>`,
    subjectCell(a),
    esc(when(a.starts_ns || a.at_ns)),
    `<span class="wrap">${esc(a.summary)}</span>`,
    flowsLink(a.evidence),
  ]);
}

async function security() {
  page.append(el(`<div class="kpis" id="kpis"></div>`));
  page.append(el(`<section class="panel"><h2>Firing now <small>detections and policy violations, one alert per subject</small></h2><div id="firing"></div></section>`));
  page.append(el(`<div class="grid2">
      <section class="panel"><h2>Top offenders <small>subjects with the most alerts in the range</small></h2><div id="offenders"></div></section>
      <section class="panel"><h2>Policy <small>per rule: what it allowed or denied</small></h2><div id="policy"></div></section>
    </div>`));
  page.append(el(`<section class="panel"><h2>Alert events <small>firing and resolved, in the range</small></h2><div id="events"></div></section>`));
  const load = async () => {
    const since = range();
    const [d, p, st] = await Promise.all([
      api("/api/detections", { since }),
      api("/api/policy", { since }),
      api("/api/status"),
    ]);
    const stats = (st.detection && st.detection.stats) || {};
    $("#kpis").innerHTML = [
      kpi(d.firing.length, "alerts firing (detections and policy)"),
      kpi(d.events.filter((e) => e.state === "firing").length, "alerts raised in range"),
      kpi(d.offenders.length, "offenders"),
      kpi(si(stats.records), "flow records read"),
      kpi(p.configured ? si((p.violations || []).filter((e) => e.state === "firing").length) : "none",
        p.configured ? "policy violations raised in range" : "policy configured"),
    ].join("");
    $("#firing").innerHTML = d.firing.length
      ? table(["rule", "subject", "since", "what", ""], alertRows(d.firing))
      : `<div class="empty">nothing firing${stats.learning ? " (lateral movement still learning which peers hosts reach)" : ""}</div>`;
    $("#offenders").innerHTML = table(
      ["subject", "alerts", "rules", "last"],
      d.offenders.map((o) => [
        /^[0-9a-f.:]+$/i.test(o.subject) ? hostLink(o.subject) : esc(o.subject),
        o.alerts, esc(o.rules.join(", ")), esc(when(o.last_ns)),
      ]),
      [0, 1, 0, 0],
    );
    $("#policy").innerHTML = !p.configured
      ? `<div class="empty">no [policy] in the configuration</div>`
      : table(
        ["rule", "action", "flows", "bytes", "connections"],
        (p.rules || []).map((r) => [esc(r.rule), r.action === "deny" ? `<span class="bad">deny</span>` : esc(r.action), si(r.flows), bytes(r.bytes), si(r.connections)])
          .concat((p.paths || []).map((r) => [esc(r.rule), `path via ${esc(r.via)}`, si(r.journeys) + " journeys",
            r.bypassed ? `<span class="bad">${si(r.bypassed)} bypassed</span>` : "0 bypassed", si(r.unproven) + " unproven"])),
        [0, 0, 1, 1, 1],
      );
    $("#events").innerHTML = table(
      ["rule", "subject", "at", "what", ""],
      d.events.slice().reverse().slice(0, 100).map((e) => {
        const row = alertRows([e])[0];
        row[2] = esc(`${when(e.at_ns)} ${e.state}`);
        return row;
      }),
    );
  };
  await load();
  refreshTimer = setInterval(() => load().catch(showError), 15000);
}

// ---- Capacity -------------------------------------------------------------------

// one-minute samples for short ranges, billing's five minutes from a day up
function sampleFor(since) { return /^\d+[mh]$/.test(since) ? "1m" : "5m"; }
function portOf(l) { return `${l.exporter.includes(":") ? `[${l.exporter}]` : l.exporter}:${l.if_index}`; }
function linkName(l) { return l.name || `ifIndex ${l.if_index}`; }
function day(d) { return new Date(d * 86400e3).toISOString().slice(0, 10); }

async function capacity() {
  page.append(el(`<div class="kpis" id="kpis"></div>`));
  page.append(el(`<section class="panel"><h2>Links <small id="caption"></small></h2><div id="links"></div></section>`));
  page.append(el(`<section class="panel" id="groups-panel" hidden><h2>Port groups <small>summed per sample, then the percentile: aggregate billing</small></h2><div id="groups"></div></section>`));
  const since = range();
  const c = await api("/api/capacity", { since, sample: sampleFor(since) });
  const full = c.links.filter((l) => l.headroom !== null && l.headroom < 0);
  const crossing = c.links.filter((l) => l.forecast && l.forecast.crossing);
  const disagree = c.links.filter((l) => l.comparisons.some((x) => x.disagrees));
  $("#kpis").innerHTML = [
    kpi(c.links.length, "links with samples"),
    kpi(full.length, `over ${pct(c.threshold, 0)} of speed`),
    kpi(crossing.length, `forecast to cross within ${c.horizon_days} days`),
    kpi(disagree.length, "links whose sources disagree"),
  ].join("");
  $("#caption").textContent = `${c.percentile}th percentile of ${c.sample_ns / 60e9}-minute samples per direction, the least headroom first; full at ${pct(c.threshold, 0)} of speed`
    + (c.links_without_samples ? `; ${c.links_without_samples} more with readings but no whole sample yet` : "");
  const bar = (u) => u === null || u === undefined ? "–"
    : `<span class="bar"><span style="width:${Math.min(100, u * 100).toFixed(1)}%" class="${u >= c.threshold ? "over" : ""}"></span></span> ${pct(u, 1)}`;
  $("#links").innerHTML = table(
    ["link", "speed", `in p${c.percentile}`, `out p${c.percentile}`, "utilisation", "headroom", "forecast", "from"],
    c.links.map((l) => {
      const f = l.forecast;
      const forecast = !f ? `<span class="muted">needs 7 days</span>`
        : f.crossing ? `<span class="bad">${day(f.crossing.day)}</span> <span class="muted">in ${f.days_to_crossing} d</span>`
        : `<span class="muted">${si(f.model.slope_per_day, "b/s")}/day</span>`;
      const warn = l.comparisons.filter((x) => x.disagrees)
        .map((x) => `${x.source} ${x.ratio.toFixed(2)}× ${x.reference} (${x.direction})`).join("; ");
      return [
        `<code>${esc(l.exporter)}</code> ${esc(linkName(l))}${l.alias ? ` <span class="muted">${esc(l.alias)}</span>` : ""}`,
        l.speed_bps ? `${si(l.speed_bps, "b/s")} <span class="muted">${esc(l.speed_source)}</span>` : `<span class="muted">unknown</span>`,
        si(l.in.percentile_bps, "b/s"), si(l.out.percentile_bps, "b/s"), bar(l.utilisation),
        l.headroom === null ? "–" : `<span class="${l.headroom < 0 ? "bad" : ""}">${(l.headroom * 100).toFixed(1)} pts</span>`,
        forecast,
        esc(l.source) + (warn ? ` <span class="warn" title="${esc(warn)}">⚠ ${esc(warn)}</span>` : ""),
      ];
    }),
    [0, 1, 1, 1, 0, 1, 0, 0],
    null,
    (i) => `class="click" data-port="${esc(portOf(c.links[i]))}"`,
  );
  document.querySelectorAll("#links tr[data-port]").forEach((tr) =>
    tr.addEventListener("click", () => { location.hash = `#/link/${encodeURIComponent(tr.dataset.port)}?since=${range()}`; }));
  if (c.groups.length) {
    $("#groups-panel").hidden = false;
    $("#groups").innerHTML = table(
      ["group", "ports", `in p${c.percentile}`, `out p${c.percentile}`, "billed", "speed", "utilisation"],
      c.groups.map((g) => [
        esc(g.name), `${g.ports.length - g.missing.length} of ${g.ports.length}` + (g.missing.length ? ` <span class="warn">no samples: ${esc(g.missing.join(", "))}</span>` : ""),
        si(g.in.percentile_bps, "b/s"), si(g.out.percentile_bps, "b/s"), si(g.billing_bps, "b/s"),
        si(g.speed_bps, "b/s"), bar(g.utilisation),
      ]),
      [0, 0, 1, 1, 1, 1, 0],
    );
  }
}

async function link(r) {
  const port = decodeURIComponent(r.arg || "");
  const since = range();
  const d = await api("/api/capacity/link", { port, since, sample: sampleFor(since) });
  const l = d.detail.link;
  const threshold = l.speed_bps ? l.speed_bps * d.detail.threshold : null;
  page.append(el(`<section class="panel"><h2>${esc(linkName(l))} <small>${esc(l.exporter)}, ifIndex ${l.if_index}${l.alias ? ` · ${esc(l.alias)}` : ""}</small></h2>
    <dl class="kv">
      <dt>speed</dt><dd>${l.speed_bps ? `${si(l.speed_bps, "b/s")} (${esc(l.speed_source)})` : "unknown"}</dd>
      <dt>percentile in · out</dt><dd>${si(l.in.percentile_bps, "b/s")} · ${si(l.out.percentile_bps, "b/s")}; billed ${si(l.billing_bps, "b/s")}${l.utilisation !== null ? ` (${pct(l.utilisation, 1)} of speed)` : ""}</dd>
      <dt>sources</dt><dd>${l.sources.map(esc).join(", ")}; figures from ${esc(l.source)}${l.comparisons.map((x) => `<br><span class="${x.disagrees ? "warn" : "muted"}">${esc(x.source)} carries ${x.ratio.toFixed(3)}× what ${esc(x.reference)} counts (${x.direction}, ${x.samples} samples)${x.disagrees && x.source === "flows" ? ": is the sampling rate right?" : ""}</span>`).join("")}</dd>
      <dt>forecast</dt><dd>${!l.forecast ? "needs 7 days of samples" : l.forecast.crossing
        ? `<span class="bad">reaches ${si(threshold, "b/s")} on ${day(l.forecast.crossing.day)}</span> (in ${l.forecast.days_to_crossing} days; between ${day(l.forecast.crossing.earliest)} and ${l.forecast.crossing.latest ? day(l.forecast.crossing.latest) : "later"})`
        : `below ${si(threshold, "b/s")} for the horizon; ${si(l.forecast.model.slope_per_day, "b/s")} a day`}</dd>
    </dl></section>`));
  page.append(el(`<section class="panel"><h2>Utilisation <small>${d.detail.sample_ns / 60e9}-minute samples per source and direction; the dashed lines are the percentile and the threshold</small></h2><div class="chart tall" id="samples"></div></section>`));
  page.append(el(`<section class="panel"><h2>Daily percentile and forecast <small>with its 95 % interval</small></h2><div class="chart" id="forecast"></div></section>`));
  page.append(el(`<section class="panel"><h2>What grew <small>through ${esc(d.growth_direction)}, second half of the range against the first</small></h2><div id="growth"></div></section>`));
  const t0 = d.detail.start_ns / 1e6, step = d.detail.sample_ns / 1e6;
  const marks = [
    ...[["in", l.in.percentile_bps], ["out", l.out.percentile_bps]].filter(([, v]) => v)
      .map(([dir, v]) => ({ yAxis: v, name: `${dir} percentile`, label: { position: "insideEndTop", formatter: `${dir} percentile ${si(v, "b/s")}` } })),
    ...(threshold ? [{ yAxis: threshold, name: "threshold", lineStyle: { color: "#d92d20" }, label: { position: "insideEndTop", formatter: `threshold ${si(threshold, "b/s")}` } }] : []),
  ];
  chart($("#samples")).setOption({
    animation: false,
    tooltip: { trigger: "axis", valueFormatter: (v) => si(v, "b/s") },
    legend: { type: "scroll", bottom: 0 },
    grid: { left: 64, right: 16, top: 16, bottom: 56 },
    xAxis: { type: "time" },
    // high enough to show the threshold, which the samples may be far below
    yAxis: { type: "value", max: (v) => Math.max(v.max, (threshold || 0) * 1.05), axisLabel: { formatter: (v) => si(v, "b/s") } },
    series: d.detail.series.map((s, i) => ({
      name: `${s.source} ${s.direction}`, type: "line", symbol: "none", connectNulls: false,
      lineStyle: { width: s.source === l.source ? 1.5 : 1, type: s.source === l.source ? "solid" : "dotted" },
      data: s.values.map((v, k) => [t0 + k * step, v]),
      markLine: i === 0 ? { symbol: "none", lineStyle: { type: "dashed" }, data: marks } : undefined,
    })),
  }, true);
  const daily = d.detail.daily, future = d.detail.forecast;
  if (!daily.length) {
    $("#forecast").replaceWith(el(`<div class="empty">no whole day of samples in the range: pick 7 days or more for a forecast</div>`));
  } else chart($("#forecast")).setOption({
    animation: false,
    tooltip: { trigger: "axis", valueFormatter: (v) => si(v, "b/s") },
    legend: { bottom: 0 },
    grid: { left: 64, right: 16, top: 16, bottom: 48 },
    xAxis: { type: "time" },
    yAxis: { type: "value", axisLabel: { formatter: (v) => si(v, "b/s") } },
    series: [
      { name: "daily percentile", type: "line", data: daily.map((x) => [x.day * 86400e3, x.value]) },
      // the band: the low bound, then the width above it, stacked
      { name: "95 % interval", type: "line", stack: "band", symbol: "none", color: "#93b4f5", lineStyle: { opacity: 0 }, data: future.map((p) => [p.day * 86400e3, Math.max(0, p.low)]) },
      { name: "95 % interval", type: "line", stack: "band", symbol: "none", color: "#93b4f5", lineStyle: { opacity: 0 }, areaStyle: { color: "#2563eb", opacity: 0.15 },
        data: future.map((p) => [p.day * 86400e3, p.high - Math.max(0, p.low)]) },
      { name: "forecast", type: "line", symbol: "none", lineStyle: { type: "dashed" }, data: future.map((p) => [p.day * 86400e3, p.value]),
        markLine: threshold ? { symbol: "none", data: [{ yAxis: threshold, lineStyle: { color: "#d92d20" }, label: { position: "insideEndTop", formatter: "threshold" } }] } : undefined },
    ],
  }, true);
  $("#growth").innerHTML = !d.growth.length
    ? `<div class="empty">nothing grew in the flows through this link${l.sources.includes("flows") ? "" : " (it has no flows: growth is read from them)"}</div>`
    : table(
    ["by", "what", "before", "after", "change"],
    d.growth.map((g) => [esc(g.dimension), esc(g.key), si(g.before_bps, "b/s"), si(g.after_bps, "b/s"), `<span class="warn">+${si(g.change_bps, "b/s")}</span>`]),
    [0, 0, 1, 1, 1],
  );
}

// ---- Host ---------------------------------------------------------------------

// an IPv4 or IPv6 address, as the API prints them (nothing else goes into
// a filter)
const ADDRESS = /^(\d{1,3}(\.\d{1,3}){3}|[0-9a-f:]*:[0-9a-f:.]*)$/i;

async function host(r) {
  const addr = decodeURIComponent(r.arg || "");
  if (!ADDRESS.test(addr)) throw new Error(`not an address: ${addr}`);
  page.append(el(`<section class="panel"><h2>Host <code>${esc(addr)}</code> <small id="host-note"></small></h2><div class="chart" id="host-series"></div></section>`));
  page.append(el(`<div class="grid2">
      <section class="panel"><h2>Peers <small>whom it talks to, by bytes</small></h2><div id="peers"></div></section>
      <section class="panel"><h2>Traffic to it <small>by its port (its services, and the ports its own connections' replies come back to)</small></h2><div id="services"></div></section>
    </div>`));
  page.append(el(`<section class="panel"><h2>Alerts <small>naming it, in the range</small></h2><div id="host-alerts"></div></section>`));
  const since = range();
  const filter = `host ${addr}`;
  const [ts, out, inbound, served, d] = await Promise.all([
    api("/api/timeseries", { filter, aggregate: "bps", since }),
    api("/api/flows", { filter: `src host ${addr}`, group_by: "dst_addr,dst_port,proto", aggregates: "bytes,flows", limit: 15, order: "-bytes", since }),
    api("/api/flows", { filter: `dst host ${addr}`, group_by: "src_addr", aggregates: "bytes,flows", limit: 15, order: "-bytes", since }),
    api("/api/flows", { filter: `dst host ${addr}`, group_by: "dst_port,proto", aggregates: "bytes,flows", limit: 15, order: "-bytes", since }),
    api("/api/detections", { since }),
  ]);
  stacked(chart($("#host-series")), ts, "b/s");
  $("#host-note").innerHTML = `${esc(volumesNote(ts.volumes))} <a href="#/explorer?${new URLSearchParams({ filter, group_by: "dst_port", since })}">explore its flows</a>`;
  $("#peers").innerHTML = table(
    ["to", "port/proto", "bytes", "flows"],
    out.rows.map((x) => [hostLink(x.dst_addr), esc(`${x.dst_port}/${x.proto}`), bytes(x.bytes), si(x.flows)]),
    [0, 0, 1, 1],
  ) + table(
    ["from", "bytes", "flows"],
    inbound.rows.map((x) => [hostLink(x.src_addr), bytes(x.bytes), si(x.flows)]),
    [0, 1, 1],
  );
  $("#services").innerHTML = table(
    ["port/proto", "bytes", "flows"],
    served.rows.map((x) => [esc(`${x.dst_port}/${x.proto}`), bytes(x.bytes), si(x.flows)]),
    [0, 1, 1],
  );
  // alerts whose source, destination or subject it is, or that name it
  // among their peers or addresses
  const l = (e) => e.labels || {};
  const ev = (e) => e.evidence || {};
  const mine = d.events.filter((e) => [l(e).source, l(e).destination, l(e).subject].includes(addr)
    || (ev(e).new_peers || []).includes(addr) || (ev(e).addresses || []).includes(addr)
    || (ev(e).peers || []).includes(addr));
  $("#host-alerts").innerHTML = mine.length
    ? table(["rule", "subject", "at", "what", ""], alertRows(mine.slice().reverse()))
    : `<div class="empty">no alert names it in this range</div>`;
}

// ---- Status -------------------------------------------------------------------

async function status() {
  const s = await api("/api/status");
  const kv = (o) => `<dl class="kv">${Object.entries(o)
    .filter(([, v]) => typeof v !== "object")
    .map(([k, v]) => `<dt>${esc(k.replace(/_ns$/, "").replaceAll("_", " "))}</dt><dd>${statusValue(k, v)}</dd>`)
    .join("")}</dl>`;
  page.append(el(`<div class="grid2">
    <section class="panel"><h2>Collector</h2>${kv(s)}</section>
    <section class="panel"><h2>Store</h2>${kv(s.store)}</section>
  </div>`));
  page.append(el(`<div class="grid2">
    <section class="panel"><h2>Correlator <small>journeys</small></h2>${kv(s.journeys)}</section>
    <section class="panel"><h2>Recent errors</h2>${s.recent_errors.length ? `<pre>${esc(s.recent_errors.join("\n"))}</pre>` : `<div class="empty">none</div>`}</section>
  </div>`));
  page.append(el(`<section class="panel"><h2>Exporters</h2>${exporterTable(s.exporters)}</section>`));
}

// a status figure as a reader wants it: times as times, sizes as sizes,
// counts with separators (the exact figure stays in the tooltip)
function statusValue(key, v) {
  if (typeof v !== "number") return esc(v);
  const exact = `title="${v}"`;
  if (key.endsWith("_ns")) {
    // an epoch is far beyond any duration shown here (1e15 ns is 11 days)
    return v > 1e15 ? `<span ${exact}>${new Date(v / 1e6).toISOString().replace(/\.\d+Z$/, "Z")}</span>` : `<span ${exact}>${ns(v)}</span>`;
  }
  if (key.split("_").includes("bytes")) return `<span ${exact}>${bytes(v)}</span>`;
  if (!Number.isInteger(v)) return v.toFixed(2);
  return v.toLocaleString("en");
}

render();
