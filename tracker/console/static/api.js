// Calls to the tracker's API with this tab's token. Server-Sent Events are read over
// fetch rather than EventSource, so the token travels in a header, never in a URL.

const KEY = "tracker.console.token";

export const getToken = () => sessionStorage.getItem(KEY) || "";

export function setToken(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

/** A Google JSON error answer ({error: {code, message, status, details}}). */
export class ApiError extends Error {
  constructor(httpStatus, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${httpStatus}`);
    this.httpStatus = httpStatus;
    this.status = e.status || "";
  }

  toString() {
    return `${this.httpStatus} ${this.status || "error"}: ${this.message}`;
  }
}

function url(path, params) {
  const u = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, String(v));
  }
  return u;
}

function headers(json) {
  const h = {};
  const token = getToken();
  if (token) h.Authorization = `Bearer ${token}`;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

async function failure(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    // not JSON: the status alone says it
  }
  const err = new ApiError(resp.status, body);
  if (resp.status === 401) {
    document.dispatchEvent(new CustomEvent("unauthenticated", { detail: err }));
  }
  return err;
}

export async function request(method, path, { params, body, signal } = {}) {
  const resp = await fetch(url(path, params), {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: "no-store",
  });
  if (!resp.ok) throw await failure(resp);
  return resp;
}

export const getJson = async (path, params, signal) =>
  (await request("GET", path, { params, signal })).json();

export const post = async (path, body = {}) => (await request("POST", path, { body })).json();

export const remove = async (path) => (await request("DELETE", path)).json();

/** `/v1/<name>`, each segment escaped (a ':' in a name is not a custom verb). */
export const resourcePath = (name) =>
  "/v1/" + name.split("/").map(encodeURIComponent).join("/");

/** Read an SSE stream, calling onEvent(type, data) per event; resolves when it ends. */
export async function stream(path, params, onEvent, signal) {
  const resp = await request("GET", path, { params, signal });
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let type = "message";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).replace(/\r$/, "");
      buffer = buffer.slice(nl + 1);
      if (line === "") {
        if (data.length) onEvent(type, data.join("\n"));
        type = "message";
        data = [];
      } else if (!line.startsWith(":")) {
        const i = line.indexOf(":");
        const field = i < 0 ? line : line.slice(0, i);
        let v = i < 0 ? "" : line.slice(i + 1);
        if (v.startsWith(" ")) v = v.slice(1);
        if (field === "event") type = v;
        else if (field === "data") data.push(v);
      }
    }
  }
}

/** Resolve after `ms`, or at once when `signal` aborts. */
export const pause = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
