"""The Python SDK: producers publish events, consumers read, wait on and watch operations.

`TrackerClient` is synchronous; `AsyncTrackerClient` is its asyncio twin with the same
methods as coroutines (and async iterators for `list` and `watch`). Both speak the
tracker's HTTP API only, so they work across processes and hosts; both are thin drivers
of one sans-IO core (`tracker.client._core`).

Failures are the project's own errors (`tracker.errors`): an HTTP error answer maps by
its google.rpc status name (NOT_FOUND -> `NotFound`, INVALID_ARGUMENT -> `InvalidArgument`,
or `InvalidEvent` with its reason for a rejected event, ...), and a tracker that cannot
be reached raises `TrackerUnavailable`. Re-publishing an event after `TrackerUnavailable`
is safe: the tracker applies an event id once.

Credentials (`tracker.client.credentials`): `token=` or TRACKER_TOKEN for a bearer
token, `id_token_audience=` or TRACKER_ID_TOKEN_AUDIENCE for a Google ID token from
Application Default Credentials, or any `auth=`; a refusal is `Unauthenticated` (401)
or `PermissionDenied` (403).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from google.longrunning import operations_proto_pb2 as operations_pb2  # without grpc

# name -> module that defines it, imported on first use: `tracker get` needs the
# synchronous client only (no asyncio), and the CLI imports this package cheaply.
_EXPORTS: dict[str, str] = {
    "DEFAULT_TIMEOUT": "tracker.client._core",
    "Mode": "tracker.client._core",
    "PublishResult": "tracker.client._core",
    "error_from_answer": "tracker.client._core",
    "DEFAULT_URL": "tracker.constants",
    "AsyncTrackerClient": "tracker.client._async",
    "TrackerClient": "tracker.client._sync",
    "HistoryEntry": "tracker.client._history",
    "OperationFuture": "tracker.client._future",
    "AsyncOperationFuture": "tracker.client._async_future",
    "Completions": "tracker.completions",
    "MetadataValue": "tracker.client._producers",
    "Producer": "tracker.client._producers",
    "default_source": "tracker.client._producers",
    "new_event": "tracker.client._producers",
    "to_any": "tracker.client._producers",
    "BearerToken": "tracker.client.credentials",
    "GoogleIdToken": "tracker.client.credentials",
    "metadata": "tracker.wire",
    "operation_to_dict": "tracker.wire",
    "parse_operation": "tracker.wire",
}

if TYPE_CHECKING:  # what type checkers and IDEs see
    from tracker.client._async import AsyncTrackerClient
    from tracker.client._async_future import AsyncOperationFuture
    from tracker.client._core import DEFAULT_TIMEOUT, Mode, PublishResult, error_from_answer
    from tracker.client._future import OperationFuture
    from tracker.client._history import HistoryEntry
    from tracker.client._producers import (
        MetadataValue,
        Producer,
        default_source,
        new_event,
        to_any,
    )
    from tracker.client._sync import TrackerClient
    from tracker.client.credentials import BearerToken, GoogleIdToken
    from tracker.completions import Completions
    from tracker.constants import DEFAULT_URL
    from tracker.wire import metadata, operation_to_dict, parse_operation

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "AsyncOperationFuture",
    "AsyncTrackerClient",
    "BearerToken",
    "Completions",
    "GoogleIdToken",
    "HistoryEntry",
    "MetadataValue",
    "Mode",
    "OperationFuture",
    "Producer",
    "PublishResult",
    "TrackerClient",
    "default_source",
    "error_from_answer",
    "metadata",
    "new_event",
    "operation_to_dict",
    "parse_operation",
    "subscribe_done",
    "to_any",
    "wait_done",
]


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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tracker.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
