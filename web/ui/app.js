// Shoal dashboard: a live view of the swarm (nodes as columns, tasks as cards coloured by state,
// services with running/desired replicas), a timeline across the log to see the cluster at any
// index, diffs between two points, and the provenance of any task, service or node.
//
// Plain ES module, no framework and no build step. Everything it shows comes from Shoal's own API
// (web/shoal/routes.ts): /shoal/v1/state, /timeline, /diff, /why and the /stream of applied
// entries (Server-Sent Events), which keeps the page current without reloading.
//
// The DOM is built with `h()` (createElement and textContent, never innerHTML), so names typed by
// users cannot inject markup, and the page runs under a strict Content-Security-Policy.

const API = "/shoal/v1";

/** Task state → colour class (see style.css). */
const STATE_CLASS = {
  new: "pending",
  pending: "pending",
  assigned: "pending",
  accepted: "starting",
  preparing: "starting",
  ready: "starting",
  starting: "starting",
  running: "running",
  complete: "complete",
  shutdown: "shutdown",
  failed: "failed",
  rejected: "failed",
  remove: "shutdown",
  orphaned: "shutdown",
};
const TERMINAL = new Set(["complete", "shutdown", "failed", "rejected", "remove", "orphaned"]);
const ACTIVITY_KEPT = 80;
const MARKS_DRAWN = 400;

/** Everything the page knows. */
const app = {
  firstIndex: 1,
  lastIndex: 0,
  lastAt: 0,
  /** Showing the live state, or the state at `viewIndex`. */
  live: true,
  viewIndex: 0,
  /** The state view on screen. */
  data: null,
  /** Known (index, time) pairs, sorted: timeline samples plus entries seen live. */
  points: [],
  /** The user's commands: ticks on the timeline. */
  marks: [],
  a: null,
  b: null,
  selected: null,
  activity: [],
  /** Task id → "state@node" as last rendered, to flash cards that changed. */
  seen: new Map(),
  showStopped: true,
  connected: false,
};

// ---------------------------------------------------------------------------------------------
// Small helpers

const $ = (id) => document.getElementById(id);

/** An element with attributes, listeners (`onclick`), `dataset`, `style` (CSS properties). */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style") {
      for (const [p, val] of Object.entries(v)) el.style.setProperty(p, val);
    } else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** `2025-01-02 03:04:05` in local time. */
