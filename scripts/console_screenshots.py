"""Take the screenshots of docs/console.md: a tracker with sample operations on loopback,
Debian's Chromium (scripts/install-chromium) driven by Playwright.

    .venv/bin/python scripts/console_screenshots.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

from tests.helpers import ingest, make_event, running_op, succeed  # noqa: E402
from tracker.config import Config  # noqa: E402
from tracker.events import Kind  # noqa: E402
from tracker.server import Server, running  # noqa: E402
from tracker.v1 import events_pb2  # noqa: E402

CHROMIUM = os.environ.get("TRACKER_CHROMIUM", "/usr/bin/chromium")


def seed(server: Server) -> None:
    """A few operations in every state, one parent with children and a checkpoint."""
    running_op(server, "operations/exports/2026-01-07", 64.0, env="prod", team="data")
    ingest(
        server,
        [
            make_event(
                Kind.PROGRESS,
                "operations/exports/2026-01-07",
                data={"percent": 64.0, "message": "copying shard 7 of 11"},
            ),
            make_event(
                Kind.CHECKPOINT, "operations/exports/2026-01-07", data={"data": b"c" * 1536}
            ),
        ],
    )
    parent = "operations/exports/2026-01-07"
    for i, percent in enumerate((100.0, 35.0, 80.0)):
        child = f"{parent}/shard-{i}"
        ingest(
            server,
            [
                make_event(
                    Kind.CREATED,
                    child,
                    data={"operation_type": "export-shard", "parent": parent},
                ),
                make_event(Kind.PROGRESS, child, data={"percent": percent, "message": "rows"}),
            ],
        )
    succeed(server, "operations/exports/2026-01-07/shard-0", rows=120000)
    running_op(server, "operations/reindex/users", 12.0, env="dev")
    running_op(server, "operations/backup/nightly", 100.0, env="prod")
    succeed(server, "operations/backup/nightly", bytes=73400320)
    running_op(server, "operations/import/orders", 41.0, env="prod")
    failed = events_pb2.Failed()
    failed.error.code = 9
    failed.error.message = "schema mismatch in column amount"
    ingest(server, [make_event(Kind.FAILED, "operations/import/orders", data=failed)])


def shoot(page: Page, path: Path) -> None:
    page.screenshot(path=str(path))
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    out = parser.parse_args().out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with running(Config(db=":memory:", http_port=0, grpc_port=-1)) as server:
        seed(server)
        base = f"{server.http_url}/console/"
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page(viewport={"width": 1100, "height": 520})
            page.goto(base)
            expect(page.locator("#live")).to_have_attribute("data-state", "live")
            expect(page.locator("#operations tr")).to_have_count(7)
            shoot(page, out / "console-list.png")

            parent = "operations/exports/2026-01-07"
            page.set_viewport_size({"width": 1100, "height": 640})
            page.goto(f"{base}#/op/{urllib.parse.quote(parent, safe='')}")
            expect(page.locator("#checkpoint-size")).to_have_attribute("data-bytes", "1536")
            shoot(page, out / "console-detail.png")

            page.click("#cancel")
            expect(page.locator("#confirm")).to_be_visible()
            shoot(page, out / "console-confirm.png")
            page.click("#confirm-no")

            page.set_viewport_size({"width": 1100, "height": 300})
            page.goto(base)
            page.fill("#filter", "labels.env ~ prod")
            page.press("#filter", "Enter")
            expect(page.locator("#list-error")).to_be_visible()
            shoot(page, out / "console-bad-filter.png")
            browser.close()


if __name__ == "__main__":
    main()
