#include "status_page.hpp"

namespace pubsubx::http {

namespace {

// Elements the tests read carry ids: v-<figure> for the figures, chart-messages and
// chart-bytes (data-points: how many points they draw) for the charts.
constexpr std::string_view kPage = R"html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>PubSubX status</title>
<style>
  :root {
    --bg: #f4f6f9; --card: #ffffff; --ink: #1c2430; --muted: #6b7688; --line: #e3e7ee;
    --in: #2f6fdb; --out: #17a673; --warn: #d9822b; --bad: #d64545; --head: #18202c;
  }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--ink);
         font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
  header { background: var(--head); color: #fff; padding: 14px 28px; display: flex;
           align-items: center; gap: 18px; }
  header h1 { font-size: 19px; margin: 0; font-weight: 600; letter-spacing: .3px; }
  header h1 span { color: #7fb0ff; }
  header .meta { color: #aab4c4; font-size: 13px; }
  header .meta b { color: #fff; font-weight: 500; }
  #v-status { margin-left: auto; font-size: 13px; padding: 3px 10px; border-radius: 12px;
              background: #2a3444; color: #aab4c4; }
  #v-status.live { background: #16402f; color: #6ee3ad; }
  #v-status.down { background: #4a1f22; color: #ff9b9b; }
  main { padding: 22px 28px; max-width: 1280px; margin: 0 auto; }
  .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 14px; }
  .card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
          padding: 12px 16px; box-shadow: 0 1px 2px rgba(20, 30, 50, .04); }
  .card .label { color: var(--muted); font-size: 12px; text-transform: uppercase;
                 letter-spacing: .6px; }
  .card .value { font-size: 26px; font-weight: 600; margin-top: 2px;
                 font-variant-numeric: tabular-nums; white-space: nowrap; }
  .card .sub { color: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums; }
  .card.in .value { color: var(--in); }
  .card.out .value { color: var(--out); }
  .card.warn .value { color: var(--warn); }
  .charts { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; margin-top: 18px; }
  @media (max-width: 900px) { .charts { grid-template-columns: 1fr; } }
  .chart h2 { font-size: 14px; margin: 0 0 8px; font-weight: 600; display: flex; gap: 14px; }
  .chart h2 .key { font-weight: 400; color: var(--muted); font-size: 12px; }
  .chart h2 .key i { display: inline-block; width: 10px; height: 3px; vertical-align: middle;
                     margin-right: 5px; border-radius: 2px; }
  .chart canvas { width: 100%; height: 220px; display: block; }
  footer { color: var(--muted); font-size: 12px; margin-top: 16px; }
  footer a { color: var(--muted); }
</style>
</head>
<body>
<header>
  <h1>Pub<span>Sub</span>X</h1>
  <div class="meta">version <b id="v-version">&hellip;</b> &middot; up <b id="v-uptime">&hellip;</b></div>
  <div id="v-status">connecting&hellip;</div>
</header>
<main>
  <div class="grid">
    <div class="card in"><div class="label">Messages in</div>
      <div class="value"><span id="v-msgs-in">&ndash;</span><small>/s</small></div>
      <div class="sub"><span id="v-msgs-in-total">&ndash;</span> total</div></div>
    <div class="card out"><div class="label">Messages out</div>
      <div class="value"><span id="v-msgs-out">&ndash;</span><small>/s</small></div>
      <div class="sub"><span id="v-msgs-out-total">&ndash;</span> total</div></div>
    <div class="card in"><div class="label">Bytes in</div>
      <div class="value"><span id="v-bytes-in">&ndash;</span><small>/s</small></div>
      <div class="sub"><span id="v-bytes-in-total">&ndash;</span> total</div></div>
    <div class="card out"><div class="label">Bytes out</div>
      <div class="value"><span id="v-bytes-out">&ndash;</span><small>/s</small></div>
      <div class="sub"><span id="v-bytes-out-total">&ndash;</span> total</div></div>
    <div class="card"><div class="label">Connections</div>
      <div class="value" id="v-connections">&ndash;</div>
      <div class="sub">open sockets</div></div>
    <div class="card"><div class="label">Clients</div>
      <div class="value" id="v-clients">&ndash;</div>
      <div class="sub">connected</div></div>
    <div class="card"><div class="label">Lost clients</div>
      <div class="value" id="v-lost">&ndash;</div>
      <div class="sub">kept for reconnection</div></div>
    <div class="card"><div class="label">Topics</div>
      <div class="value" id="v-topics">&ndash;</div>
      <div class="sub">with subscribers</div></div>
    <div class="card"><div class="label">Subscriptions</div>
      <div class="value" id="v-subscriptions">&ndash;</div>
      <div class="sub">connected and lost</div></div>
    <div class="card"><div class="label">Queued</div>
      <div class="value" id="v-queued">&ndash;</div>
      <div class="sub">bytes for all clients</div></div>
    <div class="card warn"><div class="label">Dropped</div>
      <div class="value" id="v-dropped">&ndash;</div>
      <div class="sub">messages never delivered</div></div>
    <div class="card"><div class="label">Uptime</div>
      <div class="value" id="v-uptime-card">&ndash;</div>
      <div class="sub">since <span id="v-started">&ndash;</span></div></div>
  </div>
  <div class="charts">
    <div class="card chart">
      <h2>Messages per second
        <span class="key"><i style="background:var(--in)"></i>in</span>
        <span class="key"><i style="background:var(--out)"></i>out</span></h2>
      <canvas id="chart-messages" data-points="0"></canvas>
    </div>
    <div class="card chart">
      <h2>Bytes per second
        <span class="key"><i style="background:var(--in)"></i>in</span>
        <span class="key"><i style="background:var(--out)"></i>out</span></h2>
      <canvas id="chart-bytes" data-points="0"></canvas>
    </div>
  </div>
  <footer>Updated every second from <a href="/status.json">/status.json</a>;
    up to the last 10 minutes. Prometheus: <a href="/metrics">/metrics</a>.
    <span id="v-updated"></span></footer>
</main>
<script>
"use strict";
const WINDOW_SECONDS = 600;
const css = getComputedStyle(document.documentElement);
const colour = name => css.getPropertyValue(name).trim();
const $ = id => document.getElementById(id);

function count(n) { return Math.round(n).toLocaleString("en-US"); }
function rate(n) {
  if (n >= 1e6) return (n / 1e6).toFixed(2) + " M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + " k";
  return n >= 100 || n === 0 ? count(n) : n.toFixed(1);
}
function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? Math.round(n) : n.toFixed(n >= 100 ? 0 : 1)) + " " + units[i];
}
function duration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600),
        m = Math.floor(s % 3600 / 60), r = s % 60;
  if (d) return d + " d " + h + " h";
  if (h) return h + " h " + m + " min";
  if (m) return m + " min " + r + " s";
  return r + " s";
}
function niceMax(v, base) {
  if (v <= 0) return 1;
  if (base) {  // bytes: a round number of KiB, MiB, ...
    let scale = 1;
    while (v / scale >= 1000) scale *= base;
    return niceMax(v / scale) * scale;
  }
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const f of [1, 2, 2.5, 5, 10]) if (f * p >= v) return f * p;
  return 10 * p;
}

