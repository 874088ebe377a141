"""`AsyncOperationFuture`: `OperationFuture` for asyncio, apart so that the synchronous
client (and `tracker get`) never imports asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from google.longrunning import operations_proto_pb2 as operations_pb2
from google.protobuf import message
from google.rpc import code_pb2

from tracker.client._future import M, _run, _Typed
from tracker.errors import NotFound

if TYPE_CHECKING:
    from tracker.client._async import AsyncTrackerClient
    from tracker.completions import Completions

log = logging.getLogger(__name__)


class AsyncOperationFuture(_Typed[M]):
    """`OperationFuture` for asyncio (made by `AsyncTrackerClient.operation` inside a
    running loop): `await result(timeout)`, `await exception()`, `await cancel()`;
    `done()`, `cancelled()`, `metadata`, `operation` and `add_done_callback(fn)` read
    what the future has seen, without a call (a Completions or a waiting `result()`
    brings news)."""

    def __init__(
        self,
        client: AsyncTrackerClient,
        name: str,
        *,
        completions: Completions | None = None,
        result_type: type[M] | None = None,
        metadata_type: type[message.Message] | None = None,
    ) -> None:
        super().__init__(name, completions, result_type, metadata_type)
        self._client = client
        self._loop = asyncio.get_running_loop()
        self._resolved = self._loop.create_future()
        self._callbacks: list[Callable[[AsyncOperationFuture[M]], None]] = []
        self._poller: asyncio.Task[None] | None = None
        self._read = False
        if completions is not None:
            self._unwatch = completions.watch(name, self._from_thread)

    @property
    def operation(self) -> operations_pb2.Operation:
        copy = operations_pb2.Operation()
        copy.CopyFrom(self._operation)
        return copy

    @property
    def metadata(self) -> Any:
        return self._metadata(self._operation)

    def done(self) -> bool:
        return self._resolved.done()

    def cancelled(self) -> bool:
        return self.done() and self._operation.error.code == code_pb2.CANCELLED

    async def result(self, timeout: float | None = None) -> Any:
        return self._response(await self._wait(timeout))

    async def exception(self, timeout: float | None = None) -> Exception | None:
        return self._error(await self._wait(timeout))

    def add_done_callback(self, fn: Callable[[AsyncOperationFuture[M]], None]) -> None:
        """Call `fn(future)` on the loop once done (soon, if it is)."""
        if self.done():
            self._loop.call_soon(_run, fn, self)
            return
        self._callbacks.append(fn)
        if self._completions is None and self._poller is None:
            self._poller = self._loop.create_task(self._poll())
        elif self._completions is not None and not self._read:
            self._loop.create_task(self._refresh())

    async def cancel(self) -> bool:
        if self.done():
            return False
        await self._refresh()
        if self.done():
            return False
        await self._client.cancel(self.name)
        await self._refresh()
        return True

    async def _wait(self, timeout: float | None) -> operations_pb2.Operation:
        if self._completions is not None:
            if not self._read:
                await self._refresh()
            try:
                return await asyncio.wait_for(asyncio.shield(self._resolved), timeout)
            except TimeoutError:
                raise TimeoutError(f"{self.name} is not done after {timeout} s") from None
        deadline = None if timeout is None else self._loop.time() + timeout
        while not self.done():
            remaining = None if deadline is None else deadline - self._loop.time()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"{self.name} is not done after {timeout} s")
            self._update(await self._client.wait(self.name, remaining))
        return self._resolved.result()

    async def _poll(self) -> None:
        while not self.done():
            try:
                self._update(await self._client.wait(self.name, None))
            except NotFound:
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("waiting on %s failed; retrying", self.name)
                await asyncio.sleep(1.0)

    async def _refresh(self) -> None:
        self._read = True
        with contextlib.suppress(NotFound):
            self._update(await self._client.get(self.name))

    def _from_thread(self, operation: operations_pb2.Operation) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
            self._loop.call_soon_threadsafe(self._update, operation)

    def _update(self, operation: operations_pb2.Operation) -> None:
        if self.done():
            return
        self._operation = operation
        if not operation.done:
            return
        self._resolved.set_result(operation)
        callbacks, self._callbacks = self._callbacks, []
        unwatch, self._unwatch = self._unwatch, None
        if unwatch is not None:
            unwatch()
        for fn in callbacks:
            _run(fn, self)
