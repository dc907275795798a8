// Sala dashboard: runs list and one run, from the public API only. Plain ES modules, no build step.
import { BAND_COLOURS, PALETTE, formatNumber, lineChart } from "./chart.js";

const API = "/api/v1";
const TOKEN_KEY = "sala.token";
const params = new URLSearchParams(location.search);
const POLL_MS = Math.max(250, Number(params.get("poll")) || 2000);
const STEP_POINTS = 2000;      // step scalars asked for on opening a run (server downsamples)
const STEP_KEEP = 20000;       // client-side cap on kept step points; older ones are thinned
const EPOCH_PAGE = 5000;
const LOG_KEEP = 5000;         // log lines kept in the run page's panel
const STATUSES = ["queued", "running", "pausing", "paused", "stopping", "completed", "failed", "stopped"];
const ACTIVE = new Set(["queued", "running", "pausing", "paused", "stopping"]);
// kinds the worker applies and acknowledges with the step (events recorded with needs_worker)
const WORKER_KINDS = new Set(["stage_set", "stage_advance", "stage_hold", "lr_set", "lr_scale", "lr_clear",
  "lr_reduce", "checkpoint_requested", "pause_requested", "stop_requested"]);
// after one of these, a request still unapplied will not be applied by that worker any more
const LEASE_ENDS = new Set(["claimed", "run_paused", "run_stopped", "run_completed", "run_failed", "released",
  "lease_expired", "fenced"]);

// the worker's task heads (worker/recipe.py TASK_TYPES): one colour each, the same on every chart
const TASKS = ["character_recognition", "confidence_prediction", "hierarchical_classification", "sequence_segmentation",
  "language_modeling"];
const TOTAL_COLOUR = "#000000";
function taskColour(task, i) {
  const k = TASKS.indexOf(task);
  return k >= 0 ? PALETTE[k] : PALETTE[(TASKS.length + i) % (PALETTE.length - 1)];
}
// training loss series of an epoch report: `train_loss` (the weighted total) and `train_loss_<task>`;
// `loss_<task>` is the same per-task loss in older reports and in the step scalars
const LOSS_KEY = /^(train_loss(_.+)?|loss(_.+)?)$/;
const taskOfLoss = (k) => k.replace(/^(train_)?loss_?/, "") || "total";

const view = document.getElementById("view");
let current = null; // the mounted view: {stop()}

// ---------------------------------------------------------------------------------------------
// API access and the token box

export class ApiError extends Error {
  constructor(status, body) {
    const err = body && body.error;
    super(err ? err.message : `HTTP ${status}`);
    this.status = status;
    this.code = err ? err.code : "http_error";
    this.details = (err && err.details) || [];
  }
}

// Answers to GETs with their ETags, by path: a poll sends If-None-Match and an unchanged answer
// comes back as a bodiless 304 (the server checks one number: the run's version).
const answers = new Map();
const ANSWERS_KEPT = 200;

async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const held = method === "GET" ? answers.get(path) : undefined;
  if (held) headers["If-None-Match"] = held.etag;
  let res;
  try {
    res = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, { error: { code: "network", message: `server unreachable (${e.message})` } });
  }
  if (res.status === 304 && held) return held.data;
  if (res.status === 204) return null;
  let data = null;
  try { data = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    const error = new ApiError(res.status, data);
    if (res.status === 401) showTokenBox(error.message);
    throw error;
  }
  const etag = res.headers.get("ETag");
  if (method === "GET" && etag) {
    answers.delete(path);
    answers.set(path, { etag, data });
    if (answers.size > ANSWERS_KEPT) answers.delete(answers.keys().next().value);
  }
  return data;
}

// `?format=columns` pages (one array per field: a third of the bytes of rows) back into the rows
// the views work with.
function epochRows(page) {
  const metricKeys = Object.keys(page.metrics), lrKeys = Object.keys(page.lr);
  const pick = (cols, keys, i) => {
    const out = {};
    for (const k of keys) if (cols[k][i] !== null) out[k] = cols[k][i];
    return out;
  };
  return page.epoch.map((epoch, i) => ({
    epoch, attempt: page.attempt[i], stage: { index: page.stage[i], name: page.stage_names[String(page.stage[i])] },
    step: page.step[i], metrics: pick(page.metrics, metricKeys, i), lr: pick(page.lr, lrKeys, i),
    duration_s: page.duration_s[i], samples_per_s: page.samples_per_s[i], created_at: page.created_at[i],
  }));
}

function stepRows(page) {
  const keys = Object.keys(page.values);
  return page.step.map((step, i) => {
    const out = { step };
    for (const k of keys) if (page.values[k][i] !== null) out[k] = page.values[k][i];
    return out;
  });
}

async function epochPage(runId, after, limit) {
  const page = await api(`/runs/${runId}/epochs?after=${after}&limit=${limit}&format=columns`);
  return { items: page.items ?? (page.rows ??= epochRows(page)), next_cursor: page.next_cursor };
}

function showTokenBox(why) {
  const box = document.getElementById("token-box");
  document.getElementById("token-why").textContent = why || "This server needs an API token.";
  box.hidden = false;
  const input = document.getElementById("token-input");
  input.value = localStorage.getItem(TOKEN_KEY) || "";
  if (document.activeElement !== input) input.focus();
}

function setupTokenBox() {
  const box = document.getElementById("token-box");
  box.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = document.getElementById("token-input").value.trim();
    if (value) localStorage.setItem(TOKEN_KEY, value); else localStorage.removeItem(TOKEN_KEY);
    box.hidden = true;
    route();
  });
  document.getElementById("token-clear").addEventListener("click", () => {
    localStorage.removeItem(TOKEN_KEY);
    document.getElementById("token-input").value = "";
    route();
  });
  document.getElementById("token-button").addEventListener("click", () => {
    if (box.hidden) showTokenBox("Set the API token this browser sends."); else box.hidden = true;
  });
}

// ---------------------------------------------------------------------------------------------
// small DOM helpers: text always goes in as text, never as HTML

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k in node && typeof v !== "string") node[k] = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const KHMER = /[\u1780-\u17FF\u19E0-\u19FF]/;
function text(value) {
  const s = String(value ?? "");
  return KHMER.test(s) ? h("span", { lang: "km", class: "km" }, s) : document.createTextNode(s);
}

function statusBadge(status) { return h("span", { class: `status ${status}`, "data-status": status }, status); }

