// The JSON API with the session token.  The token lives in sessionStorage (this tab only, gone when
// it closes; never localStorage) and goes out only as "Authorization: Bearer", never in a URL.

const SESSION_KEY = "gasiot.session";

export const session = {
  get() {
    try {
      return JSON.parse(sessionStorage.getItem(SESSION_KEY));
    } catch {
      return null;
    }
  },
  set(value) {
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(value));
  },
  clear() {
    sessionStorage.removeItem(SESSION_KEY);
  },
  may(permission) {
    return (this.get()?.permissions || []).includes(permission);
  },
};

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.detail || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

const listeners = { unauthenticated: () => {} };

/** Called when the server no longer accepts the session (expired, idle, logged out elsewhere). */
export function onUnauthenticated(fn) {
  listeners.unauthenticated = fn;
}

function headers(extra = {}) {
  const token = session.get()?.token;
  return { Accept: "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}), ...extra };
}

export async function api(path, { method = "GET", body } = {}) {
  const res = await fetch(path, {
    method,
    headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  });
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (res.status === 401 && session.get() && !path.startsWith("/v1/auth/login")) {
    session.clear();
    listeners.unauthenticated();
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/** Log in; returns {ok: true} or {ok: false, error} (error "totp_required" asks for the code). */
export async function login(username, password, totp) {
  try {
    const body = { username, password, ...(totp ? { totp } : {}) };
    const reply = await api("/v1/auth/login", { method: "POST", body });
    session.set({ token: reply.token, expires_ms: reply.expires_ms, role: reply.role, user: username });
    const me = await api("/v1/auth/me");
    session.set({ ...session.get(), permissions: me.permissions, scopes: me.scopes });
    return { ok: true };
  } catch (err) {
    session.clear();
    if (err instanceof ApiError) return { ok: false, error: err.body.error || "error", detail: err.message };
    throw err;
  }
}

export async function logout() {
  try {
    await api("/v1/auth/logout", { method: "POST" });
  } catch {
    // the session may be over already: forgetting it here is what matters
  }
  session.clear();
}

/**
 * Read a server-sent-events stream with fetch (EventSource cannot send the Authorization header).
 * Calls onEvent(name, data) per event and onState(true|false) as the connection comes and goes;
 * reconnects with backoff until ``signal`` aborts or the server ends the stream for good.
 */
export async function stream(path, { onEvent, onState, signal }) {
  let delay = 1000;
  while (!signal.aborted) {
    let final = false;
    try {
      const res = await fetch(path, { headers: headers({ Accept: "text/event-stream" }), cache: "no-store", signal });
      if (res.status === 401) {
        session.clear();
        listeners.unauthenticated();
        return;
      }
      if (!res.ok) throw new ApiError(res.status, null);
      onState(true);
      delay = 1000;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let name = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
          }
          if (!data.length) continue; // a keepalive comment
          const payload = JSON.parse(data.join("\n"));
          if (name === "end") final = payload.reason !== "shutdown";
          onEvent(name, payload);
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && [403, 404].includes(err.status)) final = true;
    }
    onState(false);
    if (final) return;
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 30000);
  }
}