// One chart: two series (in, out) against the uptime, over the last WINDOW_SECONDS (or
// since the first point, when the broker or the page is younger; at least a minute).
function draw(canvas, points, inIndex, outIndex, label, base) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = width * ratio; canvas.height = height * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, width, height);
  const left = 62, right = 10, top = 8, bottom = 24;
  const w = width - left - right, h = height - top - bottom;
  const end = points.length ? points[points.length - 1][0] : 0;
  const span = Math.min(WINDOW_SECONDS, Math.max(60, points.length ? end - points[0][0] : 0));
  const start = end - span;
  const shown = points.filter(p => p[0] >= start);
  let peak = 0;
  for (const p of shown) peak = Math.max(peak, p[inIndex], p[outIndex]);
  const max = niceMax(peak * 1.1, base);
  const x = t => left + (t - start) / span * w;
  const y = v => top + h - v / max * h;
  g.font = "11px system-ui, sans-serif";
  g.lineWidth = 1;
  g.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const v = max * i / 4, yy = Math.round(y(v)) + .5;
    g.strokeStyle = colour("--line");
    g.beginPath(); g.moveTo(left, yy); g.lineTo(left + w, yy); g.stroke();
    g.fillStyle = colour("--muted"); g.textAlign = "right";
    g.fillText(label(v), left - 8, yy);
  }
  g.textAlign = "center"; g.textBaseline = "top";
  for (let i = 5; i >= 0; i--) {
    const ago = span * i / 5;
    const text = i === 0 ? "now" : ago >= 120 ? "-" + (ago / 60).toFixed(ago % 60 ? 1 : 0) + " min"
                                             : "-" + Math.round(ago) + " s";
    g.fillText(text, Math.min(x(end - ago), left + w - 14), top + h + 7);
  }
  for (const [index, name] of [[inIndex, "--in"], [outIndex, "--out"]]) {
    if (shown.length < 1) break;
    g.strokeStyle = colour(name); g.lineWidth = 2; g.lineJoin = "round";
    g.beginPath();
    shown.forEach((p, i) => i ? g.lineTo(x(p[0]), y(p[index])) : g.moveTo(x(p[0]), y(p[index])));
    g.stroke();
    g.globalAlpha = .08; g.fillStyle = colour(name);
    g.lineTo(x(shown[shown.length - 1][0]), y(0)); g.lineTo(x(shown[0][0]), y(0));
    g.closePath(); g.fill(); g.globalAlpha = 1;
  }
  canvas.dataset.points = shown.length;
}

