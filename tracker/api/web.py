"""What every HTTP route shares: bounded body reads, the JSON error answer, a guard.

Each route raises the project's errors; `guarded` turns any exception into the one
Google-style error body (`tracker.api.status`), so no route writes its own.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tracker.api import status
from tracker.errors import InvalidArgument, PayloadTooLarge, clip

M = TypeVar("M", bound=Message)

Handler = Callable[[Request], Awaitable[Response]]


def header_dict(request: Request) -> dict[str, str]:
    """The request's headers by (lower-case) name, the first value of a repeated one: what
    `dict(request.headers)` gives, in one pass (that looks each name up again, a scan of
    every header per name).

    ASGI servers hand header names lower-cased; Starlette decodes both as latin-1."""
    out: dict[str, str] = {}
    for key, value in request.headers.raw:
        out.setdefault(key.decode("latin-1"), value.decode("latin-1"))
    return out


def error_response(error: status.ApiError | BaseException) -> JSONResponse:
    """The JSON error answer for an ApiError or any exception."""
    if not isinstance(error, status.ApiError):
        error = status.from_exception(error)
    return JSONResponse(error.body(), status_code=error.http_status, headers=error.headers)


async def read_body(
    request: Request,
    limit: int,
    too_large: Callable[[int], BaseException] = PayloadTooLarge,
) -> bytes:
    """The request body, refusing to buffer more than `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def guarded(handler: Handler) -> Handler:
    """Every failure becomes a JSON error body; unexpected ones are INTERNAL (and logged)."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:
            return error_response(exc)

    return endpoint


__all__ = ["error_response", "guarded", "read_body"]


async def read_message(request: Request, message: M, limit: int) -> M:
    """A JSON request body (may be empty) merged into `message` in the proto3 JSON
    mapping; unknown fields, bad JSON and nesting too deep are INVALID_ARGUMENT."""
    body = await read_body(request, limit)
    if body.strip():
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgument("request body is not valid JSON") from None
        except RecursionError:
            raise InvalidArgument("request body is nested too deeply") from None
        if not isinstance(data, dict):
            raise InvalidArgument("request body must be a JSON object")
        try:
            json_format.ParseDict(data, message)
        except (json_format.ParseError, TypeError, ValueError, RecursionError) as exc:
            raise InvalidArgument(f"request body: {clip(exc, 300)}") from None
    return message
