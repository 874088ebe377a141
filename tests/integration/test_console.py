"""The web console in a real headless Chromium (Debian's, scripts/install-chromium) driven
by Playwright, against a real server: live list, cancel and delete behind a confirmation,
a bad filter's error, the dead-letter panel, and assets that are small and self-contained.

Playwright only drives the browser at `CHROMIUM`; it downloads none. Every wait is the
driver's wait on the DOM (`expect`), never a sleep.
"""

from __future__ import annotations

import os
import re
import urllib.parse
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.helpers import envelope, ingest, make_event, running_op, succeed
from tracker.auth import token_digest
from tracker.bindings import to_binary
from tracker.config import Config
from tracker.events import Kind
from tracker.server import Server, running

CHROMIUM = os.environ.get("TRACKER_CHROMIUM", "/usr/bin/chromium")
ASSETS = Path(str(resources.files("tracker.console").joinpath("static")))
MAX_ASSET_BYTES = 150 * 1024

expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db = tmp_path_factory.mktemp("console") / "t.db"
    with running(Config(db=str(db), http_port=0, grpc_port=-1)) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-chromium (Debian's chromium)")
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    errors: list[str] = []
    tab = context.new_page()
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert errors == []  # no script error on any page a test visited


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:10]


def list_url(server: Server, filter_text: str = "") -> str:
    query = f"?filter={urllib.parse.quote(filter_text)}" if filter_text else ""
    return f"{server.http_url}/console/#/{query}"


def detail_url(server: Server, name: str) -> str:
    return f"{server.http_url}/console/#/op/{urllib.parse.quote(name, safe='')}"


def row(page: Page, name: str) -> str:
    return f'tr[data-name="{name}"]'


def test_the_list_updates_live_while_events_arrive(server: Server, page: Page, tag: str) -> None:
    name = f"operations/{tag}-live"
    running_op(server, name, 10.0, run=tag)
    page.goto(list_url(server, f'labels.run = "{tag}"'))
    bar = page.locator(f"{row(page, name)} progress")
    expect(bar).to_have_attribute("data-percent", "10")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")  # subscribed
    for percent in (25, 50, 75):
        ingest(server, [make_event(Kind.PROGRESS, name, data={"percent": percent})])
        expect(bar).to_have_attribute("data-percent", str(percent))
        expect(page.locator(f"{row(page, name)} .pct")).to_have_text(f"{percent}%")
    succeed(server, name, rows=1)
    expect(page.locator(f"{row(page, name)} .badge")).to_have_text("succeeded")
    # An operation created while the page is open appears without a reload.
    newcomer = f"operations/{tag}-new"
    running_op(server, newcomer, 5.0, run=tag)
    expect(page.locator(f"{row(page, newcomer)} .badge")).to_have_text("running")
    expect(page.locator("#operations tr")).to_have_count(2)


def test_paging_walks_the_pages(server: Server, page: Page, tag: str) -> None:
    names = [f"operations/{tag}-page-{i}" for i in range(12)]
    for name in names:
        running_op(server, name, 1.0, run=tag)
    page.goto(list_url(server, f'labels.run = "{tag}"'))
    page.select_option("#page-size", "10")
    page.click("#filter-form button[type=submit]")
    expect(page.locator("#operations tr")).to_have_count(10)
    page.click("#next")
    expect(page.locator("#page-number")).to_have_text("page 2")
    expect(page.locator("#operations tr")).to_have_count(2)
    expect(page.locator("#next")).to_be_disabled()
    page.click("#prev")
    expect(page.locator(f"{row(page, names[0])}")).to_be_visible()


def test_a_cancel_from_the_detail_page_reaches_the_store(
    server: Server, page: Page, tag: str
) -> None:
    name = f"operations/{tag}-cancel"
    running_op(server, name, 30.0)
    page.goto(detail_url(server, name))
    expect(page.locator("#summary .badge")).to_have_text("running")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    # Backing out of the confirmation changes nothing.
    page.click("#cancel")
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm-text")).to_contain_text(name)
    page.click("#confirm-no")
    expect(page.locator("#confirm")).to_be_hidden()
    stored = server.store.get(name)
    assert stored is not None and not stored.state.cancel_requested
    page.click("#cancel")
    page.click("#confirm-yes")
    expect(page.locator("#flash")).to_have_text(f"Cancel of {name} requested.")
    stored = server.store.get(name)
    assert stored is not None and stored.state.cancel_requested and stored.operation.done
    assert stored.operation.error.code == 1  # CANCELLED
    expect(page.locator("#summary .badge")).to_have_text("cancelled")
    expect(page.locator("#cancel")).to_be_disabled()


def test_a_delete_from_the_detail_page_reaches_the_store(
    server: Server, page: Page, tag: str
) -> None:
    name = f"operations/{tag}-delete"
    running_op(server, name)
    succeed(server, name)
    page.goto(detail_url(server, name))
    expect(page.locator("#summary .badge")).to_have_text("succeeded")
    expect(page.locator("#result pre")).to_contain_text("google.protobuf.Struct")
    page.click("#delete")
    page.click("#confirm-yes")
    expect(page.locator("h1")).to_have_text("Operations")  # back on the list
    assert server.store.get(name) is None


