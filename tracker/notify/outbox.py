"""The outbox dispatcher: delivers done-notifications written in the apply transaction.

A row is marked sent only after every sink took it, so a crash between commit and
delivery means a redelivery after restart (with the same notification id, for
consumers to de-duplicate), never a lost notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Protocol

from google.longrunning import operations_pb2

from tracker.errors import StoreUnavailable
from tracker.metrics import METRICS
from tracker.stores.base import Store

log = logging.getLogger(__name__)


class Sink(Protocol):
    name: str

    async def deliver(self, item_id: str, operation: operations_pb2.Operation) -> None:
        """Deliver or raise; raising leaves the item pending for a retry."""


class Dispatcher:
    """Runs beside the server. `kick()` after a commit that wrote outbox rows."""

    def __init__(
        self,
        store: Store,
        sinks: list[Sink],
        *,
        sweep_seconds: float = 5.0,
        batch: int = 100,
        max_backoff: float = 30.0,
    ) -> None:
        self.store = store
        self.sinks = sinks
        self.sweep_seconds = sweep_seconds
        self.batch = batch
        self.max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._stopping = False
        self._draining = asyncio.Lock()  # one delivery pass at a time: no double sends

    def kick(self) -> None:
        self._wake.set()

    async def drain(self) -> int:
        """Deliver everything pending now; returns how many were delivered."""
        async with self._draining:
            return await self._drain()

    async def _drain(self) -> int:
        delivered = 0
        while True:
            items = await asyncio.to_thread(self.store.outbox_pending, self.batch)
            if not items:
                return delivered
            sent = []
            failed = False
            for item in items:
                try:
                    for sink in self.sinks:
                        await sink.deliver(item.id, item.operation)
                except Exception as exc:  # a sink failure must not stop the others
                    failed = True
                    METRICS.notifications.labels(result="failed").inc()
                    log.warning(
                        "notification %s for %s failed: %s", item.id, item.operation.name, exc
                    )
                    await asyncio.to_thread(self.store.outbox_failed, item.id)
                    continue
                sent.append(item.id)
            if sent:
                await asyncio.to_thread(self.store.outbox_mark_sent, sent, datetime.now(UTC))
                METRICS.notifications.labels(result="sent").inc(len(sent))
                delivered += len(sent)
            if failed:
                return delivered

    async def run(self) -> None:
        """Deliver on every kick, and sweep now and then for rows of other processes."""
        backoff = 0.5
        while not self._stopping:
            try:
                await self.drain()
                backoff = 0.5
                timeout = self.sweep_seconds
            except StoreUnavailable as exc:
                log.warning("outbox: store unavailable, retrying: %s", exc)
                timeout = backoff
                backoff = min(backoff * 2, self.max_backoff)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
