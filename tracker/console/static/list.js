// The operations list: a filter box, paging, status badges and progress bars kept live
// by one stream of every changed operation matching the filter (/v1/operations:stream).

import { ApiError, getJson, pause, stream } from "./api.js";
import {
  badge,
  throttle,
  flash,
  h,
  metadata,
  opLink,
  progressBar,
  setLive,
  statusOf,
  when,
} from "./view.js";

const PAGE_SIZES = [10, 25, 50, 100];

function row(op) {
  const meta = metadata(op);
  return h(
    "tr",
    { dataset: { name: op.name, status: statusOf(op) } },
    h("td", { class: "name" }, opLink(op.name)),
    h("td", {}, meta.operationType || ""),
    h("td", {}, badge(op)),
    h("td", {}, progressBar(op)),
    h("td", { class: "message" }, meta.message || ""),
    h("td", {}, when(meta.updateTime)),
  );
}

export function listPage(main, params, signal) {
  const filter = params.get("filter") || "";
  const size = Number(params.get("pageSize")) || 25;
  const state = { tokens: [""], index: 0, next: "", seq: 0 };

  const input = h("input", {
    id: "filter",
    name: "filter",
    value: filter,
    placeholder: 'done = false AND labels.env = "prod"',
    autocomplete: "off",
    spellcheck: "false",
  });
  const sizes = h(
    "select",
    { id: "page-size", "aria-label": "page size" },
    PAGE_SIZES.map((n) => h("option", { value: n, selected: n === size }, `${n} a page`)),
  );
  const form = h(
    "form",
    { class: "filter", id: "filter-form" },
    input,
    sizes,
    h("button", { type: "submit", class: "primary" }, "Apply"),
  );
  const error = h("p", { id: "list-error", class: "error", hidden: true });
  const body = h("tbody", { id: "operations" });
  const empty = h("p", { id: "list-empty", class: "muted", hidden: true }, "No operations.");
  const prev = h("button", { id: "prev", type: "button", disabled: true }, "‹ Previous");
  const next = h("button", { id: "next", type: "button", disabled: true }, "Next ›");
  const where = h("span", { id: "page-number", class: "muted" }, "page 1");

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    if (input.value.trim()) q.set("filter", input.value.trim());
    if (Number(sizes.value) !== 25) q.set("pageSize", sizes.value);
    const target = `#/?${q}`;
    if (location.hash === target) load();
    else location.hash = target;
  });

  main.append(
    h("h1", {}, "Operations"),
    form,
    error,
    h(
      "table",
      { class: "operations" },
      h(
        "thead",
        {},
        h("tr", {}, ["Name", "Type", "Status", "Progress", "Message", "Updated"].map((t) => h("th", {}, t))),
      ),
      body,
    ),
    empty,
    h("div", { class: "pager" }, prev, where, next),
  );

  async function load() {
    const seq = ++state.seq;
    try {
      const page = await getJson(
        "/v1/operations",
        { filter, pageSize: size, pageToken: state.tokens[state.index] },
        signal,
      );
      if (seq !== state.seq || signal.aborted) return; // a newer load is under way
      error.hidden = true;
      body.replaceChildren(...(page.operations || []).map(row));
      empty.hidden = Boolean(page.operations && page.operations.length);
      state.next = page.nextPageToken || "";
      prev.disabled = state.index === 0;
      next.disabled = !state.next;
      where.textContent = `page ${state.index + 1}`;
    } catch (err) {
      if (signal.aborted || seq !== state.seq) return;
      body.replaceChildren();
      empty.hidden = true;
      error.textContent = String(err);
      error.hidden = false;
    }
  }

  next.addEventListener("click", () => {
    state.tokens[state.index + 1] = state.next;
    state.index += 1;
    load();
  });
  prev.addEventListener("click", () => {
    state.index = Math.max(0, state.index - 1);
    load();
  });

  // A change of a row on screen is drawn in place; any other (a new operation, one that
  // now matches) may move rows between pages, so the page is listed again, at most
  // once a second.
  const reload = throttle(load, 1000);
  function changed(op) {
    const old = body.querySelector(`tr[data-name="${CSS.escape(op.name)}"]`);
    if (old) old.replaceWith(row(op));
    else reload();
  }

  async function live() {
    while (!signal.aborted) {
      setLive("connecting");
      try {
        await stream(
          "/v1/operations:stream",
          { filter },
          (type, data) => {
            if (type === "ready") {
              setLive("live");
              load(); // from now on no change is missed
            } else if (type === "operation") changed(JSON.parse(data));
            else if (type === "resync") load();
            else if (type === "error") flash(`live updates: ${JSON.parse(data).error.message}`, "error");
          },
          signal,
        );
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof ApiError && err.httpStatus < 500) {
          setLive("off"); // a bad filter or missing credentials: the list says why
          return;
        }
      }
      if (signal.aborted) return;
      setLive("connecting");
      await pause(2000, signal);
    }
  }

  load();
  live();
}