def test_the_detail_page_shows_attempts_children_and_the_checkpoint(
    server: Server, page: Page, tag: str
) -> None:
    parent, child = f"operations/{tag}-parent", f"operations/{tag}-child"
    running_op(server, parent)
    ingest(server, [make_event(Kind.CREATED, child, data={"parent": parent})])
    ingest(server, [make_event(Kind.CHECKPOINT, parent, data={"data": b"x" * 2048})])
    page.goto(detail_url(server, parent))
    expect(page.locator("#checkpoint-size")).to_have_attribute("data-bytes", "2048")
    expect(page.locator("#attempts dd").first).to_have_text("1")
    expect(page.locator("#children")).to_be_visible()
    expect(page.locator("#children dd").first).to_have_text("1")
    page.click("#children a")
    expect(page.locator(f"{row(page, child)}")).to_be_visible()
    expect(page.locator("#operations tr")).to_have_count(1)


def test_an_unknown_operation_says_so(server: Server, page: Page, tag: str) -> None:
    page.goto(detail_url(server, f"operations/{tag}-nowhere"))
    expect(page.locator("#detail-error")).to_contain_text("404 NOT_FOUND")
    expect(page.locator("#cancel")).to_be_hidden()


def test_a_bad_filter_shows_its_error(server: Server, page: Page) -> None:
    bad = "labels.env ~ 1"
    answer = httpx.get(f"{server.http_url}/v1/operations", params={"filter": bad})
    assert answer.status_code == 400
    message = answer.json()["error"]["message"]
    page.goto(list_url(server))
    page.fill("#filter", bad)
    page.press("#filter", "Enter")
    error = page.locator("#list-error")
    expect(error).to_be_visible()
    expect(error).to_have_text(f"400 INVALID_ARGUMENT: {message}")
    expect(page.locator("#operations tr")).to_have_count(0)
    expect(page.locator("#live")).to_have_attribute("data-state", "off")


def test_the_dead_letter_panel_follows_the_route(server: Server, page: Page) -> None:
    """Hidden where GET /v1/deadLetters answers 404; shown where it is served."""
    served = httpx.get(f"{server.http_url}/v1/deadLetters", params={"pageSize": 1})
    page.goto(list_url(server))
    expect(page.locator("body")).to_have_attribute("data-dead-letters", re.compile(r"\w"))
    nav = page.locator("#nav-dead-letters")
    page.goto(f"{server.http_url}/console/#/dead-letters")
    if served.status_code == 404:
        expect(page.locator("body")).to_have_attribute("data-dead-letters", "missing")
        expect(nav).to_be_hidden()
        expect(page.locator("#dead-letters-missing")).to_be_visible()
        expect(page.locator("#dead-letter-panel")).to_have_count(0)
    else:
        assert served.status_code == 200, served.text
        expect(nav).to_be_visible()
        expect(page.locator("#dead-letter-panel")).to_be_visible()


