// A tiny SVG line-chart helper: no dependencies, nothing fetched from outside.
// lineChart(el, spec) redraws `el` from scratch; it downsamples each series to about two
// points per pixel column (min and max), so 10^5 points draw as fast as 10^3.

const SVG = "http://www.w3.org/2000/svg";

// Okabe–Ito: distinguishable with the common forms of colour blindness.
export const PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];
export const BAND_COLOURS = ["#56B4E9", "#E69F00", "#009E73", "#CC79A7", "#F0E442", "#0072B2", "#D55E00"];

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm >= 5 ? 10 : norm >= 2 ? 5 : norm >= 1 ? 2 : 1) * mag;
}

function ticks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const step = niceStep(hi - lo, count);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function logTicks(lo, hi) {
  if (!(lo > 0) || !Number.isFinite(hi)) return [];
  const e0 = Math.floor(Math.log10(lo)), e1 = Math.ceil(Math.log10(hi));
  const steps = e1 - e0 <= 2 ? [1, 2, 5] : [1]; // few decades: 1-2-5 ticks, else powers of ten
  const out = [];
  for (let e = e0; e <= e1; e++) {
    for (const k of steps) {
      const v = +(k * 10 ** e).toPrecision(6);
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
    }
  }
  return out.length >= 2 ? out : [lo, hi];
}

// logY: "auto" → a log axis when every value is positive and they span more than `ratio`×
// (losses of several tasks, whose scales differ by orders of magnitude).
export function wantsLog(series, ratio = 30) {
  let lo = Infinity, hi = -Infinity;
  for (const s of series) {
    for (const [, y] of s.points) {
      if (!Number.isFinite(y)) continue;
      if (y <= 0) return false;
      if (y < lo) lo = y;
      if (y > hi) hi = y;
    }
  }
  return Number.isFinite(lo) && hi / lo > ratio;
}

export function formatNumber(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(1).replace("e-", "e−");
  if (Number.isInteger(v)) return String(v);
  return String(+v.toPrecision(3));
}

// Keep first/last and the min and max of each pixel column, in x order.
export function downsample(points, x0, x1, width) {
  if (points.length <= width * 2) return points;
  const out = [];
  const scale = width / (x1 - x0 || 1);
  let column = null, lo = null, hi = null, first = null;
  const flush = () => {
    if (first === null) return;
    const group = [first];
    if (lo !== first) group.push(lo);
    if (hi !== first && hi !== lo) group.push(hi);
    group.sort((a, b) => a[0] - b[0]);
    out.push(...group);
  };
  for (const p of points) {
    const c = Math.floor((p[0] - x0) * scale);
    if (c !== column) {
      flush();
      column = c; first = p; lo = p; hi = p;
    } else {
      if (p[1] < lo[1]) lo = p;
      if (p[1] > hi[1]) hi = p;
    }
  }
  flush();
  const last = points[points.length - 1];
  if (out[out.length - 1] !== last) out.push(last);
  return out;
}

/**
 * spec: {title, xLabel, series: [{name, points: [[x, y]], color?, dash?, stepped?}], bands: [{x0, x1, color, label, lane?}],
 *        lanes (bands as strips, one lane each),
 *        markers: [{x, label, title, id}], hlines: [{x0, x1, y, label, color}], logY (true | "auto"), yMin, yMax, height}
 */
