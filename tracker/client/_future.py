"""`OperationFuture`: one operation as a future, shaped like google.api_core's Operation.

    future = client.operation("operations/job-1", result_type=MyResponse)
    response = future.result(timeout=600)   # MyResponse, or raises the mapped error

Resolved by a `tracker.completions.Completions` (one completion-topic subscription shared
by every future of the process) when one is given, and by WaitOperation otherwise. The
error an unsuccessful operation raises is google.api_core's, mapped from its status the
way `google.api_core.operation.Operation.result` maps it (NOT_FOUND -> NotFound, a
cancelled operation -> Cancelled), so code written against Google's futures keeps working.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from google.longrunning import operations_proto_pb2 as operations_pb2
from google.protobuf import any_pb2, message
from google.rpc import code_pb2

from tracker.errors import NotFound

if TYPE_CHECKING:
    from tracker.client._sync import TrackerClient
    from tracker.completions import Completions

log = logging.getLogger(__name__)

M = TypeVar("M", bound=message.Message)


def unpack(value: any_pb2.Any, message_type: type[M] | None) -> Any:
    """`value` as `message_type` (ValueError when it holds another type); without a type,
    the Any itself."""
    if message_type is None:
        return value
    result = message_type()
    if not value.Unpack(result):
        raise ValueError(
            f"the operation holds {value.type_url or 'an empty Any'}, "
            f"not {message_type.DESCRIPTOR.full_name}"
        )
    return result


def error_of(operation: operations_pb2.Operation) -> Exception:
    """The google.api_core exception a done, unsuccessful operation stands for."""
    from google.api_core import exceptions as gexc

    if operation.HasField("error"):
        error: Exception = gexc.from_grpc_status(  # type: ignore[no-untyped-call]
            status_code=operation.error.code,
            message=operation.error.message,
            errors=(operation.error,),
            response=operation,
        )
        return error
    message = f"{operation.name} is done with neither a response nor an error"
    return gexc.GoogleAPICallError(message)  # type: ignore[no-untyped-call]


class _Typed(Generic[M]):
    """What both futures share: the operation's name, its types and how an outcome reads."""

    def __init__(
        self,
        name: str,
        completions: Completions | None,
        result_type: type[M] | None,
        metadata_type: type[message.Message] | None,
    ) -> None:
        self.name = name
        self._completions = completions
        self._result_type = result_type
        self._metadata_type = metadata_type
        self._operation = operations_pb2.Operation(name=name)
        self._unwatch: Callable[[], None] | None = None

    def _response(self, operation: operations_pb2.Operation) -> Any:
        if operation.HasField("response"):
            return unpack(operation.response, self._result_type)
        raise error_of(operation)

    def _error(self, operation: operations_pb2.Operation) -> Exception | None:
        return None if operation.HasField("response") else error_of(operation)

    def _metadata(self, operation: operations_pb2.Operation) -> Any:
        if not operation.HasField("metadata"):
            return None
        return unpack(operation.metadata, self._metadata_type)


