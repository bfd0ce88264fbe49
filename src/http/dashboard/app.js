// The rtsd dashboard: a metric list with sparklines and one chart, drawn as
// SVG from rtsd's OpenTSDB HTTP API. The whole view lives in the URL hash
// (#m=…&agg=…&ds=…&start=…&end=…&tag=k=v&refresh=1), so a link reproduces it.
// The chart element carries data-state (loading|ready|nodata|error|empty),
// data-series and data-points, which the browser test reads.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = ["#2f6fdf", "#e0662b", "#2a9d5b", "#c23b7a", "#8a5cd0",
  "#b58b00", "#1b9aaa", "#d1453b", "#5a6b7c", "#7fa32e"];
const PRESETS = ["1h-ago", "6h-ago", "1d-ago", "7d-ago"];
const DEFAULTS = { m: "", agg: "sum", ds: "1m-avg", start: "1h-ago", end: "", refresh: false, tags: {} };
const SPARK_LIMIT = 50;          // sparklines cost one query each
const LOOKUP_LIMIT = 10000;      // series read to fill the tag selects
const REFRESH_MS = 30000;
const CHART_HEIGHT = 340;
const MARGIN = { left: 58, right: 18, top: 14, bottom: 30 };
// Candidate time-axis steps in seconds, smallest first.
const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600,
  7200, 10800, 21600, 43200, 86400, 172800, 604800, 2592000];

const $ = (id) => document.getElementById(id);
let state = readHash();
let metricsShown = [];   // the names in the metric list, in order
let lastResults = null;  // what the chart shows, kept to redraw on resize
let chartSeq = 0;        // drops replies to queries that were superseded
let refreshTimer = null;

// ---------------------------------------------------------------- API

// GETs `path` and returns the parsed JSON; an OpenTSDB error document
// becomes an Error carrying its message and details.
async function api(path) {
  let resp;
  try {
    resp = await fetch(path, { headers: { Accept: "application/json" } });
  } catch (e) {
    throw new Error(`rtsd is unreachable (${e.message})`);
  }
  const text = await resp.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`HTTP ${resp.status}: the reply is not JSON`);
  }
  if (!resp.ok || (body && body.error)) {
    const err = (body && body.error) || {};
    // OpenTSDB puts HTML in some messages ("Missing parameter <code>start</code>").
    const plain = (s) => String(s).replace(/<[^>]*>/g, "");
    const message = err.message ? plain(err.message) : `HTTP ${resp.status}`;
    throw new Error(err.details ? `${message}: ${plain(err.details)}` : message);
  }
  return body;
}

function queryPath(metric, agg, ds, start, end, tags) {
  const filters = Object.entries(tags).map(([k, v]) => `${k}=${v}`).join(",");
  const m = [agg, ds, metric].filter(Boolean).join(":") + (filters ? `{${filters}}` : "");
  const params = new URLSearchParams({ start, m, arrays: "true" });
  if (end) params.set("end", end);
  return `/api/query?${params}`;
}

// ---------------------------------------------------------------- state

