"""The standard `google.longrunning.Operations` gRPC service over a `Tracker`.

Any client built for Google APIs (`google.api_core.operations_v1.OperationsClient`,
`google.api_core.operation.from_gapic`, grpcurl) works unchanged. The server also
offers the standard health service (`grpc.health.v1.Health`) and server reflection,
both `grpc.reflection.v1.ServerReflection` (what current grpcurl and grpc clients ask
first) and `grpc.reflection.v1alpha.ServerReflection` (older clients).

grpcio-reflection ships v1alpha only. The v1 protocol is the same messages under
another package name, so the same servicer serves both: its handlers are registered
under the v1 name too, and a v1 `reflection.proto` derived from v1alpha's descriptor
(`reflection_v1_file`) is put in the descriptor pool, so that reflection describes the
v1 service like every other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, cast

import grpc
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import descriptor_pb2, descriptor_pool, empty_pb2, message_factory
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from tracker import resource_names
from tracker.api import status
from tracker.api.guard import scope
from tracker.errors import InvalidArgument, clip
from tracker.events import PROTOBUF_CONTENT_TYPE, Kind, decode_data
from tracker.service import Tracker
from tracker.v1 import events_pb2
from tracker.v1 import operations_pb2 as operations_v1_pb2

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]

SERVICE_NAME: Final[str] = operations_pb2.DESCRIPTOR.services_by_name["Operations"].full_name
# google.longrunning's ListOperationsRequest has no order_by field: AIP-132's order_by
# comes as this request metadata (docs/api.md, "Ordering").
ORDER_BY_METADATA: Final = "x-tracker-order-by"
# WaitOperation returns this long before the caller's gRPC deadline, so that the
# answer (the latest state) reaches it instead of DEADLINE_EXCEEDED.
DEADLINE_MARGIN_MIN: Final = 0.1
DEADLINE_MARGIN_MAX: Final = 1.0


def deadline_margin(remaining: float) -> float:
    """Time kept back from a gRPC deadline: a fifth of it, within [100 ms, 1 s]."""
    return min(DEADLINE_MARGIN_MAX, max(DEADLINE_MARGIN_MIN, remaining * 0.2))


async def _answer(context: Context, work: Awaitable[T]) -> T:
    """Await `work`; turn any exception into a gRPC status via `tracker.api.status`."""
    try:
        return await work
    except Exception as exc:
        error = status.from_exception(exc)
    await status.abort(context, error)


def _in_scope(name: str) -> str:
    """`name`, required, and in the caller's scope."""
    if not name:
        raise InvalidArgument("name is required")
    scope().check(name)
    return name


class OperationsServicer(operations_pb2_grpc.OperationsServicer):  # type: ignore[misc]
    """google.longrunning.Operations, each method a thin call into the `Tracker`."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    async def GetOperation(
        self, request: operations_pb2.GetOperationRequest, context: Context
    ) -> operations_pb2.Operation:
        return await _answer(context, self._get(request.name))

    async def _get(self, name: str) -> operations_pb2.Operation:
        return await self.tracker.get(_in_scope(name))

    async def ListOperations(
        self, request: operations_pb2.ListOperationsRequest, context: Context
    ) -> operations_pb2.ListOperationsResponse:
        order_by = dict(context.invocation_metadata() or ()).get(ORDER_BY_METADATA, "")
        return await _answer(context, self._list(request, str(order_by)))

    async def _list(
        self, request: operations_pb2.ListOperationsRequest, order_by: str = ""
    ) -> operations_pb2.ListOperationsResponse:
        page = await self.tracker.list(
            scope().narrow(request.filter),
            request.page_size,
            request.page_token,
            order_by,
            parent=resource_names.parse_parent(request.name),
        )
        return operations_pb2.ListOperationsResponse(
            operations=page.operations, next_page_token=page.next_page_token
        )

    async def DeleteOperation(
        self, request: operations_pb2.DeleteOperationRequest, context: Context
    ) -> empty_pb2.Empty:
        await _answer(context, self._delete(request.name))
        return empty_pb2.Empty()

    async def _delete(self, name: str) -> None:
        await self.tracker.delete(_in_scope(name))

    async def CancelOperation(
        self, request: operations_pb2.CancelOperationRequest, context: Context
    ) -> empty_pb2.Empty:
        await _answer(context, self._cancel(request.name))
        return empty_pb2.Empty()

    async def _cancel(self, name: str) -> None:
        await self.tracker.cancel(_in_scope(name))

    async def WaitOperation(
        self, request: operations_pb2.WaitOperationRequest, context: Context
    ) -> operations_pb2.Operation:
        remaining: float | None = context.time_remaining()
        return await _answer(context, self._wait(request, remaining))

    async def _wait(
        self, request: operations_pb2.WaitOperationRequest, remaining: float | None
    ) -> operations_pb2.Operation:
        """Wait up to the shorter of request.timeout (else the server's max) and the deadline.

        Timing out is not an error: the answer is the latest state, done or not.
        """
        name = _in_scope(request.name)
        budget: float | None = None  # None: the tracker's max_wait_seconds
        if request.HasField("timeout"):
            budget = request.timeout.seconds + request.timeout.nanos / 1e9
            if budget < 0:
                raise InvalidArgument("timeout must not be negative")
        if remaining is not None:
            cap = remaining - deadline_margin(remaining)
            budget = cap if budget is None else min(budget, cap)
        if budget is not None and budget <= 0:
            return await self.tracker.get(name)
        return await self.tracker.wait(name, budget)


class CreateServicer:
    """tracker.v1.Operations: CreateOperation, the one method google.longrunning lacks."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    async def CreateOperation(
        self, request: operations_v1_pb2.CreateOperationRequest, context: Context
    ) -> operations_pb2.Operation:
        return await _answer(context, self._create(request))

    async def _create(
        self, request: operations_v1_pb2.CreateOperationRequest
    ) -> operations_pb2.Operation:
        # Checked exactly as a `created` event's protobuf data is.
        data = cast(
            events_pb2.Created,
            decode_data(Kind.CREATED, PROTOBUF_CONTENT_TYPE, request.operation.SerializeToString()),
        )
        return await self.tracker.create(
            data,
            parent=request.parent,
            operation_id=request.operation_id,
            request_id=request.request_id,
            allowed=scope().check,
        )


