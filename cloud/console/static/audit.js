// The audit log, for auditors: a period (the last day by default), filters by actor and action
// prefix, oldest first within the period with "more" to page on, and verification of the SM3 hash
// chain (its head is what to write down).

import { api } from "./api.js";
import { clear, fmtTime, h } from "./dom.js";
import { t } from "./i18n.js";
import { showError } from "./views.js";

const PAGE = 200;
const PERIODS = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };

export function render(main) {
  const section = h("section", { id: "audit" }, h("h1", {}, t("audit.title")));
  const period = h("select", { name: "period", id: "audit-period" },
    Object.keys(PERIODS).map((p) => h("option", { value: p, selected: p === "24h" }, t(`range.${p}`))));
  const actor = h("input", { name: "actor", id: "audit-actor", placeholder: t("audit.actor") });
  const action = h("input", { name: "action", id: "audit-action", placeholder: t("audit.action") });
  const result = h("p", { id: "audit-verify-result" });
  const tbody = h("tbody", { id: "audit-entries" });
  const more = h("button", { type: "button", class: "secondary", id: "audit-more", hidden: true }, t("audit.more"));
  const filter = h("form", { class: "toolbar" }, period, actor, action, h("button", { type: "submit" }, t("audit.filter")),
    h("button", { type: "button", class: "secondary", id: "audit-verify", onclick: verify }, t("audit.verify")));
  section.append(filter, result,
    h("div", { class: "card" }, h("table", { id: "audit-list" },
      h("thead", {}, h("tr", {}, ["audit.seq", "audit.time", "audit.actor", "audit.action", "audit.target", "audit.outcome", "audit.source", "audit.detail"].map((k) => h("th", {}, t(k))))),
      tbody)), more);
  main.append(section);
  let after = 0;
  let from = 0;
  let alive = true;

  const restart = () => {
    clear(tbody);
    after = 0;
    from = Date.now() - PERIODS[period.value];
    load();
  };
  filter.addEventListener("submit", (ev) => {
    ev.preventDefault();
    restart();
  });
  more.addEventListener("click", load);
  restart();
  return () => (alive = false);

  async function load() {
    try {
      const q = new URLSearchParams({ after: String(after), limit: String(PAGE), from: String(Math.floor(from)) });
      if (actor.value) q.set("actor", actor.value);
      if (action.value) q.set("action", action.value);
      const { entries } = await api(`/v1/audit?${q}`);
      if (!alive) return;
      for (const e of entries) {
        tbody.append(h("tr", { "data-seq": e.seq, class: e.outcome === "ok" ? null : "denied" },
          h("td", { class: "num" }, String(e.seq)), h("td", {}, fmtTime(e.ts_ms)), h("td", {}, e.actor), h("td", {}, e.action),
          h("td", {}, e.target), h("td", {}, e.outcome), h("td", {}, e.source),
          h("td", {}, h("code", {}, JSON.stringify(e.detail)))));
      }
      if (entries.length) after = entries[entries.length - 1].seq;
      more.hidden = entries.length < PAGE;
    } catch (err) {
      if (alive) showError(section, err);
    }
  }

  async function verify() {
    try {
      const r = await api("/v1/audit/verify");
      result.textContent = r.ok ? t("audit.verified", { entries: r.entries, head: String(r.head_hash).slice(0, 16) }) : t("audit.broken", { problem: r.problem });
      result.className = r.ok ? "notice ok" : "notice error";
    } catch (err) {
      result.textContent = `${t("common.error")}: ${err.message}`;
    }
  }
}
