"""In-process waiters: coroutines wake the instant an operation changes. No polling.

The hub belongs to one asyncio loop. `publish` may be called from any thread (the
store runs in worker threads); it hops onto the loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from google.longrunning import operations_pb2


class ChangeHub:
    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        self._queues: dict[str, set[asyncio.Queue[operations_pb2.Operation]]] = defaultdict(set)
        self._lock = threading.Lock()

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

    def _deliver(self, operation: operations_pb2.Operation) -> None:
        with self._lock:
            queues = list(self._queues.get(operation.name, ()))
        for queue in queues:
            if queue.full():  # a slow watcher only needs the latest state
                queue.get_nowait()
            queue.put_nowait(operation)

    @asynccontextmanager
    async def subscribe(self, name: str) -> AsyncIterator[asyncio.Queue[operations_pb2.Operation]]:
        """Changes of `name` from now on; subscribe before reading the store to miss none."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        queue: asyncio.Queue[operations_pb2.Operation] = asyncio.Queue(maxsize=64)
        with self._lock:
            self._queues[name].add(queue)
        try:
            yield queue
        finally:
            with self._lock:
                self._queues[name].discard(queue)
                if not self._queues[name]:
                    del self._queues[name]

    def watching(self, name: str) -> int:
        with self._lock:
            return len(self._queues.get(name, ()))
