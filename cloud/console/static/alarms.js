// Active alarms in the user's scope, worst first.  "Acknowledge" sends an alarm.ack command (with
// the activation the person saw, raised_ms, and their comment); the gateway stays the authority:
// the alarm turns acknowledged when its alarm.acked event arrives, and the command's own outcome
// (done / refused / failed) is shown beside it.

import { api, session } from "./api.js";
import { clear, dialog, fmtTime, fmtValue, h } from "./dom.js";
import { lang, t } from "./i18n.js";
import { commandStatus, priorityBadge, showError } from "./views.js";

const REFRESH_MS = 3000;
const UNACKED = new Set(["active_unacked", "cleared_unacked"]);
const sent = new Map(); // acknowledgements sent from this tab: "gw\0alarm\0raised" → {gateway, id, status, detail}

const shelved = new Map(); // shelvings sent from this tab: key → command id
const keyOf = (a) => `${a.gateway_id}\u0000${a.alarm_id}\u0000${a.raised_ms}`;

export function render(main, _params, ctx) {
  const section = h("section", { id: "alarms" }, h("h1", {}, t("alarms.title")), h("p", {}, t("common.loading")));
  main.append(section);
  let alive = true;
  let timer = null;
  const refresh = async () => {
    clearTimeout(timer);
    try {
      const { alarms } = await api("/v1/alarms");
      await followCommands();
      if (alive) draw(alarms);
    } catch (err) {
      if (alive) showError(section, err);
      return;
    }
    if (alive) timer = setTimeout(refresh, REFRESH_MS);
  };
  refresh();
  return () => {
    alive = false;
    clearTimeout(timer);
  };

  async function followCommands() {
    if (!session.may("command.read")) return;
    const open = [...sent.values()].filter((s) => ["pending", "delivered"].includes(s.status));
    for (const gateway of new Set(open.map((s) => s.gateway))) {
      const { commands } = await api(`/v1/gateways/${encodeURIComponent(gateway)}/commands`);
      for (const s of sent.values()) {
        const c = commands.find((c) => c.id === s.id);
        if (s.gateway === gateway && c) Object.assign(s, { status: c.status, detail: c.result?.detail || "" });
      }
    }
  }

  function draw(alarms) {
    const table = h("table", { id: "alarm-list" },
      h("thead", {}, h("tr", {}, ["alarms.priority", "alarms.state", "alarms.gateway", "alarms.device", "alarms.message", "alarms.value", "alarms.raised", "alarms.acked_by", "alarms.action"].map((k) => h("th", {}, t(k))))),
      h("tbody", {}, alarms.map(row)));
    clear(section,
      h("h1", {}, t("alarms.title")),
      alarms.length ? h("div", { class: "card" }, table) : h("p", { class: "notice", id: "no-alarms" }, t("alarms.empty")));
  }

  function row(a) {
    const ack = sent.get(keyOf(a));
    const canAck = UNACKED.has(a.state) && session.may("command.create");
    return h("tr", { class: `prio-${a.priority}`, "data-alarm": a.alarm_id, "data-gateway": a.gateway_id },
      h("td", {}, priorityBadge(a.priority)),
      h("td", { "data-field": "state", "data-state": a.state }, t(`state.${a.state}`)),
      h("td", {}, h("a", { href: `#/gateway/${encodeURIComponent(a.gateway_id)}` }, a.gateway_id)),
      h("td", {}, a.device),
      h("td", {}, lang() === "en" ? a.message_en || a.message_zh : a.message_zh || a.message_en, h("br"), h("small", {}, a.alarm_id)),
      h("td", { class: "num" }, fmtValue(a.value)),
      h("td", {}, fmtTime(a.raised_ms)),
      h("td", {}, a.acked_by || "—"),
      h("td", {},
        canAck && !ack ? h("button", { type: "button", "data-ack": a.alarm_id, onclick: () => acknowledge(a) }, t("alarms.ack")) : null,
        session.may("command.create") && !shelved.has(keyOf(a))
          ? h("button", { type: "button", class: "secondary", "data-shelve": a.alarm_id, onclick: () => shelve(a) }, t("alarms.shelve"))
          : null,
        shelved.has(keyOf(a)) ? h("small", { class: "shelve-sent" }, t("alarms.shelve_sent", { id: shelved.get(keyOf(a)) })) : null,
        ack ? h("small", { class: "ack-sent", "data-command": ack.id }, t("alarms.ack_sent", { id: ack.id, status: "" }), commandStatus(ack.status), ack.detail ? ` ${ack.detail}` : "") : null));
  }

  async function shelve(a) {
    // Maintenance on site: the gateway hides the alarm until then (still tracked, every change
    // still recorded); a reason is required.
    const values = await dialog(t("alarms.shelve_title"),
      h("div", {},
        h("p", {}, priorityBadge(a.priority), ` ${a.gateway_id} · ${a.device} · ${a.alarm_id}`),
        h("label", {}, h("span", {}, t("alarms.shelve_hours")), h("input", { name: "hours", id: "shelve-hours", type: "number", min: 1, max: 72, value: 4, required: true })),
        h("label", {}, h("span", {}, t("alarms.shelve_reason")), h("input", { name: "reason", id: "shelve-reason", required: true, maxlength: 200 }))),
      t("alarms.shelve"), t("common.cancel"));
    if (!values) return;
    const hours = Math.min(72, Math.max(1, Number(values.hours) || 4));
    const s = session.get();
    try {
      const body = { alarm_id: a.alarm_id, by: s.user, until_ms: Date.now() + hours * 3600_000, reason: values.reason };
      const reply = await api(`/v1/gateways/${encodeURIComponent(a.gateway_id)}/commands`, { method: "POST", body: { type: "alarm.shelve", body } });
      shelved.set(keyOf(a), reply.id);
      ctx.toast(t("commands.sent", { id: reply.id, status: t(`cmdstatus.${reply.status}`) }));
    } catch (err) {
      ctx.toast(`${t("common.error")}: ${err.message}`, "error");
    }
    refresh();
  }

  async function acknowledge(a) {
    const message = lang() === "en" ? a.message_en || a.message_zh : a.message_zh || a.message_en;
    const values = await dialog(t("alarms.ack_title"),
      h("div", {},
        h("p", {}, priorityBadge(a.priority), ` ${a.gateway_id} · ${a.device} · ${message}`),
        h("label", {}, h("span", {}, t("alarms.ack_comment")), h("textarea", { name: "comment", id: "ack-comment", rows: 3, maxlength: 500 }))),
      t("alarms.ack"), t("common.cancel"));
    if (!values) return;
    const s = session.get();
    try {
      const body = { alarm_id: a.alarm_id, by: s.user, raised_ms: a.raised_ms, comment: values.comment || "" };
      const reply = await api(`/v1/gateways/${encodeURIComponent(a.gateway_id)}/commands`, { method: "POST", body: { type: "alarm.ack", body } });
      sent.set(keyOf(a), { gateway: a.gateway_id, id: reply.id, status: reply.status, detail: "" });
      ctx.toast(t("commands.sent", { id: reply.id, status: t(`cmdstatus.${reply.status}`) }));
    } catch (err) {
      ctx.toast(`${t("common.error")}: ${err.message}`, "error");
    }
    refresh();
  }
}