function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  const tags = {};
  for (const pair of p.getAll("tag")) {
    const eq = pair.indexOf("=");
    if (eq > 0) tags[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return {
    m: p.get("m") || DEFAULTS.m,
    agg: p.get("agg") || DEFAULTS.agg,
    ds: p.has("ds") ? p.get("ds") : DEFAULTS.ds,
    start: p.get("start") || DEFAULTS.start,
    end: p.get("end") || DEFAULTS.end,
    refresh: p.get("refresh") === "1",
    tags,
  };
}

function hashOf(s) {
  const p = new URLSearchParams();
  if (s.m) p.set("m", s.m);
  p.set("agg", s.agg);
  p.set("ds", s.ds);
  p.set("start", s.start);
  if (s.end) p.set("end", s.end);
  for (const [k, v] of Object.entries(s.tags)) p.append("tag", `${k}=${v}`);
  if (s.refresh) p.set("refresh", "1");
  return `#${p}`;
}

// Changes the view: the hash changes and `apply` follows; an unchanged
// hash (the Refresh button) just reloads the chart.
function update(patch) {
  const next = hashOf({ ...state, ...patch });
  if (next === location.hash) loadChart();
  else location.hash = next;
}

function apply() {
  const previous = state;
  state = readHash();
  syncControls();
  if (state.m !== previous.m || !$("filters").hasChildNodes()) loadFilters();
  loadChart();
  clearInterval(refreshTimer);
  refreshTimer = state.refresh
    ? setInterval(() => { if (!document.hidden) loadChart(); }, REFRESH_MS)
    : null;
}

function syncControls() {
  $("metric-name").textContent = state.m || "Choose a metric";
  const agg = $("aggregator");
  if (![...agg.options].some((o) => o.value === state.agg)) agg.append(new Option(state.agg));
  agg.value = state.agg;
  $("downsample").value = state.ds;
  const preset = !state.end && PRESETS.includes(state.start);
  $("range").value = preset ? state.start : "custom";
  $("custom-range").hidden = preset;
  $("start").value = state.start;
  $("end").value = state.end;
  $("refresh").checked = state.refresh;
  for (const li of $("metric-list").children) {
    li.classList.toggle("selected", li.dataset.metric === state.m);
  }
}

// ---------------------------------------------------------------- metric list

async function loadMetrics() {
  const list = $("metric-list");
  try {
    metricsShown = await api(`/api/suggest?type=metrics&q=&max=1000`);
  } catch (e) {
    list.dataset.state = "error";
    list.replaceChildren(node("li", { class: "message" }, e.message));
    return;
  }
  const observer = "IntersectionObserver" in window
    ? new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        observer.unobserve(entry.target);
        loadSparkline(entry.target);
      }
    }, { root: list })
    : null;
  list.replaceChildren(...metricsShown.map((name, i) => {
    const li = node("li", { "data-metric": name, title: name });
    li.append(node("span", { class: "name" }, name));
    if (i < SPARK_LIMIT) {
      li.append(svg("svg", { class: "spark", viewBox: "0 0 100 24", preserveAspectRatio: "none", "data-state": "pending" }));
      if (observer) observer.observe(li); else loadSparkline(li);
    }
    li.addEventListener("click", () => update({ m: name, tags: {} }));
    return li;
  }));
  list.dataset.state = "ready";
  list.dataset.count = String(metricsShown.length);
  if (!metricsShown.length) list.append(node("li", { class: "message" }, "No metrics yet."));
  if (!state.m && metricsShown.length) {
    // A first visit shows the first metric rather than an empty page.
    history.replaceState(null, "", hashOf({ ...state, m: metricsShown[0] }));
    apply();
  } else {
    syncControls();
  }
}

