"""Bulk actions by filter over HTTP/JSON (`tracker.bulk`; AIP-235 for the delete).

    POST /v1/operations:batchCancel   {"filter": "...", "dryRun": false, "ratePerSecond": 100}
    POST /v1/operations:batchDelete   the same

A dry run answers `{"matched": N}` (with `"matchedIsLowerBound": true` past the count's
bound) and changes nothing; otherwise the answer is the bulk Operation
(`operations/tracker-bulk/<uuid>`), which the server works through in the background.
Both need operations.write. gRPC has no such methods (google.longrunning has none).
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tracker.api.guard import require, scope
from tracker.api.http import ROUTE_METHODS, query
from tracker.api.web import guarded, read_body
from tracker.auth import Permission
from tracker.bulk import bulk_of, check_rate
from tracker.errors import InvalidArgument, MethodNotAllowed, echo
from tracker.service import Tracker
from tracker.wire import operation_to_dict

MAX_BODY_BYTES: Final = 16 * 1024
FIELDS: Final = {"filter", "dryRun", "ratePerSecond"}


async def _body(request: Request) -> dict[str, Any]:
    raw = await read_body(request, MAX_BODY_BYTES)
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidArgument("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidArgument("request body must be a JSON object")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise InvalidArgument(
            f"unknown field {echo(unknown[0])} in the body; known: {', '.join(sorted(FIELDS))}"
        )
    return data


def _fields(data: dict[str, Any]) -> tuple[str, bool, float | None]:
    text = data.get("filter")
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument(
            "filter is required: a bulk action over everything must say so,"
            ' e.g. name = "operations/*"'
        )
    dry = data.get("dryRun", False)
    if not isinstance(dry, bool):
        raise InvalidArgument("dryRun must be true or false")
    rate = data.get("ratePerSecond")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate)
    ):
        raise InvalidArgument("ratePerSecond must be a number")
    return text, dry, None if rate is None else float(rate)


def routes(tracker: Tracker) -> list[BaseRoute]:
    bulk = bulk_of(tracker)

    def endpoint(action: str) -> Any:
        async def handle(request: Request) -> Response:
            if request.method != "POST":
                raise MethodNotAllowed(request.method, ("POST",))
            await require(request, Permission.OPERATIONS_WRITE)
            query(request, {})
            text, dry, rate = _fields(await _body(request))
            text = scope().narrow(text)
            if dry:
                check_rate(rate)  # the same answer a real run would get
                matched, capped = await bulk.matched(action, text)
                answer: dict[str, Any] = {"matched": matched}
                if capped:
                    answer["matchedIsLowerBound"] = True
                return JSONResponse(answer)
            return JSONResponse(operation_to_dict(await bulk.start(action, text, rate)))

        return guarded(handle)

    return [
        Route("/v1/operations:batchCancel", endpoint("cancel"), methods=ROUTE_METHODS),
        Route("/v1/operations:batchDelete", endpoint("delete"), methods=ROUTE_METHODS),
    ]


__all__ = ["routes"]
