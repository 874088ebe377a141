"""Errors at the boundary: the one mapping from project errors to HTTP and gRPC answers.

Every answer that is not a success looks like a Google API error (AIP-193), over HTTP

    {"error": {"code": 404, "message": "operation 'operations/x' not found",
               "status": "NOT_FOUND",
               "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "NOT_FOUND", "domain": "tracker", "metadata": {}}]}}

and over gRPC as the status code and message, with the same `google.rpc.Status` (and its
`ErrorInfo`) in the `grpc-status-details-bin` trailer that Google's clients read.

The HTTP status follows from the code (google/rpc/code.proto), except for three
HTTP-only conditions, each paired with the code gRPC itself uses for the same thing:
405 UNIMPLEMENTED (no such method here), 413 RESOURCE_EXHAUSTED (message too large),
415 INVALID_ARGUMENT (content type not understood).

Anything that is not a `TrackerError` is a bug or an outage nobody named: it is logged
with its traceback and answered INTERNAL with a reference to find the log line, never
the traceback itself.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

import grpc
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2

from tracker.errors import ERROR_DOMAIN, MethodNotAllowed, TrackerError, code_name

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
# HTTP-only statuses and the code each answer carries (see the module docstring).
HTTP_ONLY: Final[dict[int, int]] = {
    405: code_pb2.UNIMPLEMENTED,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
}

# google.rpc.Code -> grpc.StatusCode (whose value is (int, name)).
GRPC_STATUS: Final[dict[int, grpc.StatusCode]] = {sc.value[0]: sc for sc in grpc.StatusCode}

INTERNAL_MESSAGE: Final = "internal error"
DETAILS_KEY: Final = "grpc-status-details-bin"
RETRY_AFTER_SECONDS: Final = 1


@dataclass(frozen=True)
class ApiError:
    """An error as the client sees it: code, message, ErrorInfo, and the HTTP extras."""

    code: int
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    http_status_override: int | None = None
    headers: dict[str, str] = field(default_factory=dict)

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

    def error_info(self) -> error_details_pb2.ErrorInfo:
        return error_details_pb2.ErrorInfo(
            reason=self.reason or self.status, domain=ERROR_DOMAIN, metadata=self.metadata
        )

    def rpc_status(self) -> status_pb2.Status:
        """The google.rpc.Status of this error, ErrorInfo in its details."""
        status = status_pb2.Status(code=self.code, message=self.message)
        status.details.add().Pack(self.error_info())
        return status

    def body(self) -> dict[str, Any]:
        """The Google-style JSON error body."""
        info = json_format.MessageToDict(self.error_info())
        info.setdefault("metadata", {})
        return {
            "error": {
                "code": self.http_status,
                "message": self.message,
                "status": self.status,
                "details": [{"@type": _ERROR_INFO_URL, **info}],
            }
        }

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return ((DETAILS_KEY, self.rpc_status().SerializeToString()),)


_ERROR_INFO_URL: Final = "type.googleapis.com/" + error_details_pb2.ErrorInfo.DESCRIPTOR.full_name


def from_exception(exc: BaseException) -> ApiError:
    """Map any exception to what the client sees; log the ones we did not expect."""
    if isinstance(exc, TrackerError):
        headers: dict[str, str] = {}
        if isinstance(exc, MethodNotAllowed):
            headers["Allow"] = ", ".join(exc.allowed)
        if exc.retryable:
            headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return ApiError(
            code=exc.code,
            message=exc.message,
            reason=exc.error_reason,
            metadata=dict(exc.metadata),
            http_status_override=exc.http_status,
            headers=headers,
        )
    ref = uuid.uuid4().hex[:12]
    log.error("unexpected error (ref %s)", ref, exc_info=exc)
    return ApiError(
        code_pb2.INTERNAL,
        f"{INTERNAL_MESSAGE} (ref {ref})",
        reason="INTERNAL",
        metadata={"ref": ref},
    )


def for_http_status(http_status: int, message: str) -> ApiError:
    """An error for a status the HTTP layer itself produced (404 unknown route, ...)."""
    code = HTTP_ONLY.get(http_status)
    if code is None:
        code = next((c for c, h in HTTP_STATUS.items() if h == http_status), code_pb2.UNKNOWN)
    return ApiError(code, message, http_status_override=http_status)


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: ApiError) -> NoReturn:
    """End a gRPC call with `error`, its google.rpc.Status in the details trailer."""
    await context.abort(error.grpc_code, error.message, trailing_metadata=error.trailing_metadata())
    raise AssertionError("unreachable: ServicerContext.abort raises")


__all__ = [
    "GRPC_STATUS",
    "HTTP_ONLY",
    "HTTP_STATUS",
    "ApiError",
    "abort",
    "code_name",
    "for_http_status",
    "from_exception",
]