function fmtTime(ms) {
  if (!ms) return "—";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmtClock(ms)}`;
}

/** `03:04:05` in local time. */
function fmtClock(ms) {
  if (!ms) return "—";
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A proposer as a person reads it: `agent:<node id>` becomes `agent:<node name>`. */
function who(by) {
  const m = /^(agent|node):([0-9a-z]{25})$/.exec(by);
  const node = m && app.data?.nodes.find((n) => n.id === m[2]);
  return node ? `${m[1]}:${node.name}` : by;
}

const short = (id) => (id && id.length > 12 ? id.slice(0, 12) : id || "");
const plural = (n, word) =>
  `${n} ${n === 1 ? word : word.endsWith("y") ? `${word.slice(0, -1)}ies` : `${word}s`}`;

/** A value as a person reads it (strings bare, structures as JSON, long ones cut). */
function fmtValue(v) {
  if (v === undefined) return "(none)";
  let t = typeof v === "string" ? (v === "" ? '""' : v) : JSON.stringify(v);
  if (t.length > 90) t = t.slice(0, 87) + "...";
  return t;
}

/** Distinct, readable colours for services (a service keeps its colour: it hashes its name). */
const PALETTE = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#17becf",
  "#bcbd22",
  "#393b79",
  "#ad494a",
  "#637939",
];

/** A stable colour per service name (FNV-1a of the name into the palette). */
function serviceColour(name) {
  let hash = 0x811c9dc5;
  for (const c of name) hash = Math.imul(hash ^ c.codePointAt(0), 0x01000193) >>> 0;
  return PALETTE[hash % PALETTE.length];
}

async function getJSON(path) {
  const res = await fetch(path, { headers: { accept: "application/json" } });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.message || `${res.status} ${res.statusText}`);
  return body;
}

function formatBytes(n) {
  if (!n) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

// ---------------------------------------------------------------------------------------------
// Loading the state (latest request wins; at most one in flight)

let loadTimer = null;
let loading = false;
let loadAgain = false;
/** How long the last state took to load: live refreshes wait at least twice that. */
let lastLoadMs = 0;

function scheduleLoad(delay) {
  if (loadTimer !== null) return;
  loadTimer = setTimeout(() => {
    loadTimer = null;
    loadNow();
  }, delay);
}

async function loadNow() {
  if (loading) {
    loadAgain = true;
    return;
  }
  loading = true;
  try {
    do {
      loadAgain = false;
      const want = app.live ? null : app.viewIndex;
      const started = performance.now();
      const data = await getJSON(want === null ? `${API}/state` : `${API}/state?at=${want}`);
      lastLoadMs = performance.now() - started;
      if ((app.live ? null : app.viewIndex) !== want) {
        loadAgain = true;
        continue;
      }
      render(data);
    } while (loadAgain);
  } catch (err) {
    showProblem(`Could not load the state: ${err.message}`);
  } finally {
    loading = false;
  }
}

function showProblem(message) {
  const nodes = $("nodes");
  nodes.replaceChildren(h("p", { class: "error" }, message));
}

// ---------------------------------------------------------------------------------------------
// Rendering the cluster

function render(data) {
  app.data = data;
  if (data.lastIndex > app.lastIndex) setLast(data.lastIndex, data.live ? data.at : undefined);
  document.body.dataset.index = String(data.index);
  document.body.dataset.live = String(app.live);
  document.body.classList.toggle("history", !app.live);

  $("swarm-name").textContent = data.cluster ? `swarm ${data.cluster.name}` : "no swarm yet";
  const active = data.tasks.filter((t) => !TERMINAL.has(t.state));
  const running = active.filter((t) => t.state === "running").length;
  $("counts").textContent = `${plural(data.nodes.length, "node")} · ${
    plural(data.services.length, "service")
  } · ${running}/${plural(active.length, "task")} running`;

  renderMode();
  renderNodes(data);
  renderServices(data);
  renderTimeline();
}

function renderMode() {
  const mode = $("mode");
  const banner = $("history-banner");
  if (app.live) {
    mode.className = "mode live";
    mode.textContent = `● LIVE  #${app.data?.index ?? app.lastIndex}`;
    banner.hidden = true;
    return;
  }
  mode.className = "mode history";
  mode.textContent = `HISTORY  #${app.viewIndex}`;
  banner.hidden = false;
  const behind = app.lastIndex - app.viewIndex;
  const at = app.data && app.data.index === app.viewIndex ? app.data.at : approxTime(app.viewIndex);
  $("history-text").replaceChildren(
    "Viewing history at ",
    h("strong", {}, `#${app.viewIndex}`),
    ` — ${fmtTime(at)} · ${plural(behind, "entry")} before live. Changes since are not shown.`,
  );
}

function isStopped(t) {
  return TERMINAL.has(t.state);
}

