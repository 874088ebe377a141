"""The event history over HTTP: `GET /v1/{name=operations/**}/events` (and of
Google-style names, `/v1/projects/P/locations/L/operations/ID/events`).

    GET /v1/{name=operations/**}/events?pageSize=&pageToken=   -> {events, nextPageToken}

Operation names may hold slashes, so `/events` at the end of the path names the history
of the operation before it, as `:wait` names a verb. As with a colon, a client that means
an operation whose name ends in `/events` escapes that slash (`%2Fevents`, which the SDK
does): the path as sent (`raw_path`) decides, and such a request is the operation's own
(GetOperation, DeleteOperation), answered by `tracker.api.http`.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tracker import history
from tracker.api.guard import require, scope
from tracker.api.http import ROUTE_METHODS, OperationsHttp, parse_page_size, path_name, query
from tracker.api.web import guarded
from tracker.auth import Permission
from tracker.errors import MethodNotAllowed
from tracker.service import Tracker

SUFFIX: Final = "/events"


class HistoryHttp:
    def __init__(self, tracker: Tracker, operations: OperationsHttp) -> None:
        self.tracker = tracker
        self.operations = operations

    async def events(self, request: Request) -> Response:
        raw = request.scope.get("raw_path")
        if isinstance(raw, bytes) and not raw.decode("latin-1").split("?")[0].endswith(SUFFIX):
            # The slash (or a letter) was escaped: "/events" is part of the name.
            return await self.operations.resource(request)
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(request.method, ("GET",))
        await require(request, Permission.OPERATIONS_READ)
        name = path_name(request, SUFFIX)
        scope().check(name)
        params = query(
            request,
            {
                "pageSize": "page_size",
                "page_size": "page_size",
                "pageToken": "page_token",
                "page_token": "page_token",
            },
        )
        found = await history.page(
            self.tracker,
            name,
            parse_page_size(params.get("page_size")),
            params.get("page_token", ""),
        )
        return JSONResponse(history.page_to_dict(found))


def routes(tracker: Tracker, keepalive_seconds: float) -> list[BaseRoute]:
    """The history route; registered before the Operations routes, whose
    `operations/{rest:path}` would take it otherwise."""
    api = HistoryHttp(tracker, OperationsHttp(tracker, keepalive_seconds))
    return [
        Route(f"/v1/{root}/{{rest:path}}{SUFFIX}", guarded(api.events), methods=ROUTE_METHODS)
        for root in ("operations", "projects")
    ]


__all__ = ["routes"]
