"""The tracker's own errors, one hierarchy. Adapters translate vendor errors into these.

Each error carries what a Google API error carries (AIP-193): a `google.rpc.Code`, a
message, and an `ErrorInfo` reason (UPPER_SNAKE) with metadata. `tracker.api.status` is
the one place that turns them into HTTP and gRPC answers.

    TrackerError                      base; INTERNAL unless a subclass says otherwise
      InvalidArgument                 the caller can fix the request
        InvalidEvent                  an event that can never apply (poison)
      NotFound, AlreadyExists, FailedPrecondition, Unauthenticated, PermissionDenied,
      ResourceExhausted, Unimplemented, MethodNotAllowed
      ConfigError                     a bad setting: stops start-up with one line
      Unavailable                     transient: retry, never drop
        StoreUnavailable              the store could not be reached or was busy
        TrackerUnavailable            client side: the tracker could not be reached
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from google.rpc import code_pb2

ERROR_DOMAIN: Final = "tracker"
# Longest text of a message; anything a caller sent is cut well below this.
MAX_MESSAGE_CHARS: Final = 2000
MAX_ECHO_CHARS: Final = 100


def clip(text: object, limit: int = MAX_ECHO_CHARS) -> str:
    """`text` cut to `limit` characters, for quoting caller input in a message.

    A lone surrogate (from a JSON escape such as "\\ud800") has no UTF-8 form and would
    break the answer that carries it: it is written as its escape instead.
    """
    value = str(text)
    value = value if len(value) <= limit else value[:limit] + "..."
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def echo(value: object, limit: int = MAX_ECHO_CHARS) -> str:
    """repr() of caller input, bounded: messages never echo unbounded input."""
    return repr(clip(value, limit)) if isinstance(value, str) else clip(repr(value), limit)


def code_name(code: int) -> str:
    """The google.rpc.Code name of `code` ("NOT_FOUND"); UNKNOWN for a foreign value."""
    try:
        return str(code_pb2.Code.Name(code))
    except ValueError:
        return "UNKNOWN"


class TrackerError(Exception):
    """Base class. `code` is a google.rpc.Code; `reason` the ErrorInfo reason.

    `http_status` is set only where an HTTP answer needs a status of its own that no
    google.rpc.Code maps to (405, 413, 415); otherwise it follows from the code.
    """

    code: int = code_pb2.INTERNAL
    http_status: int | None = None

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        message = clip(message, MAX_MESSAGE_CHARS)
        super().__init__(message)
        self.message = message
        self._reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})

    @property
    def error_reason(self) -> str:
        """ErrorInfo.reason: UPPER_SNAKE, stable, for programs to switch on."""
        return (self._reason or code_name(self.code)).upper()

    @property
    def retryable(self) -> bool:
        return False


class InvalidArgument(TrackerError):
    code = code_pb2.INVALID_ARGUMENT


# Event rejections whose HTTP answer is more precise than 400, with the code that agrees.
_EVENT_STATUS: Final = {
    "too_large": (413, code_pb2.RESOURCE_EXHAUSTED),
    "bad_content_type": (415, code_pb2.INVALID_ARGUMENT),
}


class InvalidEvent(InvalidArgument):
    """An event that can never apply: it is poison, not a transient failure.

    `reason` is a short stable keyword (lower_snake: metrics label, dead-letter column;
    its UPPER_SNAKE form is the ErrorInfo reason); the message says what is wrong in
    words a producer can act on.
    """

    def __init__(self, reason: str, message: str, *, event_id: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.reason = reason
        self.event_id = event_id
        status = _EVENT_STATUS.get(reason)
        if status is not None:
            self.http_status, self.code = status

    @property
    def event_id(self) -> str | None:
        return self.metadata.get("eventId")

    @event_id.setter
    def event_id(self, value: str | None) -> None:
        if value:
            self.metadata["eventId"] = clip(value, 256)
        else:
            self.metadata.pop("eventId", None)


class NotFound(TrackerError):
    code = code_pb2.NOT_FOUND


class AlreadyExists(TrackerError):
    code = code_pb2.ALREADY_EXISTS


class FailedPrecondition(TrackerError):
    code = code_pb2.FAILED_PRECONDITION


class Unauthenticated(TrackerError):
    code = code_pb2.UNAUTHENTICATED


class PermissionDenied(TrackerError):
    code = code_pb2.PERMISSION_DENIED


class ResourceExhausted(TrackerError):
    code = code_pb2.RESOURCE_EXHAUSTED


class Unimplemented(TrackerError):
    code = code_pb2.UNIMPLEMENTED


class MethodNotAllowed(Unimplemented):
    """HTTP only: the resource exists but not with this method (405, with Allow)."""

    http_status = 405

    def __init__(self, method: str, allowed: tuple[str, ...]) -> None:
        super().__init__(
            f"method {clip(method, 20)} is not allowed here; use {', '.join(allowed)}",
            reason="METHOD_NOT_ALLOWED",
        )
        self.allowed = allowed


class PayloadTooLarge(ResourceExhausted):
    """HTTP only: a request body over the route's limit (413)."""

    http_status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes", reason="TOO_LARGE")
        self.limit = limit


class ConfigError(TrackerError):
    """A bad setting: stops start-up with one line."""

    code = code_pb2.FAILED_PRECONDITION


class Unavailable(TrackerError):
    """Transient: the same request may succeed later. Retry, never drop."""

    code = code_pb2.UNAVAILABLE

    @property
    def retryable(self) -> bool:
        return True


class StoreUnavailable(Unavailable):
    """The store could not be reached or was busy."""


class TrackerUnavailable(Unavailable):
    """Client side: the tracker could not be reached (refused, reset, timed out) or
    answered UNAVAILABLE. Retrying the same event ids is safe."""


__all__ = [
    "ERROR_DOMAIN",
    "AlreadyExists",
    "ConfigError",
    "FailedPrecondition",
    "InvalidArgument",
    "InvalidEvent",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "ResourceExhausted",
    "StoreUnavailable",
    "TrackerError",
    "TrackerUnavailable",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "clip",
    "code_name",
    "echo",
]
