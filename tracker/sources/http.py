"""CloudEvents over plain HTTP: POST /v1/events (binary, structured or batch mode).

The caller can fix its request, so bad input is answered 4xx with the reason and
nothing is stored; a busy or unreachable store is 503 with Retry-After (retry).
"""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tracker.api.guard import require, scope
from tracker.api.web import error_response, header_dict, read_body
from tracker.auth import Permission
from tracker.bindings import parse_message
from tracker.errors import InvalidEvent, Unavailable
from tracker.service import Tracker
from tracker.stores.base import ApplyResult

ROUTE = "http"


def _too_large(limit: int) -> InvalidEvent:
    return InvalidEvent("too_large", f"request body exceeds the limit of {limit} bytes")


def answer(result: ApplyResult) -> dict[str, object]:
    """One event's answer: what it did, and where its operation stands after the batch
    (`state`: running, succeeded, failed or cancelled; the current `attempt`), so that a
    worker publishing over HTTP learns of a cancel or an end from its next event."""
    out: dict[str, object] = {
        "id": result.event_id,
        "source": result.source,
        "operation": result.operation,
        "outcome": result.outcome.value,
        "done": result.became_done,
    }
    if result.status is not None:
        out["state"] = result.status.state
        out["attempt"] = result.status.attempt
        out["cancelRequested"] = result.status.cancel_requested
    return out


def routes(tracker: Tracker) -> list[BaseRoute]:
    async def ingest(request: Request) -> Response:
        # A single event is held to max_event_bytes once its mode is known.
        limit = tracker.rules.max_batch_bytes
        try:
            await require(request, Permission.EVENTS_PUBLISH)
        except Exception as exc:
            return error_response(exc)
        try:
            body = await read_body(request, limit, _too_large)
            events = parse_message(
                header_dict(request), body, tracker.rules, received=datetime.now(UTC)
            )
            if not events:
                raise InvalidEvent("empty_batch", "the batch holds no events")
            caller = scope()
            for event in events:  # all of the batch or none of it
                caller.check(event.operation)
            result = await tracker.ingest(events, route=ROUTE)
        except InvalidEvent as exc:
            tracker.rejected(ROUTE, exc)
            return error_response(exc)
        except Unavailable as exc:
            tracker.metrics.transient.labels(route=ROUTE).inc()
            return error_response(exc)
        except Exception as exc:
            return error_response(exc)
        return JSONResponse({"results": [answer(r) for r in result.results]})

    return [Route("/v1/events", ingest, methods=["POST"])]
