"""The Python SDK: producers publish events, consumers read, wait on and watch operations.

`TrackerClient` is synchronous; `AsyncTrackerClient` is its asyncio twin with the same
methods as coroutines (and async iterators for `list` and `watch`). Both speak the
tracker's HTTP API only, so they work across processes and hosts.

Failures are the project's own errors (`tracker.errors`): an HTTP error answer maps by
its google.rpc status name (NOT_FOUND -> `NotFound`, INVALID_ARGUMENT -> `InvalidArgument`
or `InvalidEvent` when the server names a reason, ...), and a tracker that cannot be
reached raises `TrackerUnavailable`. Re-publishing an event after `TrackerUnavailable`
is safe: the tracker applies an event id once.

Credentials (`token=`, `id_token_audience=`, `auth=`, or TRACKER_TOKEN /
TRACKER_ID_TOKEN_AUDIENCE) come from `tracker.credentials`, the one place that makes
them; a refusal is `Unauthenticated` (401) or `PermissionDenied` (403).
"""

from __future__ import annotations

import abc
import base64
import binascii
import builtins
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, descriptor_pool, json_format
from google.protobuf.message import Message
from google.rpc import code_pb2

from tracker import credentials, errors
from tracker.events import (
    DATA_MESSAGES,
    JSON_CONTENT_TYPE,
    Event,
    Kind,
    struct,
    to_batch,
    to_binary,
    to_structured,
)
from tracker.v1 import events_pb2, operation_pb2

__all__ = [
    "DEFAULT_URL",
    "AsyncTrackerClient",
    "PublishResult",
    "TrackerClient",
    "metadata",
    "new_event",
    "operation_to_dict",
    "parse_operation",
    "to_any",
]

DEFAULT_URL: Final = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT: Final = 10.0
# A wait without an overall timeout asks the server for this much at a time (the
# server cuts each WaitOperation to its --max-wait-seconds anyway).
WAIT_CHUNK_SECONDS: Final = 60.0
# Extra read time beyond a server-side wait before the client gives up on the answer.
WAIT_READ_MARGIN: Final = 10.0

Mode = Literal["binary", "structured", "batch"]
MetadataValue = Message | Mapping[str, Any]
R = TypeVar("R")


def default_source() -> str:
    return f"tracker-client/{socket.gethostname()}"


@dataclass(frozen=True)
class PublishResult:
    """What the tracker did with one published event.

    `outcome` is "applied", "duplicate", "stale" or "late" (see docs/sdk.md); `done`
    is whether this very event finished the operation.
    """

    id: str
    source: str
    operation: str
    outcome: str
    done: bool = False

    @property
    def applied(self) -> bool:
        return self.outcome == "applied"


# ---- building events ----------------------------------------------------------------


def to_any(value: MetadataValue) -> any_pb2.Any:
    """Pack a message into Any; a plain mapping becomes a google.protobuf.Struct."""
    packed = any_pb2.Any()
    if isinstance(value, any_pb2.Any):
        packed.CopyFrom(value)
    elif isinstance(value, Message):
        packed.Pack(value)
    else:
        packed.Pack(struct(value))
    return packed


