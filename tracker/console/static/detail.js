// One operation: metadata, result or error, attempts, children, checkpoint size, the
// timeline from its event history (hidden where the tracker serves none), and cancel
// and delete behind a confirmation. Kept live by the operation's :watch stream.

import { ApiError, getJson, pause, post, remove, request, resourcePath, stream } from "./api.js";
import {
  badge,
  bytes,
  confirmAction,
  throttle,
  flash,
  h,
  json,
  metadata,
  progressBar,
  setLive,
  when,
} from "./view.js";

function fields(rows) {
  return h(
    "dl",
    { class: "fields" },
    rows.filter(([, v]) => v !== undefined && v !== "" && v !== null).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}

function labels(map) {
  const entries = Object.entries(map || {}).sort(([a], [b]) => (a < b ? -1 : 1));
  if (!entries.length) return "";
  return h("span", {}, entries.map(([k, v]) => h("span", { class: "label" }, `${k}=${v}`)));
}

function section(id, title, ...content) {
  return h("section", { id, class: "panel" }, h("h2", {}, title), ...content);
}

export function detailPage(main, name, signal) {
  const path = resourcePath(name);
  const actions = h(
    "div",
    { class: "actions" },
    h("button", { id: "cancel", type: "button", class: "danger" }, "Cancel…"),
    h("button", { id: "delete", type: "button", class: "danger" }, "Delete…"),
  );
  const error = h("p", { id: "detail-error", class: "error", hidden: true });
  const summary = section("summary", "Operation");
  const result = section("result", "Result");
  const attempts = section("attempts", "Attempts");
  const children = section("children", "Children");
  const checkpoint = section("checkpoint", "Checkpoint", h("p", { id: "checkpoint-size" }, "…"));
  const timeline = section("timeline", "Timeline");
  main.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Operations"), " / "),
    h("h1", { id: "op-name" }, name),
    actions,
    error,
    h("div", { class: "grid" }, summary, result, attempts, children, checkpoint),
    timeline,
  );
  let op = null;

  function render(current) {
    op = current;
    const meta = metadata(op);
    summary.replaceChildren(
      h("h2", {}, "Operation"),
      fields([
        ["Status", badge(op)],
        ["Progress", progressBar(op)],
        ["Message", meta.message],
        ["Type", meta.operationType],
        ["Labels", labels(meta.labels)],
        ["Parent", meta.parent ? h("a", { href: `#/op/${encodeURIComponent(meta.parent)}` }, meta.parent) : ""],
        ["Created", when(meta.createTime)],
        ["Updated", when(meta.updateTime)],
        ["Ended", when(meta.endTime)],
        ["Last heartbeat", when(meta.lastHeartbeatTime)],
        ["Deadline", when(meta.deadline)],
        ["Last sequence", meta.lastSequence],
        ["Cancel requested", meta.cancelRequested ? "yes" : ""],
      ]),
    );
    result.replaceChildren(
      h("h2", {}, op.error ? "Error" : "Result"),
      op.error ? json(op.error) : op.response ? json(op.response) : h("p", { class: "muted" }, "Not done yet."),
    );
    attempts.replaceChildren(
      h("h2", {}, "Attempts"),
      fields([
        ["Attempt", meta.attempt || "1"],
        ["Why", meta.attemptReason],
        ["Started", when(meta.attemptStartTime)],
        ["Last attempt's error", meta.lastAttemptError ? json(meta.lastAttemptError) : ""],
      ]),
    );
    const c = meta.children || {};
    children.hidden = !Number(c.total || 0);
    const filter = `parent = ${JSON.stringify(name)}`;
    children.replaceChildren(
      h("h2", {}, "Children"),
      fields([
        ["Total", c.total || "0"],
        ["Done", `${c.done || 0} (${Number(c.percent || 0).toFixed(0)}%)`],
        ["Succeeded", c.succeeded || "0"],
        ["Failed", c.failed || "0"],
        ["Cancelled", c.cancelled || "0"],
      ]),
      h("a", { href: `#/?filter=${encodeURIComponent(filter)}` }, "List the children"),
    );
    document.getElementById("cancel").disabled = Boolean(op.done || meta.cancelRequested);
  }

  async function loadCheckpoint() {
    const out = document.getElementById("checkpoint-size");
    try {
      const resp = await request("GET", `${path}:checkpoint`, { signal });
      const size = (await resp.arrayBuffer()).byteLength;
      out.textContent = bytes(size);
      out.dataset.bytes = String(size);
    } catch (err) {
      if (signal.aborted) return;
      out.textContent = err instanceof ApiError && err.httpStatus === 404 ? "None." : String(err);
    }
  }

  const eventRow = (e) =>
    h(
      "tr",
      { dataset: { id: e.id || "" } },
      h("td", {}, when(e.time)),
      h("td", {}, (e.type || "").replace(/^tracker\.operation\.v1\./, "")),
      h("td", {}, e.attempt || ""),
      h("td", {}, e.sequence || ""),
      h("td", {}, e.outcome || ""),
      h("td", { class: "data" }, e.data !== undefined ? JSON.stringify(e.data) : e.dataBase64 ? `${e.dataBase64.length} base64 chars` : "", e.truncated ? " (truncated)" : ""),
    );

  async function loadTimeline() {
    try {
      const page = await getJson(`${path}/events`, {}, signal);
      const rows = (page.events || []).map(eventRow);
      timeline.hidden = false;
      timeline.replaceChildren(
        h("h2", {}, "Timeline"),
        rows.length
          ? h(
              "table",
              {},
              h("thead", {}, h("tr", {}, ["Time", "Event", "Attempt", "Sequence", "Outcome", "Data"].map((t) => h("th", {}, t)))),
              h("tbody", {}, rows),
            )
          : h("p", { class: "muted" }, "No events recorded."),
        page.nextPageToken ? h("p", { class: "muted" }, "Showing the first page of events.") : "",
      );
    } catch (err) {
      if (signal.aborted) return;
      // 404: this tracker keeps no history (or not of this operation): no panel.
      timeline.hidden = err instanceof ApiError && err.httpStatus === 404;
      if (!timeline.hidden) timeline.replaceChildren(h("h2", {}, "Timeline"), h("p", { class: "error" }, String(err)));
    }
  }

  const refreshSides = throttle(() => {
    loadCheckpoint();
    loadTimeline();
  }, 500);

  document.getElementById("cancel").addEventListener("click", async () => {
    if (!(await confirmAction(`Cancel ${name}? The work is told to stop.`, "Cancel operation"))) return;
    try {
      await post(`${path}:cancel`);
      flash(`Cancel of ${name} requested.`, "ok");
      render(await getJson(path, {}, signal));
    } catch (err) {
      flash(String(err), "error");
    }
  });
  document.getElementById("delete").addEventListener("click", async () => {
    if (!(await confirmAction(`Delete ${name}? Its record is removed for good.`, "Delete operation"))) return;
    try {
      await remove(path);
      flash(`${name} deleted.`, "ok");
      location.hash = "#/";
    } catch (err) {
      flash(String(err), "error");
    }
  });

  async function live() {
    while (!signal.aborted) {
      setLive("connecting");
      try {
        await stream(
          `${path}:watch`,
          {},
          (type, data) => {
            if (type !== "message") return;
            setLive("live");
            render(JSON.parse(data));
            refreshSides();
          },
          signal,
        );
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof ApiError && err.httpStatus < 500) {
          setLive("off");
          if (!op) {
            error.textContent = String(err);
            error.hidden = false;
            actions.hidden = true;
          }
          return;
        }
      }
      if (signal.aborted || (op && op.done)) {
        setLive("off");
        return;
      }
      await pause(2000, signal);
    }
  }

  live();
}
