"""`GET /v1/operations:stream`: every changed operation matching a filter, as SSE.

The console's list page shows up to a page of operations live. One `:watch` stream per
row would hold fifty connections per open tab (browsers allow six per host over
HTTP/1.1); this route holds one, fed by a single after-commit hook (`ChangeFeed`) that
fans each commit's changed operations out to every connected client.

Each client has a bounded queue. A client that falls behind loses the oldest changes
and is told so with one `resync` event (it then lists again), so a slow browser costs
the server a fixed amount of memory and never blocks a commit.

    event: ready        the subscription is live: list now, and nothing after is missed
    event: operation    one changed operation, the JSON GetOperation returns
    event: resync       changes were dropped (slow reader): list again
    event: error        a failure after the stream started (the JSON error body); it ends

The stream ends when `timeout` (default and cap: --max-wait-seconds) passes; the client
reconnects and lists again on the next `ready`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC
from typing import Any, Final

from google.longrunning import operations_pb2
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tracker import filtering, wire
from tracker.api import status
from tracker.api.guard import require, scope
from tracker.api.http import ROUTE_METHODS, SSE_KEEPALIVE_SECONDS, parse_timeout, query
from tracker.api.web import guarded
from tracker.auth import Permission
from tracker.errors import MethodNotAllowed
from tracker.hooks import Committed
from tracker.service import Tracker

# Changes a client may have pending before the oldest are dropped and it must resync.
CLIENT_QUEUE: Final = 256


class Subscription:
    """One client's pending changes: a bounded deque, a wake-up, an overflow flag."""

    def __init__(self, limit: int) -> None:
        self.pending: collections.deque[operations_pb2.Operation] = collections.deque(maxlen=limit)
        self.overflowed = False
        self.wake = asyncio.Event()

    def put(self, operation: operations_pb2.Operation) -> None:
        if len(self.pending) == self.pending.maxlen:
            self.overflowed = True  # the deque drops the oldest on append
        self.pending.append(operation)
        self.wake.set()

    def take(self) -> tuple[list[operations_pb2.Operation], bool]:
        """What is pending, and whether some was lost since the last take."""
        items, lost = list(self.pending), self.overflowed
        self.pending.clear()
        self.overflowed = False
        self.wake.clear()
        return items, lost


class ChangeFeed:
    """Fans every commit's changed operations out to the connected streams.

    `hook` is an after-commit hook; it may run on any thread (it hops onto the loop the
    first subscriber runs on) and costs nothing while nobody is connected.
    """

    def __init__(self, limit: int = CLIENT_QUEUE) -> None:
        self.limit = limit
        self._clients: set[Subscription] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def hook(self, committed: Committed) -> None:
        loop = self._loop
        if not committed.changed or loop is None or loop.is_closed():
            return
        with self._lock:
            if not self._clients:
                return
        operations = list(committed.changed.values())
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._deliver(operations)
        else:
            loop.call_soon_threadsafe(self._deliver, operations)

    def _deliver(self, operations: list[operations_pb2.Operation]) -> None:
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            for operation in operations:
                client.put(operation)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        self._loop = asyncio.get_running_loop()
        client = Subscription(self.limit)
        with self._lock:
            self._clients.add(client)
        try:
            yield client
        finally:
            with self._lock:
                self._clients.discard(client)

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class OperationsStream:
    """The handler of `GET /v1/operations:stream`."""

    def __init__(self, tracker: Tracker, feed: ChangeFeed, keepalive_seconds: float) -> None:
        self.tracker = tracker
        self.feed = feed
        self.keepalive_seconds = keepalive_seconds

    async def handle(self, request: Request) -> Response:
        if request.method != "GET":
            raise MethodNotAllowed(request.method, ("GET",))
        await require(request, Permission.OPERATIONS_READ)
        params = query(request, {"filter": "filter", "timeout": "timeout"})
        filtering.parse(params.get("filter", ""))  # its errors in its own words
        text = scope().narrow(params.get("filter", ""))
        expr = filtering.parse(text)  # a bad filter is a 400 before the stream starts
        timeout = parse_timeout(params["timeout"]) if "timeout" in params else None
        # timeout=0s: only `ready`, then the end (a probe); otherwise capped like :watch.
        budget = 0.0 if timeout == 0 else self.tracker.wait_budget(timeout)
        return EventSourceResponse(
            self._events(expr, budget),
            ping=self.keepalive_seconds,
            sep="\n",
            ping_message_factory=lambda: ServerSentEvent(comment="keepalive", sep="\n"),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _events(
        self, expr: filtering.Expr | None, budget: float
    ) -> AsyncGenerator[ServerSentEvent, None]:
        deadline = time.monotonic() + budget
        try:
            async with self.feed.subscribe() as client:
                yield ServerSentEvent(data="{}", event="ready", sep="\n")
                while (remaining := deadline - time.monotonic()) > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(client.wake.wait(), remaining)
                    operations, lost = client.take()
                    if lost:
                        yield ServerSentEvent(
                            data=_compact({"reason": "the reader fell behind; list again"}),
                            event="resync",
                            sep="\n",
                        )
                    for operation in operations:
                        if await self._matches(expr, operation):
                            body = _compact(wire.operation_to_dict(operation))
                            yield ServerSentEvent(data=body, event="operation", sep="\n")
        except Exception as exc:  # the stream has started: report in-band
            body = _compact(status.from_exception(exc).body())
            yield ServerSentEvent(data=body, event="error", sep="\n")

    async def _matches(
        self, expr: filtering.Expr | None, operation: operations_pb2.Operation
    ) -> bool:
        """The filter on the served operation's metadata; a producer's own metadata type
        carries none of the filterable fields, so then the stored row is read."""
        if expr is None:
            return True
        meta = wire.metadata(operation)
        if meta is not None:
            row = filtering.Row(
                name=operation.name,
                done=operation.done,
                operation_type=meta.operation_type,
                parent=meta.parent,
                labels=dict(meta.labels),
                create_time=meta.create_time.ToDatetime(UTC),
                update_time=meta.update_time.ToDatetime(UTC),
            )
            return filtering.matches(expr, row)
        stored = await asyncio.to_thread(self.tracker.store.get, operation.name)
        return stored is not None and filtering.matches(expr, filtering.row_of(stored.state))


def routes(tracker: Tracker, keepalive_seconds: float = SSE_KEEPALIVE_SECONDS) -> list[BaseRoute]:
    """The stream route; registers its after-commit hook on `tracker`."""
    feed = ChangeFeed()
    tracker.add_hook(feed.hook)
    handler = OperationsStream(tracker, feed, keepalive_seconds)
    return [Route("/v1/operations:stream", guarded(handler.handle), methods=ROUTE_METHODS)]


__all__ = ["CLIENT_QUEUE", "ChangeFeed", "OperationsStream", "Subscription", "routes"]