function taskCard(t, live) {
  const cls = STATE_CLASS[t.state] ?? "pending";
  const key = `${t.state}@${t.nodeId}`;
  const before = app.seen.get(t.id);
  const changed = live && before !== undefined && before !== key;
  app.seen.set(t.id, key);
  const desired = t.desired !== "running" && t.desired !== t.state && !isStopped(t)
    ? ` · desired ${t.desired}`
    : "";
  const problem = t.err || (cls === "failed" || cls === "pending" ? t.message : "");
  return h(
    "div",
    {
      class: `task state-${cls}${isStopped(t) ? " stopped" : ""}${changed ? " changed" : ""}${
        app.selected === t.id ? " selected" : ""
      }`,
      tabindex: "0",
      role: "button",
      title: `${t.name} (${t.id})\n${t.state}, desired ${t.desired}${
        t.message ? `\n${t.message}` : ""
      }${t.err ? `\n${t.err}` : ""}\nClick for its provenance`,
      dataset: {
        taskId: t.id,
        taskName: t.name,
        serviceName: t.service,
        state: t.state,
        desired: t.desired,
      },
      style: { "--svc": serviceColour(t.service) },
      onclick: () => openWhy("task", t.id, t.name),
      onkeydown: (ev) => {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          openWhy("task", t.id, t.name);
        }
      },
    },
    h(
      "div",
      { class: "task-name" },
      h("span", {}, t.name),
      t.attempt > 0
        ? h("span", { class: "subtle", title: "restart attempt" }, `↻${t.attempt}`)
        : null,
    ),
    h("div", { class: "task-state" }, t.state, h("span", { class: "desired" }, desired)),
    problem ? h("div", { class: "task-meta", title: problem }, problem) : null,
    h("div", { class: "task-meta mono" }, `${short(t.id)} · ${fmtClock(t.updatedAt)}`),
  );
}

function sortTasks(tasks) {
  const active = tasks.filter((t) => !isStopped(t));
  const stopped = tasks.filter(isStopped).sort((a, b) => b.updatedAt - a.updatedAt);
  return app.showStopped ? [...active, ...stopped] : active;
}

function nodeColumn(n, tasks, live) {
  const statusClass = n.status === "ready" ? "ok" : n.status === "down" ? "bad" : "warn";
  const availClass = n.availability === "active" ? "ok" : "warn";
  const shown = sortTasks(tasks);
  const hidden = tasks.length - shown.length;
  const cpus = n.nanoCPUs ? `${Math.round(n.nanoCPUs / 1e9)} CPUs` : "";
  return h(
    "section",
    { class: `node status-${n.status}`, dataset: { node: n.name, nodeId: n.id } },
    h(
      "header",
      {
        title: `${n.name} (${n.id})\nClick for its provenance`,
        onclick: () => openWhy("node", n.id, n.name),
      },
      h("div", { class: "node-name" }, n.name),
      h(
        "div",
        { class: "node-badges" },
        n.leader ? h("span", { class: "badge leader" }, "leader") : null,
        h("span", { class: "badge" }, n.role),
        h("span", { class: `badge ${availClass}` }, n.availability),
        h("span", { class: `badge ${statusClass}` }, n.status),
      ),
      h(
        "div",
        { class: "node-res" },
        [cpus, formatBytes(n.memoryBytes), n.runtimes.join(", ")].filter(Boolean).join(" · "),
      ),
    ),
    h(
      "div",
      { class: "tasks" },
      shown.length === 0
        ? h("p", { class: "empty" }, "No tasks")
        : shown.map((t) => taskCard(t, live)),
      hidden > 0 ? h("p", { class: "empty" }, `+ ${plural(hidden, "stopped task")} hidden`) : null,
    ),
  );
}

function renderNodes(data) {
  const byNode = new Map();
  for (const t of data.tasks) {
    const list = byNode.get(t.nodeId) ?? [];
    list.push(t);
    byNode.set(t.nodeId, list);
  }
  const live = app.live;
  const columns = [];
  const unassigned = byNode.get("") ?? [];
  if (unassigned.some((t) => !isStopped(t)) || (app.showStopped && unassigned.length > 0)) {
    columns.push(
      h(
        "section",
        { class: "node unassigned", dataset: { node: "" } },
        h(
          "header",
          {},
          h("div", { class: "node-name" }, "Unassigned"),
          h("div", { class: "node-res" }, "waiting for a node"),
        ),
        h("div", { class: "tasks" }, sortTasks(unassigned).map((t) => taskCard(t, live))),
      ),
    );
  }
  for (const n of data.nodes) columns.push(nodeColumn(n, byNode.get(n.id) ?? [], live));
  // Tasks on nodes that are gone from the swarm.
  const known = new Set(data.nodes.map((n) => n.id));
  for (const [nodeId, tasks] of byNode) {
    if (nodeId === "" || known.has(nodeId)) continue;
    columns.push(nodeColumn(
      {
        id: nodeId,
        name: short(nodeId),
        role: "removed",
        availability: "—",
        status: "unknown",
        leader: false,
        runtimes: [],
      },
      tasks,
      live,
    ));
  }
  if (columns.length === 0) columns.push(h("p", { class: "empty" }, "No nodes at this point."));
  $("nodes").replaceChildren(...columns);
}