class OperationFuture(_Typed[M]):
    """A future of one operation's outcome (see the module docstring).

    Args:
        client: the tracker to read, wait on and cancel the operation through.
        name: the operation's name.
        completions: resolve from this completion-topic router instead of WaitOperation.
        result_type: the response's message class (else `result()` returns the Any).
        metadata_type: the metadata's message class (else `metadata` is the Any).
    """

    def __init__(
        self,
        client: TrackerClient,
        name: str,
        *,
        completions: Completions | None = None,
        result_type: type[M] | None = None,
        metadata_type: type[message.Message] | None = None,
    ) -> None:
        super().__init__(name, completions, result_type, metadata_type)
        self._client = client
        self._lock = threading.Lock()
        self._resolved = threading.Event()
        self._callbacks: list[Callable[[OperationFuture[M]], None]] = []
        self._poller: threading.Thread | None = None
        if completions is not None:
            # Watch first, then read: a notification between the two is caught by the
            # watch, one from before it by the read.
            self._unwatch = completions.watch(name, self._update)
            if not self._resolved.is_set():
                self._refresh()

    # ---- state --------------------------------------------------------------------------

    @property
    def operation(self) -> operations_pb2.Operation:
        """The latest state seen (a copy)."""
        with self._lock:
            copy = operations_pb2.Operation()
            copy.CopyFrom(self._operation)
            return copy

    @property
    def metadata(self) -> Any:
        """The latest metadata, as `metadata_type` when given; None when there is none."""
        return self._metadata(self.operation)

    def done(self) -> bool:
        """True once the operation is done. Without a Completions this reads the operation
        (one GetOperation), as google.api_core's `done()` polls."""
        if not self._resolved.is_set() and self._completions is None:
            self._refresh()
        return self._resolved.is_set()

    def running(self) -> bool:
        return not self.done()

    def cancelled(self) -> bool:
        return self._resolved.is_set() and self.operation.error.code == code_pb2.CANCELLED

    # ---- outcome ------------------------------------------------------------------------

    def result(self, timeout: float | None = None) -> Any:
        """The response (as `result_type` when given) once done; raises the mapped
        google.api_core error of a failed or cancelled operation, and TimeoutError when
        `timeout` seconds pass first."""
        return self._response(self._wait(timeout))

    def exception(self, timeout: float | None = None) -> Exception | None:
        """The error `result()` would raise, or None for a success."""
        return self._error(self._wait(timeout))

    def add_done_callback(self, fn: Callable[[OperationFuture[M]], None]) -> None:
        """Call `fn(future)` once done: at once if it is, else on the thread that
        resolves it (a Completions' subscriber thread, or a WaitOperation thread started
        here). `fn` must not block for long."""
        with self._lock:
            if not self._resolved.is_set():
                self._callbacks.append(fn)
                start = self._completions is None and self._poller is None
                if start:
                    self._poller = threading.Thread(
                        target=self._poll, name=f"wait {self.name}", daemon=True
                    )
                    self._poller.start()
                return
        _run(fn, self)

    def cancel(self) -> bool:
        """CancelOperation; False when the operation is already done. The future resolves
        when the cancellation lands (then `result()` raises Cancelled)."""
        if self.done():
            return False
        self._client.cancel(self.name)
        self._refresh()
        return True

    # ---- resolution ---------------------------------------------------------------------

    def _wait(self, timeout: float | None) -> operations_pb2.Operation:
        if self._completions is not None:
            if not self._resolved.wait(timeout):
                raise TimeoutError(f"{self.name} is not done after {timeout} s")
            return self.operation
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._resolved.is_set():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"{self.name} is not done after {timeout} s")
            self._update(self._client.wait(self.name, remaining))
        return self.operation

    def _poll(self) -> None:
        while not self._resolved.is_set():
            try:
                self._update(self._client.wait(self.name, None))
            except NotFound:
                time.sleep(1.0)  # created by an event still on its way
            except Exception:
                log.exception("waiting on %s failed; retrying", self.name)
                time.sleep(1.0)

    def _refresh(self) -> None:
        # NotFound: not created yet; its notification (or a later read) resolves it.
        with contextlib.suppress(NotFound):
            self._update(self._client.get(self.name))

    def _update(self, operation: operations_pb2.Operation) -> None:
        with self._lock:
            if self._resolved.is_set():
                return
            self._operation = operation
            if not operation.done:
                return
            self._resolved.set()
            callbacks, self._callbacks = self._callbacks, []
            unwatch, self._unwatch = self._unwatch, None
        if unwatch is not None:
            unwatch()
        for fn in callbacks:
            _run(fn, self)


def _run(fn: Callable[[Any], None], future: Any) -> None:
    try:
        fn(future)
    except Exception:
        log.exception("a done-callback of %s failed", future.name)
