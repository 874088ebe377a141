"""The SDK without I/O: what to send, how to read the answer, what errors mean.

Each call is a *plan*: a generator that yields the `Request`s it needs and receives each
answer (an `httpx.Response`, already read) or, thrown into it, the error that answer
means, then returns the call's result. `TrackerClient` and `AsyncTrackerClient` only
drive plans over their transport, so request building, answer parsing, waiting in
chunks, paging and error mapping exist once. `WatchSession` does the same for the
`:watch` stream: reconnects, repeated states and the deadline.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
from google.longrunning import operations_proto_pb2 as operations_pb2  # without grpc
from google.protobuf import json_format
from google.rpc import code_pb2

from tracker import errors, resource_names
from tracker.bindings import to_batch, to_binary, to_structured
from tracker.constants import DEFAULT_URL
from tracker.events import Event
from tracker.v1 import events_pb2
from tracker.wire import parse_operation

T = TypeVar("T")
Mode = Literal["binary", "structured", "batch"]
DEFAULT_TIMEOUT: Final = 10.0
# A wait without an overall timeout asks the server for this much at a time (the
# server cuts each WaitOperation to its --max-wait-seconds anyway).
WAIT_CHUNK_SECONDS: Final = 60.0
# Extra read time beyond a server-side wait before the client gives up on the answer.
WAIT_READ_MARGIN: Final = 10.0
# The server sends a keepalive comment every 15 s on an idle :watch stream.
SSE_IDLE_SECONDS: Final = 15.0 + WAIT_READ_MARGIN


@dataclass(frozen=True)
class Request:
    """One HTTP request a plan needs. `read` overrides the read timeout (long waits)."""

    method: str
    path: str
    params: Mapping[str, str | int] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    read: float | None = None


# A plan yields requests, receives responses (or has the mapped error thrown into it).
Plan = Generator[Request, httpx.Response, T]


@dataclass(frozen=True)
class PublishResult:
    """What the tracker did with one published event.

    `outcome` is "applied", "duplicate", "stale" or "late" (see docs/sdk.md); `done`
    is whether this very event finished the operation. `state` (running, succeeded,
    failed, cancelled; "" from a tracker that does not say), `attempt` (0 likewise) and
    `cancel_requested` are where the operation stands after the event: how a worker
    publishing over HTTP learns of a cancel without asking.
    """

    id: str
    source: str
    operation: str
    outcome: str
    done: bool = False
    state: str = ""
    attempt: int = 0
    cancel_requested: bool = False

    @property
    def applied(self) -> bool:
        return self.outcome == "applied"


# ---- errors ----------------------------------------------------------------------------

_ERRORS: Final[dict[str, type[errors.TrackerError]]] = {
    "INVALID_ARGUMENT": errors.InvalidArgument,
    "NOT_FOUND": errors.NotFound,
    "ALREADY_EXISTS": errors.AlreadyExists,
    "FAILED_PRECONDITION": errors.FailedPrecondition,
    "UNAUTHENTICATED": errors.Unauthenticated,
    "PERMISSION_DENIED": errors.PermissionDenied,
    "RESOURCE_EXHAUSTED": errors.ResourceExhausted,
    "UNIMPLEMENTED": errors.Unimplemented,
    "UNAVAILABLE": errors.TrackerUnavailable,
}
_CODE_NAMES: Final = frozenset(code_pb2.Code.keys())
# An answer without a Google error body (a proxy's, say): its status by HTTP status.
_HTTP_STATUS: Final[dict[int, str]] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    413: "RESOURCE_EXHAUSTED",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_ERROR_INFO: Final = "type.googleapis.com/google.rpc.ErrorInfo"


def _error_info(info: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """(reason, metadata) of the first google.rpc.ErrorInfo in an error body's details."""
    details = info.get("details")
    for detail in details if isinstance(details, builtins.list) else ():
        if isinstance(detail, dict) and detail.get("@type") == _ERROR_INFO:
            meta = detail.get("metadata")
            metadata = {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}
            return str(detail.get("reason") or ""), metadata
    return "", {}


