// Log in: user name and password, then the one-time code when the server asks for it.

import { login, session } from "./api.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";

export function render(main, _params, ctx) {
  if (session.get()) {
    location.replace(ctx.home());
    return;
  }
  const error = h("p", { class: "error", id: "login-error", role: "alert", hidden: true });
  const totpRow = h("label", { hidden: true, id: "totp-row" },
    h("span", {}, t("login.totp")),
    h("input", { name: "totp", id: "totp", inputmode: "numeric", autocomplete: "one-time-code", pattern: "[0-9]{6,8}", maxlength: 8 }),
    h("small", {}, t("login.totp_hint")));
  const form = h("form", { id: "login-form", class: "card narrow", novalidate: false },
    h("h1", {}, t("login.title")),
    h("label", {}, h("span", {}, t("login.user")),
      h("input", { name: "username", id: "username", autocomplete: "username", required: true, autofocus: true })),
    h("label", {}, h("span", {}, t("login.password")),
      h("input", { name: "password", id: "password", type: "password", autocomplete: "current-password", required: true })),
    totpRow,
    error,
    h("button", { type: "submit", id: "login-submit" }, t("login.submit")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const button = form.querySelector("button");
    button.disabled = true;
    error.hidden = true;
    try {
      const result = await login(String(data.get("username")), String(data.get("password")), String(data.get("totp") || ""));
      if (result.ok) {
        location.hash = ctx.home();
        return;
      }
      if (result.error === "totp_required") {
        totpRow.hidden = false;
        form.querySelector("#totp").required = true;
        form.querySelector("#totp").focus();
        return;
      }
      error.textContent = t(`login.${result.error}`) === `login.${result.error}` ? result.detail : t(`login.${result.error}`);
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
  main.append(form);
}
