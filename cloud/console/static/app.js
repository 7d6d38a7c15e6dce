// The console shell: hash routes, the navigation a role may use, language, logout, idle timeout.
// Each view module exports render(main, params, ctx) and may return a function that stops what it
// started (streams, timers) when the user leaves the page.

import { logout, onUnauthenticated, session } from "./api.js";
import { clear, h } from "./dom.js";
import { lang, setLang, t, translate } from "./i18n.js";
import * as alarms from "./alarms.js";
import * as audit from "./audit.js";
import * as commands from "./commands.js";
import * as gateway from "./gateway.js";
import * as loginView from "./login.js";
import * as stations from "./stations.js";

// `needs`: the API permission the page's data needs (the API checks it again; this only avoids
// offering a page that could show nothing but "forbidden").
const ROUTES = [
  { pattern: /^\/login$/, view: loginView, public: true },
  { pattern: /^\/stations$/, view: stations, needs: "registry.read", nav: "nav.stations", href: "#/stations" },
  { pattern: /^\/gateway\/([^/]+)$/, view: gateway, needs: "data.read" },
  { pattern: /^\/alarms$/, view: alarms, needs: "data.read", nav: "nav.alarms", href: "#/alarms" },
  { pattern: /^\/commands(?:\/([^/]+))?$/, view: commands, needs: "command.read", nav: "nav.commands", href: "#/commands" },
  { pattern: /^\/audit$/, view: audit, needs: "audit.read", nav: "nav.audit", href: "#/audit" },
];
const IDLE_MS = 30 * 60 * 1000; // as the server's session idle limit: a live page is not a person

const main = document.getElementById("view");
let stop = null;
let lastInput = Date.now();

export function toast(message, kind = "info") {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = kind;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (el.hidden = true), 6000);
}

function home() {
  const first = ROUTES.find((r) => r.nav && session.may(r.needs));
  return first ? first.href : "#/login";
}

function renderBar() {
  const s = session.get();
  const nav = clear(document.getElementById("nav"));
  const current = location.hash.slice(1);
  if (s) {
    for (const r of ROUTES.filter((r) => r.nav && session.may(r.needs))) {
      const active = current.startsWith(r.href.slice(1));
      nav.append(h("a", { href: r.href, class: active ? "active" : null, "data-nav": r.href.slice(2) }, t(r.nav)));
    }
  }
  document.getElementById("who").textContent = s ? `${s.user} · ${s.role}` : "";
  document.getElementById("logout").hidden = !s;
  document.getElementById("lang").textContent = t("lang.switch");
  translate(document.getElementById("bar"));
}

function route() {
  if (stop) {
    stop();
    stop = null;
  }
  const path = location.hash.slice(1) || "/";
  if (path === "/") {
    location.replace(session.get() ? home() : "#/login");
    return;
  }
  const match = ROUTES.map((r) => ({ r, m: r.pattern.exec(path) })).find((x) => x.m);
  renderBar();
  clear(main);
  if (!match) {
    main.append(h("p", { class: "notice" }, t("common.not_found")));
    return;
  }
  const { r, m } = match;
  if (!r.public && !session.get()) {
    location.replace("#/login");
    return;
  }
  if (r.needs && !session.may(r.needs)) {
    main.append(h("p", { class: "notice forbidden", "data-state": "forbidden" }, t("common.forbidden")));
    return;
  }
  const params = m.slice(1).map((p) => (p === undefined ? p : decodeURIComponent(p)));
  stop = r.view.render(main, params, { toast, home }) || null;
}

document.getElementById("lang").addEventListener("click", () => {
  setLang(lang() === "zh-CN" ? "en" : "zh-CN");
  route();
});
document.getElementById("logout").addEventListener("click", async () => {
  await logout();
  location.hash = "#/login";
});
onUnauthenticated(() => {
  toast(t("common.session_ended"), "error");
  location.hash = "#/login";
});
for (const kind of ["pointerdown", "keydown"]) addEventListener(kind, () => (lastInput = Date.now()), { passive: true });
setInterval(async () => {
  if (session.get() && Date.now() - lastInput > IDLE_MS) {
    await logout();
    toast(t("common.session_ended"), "error");
    location.hash = "#/login";
  }
}, 30000);

document.documentElement.lang = lang();
addEventListener("hashchange", route);
route();
