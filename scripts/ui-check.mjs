// The web UI in a real browser (headless Chromium through playwright-core)
// against a running `hopscope demo --calm`: every page loads without a
// console error, charts hold data, a typed filter changes the results and
// lands in the URL, the journey page puts the demo's loss on the WAN
// link, the security page shows nothing firing, a talker's host page its
// traffic and peers, and the capacity page the demo's links by headroom; or, against a sampled export, that the overview
// shows the traffic scaled back. Screenshots go to the directory given.
//
//   node scripts/ui-check.mjs http://127.0.0.1:8080 target/ui-screenshots
//
// Needs NODE_PATH pointing at a node_modules with playwright-core, and
// CHROMIUM (default /usr/bin/chromium).
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

// ES modules ignore NODE_PATH: resolve playwright-core from there by hand
const require = createRequire(join(process.env.NODE_PATH || process.cwd(), "resolve.js"));
const { chromium } = require("playwright-core");

const base = process.argv[2] || "http://127.0.0.1:8080";
const shots = process.argv[3] || "target/ui-screenshots";
// the demo's lossy segment (hopscope-demo's LOSSY_SEGMENT), either way
const LOSSY = ["branch-fw:wan", "isp-pe:ge-0/0/1"];
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
const problems = [];
page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()}`));

let failed = 0;
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failed++;
}
function noProblems(where) {
  check(problems.length === 0, `${where}: no console errors${problems.length ? ": " + problems.join("; ") : ""}`);
  problems.length = 0;
}

// how many non-zero points a chart's series hold
async function chartPoints(selector) {
  return page.evaluate((sel) => {
    const c = echarts.getInstanceByDom(document.querySelector(sel));
    if (!c) return 0;
    const series = c.getOption().series || [];
    let n = 0;
    for (const s of series) {
      if (s.type === "sankey") n += (s.links || []).length;
      else n += (s.data || []).filter((d) => (Array.isArray(d) ? d[1] : d) > 0).length;
    }
    return n;
  }, selector);
}

async function visit(hash, ready) {
  await page.goto(`${base}/${hash}`, { waitUntil: "networkidle" });
  await page.waitForSelector(ready, { timeout: 20000 });
}

// A sampled export (scripts/ui-browser's second run: pmacctd meters one
// packet in ten and says so in its options): the overview's traffic is the
// scaled figure, the one `hopscope query` gives, and the ground truth
// within the sampling error.
//
//   node scripts/ui-check.mjs URL SHOTS sampled QUERY_BYTES TRUE_BYTES
if (process.argv[4] === "sampled") {
  const [cli, truth] = [Number(process.argv[5]), Number(process.argv[6])];
  await visit("#/overview", "#traffic-total");
  const exact = await page.locator("#traffic-total").getAttribute("title");
  const shown = Number(exact.replace(/[^0-9]/g, ""));
  check(shown === cli, `sampled: the overview's traffic (${exact}) is hopscope query's (${cli} bytes)`);
  const error = Math.abs(shown / truth - 1);
  check(error < 0.15, `sampled: and the true traffic's (${truth} bytes) within the sampling error (${(100 * error).toFixed(1)} %)`);
  const note = await page.locator("#volumes-note").innerText();
  check(
    note.includes("scaled by each record's sampling rate") && note.includes("every flow of known sampling rate"),
    `sampled: the overview says its volumes are scaled ("${note}")`,
  );
  await page.screenshot({ path: `${shots}/sampled-overview.png`, fullPage: true });
  noProblems("sampled overview");
  await browser.close();
  console.log(failed ? `ui-check (sampled): ${failed} failed` : "ui-check (sampled): all passed");
  process.exit(failed ? 1 : 0);
}

// Overview: traffic and flow-rate charts with data, talkers, exporters
await visit("#/overview", "#exporters table");
await page.waitForFunction(() => document.querySelector("#traffic canvas"));
check((await chartPoints("#traffic")) > 0, "overview: the traffic chart has data");
check((await chartPoints("#flowrate")) > 0, "overview: the flow-rate chart has data");
check((await page.locator("#talkers tbody tr").count()) > 0, "overview: top talkers listed");
// the overview says which volumes it shows, as the API answered them
const note = await page.locator("#volumes-note").innerText();
const volumes = await page.evaluate(async () => {
  const r = await fetch(`/api/timeseries?since=${document.querySelector("#range").value}&aggregate=bps`);
  return (await r.json()).volumes;
});
check(
  volumes && volumes.mode === "scaled" && note.includes(volumes.describe),
  `overview: the volumes are said to be scaled by sampling ("${note}")`,
);
check(
  volumes.unknown_rate_flows === 0 && note.includes("every flow of known sampling rate"),
  "overview: every demo flow has a known rate (the probes announce 1:1)",
);
check(
  volumes.counting === "once" && volumes.internal_records_left_out > 0 && note.includes("counted once"),
  "overview: traffic is counted once, at the demo's boundary point, the records of inside points left out",
);
const exporterRows = await page.locator("#exporters tbody tr").count();
check(exporterRows >= 5, `overview: exporters listed (${exporterRows} sessions)`);
await page.screenshot({ path: `${shots}/overview.png`, fullPage: true });
noProblems("overview");

