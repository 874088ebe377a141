"""Waiters: coroutines wake the instant an operation changes in this process, and soon
after it changes in another one.

The hub belongs to one asyncio loop. `publish` may be called from any thread (the
store runs in worker threads); it hops onto the loop. Changes this process commits reach
the hub through the after-commit hook at once. Changes other processes commit (many
tracker instances on one database) reach it through `poll_store`: while anyone waits,
it reads the watched operations from the store every `interval` seconds, one batch read,
and delivers those whose served state differs from the last one the hub saw.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from google.longrunning import operations_pb2

from tracker.errors import StoreUnavailable

log = logging.getLogger(__name__)

# The most names one poll reads (a batch read each); more watched names take more reads.
POLL_BATCH = 1000


class ChangeHub:
    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        self._queues: dict[str, set[asyncio.Queue[operations_pb2.Operation]]] = defaultdict(set)
        # The serialized state last delivered (or read by a waiter) per watched name: a
        # polled state equal to it is no change.
        self._last: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._gate: asyncio.Event | None = None  # the poll's: set while anyone watches
        self.polled = 0  # operations the store poll found changed (metrics and tests)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, operation: operations_pb2.Operation) -> None:
        """Deliver a new state of an operation to everyone watching it."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._deliver(operation)
        else:
            loop.call_soon_threadsafe(self._deliver, operation)

    def _deliver(self, operation: operations_pb2.Operation, *, polled: bool = False) -> None:
        with self._lock:
            queues = list(self._queues.get(operation.name, ()))
            if not queues:
                return  # nobody watches: nothing to compare or serialize (every commit)
            data = operation.SerializeToString()
            if self._last.get(operation.name) == data:
                return  # seen already (the poll reading back what this process wrote)
            self._last[operation.name] = data
        if polled:
            self.polled += 1
        for queue in queues:
            if queue.full():  # a slow watcher only needs the latest state
                queue.get_nowait()
            queue.put_nowait(operation)

    def seen(self, operation: operations_pb2.Operation) -> None:
        """A waiter read this state itself: the poll delivers only what differs from it."""
        data = operation.SerializeToString()
        with self._lock:
            if operation.name in self._queues:
                self._last.setdefault(operation.name, data)

    def watched(self) -> list[str]:
        with self._lock:
            return list(self._queues)

    @asynccontextmanager
    async def subscribe(self, name: str) -> AsyncIterator[asyncio.Queue[operations_pb2.Operation]]:
        """Changes of `name` from now on; subscribe before reading the store to miss none."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        queue: asyncio.Queue[operations_pb2.Operation] = asyncio.Queue(maxsize=64)
        with self._lock:
            self._queues[name].add(queue)
        if self._gate is not None:
            self._gate.set()
        try:
            yield queue
        finally:
            with self._lock:
                self._queues[name].discard(queue)
                if not self._queues[name]:
                    del self._queues[name]
                    self._last.pop(name, None)
                if not self._queues and self._gate is not None:
                    self._gate.clear()

    def watching(self, name: str) -> int:
        with self._lock:
            return len(self._queues.get(name, ()))

    async def poll_store(
        self,
        read: Callable[[Sequence[str]], dict[str, operations_pb2.Operation]],
        interval: float,
    ) -> None:
        """Deliver changes other processes commit: while anyone watches, read the watched
        operations every `interval` seconds (`read`: `Store.get_operations`, run in a
        thread). Idle when nobody waits: no reads at all."""
        self._gate = gate = asyncio.Event()  # made on the loop that runs the poll
        while True:
            if not self.watched():
                gate.clear()
                await gate.wait()
            names = self.watched()
            try:
                for i in range(0, len(names), POLL_BATCH):
                    found = await asyncio.to_thread(read, names[i : i + POLL_BATCH])
                    for operation in found.values():
                        self._deliver(operation, polled=True)
            except StoreUnavailable as exc:
                log.warning("wake-up poll: store unavailable: %s", exc)
            await asyncio.sleep(interval)
