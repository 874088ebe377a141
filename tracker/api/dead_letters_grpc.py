"""The tracker.v1.DeadLetters gRPC service (schemas/proto/tracker/v1/admin.proto).

Handlers written by hand over the descriptor, as for Operations (tracker/api/grpc.py):
each takes the request's bytes, so one that does not parse is INVALID_ARGUMENT, and each
is a thin call into `DeadLetterService`, which the HTTP routes call too. Permissions:
tracker/api/guard.py `RPC_PERMISSIONS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import grpc
from google.protobuf import message_factory
from google.protobuf.message import Message

from tracker.api.grpc import Context, _answer, _parsing
from tracker.api.guard import scope
from tracker.dead_letters import DeadLetterService
from tracker.service import Tracker
from tracker.v1 import admin_pb2

SERVICE: Final = admin_pb2.DESCRIPTOR.services_by_name["DeadLetters"]
SERVICE_NAME: Final[str] = SERVICE.full_name


def _method(call: Callable[[Any], Awaitable[Message]]) -> Callable[[Any, Context], Any]:
    async def handler(request: Any, context: Context) -> Message:
        return await _answer(context, _unscoped(call, request))

    return handler


async def _unscoped(call: Callable[[Any], Awaitable[Message]], request: Any) -> Message:
    scope().unscoped_only("dead letters")  # they belong to no operation's scope
    return await call(request)


def handler(tracker: Tracker) -> grpc.GenericRpcHandler:
    service = DeadLetterService(tracker)
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in SERVICE.methods:
        response_type = message_factory.GetMessageClass(method.output_type)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _parsing(
                _method(getattr(service, method.name)),
                message_factory.GetMessageClass(method.input_type),
            ),
            request_deserializer=None,  # the handler gets the bytes
            response_serializer=response_type.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


__all__ = ["SERVICE_NAME", "handler"]
