"""The tracker's core service: what every route and API calls, over one store.

It runs store calls in worker threads, and does the after-commit side effects
(wake waiters, kick the outbox dispatcher, count) as hooks, outside the code that
decides state.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from google.longrunning import operations_pb2

from tracker import filtering, listing, resource_names, tracing
from tracker.apply import Outcome
from tracker.bindings import parse_pubsub
from tracker.commit import GroupCommit
from tracker.constants import DEFAULT_MAX_WAIT_SECONDS
from tracker.errors import (
    AlreadyExists,
    InvalidArgument,
    InvalidEvent,
    NotFound,
    StoreUnavailable,
    echo,
)
from tracker.events import (
    DEFAULT_RULES,
    MAX_ID_CHARS,
    MAX_NAME_BYTES,
    Event,
    EventRules,
    Kind,
    check_rules,
    check_text,
)
from tracker.hooks import AfterCommit, Committed, run_hooks
from tracker.metrics import Metrics
from tracker.notices import Notice, ReasonValue
from tracker.notify.cascade import PAGE as CASCADE_PAGE
from tracker.notify.cascade import ChildrenCascade
from tracker.notify.outbox import Dispatcher, RetryPolicy, Sink, wanted_by
from tracker.notify.waiters import ChangeHub
from tracker.stores.base import ApplyResult, BatchResult, DeadLetter, ListQuery, Store
from tracker.v1 import events_pb2

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Page:
    operations: list[operations_pb2.Operation]
    next_page_token: str


class Tracker:
    """Ingest events, serve operations, wait on them.

    After every commit the registered hooks run (`tracker.hooks`): counting (metrics),
    waking in-process waiters, and kicking the outbox dispatcher. The outbox itself is
    written only when a durable sink (the completion topic, later webhooks) is configured:
    in-process waiters are woken by their hook, not by a row written and read back.
    """

    def __init__(
        self,
        store: Store,
        *,
        rules: EventRules = DEFAULT_RULES,
        sinks: Sequence[Sink] = (),
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
        metrics: Metrics | None = None,
        retry: RetryPolicy | None = None,
        wake_poll_seconds: float = 0.0,
    ) -> None:
        self.store = store
        store.is_operation = rules.is_name
        self.hub = ChangeHub()
        self.metrics = metrics or Metrics()
        # The cascade of a parent's cancel to its children is an outbox sink too, so the
        # outbox is always there; but only rows some sink delivers are written (`Wanted`):
        # the embedded default writes none for a done operation.
        cascade = ChildrenCascade(self._running_children, self._cancel_child)
        every = [*sinks, cascade]
        self.notify = wanted_by(every)
        # Webhooks no sink delivers are refused at ingest rather than dropped.
        self.rules = dataclasses.replace(rules, webhooks=self.notify.webhooks)
        self.dispatcher = Dispatcher(store, every, retry=retry, metrics=self.metrics)
        self.max_wait_seconds = max_wait_seconds
        # While anyone waits, the watched operations are read this often, so that other
        # processes' changes wake them too (0: only this process's changes do).
        self.wake_poll_seconds = wake_poll_seconds
        self._poll: asyncio.Task[None] | None = None
        self.group = GroupCommit(
            self._apply, apply_now=self._apply_now, observe=tracing.record_commit
        )
        self.hooks: builtins.list[AfterCommit] = [self._count, self._wake, self._kick]

    def add_hook(self, hook: AfterCommit) -> None:
        """Run `hook` after every later commit, after the built-in ones."""
        self.hooks.append(hook)

    def after_commit(self, committed: Committed) -> None:
        run_hooks(self.hooks, committed)

    def _count(self, committed: Committed) -> None:
        for outcome in committed.outcomes:
            self.metrics.count_event(committed.route, outcome)

    def _wake(self, committed: Committed) -> None:
        for operation in committed.changed.values():
            self.hub.publish(operation)

    def _kick(self, committed: Committed) -> None:
        if committed.notices:
            self.dispatcher.kick()

    # ---- ingest ------------------------------------------------------------------------

    def _apply(self, events: Sequence[Event]) -> BatchResult:
        return self.store.apply(events, notify=self.notify)

    def _apply_now(self, events: Sequence[Event]) -> BatchResult | None:
        return self.store.apply_now(events, notify=self.notify)

    async def ingest(self, events: Sequence[Event], *, route: str) -> BatchResult:
        """Apply events atomically, then run the after-commit hooks.

        All or nothing: an `InvalidEvent` (strict mode's unknown operation, or a write
        the store can never take) rolls the whole batch back; the route decides how to
        answer and counts it. Concurrent calls share transactions (`tracker.commit`):
        what one call sends still commits or fails as a whole, and alone.
        """
        if tracing.traced(events):
            with tracing.ingest_span(events, route) as continued:
                return await self._ingest(continued, route)
        return await self._ingest(events, route)

    async def _ingest(self, events: Sequence[Event], route: str) -> BatchResult:
        dropped = sum(1 for e in events if e.trace_dropped)
        if dropped:
            self.metrics.traceparent_ignored.labels(route=route).inc(dropped)
            log.debug("%s: ignored %d invalid traceparent/tracestate", route, dropped)
        self.metrics.writes_in_flight.inc()
        try:
            result = await self.group.submit(events)
        finally:
            self.metrics.writes_in_flight.dec()
        self.after_commit(
            Committed(
                route=route,
                outcomes=[r.outcome.value for r in result.results],
                changed=result.changed,
                done=result.done,
                notices=result.notices > 0,
            )
        )
        return result

    async def ingest_each(
        self, events: Sequence[Event], *, route: str
    ) -> builtins.list[ApplyResult | InvalidEvent]:
        """Apply independent events (one per Pub/Sub message) with as few transactions
        as possible: one for all, and when one of them can never apply, halves again
        until each poison event stands alone. Returns each event's result or the error
        that rejects it; StoreUnavailable (retry all) propagates."""
        if not events:
            return []
        try:
            return builtins.list((await self.ingest(events, route=route)).results)
        except InvalidEvent as exc:
            if len(events) == 1:
                if exc.event_id is None:
                    exc.event_id = events[0].id
                return [exc]
        half = len(events) // 2
        first = await self.ingest_each(events[:half], route=route)
        return first + await self.ingest_each(events[half:], route=route)

    def as_poison(self, route: str, exc: BaseException) -> InvalidEvent:
        """A failure nobody named while applying one message, taken as poison: the same
        message would fail the same way on every redelivery, so it is dead-lettered
        (replayable after a fix) instead of stopping or looping the subscriber. Logged
        with its traceback under a reference the dead letter carries."""
        if isinstance(exc, InvalidEvent):
            return exc
        ref = uuid.uuid4().hex[:12]
        log.error("unexpected error applying a message on %s (ref %s)", route, ref, exc_info=exc)
        return InvalidEvent("internal", f"could not apply: internal error (log ref {ref})")

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
        letter = await asyncio.to_thread(self.store.get_dead_letter, letter_id)
        if letter is None:
            raise NotFound(f"dead letter {echo(letter_id)} not found")
        event = parse_pubsub(letter.attributes, letter.body, self.rules)
        result = await self.ingest([event], route="replay")
        await asyncio.to_thread(self.store.remove_dead_letter, letter_id)
        return result

    # ---- create ------------------------------------------------------------------------

    async def create(
        self,
        data: events_pb2.Created,
        *,
        parent: str = "",
        operation_id: str = "",
        request_id: str = "",
        route: str = "create",
        allowed: Callable[[str], None] | None = None,
    ) -> operations_pb2.Operation:
        """Create an operation and answer it once committed (`tracker.v1.Operations`).

        It is the `created` event a producer would send, applied now: `data` is checked
        as that event's data is (`decode_data` made it, or the caller checks it first).
        Idempotent by `request_id` (AIP-155): the event's id, so a retry is a duplicate
        and answers the operation as it stands; its name, when `operation_id` is empty,
        derives from it. A name already there is ALREADY_EXISTS. `allowed` may refuse the
        name once it is known (the caller's scope, `tracker.auth.Scope.check`)."""
        check_text(request_id, "bad_request_id", "request_id", max_chars=MAX_ID_CHARS)
        name = resource_names.new_name(
            resource_names.parse_parent(parent), operation_id, request_id
        )
        self.rules.check_name(name)
        if allowed is not None:
            allowed(name)
        check_rules(data, self.rules)
        size = data.ByteSize()
        if size > self.rules.max_event_bytes:
            raise InvalidEvent(
                "too_large",
                f"the operation is {size} bytes; at most {self.rules.max_event_bytes}"
                " are accepted (--max-event-bytes)",
            )
        event = Event(
            id=request_id or uuid.uuid4().hex,
            source=CREATE_SOURCE,
            kind=Kind.CREATED,
            operation=name,
            time=datetime.now(UTC),
            data=data,
            create_only=True,
        )
        result = await self.ingest([event], route=route)
        if result.results[0].outcome is Outcome.LATE:
            raise AlreadyExists(
                f"operation {echo(name)} was deleted or expired; a name is not used twice"
            )
        return await self.get(name)

    # ---- reads -------------------------------------------------------------------------

    async def get(self, name: str) -> operations_pb2.Operation:
        operation = await asyncio.to_thread(self.store.get_operation, check_name(name))
        if operation is None:
            raise NotFound(f"operation {echo(name)} not found")
        return operation

    async def checkpoint(self, name: str) -> bytes | None:
        """The latest checkpoint bytes (None: none yet); NotFound without the operation."""
        return await asyncio.to_thread(self.store.checkpoint, check_name(name))

    async def list(
        self,
        filter_text: str = "",
        page_size: int = 0,
        page_token: str = "",
        order_by: str = "",
        *,
        parent: str = "",
    ) -> Page:
        """One page in the order of `order_by` (AIP-132; `tracker.listing`), of the
        operations in `parent`'s collection (`tracker.resource_names`; "": all)."""
        filter_text = resource_names.in_collection(filter_text, parent)
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        expr = filtering.parse(filter_text)
        order = listing.parse_order_by(order_by)
        after, position = (
            listing.decode_token(page_token, filter_text, order) if page_token else ("", ())
        )
        query = ListQuery(filter=expr, page_size=size, after=after, order=order, position=position)
        rows = await asyncio.to_thread(self.store.list_operations, query)
        more = len(rows) > size
        rows = rows[:size]
        token = listing.encode_token(rows[-1], filter_text, order) if more else ""
        return Page([r.operation for r in rows], token)

    async def count(self, filter_text: str = "", *, parent: str = "") -> tuple[int, bool]:
        """(operations matching, whether that is a lower bound: the count stopped at
        its bound, `tracker.stores.query.COUNT_SCAN_LIMIT` rows read)."""
        expr = filtering.parse(resource_names.in_collection(filter_text, parent))
        return await asyncio.to_thread(self.store.count_operations, expr)

    async def delete(self, name: str) -> None:
        if not await asyncio.to_thread(self.store.delete, check_name(name)):
            raise NotFound(f"operation {echo(name)} not found")

    async def cancel(
        self, name: str, reason: ReasonValue = Notice.CANCEL_REQUESTED
    ) -> operations_pb2.Operation:
        stored, became_done = await asyncio.to_thread(
            self.store.cancel, check_name(name), notify=self.notify, reason=reason
        )
        self.after_commit(
            Committed(
                route="cancel",
                changed={name: stored.operation},
                done=[name] if became_done else [],
                notices=became_done,
            )
        )
        return stored.operation

    async def _cancel_child(self, name: str) -> object:
        return await self.cancel(name, Notice.PARENT_CANCELLED)

    async def _running_children(self, parent: str, after: str) -> builtins.list[str]:
        expr = filtering.parse(f"parent = {json.dumps(parent)} AND done = false")
        rows = await asyncio.to_thread(
            self.store.list_operations, ListQuery(filter=expr, page_size=CASCADE_PAGE, after=after)
        )
        return [r.state.name for r in rows[:CASCADE_PAGE]]

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
            self.hub.seen(operation)
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
            self.hub.seen(operation)
            yield operation
            while not operation.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    changed = await asyncio.wait_for(changes.get(), remaining)
                except TimeoutError:
                    return
                if changed == operation:
                    continue  # the state read above, delivered too (by the store poll)
                operation = changed
                yield operation

    # ---- deadlines and retention ---------------------------------------------------------

    async def sweep(self) -> builtins.list[operations_pb2.Operation]:
        """Expire operations past their deadline or heartbeat timeout; apply retention."""
        expired = await asyncio.to_thread(self.store.expire_due, notify=self.notify)
        operations = [e.operation for e in expired]
        if operations:
            done = [op.name for op in operations if op.done]
            log.info(
                "expiry: %d operations failed (DEADLINE_EXCEEDED), %d retried",
                len(done),
                len(operations) - len(done),
            )
            changed = {op.name: op for op in operations}
            self.after_commit(Committed(route="expiry", changed=changed, done=done, notices=True))
        await asyncio.to_thread(self.store.purge_expired)
        await asyncio.to_thread(self.store.expire_dead_letters, datetime.now(UTC))
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

    async def start(self) -> asyncio.Task[None] | None:
        """Bind waiters to this loop; start the dispatcher."""
        self.hub.bind(asyncio.get_running_loop())
        if self.wake_poll_seconds > 0:
            self._poll = asyncio.create_task(
                self.hub.poll_store(self.store.get_operations, self.wake_poll_seconds),
                name="wake-up-poll",
            )
        return asyncio.create_task(self.dispatcher.run(), name="outbox-dispatcher")

    async def stop(self, task: asyncio.Task[None] | None) -> None:
        if self._poll is not None:
            self._poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll
            self._poll = None
        self.dispatcher.stop()
        if task is not None:
            await task


# The CloudEvents source of the `created` event a create records (its event history).
CREATE_SOURCE: Final = "tracker/create"


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
