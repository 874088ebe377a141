"""How a run of `tracker.worker` ends: the code an exception fails its operation with
(`code_for`, `WorkerError`), and how it learns that the operation ended elsewhere.

Three ways, from the cheapest: the tracker's answer to each event over HTTP (`late`, or
`state` / `cancelRequested`); a heartbeat over Pub/Sub that reads the operation back; and
an end listener (`EndListener`), which hears of the end while the work runs and tells
the run at once, so that its next `progress` / `heartbeat` / `checkpoint` raises without
any call having to ask. `WatchEnds` is the listener built on the tracker's own `:watch`
stream (Server-Sent Events over HTTP); a listener on another channel (a Pub/Sub topic of
cancel notices, a webhook receiver) implements the same protocol and calls the same
`on_end`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from google.longrunning import operations_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2

from tracker.errors import NotFound, clip, code_name

if TYPE_CHECKING:
    from tracker.client import TrackerClient

log = logging.getLogger(__name__)


class WorkerError(Exception):
    """Raise to fail the operation with a specific google.rpc code."""

    def __init__(self, code: int, message: str, details: Iterable[Message] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details)


_CODES: list[tuple[type[BaseException], int]] = [
    (TimeoutError, code_pb2.DEADLINE_EXCEEDED),
    (PermissionError, code_pb2.PERMISSION_DENIED),
    (FileNotFoundError, code_pb2.NOT_FOUND),
    (LookupError, code_pb2.NOT_FOUND),
    (FileExistsError, code_pb2.ALREADY_EXISTS),
    (ValueError, code_pb2.INVALID_ARGUMENT),
    (TypeError, code_pb2.INVALID_ARGUMENT),
    (NotImplementedError, code_pb2.UNIMPLEMENTED),
    (ConnectionError, code_pb2.UNAVAILABLE),
    (MemoryError, code_pb2.RESOURCE_EXHAUSTED),
]


def code_for(exc: BaseException) -> int:
    """The google.rpc code an exception fails an operation with (UNKNOWN if unmapped).

    WorkerError carries its own; google.api_core errors carry their gRPC status; an
    exception with an integer `grpc_code` attribute in 1..16 uses it.
    """
    if isinstance(exc, WorkerError):
        return exc.code
    grpc_code = getattr(exc, "grpc_code", None)
    if isinstance(grpc_code, int) and 1 <= grpc_code <= 16:
        return grpc_code
    status = getattr(exc, "grpc_status_code", None)  # google.api_core.exceptions
    if status is not None and hasattr(status, "value"):
        value = status.value[0] if isinstance(status.value, tuple) else status.value
        if isinstance(value, int) and 1 <= value <= 16:
            return value
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return int(code)
    return int(code_pb2.UNKNOWN)


class OperationEnded(Exception):
    """The operation ended while its work still ran; raised by `progress`, `heartbeat`
    and `checkpoint` so the work stops instead of reporting into a finished operation.

    Raised out of a `with worker.operation(...)` block (or a `track`ed function), it
    propagates to the caller and the run publishes nothing further: the operation's
    result is the one it already has.

    Attributes:
        operation: the operation's name.
        final: the operation as the tracker held it when the end was noticed; None when
            it could not be read back (no tracker URL, tracker unreachable, deleted), or
            when a notice said so without the operation.
        cancelled: whether it ended as CANCELLED (then the exception is `Cancelled`).
    """

    # What a run around this one fails with if the exception escapes its block too.
    grpc_code = code_pb2.ABORTED

    def __init__(self, operation: str, final: operations_pb2.Operation | None = None) -> None:
        self.operation = operation
        self.final = final
        super().__init__(_ended_message(operation, final, isinstance(self, Cancelled)))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.operation, self.final))  # survives a process pool

    @property
    def cancelled(self) -> bool:
        return isinstance(self, Cancelled)


class Cancelled(OperationEnded):
    """The operation was cancelled (CancelOperation, a cancelled parent, or a `cancelled`
    event) while the work ran: stop, clean up, and let the exception leave the block."""

    grpc_code = code_pb2.CANCELLED


def _ended_message(name: str, final: operations_pb2.Operation | None, cancelled: bool) -> str:
    if final is None or not final.done:
        return f"{name} was cancelled" if cancelled else f"{name} has already ended"
    if final.HasField("error"):
        if final.error.code == code_pb2.CANCELLED:
            return f"{name} was cancelled: {clip(final.error.message)}"
        return (
            f"{name} has already ended: failed with {code_name(final.error.code)}:"
            f" {clip(final.error.message)}"
        )
    return f"{name} has already ended: succeeded"


def end_of(
    name: str, final: operations_pb2.Operation | None, *, cancelled: bool = False
) -> OperationEnded:
    """`Cancelled` when `final` is done with code CANCELLED, or not done but with a
    cancel request (or, with no operation to tell, when `cancelled`), else
    `OperationEnded`. (A cancel requested after the end does not make it a cancel.)"""
    if final is not None:
        from tracker.wire import metadata

        meta = metadata(final)
        if final.done:
            cancelled = final.error.code == code_pb2.CANCELLED
        else:
            cancelled = meta is not None and meta.cancel_requested
    return Cancelled(name, final) if cancelled else OperationEnded(name, final)


def has_ended(operation: operations_pb2.Operation) -> bool:
    """Whether the work on `operation` should stop: done, or a cancel was requested."""
    from tracker.wire import metadata

    meta = metadata(operation)
    return operation.done or bool(meta is not None and meta.cancel_requested)


OnEnd = Callable[[OperationEnded], None]


class EndListener(Protocol):
    """Hears of an operation's end while its work runs, and says so through `on_end`.

    `listen` starts listening for `name` (in a thread of its own, say) and returns the
    function that stops it; the run calls that when its block ends. `on_end` may be
    called from any thread, more than once; the first call counts.
    """

    def listen(self, name: str, on_end: OnEnd) -> Callable[[], None]: ...


class WatchEnds:
    """An `EndListener` on the tracker's `:watch` stream: a daemon thread per run holds
    one Server-Sent Events stream open and calls `on_end` as soon as the operation is
    done or has a cancel request. The tracker pushes each change; nothing polls.

    The stream ends by itself once the operation is done, which is also how the thread
    ends after the run's own terminal event. An operation not there yet (its `created`
    still on its way over Pub/Sub) or a tracker out of reach is tried again after
    `retry_after` seconds, doubling up to 30.

    Args:
        client: the tracker to watch (shared: httpx clients are thread-safe).
        retry_after: the first wait before reopening a failed stream.
    """

    def __init__(self, client: TrackerClient, *, retry_after: float = 0.05) -> None:
        self.client = client
        self.retry_after = retry_after

    def listen(self, name: str, on_end: OnEnd) -> Callable[[], None]:
        stop = threading.Event()
        thread = threading.Thread(
            target=self._watch, args=(name, on_end, stop), name=f"watch {name}", daemon=True
        )
        thread.start()
        return stop.set

    def _watch(self, name: str, on_end: OnEnd, stop: threading.Event) -> None:
        wait = self.retry_after
        while not stop.is_set():
            try:
                for operation in self.client.watch(name):
                    if has_ended(operation):
                        if not stop.is_set():
                            on_end(end_of(name, operation))
                        return
                    if stop.is_set():
                        return
                    wait = self.retry_after
                return  # only a timeout ends a watch early, and this one has none
            except NotFound:
                pass  # not created yet
            except Exception as exc:  # a closed worker, an unreachable tracker
                if stop.is_set():
                    return
                log.warning("watching %s failed, trying again in %gs: %s", name, wait, exc)
            stop.wait(wait)
            wait = min(wait * 2, 30.0)


__all__ = [
    "Cancelled",
    "EndListener",
    "OnEnd",
    "OperationEnded",
    "WatchEnds",
    "WorkerError",
    "code_for",
    "end_of",
]
