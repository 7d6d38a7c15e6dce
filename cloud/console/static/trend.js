// A trend chart of one property in plain SVG: the server sums the stored history up into buckets
// (min, max, mean, count, bad readings: GET …/trend), so a month costs the browser a few hundred
// points.  The min–max band and the mean line break where the data has a gap; a red tick
// marks buckets with readings of bad quality.  Drag across the plot to zoom in (a new, finer
// query), "reset" goes back to the chosen period.

import { api } from "./api.js";
import { clear, fmtAge, fmtTime, fmtValue, h, svg } from "./dom.js";
import { t } from "./i18n.js";

const W = 800;
const H = 280;
const M = { left: 64, right: 16, top: 12, bottom: 34 };
const PERIODS = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
const TIME_STEPS = [1e3, 5e3, 15e3, 60e3, 300e3, 900e3, 3600e3, 3 * 3600e3, 6 * 3600e3, 12 * 3600e3, 86400e3, 2 * 86400e3, 7 * 86400e3];
const pad = (n) => String(n).padStart(2, "0");

export function openTrend(container, gatewayId, device, point) {
  let period = "24h";
  let range = null; // [from, to] when zoomed
  let seq = 0;
  const status = h("small", { class: "trend-status" });
  const plot = h("div", { class: "trend-plot" });
  const periodButtons = Object.keys(PERIODS).map((p) =>
    h("button", { type: "button", class: "secondary", "data-period": p, onclick: () => { period = p; range = null; load(); } }, t(`range.${p}`)));
  const panel = h("div", { class: "card trend", id: "trend", "data-device": device, "data-point": point },
    h("h2", {}, t("trend.title", { device, point })),
    h("div", { class: "toolbar" }, periodButtons,
      h("button", { type: "button", class: "secondary", id: "trend-reset", onclick: () => { range = null; load(); } }, t("trend.reset")),
      status),
    plot,
    h("small", {}, t("trend.hint")));
  clear(container, panel);
  load();
  return () => (seq = -1);

  async function load() {
    const mine = ++seq;
    const now = Date.now();
    const [from, to] = range || [now - PERIODS[period], now];
    for (const b of periodButtons) b.classList.toggle("active", !range && b.dataset.period === period);
    const buckets = Math.max(20, Math.floor((W - M.left - M.right) / 3));
    const q = new URLSearchParams({ point, from: String(Math.floor(from)), to: String(Math.ceil(to)), buckets: String(buckets) });
    status.textContent = t("common.loading");
    try {
      const data = await api(`/v1/gateways/${encodeURIComponent(gatewayId)}/devices/${encodeURIComponent(device)}/trend?${q}`);
      if (mine !== seq) return;
      status.textContent = `${fmtTime(data.from_ms)} – ${fmtTime(data.to_ms)} · ${t("trend.bucket", { bucket: fmtAge(data.bucket_ms) })}`;
      clear(plot, draw(data, (a, b) => { range = [a, b]; load(); }));
    } catch (err) {
      if (mine === seq) status.textContent = `${t("common.error")}: ${err.message}`;
    }
  }
}