CREATE_SERVICE: Final = operations_v1_pb2.DESCRIPTOR.services_by_name["Operations"]
CREATE_SERVICE_NAME: Final[str] = CREATE_SERVICE.full_name


def create_handler(tracker: Tracker) -> grpc.GenericRpcHandler:
    """tracker.v1.Operations with the request parsed by the handler (INVALID_ARGUMENT)."""
    servicer = CreateServicer(tracker)
    method = CREATE_SERVICE.methods_by_name["CreateOperation"]
    handler: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(
        _parsing(servicer.CreateOperation, operations_v1_pb2.CreateOperationRequest),
        request_deserializer=None,
        response_serializer=message_factory.GetMessageClass(method.output_type).SerializeToString,
    )
    return grpc.method_handlers_generic_handler(CREATE_SERVICE_NAME, {method.name: handler})


def _parsing(method: Callable[[Any, Context], Awaitable[Any]], request_type: Any) -> Any:
    """A handler taking the request's bytes: a request that does not parse is the caller's
    error (INVALID_ARGUMENT, with a message), not the UNKNOWN grpc answers for a failed
    deserializer."""

    async def handler(raw: bytes, context: Context) -> Any:
        try:
            request = request_type.FromString(raw)
        except DecodeError as exc:
            error = InvalidArgument(
                f"request is not a valid {request_type.DESCRIPTOR.full_name}: {clip(exc)}"
            )
            await status.abort(context, status.from_exception(error))
        return await method(request, context)

    return handler


def operations_handler(servicer: OperationsServicer) -> grpc.GenericRpcHandler:
    """google.longrunning.Operations with requests parsed by the handlers themselves."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in operations_pb2.DESCRIPTOR.services_by_name["Operations"].methods:
        response_type = message_factory.GetMessageClass(method.output_type)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _parsing(
                getattr(servicer, method.name),
                message_factory.GetMessageClass(method.input_type),
            ),
            request_deserializer=None,  # the handler gets the bytes
            response_serializer=response_type.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


REFLECTION_V1_PACKAGE: Final = "grpc.reflection.v1"
REFLECTION_V1_FILE: Final = "grpc/reflection/v1/reflection.proto"
REFLECTION_V1: Final = f"{REFLECTION_V1_PACKAGE}.ServerReflection"


def reflection_v1_file(pool: descriptor_pool.DescriptorPool | None = None) -> None:
    """Put grpc/reflection/v1/reflection.proto in `pool` (the default one) unless it is
    there: v1alpha's file with the package renamed in it and its references (the two
    are wire-identical), without v1alpha's options (it is deprecated, v1 is not)."""
    pool = pool or descriptor_pool.Default()
    try:
        pool.FindFileByName(REFLECTION_V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto.FromString(reflection_pb2.DESCRIPTOR.serialized_pb)
    old = f".{proto.package}."
    new = f".{REFLECTION_V1_PACKAGE}."

    def rename(type_name: str) -> str:
        return new + type_name[len(old) :] if type_name.startswith(old) else type_name

    def messages(items: Any) -> None:
        for message in items:
            for item in message.field:
                if item.HasField("type_name"):  # a message or an enum (scalars have none)
                    item.type_name = rename(item.type_name)
            messages(message.nested_type)

    proto.name = REFLECTION_V1_FILE
    proto.package = REFLECTION_V1_PACKAGE
    proto.ClearField("options")
    messages(proto.message_type)
    for service in proto.service:
        for method in service.method:
            method.input_type = rename(method.input_type)
            method.output_type = rename(method.output_type)
    pool.AddSerializedFile(proto.SerializeToString())


def reflection_v1_handler(servicer: reflection.aio.ReflectionServicer) -> grpc.GenericRpcHandler:
    """The v1alpha servicer under the v1 service name (same bytes on the wire)."""
    info = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": info})


async def add_to_server(server: grpc.aio.Server, tracker: Tracker) -> health_aio.HealthServicer:
    """Register Operations, health (SERVING) and reflection on an asyncio gRPC server.

    Returns the health servicer, so that shutdown can report NOT_SERVING first.
    """
    from tracker.api import dead_letters_grpc

    server.add_generic_rpc_handlers((operations_handler(OperationsServicer(tracker)),))
    server.add_generic_rpc_handlers((dead_letters_grpc.handler(tracker),))
    server.add_generic_rpc_handlers((create_handler(tracker),))
    health = health_aio.HealthServicer()
    for service in ("", SERVICE_NAME):
        await health.set(service, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection_v1_file()
    servicer = reflection.aio.ReflectionServicer(
        [
            SERVICE_NAME,
            CREATE_SERVICE_NAME,
            dead_letters_grpc.SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            REFLECTION_V1,
            reflection.SERVICE_NAME,
        ]
    )
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    server.add_generic_rpc_handlers((reflection_v1_handler(servicer),))
    return health


__all__ = [
    "CREATE_SERVICE_NAME",
    "REFLECTION_V1",
    "SERVICE_NAME",
    "OperationsServicer",
    "add_to_server",
    "reflection_v1_file",
    "reflection_v1_handler",
]
