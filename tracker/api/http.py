"""The Operations service over HTTP/JSON, following the HTTP rules of operations.proto.

    GET    /v1/operations                         ListOperations (filter, pageSize, pageToken;
                                                  extensions: orderBy, count -> totalSize)
    GET    /v1/{name=projects/*/locations/*}/operations   ListOperations of one parent
                                                  (also projects/*; tracker.resource_names)
    POST   /v1/operations, /v1/{parent=projects/*/locations/*}/operations
                                                  tracker.v1.Operations.CreateOperation
    GET    /v1/{name=operations/**}               GetOperation
    DELETE /v1/{name=operations/**}               DeleteOperation            -> {}
    POST   /v1/{name=operations/**}:cancel        CancelOperation            -> {}
    POST   /v1/{name=operations/**}:wait          WaitOperation (timeout in body or query)
    GET    /v1/{name=operations/**}:watch         extension: Server-Sent Events
    GET    /v1/{name=operations/**}:checkpoint    extension: the latest checkpoint bytes

Every `{name=operations/**}` route serves Google-style names too:
`/v1/projects/P/locations/L/operations/ID:wait` and so on.

Bodies are the proto3 JSON mapping with lowerCamelCase names, as Google APIs send.
`Operation.metadata` and `response` (and `error.details`) are `Any`: a type this
process has not imported cannot be rendered as JSON, so it is served as
`{"@type": "<type url>", "value": "<base64 of the serialized message>"}` instead of
failing the whole response. Errors are the Google JSON error body (`tracker.api.status`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Mapping
from typing import Any, Final, TypeVar, cast

from google.longrunning import operations_pb2
from google.protobuf import duration_pb2, json_format
from google.protobuf.message import Message
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tracker import resource_names
from tracker.api import status
from tracker.api.guard import require, scope
from tracker.api.web import guarded, read_body, read_message
from tracker.auth import Permission
from tracker.errors import InvalidArgument, MethodNotAllowed, NotFound, clip, echo
from tracker.events import JSON_CONTENT_TYPE, Kind, decode_data, load_json
from tracker.service import Tracker
from tracker.v1 import events_pb2
from tracker.v1 import operations_pb2 as operations_v1_pb2
from tracker.wire import operation_to_dict, page_to_dict

T = TypeVar("T")
M = TypeVar("M", bound=Message)

VERBS: Final = ("cancel", "wait", "watch", "checkpoint")
# Allowed methods per custom verb ("" is the resource itself).
METHODS: Final[Mapping[str, tuple[str, ...]]] = {
    "": ("GET", "DELETE"),
    "cancel": ("POST",),
    "wait": ("POST",),
    "watch": ("GET",),
    "checkpoint": ("GET",),
}
# What each resource method needs (tracker.api.guard checks it).
PERMISSIONS: Final[Mapping[tuple[str, str], Permission]] = {
    ("", "GET"): Permission.OPERATIONS_READ,
    ("", "DELETE"): Permission.OPERATIONS_WRITE,
    ("cancel", "POST"): Permission.OPERATIONS_WRITE,
    ("wait", "POST"): Permission.OPERATIONS_READ,
    ("watch", "GET"): Permission.OPERATIONS_READ,
    ("checkpoint", "GET"): Permission.OPERATIONS_READ,
}
# Google system parameters some clients add to every call; accepted and ignored.
SYSTEM_PARAMS: Final = frozenset(
    {"alt", "prettyPrint", "key", "access_token", "quotaUser", "$.xgafv"}
)
# Methods routed to the handlers, which answer a wrong one with a JSON 405.
ROUTE_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_BODY_BYTES: Final = 64 * 1024
# A comment line on an idle watch stream, so proxies do not cut it (--watch-keepalive-seconds).
SSE_KEEPALIVE_SECONDS: Final = 15.0


# ---- request parsing -------------------------------------------------------------------


def query(request: Request, aliases: Mapping[str, str]) -> dict[str, str]:
    """Query parameters by canonical name; `aliases` maps each accepted spelling to it.

    Unknown, repeated or conflicting parameters are an InvalidArgument, so that a
    typo (`pagesize`) is an error rather than silently ignored.
    """
    out: dict[str, str] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        if key in SYSTEM_PARAMS:
            continue
        if key not in aliases:
            known = ", ".join(sorted(aliases)) or "none"
            raise InvalidArgument(f"unknown query parameter {echo(key)}; known: {known}")
        canonical = aliases[key]
        if len(values) > 1 or (canonical in out and out[canonical] != values[0]):
            raise InvalidArgument(f"query parameter {echo(canonical)} given more than once")
        out[canonical] = values[0]
    return out


def parse_page_size(text: str | None) -> int:
    if text is None or text == "":
        return 0
    try:
        size = int(text)
    except ValueError:
        raise InvalidArgument(f"pageSize must be an integer, got {echo(text)}") from None
    if size < 0:
        raise InvalidArgument("pageSize must not be negative")
    return size


def parse_flag(name: str, text: str | None) -> bool:
    if text is None or text in ("", "false", "0"):
        return False
    if text in ("true", "1"):
        return True
    raise InvalidArgument(f"{name} must be true or false, got {echo(text)}")


def parse_timeout(text: str) -> float:
    """A proto3 JSON Duration ("5s", "0.5s") in seconds; negative is an error."""
    duration = duration_pb2.Duration()
    try:
        duration.FromJsonString(text)
    except ValueError:
        raise InvalidArgument(
            f"timeout must be a duration in seconds like '5s' or '0.5s', got {echo(text)}"
        ) from None
    return _seconds(duration)


def _seconds(duration: duration_pb2.Duration) -> float:
    seconds = duration.seconds + duration.nanos / 1e9
    if seconds < 0:
        raise InvalidArgument("timeout must not be negative")
    return seconds


async def parse_body(request: Request, message: M, name: str) -> M:
    """Merge a JSON body (may be empty) into a request message; its name must match the path."""
    await read_message(request, message, MAX_BODY_BYTES)
    body_name = getattr(message, "name", "")
    if body_name and body_name != name:
        raise InvalidArgument(
            f"name in the body ({echo(body_name)}) differs from the URL ({echo(name)})"
        )
    return message


def create_request(body: bytes, parent: str = "") -> operations_v1_pb2.CreateOperationRequest:
    """A CreateOperation body: the request message in the proto3 JSON mapping, its
    `operation` read exactly as a `created` event's JSON data is (an object without
    "@type" for metadata is a Struct); `parent` is the URL's, which the body may repeat."""
    fields = load_json(body, "malformed_json", "request body") if body.strip() else {}
    if not isinstance(fields, dict):
        raise InvalidArgument("request body must be a JSON object")
    fields = dict(fields)
    data = fields.pop("operation", None)
    create = operations_v1_pb2.CreateOperationRequest()
    try:
        json_format.ParseDict(fields, create)
    except (json_format.ParseError, TypeError, ValueError, RecursionError) as exc:
        raise InvalidArgument(f"request body: {clip(exc, 300)}") from None
    if create.parent and resource_names.parse_parent(create.parent) != parent:
        raise InvalidArgument(
            f"parent in the body ({echo(create.parent)}) differs from the URL's ({echo(parent)})"
        )
    create.parent = parent
    if data is not None and not isinstance(data, dict):
        raise InvalidArgument(
            "operation must be a JSON object: what a created event carries"
            ' ({"operationType": ..., "labels": {...}, ...})'
        )
    if data is not None:
        created = cast(events_pb2.Created, decode_data(Kind.CREATED, JSON_CONTENT_TYPE, data))
        create.operation.CopyFrom(created)
    return create


