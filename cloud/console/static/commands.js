// Commands of one gateway: send one (after a confirmation dialog), follow its status, and confirm
// a dual-control command as the second person (never its author: the API refuses that too).

import { api, session } from "./api.js";
import { clear, dialog, fmtTime, h } from "./dom.js";
import { t } from "./i18n.js";
import { commandStatus, showError } from "./views.js";

const REFRESH_MS = 3000;
const DUAL_CONTROL = new Set(["service.call", "config.apply", "firmware.apply"]); // gascore.downlink

export function render(main, [gatewayId], ctx) {
  const section = h("section", { id: "commands" }, h("h1", {}, t("commands.title")), h("p", {}, t("common.loading")));
  main.append(section);
  let alive = true;
  let timer = null;
  if (!gatewayId) {
    pickGateway().catch((err) => showError(section, err));
    return () => (alive = false);
  }
  const enc = encodeURIComponent(gatewayId);
  const list = h("div", { class: "card", id: "command-list" });
  clear(section,
    h("h1", {}, `${t("commands.title")} · `, h("a", { href: `#/gateway/${enc}` }, gatewayId)),
    session.may("command.create") ? form() : null,
    list);
  const refresh = async () => {
    clearTimeout(timer);
    try {
      const { commands } = await api(`/v1/gateways/${enc}/commands`);
      if (alive) drawList(commands);
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

  async function pickGateway() {
    const { gateways } = await api("/v1/gateways");
    if (!alive) return;
    clear(section, h("h1", {}, t("commands.title")), h("h2", {}, t("commands.pick")),
      h("ul", { class: "gateways" }, gateways.map((g) => h("li", {}, h("a", { href: `#/commands/${encodeURIComponent(g.gateway_id)}` }, g.gateway_id)))));
  }

  function form() {
    const type = h("select", { name: "type", id: "command-type" }, ["point.write", "service.call"].map((v) => h("option", { value: v }, v)));
    const field = (name, label, attrs = {}) => h("label", { "data-for": name }, h("span", {}, t(label)), h("input", { name, id: `command-${name}`, ...attrs }));
    const f = h("form", { class: "card", id: "command-form" },
      h("h2", {}, t("commands.new")),
      h("div", { class: "row" },
        h("label", {}, h("span", {}, t("commands.type")), type),
        field("device", "commands.device", { required: true }),
        field("point", "commands.point"),
        field("value", "commands.value"),
        field("service", "commands.service"),
        field("args", "commands.args", { value: "{}" })),
      h("button", { type: "submit", id: "command-send" }, t("commands.send")));
    const sync = () => {
      const write = type.value === "point.write";
      for (const [name, show] of [["point", write], ["value", write], ["service", !write], ["args", !write]]) {
        f.querySelector(`[data-for=${name}]`).hidden = !show;
        f.querySelector(`#command-${name}`).required = show;
      }
    };
    type.addEventListener("change", sync);
    sync();
    f.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const d = Object.fromEntries(new FormData(f).entries());
      const by = session.get().user;
      let body;
      try {
        body = d.type === "point.write"
          ? { device: d.device, point: d.point, value: parseValue(d.value), by }
          : { device: d.device, service: d.service, args: JSON.parse(d.args || "{}"), by };
      } catch (err) {
        ctx.toast(`${t("commands.args")}: ${err.message}`, "error");
        return;
      }
      const ok = await dialog(t("commands.confirm_title"),
        h("div", {},
          h("p", {}, t("commands.confirm_text", { gateway: gatewayId })),
          h("pre", { id: "command-preview" }, JSON.stringify({ type: d.type, body }, null, 2)),
          DUAL_CONTROL.has(d.type) ? h("p", { class: "warning" }, t("commands.dual")) : null),
        t("common.ok"), t("common.cancel"));
      if (!ok) return;
      try {
        const reply = await api(`/v1/gateways/${enc}/commands`, { method: "POST", body: { type: d.type, body } });
        ctx.toast(t("commands.sent", { id: reply.id, status: t(`cmdstatus.${reply.status}`) }));
      } catch (err) {
        ctx.toast(`${t("common.error")}: ${err.message}`, "error");
      }
      refresh();
    });
    return f;
  }

  function drawList(commands) {
    const me = `user:${session.get()?.user}`;
    if (!commands.length) {
      clear(list, h("p", {}, t("commands.empty")));
      return;
    }
    clear(list, h("table", {},
      h("thead", {}, h("tr", {}, ["commands.id", "commands.type", "commands.status", "commands.by", "commands.confirmed_by", "commands.created", "commands.result", "alarms.action"].map((k) => h("th", {}, t(k))))),
      h("tbody", {}, commands.map((c) =>
        h("tr", { "data-command": c.id },
          h("td", { class: "num" }, String(c.id)),
          h("td", {}, c.type, h("br"), h("small", {}, JSON.stringify(c.body))),
          h("td", { "data-field": "status" }, commandStatus(c.status)),
          h("td", {}, c.created_by),
          h("td", {}, c.confirmed_by || "—"),
          h("td", {}, fmtTime(c.created_ms)),
          h("td", {}, c.result ? `${c.result.status}: ${c.result.detail || ""}` : "—"),
          h("td", {}, c.status === "awaiting_confirmation" && session.may("command.create") && c.created_by !== me
            ? h("button", { type: "button", "data-confirm": c.id, onclick: () => confirmCommand(c) }, t("commands.second"))
            : null))))));
  }

  async function confirmCommand(c) {
    const ok = await dialog(t("commands.second_title"),
      h("div", {}, h("p", {}, t("commands.second_text", { id: c.id, type: c.type })), h("pre", {}, JSON.stringify(c.body, null, 2))),
      t("commands.second"), t("common.cancel"));
    if (!ok) return;
    try {
      await api(`/v1/gateways/${enc}/commands/${c.id}/confirm`, { method: "POST" });
      ctx.toast(t("commands.sent", { id: c.id, status: t("cmdstatus.pending") }));
    } catch (err) {
      ctx.toast(`${t("common.error")}: ${err.message}`, "error");
    }
    refresh();
  }
}

/** "12.5" → 12.5, "true" → true, anything else stays text. */
function parseValue(text) {
  try {
    const v = JSON.parse(text);
    return ["number", "boolean"].includes(typeof v) ? v : text;
  } catch {
    return text;
  }
}