let last = null;
function render(s) {
  last = s;
  $("v-version").textContent = s.version;
  $("v-uptime").textContent = duration(s.uptime_seconds);
  $("v-uptime-card").textContent = duration(s.uptime_seconds);
  $("v-started").textContent = new Date(s.start_time_seconds * 1000).toLocaleString("en-GB");
  $("v-msgs-in").textContent = rate(s.messages_in_per_second);
  $("v-msgs-out").textContent = rate(s.messages_out_per_second);
  $("v-bytes-in").textContent = bytes(s.bytes_in_per_second);
  $("v-bytes-out").textContent = bytes(s.bytes_out_per_second);
  $("v-msgs-in-total").textContent = count(s.messages_in);
  $("v-msgs-out-total").textContent = count(s.messages_out);
  $("v-bytes-in-total").textContent = bytes(s.bytes_in);
  $("v-bytes-out-total").textContent = bytes(s.bytes_out);
  $("v-connections").textContent = count(s.connections);
  $("v-clients").textContent = count(s.clients);
  $("v-lost").textContent = count(s.lost_clients);
  $("v-topics").textContent = count(s.topics);
  $("v-subscriptions").textContent = count(s.subscriptions);
  $("v-queued").textContent = bytes(s.queued_bytes);
  $("v-dropped").textContent = count(s.dropped);
  draw($("chart-messages"), s.rates, 1, 2, rate);
  draw($("chart-bytes"), s.rates, 3, 4, v => bytes(v), 1024);
}

function status(text, cls) {
  const e = $("v-status");
  e.textContent = text; e.className = cls;
}

async function poll() {
  try {
    const response = await fetch("/status.json", {cache: "no-store"});
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
    status("live", "live");
    $("v-updated").textContent = "Last update " + new Date().toLocaleTimeString("en-GB") + ".";
  } catch (e) {
    status("no answer (" + e.message + ")", "down");
  }
  setTimeout(poll, 1000);
}
window.addEventListener("resize", () => { if (last) render(last); });
poll();
</script>
</body>
</html>
)html";

}  // namespace

std::string_view status_page_html() {
    return kPage;
}

}  // namespace pubsubx::http