def split_verb(path: str, raw_path: str | None = None) -> tuple[str, str]:
    """'operations/a/b:wait' -> ('operations/a/b', 'wait'); only known verbs split.

    `raw_path` is the path as sent: a colon the client escaped (%3A) is part of the name.
    """
    head, sep, verb = path.rpartition(":")
    if sep and verb in VERBS and (raw_path is None or raw_path.endswith(":" + verb)):
        return head, verb
    return path, ""


async def until_disconnected(request: Request) -> None:
    """Return when the client goes away (call after the body has been read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T | None:
    """Run `work`, abandoning it (None) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(until_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, gone):
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
    if task.cancelled():
        return None
    return task.result()


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# ---- handlers --------------------------------------------------------------------------


class OperationsHttp:
    """Handlers of the HTTP/JSON Operations API over one `Tracker`."""

    def __init__(self, tracker: Tracker, keepalive_seconds: float = SSE_KEEPALIVE_SECONDS) -> None:
        self.tracker = tracker
        self.keepalive_seconds = keepalive_seconds

    async def collection(self, request: Request, parent: str = "") -> Response:
        """ListOperations of the tracker's collection or of `parent`'s; POST creates."""
        if request.method == "POST":
            return await self.create(request, parent)
        if _method(request) != "GET":
            raise MethodNotAllowed(request.method, ("GET", "POST"))
        await require(request, Permission.OPERATIONS_READ)
        params = query(
            request,
            {
                "filter": "filter",
                "pageSize": "page_size",
                "page_size": "page_size",
                "pageToken": "page_token",
                "page_token": "page_token",
                # Nothing is ever unreachable here; accepted for client compatibility.
                "returnPartialSuccess": "return_partial_success",
                "return_partial_success": "return_partial_success",
                # AIP-132 and AIP-158; not in google.longrunning's request message.
                "orderBy": "order_by",
                "order_by": "order_by",
                "count": "count",
            },
        )
        count = parse_flag("count", params.get("count"))
        filter_text = scope().narrow(params.get("filter", ""))
        page = await self.tracker.list(
            filter_text,
            parse_page_size(params.get("page_size")),
            params.get("page_token", ""),
            params.get("order_by", ""),
            parent=parent,
        )
        body = page_to_dict(page.operations, page.next_page_token)
        if count:
            total, capped = await self.tracker.count(filter_text, parent=parent)
            body["totalSize"] = total
            if capped:
                body["totalSizeIsLowerBound"] = True
        return JSONResponse(body)

    async def create(self, request: Request, parent: str) -> Response:
        """tracker.v1.Operations.CreateOperation: the committed Operation."""
        await require(request, Permission.EVENTS_PUBLISH)
        query(request, {})
        body = await read_body(request, self.tracker.rules.max_event_bytes + MAX_BODY_BYTES)
        create = create_request(body, parent)
        operation = await self.tracker.create(
            create.operation,
            parent=create.parent,
            operation_id=create.operation_id,
            request_id=create.request_id,
            allowed=scope().check,
        )
        return JSONResponse(operation_to_dict(operation))

    async def parented(self, request: Request) -> Response:
        """`/v1/projects/...`: a parent's collection (`.../operations`) or an operation
        in it (`tracker.resource_names`)."""
        name, verb = _name_and_verb(request)
        if not verb and name.endswith("/" + resource_names.COLLECTION):
            return await self.collection(request, resource_names.parse_parent(name))
        return await self._resource(request, name, verb)

    async def resource(self, request: Request) -> Response:
        name, verb = _name_and_verb(request)
        return await self._resource(request, name, verb)

    async def _resource(self, request: Request, name: str, verb: str) -> Response:
        allowed = METHODS[verb]
        method = _method(request) if verb in ("", "checkpoint") else request.method
        if method not in allowed:
            raise MethodNotAllowed(request.method, allowed)
        await require(request, PERMISSIONS[verb, method])
        scope().check(name)
        if verb == "cancel":
            return await self.cancel(request, name)
        if verb == "wait":
            return await self.wait(request, name)
        if verb == "watch":
            return await self.watch(request, name)
        if verb == "checkpoint":
            return await self.checkpoint(request, name)
        query(request, {})
        if method == "DELETE":
            await self.tracker.delete(name)
            return JSONResponse({})
        return JSONResponse(operation_to_dict(await self.tracker.get(name)))

    async def cancel(self, request: Request, name: str) -> Response:
        query(request, {})
        await parse_body(request, operations_pb2.CancelOperationRequest(), name)
        await self.tracker.cancel(name)
        return JSONResponse({})

    async def wait(self, request: Request, name: str) -> Response:
        params = query(request, {"timeout": "timeout"})
        body = await parse_body(request, operations_pb2.WaitOperationRequest(), name)
        budget: float | None = None  # the tracker's max_wait_seconds
        if body.HasField("timeout"):
            budget = _seconds(body.timeout)
        elif "timeout" in params:
            budget = parse_timeout(params["timeout"])
        if budget == 0:
            operation = await self.tracker.get(name)
        else:
            waited = await unless_disconnected(request, self.tracker.wait(name, budget))
            if waited is None:  # the client is gone; nobody reads this
                return Response(status_code=499)
            operation = waited
        return JSONResponse(operation_to_dict(operation))

    async def checkpoint(self, request: Request, name: str) -> Response:
        """The opaque bytes of the latest checkpoint event; 404 when there is none."""
        query(request, {})
        data = await self.tracker.checkpoint(name)
        if data is None:
            raise NotFound(f"operation {echo(name)} has no checkpoint")
        return Response(data, media_type="application/octet-stream")

    async def watch(self, request: Request, name: str) -> Response:
        params = query(request, {"timeout": "timeout"})
        budget = parse_timeout(params["timeout"]) if "timeout" in params else None
        stream = self.tracker.watch(name, budget) if budget != 0 else self._once(name)
        try:
            # The first state before answering, so an unknown name is a 404, not a stream.
            first = await anext(stream)
        except BaseException:
            await _aclose(stream)
            raise
        return EventSourceResponse(
            self._events(stream, first),
            ping=self.keepalive_seconds,
            sep="\n",
            ping_message_factory=lambda: ServerSentEvent(comment="keepalive", sep="\n"),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _once(self, name: str) -> AsyncGenerator[operations_pb2.Operation, None]:
        """A zero timeout: the current state only."""
        yield await self.tracker.get(name)

    async def _events(
        self,
        stream: AsyncIterator[operations_pb2.Operation],
        first: operations_pb2.Operation,
    ) -> AsyncIterator[ServerSentEvent]:
        """The first state, then every change; sse-starlette adds the keepalive comments
        and ends the generator when the client goes away."""
        try:
            yield ServerSentEvent(data=_compact(operation_to_dict(first)), sep="\n")
            async for operation in stream:
                yield ServerSentEvent(data=_compact(operation_to_dict(operation)), sep="\n")
        except Exception as exc:  # the stream has started: report in-band
            body = _compact(status.from_exception(exc).body())
            yield ServerSentEvent(data=body, event="error", sep="\n")
        finally:
            await _aclose(stream)


async def _aclose(stream: AsyncIterator[Any]) -> None:
    """Close an async generator (Tracker.watch is typed as a plain AsyncIterator)."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def path_name(request: Request, suffix: str = "") -> str:
    """What follows `/v1/` in the (decoded) path, without `suffix`: the resource name."""
    path = str(request.scope["path"]).removeprefix("/v1/")
    return path.removesuffix(suffix) if suffix else path


def _name_and_verb(request: Request) -> tuple[str, str]:
    raw = request.scope.get("raw_path")
    return split_verb(path_name(request), raw.decode("latin-1") if isinstance(raw, bytes) else None)


def _method(request: Request) -> str:
    """HEAD is GET without the body (the server drops it)."""
    return "GET" if request.method == "HEAD" else request.method


def routes(tracker: Tracker, keepalive_seconds: float = SSE_KEEPALIVE_SECONDS) -> list[BaseRoute]:
    """Starlette routes of the Operations HTTP/JSON API (methods are checked inside,
    so a wrong method gets a JSON 405 rather than Starlette's plain-text one)."""
    api = OperationsHttp(tracker, keepalive_seconds)
    return [
        Route("/v1/operations", guarded(api.collection), methods=ROUTE_METHODS),
        Route("/v1/operations/{rest:path}", guarded(api.resource), methods=ROUTE_METHODS),
        # Google-style names: projects/P[/locations/L]/operations[/ID] (resource_names).
        Route("/v1/projects/{rest:path}", guarded(api.parented), methods=ROUTE_METHODS),
    ]


__all__ = ["OperationsHttp", "routes"]
