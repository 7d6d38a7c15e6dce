// Small DOM helpers.  Text always goes in as text (textContent), never as HTML: a device name or an
// alarm message from a gateway can never become markup, whatever it contains.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** h("td", {class: "x"}, "text", otherNode) */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replace el's children with ``children`` (null, undefined and false are left out). */
export function clear(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

const pad = (n) => String(n).padStart(2, "0");

/** Local date and time, 2024-05-01 13:45:07 (unambiguous in both languages). */
export function fmtTime(ms) {
  if (ms === null || ms === undefined) return "—";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** 3 s, 4 min, 2 h, 5 d */
export function fmtAge(ms) {
  if (ms === null || ms === undefined) return "—";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

export function fmtValue(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(6).replace(/\.?0+$/, "");
  return String(value);
}

/** A modal dialog; resolves with the form's values on OK, null on cancel. */
export function dialog(title, body, okLabel, cancelLabel) {
  return new Promise((resolve) => {
    const form = h("form", { method: "dialog" },
      h("h2", {}, title),
      body,
      h("menu", {},
        h("button", { type: "button", value: "cancel", class: "secondary", "data-role": "cancel" }, cancelLabel),
        h("button", { type: "submit", value: "ok", "data-role": "ok" }, okLabel)));
    const dlg = h("dialog", { class: "confirm" }, form);
    form.querySelector("[data-role=cancel]").addEventListener("click", () => dlg.close("cancel"));
    dlg.addEventListener("close", () => {
      const values = Object.fromEntries(new FormData(form).entries());
      dlg.remove();
      resolve(dlg.returnValue === "ok" ? values : null);
    });
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      dlg.close("ok");
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}
