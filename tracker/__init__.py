"""tracker: event-driven tracking of google.longrunning Operations (AIP-151).

Import what you use from here; the modules behind these names may move. Each name is
imported on first use, so `import tracker` stays cheap (the CLI starts fast).

    from tracker import TrackerClient, Worker, subscribe_done
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    # clients: read, wait on and watch operations; publish events over HTTP
    "TrackerClient": "tracker.client",
    "AsyncTrackerClient": "tracker.client",
    "PublishResult": "tracker.client",
    # producers: report an operation's life from the code doing the work
    "Worker": "tracker.worker",
    "Run": "tracker.worker",
    "AsyncRun": "tracker.worker",
    "WorkerError": "tracker.worker",
    "OperationEnded": "tracker.worker",
    "Cancelled": "tracker.worker",
    # the event model, and its CloudEvents bindings
    "Event": "tracker.events",
    "Kind": "tracker.events",
    "EventRules": "tracker.events",
    "parse_message": "tracker.bindings",
    "parse_pubsub": "tracker.bindings",
    "to_binary": "tracker.bindings",
    "to_structured": "tracker.bindings",
    "to_batch": "tracker.bindings",
    # completion-topic consumers
    "DoneNotification": "tracker.bindings",
    "parse_done": "tracker.bindings",
    "subscribe_done": "tracker.done",
    "wait_done": "tracker.done",
    # control-topic consumers: resume and cancel notices for the work
    "ControlNotice": "tracker.bindings",
    "parse_notice": "tracker.bindings",
    "subscribe_notices": "tracker.resume",
    "iter_notices": "tracker.resume",
    # errors
    "TrackerError": "tracker.errors",
    "InvalidArgument": "tracker.errors",
    "InvalidEvent": "tracker.errors",
    "NotFound": "tracker.errors",
    "AlreadyExists": "tracker.errors",
    "FailedPrecondition": "tracker.errors",
    "Unauthenticated": "tracker.errors",
    "PermissionDenied": "tracker.errors",
    "ResourceExhausted": "tracker.errors",
    "Unimplemented": "tracker.errors",
    "ConfigError": "tracker.errors",
    "Unavailable": "tracker.errors",
    "StoreUnavailable": "tracker.errors",
    "TrackerUnavailable": "tracker.errors",
}

__all__ = [  # the same names as _EXPORTS, spelled out for tools that read it
    "AlreadyExists",
    "AsyncRun",
    "AsyncTrackerClient",
    "Cancelled",
    "ConfigError",
    "ControlNotice",
    "DoneNotification",
    "Event",
    "EventRules",
    "FailedPrecondition",
    "InvalidArgument",
    "InvalidEvent",
    "Kind",
    "NotFound",
    "OperationEnded",
    "PermissionDenied",
    "PublishResult",
    "ResourceExhausted",
    "Run",
    "StoreUnavailable",
    "TrackerClient",
    "TrackerError",
    "TrackerUnavailable",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Worker",
    "WorkerError",
    "__version__",
    "iter_notices",
    "parse_done",
    "parse_message",
    "parse_notice",
    "parse_pubsub",
    "subscribe_done",
    "subscribe_notices",
    "to_batch",
    "to_binary",
    "to_structured",
    "wait_done",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tracker' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # what type checkers and IDEs see
    from tracker.bindings import (
        ControlNotice,
        DoneNotification,
        parse_done,
        parse_message,
        parse_notice,
        parse_pubsub,
        to_batch,
        to_binary,
        to_structured,
    )
    from tracker.client import AsyncTrackerClient, PublishResult, TrackerClient
    from tracker.done import subscribe_done, wait_done
    from tracker.errors import (
        AlreadyExists,
        ConfigError,
        FailedPrecondition,
        InvalidArgument,
        InvalidEvent,
        NotFound,
        PermissionDenied,
        ResourceExhausted,
        StoreUnavailable,
        TrackerError,
        TrackerUnavailable,
        Unauthenticated,
        Unavailable,
        Unimplemented,
    )
    from tracker.events import Event, EventRules, Kind
    from tracker.resume import iter_notices, subscribe_notices
    from tracker.worker import AsyncRun, Cancelled, OperationEnded, Run, Worker, WorkerError
