"""The dead-letter API over HTTP/JSON (Google API style; docs/dead-letters.md).

    GET    /v1/deadLetters                  ListDeadLetters (filter, pageSize, pageToken)
    GET    /v1/deadLetters/{id}             GetDeadLetter (one key read)
    DELETE /v1/deadLetters/{id}             DeleteDeadLetter                  -> {}
    POST   /v1/deadLetters/{id}:replay      ReplayDeadLetter
    POST   /v1/deadLetters:replay           ReplayDeadLetters {filter, dryRun, limit, pageToken}
    POST   /v1/deadLetters:purge            PurgeDeadLetters {filter, dryRun}
    POST   /v1/deadLetters:replayMessages   ReplayMessages {messages, dryRun}

Bodies and answers are the proto3 JSON mapping (lowerCamelCase) of the tracker.v1
messages in schemas/proto/tracker/v1/admin.proto, every field present; `body` is base64.
Reads need operations.read, the rest operations.write (tracker.api.guard).
"""

from __future__ import annotations

from typing import Final, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tracker.api.guard import require, scope
from tracker.api.http import MAX_BODY_BYTES, ROUTE_METHODS, parse_page_size, query
from tracker.api.web import guarded, read_message
from tracker.auth import Permission
from tracker.dead_letters import PREFIX, DeadLetterService
from tracker.errors import InvalidArgument, MethodNotAllowed
from tracker.service import Tracker
from tracker.v1 import admin_pb2

M = TypeVar("M", bound=Message)
COLLECTION: Final = "/v1/deadLetters"


def to_json(message: Message) -> JSONResponse:
    return JSONResponse(
        json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    )


async def parse(request: Request, message: M, limit: int = MAX_BODY_BYTES) -> M:
    """A JSON body (may be empty) into `message`; unknown fields are an error."""
    return await read_message(request, message, limit)


def _method(request: Request, allowed: tuple[str, ...]) -> str:
    method = "GET" if request.method == "HEAD" else request.method
    if method not in allowed:
        raise MethodNotAllowed(request.method, allowed)
    return method


class DeadLettersHttp:
    def __init__(self, tracker: Tracker) -> None:
        self.api = DeadLetterService(tracker)
        # ReplayMessages carries whole messages, base64 in JSON: room for a full batch.
        self.messages_limit = tracker.rules.max_batch_bytes * 2

    async def collection(self, request: Request) -> Response:
        _method(request, ("GET",))
        await require(request, Permission.OPERATIONS_READ)
        scope().unscoped_only("dead letters")
        params = query(
            request,
            {
                "filter": "filter",
                "pageSize": "page_size",
                "page_size": "page_size",
                "pageToken": "page_token",
                "page_token": "page_token",
            },
        )
        page = await self.api.ListDeadLetters(
            admin_pb2.ListDeadLettersRequest(
                filter=params.get("filter", ""),
                page_size=min(parse_page_size(params.get("page_size")), 2**31 - 1),
                page_token=params.get("page_token", ""),
            )
        )
        return to_json(page)

    async def replay_all(self, request: Request) -> Response:
        _method(request, ("POST",))
        await require(request, Permission.OPERATIONS_WRITE)
        scope().unscoped_only("dead letters")
        query(request, {})
        body = await parse(request, admin_pb2.ReplayDeadLettersRequest())
        return to_json(await self.api.ReplayDeadLetters(body))

    async def purge(self, request: Request) -> Response:
        _method(request, ("POST",))
        await require(request, Permission.OPERATIONS_WRITE)
        scope().unscoped_only("dead letters")
        query(request, {})
        body = await parse(request, admin_pb2.PurgeDeadLettersRequest())
        return to_json(await self.api.PurgeDeadLetters(body))

    async def replay_messages(self, request: Request) -> Response:
        _method(request, ("POST",))
        await require(request, Permission.OPERATIONS_WRITE)
        scope().unscoped_only("dead letters")
        query(request, {})
        body = await parse(request, admin_pb2.ReplayMessagesRequest(), self.messages_limit)
        return to_json(await self.api.ReplayMessages(body))

    async def resource(self, request: Request) -> Response:
        rest = str(request.path_params["rest"])
        raw = request.scope.get("raw_path")
        raw_path = raw.decode("latin-1") if isinstance(raw, bytes) else ""
        if rest.endswith(":replay") and raw_path.endswith(":replay"):
            _method(request, ("POST",))
            await require(request, Permission.OPERATIONS_WRITE)
            scope().unscoped_only("dead letters")
            query(request, {})
            name = PREFIX + rest[: -len(":replay")]
            body = await parse(request, admin_pb2.ReplayDeadLetterRequest())
            if body.name and body.name != name:
                raise InvalidArgument("name in the body differs from the URL")
            return to_json(
                await self.api.ReplayDeadLetter(admin_pb2.ReplayDeadLetterRequest(name=name))
            )
        method = _method(request, ("GET", "DELETE"))
        name = PREFIX + rest
        if method == "DELETE":
            await require(request, Permission.OPERATIONS_WRITE)
            scope().unscoped_only("dead letters")
            query(request, {})
            return to_json(
                await self.api.DeleteDeadLetter(admin_pb2.DeleteDeadLetterRequest(name=name))
            )
        await require(request, Permission.OPERATIONS_READ)
        scope().unscoped_only("dead letters")
        query(request, {})
        return to_json(await self.api.GetDeadLetter(admin_pb2.GetDeadLetterRequest(name=name)))


def routes(tracker: Tracker) -> list[BaseRoute]:
    api = DeadLettersHttp(tracker)
    return [
        Route(COLLECTION, guarded(api.collection), methods=ROUTE_METHODS),
        Route(f"{COLLECTION}:replay", guarded(api.replay_all), methods=ROUTE_METHODS),
        Route(f"{COLLECTION}:purge", guarded(api.purge), methods=ROUTE_METHODS),
        Route(f"{COLLECTION}:replayMessages", guarded(api.replay_messages), methods=ROUTE_METHODS),
        Route(COLLECTION + "/{rest:path}", guarded(api.resource), methods=ROUTE_METHODS),
    ]


__all__ = ["DeadLettersHttp", "routes"]