export function lineChart(el, spec) {
  if (spec.logY === "auto") spec = { ...spec, logY: wantsLog(spec.series) };
  const width = Math.max(260, Math.floor(el.clientWidth || 600));
  const height = spec.height || 220;
  const m = { left: 52, right: 12, top: 18, bottom: 30 };
  const w = width - m.left - m.right, h = height - m.top - m.bottom;
  const series = spec.series.filter((s) => s.points.length);
  const total = spec.series.reduce((n, s) => n + s.points.length, 0);

  let x0 = spec.xMin ?? Infinity, x1 = spec.xMax ?? -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const s of series) {
    x0 = Math.min(x0, s.points[0][0]);
    x1 = Math.max(x1, s.points[s.points.length - 1][0]);
    for (const [, y] of s.points) {
      if (!Number.isFinite(y) || (spec.logY && y <= 0)) continue;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
  }
  for (const mk of spec.markers || []) x1 = Math.max(x1, mk.x);
  for (const hl of spec.hlines || []) { y0 = Math.min(y0, hl.y); y1 = Math.max(y1, hl.y); }
  if (spec.yMin !== undefined) y0 = Math.min(y0, spec.yMin);
  if (spec.yMax !== undefined) y1 = Math.max(y1, spec.yMax);
  const empty = !Number.isFinite(x0) || !Number.isFinite(y0);
  if (empty) { x0 = spec.xMin ?? 0; x1 = spec.xMax ?? 1; y0 = spec.logY ? 1e-4 : 0; y1 = spec.logY ? 1e-2 : 1; }
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) { const pad = Math.abs(y0) * 0.1 || (spec.logY ? y0 * 0.5 : 1); y0 -= pad; y1 += pad; }
  if (!spec.logY) { const pad = (y1 - y0) * 0.05; y0 = spec.yMin === y0 ? y0 : y0 - pad; y1 += pad; }
  else { const pad = 10 ** ((Math.log10(y1) - Math.log10(y0)) * 0.06); y0 /= pad; y1 *= pad; }

  const X = (x) => m.left + ((x - x0) / (x1 - x0)) * w;
  const ly0 = spec.logY ? Math.log10(y0) : 0, ly1 = spec.logY ? Math.log10(y1) : 0;
  const Y = spec.logY
    ? (y) => m.top + h - ((Math.log10(Math.max(y, y0)) - ly0) / (ly1 - ly0 || 1)) * h
    : (y) => m.top + h - ((y - y0) / (y1 - y0)) * h;

  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": spec.title || "chart", class: "chart-svg" });
  const clip = `clip-${Math.random().toString(36).slice(2)}`;
  const defs = svg("defs");
  const cp = svg("clipPath", { id: clip });
  cp.append(svg("rect", { x: m.left, y: m.top, width: w, height: h }));
  defs.append(cp);
  root.append(defs);

  // bands span the plot's height; with `lanes`, each band is a strip in its `lane` along the bottom
  // (one lane per run when several runs share a chart)
  const laneH = spec.lanes ? Math.min(12, h / (2 * spec.lanes)) : h;
  const bands = svg("g", { class: "bands", "clip-path": `url(#${clip})` });
  for (const b of spec.bands || []) {
    const bx0 = X(Math.max(b.x0, x0)), bx1 = X(Math.min(b.x1, x1));
    if (bx1 <= bx0) continue;
    const by = spec.lanes ? m.top + h - ((b.lane || 0) + 1) * laneH : m.top;
    const r = svg("rect", { x: bx0, y: by, width: bx1 - bx0, height: spec.lanes ? laneH - 1 : h, fill: b.color,
      "fill-opacity": spec.lanes ? 0.55 : 0.16, class: "band", "data-stage": b.stage, "data-lane": b.lane });
    r.append(svg("title", {}, b.label));
    bands.append(r);
    if (spec.lanes) continue;
    const full = b.short || b.label;
    const label = bx1 - bx0 > full.length * 5.6 + 8 ? full : bx1 - bx0 > 14 ? String(b.stage ?? "") : "";
    if (label) bands.append(svg("text", { x: bx0 + 3, y: m.top + 10, class: "band-label" }, label));
  }
  root.append(bands);

  const grid = svg("g", { class: "grid" });
  const yt = spec.logY ? logTicks(y0, y1) : ticks(y0, y1, Math.max(2, Math.floor(h / 40)));
  for (const t of yt) {
    grid.append(svg("line", { x1: m.left, x2: m.left + w, y1: Y(t), y2: Y(t) }));
    grid.append(svg("text", { x: m.left - 6, y: Y(t) + 4, "text-anchor": "end", class: "tick" }, formatNumber(t)));
  }
  const xt = ticks(x0, x1, Math.max(2, Math.floor(w / 80)));
  for (const t of xt) {
    grid.append(svg("line", { x1: X(t), x2: X(t), y1: m.top + h, y2: m.top + h + 4 }));
    grid.append(svg("text", { x: X(t), y: m.top + h + 16, "text-anchor": "middle", class: "tick" }, formatNumber(t)));
  }
  grid.append(svg("rect", { x: m.left, y: m.top, width: w, height: h, class: "frame" }));
  if (spec.xLabel) grid.append(svg("text", { x: m.left + w, y: height - 2, "text-anchor": "end", class: "axis-label" }, spec.xLabel));
  if (spec.logY) grid.append(svg("text", { x: 2, y: m.top - 6, class: "axis-label" }, "log scale"));
  root.append(grid);

  const plot = svg("g", { "clip-path": `url(#${clip})` });
  for (const hl of spec.hlines || []) {
    const line = svg("line", { x1: X(Math.max(hl.x0, x0)), x2: X(Math.min(hl.x1, x1)), y1: Y(hl.y), y2: Y(hl.y),
      stroke: hl.color || "#000", "stroke-dasharray": "6 3", class: "threshold", "stroke-width": hl.current ? 2 : 1.2 });
    line.append(svg("title", {}, hl.label));
    plot.append(line);
    if (hl.current) plot.append(svg("text", { x: X(Math.min(hl.x1, x1)) - 4, y: Y(hl.y) - m.top < 24 ? Y(hl.y) + 12 : Y(hl.y) - 4, "text-anchor": "end",
      class: "threshold-label", fill: hl.color || "#000" }, hl.label));
  }
  series.forEach((s, i) => {
    const color = s.color || PALETTE[i % PALETTE.length];
    const pts = downsample(s.points, x0, x1, w);
    let d = "";
    let pen = false;
    for (const [x, y] of pts) {
      if (!Number.isFinite(y) || (spec.logY && y <= 0)) { pen = false; continue; }
      // stepped: the value holds over the interval that ends at its x (an epoch's lr), so the
      // line changes level where that interval starts
      d += pen ? (s.stepped ? `V${Y(y).toFixed(1)}H${X(x).toFixed(1)}` : `L${X(x).toFixed(1)},${Y(y).toFixed(1)}`)
        : `M${X(x).toFixed(1)},${Y(y).toFixed(1)}`;
      pen = true;
    }
    plot.append(svg("path", { d, fill: "none", stroke: color, "stroke-width": 1.8, "stroke-dasharray": s.dash,
      "stroke-linejoin": "round", class: "series", "data-series": s.name, "data-points": s.points.length }));
    if (s.points.length <= 60) {
      for (const [x, y] of pts) if (Number.isFinite(y)) plot.append(svg("circle", { cx: X(x), cy: Y(y), r: 2.2, fill: color }));
    }
  });
  const markers = svg("g", { class: "markers" });
  for (const mk of spec.markers || []) {
    const g = svg("g", { class: "marker", "data-event-id": mk.id, "data-kind": mk.kind });
    g.append(svg("line", { x1: X(mk.x), x2: X(mk.x), y1: m.top, y2: m.top + h }));
    g.append(svg("path", { d: `M${X(mk.x) - 5},${m.top - 8}h10l-5,8z` }));
    g.append(svg("title", {}, mk.title || mk.label));
    markers.append(g);
  }
  root.append(plot, markers);

  // hover read-out: nearest x in each series
  const cursor = svg("line", { class: "cursor", y1: m.top, y2: m.top + h, visibility: "hidden" });
  root.append(cursor);
  const tip = document.createElement("div");
  tip.className = "chart-tip";
  tip.hidden = true;
  root.addEventListener("pointermove", (ev) => {
    const box = root.getBoundingClientRect();
    const px = ((ev.clientX - box.left) / box.width) * width;
    if (px < m.left || px > m.left + w || empty) { cursor.setAttribute("visibility", "hidden"); tip.hidden = true; return; }
    const x = x0 + ((px - m.left) / w) * (x1 - x0);
    const lines = [`${spec.xLabel || "x"} ${formatNumber(Math.round(x * 100) / 100)}`];
    for (const s of series) {
      const p = nearest(s.points, x);
      if (p) lines.push(`${s.name}: ${formatNumber(p[1])}`);
    }
    cursor.setAttribute("x1", px); cursor.setAttribute("x2", px); cursor.setAttribute("visibility", "visible");
    tip.textContent = lines.join("\n");
    tip.hidden = false;
    tip.style.left = `${Math.min(px + 8, width - 150)}px`;
  });
  root.addEventListener("pointerleave", () => { cursor.setAttribute("visibility", "hidden"); tip.hidden = true; });

  const legend = document.createElement("ul");
  legend.className = "legend";
  series.forEach((s, i) => {
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = "swatch" + (s.dash ? " dashed" : "");
    sw.style.borderColor = s.color || PALETTE[i % PALETTE.length];
    li.append(sw, document.createTextNode(s.name));
    legend.append(li);
  });
  if (empty) {
    root.append(svg("text", { x: m.left + w / 2, y: m.top + h / 2, "text-anchor": "middle", class: "empty" }, "no data yet"));
  }

  el.replaceChildren(root, tip, legend);
  el.dataset.points = String(total);
  el.dataset.markers = String((spec.markers || []).length);
  el.dataset.bands = String((spec.bands || []).length);
  el.dataset.log = spec.logY ? "true" : "false";
}

function nearest(points, x) {
  if (!points.length) return null;
  let lo = 0, hi = points.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid][0] < x) lo = mid + 1; else hi = mid;
  }
  if (lo > 0 && Math.abs(points[lo - 1][0] - x) < Math.abs(points[lo][0] - x)) lo -= 1;
  return points[lo];
}