// Explorer: a typed filter changes the results and is kept in the URL
await visit("#/explorer?group_by=dst_port&aggregate=bytes", "#groups table");
check((await chartPoints("#series")) > 0, "explorer: the time series has data");
check((await chartPoints("#sankey")) > 0, "explorer: the Sankey has links");
const before = await page.locator("#groups tr.total td").nth(1).innerText();
await page.locator("input[name=filter]").fill("");
await page.locator("input[name=filter]").pressSequentially("proto udp and dst port 53");
await page.locator("input[name=filter]").press("Enter");
await page.waitForFunction((b) => {
  const cell = document.querySelectorAll("#groups tr.total td")[1];
  return cell && cell.innerText !== b;
}, before, { timeout: 20000 });
const after = await page.locator("#groups tr.total td").nth(1).innerText();
check(after !== before, `explorer: the filter changed the total (${before} -> ${after})`);
const keys = await page.locator("#groups tbody tr:not(.total) td:first-child").allInnerTexts();
check(keys.length > 0 && keys.every((k) => k === "53"), `explorer: only port 53 is left (${keys.join(", ")})`);
check(decodeURIComponent(page.url()).includes("filter=proto udp and dst port 53".replaceAll(" ", "+")) ||
  decodeURIComponent(page.url().replaceAll("+", " ")).includes("filter=proto udp and dst port 53"),
  "explorer: the filter is in the URL");
await page.locator("input[name=filter]").fill("");
await page.locator("input[name=filter]").pressSequentially("proto tcp");
await page.locator("input[name=filter]").press("Enter");
await page.waitForFunction((a) => {
  const cell = document.querySelectorAll("#groups tr.total td")[1];
  return cell && cell.innerText !== a;
}, after, { timeout: 20000 });
// completion in the group-by box offers field names, never filter words
await page.locator("input[name=group_by]").fill("");
await page.locator("input[name=group_by]").pressSequentially("dst_");
const offered = await page.locator("#groupable option").evaluateAll((os) => os.map((o) => o.value));
check(
  offered.length > 0 && offered.every((v) => v.startsWith("dst_") && !v.includes(" ")),
  `explorer: group-by completion offers fields only (${offered.slice(0, 4).join(", ")}...)`,
);
// re-run grouped by exporter: the chart holds the exporters' series only,
// not the ports of the run before (a merged chart kept them)
await page.locator("input[name=group_by]").fill("exporter_name");
await page.locator("input[name=group_by]").press("Enter");
await page.waitForFunction(() => (document.querySelector("#series-note")?.textContent || "").includes("by exporter_name"), null, { timeout: 20000 });
const exporters = await page.evaluate(async () => {
  const r = await fetch(`/api/timeseries?since=${document.querySelector("#range").value}&aggregate=bytes&group_by=exporter_name&top=10&filter=proto+tcp`);
  return (await r.json()).series.map((s) => s.key);
});
const legend = await page.evaluate(() => (echarts.getInstanceByDom(document.querySelector("#series")).getOption().series || []).map((s) => s.name));
check(
  legend.length === exporters.length && legend.every((n) => exporters.includes(n)),
  `explorer: after a re-run the chart's series are the new ones (${legend.join(", ")})`,
);
await page.screenshot({ path: `${shots}/explorer.png`, fullPage: true });
noProblems("explorer");

// Journeys: the pooled segments put the loss on the WAN link
await visit("#/journeys", "#segments table");
const worst = await page.locator("#segments tbody tr").first().locator("td").first().innerText();
check(LOSSY.every((p) => worst.includes(p)), `journeys: the most lossy segment is the WAN link (${worst})`);
check((await page.locator("#jlist tr[data-id]").count()) > 0, "journeys: journeys listed");
// the page's own example filter: journeys through a node, whichever interface
const example = await page.locator("#jform input[name=filter]").getAttribute("placeholder");
await page.locator("#jform input[name=filter]").fill(example);
await page.locator("#jform input[name=filter]").press("Enter");
await page.waitForFunction(() => decodeURIComponent(location.hash).includes("isp-pe"), null, { timeout: 20000 });
await page.waitForFunction(() => document.querySelector("#hint")?.textContent || document.querySelector("#jlist table, #jlist .empty"), null, { timeout: 20000 });
const hint = (await page.locator("#hint").innerText()).trim();
const through = await page.locator("#jlist tr[data-id]").count();
check(hint === "" && through > 0, `journeys: the example filter (${example}) is taken and lists journeys (${through}${hint ? "; " + hint : ""})`);
await page.screenshot({ path: `${shots}/journeys.png`, fullPage: true });
noProblems("journeys");

