"""The outbox dispatcher: delivers done-notifications written in the apply transaction.

A row is marked sent only after every sink took it, so a crash between commit and
delivery means a redelivery after restart (with the same notification id, for
consumers to de-duplicate), never a lost notification.

The outbox never starves: each item has its own next-attempt time. A pass delivers the
items that are due (earliest first, a batch at a time, the items of a batch at once); an
item whose delivery fails is rescheduled alone with exponential backoff and full jitter
(`RetryPolicy`), and the others of the same pass are delivered. After
`RetryPolicy.max_attempts` failed attempts the item is given up: it becomes a failed
notification (`Store.failed_notifications`, counted as
`tracker_notifications_total{result="gave_up"}` and logged with its last error), is no
longer retried, and an operator can requeue it (`Store.requeue_failed`). A sink that
raises `Permanent` (a webhook target the policy forbids) gives the item up at once:
retrying could not help.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from tracker.errors import StoreUnavailable, clip
from tracker.metrics import METRICS, Metrics
from tracker.notices import DONE, Subscription, Wanted
from tracker.stores.base import OutboxItem, Store

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 1000  # of a sink's error kept on the row and logged
_MIN_DELAY = timedelta(milliseconds=1)  # a retry is never due in the pass that failed it


class Permanent(Exception):
    """A delivery that can never succeed as it is: the item is given up at once."""


class Sink(Protocol):
    """Where outbox rows go. A row for the topics (no target) goes to every sink whose
    `kinds` hold its notice's kind; a row with a target (a webhook URL) goes to the sinks
    with `targets` set. A row no sink takes is marked sent."""

    name: str
    kinds: frozenset[int]
    targets: bool

    async def deliver(self, item: OutboxItem) -> None:
        """Deliver or raise; raising reschedules the item for a retry (`Permanent`: gives
        it up at once)."""


def takes(sink: Sink, item: OutboxItem) -> bool:
    notice = item.notice
    if notice.target:
        return sink.targets
    return (notice.kind or DONE) in sink.kinds


def wanted_by(sinks: Sequence[Sink]) -> Wanted:
    """The rows worth writing for these sinks (`tracker.notices.Wanted`). A sink that
    takes targets may also name server-level `subscriptions` (the webhook sink does)."""
    kinds: set[int] = set()
    subscriptions: list[Subscription] = []
    for sink in sinks:
        kinds |= sink.kinds
        if sink.targets:
            subscriptions += getattr(sink, "subscriptions", ())
    return Wanted(
        frozenset(kinds),
        webhooks=any(s.targets for s in sinks),
        subscriptions=tuple(subscriptions),
    )


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed notification is tried again, and when the dispatcher gives up.

    Full jitter: after the n-th failed attempt the next one waits a uniformly random time
    in [0, min(max_seconds, initial_seconds * 2**(n-1))], so that items which failed
    together (an outage of the topic) come back spread out, not in lock step.
    """

    initial_seconds: float = 0.5
    max_seconds: float = 300.0
    max_attempts: int = 12

    def __post_init__(self) -> None:
        if self.initial_seconds <= 0 or self.max_seconds < self.initial_seconds:
            raise ValueError("retry delays: need 0 < initial_seconds <= max_seconds")
        if self.max_attempts < 1:
            raise ValueError("max_attempts: must be at least 1")

    def cap(self, attempts: int) -> float:
        """The longest wait after `attempts` failed attempts."""
        return min(self.max_seconds, self.initial_seconds * 2.0 ** min(attempts - 1, 64))

    def delay(self, attempts: int, rng: random.Random) -> float:
        return rng.uniform(0.0, self.cap(attempts))


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Dispatcher:
    """Runs beside the server. `kick()` after a commit that wrote outbox rows.

    `clock` and `rng` are injectable so that tests decide what time it is and which
    jitter is drawn, instead of waiting.
    """

    def __init__(
        self,
        store: Store,
        sinks: list[Sink],
        *,
        sweep_seconds: float = 5.0,
        batch: int = 100,
        max_backoff: float = 30.0,
        retry: RetryPolicy | None = None,
        attempt_timeout: float = 60.0,
        metrics: Metrics = METRICS,
        clock: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.sinks = sinks
        self.sweep_seconds = sweep_seconds
        self.batch = batch
        self.max_backoff = max_backoff  # while the store is unavailable
        self.retry = retry or RetryPolicy()
        self.attempt_timeout = attempt_timeout
        self.metrics = metrics
        self.clock = clock
        self.rng = rng or random.Random()
        # Times a pass is due: retries this process scheduled, rows written due later.
        self._retries: list[datetime] = []  # a heap
        self._passed = datetime.min.replace(tzinfo=UTC)  # the time the last pass ran for
        self._wake = asyncio.Event()
        self._stopping = False
        self._draining = asyncio.Lock()  # one delivery pass at a time: no double sends

    def kick(self) -> None:
        self._wake.set()

    async def drain(self) -> int:
        """Deliver every item due now; returns how many were delivered."""
        async with self._draining:
            return await self._drain()

    async def _drain(self) -> int:
        now = self._passed = self.clock()
        delivered = 0
        tried: set[str] = set()  # each item at most once per pass
        while True:
            found = await asyncio.to_thread(self.store.outbox_pending, self.batch, now)
            items = [i for i in found if i.id not in tried]
            if not items:
                await self._note_next_due(now)
                return delivered
            tried.update(i.id for i in items)
            # At once: a slow or hanging item costs the pass one timeout, not one each.
            errors = await asyncio.gather(*(self._deliver(i) for i in items))
            sent = [i.id for i, failure in zip(items, errors, strict=True) if failure is None]
            if sent:
                await asyncio.to_thread(self.store.outbox_mark_sent, sent, self.clock())
                self.metrics.notifications.labels(result="sent").inc(len(sent))
                delivered += len(sent)
            for item, failure in zip(items, errors, strict=True):
                if failure is not None:
                    await self._failed(item, *failure, now)

    async def _note_next_due(self, now: datetime) -> None:
        """Wake for the earliest row not due yet: a retry's resume notice is written due
        when its backoff ends, and must go out then, not at the next sweep."""
        first = await asyncio.to_thread(self.store.outbox_pending, 1)
        due = first[0].next_attempt_at if first else None
        if due is not None and due > now and due not in self._retries:
            heapq.heappush(self._retries, due)

    async def _deliver(self, item: OutboxItem) -> tuple[str, bool] | None:
        """None when every sink took the item, else what went wrong (bounded) and whether
        it is permanent."""
        sink_name = "-"
        try:
            async with asyncio.timeout(self.attempt_timeout):
                for sink in self.sinks:
                    if takes(sink, item):
                        sink_name = sink.name
                        await sink.deliver(item)
        except Exception as exc:  # a sink failure must not stop the others
            error = clip(f"{sink_name}: {type(exc).__name__}: {exc}", MAX_ERROR_CHARS)
            return error, isinstance(exc, Permanent)
        return None

    async def _failed(self, item: OutboxItem, error: str, permanent: bool, now: datetime) -> None:
        attempts = item.attempts + 1
        name = item.operation.name
        self.metrics.notifications.labels(result="failed").inc()
        if permanent or attempts >= self.retry.max_attempts:
            await asyncio.to_thread(self.store.outbox_give_up, item.id, self.clock(), error)
            self.metrics.notifications.labels(result="gave_up").inc()
            log.error(
                "notification %s for %s: gave up after %d attempts%s; last error: %s",
                item.id,
                clip(name),
                attempts,
                " (permanent)" if permanent else "",
                error,
            )
            return
        delay = self.retry.delay(attempts, self.rng)
        retry_at = max(self.clock() + timedelta(seconds=delay), now + _MIN_DELAY)
        await asyncio.to_thread(self.store.outbox_reschedule, item.id, retry_at, error)
        heapq.heappush(self._retries, retry_at)
        log.warning(
            "notification %s for %s failed (attempt %d of %d), next attempt in %.1f s: %s",
            item.id,
            clip(name),
            attempts,
            self.retry.max_attempts,
            delay,
            error,
        )

    def _next_wait(self) -> float:
        """Seconds until the earliest retry this process scheduled, at most a sweep.

        Only retries the last pass covered are forgotten: one due a moment after it ran
        (a timer that fired early) still needs a pass."""
        while self._retries and self._retries[0] <= self._passed:
            heapq.heappop(self._retries)
        if not self._retries:
            return self.sweep_seconds
        wait = (self._retries[0] - self.clock()).total_seconds()
        return min(self.sweep_seconds, max(wait, 0.0))

    async def run(self) -> None:
        """Deliver on every kick, when a retry is due, and on a sweep now and then (rows
        of other processes, and rows left by a crash)."""
        backoff = 0.5
        while not self._stopping:
            self._wake.clear()  # before the pass: a kick during it is not lost
            try:
                await self.drain()
                backoff = 0.5
                timeout = self._next_wait()
            except StoreUnavailable as exc:
                log.warning("outbox: store unavailable, retrying: %s", exc)
                timeout = backoff
                backoff = min(backoff * 2, self.max_backoff)
            except Exception:  # never let one bad pass stop notifications for good
                log.exception("outbox: delivery pass failed, retrying")
                timeout = backoff
                backoff = min(backoff * 2, self.max_backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
