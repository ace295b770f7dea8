// The dashboard page: one EventSource; a "snapshot" event (on every (re)connection) builds the picture,
// the charts and the journal; each "update" event (every 500 ms) changes them. No framework: the DOM is
// small and the tests read it.
"use strict";

const HISTORY_S = 300;
const SERVER_COLOURS = ["#0969da", "#1a7f37", "#bf8700", "#8250df", "#cf222e", "#1b7c83", "#6e7781"];
const state = { layout: null, series: [], markers: [], charts: {}, lastUpdate: 0, windowS: 60 };
const csrf = document.querySelector('meta[name="csrf-token"]').content;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// --- the topology as a picture ------------------------------------------------------------------------
function nodeBox(name, role, detail) {
  const box = el("div", { class: "node", "data-node": name, "data-role": role },
    el("div", { class: "title" }, el("span", {}, name), el("span", { class: "condition" }, "…")),
    el("div", { class: "facts" }, `${detail} · `, el("span", { class: "state" }, "?"),
      " · HAProxy ", el("span", { class: "health" }, "-"),
      " · ", el("span", { class: "nowrap" }, el("span", { class: "sessions" }, "-"), " sess"),
      " · ", el("span", { class: "nowrap" }, el("span", { class: "rps" }, "-"), " req/s")),
    el("div", { class: "serving-for" }));
  if (window.RELEVO.actions && role !== "controller") {
    const buttons = el("div", { class: "buttons" });
    for (const action of window.RELEVO.names) {
      if (role === "balancer" && ["drain", "maintenance", "ready"].includes(action)) continue;
      const button = el("button", { type: "button", "data-action": action }, action);
      button.addEventListener("click", () => act(name, action));
      buttons.append(button);
    }
    box.append(buttons);
  }
  return box;
}

function drawTopology(layout) {
  const root = document.getElementById("topology");
  root.replaceChildren();
  const front = el("div", { class: "column" });
  if (layout.vip) front.append(el("div", { class: "link" }, `VIP ${layout.vip}`));
  for (const b of layout.balancers) {
    front.append(nodeBox(b.name, "balancer", `balancer · ${b.provider}`));
  }
  const controller = el("div", { class: "node", "data-node": "controller", "data-role": "controller" },
    el("div", { class: "title" }, el("span", {}, "controller"), el("span", { class: "condition" }, "…")),
    el("div", { class: "facts" }, el("span", { class: "state" }, "?")));
  front.append(controller);
  root.append(front);
  const standbys = layout.nodes.filter((n) => n.role === "standby");
  const paired = new Set();
  for (const primary of layout.nodes.filter((n) => n.role === "web")) {
    const column = el("div", { class: "column" }, nodeBox(primary.name, "web", `primary · ${primary.address}`));
    for (const standby of standbys.filter((s) => s.standby_for === primary.name)) {
      paired.add(standby.name);
      column.append(el("div", { class: "link" }, `↓ standby for ${primary.name}`));
      column.append(nodeBox(standby.name, "standby", `standby · ${standby.address}`));
    }
    root.append(column);
  }
  const rest = standbys.filter((s) => !paired.has(s.name));
  if (rest.length) {
    root.append(el("div", { class: "column" }, ...rest.map((s) => nodeBox(s.name, "standby", `standby · ${s.address}`))));
  }
}

function updateNodes(nodes, controller) {
  for (const [name, view] of Object.entries(nodes || {})) {
    const box = document.querySelector(`.node[data-node="${CSS.escape(name)}"]`);
    if (!box) continue;
    box.dataset.condition = view.condition;
    box.querySelector(".condition").textContent = view.condition;
    box.querySelector(".state").textContent = view.state;
    box.querySelector(".health").textContent = view.health ?? view.haproxy ?? "-";
    box.querySelector(".sessions").textContent = view.sessions ?? "-";
    box.querySelector(".rps").textContent = view.rps == null ? "-" : Math.round(view.rps);
    box.querySelector(".serving-for").textContent = view.serving_for ? `serving in place of ${view.serving_for}` : "";
  }
  const box = document.querySelector('.node[data-node="controller"]');
  if (box && controller) {
    const condition = controller.running ? (controller.ticking ? "serving" : "hung") : "down";
    box.dataset.condition = condition;
    box.querySelector(".condition").textContent = controller.running ? (controller.ticking ? "running" : "not ticking") : "not running";
    box.querySelector(".state").textContent = controller.pid ? `pid ${controller.pid}` : "no process";
  }
}

// --- charts --------------------------------------------------------------------------------------------
// Each chart's series: HAProxy's counters (solid), HAProxy's request log (solid, its last second: there
// whether or not a run is in progress) and the run in progress, from its load generator's own timings
// (dashed: present only while a relevo bench or scenarios run loads this cluster).
const RUN_DASH = [6, 3];

