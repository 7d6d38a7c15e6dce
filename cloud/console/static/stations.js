// Stations: an offline map (station coordinates plotted in SVG, no map tiles from anywhere) and a
// list with each station's gateways and their state.  The API returns only what the user's scope
// holds, so both show exactly that.

import { api } from "./api.js";
import { clear, fmtAge, h, svg } from "./dom.js";
import { t } from "./i18n.js";
import { showError } from "./views.js";

const STALE_MS = 5 * 60 * 1000; // telemetry older than this: "data late"
const W = 640;
const H = 400;
const PAD = 44;
const RANK = { alarm: 3, stale: 2, never: 1, online: 0 };

export function gatewayState(gw) {
  const lag = gw.lanes?.telemetry?.lag_ms;
  if (lag === null || lag === undefined) return "never";
  return lag > STALE_MS ? "stale" : "online";
}

export function render(main) {
  const section = h("section", { id: "stations" }, h("h1", {}, t("stations.title")), h("p", {}, t("common.loading")));
  main.append(section);
  let alive = true;
  load().catch((err) => alive && showError(section, err));
  return () => (alive = false);

  async function load() {
    const [{ stations }, { gateways }, { alarms }] = await Promise.all([
      api("/v1/stations"),
      api("/v1/gateways"),
      api("/v1/alarms"),
    ]);
    if (!alive) return;
    const byStation = new Map(stations.map((s) => [s.id, { ...s, gateways: [], alarms: 0, state: "never" }]));
    const unplaced = [];
    for (const gw of gateways) {
      gw.state = gatewayState(gw);
      gw.alarms = alarms.filter((a) => a.gateway_id === gw.gateway_id && a.state !== "normal").length;
      const st = byStation.get(gw.station_id);
      if (st) {
        st.gateways.push(gw);
        st.alarms += gw.alarms;
      } else unplaced.push(gw);
    }
    for (const st of byStation.values()) {
      const states = st.gateways.map((g) => g.state);
      if (st.alarms) states.push("alarm");
      st.state = states.sort((a, b) => RANK[b] - RANK[a])[0] || "never";
    }
    const list = [...byStation.values()];
    clear(section,
      h("h1", {}, t("stations.title")),
      h("div", { class: "split" },
        h("figure", { class: "card map" }, h("figcaption", {}, t("stations.map")), drawMap(list), h("small", {}, t("stations.no_coords"))),
        h("div", { class: "card grow" }, stationTable(list))),
      unplaced.length ? h("div", { class: "card" }, h("h2", {}, t("stations.unplaced")), gatewayList(unplaced)) : null,
    );
  }
}

function badge(state) {
  return h("span", { class: `badge ${state}`, "data-state": state }, t(`status.${state}`));
}

function gatewayList(gateways) {
  return h("ul", { class: "gateways" }, gateways.map((g) =>
    h("li", {}, h("a", { href: `#/gateway/${encodeURIComponent(g.gateway_id)}`, "data-gateway": g.gateway_id }, g.gateway_id), " ",
      badge(g.state), g.lanes?.telemetry?.lag_ms != null ? h("small", {}, ` ${fmtAge(g.lanes.telemetry.lag_ms)}`) : null)));
}

function stationTable(list) {
  if (!list.length) return h("p", {}, t("common.none"));
  return h("table", { id: "station-list" },
    h("thead", {}, h("tr", {}, ["stations.name", "stations.type", "stations.org", "stations.gateways", "stations.alarms", "stations.status"].map((k) => h("th", {}, t(k))))),
    h("tbody", {}, list.map((s) =>
      h("tr", { "data-station": s.id },
        h("td", {}, h("strong", {}, s.name), h("br"), h("small", {}, s.id)),
        h("td", {}, t(`type.${s.type}`) === `type.${s.type}` ? s.type : t(`type.${s.type}`)),
        h("td", {}, s.org_id),
        h("td", {}, s.gateways.length ? gatewayList(s.gateways) : "—"),
        h("td", { class: s.alarms ? "num alarm-count" : "num" }, String(s.alarms)),
        h("td", {}, badge(s.state))))));
}

function niceStep(span) {
  for (const step of [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20]) {
    if (span / step <= 6) return step;
  }
  return 30;
}

/** An equirectangular plot (x scaled by cos(latitude)) fitted to the stations, with a graticule. */
function drawMap(list) {
  const placed = list.filter((s) => s.lat !== null && s.lon !== null);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", id: "station-map", "aria-label": t("stations.map") });
  root.append(svg("rect", { x: 0, y: 0, width: W, height: H, class: "sea" }));
  if (!placed.length) return root;
  const lats = placed.map((s) => s.lat);
  const lons = placed.map((s) => s.lon);
  const midLat = (Math.min(...lats) + Math.max(...lats)) / 2;
  const k = Math.cos((midLat * Math.PI) / 180);
  let [lon0, lon1, lat0, lat1] = [Math.min(...lons), Math.max(...lons), Math.min(...lats), Math.max(...lats)];
  const span = Math.max((lon1 - lon0) * k, lat1 - lat0, 0.01);
  const cx = ((lon0 + lon1) / 2) * k;
  const cy = (lat0 + lat1) / 2;
  const scale = Math.min((W - 2 * PAD) / span, (H - 2 * PAD) / span);
  const x = (lon) => W / 2 + (lon * k - cx) * scale;
  const y = (lat) => H / 2 - (lat - cy) * scale;
  // the visible extent, for the graticule
  [lon0, lon1] = [(cx - W / 2 / scale) / k, (cx + W / 2 / scale) / k];
  [lat0, lat1] = [cy - H / 2 / scale, cy + H / 2 / scale];
  const grid = svg("g", { class: "graticule" });
  const lonStep = niceStep(lon1 - lon0);
  for (let lon = Math.ceil(lon0 / lonStep) * lonStep; lon <= lon1; lon += lonStep) {
    grid.append(svg("line", { x1: x(lon), x2: x(lon), y1: 0, y2: H }));
    if (x(lon) < W - 60) grid.append(svg("text", { x: x(lon) + 3, y: H - 4 }, `${lon.toFixed(3)}°E`));
  }
  const latStep = niceStep(lat1 - lat0);
  for (let lat = Math.ceil(lat0 / latStep) * latStep; lat <= lat1; lat += latStep) {
    grid.append(svg("line", { x1: 0, x2: W, y1: y(lat), y2: y(lat) }));
    if (y(lat) > 14) grid.append(svg("text", { x: 3, y: y(lat) - 3 }, `${lat.toFixed(3)}°N`));
  }
  root.append(grid);
  for (const s of placed) {
    const target = s.gateways.length === 1 ? `#/gateway/${encodeURIComponent(s.gateways[0].gateway_id)}` : null;
    const marker = svg("g", { class: `marker ${s.state}`, "data-station": s.id, tabindex: target ? 0 : null },
      svg("title", {}, `${s.name} (${s.id}): ${t(`status.${s.state}`)}`),
      svg("circle", { cx: x(s.lon), cy: y(s.lat), r: 8 }),
      svg("text", { x: x(s.lon) + 11, y: y(s.lat) + 4 }, s.name));
    if (target) {
      marker.addEventListener("click", () => (location.hash = target));
      marker.addEventListener("keydown", (ev) => ev.key === "Enter" && (location.hash = target));
    } else {
      marker.addEventListener("click", () => document.querySelector(`tr[data-station="${CSS.escape(s.id)}"]`)?.scrollIntoView());
    }
    root.append(marker);
  }
  return root;
}
