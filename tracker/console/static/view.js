// DOM helpers shared by the pages. Text always goes in as text nodes (no innerHTML),
// so nothing an operation carries can become markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export const metadata = (op) => (op && op.metadata) || {};

/** running | cancelling | succeeded | failed | cancelled */
export function statusOf(op) {
  if (!op.done) return metadata(op).cancelRequested ? "cancelling" : "running";
  if (op.error) return op.error.code === 1 ? "cancelled" : "failed";
  return "succeeded";
}

export const badge = (op) => {
  const status = statusOf(op);
  return h("span", { class: `badge status-${status}` }, status);
};

export function percentOf(op) {
  const p = Number(metadata(op).percent || 0);
  return op.done && !op.error ? 100 : Math.max(0, Math.min(100, p));
}

export function progressBar(op) {
  const p = percentOf(op);
  const shown = Number.isInteger(p) ? String(p) : p.toFixed(1);
  return h(
    "span",
    { class: "progress" },
    h("progress", { max: 100, value: p, "data-percent": shown }),
    h("span", { class: "pct" }, `${shown}%`),
  );
}

/** An RFC 3339 time as local "YYYY-MM-DD HH:MM:SS" (the full value on hover). */
export function when(text) {
  if (!text) return "";
  const d = new Date(text);
  if (Number.isNaN(d.getTime())) return text;
  const pad = (n) => String(n).padStart(2, "0");
  const shown =
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return h("time", { datetime: text, title: text }, shown);
}

export const json = (value) => h("pre", { class: "json" }, JSON.stringify(value, null, 2));

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

let flashTimer = 0;

/** A message under the header; errors stay until the next one. */
export function flash(text, kind = "info") {
  const el = document.getElementById("flash");
  el.textContent = text;
  el.className = `flash-${kind}`;
  el.hidden = false;
  clearTimeout(flashTimer);
  if (kind !== "error") flashTimer = setTimeout(() => (el.hidden = true), 6000);
}

/** Ask before an action; resolves true when the user confirms. */
export function confirmAction(text, yes) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-yes").textContent = yes;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) =>
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), {
      once: true,
    }),
  );
}

/** The live indicator in the header: live | connecting | off. */
export function setLive(state) {
  const el = document.getElementById("live");
  el.dataset.state = state;
  el.title = `live updates: ${state}`;
}

export const opLink = (name) => h("a", { href: `#/op/${encodeURIComponent(name)}` }, name);

/** Run `fn` `ms` after a call, calls meanwhile included: at most once per `ms`. */
export function throttle(fn, ms) {
  let timer = 0;
  return () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = 0;
      fn();
    }, ms);
  };
}
