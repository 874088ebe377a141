// Dead letters: messages the tracker could not apply, with a replay button. A tracker
// that does not serve /v1/deadLetters (404) gets a note instead of the panel.

import { ApiError, getJson, post } from "./api.js";
import { confirmAction, flash, h, when } from "./view.js";

const preview = (letter) => {
  const text = letter.bodyText !== undefined ? letter.bodyText : letter.body || "";
  return text.length > 160 ? `${text.slice(0, 160)}…` : text;
};

export function deadLettersPage(main, params, signal) {
  const filter = params.get("filter") || "";
  const state = { tokens: [""], index: 0, next: "" };
  const input = h("input", { id: "dl-filter", name: "filter", value: filter, autocomplete: "off" });
  const form = h("form", { class: "filter" }, input, h("button", { type: "submit", class: "primary" }, "Apply"));
  const error = h("p", { id: "dl-error", class: "error", hidden: true });
  const body = h("tbody", { id: "dead-letters" });
  const next = h("button", { id: "dl-next", type: "button", disabled: true }, "Next ›");
  const prev = h("button", { id: "dl-prev", type: "button", disabled: true }, "‹ Previous");
  const panel = h(
    "section",
    { id: "dead-letter-panel" },
    form,
    error,
    h(
      "table",
      { class: "dead-letters" },
      h("thead", {}, h("tr", {}, ["Received", "Route", "Reason", "Detail", "Message", "Body", ""].map((t) => h("th", {}, t)))),
      body,
    ),
    h("div", { class: "pager" }, prev, next),
  );
  main.append(h("h1", {}, "Dead letters"), panel);

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = input.value.trim();
    location.hash = q ? `#/dead-letters?filter=${encodeURIComponent(q)}` : "#/dead-letters";
  });

  function row(letter) {
    const path = "/v1/" + (letter.name || `deadLetters/${letter.id}`).split("/").map(encodeURIComponent).join("/");
    const replay = h("button", { type: "button", class: "replay" }, "Replay…");
    replay.addEventListener("click", async () => {
      if (!(await confirmAction(`Replay dead letter ${letter.id}? It is applied as if received now.`, "Replay"))) return;
      try {
        await post(`${path}:replay`);
        flash(`Dead letter ${letter.id} replayed.`, "ok");
        load();
      } catch (err) {
        flash(String(err), "error");
      }
    });
    return h(
      "tr",
      { dataset: { id: letter.id || "" } },
      h("td", {}, when(letter.receivedTime)),
      h("td", {}, letter.route || ""),
      h("td", {}, letter.reason || ""),
      h("td", { class: "message" }, letter.detail || ""),
      h("td", {}, letter.messageId || ""),
      h("td", { class: "data" }, preview(letter)),
      h("td", {}, replay),
    );
  }

  async function load() {
    try {
      const page = await getJson(
        "/v1/deadLetters",
        { filter, pageSize: 50, pageToken: state.tokens[state.index] },
        signal,
      );
      error.hidden = true;
      const letters = page.deadLetters || [];
      body.replaceChildren(...(letters.length ? letters.map(row) : [h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No dead letters."))]));
      state.next = page.nextPageToken || "";
      next.disabled = !state.next;
      prev.disabled = state.index === 0;
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && err.httpStatus === 404) {
        panel.replaceWith(
          h("p", { id: "dead-letters-missing", class: "muted" }, "This tracker serves no dead letters (GET /v1/deadLetters answered 404)."),
        );
        return;
      }
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
  load();
}