def error_from_answer(status_code: int, body: bytes, *, event: bool = False) -> errors.TrackerError:
    """The project error for a Google-style HTTP error answer
    `{"error": {"code", "message", "status", "details": [ErrorInfo]}}`.

    `event`: the answer to POST /v1/events, where a rejection is an `InvalidEvent`
    whose reason keyword is the ErrorInfo reason in lower_snake case.
    """
    info: dict[str, Any] = {}
    try:
        parsed = json.loads(body) if body else {}
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            info = parsed["error"]
    except (ValueError, UnicodeDecodeError, RecursionError):
        pass
    status = str(info.get("status") or _HTTP_STATUS.get(status_code, "UNKNOWN"))
    message = str(info.get("message") or body.decode("utf-8", "replace").strip()[:500])
    message = message or f"HTTP {status_code}"
    reason, metadata = _error_info(info)
    if event and status in ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED") and reason:
        error: errors.TrackerError = errors.InvalidEvent(
            reason.lower(), message, event_id=metadata.get("eventId")
        )
        error.code = code_pb2.Code.Value(status)
        return error
    cls = _ERRORS.get(status)
    if cls is not None:
        return cls(message, reason=reason or None, metadata=metadata)
    error = errors.TrackerError(f"{status}: {message}", reason=reason or None, metadata=metadata)
    error.code = code_pb2.Code.Value(status) if status in _CODE_NAMES else code_pb2.UNKNOWN
    return error


def check(response: httpx.Response) -> httpx.Response:
    """The response, or the project error its status means (the body must be read)."""
    if response.status_code >= 400:
        event = response.request.url.path.endswith("/v1/events")
        raise error_from_answer(response.status_code, response.content, event=event)
    return response


def unavailable(url: str, exc: httpx.HTTPError) -> errors.TrackerUnavailable:
    """A transport failure as the project's retryable error."""
    if isinstance(exc, httpx.TimeoutException):
        what = "timed out"
    elif isinstance(exc, httpx.ConnectError):
        what = "cannot connect"
    else:
        what = "connection failed"
    detail = str(exc) or type(exc).__name__
    return errors.TrackerUnavailable(f"tracker at {url}: {what}: {detail}")