function age(iso) {
  if (!iso) return "–";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.floor(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d`;
}
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
const pct = (v) => (typeof v === "number" ? `${(v * 100).toFixed(1)}%` : "–");
const lrText = (v) => (typeof v === "number" ? v.toExponential(2) : "–");
const stageText = (run) => `${run.stage.name} (${run.stage.index}/${run.stage_count})`;
function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n, i = -1;
  do { v /= 1024; i++; } while (v >= 1024 && i < units.length - 1);
  return `${v.toFixed(1)} ${units[i]}`;
}

function errorBox(error) {
  const box = h("div", { class: "alert error", role: "alert" },
    h("strong", {}, error.status ? `${error.status} ${error.code}: ` : ""), error.message);
  if (error.details && error.details.length) {
    box.append(h("ul", {}, error.details.map((d) => h("li", {}, h("code", {}, d.path), " ", d.message))));
  }
  return box;
}

function poller(fn, ms) {
  let timer = null, stopped = false, busy = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden && !busy) {
      busy = true;
      try { await fn(); } catch (e) { console.warn("poll failed", e); } finally { busy = false; }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  return () => { stopped = true; clearTimeout(timer); };
}

// ---------------------------------------------------------------------------------------------
// Runs list

function runsView() {
  const statusFilter = new URLSearchParams(location.hash.split("?")[1] || "").get("status") || "";
  const select = h("select", { id: "status-filter", "aria-label": "Filter by status" },
    h("option", { value: "" }, "all"),
    h("option", { value: "queued,running,pausing,paused,stopping" }, "active"),
    STATUSES.map((s) => h("option", { value: s }, s)));
  select.value = statusFilter;
  select.addEventListener("change", () => { location.hash = select.value ? `#/?status=${select.value}` : "#/"; });
  const body = h("tbody");
  const message = h("div");
  const table = h("div", { class: "table-wrap" }, h("table", { id: "runs-table" },
    h("thead", {}, h("tr", {}, h("th", {}, h("span", { class: "sr-only" }, "Compare")),
      h("th", {}, "Name"), h("th", {}, "Status"), h("th", {}, "Stage"), h("th", { class: "num" }, "Epoch"),
      h("th", { class: "num" }, "Val CER"), h("th", { class: "num" }, "Seq acc"), h("th", { class: "num" }, "Eff. lr"),
      h("th", {}, "Worker"), h("th", { class: "num" }, "Age"))), body));
  const create = createRunForm();
  const toggle = h("button", { type: "button", id: "new-run", class: "secondary", onclick: () => {
    create.hidden = !create.hidden;
    if (!create.hidden) create.querySelector("input").focus();
  } }, "New run");
  // runs picked for the compare view, kept across polls
  const chosen = new Set();
  const compare = h("button", { type: "button", id: "compare-runs", class: "secondary", disabled: true,
    onclick: () => { location.hash = `#/compare?runs=${[...chosen].sort((a, b) => a - b).join(",")}`; } }, "Compare selected");
  const pick = (id, on) => {
    if (on) chosen.add(id); else chosen.delete(id);
    compare.disabled = chosen.size < 2;
    compare.textContent = chosen.size ? `Compare selected (${chosen.size})` : "Compare selected";
  };
  view.replaceChildren(
    h("section", { class: "card" },
      h("div", { class: "toolbar" }, h("h1", {}, "Runs"), h("label", {}, "Status", select), compare, toggle),
      create, message, table));

  let workers = new Map();
  async function load() {
    const [page, ws] = await Promise.all([
      api(`/runs?limit=200${statusFilter ? `&status=${encodeURIComponent(statusFilter)}` : ""}`),
      api("/workers").catch(() => []),
    ]);
    workers = new Map(ws.map((w) => [w.id, w]));
    message.replaceChildren();
    body.replaceChildren(...page.items.map((run) => h("tr", { "data-run-id": run.id },
      h("td", {}, h("input", { type: "checkbox", class: "pick", "aria-label": `compare run ${run.id}`, checked: chosen.has(run.id),
        onchange: (ev) => pick(run.id, ev.target.checked) })),
      h("td", {}, h("a", { href: `#/runs/${run.id}` }, text(run.name))),
      h("td", {}, statusBadge(run.status)),
      h("td", {}, text(stageText(run))),
      h("td", { class: "num" }, `${run.epoch}/${run.max_epochs}`),
      h("td", { class: "num" }, formatMetric(run.latest.val_cer)),
      h("td", { class: "num" }, pct(run.latest.val_sequence_accuracy)),
      h("td", { class: "num" }, lrText(run.lr.effective)),
      h("td", {}, run.worker_id ? text(`${workers.get(run.worker_id)?.name || "worker"} #${run.worker_id}`) : "–"),
      h("td", { class: "num", title: when(run.created_at) }, age(run.created_at)))));
    if (!page.items.length) body.append(h("tr", {}, h("td", { colspan: 10, class: "muted" }, "No runs yet.")));
    view.dataset.loaded = "runs";
  }
  const guarded = () => load().catch((e) => message.replaceChildren(errorBox(e)));
  guarded();
  return { stop: poller(load, POLL_MS) };
}

const formatMetric = (v) => (typeof v === "number" ? v.toFixed(3) : "–");

// Where in the pasted YAML/JSON a field path points, best effort: `recipe.a.b[2].c` → line number.
function locate(source, path) {
  const parts = path.replace(/^recipe\.?/, "").match(/[^.[\]]+|\[\d+\]/g) || [];
  const lines = source.split("\n");
  let line = 0, indent = -1, found = null;
  for (const part of parts) {
    const index = part.startsWith("[") ? Number(part.slice(1, -1)) : null;
    let hit = null;
    if (index !== null) {
      let count = -1, itemIndent = null;
      for (let i = line; i < lines.length; i++) {
        const m = lines[i].match(/^(\s*)- /);
        if (!m) continue;
        if (itemIndent === null && m[1].length > indent - 1) itemIndent = m[1].length;
        if (m[1].length === itemIndent && ++count === index) { hit = i; indent = m[1].length + 1; break; }
      }
    } else {
      const key = new RegExp(`(^|[\\s{,"'-])${part.replace(/[^\w]/g, "\\$&")}["']?\\s*:`);
      for (let i = line; i < lines.length; i++) {
        const lead = lines[i].match(/^\s*/)[0].length;
        if (i > line && lead <= indent && lines[i].trim() && !lines[i].trim().startsWith("#") && found !== null
            && !lines[i].trim().startsWith("-")) break;
        if (key.test(lines[i])) { hit = i; indent = lead; break; }
      }
    }
    if (hit === null) return found === null ? null : found + 1;
    found = hit; line = hit;
  }
  return found === null ? null : found + 1;
}

function createRunForm() {
  const name = h("input", { id: "run-name", name: "name", required: true, placeholder: "khmer-crnn-1" });
  const tags = h("input", { id: "run-tags", name: "tags", placeholder: "baseline, khmer" });
  const priority = h("input", { id: "run-priority", name: "priority", type: "number", value: "0" });
  const recipe = h("textarea", { id: "run-recipe", name: "recipe", spellcheck: false,
    placeholder: "Paste a recipe (YAML or JSON). Empty = the default Khmer recipe." });
  const file = h("input", { id: "run-recipe-file", type: "file", accept: ".yaml,.yml,.json,application/json,text/yaml" });
  file.addEventListener("change", async () => { if (file.files[0]) recipe.value = await file.files[0].text(); });
  const errors = {
    name: h("ul", { class: "field-errors", "data-for": "name" }),
    tags: h("ul", { class: "field-errors", "data-for": "tags" }),
    priority: h("ul", { class: "field-errors", "data-for": "priority" }),
    recipe: h("ul", { class: "field-errors", "data-for": "recipe" }),
  };
  const summary = h("div");
  const form = h("form", { id: "create-run", class: "card", hidden: true, novalidate: true },
    h("h2", {}, "Create a run"),
    h("div", { class: "create-grid" },
      h("div", { class: "field" }, h("label", { for: "run-name" }, "Name", name), errors.name),
      h("div", { class: "field" }, h("label", {}, "Tags (comma-separated)", tags), errors.tags),
      h("div", { class: "field" }, h("label", {}, "Priority", priority), errors.priority)),
    h("div", { class: "field" }, h("label", {}, "Recipe (YAML or JSON)", recipe),
      h("label", {}, "…or upload a file", file), errors.recipe),
    summary,
    h("button", { type: "submit" }, "Create run"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    Object.values(errors).forEach((ul) => ul.replaceChildren());
    summary.replaceChildren();
    const body = { name: name.value, recipe: recipe.value, priority: Number(priority.value || 0),
      tags: tags.value.split(",").map((t) => t.trim()).filter(Boolean) };
    try {
      const run = await api("/runs", { method: "POST", body });
      location.hash = `#/runs/${run.id}`;
    } catch (e) {
      const placed = [];
      for (const d of e.details) {
        const field = Object.keys(errors).find((f) => d.path === f || d.path.startsWith(`${f}.`) || d.path.startsWith(`${f}[`));
        const target = errors[field || "recipe"];
        const line = field === "recipe" || !field ? locate(recipe.value, d.path) : null;
        const item = h("li", { class: "field-error", "data-path": d.path }, h("code", {}, d.path), d.message,
          line ? h("button", { type: "button", class: "link line", onclick: () => selectLine(recipe, line) }, `line ${line}`) : null);
        target.append(item);
        placed.push(d.path);
      }
      summary.append(h("div", { class: "alert error", role: "alert" },
        h("strong", {}, `${e.status || ""} ${e.code}: `), placed.length ? `${placed.length} problem(s) — see the fields above.` : e.message));
    }
  });
  return form;
}

function selectLine(textarea, line) {
  const lines = textarea.value.split("\n");
  const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
  textarea.focus();
  textarea.setSelectionRange(start, start + lines[line - 1].length);
  const lh = parseFloat(getComputedStyle(textarea).lineHeight) || 16;
  textarea.scrollTop = Math.max(0, (line - 3) * lh);
}

// ---------------------------------------------------------------------------------------------
// One run

function runView(runId) {
  const t0 = performance.now();
  const state = {
    run: null, stages: null, epochs: [], steps: [], events: new Map(), checkpoints: [],
    lastEpoch: -1, lastStep: -1, lastEvent: 0, tracked: new Set(), checkpointKey: null, stagesKey: null,
    metric: params.get("metric") || null, metricKeys: "", lastLog: 0, logAttempt: "", logLines: 0,
  };
  const el = {
    head: h("section", { class: "card run-head-card" }),
    controls: h("section", { class: "card" }),
    notice: h("div", { id: "notice" }),
    requests: h("ul", { class: "requests", id: "requests" }),
    charts: h("section", { class: "charts" }),
    timeline: h("ol", { class: "timeline", id: "stage-timeline" }),
    events: h("tbody", { id: "event-log" }),
    checkpoints: h("tbody", { id: "checkpoints" }),
    latest: h("dl", { class: "kv", id: "latest" }),
    recs: h("div", { id: "recommendations" }),
    metricSelect: h("select", { id: "metric-select", "aria-label": "Metric to chart" }),
    notes: h("section", { class: "card", id: "notes" }),
    logs: h("div", { id: "log-panel", class: "log-panel", role: "log", "aria-live": "off", tabindex: "0" }),
    logAttempt: h("select", { id: "log-attempt", "aria-label": "Attempt" }, h("option", { value: "" }, "every attempt")),
    logFollow: h("input", { type: "checkbox", id: "log-follow", checked: true }),
    logDropped: h("span", { id: "log-dropped", class: "muted" }),
  };
  const charts = {};
  for (const [key, title, note] of [
    ["loss", "Training loss per task", "train_loss (total, weighted) and train_loss_<task>"],
    ["val", "Validation CER and sequence accuracy", "dashed: each stage's success threshold"],
    ["lr", "Effective learning rate", "effective = schedule × stage multiplier × scale × automatic scale, or an absolute lr"],
    ["steps", "Step-level loss", "downsampled step scalars: loss and loss_<task>"],
    ["weights", "Task weights", "task_weight_<task>: the weighting's current multipliers"],
    ["metric", "Any epoch metric", "every metric the worker reports, one at a time"],
  ]) {
    charts[key] = h("div", { class: "chart", "data-chart": key });
    const heading = key === "metric"
      ? h("div", { class: "chart-head" }, h("h3", {}, title), el.metricSelect) : h("h3", {}, title);
    el.charts.append(h("figure", { class: "card chart-card" }, heading, charts[key],
      h("p", { class: "chart-note" }, note)));
  }
  el.metricSelect.addEventListener("change", () => { state.metric = el.metricSelect.value; renderCharts(); });
  el.logAttempt.addEventListener("change", () => {
    state.logAttempt = el.logAttempt.value; state.lastLog = 0; state.logLines = 0;
    el.logs.replaceChildren(); fetchLogs().catch((e) => notify(errorBox(e)));
  });
  view.replaceChildren(
    h("p", {}, h("a", { href: "#/" }, "← all runs")),
    el.head, el.controls, el.notes,
    el.charts,
    h("section", { class: "card" }, h("div", { class: "toolbar" }, h("h2", {}, "Logs"), el.logAttempt,
      h("label", {}, el.logFollow, " follow"), el.logDropped), el.logs),
    h("section", { class: "grid2" },
      h("div", { class: "card" }, h("h2", {}, "Stage timeline"), el.recs, h("div", { class: "scroll" }, el.timeline)),
      h("div", { class: "card" }, h("h2", {}, "Latest epoch"), el.latest)),
    h("section", { class: "card" }, h("h2", {}, "Event log"), h("div", { class: "table-wrap scroll" },
      h("table", {}, h("thead", {}, h("tr", {}, h("th", { class: "num" }, "#"), h("th", {}, "Time"), h("th", {}, "Kind"),
        h("th", {}, "Actor"), h("th", {}, "Details"), h("th", {}, "State"))), el.events))),
    h("section", { class: "card" }, h("h2", {}, "Checkpoints"), h("div", { class: "table-wrap scroll" },
      h("table", {}, h("thead", {}, h("tr", {}, h("th", { class: "num" }, "#"), h("th", { class: "num" }, "Epoch"),
        h("th", { class: "num" }, "Step"), h("th", { class: "num" }, "Stage"), h("th", { class: "num" }, "Size"),
        h("th", { class: "num" }, "Val CER"), h("th", {}, "sha256"), h("th", {}, "File"))), el.checkpoints))),
  );

  // -- fetching -------------------------------------------------------------------------------
  const base = `/runs/${runId}`;

  async function fetchEpochs() {
    let added = 0;
    for (;;) {
      const page = await epochPage(runId, state.lastEpoch, EPOCH_PAGE);
      for (const e of page.items) {
        if (e.epoch <= state.lastEpoch) continue;
        state.epochs.push(e);
        state.lastEpoch = e.epoch;
        added++;
      }
      if (!page.next_cursor) return added;
    }
  }

  async function fetchSteps(initial) {
    const columns = await api(`${base}/steps?after=${state.lastStep}&max_points=${STEP_POINTS}&format=columns`);
    const page = { items: columns.rows ??= stepRows(columns) };
    for (const s of page.items) if (s.step > state.lastStep) { state.steps.push(s); state.lastStep = s.step; }
    if (!initial && state.steps.length > STEP_KEEP) state.steps = state.steps.filter((_, i) => i % 2 === 0 || i === state.steps.length - 1);
    return page.items.length;
  }

  // Events: new ones after the cursor, plus any request still waiting for the worker (so we see
  // it turn from requested to applied), by starting the page just before the oldest one waiting.
  async function fetchEvents() {
    const waiting = [...state.events.values()].filter((e) => isWaiting(e)).map((e) => e.id);
    let after = waiting.length ? Math.min(state.lastEvent, Math.min(...waiting) - 1) : state.lastEvent;
    let changed = 0;
    for (let pages = 0; pages < 20; pages++) {
      const page = await api(`${base}/events?after=${after}&limit=1000`);
      for (const e of page.items) {
        const old = state.events.get(e.id);
        if (!old || old.applied_at !== e.applied_at) { state.events.set(e.id, e); changed++; }
        state.lastEvent = Math.max(state.lastEvent, e.id);
      }
      if (!page.next_cursor) break;
      after = Number(page.next_cursor);
    }
    return changed;
  }

  function leaseEndAfter(id) {
    for (const e of state.events.values()) if (e.id > id && LEASE_ENDS.has(e.kind)) return true;
    return false;
  }
  function isWaiting(e) { return WORKER_KINDS.has(e.kind) && !e.applied_at && !leaseEndAfter(e.id); }
  function eventState(e) {
    if (!WORKER_KINDS.has(e.kind)) return ["done", ""];
    if (e.applied_at) return ["applied", `applied at step ${e.applied_step}${epochOfStepText(e.applied_step)}`];
    if (leaseEndAfter(e.id)) return ["lapsed", "not applied by a worker (run was not being trained)"];
    return ["requested", "requested — waiting for the worker"];
  }

  // Logs: only lines after the last one shown; the panel keeps the newest LOG_KEEP lines.
  async function fetchLogs() {
    for (let pages = 0; pages < 10; pages++) {
      const attempt = state.logAttempt ? `&attempt=${state.logAttempt}` : "";
      const page = await api(`${base}/logs?after=${state.lastLog}&limit=1000${attempt}`);
      appendLogs(page.items);
      const dropped = Object.entries(page.dropped || {}).filter(([a, n]) => n && (!state.logAttempt || a === state.logAttempt));
      el.logDropped.textContent = dropped.length
        ? `oldest lines dropped by the size cap: ${dropped.map(([a, n]) => `${n} (attempt ${a})`).join(", ")}` : "";
      if (!page.next_cursor) return;
    }
  }

  function appendLogs(lines) {
    if (!lines.length) return;
    const atBottom = el.logs.scrollTop + el.logs.clientHeight >= el.logs.scrollHeight - 4;
    el.logs.append(...lines.map((l) => h("div", { class: `log-line level-${l.level.toLowerCase()}`, "data-id": l.id,
      "data-attempt": l.attempt, title: `${l.ts} · attempt ${l.attempt}` },
      h("span", { class: "muted" }, `${new Date(l.ts).toLocaleTimeString()} [${l.attempt}] ${l.source}: `), text(l.message))));
    state.lastLog = lines[lines.length - 1].id;
    state.logLines += lines.length;
    while (state.logLines > LOG_KEEP) { el.logs.firstChild.remove(); state.logLines--; }
    if (el.logFollow.checked || atBottom) el.logs.scrollTop = el.logs.scrollHeight;
  }

  async function refresh(initial) {
    const [run, epochsAdded, stepsAdded, eventsChanged] = await Promise.all([
      api(base), fetchEpochs(), fetchSteps(initial), fetchEvents(), fetchLogs(),
    ]);
    const runChanged = JSON.stringify(run) !== JSON.stringify(state.run);
    state.run = run;
    const stagesKey = `${run.stage.index}|${run.stage_held}|${run.epoch}|${run.status}`;
    let stagesChanged = false;
    if (stagesKey !== state.stagesKey) {
      state.stages = await api(`${base}/stages`);
      state.stagesKey = stagesKey;
      stagesChanged = true;
    }
    const ckKey = `${run.epoch}|${run.step}|${run.status}|${[...state.events.values()].filter((e) => e.kind === "checkpoint_requested" && e.applied_at).length}`;
    let ckChanged = false;
    if (ckKey !== state.checkpointKey) {
      state.checkpoints = await api(`${base}/checkpoints`);
      state.checkpointKey = ckKey;
      ckChanged = true;
    }
    if (initial || runChanged || stagesChanged) { renderHead(); renderControls(); }
    if (initial || runChanged) { renderNotes(); renderAttempts(); }
    if (initial || epochsAdded || stepsAdded || eventsChanged || stagesChanged) renderCharts();
    if (initial || stagesChanged) renderTimeline();
    if (initial || eventsChanged) { renderEvents(); renderRequests(); }
    if (initial || ckChanged) renderCheckpoints();
    if (initial || epochsAdded) renderLatest();
  }

  // -- mapping steps to epochs ------------------------------------------------------------------
  function epochOfStep(step) {
    const eps = state.epochs;
    if (!eps.length || step === null || step === undefined) return null;
    let lo = 0, hi = eps.length - 1;
    if (step > eps[hi].step) {
      const spe = state.run?.recipe?.training?.steps_per_epoch || Math.max(1, eps[hi].step - (eps[hi - 1]?.step || 0));
      return eps[hi].epoch + Math.min(1, (step - eps[hi].step) / spe);
    }
    while (lo < hi) { const mid = (lo + hi) >> 1; if (eps[mid].step < step) lo = mid + 1; else hi = mid; }
    const e = eps[lo];
    const prev = lo > 0 ? eps[lo - 1] : { epoch: e.epoch - 1, step: 0 };
    const span = e.step - prev.step;
    return prev.epoch + (span > 0 ? (step - prev.step) / span : 1) * (e.epoch - prev.epoch);
  }
  function epochOfStepText(step) {
    const x = epochOfStep(step);
    return x === null ? "" : ` (epoch ${Math.max(1, Math.ceil(x - 1e-9))})`;
  }

  // -- rendering --------------------------------------------------------------------------------
  function renderHead() {
    const run = state.run;
    el.head.replaceChildren(h("div", { class: "run-head" },
      h("h1", { id: "run-name" }, text(run.name), h("span", { class: "muted" }, ` #${run.id}`)),
      statusBadge(run.status),
      h("div", { class: "facts" },
        h("span", {}, "stage ", h("b", { id: "run-stage" }, text(stageText(run))), run.stage_held ? " (held)" : ""),
        h("span", {}, "epoch ", h("b", { id: "run-epoch" }, `${run.epoch}/${run.max_epochs}`)),
        h("span", {}, "step ", h("b", {}, String(run.step))),
        h("span", {}, "effective lr ", h("b", { id: "run-lr" }, lrText(run.lr.effective)),
          run.lr.override ? h("span", { class: "muted" }, ` (override ${JSON.stringify(run.lr.override)})`) : "",
          run.lr.auto_scale !== 1 ? h("span", { class: "muted" }, ` (automatic ×${run.lr.auto_scale})`) : ""),
        h("span", {}, "attempt ", h("b", {}, `${run.attempt}/${run.max_restarts + 1}`)),
        h("span", {}, "worker ", h("b", {}, run.worker_id ? `#${run.worker_id}` : "–")),
        h("span", {}, "created ", h("b", { title: when(run.created_at) }, `${age(run.created_at)} ago`)),
        run.tags.length ? h("span", {}, "tags ", h("b", {}, run.tags.join(", "))) : null)),
    run.error ? h("div", { class: "alert error" }, text(run.error)) : "");
  }

  function renderControls() {
    const run = state.run;
    const stages = state.stages?.stages || [];
    const stageSelect = h("select", { id: "stage-select", "aria-label": "Stage to jump to" },
      stages.map((s) => h("option", { value: String(s.index), selected: s.index === run.stage.index }, `${s.index} · ${s.name}`)));
    const lrInput = h("input", { id: "lr-value", type: "text", inputmode: "decimal", placeholder: "3e-4 or 0.5",
      "aria-label": "Learning rate or scale factor" });
    // Controls are rebuilt when the run changes (every epoch): keep what the person was typing or choosing.
    const typed = document.getElementById("lr-value");
    const chosen = document.getElementById("stage-select");
    const hadFocus = document.activeElement?.id;
    if (typed) lrInput.value = typed.value;
    if (chosen?.dataset.touched) { stageSelect.value = chosen.value; stageSelect.dataset.touched = "1"; }
    stageSelect.addEventListener("change", () => { stageSelect.dataset.touched = "1"; });
    const act = (label, opts) => h("button", { type: "button", class: opts.cls || "", "data-action": opts.action,
      onclick: () => control(opts) }, label);
    const lrNumber = () => {
      const v = Number(lrInput.value.trim());
      if (!lrInput.value.trim() || !Number.isFinite(v)) { notify(errorBox(new ApiError(0, { error: { code: "input", message: "enter a number, e.g. 3e-4 or 0.5" } }))); return null; }
      return v;
    };
    el.controls.replaceChildren(h("div", { class: "controls" },
      h("fieldset", {}, h("legend", {}, "Run"),
        act("Pause", { action: "pause", path: "/pause", body: {}, ask: `Pause run “${run.name}”? The worker saves a checkpoint and releases it.` }),
        act("Resume", { action: "resume", path: "/resume", ask: `Resume run “${run.name}”?` }),
        act("Stop", { action: "stop", cls: "danger", path: "/stop", body: {}, ask: `Stop run “${run.name}”? It ends as stopped after a final checkpoint.` }),
        act("Checkpoint now", { action: "checkpoint", cls: "secondary", path: "/checkpoint", ask: "Ask the worker to save a checkpoint at its next step?" })),
      h("fieldset", {}, h("legend", {}, "Curriculum"),
        stageSelect,
        h("button", { type: "button", "data-action": "jump", onclick: () => control({
          path: "/stage", body: { to: Number(stageSelect.value) },
          ask: `Jump run “${run.name}” to stage ${stageSelect.selectedOptions[0]?.textContent}?` }) }, "Jump to stage"),
        act("Advance", { action: "advance", cls: "secondary", path: "/stage/advance", body: {}, ask: "Advance to the next stage now?" }),
        act(run.stage_held ? "Release hold" : "Hold stage", { action: "hold", cls: "secondary", path: "/stage/hold",
          body: { hold: !run.stage_held }, ask: run.stage_held ? "Let the curriculum move stages again?" : "Hold the current stage (no automatic moves)?" })),
      h("fieldset", {}, h("legend", {}, "Learning rate"),
        lrInput,
        h("button", { type: "button", "data-action": "lr-set", onclick: () => {
          const v = lrNumber(); if (v !== null) control({ path: "/lr", body: { lr: v }, ask: `Set the learning rate to ${v}?` });
        } }, "Set lr"),
        h("button", { type: "button", class: "secondary", "data-action": "lr-scale", onclick: () => {
          const v = lrNumber(); if (v !== null) control({ path: "/lr", body: { scale: v }, ask: `Scale the learning rate by ×${v}?` });
        } }, "Scale lr ×"),
        act("Clear override", { action: "lr-clear", cls: "secondary", path: "/lr", body: { clear: true }, ask: "Clear the learning-rate override?" }))),
    el.notice, el.requests);
    if (hadFocus === "lr-value") lrInput.focus();
    else if (hadFocus === "stage-select") stageSelect.focus();
  }

  function notify(node) { el.notice.replaceChildren(node || ""); }

  function renderAttempts() {
    const have = el.logAttempt.options.length - 1;
    for (let a = have + 1; a <= state.run.attempt; a++) el.logAttempt.append(h("option", { value: String(a) }, `attempt ${a}`));
  }

  // Name, tags and the markdown note (shown as written), edited with PATCH /runs/{id}.
  function renderNotes() {
    const run = state.run;
    if (el.notes.querySelector("form:not([hidden])")) return; // do not overwrite an edit in progress
    const name = h("input", { id: "edit-name", value: run.name, required: true });
    const tags = h("input", { id: "edit-tags", value: run.tags.join(", "), placeholder: "baseline, khmer" });
    const note = h("textarea", { id: "edit-note", rows: 6, placeholder: "Markdown: what this run is for, what you saw…" });
    note.value = run.note || "";
    const problems = h("div");
    const form = h("form", { id: "edit-run", hidden: true },
      h("div", { class: "create-grid" }, h("label", {}, "Name", name), h("label", {}, "Tags (comma-separated)", tags)),
      h("label", {}, "Note (markdown)", note), problems,
      h("button", { type: "submit" }, "Save"), " ",
      h("button", { type: "button", class: "secondary", onclick: () => { form.hidden = true; shown.hidden = false; } }, "Cancel"));
    const shown = h("div", {},
      run.note ? h("div", { id: "run-note", class: "note" }, text(run.note)) : h("p", { class: "muted", id: "run-note" }, "No note yet."),
      h("button", { type: "button", class: "secondary", id: "edit-run-button", onclick: () => { form.hidden = false; shown.hidden = true; name.focus(); } },
        "Edit name, tags, note"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        state.run = await api(base, { method: "PATCH", body: { name: name.value,
          tags: tags.value.split(",").map((t) => t.trim()).filter(Boolean), note: note.value } });
        form.hidden = true;
        renderHead(); renderNotes();
        await fetchEvents(); renderEvents();
      } catch (e) { problems.replaceChildren(errorBox(e)); }
    });
    el.notes.replaceChildren(h("h2", {}, "Notes"), shown, form);
  }

  async function control({ path, body, ask }) {
    if (!window.confirm(ask)) return;
    try {
      const answer = await api(base + path, { method: "POST", body: body ?? {} });
      state.tracked.add(answer.event_id);
      notify(h("div", { class: "alert info", role: "status" }, `Accepted: event #${answer.event_id}.`));
      state.run = answer.run;
      renderHead(); renderControls();
      await fetchEvents();
      renderEvents(); renderRequests(); renderCharts();
    } catch (e) {
      notify(errorBox(e));
    }
  }

  function renderRequests() {
    const items = [...state.tracked].map((id) => state.events.get(id)).filter(Boolean);
    el.requests.replaceChildren(...items.map((e) => {
      const [st, label] = eventState(e);
      return h("li", { "data-event-id": e.id, "data-state": st },
        `#${e.id} ${e.kind} ${describe(e)} — `, h("span", { class: `state state-${st}` }, label || st));
    }));
  }

  function describe(e) {
    const p = e.payload || {};
    switch (e.kind) {
      case "lr_set": return `lr → ${p.lr}`;
      case "lr_scale": return `lr × ${p.scale}${p.auto_scale !== undefined && p.auto_scale !== 1 ? `, automatic ×${p.auto_scale} kept` : ""}`;
      case "lr_reduce": return `lr × ${p.factor} (${p.reason})`;
      case "lr_clear": return "override cleared";
      case "stage_set": case "stage_advance": return `stage ${p.from_stage ?? "?"} → ${p.to_stage}${p.to_name ? ` (${p.to_name})` : ""}`;
      case "stage_hold": return p.hold ? "hold on" : "hold off";
      case "stage_transition": return `stage ${p.from_stage} → ${p.to_stage} (${p.reason}) at epoch ${p.epoch}`;
      case "run_updated": return Object.entries(p).map(([k, v]) => (k === "note" ? "note edited"
        : `${k}: ${JSON.stringify(v.from)} → ${JSON.stringify(v.to)}`)).join("; ");
      default: {
        const keys = Object.entries(p).filter(([, v]) => v !== null && typeof v !== "object");
        return keys.map(([k, v]) => `${k}=${v}`).join(" ");
      }
    }
  }
  const markerLabel = (e) => ({ lr_set: "lr", lr_scale: "lr×", lr_clear: "lr", lr_reduce: "lr↓", stage_set: "stage", stage_advance: "stage",
    stage_hold: "hold", checkpoint_requested: "ckpt", pause_requested: "pause", stop_requested: "stop" }[e.kind] || e.kind);

  function renderCharts() {
    const eps = state.epochs;
    const run = state.run;
    const keys = new Set();
    for (const e of eps) for (const k in e.metrics) keys.add(k);
    const numeric = (k) => eps.map((e) => [e.epoch, typeof e.metrics[k] === "number" ? e.metrics[k] : NaN]).filter((p) => !Number.isNaN(p[1]));
    const series = (list) => list.sort().map((k, i) => ({ name: k, points: numeric(k), color: PALETTE[i % PALETTE.length] }));

    // stage bands from the epochs' stages
    const bands = [];
    for (const e of eps) {
      const last = bands[bands.length - 1];
      if (last && last.stage === e.stage.index && last.x1 === e.epoch - 1) last.x1 = e.epoch;
      else bands.push({ stage: e.stage.index, x0: e.epoch - 1, x1: e.epoch, label: `stage ${e.stage.index}: ${e.stage.name}`,
        short: `${e.stage.index} ${e.stage.name}`, color: BAND_COLOURS[(e.stage.index - 1) % BAND_COLOURS.length] });
    }
    // overrides where they took effect
    const applied = [...state.events.values()].filter((e) => WORKER_KINDS.has(e.kind) && e.applied_step !== null && e.applied_step !== undefined);
    const epochMarkers = applied.map((e) => ({ id: e.id, kind: e.kind, x: epochOfStep(e.applied_step) ?? 0, label: markerLabel(e),
      title: `#${e.id} ${e.kind} ${describe(e)} — applied at step ${e.applied_step}${epochOfStepText(e.applied_step)} by ${e.actor}` }));
    const stepMarkers = applied.map((e) => ({ ...epochMarkers.find((m) => m.id === e.id), x: e.applied_step }));
    const xMax = Math.max(run.epoch, eps.length ? eps[eps.length - 1].epoch : 0, 1);

    const lossKeys = [...keys].filter((k) => LOSS_KEY.test(k));
    const hasTrainLoss = lossKeys.some((k) => k.startsWith("train_loss"));
    lineChart(charts.loss, { title: "training loss", xLabel: "epoch", logY: "auto", bands, markers: epochMarkers, xMin: 0, xMax,
      series: lossSeries(lossKeys.filter((k) => !hasTrainLoss || k.startsWith("train_")), numeric) });

    // validation: CER and sequence accuracy, plus each stage's own metric; thresholds per stage visit
    const stageDefs = state.stages?.stages || [];
    const defaultMetric = run.recipe?.curriculum?.metric || "val_sequence_accuracy";
    const metricOf = (index) => stageDefs[index - 1]?.metric || defaultMetric;
    const valKeys = new Set([...keys].filter((k) => /^val_.*(cer|sequence_accuracy)$/.test(k)));
    for (const s of stageDefs) if (keys.has(metricOf(s.index))) valKeys.add(metricOf(s.index));
    const valSeries = series([...valKeys]);
    const colourOf = (k) => valSeries.find((s) => s.name === k)?.color || "#000";
    const hlines = bands.map((b) => {
      const def = stageDefs[b.stage - 1];
      if (!def) return null;
      return { x0: b.x0, x1: b.x1, y: def.success_threshold, color: colourOf(metricOf(b.stage)),
        label: `stage ${b.stage} threshold ${metricOf(b.stage)} ${def.success_threshold}` };
    }).filter(Boolean);
    const cur = stageDefs[run.stage.index - 1];
    if (cur) {
      const lastBand = bands[bands.length - 1];
      const from = lastBand && lastBand.stage === run.stage.index ? lastBand.x0 : (lastBand ? lastBand.x1 : 0);
      hlines.push({ x0: from, x1: Math.max(xMax, from + 1), y: cur.success_threshold, color: colourOf(metricOf(run.stage.index)), current: true,
        label: `${cur.name} threshold ${cur.success_threshold}` });
    }
    lineChart(charts.val, { title: "validation", xLabel: "epoch", series: valSeries, bands, markers: epochMarkers, hlines,
      yMin: 0, xMin: 0, xMax });

    const lrPoints = eps.map((e) => [e.epoch, Number(e.lr?.effective)]).filter((p) => Number.isFinite(p[1]));
    const schedPoints = eps.map((e) => [e.epoch, Number(e.lr?.schedule)]).filter((p) => Number.isFinite(p[1]));
    lineChart(charts.lr, { title: "effective lr", xLabel: "epoch", logY: true, bands, markers: epochMarkers, xMin: 0, xMax,
      series: [{ name: "effective", points: lrPoints, color: PALETTE[1], stepped: true },
        { name: "schedule", points: schedPoints, color: PALETTE[0], dash: "5 3", stepped: true }] });

    const stepKeys = new Set();
    for (const s of state.steps) for (const k in s) if (k !== "step" && k !== "points") stepKeys.add(k);
    const stepPoints = (k) => state.steps.filter((s) => typeof s[k] === "number").map((s) => [s.step, s[k]]);
    let stepSeries = lossSeries([...stepKeys].filter((k) => LOSS_KEY.test(k)), stepPoints);
    if (!stepSeries.length) {
      stepSeries = [...stepKeys].filter((k) => !/lr|grad|scale|samples/.test(k)).sort()
        .map((k, i) => ({ name: k, points: stepPoints(k), color: PALETTE[i % PALETTE.length] }));
    }
    lineChart(charts.steps, { title: "step loss", xLabel: "step", logY: "auto", markers: stepMarkers.filter((m) => m.x !== undefined),
      xMin: 0, series: stepSeries });

    const weightKeys = [...keys].filter((k) => k.startsWith("task_weight_")).sort();
    lineChart(charts.weights, { title: "task weights", xLabel: "epoch", bands, markers: epochMarkers, xMin: 0, xMax,
      series: weightKeys.map((k, i) => {
        const task = k.replace(/^task_weight_/, "");
        return { name: task, points: numeric(k), color: taskColour(task, i) };
      }) });

    // any other metric, picked from the select (remembered while the page is open; ?metric= preselects one)
    const metricKeys = [...keys].filter((k) => eps.some((e) => typeof e.metrics[k] === "number")).sort();
    if (metricKeys.join("|") !== state.metricKeys) {
      state.metricKeys = metricKeys.join("|");
      el.metricSelect.replaceChildren(...metricKeys.map((k) => h("option", { value: k }, k)));
    }
    const fallback = ["val_loss", "val_cer", "train_loss"].find((k) => metricKeys.includes(k)) || metricKeys[0];
    const metric = metricKeys.includes(state.metric) ? state.metric : fallback;
    if (metric) el.metricSelect.value = metric;
    lineChart(charts.metric, { title: metric || "metric", xLabel: "epoch", logY: "auto", bands, markers: epochMarkers, xMin: 0, xMax,
      series: metric ? [{ name: metric, points: numeric(metric), color: PALETTE[0] }] : [] });
  }

  // total first (black), then one colour per task, as on the other charts
  function lossSeries(keys, pointsOf) {
    return keys.map((k) => [k, taskOfLoss(k)]).sort(([, a], [, b]) => (a === "total" ? -1 : b === "total" ? 1 : a.localeCompare(b)))
      .map(([k, task], i) => ({ name: task, key: k, points: pointsOf(k), color: task === "total" ? TOTAL_COLOUR : taskColour(task, i) }));
  }

  function renderTimeline() {
    const st = state.stages;
    if (!st) return;
    el.recs.replaceChildren(...(st.recommendations || []).map((r) =>
      h("div", { class: "alert info" }, h("strong", {}, `${r.kind}: `), text(r.message))));
    el.timeline.replaceChildren(...st.transitions.slice().reverse().map((t) => h("li", { "data-reason": t.reason },
      h("span", { class: "when", title: when(t.created_at) }, `epoch ${t.epoch}`),
      h("span", {},
        h("span", { class: "stage-dot", style: `background:${BAND_COLOURS[(t.to_stage - 1) % BAND_COLOURS.length]}` }),
        t.from_stage ? [text(`${t.from_stage} ${t.from_name}`), " → "] : "start → ",
        text(`${t.to_stage} ${t.to_name}`), " ",
        h("span", { class: `reason ${t.reason}` }, t.reason), " ",
        h("span", { class: "muted" }, `by ${t.actor}`),
        evidenceText(t.metrics)))));
    if (!st.transitions.length) el.timeline.append(h("li", { class: "muted" }, "No stage changes yet."));
  }

  function evidenceText(m) {
    if (!m || typeof m.value !== "number") return "";
    return h("span", { class: "muted" }, ` — ${m.metric} ${formatNumber(m.value)} vs ${m.threshold}` +
      (m.epochs_in_stage !== undefined ? `, ${m.epochs_in_stage} epochs in stage` : ""));
  }

  function renderEvents() {
    const all = [...state.events.values()].sort((a, b) => b.id - a.id);
    const rows = all.slice(0, 500).map((e) => {
      const [st, label] = eventState(e);
      return h("tr", { "data-event-id": e.id, "data-kind": e.kind, "data-state": st },
        h("td", { class: "num" }, String(e.id)),
        h("td", { title: e.created_at }, new Date(e.created_at).toLocaleTimeString()),
        h("td", {}, h("code", {}, e.kind)),
        h("td", {}, text(e.actor)),
        h("td", { class: "wrap" }, text(describe(e))),
        h("td", {}, st === "done" ? "" : h("span", { class: `state state-${st}`, title: e.applied_at ? when(e.applied_at) : "" }, label)));
    });
    if (all.length > 500) rows.push(h("tr", {}, h("td", { colspan: 6, class: "muted" }, `${all.length - 500} older events not shown`)));
    el.events.replaceChildren(...rows);
  }

  function renderCheckpoints() {
    el.checkpoints.replaceChildren(...state.checkpoints.slice().reverse().map((c) => h("tr", { "data-checkpoint-id": c.id },
      h("td", { class: "num" }, String(c.id)), h("td", { class: "num" }, String(c.epoch)), h("td", { class: "num" }, String(c.step)),
      h("td", { class: "num" }, String(c.stage)), h("td", { class: "num" }, bytes(c.size)),
      h("td", { class: "num" }, formatMetric(c.metrics?.val_cer)),
      h("td", { class: "mono", title: c.sha256 }, c.sha256.slice(0, 12)),
      h("td", {}, c.kept ? downloadLink(c) : h("span", { class: "muted" }, "deleted by retention")))));
    if (!state.checkpoints.length) el.checkpoints.append(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No checkpoints yet.")));
  }

  function downloadLink(c) {
    const href = `${API}${base}/checkpoints/${c.id}/file`;
    return h("a", { href, download: `run${runId}-ckpt${c.id}.pt`, class: "download", onclick: async (ev) => {
      const token = localStorage.getItem(TOKEN_KEY);
      if (!token) return; // no auth: let the browser download it directly
      ev.preventDefault(); // a plain link cannot send the bearer token: fetch, then save the blob
      const res = await fetch(href, { headers: { Authorization: `Bearer ${token}` } });
      if (!res.ok) { notify(errorBox(new ApiError(res.status, await res.json().catch(() => null)))); return; }
      const url = URL.createObjectURL(await res.blob());
      h("a", { href: url, download: `run${runId}-ckpt${c.id}.pt` }).click();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } }, "download");
  }

  function renderLatest() {
    const last = state.epochs[state.epochs.length - 1];
    if (!last) { el.latest.replaceChildren(h("dt", {}, "–"), h("dd", { class: "muted" }, "no epoch reported yet")); return; }
    const entries = [["epoch", last.epoch], ["stage", `${last.stage.index} ${last.stage.name}`], ["step", last.step],
      ["samples/s", last.samples_per_s], ["duration", last.duration_s !== null ? `${formatNumber(last.duration_s)} s` : null],
      ...Object.entries(last.metrics).sort(([a], [b]) => a.localeCompare(b))];
    el.latest.replaceChildren(...entries.flatMap(([k, v]) => [h("dt", {}, k),
      h("dd", {}, typeof v === "number" ? formatNumber(v) : text(v ?? "–"))]));
  }

  // -- go -------------------------------------------------------------------------------------
  let stopped = false;
  let stopPoll = () => {};
  refresh(true).then(() => {
    if (stopped) return;
    const ms = performance.now() - t0;
    performance.mark("sala:run-rendered");
    window.salaTiming = { runRenderedMs: ms, sinceNavigationMs: performance.now(), epochs: state.epochs.length, steps: state.steps.length };
    view.dataset.loaded = "run";
    stopPoll = poller(() => refresh(false), POLL_MS);
  }).catch((e) => view.replaceChildren(h("p", {}, h("a", { href: "#/" }, "← all runs")), errorBox(e)));

  let resizeTimer = null;
  const onResize = () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => state.run && renderCharts(), 150); };
  window.addEventListener("resize", onResize);
  return { stop: () => { stopped = true; stopPoll(); window.removeEventListener("resize", onResize); } };
}