// One journey, the most lossy: its lossy segment is the WAN link
await page.locator("#jlist tr[data-id]").first().click();
await page.waitForSelector("#path .hop", { timeout: 20000 });
const hops = await page.locator("#path .hop").count();
check(hops >= 5, `journey: ${hops} hops drawn`);
const lossy = await page.locator("#path .seg.lossy").evaluateAll((els) => els.map((e) => [e.dataset.from, e.dataset.to]));
check(lossy.length > 0 && lossy.every(([a, b]) => LOSSY.includes(a) && LOSSY.includes(b)),
  `journey: the loss is on the WAN link (${JSON.stringify(lossy)})`);
await page.screenshot({ path: `${shots}/journey.png`, fullPage: true });
noProblems("journey");

// Security: the calm demo raises nothing; the page says so, and lists
// no offender
await visit("#/security", "#kpis .kpi");
await page.waitForSelector("#firing .empty, #firing table", { timeout: 20000 });
const firing = await page.locator("#firing").innerText();
check(firing.startsWith("nothing firing"), `security: nothing firing in the calm demo (${firing.slice(0, 80)})`);
check((await page.locator("#offenders tbody tr").count()) === 0, "security: no offenders");
check((await page.locator("#kpis .kpi").count()) === 5, "security: the figures are shown");
await page.screenshot({ path: `${shots}/security.png`, fullPage: true });
noProblems("security");

// Host: the busiest talker's page, reached from the overview, shows its
// traffic and its peers
await visit("#/overview", "#talkers table");
const talker = await page.locator("#talkers tbody tr").first().locator("td a").first();
const talkerAddr = await talker.innerText();
await talker.click();
await page.waitForSelector("#peers table", { timeout: 20000 });
check(decodeURIComponent(page.url()).endsWith(`#/host/${talkerAddr}`), `host: the talker's page (${talkerAddr})`);
await page.waitForFunction(() => document.querySelector("#host-series canvas"));
check((await chartPoints("#host-series")) > 0, "host: its traffic chart has data");
check((await page.locator("#peers tbody tr").count()) > 0, "host: its peers are listed");
await page.screenshot({ path: `${shots}/host.png`, fullPage: true });
noProblems("host");

// Capacity: every demo interface is a link with its configured speed; the
// provider's 25 Mb/s access link is the fullest; the core's ECMP pair is
// billed as a group; a link's page charts its samples with its percentile
await visit("#/capacity?since=15m", "#links table");
const linkRows = await page.locator("#links tbody tr[data-port]").count();
check(linkRows === 7, `capacity: the demo's seven interfaces are links (${linkRows})`);
const fullest = await page.locator("#links tbody tr[data-port]").first().locator("td").first().innerText();
check(LOSSY.some((p) => fullest.includes(p)), `capacity: the fullest link is the 25 Mb/s access link (${fullest})`);
check((await page.locator("#groups tbody tr").first().innerText()).includes("core ECMP pair"), "capacity: the core's ECMP pair is billed as one");
await page.screenshot({ path: `${shots}/capacity.png`, fullPage: true });
noProblems("capacity");
await page.locator("#links tbody tr[data-port]").first().click();
await page.waitForSelector("#samples canvas", { timeout: 20000 });
check((await chartPoints("#samples")) > 0, "capacity link: its samples are charted");
const facts = await page.locator("dl.kv").innerText();
check(/25(\.0)?Mb\/s/.test(facts) && facts.includes("configured"), `capacity link: its speed, as configured (${facts.split("\n").slice(0, 2).join(" ")})`);
await page.screenshot({ path: `${shots}/capacity-link.png`, fullPage: true });
noProblems("capacity link");

// Status
await visit("#/status", "dl.kv");
check((await page.locator("main table tbody tr").count()) >= 5, "status: exporters listed");
const figures = await page.locator("dl.kv").allInnerTexts();
const raw = figures.join("\n").match(/\d{13,}/g) || [];
check(raw.length === 0, `status: times and sizes are readable, not raw epochs or byte counts (${raw.slice(0, 3).join(", ")})`);
await page.screenshot({ path: `${shots}/status.png`, fullPage: true });
noProblems("status");

await browser.close();
console.log(failed ? `ui-check: ${failed} failed` : "ui-check: all passed");
process.exit(failed ? 1 : 0);
