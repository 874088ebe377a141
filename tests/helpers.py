"""Small helpers shared by tests: build real events, ingest them into a running server."""

from __future__ import annotations

import asyncio
import base64
import itertools
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.longrunning import operations_pb2
from google.protobuf import any_pb2, struct_pb2
from google.protobuf.message import Message

from tracker.events import Event, Kind
from tracker.stores.base import BatchResult, OutboxItem
from tracker.v1 import events_pb2

if TYPE_CHECKING:  # the server's import is heavy: benches build events from here too
    from tracker.server import Server

ROOT = Path(__file__).resolve().parent.parent  # the repository
T0 = datetime(2026, 1, 1, tzinfo=UTC)
_clock = itertools.count()


def make_event(
    kind: Kind | str,
    operation: str,
    *,
    id: str | None = None,
    seq: int | None = None,
    data: Message | dict[str, Any] | None = None,
    source: str = "test",
    time: datetime | None = None,
    attempt: int | None = None,
) -> Event:
    """A valid event; `data` may be the message or keyword fields for it."""
    kind = Kind(kind) if isinstance(kind, str) else kind
    message_type = {
        Kind.CREATED: events_pb2.Created,
        Kind.PROGRESS: events_pb2.Progress,
        Kind.CHECKPOINT: events_pb2.Checkpoint,
        Kind.HEARTBEAT: events_pb2.Heartbeat,
        Kind.SUCCEEDED: events_pb2.Succeeded,
        Kind.FAILED: events_pb2.Failed,
        Kind.CANCELLED: events_pb2.Cancelled,
    }[kind]
    if data is None:
        message: Message = message_type()
    elif isinstance(data, dict):
        message = message_type(**data)
    else:
        message = data
    return Event(
        id=id or uuid.uuid4().hex,
        source=source,
        kind=kind,
        operation=operation,
        time=time or T0 + timedelta(milliseconds=next(_clock)),
        data=message,
        sequence=seq,
        attempt=attempt,
    )


def ingest(server: Server, events: Sequence[Event], route: str = "test") -> BatchResult:
    """Apply through the running server's Tracker, so waiters and the outbox see it."""
    loop: asyncio.AbstractEventLoop = server.loop  # type: ignore[attr-defined]
    future = asyncio.run_coroutine_threadsafe(server.tracker.ingest(events, route=route), loop)
    return future.result(timeout=30)


def packed_struct(**fields: Any) -> any_pb2.Any:
    """A google.protobuf.Struct of `fields`, packed in an Any."""
    s = struct_pb2.Struct()
    s.update(fields)
    value = any_pb2.Any()
    value.Pack(s)
    return value


def running_op(server: Server, name: str, percent: float = 10.0, **labels: str) -> None:
    """An operation of type export with `labels`, at `percent`, not done."""
    ingest(
        server,
        [
            make_event(Kind.CREATED, name, data={"operation_type": "export", "labels": labels}),
            make_event(Kind.PROGRESS, name, data={"percent": percent, "message": "working"}),
        ],
    )


def succeed(server: Server, name: str, **fields: object) -> None:
    """End `name` successfully with a Struct response of `fields`."""
    ingest(server, [make_event(Kind.SUCCEEDED, name, data={"response": packed_struct(**fields)})])


ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


def google_error(response: Any) -> tuple[str, str, dict[str, str]]:
    """(status, ErrorInfo reason, ErrorInfo metadata) of a Google-style JSON error answer.

    Asserts the shape every HTTP error has: exactly code, message, status and details,
    `code` equal to the HTTP status, and one ErrorInfo in the tracker's domain.
    """
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "status", "details"}, error
    assert error["code"] == response.status_code, error
    assert isinstance(error["message"], str) and error["message"], error
    infos = [d for d in error["details"] if d.get("@type") == ERROR_INFO]
    assert len(infos) == 1, error
    info = infos[0]
    assert info["domain"] == "tracker" and info["reason"] == info["reason"].upper(), info
    return str(error["status"]), str(info["reason"]), dict(info.get("metadata") or {})


def envelope(
    attributes: dict[str, str], data: bytes | str, message_id: str = "m1"
) -> dict[str, Any]:
    encoded = data if isinstance(data, str) else base64.b64encode(data).decode()
    return {
        "message": {
            "attributes": attributes,
            "data": encoded,
            "messageId": message_id,
            "publishTime": "2026-01-01T00:00:00Z",
            "orderingKey": "operations/ingest-1",
        },
        "subscription": "projects/p/subscriptions/tracker-push",
        "deliveryAttempt": 1,
    }


# operations.proto's HTTP rules, with the collection spelled as this server serves it.
REST_RULES = {
    "google.longrunning.Operations.ListOperations": [
        {"method": "get", "uri": "/v1/{name=operations}"}
    ],
    "google.longrunning.Operations.GetOperation": [
        {"method": "get", "uri": "/v1/{name=operations/**}"}
    ],
    "google.longrunning.Operations.DeleteOperation": [
        {"method": "delete", "uri": "/v1/{name=operations/**}"}
    ],
    "google.longrunning.Operations.CancelOperation": [
        {"method": "post", "uri": "/v1/{name=operations/**}:cancel", "body": "*"}
    ],
}


def rest_client(url: str, credentials: Any = None) -> Any:
    """Google's REST operations client (api_core's AbstractOperationsClient) for `url`.

    OperationsRestTransport accepts url_scheme but (api-core 2.44) does not pass it on to
    its base class, which then defaults to https; the base class does honour a scheme
    written in `host`, so the URL goes there whole.
    """
    from google.api_core.operations_v1 import AbstractOperationsClient
    from google.api_core.operations_v1.transports.rest import OperationsRestTransport
    from google.auth.credentials import AnonymousCredentials

    transport = OperationsRestTransport(
        host=url,
        credentials=credentials or AnonymousCredentials(),
        url_scheme="http",
        http_options=REST_RULES,
    )
    return AbstractOperationsClient(transport=transport)


def outbox_item(item_id: str, operation: operations_pb2.Operation) -> OutboxItem:
    """A done-notice for the topics, as the outbox hands it to a sink."""
    return OutboxItem(id=item_id, operation=operation, created_at=datetime.now(UTC))