function niceTicks(lo, hi, count = 5) {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= count) || 10 * mag;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function timeLabel(ms, step) {
  const d = new Date(ms);
  if (step >= 86400e3) return `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  if (step < 60e3) return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function draw(data, zoom) {
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": `${data.device} ${data.point}` });
  const numeric = data.buckets.filter((b) => b.count > 0);
  const x0 = M.left;
  const x1 = W - M.right;
  const y0 = H - M.bottom;
  const y1 = M.top;
  const x = (ms) => x0 + ((ms - data.from_ms) / (data.to_ms - data.from_ms || 1)) * (x1 - x0);
  let lo = Math.min(...numeric.map((b) => b.min));
  let hi = Math.max(...numeric.map((b) => b.max));
  if (!numeric.length) [lo, hi] = [0, 1];
  if (lo === hi) [lo, hi] = [lo - 1, hi + 1];
  const margin = (hi - lo) * 0.05;
  [lo, hi] = [lo - margin, hi + margin];
  const y = (v) => y0 - ((v - lo) / (hi - lo)) * (y0 - y1);

  const axes = svg("g", { class: "axes" });
  for (const v of niceTicks(lo, hi)) {
    axes.append(svg("line", { x1: x0, x2: x1, y1: y(v), y2: y(v), class: "grid" }), svg("text", { x: x0 - 6, y: y(v) + 4, class: "ylabel" }, fmtValue(v)));
  }
  const span = data.to_ms - data.from_ms;
  const step = TIME_STEPS.find((s) => span / s <= 7) || 30 * 86400e3;
  const offset = new Date().getTimezoneOffset() * 60e3; // ticks on local midnights and hours
  for (let ms = Math.ceil((data.from_ms - offset) / step) * step + offset; ms <= data.to_ms; ms += step) {
    axes.append(svg("line", { x1: x(ms), x2: x(ms), y1: y0, y2: y1, class: "grid" }), svg("text", { x: x(ms), y: H - 12, class: "xlabel" }, timeLabel(ms, step)));
  }
  axes.append(svg("rect", { x: x0, y: y1, width: x1 - x0, height: y0 - y1, class: "frame" }));
  root.append(axes);

  // runs of buckets: the band and the mean line break where the data stops for longer than its own
  // usual spacing (zoomed in finer than the readings come, every other bucket is empty: no gap)
  const gaps = numeric.slice(1).map((b, i) => b.ts_ms - numeric[i].ts_ms).sort((a, b) => a - b);
  const usual = gaps.length ? gaps[Math.floor(gaps.length / 2)] : data.bucket_ms;
  const breakAfter = Math.max(data.bucket_ms, 2.5 * usual);
  const runs = [];
  let last = null;
  for (const b of numeric) {
    if (last === null || b.ts_ms - last.ts_ms > breakAfter) runs.push([]);
    runs[runs.length - 1].push(b);
    last = b;
  }
  const mid = (b) => x(b.ts_ms + data.bucket_ms / 2);
  for (const run of runs) {
    const top = run.map((b) => `${mid(b).toFixed(1)},${y(b.max).toFixed(1)}`);
    const bottom = run.slice().reverse().map((b) => `${mid(b).toFixed(1)},${y(b.min).toFixed(1)}`);
    root.append(svg("polygon", { points: [...top, ...bottom].join(" "), class: "band" }));
    if (run.length === 1) root.append(svg("circle", { cx: mid(run[0]), cy: y(run[0].avg), r: 2.5, class: "dot" }));
    else root.append(svg("polyline", { points: run.map((b) => `${mid(b).toFixed(1)},${y(b.avg).toFixed(1)}`).join(" "), class: "mean" }));
  }
  for (const b of data.buckets.filter((b) => b.bad > 0)) {
    root.append(svg("line", { x1: mid(b), x2: mid(b), y1: y0, y2: y0 - 6, class: "bad" }, svg("title", {}, `${b.bad} bad`)));
  }
  if (!numeric.length) root.append(svg("text", { x: (x0 + x1) / 2, y: (y0 + y1) / 2, class: "empty" }, t("trend.empty")));

  // drag to zoom
  const selection = svg("rect", { y: y1, height: y0 - y1, width: 0, class: "selection", visibility: "hidden" });
  const hit = svg("rect", { x: x0, y: y1, width: x1 - x0, height: y0 - y1, class: "hit" });
  root.append(selection, hit);
  const toSvgX = (ev) => {
    const box = root.getBoundingClientRect();
    return Math.min(x1, Math.max(x0, ((ev.clientX - box.left) / box.width) * W));
  };
  let start = null;
  hit.addEventListener("pointerdown", (ev) => {
    start = toSvgX(ev);
    hit.setPointerCapture(ev.pointerId);
    selection.setAttribute("x", start);
    selection.setAttribute("width", 0);
    selection.setAttribute("visibility", "visible");
  });
  hit.addEventListener("pointermove", (ev) => {
    if (start === null) return;
    const now = toSvgX(ev);
    selection.setAttribute("x", Math.min(start, now));
    selection.setAttribute("width", Math.abs(now - start));
  });
  hit.addEventListener("pointerup", (ev) => {
    if (start === null) return;
    const end = toSvgX(ev);
    const [a, b] = [Math.min(start, end), Math.max(start, end)];
    start = null;
    selection.setAttribute("visibility", "hidden");
    if (b - a < 6) return;
    const ms = (px) => data.from_ms + ((px - x0) / (x1 - x0)) * (data.to_ms - data.from_ms);
    zoom(ms(a), Math.max(ms(b), ms(a) + 1));
  });
  return root;
}
