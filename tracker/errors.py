"""The tracker's own errors. Adapters translate vendor errors into these at the boundary.

Each error carries a `google.rpc.Code` so that the gRPC and HTTP layers map it to a
status in one place (`tracker.api.status`).
"""

from __future__ import annotations

from google.rpc import code_pb2


class TrackerError(Exception):
    """Base class; `code` is a google.rpc.Code value."""

    code: int = code_pb2.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(TrackerError):
    code = code_pb2.INVALID_ARGUMENT


class InvalidEvent(InvalidArgument):
    """An event that can never apply: it is poison, not a transient failure.

    `reason` is a short stable keyword (metrics label, dead-letter column); the
    message says what is wrong in words a producer can act on.
    """

    def __init__(self, reason: str, message: str, *, event_id: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.event_id = event_id


class NotFound(TrackerError):
    code = code_pb2.NOT_FOUND


class FailedPrecondition(TrackerError):
    code = code_pb2.FAILED_PRECONDITION


class Unauthenticated(TrackerError):
    code = code_pb2.UNAUTHENTICATED


class PermissionDenied(TrackerError):
    code = code_pb2.PERMISSION_DENIED


class StoreUnavailable(TrackerError):
    """Transient: the store could not be reached or was busy. Retry, never drop."""

    code = code_pb2.UNAVAILABLE


class ConfigError(Exception):
    """A bad setting: stops start-up with one line."""


class TrackerUnavailable(TrackerError):
    """Client side: the tracker could not be reached (refused, reset, timed out) or
    answered UNAVAILABLE. Transient: retrying the same event ids is safe."""

    code = code_pb2.UNAVAILABLE