function renderServices(data) {
  const rows = data.services.map((s) =>
    h(
      "tr",
      {
        dataset: { service: s.name, running: String(s.running), desired: String(s.desired) },
        title: `${s.name} (${s.id})\n${s.image}\nClick for its provenance`,
        onclick: () => openWhy("service", s.id, s.name),
      },
      h(
        "td",
        {},
        h(
          "div",
          { class: "svc-name" },
          h("span", { class: "swatch", style: { "--svc": serviceColour(s.name) } }),
          s.name,
        ),
        s.updateState ? h("div", { class: "subtle" }, `update ${s.updateState}`) : null,
      ),
      h("td", { class: "subtle" }, s.mode),
      h(
        "td",
        {},
        h(
          "div",
          { class: `replicas${s.running < s.desired ? " short" : ""}` },
          `${s.running}/${s.desired}`,
        ),
        h(
          "div",
          { class: "bar" },
          h("span", {
            style: {
              width: `${s.desired > 0 ? Math.min(100, (100 * s.running) / s.desired) : 0}%`,
            },
          }),
        ),
      ),
      h("td", { class: "runs mono", title: s.image }, s.image),
    )
  );
  $("services").tBodies[0].replaceChildren(...rows);
  $("no-services").hidden = rows.length > 0;
}

// ---------------------------------------------------------------------------------------------
// The timeline

function setLast(index, at) {
  if (index <= app.lastIndex) return;
  app.lastIndex = index;
  if (at) {
    app.lastAt = at;
    addPoint(index, at);
  }
}

function addPoint(index, at) {
  const p = app.points;
  if (p.length === 0 || p[p.length - 1].index < index) p.push({ index, at });
  else if (!p.some((q) => q.index === index)) {
    p.push({ index, at });
    p.sort((x, y) => x.index - y.index);
  }
}

