// The evlog viewer page: polls /api/events, keeps the newest events, filters and shows them.
// Plain JavaScript, no build step. Event data is only ever put in the page as text (textContent), never as HTML.
"use strict";

const LEVELS = ["debug", "info", "warning", "error", "critical"];
const KEEP = 5000;        // events kept in the browser (the newest)
const MAX_ROWS = 500;     // rows drawn at once (the newest that match the filters)
const POLL_MS = 250;      // pause between polls when caught up
const CHART_SECONDS = 300;

const state = { events: [], last: 0, paused: false, selected: null, dirty: false,
                buckets: new Map(), categories: new Set(), names: new Set(), seen: 0, missed: 0 };
const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

// ---- receiving ----------------------------------------------------------------------------------------
function receive(event) {
  const level = LEVELS.includes(event.level) ? event.level : "info";
  event._rank = LEVELS.indexOf(level);
  event._text = JSON.stringify(event).toLowerCase();
  event._user = event.user ? (event.user.id || event.user.email || event.user.username || "") : "";
  state.events.push(event);
  state.seen += 1;
  if (event.category) state.categories.add(event.category);
  state.names.add(event.name);
  const second = Math.floor(Date.parse(event.timestamp) / 1000);
  if (!Number.isNaN(second)) {
    const counts = state.buckets.get(second) || [0, 0, 0, 0, 0];
    counts[event._rank] += 1;
    state.buckets.set(second, counts);
  }
}

async function poll() {
  let again = POLL_MS;
  if (!state.paused) {
    try {
      const response = await fetch(`/api/events?after=${state.last}`, { cache: "no-store" });
      const page = await response.json();
      if (page.last < state.last) state.events = [];  // the viewer restarted
      page.events.forEach(receive);
      state.missed += page.missed;  // the server's ring forgot them before this page asked
      if (state.events.length > KEEP) state.events.splice(0, state.events.length - KEEP);
      state.last = page.last;
      renderProcesses(page.processes);
      if (page.events.length) { state.dirty = true; again = 0; }
      $("status").textContent = "live"; $("status").className = "status live";
    } catch (error) {
      $("status").textContent = "viewer not reachable"; $("status").className = "status down";
      again = 2000;
    }
  }
  setTimeout(poll, again);
}

// ---- the table ----------------------------------------------------------------------------------------
function filters() {
  return { level: $("filter-level").value, category: $("filter-category").value.trim().toLowerCase(),
           name: $("filter-name").value.trim().toLowerCase(), text: $("filter-text").value.trim().toLowerCase() };
}

function matches(event, f) {
  if (f.level && event._rank < LEVELS.indexOf(f.level)) return false;
  if (f.category && !(event.category || "").toLowerCase().includes(f.category)) return false;
  if (f.name && !event.name.toLowerCase().includes(f.name)) return false;
  return !f.text || event._text.includes(f.text);
}

function timeOf(event) {
  const t = event.timestamp || "";
  return t.length > 23 ? t.slice(11, 23) : t;
}

function row(event) {
  const tr = el("tr");
  tr.dataset.seq = event.seq;
  if (state.selected === event.seq) tr.className = "selected";
  tr.append(el("td", timeOf(event)), el("td", event.level, `level level-${event.level}`),
            el("td", event.category || ""), el("td", event.name), el("td", event.message || "", "msg"),
            el("td", event._user));
  return tr;
}

function renderTable() {
  const f = filters();
  const shown = [];
  let total = 0;
  for (let i = state.events.length - 1; i >= 0; i--) {
    if (!matches(state.events[i], f)) continue;
    total += 1;
    if (shown.length < MAX_ROWS) shown.push(row(state.events[i]));
  }
  $("events").tBodies[0].replaceChildren(...shown);
  $("shown").textContent = `${total} matching of ${state.events.length} kept` +
    (total > MAX_ROWS ? ` (the newest ${MAX_ROWS} shown)` : "");
  $("count").textContent = `${state.seen} events received` +
    (state.missed ? ` (${state.missed} more passed while this page was away)` : "");
  fillList("categories", state.categories);
  fillList("names", state.names);
}

function fillList(id, values) {
  const list = $(id);
  if (list.children.length === values.size) return;
  list.replaceChildren(...[...values].sort().map((v) => { const o = el("option"); o.value = v; return o; }));
}

// ---- the detail pane ----------------------------------------------------------------------------------
function json(value) { return el("pre", JSON.stringify(value, null, 2)); }

function exceptionBlock(info, title) {
  const box = el("div", null, "exception");
  box.append(el("h2", title), el("pre", `${info.exception_type}: ${info.exception_msg || ""}`));
  if (info.stacktrace && info.stacktrace.length) box.append(el("pre", info.stacktrace.join("\n"), "stack"));
  if (info.cause) box.append(exceptionBlock(info.cause, "Caused by"));
  if (info.context) box.append(exceptionBlock(info.context, "While handling"));
  (info.exceptions || []).forEach((sub, i) => box.append(exceptionBlock(sub, `Group member ${i + 1}`)));
  return box;
}

