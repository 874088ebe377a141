"""The auth layer at the two servers: each route and RPC declares its permission here.

HTTP handlers call `require(request, permission)` first thing; the gRPC server runs
`GrpcGuard`, which looks the method's permission up in `RPC_PERMISSIONS`. Both ask the
one `tracker.auth.Guard` and answer failures through `tracker.api.status`, so a refusal
looks the same on both (401 UNAUTHENTICATED / 403 PERMISSION_DENIED with an ErrorInfo).
Health checks and reflection need no credentials: probes must work without them, and
reflection only describes the standard service.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import grpc
from google.longrunning import operations_pb2
from starlette.requests import Request

from tracker.api import status
from tracker.auth import CURRENT_SCOPE, Guard, Permission, Principal, Scope
from tracker.errors import PermissionDenied

_OPERATIONS: Final = operations_pb2.DESCRIPTOR.services_by_name["Operations"].full_name

_DL_READ: Final = ("ListDeadLetters", "GetDeadLetter")
_DL_WRITE: Final = (
    "DeleteDeadLetter",
    "ReplayDeadLetter",
    "ReplayDeadLetters",
    "PurgeDeadLetters",
    "ReplayMessages",
)
RPC_PERMISSIONS: Final[dict[str, Permission]] = {
    f"/{_OPERATIONS}/GetOperation": Permission.OPERATIONS_READ,
    f"/{_OPERATIONS}/ListOperations": Permission.OPERATIONS_READ,
    f"/{_OPERATIONS}/WaitOperation": Permission.OPERATIONS_READ,
    f"/{_OPERATIONS}/CancelOperation": Permission.OPERATIONS_WRITE,
    f"/{_OPERATIONS}/DeleteOperation": Permission.OPERATIONS_WRITE,
    # tracker.v1.Operations (tracker/api/grpc.py): creating is the producers' own act.
    "/tracker.v1.Operations/CreateOperation": Permission.EVENTS_PUBLISH,
    # tracker.v1.DeadLetters (tracker/api/dead_letters_grpc.py)
    **{f"/tracker.v1.DeadLetters/{m}": Permission.OPERATIONS_READ for m in _DL_READ},
    **{f"/tracker.v1.DeadLetters/{m}": Permission.OPERATIONS_WRITE for m in _DL_WRITE},
}
# Services anyone may call: probes and descriptions, nothing about operations.
OPEN_SERVICES: Final = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def guard_of(request: Request) -> Guard:
    guard: Guard = request.app.state.guard
    return guard


async def require(request: Request, permission: Permission) -> Principal:
    """The caller of `request` if it holds `permission`; raises 401/403 otherwise. Its
    scope is then the request's (`scope()`)."""
    guard = guard_of(request)
    principal = await guard.check(request.headers.get("authorization"), permission)
    CURRENT_SCOPE.set(guard.policy.scope_of(principal))
    return principal


def scope() -> Scope:
    """The operations the current request's or RPC's caller may touch."""
    return CURRENT_SCOPE.get()


def _metadata_value(details: grpc.HandlerCallDetails, key: str) -> str | None:
    for item in details.invocation_metadata or ():
        if item[0] == key:
            value = item[1]
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


class GrpcGuard(grpc.aio.ServerInterceptor):
    """Checks the `authorization` metadata of every RPC against its permission.

    An RPC of a service not named here (nor open) is refused: a new method must declare
    its permission before anyone can call it.
    """

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = details.method
        if method.startswith(OPEN_SERVICES):
            return await continuation(details)
        permission = RPC_PERMISSIONS.get(method)
        try:
            if permission is None:
                raise PermissionDenied(f"{method} declares no permission", reason="NO_PERMISSION")
            principal = await self.guard.check(
                _metadata_value(details, "authorization"), permission
            )
        except Exception as exc:
            return _refusal(status.from_exception(exc))
        handler = await continuation(details)
        caller = self.guard.policy.scope_of(principal)
        if handler is None or not caller.scoped:
            return handler
        return _in_scope(handler, caller)


def _in_scope(
    handler: grpc.RpcMethodHandler[Any, Any], caller: Scope
) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` (unary, like every guarded RPC) run with `caller` as the RPC's scope."""
    inner: Any = handler.unary_unary

    async def scoped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        CURRENT_SCOPE.set(caller)  # this RPC's own task: no other call sees it
        return await inner(request, context)

    return grpc.unary_unary_rpc_method_handler(
        scoped,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _refusal(error: status.ApiError) -> grpc.RpcMethodHandler[Any, Any]:
    """A unary handler that only aborts with `error` (every Operations RPC is unary)."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await status.abort(context, error)

    return grpc.unary_unary_rpc_method_handler(refuse)


__all__ = ["OPEN_SERVICES", "RPC_PERMISSIONS", "GrpcGuard", "require", "scope"]