def test_the_timeline_shows_the_operations_history(server: Server, page: Page, tag: str) -> None:
    name = f"operations/{tag}-timeline"
    progress = make_event(Kind.PROGRESS, name, data={"percent": 10})
    ingest(server, [make_event(Kind.CREATED, name), progress])
    ingest(server, [progress])  # a redelivery: recorded as a duplicate
    page.goto(detail_url(server, name))
    rows = page.locator("#timeline tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("created")
    expect(rows.nth(1)).to_contain_text("applied")
    expect(rows.nth(2)).to_contain_text("duplicate")


def test_a_dead_letter_replayed_from_the_page_applies(
    tmp_path: Path, browser: Browser, tag: str
) -> None:
    # Strict: an event for an unknown operation is poison on the push route; once the
    # operation exists, the replay button applies it and the row goes.
    config = Config(db=str(tmp_path / "t.db"), http_port=0, grpc_port=-1, strict=True)
    name = f"operations/{tag}-late"
    with running(config) as strict:
        headers, body = to_binary(make_event(Kind.PROGRESS, name, data={"percent": 60}))
        pushed = httpx.post(f"{strict.http_url}/v1/pubsub/push", json=envelope(headers, body))
        assert pushed.status_code == 200, pushed.text
        (letter,) = strict.store.dead_letters()
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{strict.http_url}/console/#/dead-letters")
        line = page.locator(f'#dead-letter-panel tr[data-id="{letter.id}"]')
        expect(line).to_contain_text("unknown_operation")
        # Replayed too early, it fails again: the error is shown and the letter stays.
        line.locator("button.replay").click()
        page.click("#confirm-yes")
        expect(page.locator("#flash")).to_contain_text("400")
        assert [d.id for d in strict.store.dead_letters()] == [letter.id]
        ingest(strict, [make_event(Kind.CREATED, name)])
        line.locator("button.replay").click()
        page.click("#confirm-yes")
        expect(page.locator("#flash")).to_have_text(f"Dead letter {letter.id} replayed.")
        expect(line).to_have_count(0)
        assert strict.store.dead_letters() == []
        stored = strict.store.get(name)
        assert stored is not None and stored.state.percent == 60
        context.close()


def test_assets_are_small_and_name_no_other_host(server: Server) -> None:
    files = sorted(p for p in ASSETS.iterdir() if p.is_file())
    assert {p.suffix for p in files} == {".html", ".js", ".css"}
    total = sum(p.stat().st_size for p in files)
    assert total < MAX_ASSET_BYTES, total
    for path in files:
        text = path.read_text()
        assert not re.search(r"https?://|//[a-z0-9-]+\.[a-z]", text, re.I), path.name
        if path.suffix == ".css":  # nothing fetched from a stylesheet either
            assert "@import" not in text and "url(" not in text, path.name
    # Every module the pages import, and every file linked, is served from /console.
    index = httpx.get(f"{server.http_url}/console/")
    assert index.status_code == 200
    assert "default-src 'none'" in index.headers["content-security-policy"]
    referenced = set(re.findall(r'(?:src|href)="([\w.]+\.(?:js|css))"', index.text))
    for path in files:
        if path.suffix == ".js":
            referenced |= set(re.findall(r'from "\./([\w.]+\.js)"', path.read_text()))
    assert referenced == {p.name for p in files if p.suffix in (".js", ".css")}
    for name in referenced:
        served = httpx.get(f"{server.http_url}/console/{name}")
        assert served.status_code == 200 and served.content == (ASSETS / name).read_bytes()


def test_console_routes_answer_like_the_api(server: Server) -> None:
    with httpx.Client(base_url=server.http_url, timeout=10) as http:
        root = http.get("/console")
        assert root.status_code == 308 and root.headers["location"] == "/console/"
        missing = http.get("/console/nope.js")
        assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"
        wrong = http.post("/console/app.js")
        assert wrong.status_code == 405 and wrong.json()["error"]["status"] == "UNIMPLEMENTED"
        first = http.get("/console/app.js")
        assert first.headers["content-type"].startswith("text/javascript")
        again = http.get("/console/app.js", headers={"if-none-match": first.headers["etag"]})
        assert again.status_code == 304


READER, WRITER = "reader-" + "r" * 40, "writer-" + "w" * 40


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A tracker with static tokens: one may read, the other read and write."""
    tokens = tmp_path_factory.mktemp("tokens") / "tokens.toml"
    tokens.write_text(f'reader = "{token_digest(READER)}"\nwriter = "{token_digest(WRITER)}"\n')
    config = Config(
        db=":memory:",
        http_port=0,
        grpc_port=-1,
        auth_tokens_file=str(tokens),
        grant=(
            "operations.read=token:reader",
            "operations.read=token:writer",
            "operations.write=token:writer",
        ),
    )
    with running(config) as s:
        yield s


def test_the_console_needs_the_apis_permissions_and_sends_the_typed_token(
    guarded_server: Server, page: Page, tag: str
) -> None:
    server = guarded_server
    name = f"operations/{tag}-guarded"
    running_op(server, name, 20.0)
    seen: list[tuple[str, str | None]] = []
    page.on("request", lambda r: seen.append((r.url, r.headers.get("authorization"))))
    page.goto(list_url(server))  # the shell loads without credentials; the data does not
    expect(page.locator("#list-error")).to_contain_text("401 UNAUTHENTICATED")
    expect(page.locator("#token-dialog")).to_be_visible()
    page.fill("#token-input", READER)
    page.click("#token-save")
    expect(page.locator(f"{row(page, name)} .badge")).to_have_text("running")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    ingest(server, [make_event(Kind.PROGRESS, name, data={"percent": 60})])
    expect(page.locator(f"{row(page, name)} progress")).to_have_attribute("data-percent", "60")
    # Reading is not writing: the reader's cancel is refused and changes nothing.
    page.goto(detail_url(server, name))
    page.click("#cancel")
    page.click("#confirm-yes")
    expect(page.locator("#flash")).to_contain_text("403 PERMISSION_DENIED")
    stored = server.store.get(name)
    assert stored is not None and not stored.state.cancel_requested
    page.click("#token-button")
    page.fill("#token-input", WRITER)
    page.click("#token-save")
    page.click("#cancel")
    page.click("#confirm-yes")
    expect(page.locator("#flash")).to_have_text(f"Cancel of {name} requested.")
    stored = server.store.get(name)
    assert stored is not None and stored.state.cancel_requested
    api = [(url, auth) for url, auth in seen if "/v1/" in url]
    assert api and all(READER not in url and WRITER not in url for url, _ in api)
    assert f"Bearer {WRITER}" in {auth for _, auth in api}