async function loadSparkline(li) {
  const spark = li.querySelector("svg.spark");
  spark.dataset.state = "loading";
  try {
    const results = await api(queryPath(li.dataset.metric, "sum", "1m-avg", "1h-ago", "", {}));
    const dps = results.length ? points(results[0]) : [];
    spark.dataset.points = String(dps.length);
    if (dps.length) {
      const [t0, t1] = extent(dps.map((p) => p[0]));
      const [v0, v1] = extent(dps.map((p) => p[1]));
      const x = scale(t0, t1, 1, 99);
      const y = scale(v0, v1, 22, 2);
      spark.append(svg("polyline", { points: dps.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ") }));
      spark.append(svg("title", {}, `last hour, last value ${formatValue(dps[dps.length - 1][1])}`));
    }
    spark.dataset.state = dps.length ? "ready" : "nodata";
  } catch (e) {
    spark.dataset.state = "error";
    spark.append(svg("title", {}, e.message));
  }
}

function filterMetrics() {
  const q = $("metric-filter").value.trim().toLowerCase();
  for (const li of $("metric-list").children) {
    if (li.dataset.metric) li.hidden = !li.dataset.metric.toLowerCase().includes(q);
  }
}

// ---------------------------------------------------------------- controls

async function loadAggregators() {
  try {
    const names = await api("/api/aggregators");
    $("aggregator").replaceChildren(...names.sort().map((n) => new Option(n)));
  } catch (e) {
    showError(e.message);
  }
  syncControls();
}

// Builds one select per tag key of the chosen metric: all series
// aggregated (no filter), each value as its own line (`*`), or one value.
async function loadFilters() {
  const box = $("filters");
  box.replaceChildren();
  if (!state.m) return;
  const metric = state.m;
  let results;
  try {
    const reply = await api(`/api/search/lookup?${new URLSearchParams({ m: metric, limit: String(LOOKUP_LIMIT) })}`);
    results = reply.results || [];
  } catch (e) {
    showError(e.message);
    return;
  }
  if (metric !== state.m) return;
  const keys = new Map();
  for (const r of results) {
    for (const [k, v] of Object.entries(r.tags || {})) {
      if (!keys.has(k)) keys.set(k, new Set());
      keys.get(k).add(v);
    }
  }
  for (const k of Object.keys(state.tags)) if (!keys.has(k)) keys.set(k, new Set());
  for (const k of [...keys.keys()].sort()) {
    const select = node("select", { "data-tag": k });
    select.append(new Option("all", ""), new Option("each (group by)", "*"));
    const values = keys.get(k);
    if (state.tags[k] && state.tags[k] !== "*") values.add(state.tags[k]);
    for (const v of [...values].sort()) select.append(new Option(v));
    select.value = state.tags[k] || "";
    select.addEventListener("change", () => {
      const tags = { ...state.tags };
      if (select.value) tags[k] = select.value; else delete tags[k];
      update({ tags });
    });
    const label = node("label", {}, `${k} `);
    label.append(select);
    box.append(label);
  }
}

function bindControls() {
  $("aggregator").addEventListener("change", (e) => update({ agg: e.target.value }));
  $("downsample").addEventListener("change", (e) => update({ ds: e.target.value.trim() }));
  $("range").addEventListener("change", (e) => {
    if (e.target.value === "custom") {
      $("custom-range").hidden = false;
      $("start").focus();
    } else {
      update({ start: e.target.value, end: "" });
    }
  });
  for (const id of ["start", "end"]) {
    $(id).addEventListener("change", () => update({ start: $("start").value.trim() || DEFAULTS.start, end: $("end").value.trim() }));
  }
  $("refresh").addEventListener("change", (e) => update({ refresh: e.target.checked }));
  $("controls").addEventListener("submit", (e) => {
    e.preventDefault();
    update({ ds: $("downsample").value.trim() });
  });
  $("metric-filter").addEventListener("input", filterMetrics);
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (lastResults) drawChart(lastResults); }, 150);
  });
  window.addEventListener("hashchange", apply);
}

// ---------------------------------------------------------------- chart

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function loadChart() {
  const chart = $("chart");
  const seq = ++chartSeq;
  if (!state.m) {
    chart.dataset.state = "empty";
    chart.replaceChildren(node("p", { class: "message" }, "Choose a metric on the left."));
    return;
  }
  chart.dataset.state = "loading";
  let results;
  try {
    results = await api(queryPath(state.m, state.agg, state.ds, state.start, state.end, state.tags));
  } catch (e) {
    if (seq !== chartSeq) return;
    lastResults = null;
    showError(e.message);
    chart.dataset.state = "error";
    chart.replaceChildren();
    $("legend").replaceChildren();
    return;
  }
  if (seq !== chartSeq) return;
  showError("");
  lastResults = results;
  drawChart(results);
}

