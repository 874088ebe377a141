"""Errors at the API boundary: one mapping from project errors to gRPC and HTTP.

Every project error carries a google.rpc.Code (`tracker.errors.TrackerError.code`).
This module turns that code into a `grpc.StatusCode` and into an HTTP status with
the JSON error body Google APIs use (AIP-193):

    {"error": {"code": 404, "message": "operation 'operations/x' not found",
               "status": "NOT_FOUND"}}

Anything that is not a `TrackerError` is a bug or an outage we did not name: it is
logged with its traceback and answered with INTERNAL and a generic message that
carries a reference to find the log line, never the traceback itself.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any, Final

import grpc
from google.rpc import code_pb2

from tracker.errors import TrackerError

log = logging.getLogger(__name__)

# google.rpc.Code -> HTTP status, as documented in google/rpc/code.proto.
HTTP_STATUS: Final[dict[int, int]] = {
    code_pb2.OK: 200,
    code_pb2.CANCELLED: 499,
    code_pb2.UNKNOWN: 500,
    code_pb2.INVALID_ARGUMENT: 400,
    code_pb2.DEADLINE_EXCEEDED: 504,
    code_pb2.NOT_FOUND: 404,
    code_pb2.ALREADY_EXISTS: 409,
    code_pb2.PERMISSION_DENIED: 403,
    code_pb2.UNAUTHENTICATED: 401,
    code_pb2.RESOURCE_EXHAUSTED: 429,
    code_pb2.FAILED_PRECONDITION: 400,
    code_pb2.ABORTED: 409,
    code_pb2.OUT_OF_RANGE: 400,
    code_pb2.UNIMPLEMENTED: 501,
    code_pb2.INTERNAL: 500,
    code_pb2.UNAVAILABLE: 503,
    code_pb2.DATA_LOSS: 500,
}

# google.rpc.Code -> grpc.StatusCode (whose value is (int, name)).
GRPC_STATUS: Final[dict[int, grpc.StatusCode]] = {sc.value[0]: sc for sc in grpc.StatusCode}

INTERNAL_MESSAGE: Final = "internal error"


def code_name(code: int) -> str:
    """The google.rpc.Code name of `code` ("NOT_FOUND"); UNKNOWN for a foreign value."""
    try:
        return str(code_pb2.Code.Name(code))
    except ValueError:
        return "UNKNOWN"


@dataclass(frozen=True)
class ApiError:
    """An error as the client sees it: a google.rpc.Code and a message.

    `http_status` overrides the status derived from the code, for the few HTTP-only
    conditions (405 Method Not Allowed) that have no google.rpc.Code of their own.
    """

    code: int
    message: str
    http_status_override: int | None = None

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return GRPC_STATUS.get(self.code, grpc.StatusCode.UNKNOWN)

    @property
    def http_status(self) -> int:
        if self.http_status_override is not None:
            return self.http_status_override
        return HTTP_STATUS.get(self.code, 500)

    @property
    def status(self) -> str:
        return code_name(self.code)

    def body(self) -> dict[str, Any]:
        """The Google-style JSON error body."""
        return {"error": {"code": self.http_status, "message": self.message, "status": self.status}}


def from_exception(exc: BaseException) -> ApiError:
    """Map any exception to what the client sees; log the ones we did not expect."""
    if isinstance(exc, TrackerError):
        return ApiError(exc.code, exc.message)
    ref = uuid.uuid4().hex[:12]
    log.error("unexpected error (ref %s)", ref, exc_info=exc)
    return ApiError(code_pb2.INTERNAL, f"{INTERNAL_MESSAGE} (ref {ref})")


__all__ = ["GRPC_STATUS", "HTTP_STATUS", "ApiError", "code_name", "from_exception"]
