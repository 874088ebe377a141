"""Group commit: concurrent ingest calls share one store transaction.

A transaction's fixed cost (begin, commit, the pages a commit writes; a Spanner round
trip) dwarfs what one event adds to it, so applying each request alone caps throughput
at one commit per event. Here a request queues its events; one drain task per event loop
takes everything queued (up to `max_events`), applies it in one transaction in a worker
thread, and resolves each request with its own slice of the result. Nothing waits on
purpose: while a transaction runs, the next requests queue, so an idle tracker commits at
once and a busy one commits in groups. The latency a request gains is bounded by the one
transaction ahead of it.

What stays as it was:
- Order: requests apply in the order they were queued, events in each in their order; a
  duplicate across two requests of one group is a duplicate, as it would be one after
  the other.
- All or nothing per request: when a group fails for a reason one request can cause (an
  `InvalidEvent`, or an unexpected error), every request of it is applied again on its
  own, so one request's poison never fails another's events. `StoreUnavailable` (the
  store is down or locked) fails the whole group: each caller retries.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from tracker.errors import StoreUnavailable
from tracker.events import Event
from tracker.stores.base import BatchResult

# Events one group transaction takes at most; a request larger than this runs alone.
MAX_GROUP_EVENTS: Final = 1000

# Events a group applies on the event loop itself at most, when the store can (see
# `Store.apply_now`); a larger one goes to a worker thread, where its hop is amortized.
MAX_INLINE_EVENTS: Final = 64

Apply = Callable[[Sequence[Event]], BatchResult]
ApplyNow = Callable[[Sequence[Event]], "BatchResult | None"]
# Told of every transaction: its events, the result or the error, start and end (ns since
# the epoch). `tracker.tracing.record_commit` makes its spans from it.
Observe = Callable[[Sequence[Event], "BatchResult | None", "BaseException | None", int, int], None]


@dataclass
class _Request:
    events: Sequence[Event]
    future: asyncio.Future[BatchResult]


@dataclass
class GroupStats:
    """Counters for operators and benchmarks: how much grouping happens."""

    transactions: int = 0
    requests: int = 0
    events: int = 0
    splits: int = 0  # groups re-applied one request at a time after a failure
    inline: int = 0  # transactions applied on the event loop (no thread hop)
    largest: int = field(default=0)  # most requests in one transaction


class GroupCommit:
    """Queues ingest requests and applies them in shared transactions (see module)."""

    def __init__(
        self,
        apply: Apply,
        *,
        apply_now: ApplyNow | None = None,
        max_events: int = MAX_GROUP_EVENTS,
        max_inline_events: int = MAX_INLINE_EVENTS,
        observe: Observe | None = None,
    ) -> None:
        self._apply = apply
        self._observe = observe
        self._apply_now = apply_now
        self.max_events = max_events
        self.max_inline_events = max_inline_events
        self._queue: deque[_Request] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stats = GroupStats()

    async def submit(self, events: Sequence[Event]) -> BatchResult:
        """Apply `events` atomically, possibly in one transaction with other requests."""
        loop = asyncio.get_running_loop()
        busy = self._drainer is not None and not self._drainer.done()
        if busy and self._loop is not loop:
            # Another event loop (another thread) is draining: no sharing across loops.
            return await asyncio.to_thread(self._apply_one, events)
        request = _Request(events, loop.create_future())
        self._queue.append(request)
        if not busy:
            self._loop = loop
            self._drainer = loop.create_task(self._drain())
        return await request.future

    def _apply_one(self, events: Sequence[Event]) -> BatchResult:
        self._count([events])
        return self._observed(self._apply, events)  # another loop's call: no inline write

    def _observed(self, apply: Apply, events: Sequence[Event]) -> BatchResult:
        if self._observe is None:
            return apply(events)
        start = time.time_ns()
        try:
            result = apply(events)
        except BaseException as exc:
            self._observe(events, None, exc, start, time.time_ns())
            raise
        self._observe(events, result, None, start, time.time_ns())
        return result

    def _count(self, group: Sequence[Sequence[Event]]) -> None:
        self.stats.transactions += 1
        self.stats.requests += len(group)
        self.stats.events += sum(len(e) for e in group)
        self.stats.largest = max(self.stats.largest, len(group))

    def _take(self) -> list[_Request]:
        group: list[_Request] = []
        size = 0
        while self._queue:
            head = self._queue[0]
            if group and size + len(head.events) > self.max_events:
                break
            group.append(self._queue.popleft())
            size += len(head.events)
        return group

    async def _drain(self) -> None:
        while self._queue:
            # One turn of the loop first: requests whose bodies arrived with this one
            # are queued by their tasks' first steps, which run after this task's.
            await asyncio.sleep(0)
            group = [r for r in self._take() if not r.future.done()]
            if group:
                await self._run(group)

    async def _run(self, group: list[_Request]) -> None:
        if len(group) == 1:
            await self._alone(group[0])
            return
        events = [e for r in group for e in r.events]
        self._count([r.events for r in group])
        try:
            result = await self._applied(events)
        except StoreUnavailable as exc:
            for request in group:
                _fail(request, exc)
            return
        except Exception:
            self.stats.splits += 1
            for request in group:
                await self._alone(request)
            return
        for request, part in zip(group, split(result, [r.events for r in group]), strict=True):
            if not request.future.done():
                request.future.set_result(part)

    async def _applied(self, events: Sequence[Event]) -> BatchResult:
        """On the loop when the store can apply at once (a thread hop costs more than a
        small local write), else in a worker thread."""
        if self._apply_now is not None and len(events) <= self.max_inline_events:
            start = time.time_ns()
            try:
                result = self._apply_now(events)
            except BaseException as exc:
                if self._observe is not None:
                    self._observe(events, None, exc, start, time.time_ns())
                raise
            if result is not None:
                self.stats.inline += 1
                if self._observe is not None:
                    self._observe(events, result, None, start, time.time_ns())
                return result
        return await asyncio.to_thread(self._observed, self._apply, events)

    async def _alone(self, request: _Request) -> None:
        self._count([request.events])
        try:
            result = await self._applied(request.events)
        except Exception as exc:
            _fail(request, exc)
            return
        if not request.future.done():
            request.future.set_result(result)


def _fail(request: _Request, exc: BaseException) -> None:
    if not request.future.done():
        request.future.set_exception(exc)


def split(result: BatchResult, parts: Sequence[Sequence[Event]]) -> list[BatchResult]:
    """One group's result as each request's: its events' results in order; the changed
    operations its events name (what else changed, such as parents, goes to the first
    request, so every change is reported at least once); outbox rows to the first."""
    out: list[BatchResult] = []
    start = 0
    left = dict(result.changed)
    for i, events in enumerate(parts):
        results = result.results[start : start + len(events)]
        start += len(events)
        names = {e.operation for e in events}
        changed = {n: op for n, op in result.changed.items() if n in names}
        for name in changed:
            left.pop(name, None)
        out.append(BatchResult(list(results), changed, result.notices if i == 0 else 0))
    if left and out:
        out[0].changed.update(left)
    return out


__all__ = ["MAX_GROUP_EVENTS", "GroupCommit", "GroupStats", "split"]