function chartSeries() {
  const servers = state.layout.nodes.map((n, i) => ({ label: n.name, stroke: SERVER_COLOURS[i % SERVER_COLOURS.length], value: (p) => p.rps?.[n.name] ?? null }));
  return {
    "chart-rps": [...servers,
      { label: "run: responses/s", stroke: "#24292f", dash: RUN_DASH, value: (p) => p.load?.rps ?? null }],
    "chart-latency": [
      { label: "run p50", stroke: "#0969da", width: 2, dash: RUN_DASH, value: (p) => p.load?.p50_ms ?? null },
      { label: "run p99", stroke: "#cf222e", width: 2, dash: RUN_DASH, value: (p) => p.load?.p99_ms ?? null },
      { label: "HAProxy p50", stroke: "#0550ae", value: (p) => p.log?.p50_ms ?? null },
      { label: "HAProxy p99", stroke: "#a40e26", value: (p) => p.log?.p99_ms ?? null },
      { label: "HAProxy avg (last 1024)", stroke: "#1a7f37", value: (p) => p.rtime_ms ?? null }],
    "chart-errors": [
      { label: "HAProxy errors/s", stroke: "#cf222e", value: (p) => p.errors ?? null },
      { label: "answered 5xx or cut/s", stroke: "#bc4c00", value: (p) => p.log?.errors ?? null },
      { label: "run: failed/s", stroke: "#8250df", dash: RUN_DASH, value: (p) => p.load?.errors ?? null }],
  };
}

function makeChart(id, series) {
  const root = document.getElementById(id);
  root.querySelector(".uplot")?.remove();
  const width = Math.max(240, root.clientWidth - 10);
  const options = {
    width, height: 170,
    legend: { live: false },
    cursor: { drag: { x: false, y: false } },
    // The chosen window (1 or 5 minutes) up to the newest point: a run of seconds stays readable.
    scales: { x: { time: true, range: (u, lo, hi) => [(hi ?? 0) - state.windowS, hi ?? 0] } },
    series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.stroke, width: s.width ?? 1.5, dash: s.dash, spanGaps: false }))],
    axes: [{}, { size: 60 }],
    hooks: { draw: [(u) => drawMarkers(u)] },
  };
  return new uPlot(options, chartData(series), root);
}

function chartData(series) {
  return [state.series.map((p) => p.t), ...series.map((s) => state.series.map(s.value))];
}

function buildCharts() {
  for (const [id, series] of Object.entries(chartSeries())) state.charts[id] = makeChart(id, series);
}

function refreshCharts() {
  for (const [id, series] of Object.entries(chartSeries())) state.charts[id]?.setData(chartData(series));
}

const LABELLED = ["failover", "failback", "fault", "run"];
const LABEL_ROWS = 4;

function drawMarkers(u) {
  const over = u.over;
  over.querySelectorAll(".marker, .span").forEach((m) => m.remove());
  const [lo, hi] = [u.scales.x.min, u.scales.x.max];
  if (lo == null) return;
  // Labels close together go on rows below each other, so that a kill and the failover it causes a
  // few hundred milliseconds later can both be read.
  const rowsEnd = new Array(LABEL_ROWS).fill(-Infinity);
  for (const m of [...state.markers].sort((a, b) => a.t - b.t)) {
    if (m.end != null && m.end > lo && m.t < hi) {
      const from = u.valToPos(Math.max(m.t, lo), "x");
      const span = el("div", { class: "span", title: m.title });
      span.style.left = `${from}px`;
      span.style.width = `${Math.max(1, u.valToPos(Math.min(m.end, hi), "x") - from)}px`;
      over.append(span);
    }
    if (m.t < lo || m.t > hi) continue;
    const left = u.valToPos(m.t, "x");
    const mark = el("div", { class: `marker kind-${m.kind}`, title: m.title, "data-node": m.node ?? "", "data-label": m.label });
    mark.style.left = `${left}px`;
    if (LABELLED.includes(m.kind)) {
      const label = el("span", {}, m.label);
      const width = 7 * m.label.length + 6;
      const leftward = left > over.clientWidth - width;
      const start = leftward ? left - width : left;
      let row = rowsEnd.findIndex((end) => end < start);
      if (row < 0) row = LABEL_ROWS - 1;
      rowsEnd[row] = start + width;
      label.style.top = `${row * 13}px`;
      if (leftward) { label.style.left = "auto"; label.style.right = "2px"; }
      mark.append(label);
    }
    over.append(mark);
  }
}

function eventMarker(e) {
  const label = e.kind === "failover" ? `failover → ${e.node}` : `${e.kind} ${e.node}`;
  return { t: e.ts, kind: e.kind, node: e.node, label, title: `${e.kind} ${e.node}: ${e.from} → ${e.to} (${e.reason})` };
}