function showDetail(event) {
  const pane = $("detail");
  const facts = el("dl");
  const fields = [["Time", event.timestamp], ["Level", event.level], ["Name", event.name],
    ["Category", event.category], ["Message", event.message], ["Labels", (event.labels || []).join(", ")],
    ["Value", event.value], ["Session", event.session_id], ["Event id", event.event_id], ["From", event.source],
    ["Trace", event.trace ? `${event.trace.trace_id} / ${event.trace.span_id}` : null]];
  for (const [label, value] of fields) {
    if (value === undefined || value === null || value === "") continue;
    facts.append(el("dt", label), el("dd", value));
  }
  pane.replaceChildren(facts, el("h2", "Data"), json(event.data || {}));
  if (event.user) pane.append(el("h2", "User"), json(event.user));
  if (event.exception) pane.append(exceptionBlock(event.exception, "Exception"));
}

function select(seq) {
  state.selected = seq;
  const event = state.events.find((e) => e.seq === seq);
  if (event) showDetail(event);
  for (const tr of $("events").tBodies[0].rows) tr.classList.toggle("selected", Number(tr.dataset.seq) === seq);
}

// ---- counters -----------------------------------------------------------------------------------------
function renderProcesses(processes) {
  if (!processes.length) return;
  const table = el("table");
  const head = el("tr");
  ["Process", "Received", "Exporter", "Sent", "Queued", "Dropped"].forEach((h) => head.append(el("th", h)));
  table.append(head);
  for (const p of processes) {
    const exporters = Object.entries(p.stats || {});
    if (!exporters.length) exporters.push(["(no counters)", {}]);
    for (const [name, s] of exporters) {
      const dropped = Object.entries(s.dropped || {}).map(([reason, n]) => `${reason}: ${n}`).join(", ");
      const tr = el("tr");
      tr.append(el("td", p.source), el("td", p.received), el("td", name), el("td", s.sent ?? ""), el("td", s.queued ?? ""),
                el("td", dropped || "0"));
      table.append(tr);
    }
  }
  $("processes").replaceChildren(table);
}

// ---- the chart (uPlot, vendored in static/) -----------------------------------------------------------
const COLOURS = { debug: "#9ca3af", info: "#0369a1", warning: "#d97706", error: "#dc2626", critical: "#7f1d1d" };
let chart = null;

function chartData() {
  const now = Math.floor(Date.now() / 1000);
  const xs = [];
  const series = LEVELS.map(() => []);
  for (let t = now - CHART_SECONDS; t <= now; t++) {
    xs.push(t);
    const counts = state.buckets.get(t) || [0, 0, 0, 0, 0];
    counts.forEach((n, i) => series[i].push(n));
  }
  for (const t of state.buckets.keys()) if (t < now - CHART_SECONDS) state.buckets.delete(t);
  return [xs, ...series];
}

function renderChart() {
  const box = $("chart");
  if (typeof uPlot === "undefined") return;
  const width = Math.max(200, box.parentElement.clientWidth);
  if (chart === null) {
    chart = new uPlot({
      width, height: 180, legend: { live: false },
      scales: { y: { range: (u, min, max) => [0, Math.max(5, max)] } },
      axes: [{}, { label: "events/s" }],
      series: [{}, ...LEVELS.map((level) => ({ label: level, stroke: COLOURS[level], width: 1.5 }))],
    }, chartData(), box);
  } else {
    if (chart.width !== width) chart.setSize({ width, height: 180 });
    chart.setData(chartData());
  }
}

// ---- wiring -------------------------------------------------------------------------------------------
function frame() {
  if (state.dirty) { state.dirty = false; renderTable(); renderChart(); }
  setTimeout(() => requestAnimationFrame(frame), 150);
}

function init() {
  for (const id of ["filter-level", "filter-category", "filter-name", "filter-text"]) {
    $(id).addEventListener("input", renderTable);
  }
  $("events").tBodies[0].addEventListener("click", (e) => {
    const tr = e.target.closest("tr");
    if (tr) select(Number(tr.dataset.seq));
  });
  $("pause").addEventListener("click", () => {
    state.paused = !state.paused;
    $("pause").textContent = state.paused ? "Resume" : "Pause";
  });
  $("clear").addEventListener("click", () => {
    state.events = []; state.selected = null; state.dirty = true;
    $("detail").replaceChildren(el("p", "Click an event to see its data, user, labels and exception.", "hint"));
  });
  renderChart();
  setInterval(renderChart, 1000);
  requestAnimationFrame(frame);
  poll();
}

init();
