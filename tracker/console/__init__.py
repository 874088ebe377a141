"""The web console at `/console`: static HTML, CSS and ES modules shipped in the package.

The pages are a shell with no data in them: everything they show comes from the
Operations API (`/v1/...`), called by the browser with the token the user typed in
(kept in the tab's sessionStorage, sent as `Authorization: Bearer`). So the console is
guarded by exactly the API's permissions (reads need operations.read, cancel, delete
and replay operations.write) while the shell itself is served to anyone: a browser
cannot attach a bearer token to a plain navigation, and the shell is the same code
anyone can read in the wheel. docs/console.md says more.

The assets are read once from package data (importlib.resources), so an installed wheel
serves them without a checkout; there is no build step and no third-party asset. A
Content-Security-Policy of 'self' keeps the pages from loading or calling anything else.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Final

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from tracker.api.web import guarded
from tracker.errors import MethodNotAllowed, NotFound, echo

PREFIX: Final = "/console"
CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidated on every load (by ETag), so a new version is never half cached.
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file of the package's static/ folder, by name."""
    assets: dict[str, Asset] = {}
    for entry in resources.files("tracker.console").joinpath("static").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if not entry.is_file() or suffix not in CONTENT_TYPES:
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        assets[entry.name] = Asset(body, CONTENT_TYPES[suffix], etag)
    return assets


class Console:
    """Serves the assets; `index.html` for the console's root (pages are hash-routed)."""

    def __init__(self) -> None:
        self.assets = load_assets()

    def answer(self, request: Request, name: str) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(request.method, ("GET", "HEAD"))
        asset = self.assets.get(name)
        if asset is None:
            raise NotFound(f"no console file {echo(name)}")
        headers = {**HEADERS, "ETag": asset.etag}
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.content_type, headers=headers)

    async def index(self, request: Request) -> Response:
        return self.answer(request, "index.html")

    async def file(self, request: Request) -> Response:
        return self.answer(request, str(request.path_params["file"]))


async def _to_root(request: Request) -> Response:
    """`/console` -> `/console/`, so the pages' relative URLs resolve under it."""
    return RedirectResponse(PREFIX + "/", status_code=308)


def routes() -> list[BaseRoute]:
    console = Console()
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    return [
        Route(PREFIX, _to_root, methods=["GET", "HEAD"]),
        Route(PREFIX + "/", guarded(console.index), methods=methods),
        Route(PREFIX + "/{file}", guarded(console.file), methods=methods),
    ]


__all__ = ["PREFIX", "Asset", "Console", "load_assets", "routes"]
