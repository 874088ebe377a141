// The console's entry point: the hash router, the token dialog, the feature probe.

import { ApiError, getToken, request, setToken } from "./api.js";
import { deadLettersPage } from "./deadletters.js";
import { detailPage } from "./detail.js";
import { listPage } from "./list.js";
import { flash, setLive } from "./view.js";

let current = null; // AbortController of the page on screen

function route() {
  current?.abort();
  current = new AbortController();
  const main = document.getElementById("main");
  main.replaceChildren();
  setLive("off");
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, search] = hash.split("?", 2);
  const params = new URLSearchParams(search || "");
  for (const a of document.querySelectorAll("header nav a")) a.classList.remove("here");
  if (path.startsWith("/op/")) {
    detailPage(main, decodeURIComponent(path.slice(4)), current.signal);
  } else if (path === "/dead-letters") {
    document.getElementById("nav-dead-letters").classList.add("here");
    deadLettersPage(main, params, current.signal);
  } else {
    document.getElementById("nav-operations").classList.add("here");
    listPage(main, params, current.signal);
  }
}

function tokenDialog() {
  const dialog = document.getElementById("token-dialog");
  if (dialog.open) return;
  document.getElementById("token-input").value = getToken();
  dialog.returnValue = "";
  dialog.showModal();
}

function setUpToken() {
  const dialog = document.getElementById("token-dialog");
  document.getElementById("token-button").addEventListener("click", tokenDialog);
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === "save") setToken(document.getElementById("token-input").value.trim());
    else if (dialog.returnValue === "clear") setToken("");
    else return;
    route();
    probe();
  });
  document.addEventListener("unauthenticated", (e) => {
    flash(`${e.detail} — set a token to go on.`, "error");
    tokenDialog();
  });
}

/** Hide the dead-letter panel on a tracker that does not serve the route (404). */
async function probe() {
  const nav = document.getElementById("nav-dead-letters");
  try {
    await request("GET", "/v1/deadLetters", { params: { pageSize: 1 } });
    document.body.dataset.deadLetters = "available";
    nav.hidden = false;
  } catch (err) {
    const missing = err instanceof ApiError && err.httpStatus === 404;
    document.body.dataset.deadLetters = missing ? "missing" : "unknown";
    nav.hidden = missing;
  }
}

setUpToken();
window.addEventListener("hashchange", route);
route();
probe();
