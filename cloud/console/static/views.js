// What several views share.

import { ApiError } from "./api.js";
import { clear, h } from "./dom.js";
import { t } from "./i18n.js";

/** Replace ``section``'s content with what went wrong, in the user's words. */
export function showError(section, err) {
  const title = section.querySelector("h1")?.textContent;
  let text = `${t("common.error")}: ${err.message}`;
  let state = "error";
  if (err instanceof ApiError && err.status === 403) [text, state] = [t("common.forbidden"), "forbidden"];
  if (err instanceof ApiError && err.status === 404) [text, state] = [t("common.not_found"), "not-found"];
  clear(section, title ? h("h1", {}, title) : null, h("p", { class: `notice ${state}`, "data-state": state }, text));
}

export function priorityBadge(priority) {
  return h("span", { class: `priority ${priority}`, "data-priority": priority }, t(`priority.${priority}`));
}

export function commandStatus(status) {
  return h("span", { class: `cmd ${status}`, "data-status": status }, t(`cmdstatus.${status}`));
}