function drawChart(results) {
  const chart = $("chart");
  const series = results.map((r, i) => ({
    label: seriesLabel(r),
    color: COLORS[i % COLORS.length],
    dps: points(r),
  })).filter((s) => s.dps.length);
  const total = series.reduce((n, s) => n + s.dps.length, 0);
  chart.dataset.series = String(series.length);
  chart.dataset.points = String(total);
  drawLegend(series);
  if (!total) {
    chart.dataset.state = "nodata";
    chart.replaceChildren(node("p", { class: "message" }, "No data points in this range."));
    return;
  }
  const width = Math.max(chart.clientWidth, 320);
  const height = CHART_HEIGHT;
  const left = MARGIN.left, right = width - MARGIN.right;
  const top = MARGIN.top, bottom = height - MARGIN.bottom;
  let [t0, t1] = extent(series.flatMap((s) => s.dps.map((p) => p[0])));
  if (t0 === t1) { t0 -= 30; t1 += 30; }
  const yTicks = valueTicks(...extent(series.flatMap((s) => s.dps.map((p) => p[1]))));
  const x = scale(t0, t1, left, right);
  const y = scale(yTicks[0], yTicks[yTicks.length - 1], bottom, top);

  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  const axes = svg("g", { class: "axes" });
  for (const v of yTicks) {
    axes.append(svg("line", { class: "grid", x1: left, x2: right, y1: y(v), y2: y(v) }));
    axes.append(svg("text", { x: left - 6, y: y(v), class: "ylabel" }, formatValue(v)));
  }
  const timeStep = TIME_STEPS.find((s) => s >= (t1 - t0) / ((right - left) / 110)) || TIME_STEPS[TIME_STEPS.length - 1];
  for (const t of timeTicks(t0, t1, timeStep)) {
    axes.append(svg("line", { class: "tick", x1: x(t), x2: x(t), y1: bottom, y2: bottom + 5 }));
    axes.append(svg("text", { x: x(t), y: bottom + 18, class: "xlabel" }, formatTime(t, timeStep, t1 - t0)));
  }
  axes.append(svg("line", { class: "axis", x1: left, x2: right, y1: bottom, y2: bottom }));
  axes.append(svg("line", { class: "axis", x1: left, x2: left, y1: top, y2: bottom }));
  root.append(axes);
  for (const s of series) {
    s.line = svg("polyline", {
      class: "series",
      stroke: s.color,
      "data-points": s.dps.length,
      points: s.dps.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" "),
    });
    root.append(s.line);
  }
  // The readout is HTML beside the SVG so long labels can wrap.
  chart.replaceChildren(root, addHover(root, series, x, y, { left, right, top, bottom }));
  chart.dataset.state = "ready";
}

// A vertical cursor with a dot per series and a readout of the values
// nearest to the pointer's time; returns the readout element.
function addHover(root, series, x, y, box) {
  const cursor = svg("line", { class: "cursor", y1: box.top, y2: box.bottom, visibility: "hidden" });
  const dots = series.map((s) => svg("circle", { r: 3.5, fill: s.color, visibility: "hidden" }));
  const overlay = svg("rect", { class: "overlay", x: box.left, y: box.top, width: box.right - box.left, height: box.bottom - box.top });
  root.append(cursor, ...dots, overlay);
  const readout = node("div", { class: "readout", hidden: "" });
  const hide = () => {
    readout.hidden = true;
    cursor.setAttribute("visibility", "hidden");
    for (const d of dots) d.setAttribute("visibility", "hidden");
  };
  overlay.addEventListener("pointerleave", hide);
  overlay.addEventListener("pointermove", (e) => {
    const bounds = root.getBoundingClientRect();
    const px = e.clientX - bounds.left;
    const t = x.invert(px);
    const rows = [];
    let shownT = null;
    series.forEach((s, i) => {
      const [pt, pv] = s.dps[nearest(s.dps, t)];
      const visible = !s.line.classList.contains("off");
      dots[i].setAttribute("visibility", visible ? "visible" : "hidden");
      dots[i].setAttribute("cx", x(pt));
      dots[i].setAttribute("cy", y(pv));
      if (!visible) return;
      if (shownT === null || Math.abs(pt - t) < Math.abs(shownT - t)) shownT = pt;
      const row = node("div");
      row.append(swatch(s.color), `${s.label}: `, node("b", {}, formatValue(pv)));
      rows.push(row);
    });
    if (!rows.length) return hide();
    cursor.setAttribute("x1", x(shownT));
    cursor.setAttribute("x2", x(shownT));
    cursor.setAttribute("visibility", "visible");
    readout.replaceChildren(node("div", { class: "time" }, new Date(shownT * 1000).toLocaleString()), ...rows);
    readout.hidden = false;
    const flip = px > (box.left + box.right) / 2;
    readout.style.left = flip ? "" : `${px + 14}px`;
    readout.style.right = flip ? `${bounds.width - px + 14}px` : "";
  });
  return readout;
}