def new_event(
    kind: Kind,
    name: str,
    data: Message,
    *,
    source: str | None = None,
    seq: int | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> Event:
    """An event with a fresh id and the current time unless given."""
    expected = DATA_MESSAGES[kind].DESCRIPTOR
    if data.DESCRIPTOR is not expected:
        raise TypeError(
            f"{kind.value} data must be {expected.full_name}, not {data.DESCRIPTOR.full_name}"
        )
    return Event(
        id=event_id or uuid.uuid4().hex,
        source=source or default_source(),
        kind=kind,
        operation=name,
        time=(time or datetime.now(UTC)).astimezone(UTC),
        data=data,
        sequence=seq,
    )


def _created_data(
    operation_type: str,
    labels: Mapping[str, str] | None,
    parent: str,
    metadata: MetadataValue | None,
    deadline: datetime | None,
    heartbeat_timeout: timedelta | float | None,
) -> events_pb2.Created:
    data = events_pb2.Created(
        operation_type=operation_type, labels=dict(labels or {}), parent=parent
    )
    if metadata is not None:
        data.metadata.CopyFrom(to_any(metadata))
    if deadline is not None:
        data.deadline.FromDatetime(deadline.astimezone(UTC))
    if heartbeat_timeout is not None:
        if not isinstance(heartbeat_timeout, timedelta):
            heartbeat_timeout = timedelta(seconds=heartbeat_timeout)
        data.heartbeat_timeout.FromTimedelta(heartbeat_timeout)
    return data


# ---- reading answers ----------------------------------------------------------------

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
        error = cls(message, reason=reason or None, metadata=metadata)
    else:
        error = errors.TrackerError(
            f"{status}: {message}", reason=reason or None, metadata=metadata
        )
        error.code = code_pb2.Code.Value(status) if status in _CODE_NAMES else code_pb2.UNKNOWN
    return error


def _unavailable(url: str, exc: httpx.HTTPError) -> errors.TrackerUnavailable:
    if isinstance(exc, httpx.TimeoutException):
        what = "timed out"
    elif isinstance(exc, httpx.ConnectError):
        what = "cannot connect"
    else:
        what = "connection failed"
    detail = str(exc) or type(exc).__name__
    return errors.TrackerUnavailable(f"tracker at {url}: {what}: {detail}")


def _check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        event = response.request.url.path.endswith("/v1/events")
        raise error_from_answer(response.status_code, response.content, event=event)
    return response


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise errors.TrackerError(
            f"tracker answered {response.request.method} {response.request.url.path} with"
            f" something that is not JSON: {response.text[:200]!r}"
        ) from None


def _known_type(type_url: str, pool: descriptor_pool.DescriptorPool) -> bool:
    try:
        pool.FindMessageTypeByName(type_url.rsplit("/", 1)[-1])
    except KeyError:
        return False
    return True


def _take_unknown_any(value: Any, pool: descriptor_pool.DescriptorPool) -> any_pb2.Any | None:
    """An Any whose type this process does not know: keep its type_url (and its bytes
    when the server sent them as "value"), since its JSON cannot be turned back into bytes."""
    if not isinstance(value, dict) or "@type" not in value:
        return None
    type_url = str(value["@type"])
    if _known_type(type_url, pool):
        return None
    packed = any_pb2.Any(type_url=type_url)
    raw = value.get("value")
    if isinstance(raw, str) and len(value) == 2:
        with contextlib.suppress(binascii.Error, ValueError):
            packed.value = base64.b64decode(raw, validate=True)
    return packed


def parse_operation(
    obj: Mapping[str, Any], pool: descriptor_pool.DescriptorPool | None = None
) -> operations_pb2.Operation:
    """An Operation from its proto3 JSON form.

    Unknown fields are ignored (a newer server may add some). An Any value (metadata,
    response, error details) whose type is not in `pool` is kept with its type_url
    only: import the module generated for that type to get its content.
    """
    pool = pool or descriptor_pool.Default()
    obj = dict(obj)
    unknown: dict[str, any_pb2.Any] = {}
    for field_name in ("metadata", "response"):
        packed = _take_unknown_any(obj.get(field_name), pool)
        if packed is not None:
            unknown[field_name] = packed
            del obj[field_name]
    details: list[tuple[int, any_pb2.Any]] = []
    error = obj.get("error")
    if isinstance(error, dict) and isinstance(error.get("details"), list):
        error = dict(error)
        kept = []
        for index, detail in enumerate(error["details"]):
            packed = _take_unknown_any(detail, pool)
            if packed is None:
                kept.append(detail)
            else:
                details.append((index, packed))
                kept.append({"@type": "type.googleapis.com/google.protobuf.Empty", "value": {}})
        error["details"] = kept
        obj["error"] = error
    operation = operations_pb2.Operation()
    try:
        json_format.ParseDict(obj, operation, ignore_unknown_fields=True, descriptor_pool=pool)
    except json_format.ParseError as exc:
        raise errors.TrackerError(f"cannot read the Operation the tracker sent: {exc}") from None
    if "metadata" in unknown:
        operation.metadata.CopyFrom(unknown["metadata"])
    if "response" in unknown:
        operation.response.CopyFrom(unknown["response"])
    for index, packed in details:
        operation.error.details[index].CopyFrom(packed)
    return operation


def operation_to_dict(operation: operations_pb2.Operation) -> dict[str, Any]:
    """proto3 JSON of an Operation; an Any of a type this process lacks is shown as
    `{"@type": ..., "value": <base64>}` instead of failing."""
    pool = descriptor_pool.Default()
    copy = operations_pb2.Operation()
    copy.CopyFrom(operation)
    raw: dict[str, any_pb2.Any] = {}
    for field_name in ("metadata", "response"):
        if copy.HasField(field_name):
            packed: any_pb2.Any = getattr(copy, field_name)
            if not _known_type(packed.type_url, pool):
                raw[field_name] = any_pb2.Any()
                raw[field_name].CopyFrom(packed)
                copy.ClearField(field_name)
    details = list(copy.error.details)
    unknown_details = {i: d for i, d in enumerate(details) if not _known_type(d.type_url, pool)}
    if unknown_details:
        del copy.error.details[:]
    result: dict[str, Any] = json_format.MessageToDict(copy, preserving_proto_field_name=False)
    for field_name, packed in raw.items():
        result[field_name] = _raw_any(packed)
    if unknown_details:
        result["error"]["details"] = [
            _raw_any(d) if i in unknown_details else json_format.MessageToDict(d)
            for i, d in enumerate(details)
        ]
    return result


def _raw_any(packed: any_pb2.Any) -> dict[str, str]:
    return {"@type": packed.type_url, "value": base64.b64encode(packed.value).decode()}


def metadata(operation: operations_pb2.Operation) -> operation_pb2.OperationMetadata | None:
    """The tracker's metadata of an operation, or None when a producer supplied its own type."""
    if not operation.metadata.Is(operation_pb2.OperationMetadata.DESCRIPTOR):
        return None
    meta = operation_pb2.OperationMetadata()
    operation.metadata.Unpack(meta)
    return meta


def _duration(seconds: float) -> str:
    return f"{max(seconds, 0.001):.3f}s"


def _operation_path(name: str, verb: str = "") -> str:
    name = name.strip("/")
    if not name:
        raise errors.InvalidArgument("operation name must not be empty")
    return f"/v1/{quote(name, safe='/~')}" + (f":{verb}" if verb else "")


def _publish_requests(
    events: builtins.list[Event], mode: Mode, content_type: str
) -> builtins.list[tuple[dict[str, str], bytes]]:
    if mode == "batch":
        return [to_batch(events, content_type)]
    if mode == "structured":
        return [to_structured(e, content_type) for e in events]
    if mode == "binary":
        return [to_binary(e, content_type) for e in events]
    raise ValueError(f"mode must be binary, structured or batch, not {mode!r}")


def _publish_results(answer: Any) -> builtins.list[PublishResult]:
    items = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(items, builtins.list):
        raise errors.TrackerError(f"unexpected answer to POST /v1/events: {str(answer)[:200]}")
    return [
        PublishResult(
            id=str(item.get("id", "")),
            source=str(item.get("source", "")),
            operation=str(item.get("operation", "")),
            outcome=str(item.get("outcome", "")),
            done=bool(item.get("done", False)),
        )
        for item in items
    ]


def _page(answer: Any) -> tuple[builtins.list[operations_pb2.Operation], str]:
    if not isinstance(answer, dict):
        raise errors.TrackerError(f"unexpected answer to GET /v1/operations: {str(answer)[:200]}")
    operations = [parse_operation(o) for o in answer.get("operations") or []]
    return operations, str(answer.get("nextPageToken") or "")


class _SseParser:
    """Server-Sent Events, one line at a time: `feed` returns (event type, data) when
    a blank line completes an event."""

    def __init__(self) -> None:
        self.kind = "message"
        self.data: builtins.list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        if line == "":
            item = (self.kind, "\n".join(self.data)) if self.data else None
            self.kind, self.data = "message", []
            return item
        if line.startswith(":"):
            return None
        field_name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field_name == "data":
            self.data.append(value)
        elif field_name == "event":
            self.kind = value
        return None


def _sse_data(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(event type, data) of each event in a stream of lines; a last event without its
    blank line counts too."""
    parser = _SseParser()
    for line in _then_blank(lines):
        item = parser.feed(line)
        if item is not None:
            yield item


def _then_blank(lines: Iterable[str]) -> Iterator[str]:
    yield from lines
    yield ""


def _watch_item(kind: str, data: str) -> operations_pb2.Operation:
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
    return parse_operation(obj)


# ---- the clients --------------------------------------------------------------------


class _Producers(abc.ABC, Generic[R]):
    """The producer verbs, shared by the sync and async clients.

    Each builds one event (fresh uuid id unless `event_id` is given, the client's
    source, the current time, optional per-operation sequence `seq`) and publishes it
    with the client's default mode and content type.
    """

    source: str

    url: str
    mode: Mode
    content_type: str
    auth: httpx.Auth | None
    _owns_auth: bool
    _timeout: httpx.Timeout

    def _configure(
        self,
        url: str,
        timeout: float | httpx.Timeout | None,
        source: str | None,
        mode: Mode,
        content_type: str,
        token: str | None = None,
        id_token_audience: str | None = None,
        auth: httpx.Auth | None = None,
    ) -> None:
        """What the sync and async clients set alike."""
        self.url = url.rstrip("/")
        self.source = source or default_source()
        self.mode = mode
        self.content_type = content_type
        self._timeout = _timeout(timeout)
        self.auth = credentials.resolve(token, id_token_audience, auth)
        self._owns_auth = auth is None  # made here: closed with the client

    def _close_auth(self) -> None:
        close = getattr(self.auth, "close", None)
        if self._owns_auth and callable(close):
            close()

    @abc.abstractmethod
    def _emit(self, event: Event) -> R:
        """Publish one event through this client's transport."""

    def event(
        self,
        kind: Kind,
        name: str,
        data: Message,
        *,
        seq: int | None = None,
        event_id: str | None = None,
    ) -> Event:
        """Build (not publish) an event from this client's source."""
        return new_event(kind, name, data, source=self.source, seq=seq, event_id=event_id)

    def created(
        self,
        name: str,
        *,
        operation_type: str = "",
        labels: Mapping[str, str] | None = None,
        parent: str = "",
        metadata: MetadataValue | None = None,
        deadline: datetime | None = None,
        heartbeat_timeout: timedelta | float | None = None,
        seq: int | None = None,
        event_id: str | None = None,
    ) -> R:
        """The operation exists. `metadata` (a message, or a dict sent as Struct) is then
        served as Operation.metadata instead of tracker.v1.OperationMetadata."""
        data = _created_data(operation_type, labels, parent, metadata, deadline, heartbeat_timeout)
        return self._emit(self.event(Kind.CREATED, name, data, seq=seq, event_id=event_id))

    def progress(
        self,
        name: str,
        percent: float,
        message: str = "",
        *,
        metadata: MetadataValue | None = None,
        seq: int | None = None,
        event_id: str | None = None,
    ) -> R:
        data = events_pb2.Progress(percent=percent, message=message)
        if metadata is not None:
            data.metadata.CopyFrom(to_any(metadata))
        return self._emit(self.event(Kind.PROGRESS, name, data, seq=seq, event_id=event_id))

    def checkpoint(
        self, name: str, data: bytes, *, seq: int | None = None, event_id: str | None = None
    ) -> R:
        """Store opaque resume bytes; read them back with `get_checkpoint`."""
        message = events_pb2.Checkpoint(data=data)
        return self._emit(self.event(Kind.CHECKPOINT, name, message, seq=seq, event_id=event_id))

    def heartbeat(
        self, name: str, message: str = "", *, seq: int | None = None, event_id: str | None = None
    ) -> R:
        data = events_pb2.Heartbeat(message=message)
        return self._emit(self.event(Kind.HEARTBEAT, name, data, seq=seq, event_id=event_id))

    def succeeded(
        self,
        name: str,
        response: MetadataValue | None = None,
        *,
        seq: int | None = None,
        event_id: str | None = None,
    ) -> R:
        """Terminal. `response` (a message, or a dict sent as Struct) becomes Operation.response."""
        data = events_pb2.Succeeded()
        if response is not None:
            data.response.CopyFrom(to_any(response))
        return self._emit(self.event(Kind.SUCCEEDED, name, data, seq=seq, event_id=event_id))

    def failed(
        self,
        name: str,
        code: int,
        message: str,
        *,
        details: Iterable[Message] = (),
        seq: int | None = None,
        event_id: str | None = None,
    ) -> R:
        """Terminal. `code` is a google.rpc.Code other than OK (e.g. code_pb2.NOT_FOUND)."""
        data = events_pb2.Failed()
        data.error.code = int(code)
        data.error.message = message
        for detail in details:
            data.error.details.add().Pack(detail)
        return self._emit(self.event(Kind.FAILED, name, data, seq=seq, event_id=event_id))

    def cancelled(
        self, name: str, reason: str = "", *, seq: int | None = None, event_id: str | None = None
    ) -> R:
        """Terminal: the worker stopped on a cancel request (served as code CANCELLED)."""
        data = events_pb2.Cancelled(reason=reason)
        return self._emit(self.event(Kind.CANCELLED, name, data, seq=seq, event_id=event_id))


def _timeout(value: float | httpx.Timeout | None) -> httpx.Timeout:
    return value if isinstance(value, httpx.Timeout) else httpx.Timeout(value)


def _with_read(timeout: httpx.Timeout, read: float | None) -> httpx.Timeout:
    return httpx.Timeout(connect=timeout.connect, read=read, write=timeout.write, pool=timeout.pool)


class TrackerClient(_Producers[PublishResult]):
    """Synchronous client of one tracker.

    Args:
        url: base URL of the tracker's HTTP server.
        timeout: seconds (or an httpx.Timeout) for ordinary calls; `wait` and `watch`
            extend the read timeout to cover their server-side wait.
        source: CloudEvents `source` of the events this client builds.
        mode: default content mode of `publish` and the producer verbs.
        content_type: default data encoding, application/json or application/protobuf.
        transport: an httpx transport (e.g. httpx.MockTransport in a user's tests).
        headers: headers sent with every request.
        token: a bearer token to send (`Authorization: Bearer ...`).
        id_token_audience: send a Google ID token for this audience, minted from
            Application Default Credentials and refreshed when it expires.
        auth: any `httpx.Auth` instead (e.g. `tracker.credentials.GoogleIdToken` with
            credentials of your own). With none of the three, TRACKER_TOKEN or
            TRACKER_ID_TOKEN_AUDIENCE from the environment is used, if set.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        source: str | None = None,
        mode: Mode = "binary",
        content_type: str = JSON_CONTENT_TYPE,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
        id_token_audience: str | None = None,
        auth: httpx.Auth | None = None,
    ) -> None:
        self._configure(url, timeout, source, mode, content_type, token, id_token_audience, auth)
        self._http = httpx.Client(
            base_url=self.url,
            timeout=self._timeout,
            transport=transport,
            headers=headers,
            auth=self.auth,
        )

    def __enter__(self) -> TrackerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        self._close_auth()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return _check(self._http.request(method, path, **kwargs))
        except httpx.HTTPError as exc:
            raise _unavailable(self.url, exc) from exc

    # ---- producers ---------------------------------------------------------------------

    def _emit(self, event: Event) -> PublishResult:
        return self.publish(event)[0]

    def publish(
        self,
        event_or_events: Event | Iterable[Event],
        mode: Mode | None = None,
        content_type: str | None = None,
    ) -> builtins.list[PublishResult]:
        """Publish events; one result per event, in order.

        Batch mode sends them in one request, applied all-or-nothing; binary and
        structured mode send one request per event.
        """
        events = [event_or_events] if isinstance(event_or_events, Event) else [*event_or_events]
        results: builtins.list[PublishResult] = []
        requests = _publish_requests(events, mode or self.mode, content_type or self.content_type)
        for headers, body in requests:
            response = self._request("POST", "/v1/events", headers=headers, content=body)
            results.extend(_publish_results(_json(response)))
        return results

    # ---- consumers ---------------------------------------------------------------------

    def get(self, name: str) -> operations_pb2.Operation:
        return parse_operation(_json(self._request("GET", _operation_path(name))))

    def list_page(
        self, filter: str = "", page_size: int = 0, page_token: str = ""
    ) -> tuple[builtins.list[operations_pb2.Operation], str]:
        """One page and the next page token ("" on the last page)."""
        params = _list_params(filter, page_size, page_token)
        return _page(_json(self._request("GET", "/v1/operations", params=params)))

    def list(self, filter: str = "", page_size: int = 0) -> Iterator[operations_pb2.Operation]:
        """Every operation matching `filter` (AIP-160 subset), fetching page after page."""
        token = ""
        while True:
            operations, token = self.list_page(filter, page_size, token)
            yield from operations
            if not token:
                return

    def cancel(self, name: str) -> None:
        """CancelOperation: the operation ends as CANCELLED at once unless already done;
        its worker sees `cancel_requested` in the metadata and its later events are late."""
        self._request("POST", _operation_path(name, "cancel"), json={})

    def delete(self, name: str) -> None:
        self._request("DELETE", _operation_path(name))

    def get_checkpoint(self, name: str) -> bytes | None:
        """The latest checkpoint bytes, or None when the operation has none."""
        try:
            return self._request("GET", _operation_path(name, "checkpoint")).content
        except errors.NotFound:
            self.get(name)  # raises NotFound when the operation itself is missing
            return None

    def wait(self, name: str, timeout: float | None = None) -> operations_pb2.Operation:
        """Block until the operation is done or `timeout` seconds pass (None: no limit).

        Returns the operation either way; check `.done`. The server does the waiting
        (WaitOperation), so the call wakes the moment the terminal event lands.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            chunk = _wait_chunk(deadline)
            if chunk is None:
                return self.get(name)
            response = self._request(
                "POST",
                _operation_path(name, "wait"),
                json={"timeout": _duration(chunk)},
                timeout=_with_read(self._timeout, chunk + WAIT_READ_MARGIN),
            )
            operation = parse_operation(_json(response))
            if operation.done or (deadline is not None and time.monotonic() >= deadline):
                return operation

    def watch(self, name: str, timeout: float | None = None) -> Iterator[operations_pb2.Operation]:
        """The current state, then each change, until done (or `timeout` seconds pass).

        Server-Sent Events from GET /v1/{name}:watch. The server bounds each stream
        by `timeout` (or its --max-wait-seconds); a stream that ends before the
        operation is done and before the timeout is reopened, skipping the repeated
        state. When the timeout passes first, the last state yielded is not done.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: operations_pb2.Operation | None = None
        while True:
            budget = None if deadline is None else deadline - time.monotonic()
            if budget is not None and budget < 0.05:
                return
            received = False
            try:
                with self._http.stream(
                    "GET",
                    _operation_path(name, "watch"),
                    headers={"accept": "text/event-stream"},
                    params=_watch_params(budget),
                    timeout=_watch_timeout(self._timeout, budget),
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        _check(response)
                    for kind, data in _sse_data(response.iter_lines()):
                        operation = _watch_item(kind, data)
                        received = True
                        if operation != last:
                            last = operation
                            yield operation
                        if operation.done or _past(deadline):
                            return
            except httpx.ReadTimeout as exc:
                if _past(deadline, slack=0.05):
                    return
                raise _unavailable(self.url, exc) from exc
            except httpx.HTTPError as exc:
                raise _unavailable(self.url, exc) from exc
            if not received:
                raise errors.TrackerError(f"the watch stream of {name!r} ended without a state")


def _list_params(filter: str, page_size: int, page_token: str) -> dict[str, str | int]:
    params: dict[str, str | int] = {}
    if filter:
        params["filter"] = filter
    if page_size:
        params["pageSize"] = page_size
    if page_token:
        params["pageToken"] = page_token
    return params


def _wait_chunk(deadline: float | None) -> float | None:
    """Seconds to ask the server to wait next, None when the deadline has passed."""
    if deadline is None:
        return WAIT_CHUNK_SECONDS
    remaining = deadline - time.monotonic()
    if remaining < 0.001:
        return None
    return min(remaining, WAIT_CHUNK_SECONDS)


def _watch_params(budget: float | None) -> dict[str, str]:
    """The server ends the stream when `budget` runs out (or at its --max-wait-seconds)."""
    return {} if budget is None else {"timeout": _duration(budget)}


def _watch_timeout(timeout: httpx.Timeout, budget: float | None) -> httpx.Timeout:
    # The server sends a keepalive comment every 15 s on an idle stream.
    idle = 15.0 + WAIT_READ_MARGIN
    return _with_read(timeout, idle if budget is None else min(budget, idle) + WAIT_READ_MARGIN)


def _past(deadline: float | None, slack: float = 0.0) -> bool:
    return deadline is not None and time.monotonic() >= deadline - slack


class AsyncTrackerClient(_Producers[Coroutine[Any, Any, PublishResult]]):
    """The asyncio twin of `TrackerClient`: same arguments, same methods as coroutines;
    `list` and `watch` are async iterators."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        source: str | None = None,
        mode: Mode = "binary",
        content_type: str = JSON_CONTENT_TYPE,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
        id_token_audience: str | None = None,
        auth: httpx.Auth | None = None,
    ) -> None:
        self._configure(url, timeout, source, mode, content_type, token, id_token_audience, auth)
        self._http = httpx.AsyncClient(
            base_url=self.url,
            timeout=self._timeout,
            transport=transport,
            headers=headers,
            auth=self.auth,
        )

    async def __aenter__(self) -> AsyncTrackerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        self._close_auth()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return _check(await self._http.request(method, path, **kwargs))
        except httpx.HTTPError as exc:
            raise _unavailable(self.url, exc) from exc

    def _emit(self, event: Event) -> Coroutine[Any, Any, PublishResult]:
        async def one() -> PublishResult:
            return (await self.publish(event))[0]

        return one()

    async def publish(
        self,
        event_or_events: Event | Iterable[Event],
        mode: Mode | None = None,
        content_type: str | None = None,
    ) -> builtins.list[PublishResult]:
        events = [event_or_events] if isinstance(event_or_events, Event) else [*event_or_events]
        results: builtins.list[PublishResult] = []
        requests = _publish_requests(events, mode or self.mode, content_type or self.content_type)
        for headers, body in requests:
            response = await self._request("POST", "/v1/events", headers=headers, content=body)
            results.extend(_publish_results(_json(response)))
        return results

    async def get(self, name: str) -> operations_pb2.Operation:
        return parse_operation(_json(await self._request("GET", _operation_path(name))))

    async def list_page(
        self, filter: str = "", page_size: int = 0, page_token: str = ""
    ) -> tuple[builtins.list[operations_pb2.Operation], str]:
        params = _list_params(filter, page_size, page_token)
        return _page(_json(await self._request("GET", "/v1/operations", params=params)))

    async def list(
        self, filter: str = "", page_size: int = 0
    ) -> AsyncIterator[operations_pb2.Operation]:
        token = ""
        while True:
            operations, token = await self.list_page(filter, page_size, token)
            for operation in operations:
                yield operation
            if not token:
                return

    async def cancel(self, name: str) -> None:
        await self._request("POST", _operation_path(name, "cancel"), json={})

    async def delete(self, name: str) -> None:
        await self._request("DELETE", _operation_path(name))

    async def get_checkpoint(self, name: str) -> bytes | None:
        try:
            return (await self._request("GET", _operation_path(name, "checkpoint"))).content
        except errors.NotFound:
            await self.get(name)
            return None

    async def wait(self, name: str, timeout: float | None = None) -> operations_pb2.Operation:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            chunk = _wait_chunk(deadline)
            if chunk is None:
                return await self.get(name)
            response = await self._request(
                "POST",
                _operation_path(name, "wait"),
                json={"timeout": _duration(chunk)},
                timeout=_with_read(self._timeout, chunk + WAIT_READ_MARGIN),
            )
            operation = parse_operation(_json(response))
            if operation.done or (deadline is not None and time.monotonic() >= deadline):
                return operation

    async def watch(
        self, name: str, timeout: float | None = None
    ) -> AsyncIterator[operations_pb2.Operation]:
        deadline = None if timeout is None else time.monotonic() + timeout
        last: operations_pb2.Operation | None = None
        while True:
            budget = None if deadline is None else deadline - time.monotonic()
            if budget is not None and budget < 0.05:
                return
            received = False
            try:
                async with self._http.stream(
                    "GET",
                    _operation_path(name, "watch"),
                    headers={"accept": "text/event-stream"},
                    params=_watch_params(budget),
                    timeout=_watch_timeout(self._timeout, budget),
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        _check(response)
                    parser = _SseParser()
                    async for line in response.aiter_lines():
                        item = parser.feed(line)
                        if item is None:
                            continue
                        operation = _watch_item(*item)
                        received = True
                        if operation != last:
                            last = operation
                            yield operation
                        if operation.done or _past(deadline):
                            return
                    tail = parser.feed("")
                    if tail is not None:
                        received = True
                        operation = _watch_item(*tail)
                        if operation != last:
                            yield operation
                        if operation.done:
                            return
            except httpx.ReadTimeout as exc:
                if _past(deadline, slack=0.05):
                    return
                raise _unavailable(self.url, exc) from exc
            except httpx.HTTPError as exc:
                raise _unavailable(self.url, exc) from exc
            if not received:
                raise errors.TrackerError(f"the watch stream of {name!r} ended without a state")


def subscribe_done(subscription: str, callback: Callable[[Any], None]) -> Any:
    """Done-notifications from the completion topic (needs Pub/Sub); see tracker.done."""
    from tracker import done

    return done.subscribe_done(subscription, callback)


def wait_done(
    subscription: str, name: str, timeout: float | None = None
) -> operations_pb2.Operation:
    """Wait for `name`'s done-notification on a completion-topic subscription."""
    from tracker import done

    return done.wait_done(subscription, name, timeout)