/** The time of the nearest known point at or before `index`. */
function approxTime(index) {
  const p = app.points;
  let lo = 0, hi = p.length - 1, best = null;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (p[mid].index <= index) {
      best = p[mid];
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return best?.at ?? 0;
}

function fraction(index) {
  const span = app.lastIndex - app.firstIndex;
  return span <= 0 ? 1 : (index - app.firstIndex) / span;
}

function place(el, index) {
  el.style.setProperty("left", `calc(8px + (100% - 16px) * ${fraction(index)})`);
  return el;
}

function renderTimeline() {
  const slider = $("timeline");
  slider.min = String(Math.min(app.firstIndex, app.lastIndex));
  slider.max = String(app.lastIndex);
  if (document.activeElement !== slider || app.live) {
    slider.value = String(app.live ? app.lastIndex : app.viewIndex);
  }
  $("tl-start").textContent = `#${app.firstIndex} · ${fmtTime(app.points[0]?.at)}`;
  $("tl-end").textContent = `#${app.lastIndex} · ${fmtTime(app.lastAt)}`;
  const marks = app.marks.slice(-MARKS_DRAWN).map((m) =>
    place(h("span", { class: `tl-mark${m.applied ? "" : " refused"}` }), m.index)
  );
  if (app.a !== null) marks.push(place(h("span", { class: "tl-flag a" }, "A"), app.a));
  if (app.b !== null) marks.push(place(h("span", { class: "tl-flag b" }, "B"), app.b));
  $("tl-marks").replaceChildren(...marks);
  $("set-a").classList.toggle("set", app.a !== null);
  $("set-b").classList.toggle("set", app.b !== null);
  $("set-a").textContent = app.a === null ? "Set A" : `A #${app.a}`;
  $("set-b").textContent = app.b === null ? "Set B" : `B #${app.b}`;
  $("compare").disabled = app.a === null || app.b === null || app.a === app.b;
  renderLabel();
}

function renderLabel() {
  const index = app.live ? app.lastIndex : app.viewIndex;
  const exact = app.data && app.data.index === index;
  const at = exact ? app.data.at : approxTime(index);
  const mark = app.marks.findLast?.((m) => m.index <= index);
  $("tl-label").replaceChildren(
    `#${index} · ${exact ? "" : "≈ "}${fmtTime(at)}`,
    h(
      "span",
      { class: "by" },
      app.live
        ? "live"
        : mark
        ? `last command: #${mark.index} ${mark.by.replace(/^user:/, "")}`
        : `${plural(app.lastIndex - index, "entry")} before live`,
    ),
  );
}

function goLive() {
  app.live = true;
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  renderMode();
  renderTimeline();
  scheduleLoad(0);
}

function goHistory(index) {
  app.live = false;
  app.viewIndex = Math.max(Math.min(app.firstIndex, app.lastIndex), Math.min(index, app.lastIndex));
  history.replaceState(null, "", `#at=${app.viewIndex}`);
  renderMode();
  renderTimeline();
  scheduleLoad(40);
}

/** Shows the cluster as of `index` (live when it is the last one). */
function seek(index) {
  if (index >= app.lastIndex) goLive();
  else goHistory(index);
}

function currentIndex() {
  return app.live ? app.lastIndex : app.viewIndex;
}

async function loadTimeline() {
  const t = await getJSON(`${API}/timeline?samples=400`);
  app.firstIndex = t.firstIndex;
  for (const p of t.points) addPoint(p.index, p.at);
  if (t.lastIndex > app.lastIndex) {
    app.lastIndex = t.lastIndex;
    app.lastAt = t.lastAt;
  }
  const known = new Set(app.marks.map((m) => m.index));
  app.marks = [...app.marks, ...t.marks.filter((m) => !known.has(m.index))].sort((x, y) =>
    x.index - y.index
  );
  renderTimeline();
  return t;
}

// ---------------------------------------------------------------------------------------------
// Activity (the live stream)

function onEntry(e) {
  addPoint(e.index, e.at);
  if (e.index > app.lastIndex) {
    app.lastIndex = e.index;
    app.lastAt = e.at;
  }
  if (e.by.startsWith("user:") && !app.marks.some((m) => m.index === e.index)) {
    app.marks.push({ index: e.index, at: e.at, by: e.by, reason: e.reason, applied: e.applied });
  }
  app.activity.unshift(e);
  if (app.activity.length > ACTIVITY_KEPT) app.activity.length = ACTIVITY_KEPT;
  scheduleActivity();
  if (app.live) scheduleLoad(Math.max(120, 2 * lastLoadMs));
  else renderMode();
  scheduleTimeline();
}

let activityTimer = null;
function scheduleActivity() {
  if (activityTimer !== null) return;
  activityTimer = setTimeout(() => {
    activityTimer = null;
    renderActivity();
  }, 100);
}

let timelineTimer = null;
function scheduleTimeline() {
  if (timelineTimer !== null) return;
  timelineTimer = setTimeout(() => {
    timelineTimer = null;
    renderTimeline();
  }, 100);
}

function renderActivity() {
  const items = app.activity.map((e) => {
    const user = e.by.startsWith("user:");
    const what = user && e.reason
      ? e.reason
      : e.events.map((ev) => ev.summary).slice(0, 4).join("; ") +
        (e.events.length > 4 || e.more > 0 ? ` (+${e.events.length - 4 + e.more} more)` : "");
    return h(
      "li",
      {
        class: user ? "user" : "",
        title: `#${e.index} ${fmtTime(e.at)} by ${who(e.by)}\n${
          e.events.map((ev) => ev.summary).join("\n")
        }\nClick to see the cluster at #${e.index}`,
        dataset: { index: String(e.index) },
        onclick: () => seek(e.index),
      },
      h("span", { class: "idx" }, `#${e.index}`),
      h("span", { class: "when" }, fmtClock(e.at)),
      h("span", { class: "who" }, who(e.by)),
      e.applied ? null : h("span", { class: "refused" }, ` refused: ${e.rejection?.reason ?? ""}`),
      h("span", { class: "what" }, what),
    );
  });
  $("activity").replaceChildren(...items);
}

function setConnected(up) {
  app.connected = up;
  const c = $("conn");
  c.className = up ? "conn up" : "conn";
  c.textContent = up ? "● streaming" : "○ reconnecting…";
}

function connect(from) {
  const source = new EventSource(`${API}/stream${from >= 0 ? `?from=${from}` : ""}`);
  source.addEventListener("hello", (ev) => {
    const hello = JSON.parse(ev.data);
    setConnected(true);
    app.firstIndex = hello.firstIndex;
    if (hello.lastIndex > app.lastIndex) {
      app.lastIndex = hello.lastIndex;
      app.lastAt = hello.at;
      addPoint(hello.lastIndex, hello.at);
    }
    // After a reconnection entries may have been missed: refresh what the page shows.
    loadTimeline().catch(() => {});
    if (app.live) scheduleLoad(0);
    else renderMode();
  });
  source.addEventListener("entry", (ev) => onEntry(JSON.parse(ev.data)));
  source.addEventListener("error", () => setConnected(false));
  return source;
}

// ---------------------------------------------------------------------------------------------
// The drawer: provenance (why) and diffs

function openDrawer(title, body) {
  $("drawer-title").textContent = title;
  $("drawer-body").replaceChildren(body);
  $("drawer").hidden = false;
}

function closeDrawer() {
  $("drawer").hidden = true;
  if (app.selected !== null) {
    app.selected = null;
    for (const el of document.querySelectorAll(".task.selected")) el.classList.remove("selected");
  }
}

function jump(index) {
  return h("a", {
    class: "jump",
    href: `#at=${index}`,
    title: `See the cluster at #${index}`,
    onclick: (ev) => {
      ev.preventDefault();
      seek(index);
    },
  }, `#${index}`);
}

async function openWhy(kind, id, name) {
  const at = app.data?.index ?? currentIndex();
  if (kind === "task") {
    app.selected = id;
    for (const el of document.querySelectorAll(".task")) {
      el.classList.toggle("selected", el.dataset.taskId === id);
    }
  }
  openDrawer(`Why ${kind} ${name}`, h("p", { class: "subtle" }, "Following the causes…"));
  try {
    const report = await getJSON(
      `${API}/why/${kind}/${encodeURIComponent(id)}?at=${at}`,
    );
    openDrawer(`Why ${kind} ${report.name}`, renderWhy(report));
  } catch (err) {
    openDrawer(`Why ${kind} ${name}`, h("p", { class: "error" }, err.message));
  }
}

function hopText(hop) {
  if (hop.event) {
    const e = hop.event;
    return `${e.type} ${e.kind} ${e.name ?? short(e.id)} by ${who(e.by)}: ${e.reason}`;
  }
  return hop.entry ?? "";
}

function renderHop(hop, prefix) {
  return h(
    "li",
    {},
    prefix,
    jump(hop.index),
    " ",
    hopText(hop),
    hop.event?.user ? h("strong", {}, "  [user command]") : null,
    hop.note ? h("span", { class: "subtle" }, ` (${hop.note})`) : null,
  );
}

function renderDecision(step) {
  const d = step.decision;
  const counts = Object.entries(d.rejectedCounts ?? {});
  return h(
    "div",
    { class: "decision", dataset: { decision: d.chosen ? d.chosen.name : "" } },
    h(
      "div",
      { class: "verdict" },
      d.chosen ? `The scheduler chose ${d.chosen.name}` : "The scheduler found no suitable node",
    ),
    h(
      "div",
      {},
      `${plural(d.nodesConsidered, "node")} considered — ${d.reason}`,
    ),
    d.message && d.message !== d.reason ? h("div", { class: "subtle" }, d.message) : null,
    h(
      "ul",
      {},
      d.passed.length > 0
        ? h(
          "li",
          { class: "passed" },
          `Passed every filter: ${d.passed.map((n) => n.name).join(", ")}`,
        )
        : null,
      d.rejected.map((r) =>
        h("li", { class: "rejected" }, `Rejected ${r.name} by ${r.filter}: ${r.reason}`)
      ),
      counts.length > 0
        ? h(
          "li",
          { class: "subtle" },
          `Rejected per filter: ${counts.map(([f, n]) => `${f} ${n}`).join(", ")}`,
        )
        : null,
    ),
    h(
      "div",
      { class: "subtle" },
      "Decided at ",
      jump(step.index),
      ` (${step.type} by ${who(step.by)}, ${fmtTime(step.at)})`,
    ),
  );
}

function renderWhy(r) {
  const decided = r.steps.find((s) => s.decision);
  return h(
    "div",
    { id: "provenance", dataset: { kind: r.kind, id: r.id } },
    h("p", { class: "summary-line" }, h("strong", {}, `${r.kind} ${r.name}`), ` — ${r.summary}`),
    h(
      "p",
      { class: "subtle" },
      h("span", { class: "mono" }, r.id),
      ` · as of `,
      jump(r.atIndex),
      r.exists ? "" : " · no longer exists",
    ),
    decided ? [h("h3", {}, "Scheduler's decision"), renderDecision(decided)] : null,
    r.origin.length > 0
      ? [
        h("h3", {}, "Origin"),
        h(
          "ul",
          { class: "steps" },
          r.origin.map((o) =>
            h(
              "li",
              { class: "origin" },
              jump(o.index),
              " ",
              hopText(o),
              o.note ? h("div", { class: "subtle" }, o.note) : null,
            )
          ),
        ),
      ]
      : null,
    h("h3", {}, `What happened to it, newest first (${r.steps.length})`),
    h(
      "ol",
      { class: "steps" },
      r.steps.map((s) =>
        h(
          "li",
          { class: `step${s.user ? " user" : ""}` },
          h(
            "div",
            { class: "step-head" },
            jump(s.index),
            ` ${fmtClock(s.at)} `,
            h("span", { class: "type" }, s.type),
            ` by ${who(s.by)}`,
            s.batchBy !== s.by ? h("span", { class: "subtle" }, ` (via ${who(s.batchBy)})`) : null,
          ),
          s.reason ? h("div", { class: "subtle" }, s.reason) : null,
          s.changes.length > 0
            ? h("ul", { class: "changes" }, s.changes.map((c) => h("li", {}, c)))
            : null,
          s.decision && s !== decided ? renderDecision(s) : null,
          s.causes.length > 0
            ? h("ul", { class: "causes" }, s.causes.map((c) => renderHop(c, "← caused by ")))
            : null,
        )
      ),
    ),
    r.truncated ? h("p", { class: "subtle" }, "Older events left out.") : null,
    r.refused.length > 0
      ? [
        h("h3", {}, "Refused by the fold (changed nothing)"),
        h(
          "ul",
          {},
          r.refused.map((f) =>
            h("li", {}, jump(f.index), ` ${f.type} by ${who(f.by)} (${f.code}): ${f.message}`)
          ),
        ),
      ]
      : null,
  );
}

async function openDiff() {
  if (app.a === null || app.b === null) return;
  const { a, b } = app;
  openDrawer(`Diff #${a} → #${b}`, h("p", { class: "subtle" }, "Comparing…"));
  try {
    const d = await getJSON(`${API}/diff?from=${a}&to=${b}`);
    openDrawer(`Diff #${a} → #${b}`, renderDiff(d));
  } catch (err) {
    openDrawer(`Diff #${a} → #${b}`, h("p", { class: "error" }, err.message));
  }
}

function renderDiff(d) {
  const byKind = new Map();
  for (const c of d.changes) {
    const list = byKind.get(c.kind) ?? [];
    list.push(c);
    byKind.set(c.kind, list);
  }
  const sign = { created: "+", removed: "−", changed: "~" };
  return h(
    "div",
    { id: "diff" },
    h(
      "p",
      { class: "summary-line" },
      jump(d.from),
      " → ",
      jump(d.to),
      `: ${d.created} created, ${d.changed} changed, ${d.removed} removed`,
    ),
    h("p", { class: "subtle" }, `${fmtTime(d.fromAt)} → ${fmtTime(d.toAt)}`),
    d.changes.length === 0 ? h("p", { class: "empty" }, "Nothing changed.") : null,
    [...byKind].map(([kind, changes]) => [
      h("h3", {}, `${kind}s (${changes.length})`),
      h(
        "ul",
        { class: "diff-list" },
        changes.map((c) =>
          h(
            "li",
            { class: c.change, dataset: { kind: c.kind, name: c.name, change: c.change } },
            h("span", { class: "sign" }, sign[c.change]),
            h("strong", {}, c.name),
            h("span", { class: "subtle" }, ` ${c.kind} ${short(c.id)}`),
            c.summary ? ` — ${c.summary}` : "",
            c.fields.length > 0
              ? h(
                "ul",
                { class: "fields" },
                c.fields.slice(0, 30).map((f) =>
                  h(
                    "li",
                    {},
                    h("span", { class: "mono" }, f.path),
                    f.redacted ? ": (changed)" : `: ${fmtValue(f.from)} → ${fmtValue(f.to)}`,
                  )
                ),
                c.fields.length > 30 ? h("li", {}, `… ${c.fields.length - 30} more`) : null,
              )
              : null,
          )
        ),
      ),
    ]),
    d.truncated ? h("p", { class: "subtle" }, "Only the first changes are listed.") : null,
  );
}

// ---------------------------------------------------------------------------------------------
// Wiring

function wire() {
  const slider = $("timeline");
  slider.addEventListener("input", () => seek(Number(slider.value)));
  slider.addEventListener("change", () => {
    if (!app.live) loadNow();
  });
  $("back-live").addEventListener("click", goLive);
  $("set-a").addEventListener("click", () => {
    app.a = currentIndex();
    renderTimeline();
  });
  $("set-b").addEventListener("click", () => {
    app.b = currentIndex();
    renderTimeline();
  });
  $("compare").addEventListener("click", openDiff);
  $("drawer-close").addEventListener("click", closeDrawer);
  $("show-stopped").addEventListener("change", (ev) => {
    app.showStopped = ev.target.checked;
    if (app.data) renderNodes(app.data);
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") closeDrawer();
  });
}

async function start() {
  wire();
  let t;
  try {
    t = await loadTimeline();
  } catch (err) {
    showProblem(`Could not reach the manager: ${err.message}`);
  }
  const asked = /^#at=(\d+)$/.exec(location.hash);
  if (asked && t && Number(asked[1]) < t.lastIndex) goHistory(Number(asked[1]));
  else await loadNow();
  // The last few entries first (the activity list), then live ones.
  connect(t === undefined ? -1 : Math.max(0, t.lastIndex - 40));
}

start();
