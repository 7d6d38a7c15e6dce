// One gateway: its sync state, its latest values updating live (server-sent events read with fetch,
// so the session goes in the Authorization header), and a trend chart per property.

import { api, session, stream } from "./api.js";
import { clear, fmtAge, fmtTime, fmtValue, h } from "./dom.js";
import { t } from "./i18n.js";
import { gatewayState } from "./stations.js";
import { openTrend } from "./trend.js";
import { showError } from "./views.js";

export function render(main, [gatewayId], ctx) {
  const enc = encodeURIComponent(gatewayId);
  const abort = new AbortController();
  const section = h("section", { id: "gateway", "data-gateway": gatewayId },
    h("h1", {}, `${t("gateway.title")} ${gatewayId}`), h("p", {}, t("common.loading")));
  main.append(section);
  const rows = new Map(); // "device\u0000point" → {row, tr}
  let skew = 0; // server clock minus this browser's clock
  let stopTrend = () => {};
  let timer = null;
  load().catch((err) => showError(section, err));
  return () => {
    abort.abort();
    clearInterval(timer);
    stopTrend();
  };

  async function load() {
    const gw = await api(`/v1/gateways/${enc}`);
    if (abort.signal.aborted) return;
    const state = gatewayState(gw);
    const live = h("span", { id: "live-state", class: "badge never", "data-live": "off" }, t("gateway.live_off"));
    const tbody = h("tbody", { id: "live-values" });
    const trendBox = h("div", { id: "trend-box" });
    const history = h("div", { class: "card", id: "alarm-history" }, h("h2", {}, t("gateway.alarm_history")));
    const devices = h("div", { class: "card", id: "device-status" }, h("h2", {}, t("gateway.devices")));
    clear(section,
      h("h1", {}, `${t("gateway.title")} ${gatewayId}`),
      h("dl", { class: "card facts" },
        h("dt", {}, t("gateway.station")), h("dd", {}, gw.station_id || "—"),
        h("dt", {}, t("gateway.status")), h("dd", {}, h("span", { class: `badge ${state}`, "data-state": state }, t(`status.${state}`)), ` ${gw.status}`),
        h("dt", {}, t("gateway.lifecycle")), h("dd", {}, gw.lifecycle || "—"),
        h("dt", {}, t("gateway.lag")), h("dd", {}, fmtAge(gw.lanes.telemetry.lag_ms)),
        h("dt", {}, t("gateway.data_lag")), h("dd", {}, fmtAge(gw.lanes.telemetry.data_lag_ms))),
      session.may("command.read") ? h("p", {}, h("a", { href: `#/commands/${enc}`, id: "gateway-commands" }, t("gateway.commands"))) : null,
      h("div", { class: "card" },
        h("h2", {}, t("gateway.live"), " ", live),
        h("table", { class: "live" },
          h("thead", {}, h("tr", {}, ["gateway.device", "gateway.point", "gateway.value", "gateway.quality", "gateway.age", "gateway.time", "gateway.trend"].map((k) => h("th", {}, t(k))))),
          tbody)),
      devices,
      trendBox,
      history);
    tbody.append(h("tr", { class: "empty" }, h("td", { colspan: 7 }, t("gateway.no_values"))));
    loadHistory().catch((err) => showError(history, err));
    timer = setInterval(updateAges, 1000);
    stream(`/v1/gateways/${enc}/stream`, {
      signal: abort.signal,
      onState(up) {
        live.dataset.live = up ? "on" : "off";
        live.className = `badge ${up ? "online" : "stale"}`;
        live.textContent = t(up ? "gateway.live_on" : "gateway.live_off");
      },
      onEvent(name, data) {
        if (name === "end" && data.reason === "unauthenticated") {
          session.clear();
          ctx.toast(t("common.session_ended"), "error");
          location.hash = "#/login";
        }
        if (name !== "latest") return;
        skew = data.now_ms - Date.now();
        tbody.querySelector("tr.empty")?.remove();
        for (const row of data.rows) upsert(tbody, row, trendBox, !data.full);
        updateAges();
      },
    });
  }

  async function loadHistory() {
    // Every alarm transition of the last 24 h, newest first (the gateway's own alarm events).
    const to = Date.now() + skew;
    const { events } = await api(`/v1/gateways/${enc}/events?from=${to - 86_400_000}&to=${to + 1}&limit=5000`);
    const rows = events.filter((e) => e.kind.startsWith("alarm.")).reverse().slice(0, 200);
    drawDevices(events);
    const box = section.querySelector("#alarm-history");
    if (!box || abort.signal.aborted) return;
    clear(box, h("h2", {}, t("gateway.alarm_history")),
      rows.length
        ? h("table", { id: "alarm-history-list" },
            h("thead", {}, h("tr", {}, ["gateway.time", "gateway.device", "alarms.state", "alarms.message", "alarms.acked_by"].map((k) => h("th", {}, t(k))))),
            h("tbody", {}, rows.map((e) => h("tr", { "data-kind": e.kind },
              h("td", {}, fmtTime(e.ts_ms)), h("td", {}, e.device), h("td", {}, e.kind.replace("alarm.", "")),
              h("td", {}, e.data.message_zh || e.data.alarm_id || ""), h("td", {}, e.data.by || "—")))))
        : h("p", { class: "notice" }, t("gateway.no_alarm_history")));
  }

  function drawDevices(events) {
    // Each device's communication status: its newest status report, and any later link change.
    const latest = new Map();
    for (const e of events) {
      if (e.kind === "device.status") latest.set(e.device, { ...e.data, at: e.ts_ms });
      else if ((e.kind === "device_online" || e.kind === "device_offline") && latest.has(e.device)) {
        Object.assign(latest.get(e.device), { online: e.kind === "device_online", at: e.ts_ms });
      }
    }
    const box = section.querySelector("#device-status");
    if (!box) return;
    clear(box, h("h2", {}, t("gateway.devices")),
      latest.size
        ? h("table", { id: "device-status-list" },
            h("thead", {}, h("tr", {}, ["gateway.device", "gateway.comm", "gateway.polls", "gateway.failures", "gateway.latency", "gateway.time"].map((k) => h("th", {}, t(k))))),
            h("tbody", {}, [...latest.entries()].map(([device, st]) => h("tr", { "data-device": device, "data-online": String(st.online) },
              h("td", {}, device),
              h("td", {}, h("span", { class: `badge ${st.online ? "online" : "stale"}` }, t(st.online ? "gateway.online" : "gateway.offline")), st.online ? "" : ` ${st.reason || ""}`),
              h("td", { class: "num" }, String(st.polls ?? "—")), h("td", { class: "num" }, String(st.failures ?? "—")),
              h("td", { class: "num" }, st.latency_p95_ms == null ? "—" : `${st.latency_p95_ms} ms`),
              h("td", {}, fmtTime(st.at))))))
        : h("p", { class: "notice" }, t("gateway.no_device_status")));
  }

  function upsert(tbody, row, trendBox, changed) {
    const key = `${row.device}\u0000${row.point}`;
    let entry = rows.get(key);
    if (!entry) {
      const tr = h("tr", { "data-device": row.device, "data-point": row.point },
        h("td", {}, row.device), h("td", {}, row.point),
        h("td", { class: "num", "data-field": "value" }), h("td", { "data-field": "quality" }),
        h("td", { class: "num", "data-field": "age" }), h("td", { "data-field": "time" }),
        h("td", {}, h("button", {
          type: "button", class: "secondary small", "data-trend": "",
          onclick: () => { stopTrend(); stopTrend = openTrend(trendBox, gatewayId, row.device, row.point); trendBox.scrollIntoView({ block: "nearest" }); },
        }, t("gateway.trend"))));
      const after = [...tbody.children].find((other) => `${other.dataset.device}\u0000${other.dataset.point}` > key);
      tbody.insertBefore(tr, after || null);
      entry = { tr };
      rows.set(key, entry);
    }
    entry.row = row;
    const cell = (f) => entry.tr.querySelector(`[data-field=${f}]`);
    cell("value").textContent = fmtValue(row.value);
    const q = cell("quality");
    q.textContent = row.quality;
    q.className = `quality ${row.quality.split("/")[0]}`;
    cell("time").textContent = fmtTime(row.ts_ms);
    if (changed) {
      entry.tr.classList.remove("changed");
      void entry.tr.offsetWidth; // restart the highlight
      entry.tr.classList.add("changed");
    }
  }

  function updateAges() {
    const now = Date.now() + skew;
    for (const { row, tr } of rows.values()) tr.querySelector("[data-field=age]").textContent = fmtAge(now - row.ts_ms);
  }
}
