// The dashboard page: one EventSource; a "snapshot" event (on every (re)connection) builds the picture,
// the charts and the journal; each "update" event (every 500 ms) changes them. No framework: the DOM is
// small and the tests read it.
"use strict";

const HISTORY_S = 300;
const SERVER_COLOURS = ["#0969da", "#1a7f37", "#bf8700", "#8250df", "#cf222e", "#1b7c83", "#6e7781"];
const state = { layout: null, series: [], markers: [], charts: {}, lastUpdate: 0 };
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
      " · ", el("span", { class: "sessions" }, "-"), " sess · ", el("span", { class: "rps" }, "-"), " req/s"),
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
function makeChart(id, series) {
  const root = document.getElementById(id);
  root.querySelector(".uplot")?.remove();
  const width = Math.max(240, root.clientWidth - 10);
  const options = {
    width, height: 190,
    legend: { live: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true } },
    series: [{}, ...series.map((s, i) => ({ label: s, stroke: SERVER_COLOURS[i % SERVER_COLOURS.length], width: 1.5, spanGaps: false }))],
    axes: [{}, { size: 44 }],
    hooks: { draw: [(u) => drawMarkers(u)] },
  };
  return new uPlot(options, chartData(id, series), root);
}

function chartData(id, labels) {
  const xs = state.series.map((p) => p.t);
  if (id === "chart-rps") return [xs, ...labels.map((name) => state.series.map((p) => p.rps[name] ?? null))];
  if (id === "chart-latency") return [xs, state.series.map((p) => p.rtime_ms), state.series.map((p) => p.rtime_max_ms)];
  return [xs, state.series.map((p) => p.errors)];
}

function chartLabels() {
  return {
    "chart-rps": state.layout.nodes.map((n) => n.name),
    "chart-latency": ["average", "max"],
    "chart-errors": ["errors/s"],
  };
}

function buildCharts() {
  for (const [id, labels] of Object.entries(chartLabels())) state.charts[id] = makeChart(id, labels);
}

function refreshCharts() {
  for (const [id, labels] of Object.entries(chartLabels())) state.charts[id]?.setData(chartData(id, labels));
}

function drawMarkers(u) {
  const over = u.over;
  over.querySelectorAll(".marker").forEach((m) => m.remove());
  const [lo, hi] = [u.scales.x.min, u.scales.x.max];
  if (lo == null) return;
  for (const m of state.markers) {
    if (m.t < lo || m.t > hi) continue;
    const left = u.valToPos(m.t, "x");
    const mark = el("div", { class: `marker kind-${m.kind}`, title: m.title, "data-node": m.node });
    mark.style.left = `${left}px`;
    if (["failover", "failback", "fault"].includes(m.kind)) {
      const label = el("span", {}, m.label);
      if (left > over.clientWidth - 120) { label.style.left = "auto"; label.style.right = "4px"; }
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
  updateNodes(latest.nodes, latest.controller);
  document.getElementById("updated").textContent = `updated ${new Date(latest.t * 1000).toLocaleTimeString([], { hour12: false })}`;
}

function onUpdate(update) {
  if (update.point) state.series.push(update.point);
  const cutoff = update.t - HISTORY_S;
  while (state.series.length && state.series[0].t < cutoff) state.series.shift();
  state.markers = state.markers.filter((m) => m.t >= cutoff);
  for (const f of update.faults || []) state.markers.push(faultMarker(f));
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
connect();
