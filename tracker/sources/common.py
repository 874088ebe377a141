"""What the HTTP ingest routes share: bounded body reads and JSON answers."""

from __future__ import annotations

from typing import Any

from google.rpc import code_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse

from tracker.errors import InvalidEvent

# Event rejections that deserve a more precise HTTP status than 400.
_REASON_STATUS = {"too_large": 413, "bad_content_type": 415}


class BodyTooLarge(InvalidEvent):
    def __init__(self, limit: int) -> None:
        super().__init__("too_large", f"request body exceeds the limit of {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing to buffer more than `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def error_response(status: int, code: int, message: str, **extra: Any) -> JSONResponse:
    """Google-style error body: {"error": {"code", "message", "status"}}."""
    body: dict[str, Any] = {
        "error": {"code": status, "message": message, "status": code_pb2.Code.Name(code)}
    }
    body["error"].update(extra)
    return JSONResponse(body, status_code=status)


def invalid_event_response(exc: InvalidEvent) -> JSONResponse:
    extra: dict[str, Any] = {"reason": exc.reason}
    if exc.event_id:
        extra["eventId"] = exc.event_id
    return error_response(
        _REASON_STATUS.get(exc.reason, 400), code_pb2.INVALID_ARGUMENT, exc.message, **extra
    )