function faultMarker(f) {
  return { t: f.t, kind: "fault", node: f.node, label: `${f.action} ${f.node}`, title: `from this page: ${f.action} ${f.node}` };
}

function addRunMarkers(markers) {
  for (const m of markers || []) {
    // A lasting fault is told twice: when applied, then healed (with its end): keep the last word.
    state.markers = state.markers.filter((o) => !(o.kind === m.kind && o.t === m.t && o.label === m.label));
    state.markers.push(m);
  }
}

function showRun(run) {
  const pill = document.getElementById("run");
  const live = run && run.ended == null;
  pill.textContent = live ? `run in progress: ${run.what}` : "";
  pill.className = live ? "pill run" : "pill";
  pill.hidden = !live;
}

// --- journal ---------------------------------------------------------------------------------------------
function journalLine(e) {
  const when = new Date(e.ts * 1000).toLocaleTimeString([], { hour12: false }) + "." + String(Math.floor((e.ts % 1) * 1000)).padStart(3, "0");
  const durations = Object.entries(e.durations || {}).map(([k, v]) => `${k.replace(/_s$/, "")} ${Math.round(v * 1000)} ms`).join(", ");
  return el("li", { "data-kind": e.kind, "data-node": e.node },
    `${when} `, el("span", { class: `kind k-${e.kind}` }, e.kind), ` ${e.node}: ${e.from} → ${e.to}  ${e.reason || ""}`,
    durations ? `  [${durations}]` : "");
}

function addJournal(events) {
  const list = document.getElementById("journal");
  for (const e of events) {
    list.prepend(journalLine(e));
    if (e.kind !== "action") state.markers.push(eventMarker(e));
  }
  while (list.children.length > 300) list.lastChild.remove();
}

// --- what cannot be reached --------------------------------------------------------------------------------
function showUnreachable(unreachable) {
  const list = document.getElementById("unreachable");
  list.replaceChildren(...Object.entries(unreachable || {}).map(([source, why]) => el("li", { "data-source": source }, `cannot reach ${source}: ${why}`)));
}

// --- the stream -----------------------------------------------------------------------------------------------
function onSnapshot(snapshot) {
  state.layout = snapshot.topology;
  state.series = snapshot.series;
  state.markers = (snapshot.faults || []).map(faultMarker);
  addRunMarkers(snapshot.markers);
  document.getElementById("journal").replaceChildren();
  drawTopology(snapshot.topology);
  addJournal(snapshot.journal);
  buildCharts();
  applyLatest(snapshot.latest);
}

function applyLatest(latest) {
  if (!latest || !latest.t) return;
  state.lastUpdate = Date.now();
  showUnreachable(latest.unreachable);
  showRun(latest.run);
  updateNodes(latest.nodes, latest.controller);
  document.getElementById("updated").textContent = `updated ${new Date(latest.t * 1000).toLocaleTimeString([], { hour12: false })}`;
}

function onUpdate(update) {
  if (update.point) state.series.push(update.point);
  const cutoff = update.t - HISTORY_S;
  while (state.series.length && state.series[0].t < cutoff) state.series.shift();
  state.markers = state.markers.filter((m) => Math.max(m.t, m.end ?? 0) >= cutoff);
  for (const f of update.faults || []) state.markers.push(faultMarker(f));
  addRunMarkers(update.markers);
  addJournal(update.events || []);
  applyLatest(update);
  refreshCharts();
}

function connect() {
  const pill = document.getElementById("connection");
  const source = new EventSource("api/stream");
  source.addEventListener("open", () => { pill.textContent = "live"; pill.className = "pill live"; });
  source.addEventListener("error", () => { pill.textContent = "dashboard not reachable: retrying"; pill.className = "pill lost"; });
  source.addEventListener("snapshot", (m) => onSnapshot(JSON.parse(m.data)));
  source.addEventListener("update", (m) => onUpdate(JSON.parse(m.data)));
}

async function act(node, action) {
  const toast = document.getElementById("toast");
  toast.style.display = "block";
  toast.textContent = `${action} ${node}…`;
  try {
    const response = await fetch(`api/nodes/${encodeURIComponent(node)}/${encodeURIComponent(action)}`, {
      method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin",
    });
    const answer = await response.json();
    toast.textContent = answer.ok ? answer.done : `${action} ${node} failed: ${answer.error}`;
  } catch (error) {
    toast.textContent = `${action} ${node}: the dashboard did not answer (${error})`;
  }
  setTimeout(() => { toast.style.display = "none"; }, 4000);
}

window.addEventListener("resize", () => { if (state.layout) buildCharts(); });
for (const button of document.querySelectorAll("#window button")) {
  button.addEventListener("click", () => {
    state.windowS = Number(button.dataset.seconds);
    document.querySelectorAll("#window button").forEach((b) => b.classList.toggle("chosen", b === button));
    if (state.layout) buildCharts();
  });
}
connect();