function drawLegend(series) {
  $("legend").replaceChildren(...series.map((s) => {
    const values = s.dps.map((p) => p[1]);
    const [lo, hi] = extent(values);
    const li = node("li", { title: "click to hide or show" });
    li.append(swatch(s.color), node("span", { class: "label" }, s.label),
      node("span", { class: "stats" }, `min ${formatValue(lo)} · max ${formatValue(hi)} · last ${formatValue(values[values.length - 1])}`));
    li.addEventListener("click", () => {
      li.classList.toggle("off");
      if (s.line) s.line.classList.toggle("off");
    });
    return li;
  }));
}

// ---------------------------------------------------------------- helpers

function node(tag, attrs = {}, text) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function swatch(color) {
  const el = node("span", { class: "swatch" });
  el.style.background = color;
  return el;
}

// The finite points of one query result, as [seconds, value] pairs.
function points(result) {
  const dps = Array.isArray(result.dps)
    ? result.dps
    : Object.entries(result.dps || {}).map(([t, v]) => [Number(t), v]);
  return dps.filter(([, v]) => typeof v === "number" && Number.isFinite(v));
}

function seriesLabel(r) {
  const tags = Object.entries(r.tags || {}).map(([k, v]) => `${k}=${v}`).join(", ");
  return tags ? `${r.metric}{${tags}}` : r.metric;
}

function extent(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return [lo, hi];
}

// A linear map from [d0, d1] to [r0, r1], with its inverse.
function scale(d0, d1, r0, r1) {
  const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  const f = (v) => (k ? r0 + (v - d0) * k : (r0 + r1) / 2);
  f.invert = (r) => (k ? d0 + (r - r0) / k : d0);
  return f;
}

// About five round values (1, 2 or 5 times a power of ten apart) that
// enclose [lo, hi].
function valueTicks(lo, hi) {
  if (lo === hi) {
    const pad = Math.abs(lo) * 0.1 || 1;
    lo -= pad; hi += pad;
  }
  const raw = (hi - lo) / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const first = Math.floor(lo / step);
  const last = Math.ceil(hi / step);
  const ticks = [];
  // Multiplying each index avoids the drift of repeated addition.
  for (let i = first; i <= last; i++) ticks.push(Number((i * step).toPrecision(12)));
  return ticks;
}

// Tick times `step` apart, aligned to local time (midnights for day steps).
function timeTicks(t0, t1, step) {
  const offset = -new Date(t0 * 1000).getTimezoneOffset() * 60;
  const ticks = [];
  for (let t = Math.ceil((t0 + offset) / step) * step - offset; t <= t1; t += step) ticks.push(t);
  return ticks;
}

function formatTime(t, step, span) {
  const d = new Date(t * 1000);
  const two = (n) => String(n).padStart(2, "0");
  const day = `${two(d.getMonth() + 1)}-${two(d.getDate())}`;
  const hm = `${two(d.getHours())}:${two(d.getMinutes())}`;
  if (step >= 86400) return day;
  if (step < 60) return `${hm}:${two(d.getSeconds())}`;
  return span > 86400 ? `${day} ${hm}` : hm;
}

function formatValue(v) {
  const abs = Math.abs(v);
  // Thousands stay plain up to 9999, where the digits still fit.
  for (const [limit, unit, suffix] of [[1e12, 1e12, "T"], [1e9, 1e9, "G"], [1e6, 1e6, "M"], [1e4, 1e3, "k"]]) {
    if (abs >= limit) return `${Number((v / unit).toPrecision(4))}${suffix}`;
  }
  return String(Number(v.toPrecision(4)));
}

// Index of the point whose time is closest to `t` (points sorted by time).
function nearest(dps, t) {
  let lo = 0, hi = dps.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (dps[mid][0] < t) lo = mid + 1; else hi = mid;
  }
  return lo > 0 && t - dps[lo - 1][0] < dps[lo][0] - t ? lo - 1 : lo;
}

// ---------------------------------------------------------------- start

async function loadVersion() {
  try {
    const v = await api("/api/version");
    // `version` is the OpenTSDB API level rtsd speaks; a user looks for
    // rtsd's own release here.
    $("version").textContent = `rtsd ${v.rtsd_version} (OpenTSDB API ${v.version})`;
  } catch {
    // The version is decoration; the chart reports real errors.
  }
}

bindControls();
syncControls();
loadVersion();
loadAggregators();
loadMetrics();
if (state.m) apply();
