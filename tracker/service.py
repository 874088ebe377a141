"""The tracker's core service: what every route and API calls, over one store.

It runs store calls in worker threads, and does the after-commit side effects
(wake waiters, kick the outbox dispatcher, count) as hooks, outside the code that
decides state.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from google.longrunning import operations_pb2

from tracker import filtering
from tracker.errors import InvalidArgument, InvalidEvent, NotFound, StoreUnavailable, echo
from tracker.events import DEFAULT_RULES, MAX_NAME_BYTES, Event, EventRules, parse_pubsub
from tracker.metrics import METRICS, Metrics
from tracker.notify.outbox import Dispatcher, Sink
from tracker.notify.waiters import ChangeHub, WaiterSink
from tracker.stores.base import BatchResult, DeadLetter, ListQuery, Store, Stored

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# A token holds one name (at most MAX_NAME_BYTES) and a hash, in JSON and base64.
MAX_TOKEN_CHARS = 8 * MAX_NAME_BYTES


@dataclass(frozen=True)
class Page:
    operations: list[operations_pb2.Operation]
    next_page_token: str


class Tracker:
    """Ingest events, serve operations, wait on them."""

    def __init__(
        self,
        store: Store,
        *,
        rules: EventRules = DEFAULT_RULES,
        sinks: Sequence[Sink] = (),
        max_wait_seconds: float = 300.0,
        metrics: Metrics = METRICS,
    ) -> None:
        self.store = store
        self.rules = rules
        self.hub = ChangeHub()
        self.dispatcher = Dispatcher(store, [WaiterSink(self.hub), *sinks])
        self.max_wait_seconds = max_wait_seconds
        self.metrics = metrics

    # ---- ingest ------------------------------------------------------------------------

    async def ingest(self, events: Sequence[Event], *, route: str) -> BatchResult:
        """Apply events in one transaction, then wake waiters and the dispatcher."""
        # An InvalidEvent raised here (strict mode) rolled everything back; the route
        # that called decides how to answer and counts it.
        result = await asyncio.to_thread(self.store.apply, events)
        for r in result.results:
            self.metrics.events.labels(route=route, outcome=r.outcome.value).inc()
        self.after_commit(result.changed.values(), any(r.became_done for r in result.results))
        return result

    def after_commit(self, changed: object, done: bool) -> None:
        for operation in changed:  # type: ignore[attr-defined]
            self.hub.publish(operation)
        if done:
            self.dispatcher.kick()

    def rejected(self, route: str, exc: InvalidEvent) -> None:
        self.metrics.rejected.labels(route=route, reason=exc.reason).inc()
        log.warning(
            "rejected event %s on %s: %s: %s", exc.event_id or "-", route, exc.reason, exc.message
        )

    async def dead_letter(
        self,
        *,
        route: str,
        exc: InvalidEvent,
        attributes: Mapping[str, str],
        body: bytes,
        message_id: str = "",
    ) -> DeadLetter:
        """Record poison for an operator to see and replay."""
        self.rejected(route, exc)
        letter = DeadLetter(
            id=uuid.uuid4().hex,
            received_at=datetime.now(UTC),
            route=route,
            reason=exc.reason,
            detail=exc.message,
            attributes=dict(attributes),
            body=body,
            message_id=message_id,
        )
        await asyncio.to_thread(self.store.add_dead_letter, letter)
        return letter

    async def replay_dead_letter(self, letter_id: str) -> BatchResult:
        """Parse and apply a dead letter again (after a fix); removes it when it applies."""
        letters = await asyncio.to_thread(self.store.dead_letters, 100000)
        letter = next((d for d in letters if d.id == letter_id), None)
        if letter is None:
            raise NotFound(f"dead letter {echo(letter_id)} not found")
        event = parse_pubsub(letter.attributes, letter.body, self.rules)
        result = await self.ingest([event], route="replay")
        await asyncio.to_thread(self.store.remove_dead_letter, letter_id)
        return result

    # ---- reads -------------------------------------------------------------------------

    async def get_stored(self, name: str) -> Stored:
        stored = await asyncio.to_thread(self.store.get, check_name(name))
        if stored is None:
            raise NotFound(f"operation {echo(name)} not found")
        return stored

    async def get(self, name: str) -> operations_pb2.Operation:
        return (await self.get_stored(name)).operation

    async def list(self, filter_text: str = "", page_size: int = 0, page_token: str = "") -> Page:
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        expr = filtering.parse(filter_text)
        after = _decode_token(page_token, filter_text) if page_token else ""
        rows = await asyncio.to_thread(
            self.store.list_operations, ListQuery(filter=expr, page_size=size, after=after)
        )
        more = len(rows) > size
        rows = rows[:size]
        token = _encode_token(rows[-1].state.name, filter_text) if more else ""
        return Page([r.operation for r in rows], token)

    async def delete(self, name: str) -> None:
        if not await asyncio.to_thread(self.store.delete, check_name(name)):
            raise NotFound(f"operation {echo(name)} not found")

    async def cancel(self, name: str) -> operations_pb2.Operation:
        stored, became_done = await asyncio.to_thread(self.store.cancel, check_name(name))
        self.after_commit([stored.operation], became_done)
        return stored.operation

    # ---- waiting -----------------------------------------------------------------------

    def wait_budget(self, timeout: float | None) -> float:
        if timeout is None or timeout <= 0:
            return self.max_wait_seconds
        return min(timeout, self.max_wait_seconds)

    async def wait(self, name: str, timeout: float | None = None) -> operations_pb2.Operation:
        """Return once done, or the latest state when the timeout passes (WaitOperation)."""
        deadline = time.monotonic() + self.wait_budget(timeout)
        async with self.hub.subscribe(name) as changes:
            operation = await self.get(name)
            while not operation.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    operation = await asyncio.wait_for(changes.get(), remaining)
                except TimeoutError:
                    operation = await self.get(name)
                    break
        return operation

    async def watch(
        self, name: str, timeout: float | None = None
    ) -> AsyncIterator[operations_pb2.Operation]:
        """The current state, then every change, until done or the timeout."""
        deadline = time.monotonic() + self.wait_budget(timeout)
        async with self.hub.subscribe(name) as changes:
            operation = await self.get(name)
            yield operation
            while not operation.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    operation = await asyncio.wait_for(changes.get(), remaining)
                except TimeoutError:
                    return
                yield operation

    # ---- deadlines and retention ---------------------------------------------------------

    async def sweep(self) -> builtins.list[operations_pb2.Operation]:
        """Expire operations past their deadline or heartbeat timeout; apply retention."""
        expired = await asyncio.to_thread(self.store.expire_due)
        operations = [e.operation for e in expired]
        if operations:
            log.info("expired %d operations (DEADLINE_EXCEEDED)", len(operations))
            self.after_commit(operations, True)
        await asyncio.to_thread(self.store.purge_expired)
        return operations

    async def sweep_forever(self, every: float) -> None:
        """A timer, not a poll for waiters: deadlines pass without any event to wake on."""
        while True:
            try:
                await self.sweep()
            except StoreUnavailable as exc:
                log.warning("sweep: store unavailable: %s", exc)
            await asyncio.sleep(every)

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> asyncio.Task[None]:
        self.hub.bind(asyncio.get_running_loop())
        return asyncio.create_task(self.dispatcher.run(), name="outbox-dispatcher")

    async def stop(self, task: asyncio.Task[None] | None) -> None:
        self.dispatcher.stop()
        if task is not None:
            await task


def _filter_hash(filter_text: str) -> str:
    return hashlib.sha256(filter_text.encode()).hexdigest()[:16]


def _encode_token(after: str, filter_text: str) -> str:
    raw = json.dumps({"a": after, "f": _filter_hash(filter_text)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, filter_text: str) -> str:
    not_ours = InvalidArgument("page_token is not a token this server issued")
    if len(token) > MAX_TOKEN_CHARS:
        raise not_ours
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        after, fhash = data["a"], data["f"]
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError):
        raise not_ours from None
    # What the token holds goes into a store query: only a name this server could issue.
    if not isinstance(after, str) or not isinstance(fhash, str) or not _storable(after):
        raise not_ours
    if fhash != _filter_hash(filter_text):
        raise InvalidArgument("page_token was issued for a different filter")
    return after


def _storable(name: str) -> bool:
    try:
        return len(name.encode("utf-8")) <= MAX_NAME_BYTES
    except UnicodeEncodeError:
        return False


def check_name(name: str) -> str:
    """A name on a read or a cancel: one longer than any stored name (or not Unicode) is
    refused before it reaches the store, the same way on every backend."""
    if not _storable(name):
        raise InvalidArgument(
            f"operation name {echo(name)} is longer than {MAX_NAME_BYTES} bytes"
            " or not valid Unicode; no operation has such a name"
        )
    return name