// ---------------------------------------------------------------------------------------------
// Compare: one metric of several runs over each other, stage bands per run, recipe differences

function compareView() {
  const query = new URLSearchParams(location.hash.split("?")[1] || "");
  const ids = (query.get("runs") || "").split(",").map(Number).filter((n) => Number.isInteger(n) && n > 0);
  const metricSelect = h("select", { id: "compare-metric", "aria-label": "Metric" });
  const xSelect = h("select", { id: "compare-x", "aria-label": "Horizontal axis" },
    h("option", { value: "epoch" }, "by epoch"), h("option", { value: "step" }, "by step"));
  xSelect.value = query.get("x") === "step" ? "step" : "epoch";
  const chart = h("div", { class: "chart", "data-chart": "compare" });
  const legend = h("ul", { class: "legend", id: "compare-legend" });
  const diff = h("tbody", { id: "recipe-diff" });
  const diffHead = h("tr");
  const message = h("div");
  view.replaceChildren(
    h("p", {}, h("a", { href: "#/" }, "← all runs")),
    h("section", { class: "card" }, h("div", { class: "toolbar" }, h("h1", {}, "Compare runs"), metricSelect, xSelect),
      message, chart, legend,
      h("p", { class: "chart-note" }, "strips along the bottom: each run's curriculum stages, one lane per run, in legend order")),
    h("section", { class: "card" }, h("h2", {}, "Recipe differences"),
      h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, diffHead), diff))));

  const runs = [];
  const setQuery = () => { history.replaceState(null, "", `#/compare?runs=${ids.join(",")}&metric=${encodeURIComponent(metricSelect.value)}&x=${xSelect.value}`); };
  metricSelect.addEventListener("change", () => { setQuery(); draw(); });
  xSelect.addEventListener("change", () => { setQuery(); draw(); });

  async function epochsOf(id) {
    const all = [];
    for (let after = -1; ;) {
      const page = await epochPage(id, after, EPOCH_PAGE);
      all.push(...page.items);
      if (!page.next_cursor) return all;
      after = Number(page.next_cursor);
    }
  }

  function draw() {
    const byStep = xSelect.value === "step";
    const metric = metricSelect.value;
    const x = (e) => (byStep ? e.step : e.epoch);
    const series = runs.map((r, i) => ({ name: `#${r.run.id} ${r.run.name}`, color: PALETTE[i % PALETTE.length],
      points: r.epochs.filter((e) => typeof e.metrics[metric] === "number").map((e) => [x(e), e.metrics[metric]]) }));
    const bands = [];
    runs.forEach((r, lane) => {
      let prev = 0;
      for (const e of r.epochs) {
        const last = bands[bands.length - 1];
        if (last && last.lane === lane && last.stage === e.stage.index) last.x1 = x(e);
        else bands.push({ lane, stage: e.stage.index, x0: prev, x1: x(e), color: BAND_COLOURS[(e.stage.index - 1) % BAND_COLOURS.length],
          label: `#${r.run.id} stage ${e.stage.index}: ${e.stage.name}` });
        prev = x(e);
      }
    });
    lineChart(chart, { title: metric, xLabel: byStep ? "step" : "epoch", logY: "auto", series, bands, lanes: runs.length, xMin: 0 });
    legend.replaceChildren(...runs.map((r, i) => h("li", { "data-run-id": r.run.id },
      h("span", { class: "swatch", style: `background:${PALETTE[i % PALETTE.length]}` }),
      h("a", { href: `#/runs/${r.run.id}` }, text(`#${r.run.id} ${r.run.name}`)), ` ${r.run.status}, epoch ${r.run.epoch}`)));
    view.dataset.loaded = "compare";
  }

  function renderDiff() {
    const flat = runs.map((r) => flatten(r.run.recipe || {}));
    const keys = [...new Set(flat.flatMap((f) => Object.keys(f)))].sort();
    const differ = keys.filter((k) => new Set(flat.map((f) => JSON.stringify(f[k]))).size > 1);
    diffHead.replaceChildren(h("th", {}, "recipe field"), ...runs.map((r) => h("th", {}, text(`#${r.run.id} ${r.run.name}`))));
    diff.replaceChildren(...differ.map((k) => h("tr", { "data-key": k }, h("td", {}, h("code", {}, k)),
      ...flat.map((f) => h("td", { class: "mono" }, f[k] === undefined ? "–" : text(JSON.stringify(f[k])))))));
    if (!differ.length) diff.append(h("tr", {}, h("td", { colspan: runs.length + 1, class: "muted" }, "The recipes are the same.")));
  }

  (async () => {
    if (ids.length < 1) throw new ApiError(0, { error: { code: "input", message: "pick runs to compare in the runs list" } });
    for (const id of ids) runs.push({ run: await api(`/runs/${id}`), epochs: await epochsOf(id) });
    const keys = new Set();
    for (const r of runs) for (const e of r.epochs) for (const [k, v] of Object.entries(e.metrics)) if (typeof v === "number") keys.add(k);
    const sorted = [...keys].sort();
    metricSelect.replaceChildren(...sorted.map((k) => h("option", { value: k }, k)));
    const wanted = query.get("metric");
    metricSelect.value = sorted.includes(wanted) ? wanted : ["val_cer", "val_loss", "train_loss"].find((k) => keys.has(k)) || sorted[0] || "";
    renderDiff();
    draw();
  })().catch((e) => message.replaceChildren(errorBox(e)));
  return { stop: () => {} };
}

// `{a: {b: 1}, c: [x]}` → `{"a.b": 1, "c": [x]}`: lists stay whole (a curriculum's stages are compared
// per stage, `curriculum.stages[1].success_threshold`)
function flatten(value, prefix = "", out = {}) {
  if (Array.isArray(value) && value.every((v) => v && typeof v === "object" && !Array.isArray(v))) {
    value.forEach((v, i) => flatten(v, `${prefix}[${i}]`, out));
  } else if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else out[prefix] = value;
  return out;
}

// ---------------------------------------------------------------------------------------------
// routing

function route() {
  if (current) current.stop();
  delete view.dataset.loaded;
  const path = location.hash.replace(/^#/, "").split("?")[0] || "/";
  const match = path.match(/^\/runs\/(\d+)$/);
  current = match ? runView(Number(match[1])) : path === "/compare" ? compareView() : runsView();
  document.title = match ? `Run ${match[1]} · Sala` : path === "/compare" ? "Compare · Sala" : "Runs · Sala";
}

setupTokenBox();
window.addEventListener("hashchange", route);
route();