def json_of(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise errors.TrackerError(
            f"tracker answered {response.request.method} {response.request.url.path} with"
            f" something that is not JSON: {response.text[:200]!r}"
        ) from None


# ---- requests --------------------------------------------------------------------------


def operation_path(name: str, verb: str = "") -> str:
    name = name.strip("/")
    if not name:
        raise errors.InvalidArgument("operation name must not be empty")
    path = f"/v1/{quote(name, safe='/~')}"
    if path.endswith("/events"):  # the name's own: not its history (`/events`)
        path = path[: -len("/events")] + "%2Fevents"
    return path + (f":{verb}" if verb else "")


def duration(seconds: float) -> str:
    """A proto3 JSON Duration of at least a millisecond."""
    return f"{max(seconds, 0.001):.3f}s"


def with_read(timeout: httpx.Timeout, read: float | None) -> httpx.Timeout:
    return httpx.Timeout(connect=timeout.connect, read=read, write=timeout.write, pool=timeout.pool)


def as_timeout(value: float | httpx.Timeout | None) -> httpx.Timeout:
    return value if isinstance(value, httpx.Timeout) else httpx.Timeout(value)


class HttpClientBase:
    """What both clients set up alike: where, as whom, how (their __init__ calls this)."""

    url: str
    source: str
    mode: Mode
    content_type: str
    auth: httpx.Auth | None
    _owns_auth: bool
    _timeout: httpx.Timeout

    def _setup(
        self,
        url: str,
        timeout: float | httpx.Timeout | None,
        source: str | None,
        mode: Mode,
        content_type: str,
        credentials: tuple[str | None, str | None, httpx.Auth | None],
        headers: Mapping[str, str] | None,
    ) -> dict[str, Any]:
        """Set the attributes; returns the keyword arguments of the httpx client."""
        from tracker.client._producers import default_source
        from tracker.client.credentials import resolve

        token, id_token_audience, auth = credentials
        self.url = url.rstrip("/")
        self.source = source or default_source()
        self.mode = mode
        self.content_type = content_type
        self._timeout = as_timeout(timeout)
        self.auth = resolve(token, id_token_audience, auth)
        self._owns_auth = auth is None  # made here: closed with the client
        return {
            "base_url": self.url,
            "timeout": self._timeout,
            "auth": self.auth,
            "headers": headers,
        }


def close_auth(auth: httpx.Auth | None, owned: bool) -> None:
    """Close credentials a client made itself (their token-minting session)."""
    close = getattr(auth, "close", None)
    if owned and callable(close):
        close()


def httpx_arguments(request: Request, timeout: httpx.Timeout) -> dict[str, Any]:
    """Keyword arguments of httpx's `request()` for `request`."""
    kwargs: dict[str, Any] = {"params": dict(request.params), "headers": dict(request.headers)}
    if request.json is not None:
        kwargs["json"] = request.json
    if request.content is not None:
        kwargs["content"] = request.content
    if request.read is not None:
        kwargs["timeout"] = with_read(timeout, request.read)
    return kwargs


# ---- plans -----------------------------------------------------------------------------


def publish(events: Iterable[Event], mode: Mode, content_type: str) -> Plan[list[PublishResult]]:
    """Batch mode sends one request, applied all-or-nothing; the others one per event."""
    events = list(events)
    if mode == "batch":
        bodies = [to_batch(events, content_type)]
    elif mode == "structured":
        bodies = [to_structured(e, content_type) for e in events]
    elif mode == "binary":
        bodies = [to_binary(e, content_type) for e in events]
    else:
        raise ValueError(f"mode must be binary, structured or batch, not {mode!r}")
    results: list[PublishResult] = []
    for headers, body in bodies:
        answer = json_of((yield Request("POST", "/v1/events", content=body, headers=headers)))
        items = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(items, builtins.list):
            raise errors.TrackerError(f"unexpected answer to POST /v1/events: {str(answer)[:200]}")
        results += [
            PublishResult(
                id=str(item.get("id", "")),
                source=str(item.get("source", "")),
                operation=str(item.get("operation", "")),
                outcome=str(item.get("outcome", "")),
                done=bool(item.get("done", False)),
                state=str(item.get("state") or ""),
                attempt=_count(item.get("attempt")),
                cancel_requested=item.get("cancelRequested") is True,
            )
            for item in items
            if isinstance(item, dict)
        ]
    return results


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def create(
    data: events_pb2.Created, name: str, collection: str, request_id: str
) -> Plan[operations_pb2.Operation]:
    """CreateOperation (`POST /v1/{parent}/operations`): the committed Operation."""
    parent, operation_id = resource_names.split_name(name) if name else (collection, "")
    if name and collection and resource_names.parse_parent(collection) != parent:
        raise errors.InvalidArgument(f"{name!r} is not in the collection {collection!r}")
    body = {
        "operation": json_format.MessageToDict(data),
        "requestId": request_id,
        **({"operationId": operation_id} if operation_id else {}),
    }
    request = Request("POST", collection_path(parent), json=body)
    return parse_operation(json_of((yield request)))


def get(name: str) -> Plan[operations_pb2.Operation]:
    return parse_operation(json_of((yield Request("GET", operation_path(name)))))


def collection_path(parent: str = "") -> str:
    """`/v1/operations`, or a parent's collection `/v1/projects/P/locations/L/operations`."""
    parent = parent.strip("/").removesuffix("/operations")
    if parent in ("", "operations"):
        return "/v1/operations"
    return f"/v1/{quote(parent, safe='/~')}/operations"


def list_page(
    filter: str, page_size: int, page_token: str, order_by: str = "", parent: str = ""
) -> Plan[tuple[list[operations_pb2.Operation], str]]:
    """One page and the next page token ("" on the last page)."""
    params: dict[str, str | int] = {}
    if filter:
        params["filter"] = filter
    if order_by:
        params["orderBy"] = order_by
    if page_size:
        params["pageSize"] = page_size
    if page_token:
        params["pageToken"] = page_token
    path = collection_path(parent)
    answer = json_of((yield Request("GET", path, params=params)))
    if not isinstance(answer, dict):
        raise errors.TrackerError(f"unexpected answer to GET {path}: {str(answer)[:200]}")
    operations = [parse_operation(o) for o in answer.get("operations") or []]
    return operations, str(answer.get("nextPageToken") or "")


def count(filter: str, parent: str = "") -> Plan[int]:
    """How many operations match (`totalSize`; a lower bound past the server's bound)."""
    params: dict[str, str | int] = {"count": "true", "pageSize": 1}
    if filter:
        params["filter"] = filter
    answer = json_of((yield Request("GET", collection_path(parent), params=params)))
    total = answer.get("totalSize") if isinstance(answer, dict) else None
    if isinstance(total, str) and total.isdigit():
        total = int(total)
    if not isinstance(total, int) or isinstance(total, bool):
        raise errors.TrackerError(f"the tracker answered no totalSize: {str(answer)[:200]}")
    return total


BULK_VERBS: Final = {"cancel": "batchCancel", "delete": "batchDelete"}


def bulk(
    action: str, filter: str, dry_run: bool, rate: float | None
) -> Plan[operations_pb2.Operation | int]:
    """A bulk cancel or delete by filter: the bulk Operation, or (dry run) how many
    operations it would act on."""
    if action not in BULK_VERBS:
        raise ValueError(f"action must be cancel or delete, not {action!r}")
    body: dict[str, Any] = {"filter": filter}
    if dry_run:
        body["dryRun"] = True
    if rate is not None:
        body["ratePerSecond"] = rate
    answer = json_of((yield Request("POST", f"/v1/operations:{BULK_VERBS[action]}", json=body)))
    if not isinstance(answer, dict):
        raise errors.TrackerError(f"unexpected answer to a bulk {action}: {str(answer)[:200]}")
    if dry_run:
        return _count(answer.get("matched"))
    return parse_operation(answer)


def cancel(name: str) -> Plan[None]:
    yield Request("POST", operation_path(name, "cancel"), json={})


def delete(name: str) -> Plan[None]:
    yield Request("DELETE", operation_path(name))


def get_checkpoint(name: str) -> Plan[bytes | None]:
    """The latest checkpoint bytes, or None when the operation has none."""
    try:
        return (yield Request("GET", operation_path(name, "checkpoint"))).content
    except errors.NotFound:
        yield from get(name)  # NotFound again when the operation itself is missing
        return None


def wait(name: str, timeout: float | None) -> Plan[operations_pb2.Operation]:
    """WaitOperation in chunks the server can hold, until done or `timeout` passes."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if deadline is None:
            chunk = WAIT_CHUNK_SECONDS
        else:
            remaining = deadline - time.monotonic()
            if remaining < 0.001:
                return (yield from get(name))
            chunk = min(remaining, WAIT_CHUNK_SECONDS)
        request = Request(
            "POST",
            operation_path(name, "wait"),
            json={"timeout": duration(chunk)},
            read=chunk + WAIT_READ_MARGIN,
        )
        operation = parse_operation(json_of((yield request)))
        if operation.done or (deadline is not None and time.monotonic() >= deadline):
            return operation


class Step(Generic[T]):
    """Drives a plan one answer at a time: `first()`, then `answer(response)` or
    `fail(error)` until they return None; the plan's result is then `result`."""

    def __init__(self, plan: Plan[T]) -> None:
        self.plan = plan
        self.result: T

    def _advance(self, advance: Any, *args: Any) -> Request | None:
        try:
            request: Request = advance(*args)
        except StopIteration as stop:
            self.result = stop.value
            return None
        return request

    def first(self) -> Request | None:
        return self._advance(next, self.plan)

    def answer(self, response: httpx.Response) -> Request | None:
        return self._advance(self.plan.send, response)

    def fail(self, error: errors.TrackerError) -> Request | None:
        """Throw `error` into the plan: it may handle it, else it propagates."""
        return self._advance(self.plan.throw, error)


# ---- watch ------------------------------------------------------------------------------


class WatchSession:
    """The `:watch` stream's logic: the current state, then each change, until done or
    the timeout. The server bounds each stream by the timeout (or its
    --max-wait-seconds); a stream that ends before then is reopened, and the state it
    repeats is not yielded again."""

    def __init__(self, name: str, timeout: float | None) -> None:
        self.name = name
        self.path = operation_path(name, "watch")
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.last: operations_pb2.Operation | None = None
        self.finished = False
        self.received = False

    def budget(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def next_request(self) -> Request | None:
        """The next stream to open, or None when the deadline has passed."""
        if self.finished:
            return None
        budget = self.budget()
        if budget is not None and budget < 0.05:
            return None
        self.received = False
        params = {} if budget is None else {"timeout": duration(budget)}
        idle = SSE_IDLE_SECONDS if budget is None else min(budget, 15.0) + WAIT_READ_MARGIN
        return Request(
            "GET", self.path, params=params, headers={"accept": "text/event-stream"}, read=idle
        )

    def on_event(self, kind: str, data: str) -> operations_pb2.Operation | None:
        """A state to yield (None for a repeat); raises for an in-band error event."""
        if kind == "error":
            raise error_from_answer(500, data.encode())
        try:
            obj = json.loads(data)
        except ValueError:
            raise errors.TrackerError(
                f"watch stream sent something that is not JSON: {data[:200]!r}"
            ) from None
        if isinstance(obj, dict) and isinstance(obj.get("error"), dict) and "name" not in obj:
            raise error_from_answer(500, data.encode())
        operation = parse_operation(obj)
        self.received = True
        if operation.done or self.past():
            self.finished = True
        if operation == self.last:
            return None
        self.last = operation
        return operation

    def past(self, slack: float = 0.0) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline - slack

    def on_read_timeout(self, url: str, exc: httpx.ReadTimeout) -> None:
        """An idle stream timed out: the end when the deadline is (about) there."""
        if self.past(slack=0.05):
            self.finished = True
            return
        raise unavailable(url, exc) from exc

    def on_stream_end(self) -> None:
        if not self.received and not self.finished:
            raise errors.TrackerError(f"the watch stream of {self.name!r} ended without a state")


__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "Mode",
    "Plan",
    "PublishResult",
    "Request",
    "Step",
    "WatchSession",
    "error_from_answer",
]
