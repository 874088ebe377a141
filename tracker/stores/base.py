"""The store contract, and the apply logic every backend shares.

A backend implements a handful of primitives on a transaction (`Tx`) and a way to
run a function in one read-write transaction (`run_in_transaction`, which may call
the function again on an abort, so the function touches nothing but the `Tx`).
Everything that decides state lives in `apply_batch`, once.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

from google.longrunning import operations_pb2

from tracker import filtering
from tracker.apply import (
    OperationState,
    Outcome,
    apply_event,
    attempt_of,
    due_time,
    expire,
    request_cancel,
    to_datetime,
)
from tracker.errors import AlreadyExists, NotFound, echo
from tracker.events import DEFAULT_RULES, Event, Kind
from tracker.filter_fields import result_of
from tracker.notices import Notice, ReasonValue, Wanted, wanted
from tracker.stores import history
from tracker.stores.changes import Changes
from tracker.stores.dead_letters import DeadLetterStore
from tracker.v1 import events_pb2

T = TypeVar("T")
Identity = tuple[str, str, str]  # (operation, source, event id)
# The identity of a tombstone record: no event can have an empty source.
TOMBSTONE_SOURCE = ""
TOMBSTONE_ID = "removed"
TOMBSTONE_OUTCOME = "removed"


@dataclass(frozen=True)
class OperationStatus:
    """The operation as an ingest answer reports it, after the batch: so that a worker
    that publishes over HTTP learns of a cancel or an end without asking."""

    state: str  # running | succeeded | failed | cancelled
    attempt: int
    cancel_requested: bool


@dataclass(frozen=True)
class ApplyResult:
    """What one event did."""

    operation: str
    event_id: str
    source: str
    outcome: Outcome
    became_done: bool = False
    status: OperationStatus | None = None  # None: the operation does not exist


@dataclass(frozen=True)
class BatchResult:
    results: list[ApplyResult]
    # Final served Operation of every operation the batch changed, by name.
    changed: dict[str, operations_pb2.Operation] = field(default_factory=dict)
    # Outbox rows written (notices a durable sink will deliver).
    notices: int = 0

    @property
    def done(self) -> list[str]:
        return [r.operation for r in self.results if r.became_done]


@dataclass(frozen=True)
class Stored:
    """One operation row."""

    state: OperationState
    operation: operations_pb2.Operation
    checkpoint: bytes | None
    # A listed row's values of the query's sort keys, as the store holds them (text, or
    # None for a NULL): what a page token carries to continue after it.
    sort: tuple[str | None, ...] = ()


@dataclass(slots=True)  # not frozen: built once per saved row, and frozen costs ~2x
class RowValues:
    """What every backend stores beside an operation's blobs, decided once.

    Retention counts from when the tracker recorded the end, on its own clock, not from
    the producer's event time: old, replayed or skewed events must not expire at once.
    """

    name: str
    done: bool
    operation_type: str
    parent: str
    labels: dict[str, str]
    create_time: datetime
    end_time: datetime | None
    due_time: datetime | None  # not done: when its deadline or heartbeat timeout ends it
    expire_time: datetime | None  # done: when retention removes it

    @classmethod
    def of(cls, state: OperationState, now: datetime, done_ttl: timedelta) -> RowValues:
        return cls(
            name=state.name,
            done=state.done,
            operation_type=state.operation_type,
            parent=state.parent,
            labels=dict(state.labels) if state.labels else {},
            create_time=to_datetime(state.create_time),
            end_time=to_datetime(state.end_time) if state.done else None,
            due_time=due_time(state),
            expire_time=now + done_ttl if state.done else None,
        )


@dataclass(frozen=True)
class OutboxItem:
    """A done-notification. `id` is stable across redeliveries.

    Pending while `next_attempt_at` is set (the dispatcher tries it once that time has
    come); a failed notification once `gave_up_at` is set (no longer retried until an
    operator requeues it). `attempts` counts failed deliveries, `last_error` says why the
    latest one failed.

    The outbox row's State column (unused by schema version 2) holds the `Notice`
    envelope: kind, target, attempt, reason. Empty reads as a done-notice for the topics,
    which is what every row an older tracker wrote is.

    Both stores keep this in two small tables beside the outbox (schema version 2):
    `outbox_due` / `OutboxDue` holds one row per pending item with its next attempt time
    and last error (the dispatcher's query reads only that, earliest first, by index), and
    `failed_notifications` / `FailedNotifications` one row per given-up item with the
    operation, when, the attempts and the last error, readable by an operator as it is.
    Tables rather than columns on the outbox row: the due table stays as small as the
    backlog whatever the outbox holds, the failed table is a plain list to look at, and
    handy-spanner cannot add columns. The outbox row itself (payload, id) never moves, so
    requeueing keeps the id, and retention (which only removes sent rows) keeps a failed
    notification until an operator acts.
    """

    id: str
    operation: operations_pb2.Operation
    created_at: datetime
    # What it announces and to whom (`tracker.notices`); kept in the outbox row's State
    # column (schema version 3 reads it; an empty one is a done-notice for the topics).
    notice: Notice = field(default_factory=Notice)
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str = ""
    gave_up_at: datetime | None = None


@dataclass(frozen=True)
class DeadLetter:
    """An event that can never apply, kept for an operator to see and replay."""

    id: str
    received_at: datetime
    route: str  # push | pull | http
    reason: str
    detail: str
    attributes: dict[str, str]
    body: bytes
    message_id: str = ""


@dataclass(frozen=True)
class SortKey:
    """One key of an AIP-132 order_by: create_time, update_time, end_time or name."""

    field: str
    desc: bool = False


@dataclass(frozen=True)
class ListQuery:
    filter: filtering.Expr | None = None
    page_size: int = 50
    # Rows after this one (empty: from the start): its name, and for a sorted query its
    # `Stored.sort` values. Without `order`, names strictly greater than `after`.
    after: str = ""
    order: tuple[SortKey, ...] = ()  # empty: by name; the name is always the last key
    position: tuple[str | None, ...] = ()


class Tx(Protocol):
    """Primitives a backend offers inside one read-write transaction."""

    def load(self, names: Sequence[str]) -> dict[str, OperationState]: ...

    def seen(self, identities: Sequence[Identity], now: datetime) -> set[Identity]:
        """Of `identities`, those recorded before. A backend may record the others at
        once, provisionally as applied: `record` follows in the same transaction with
        every identity that was not seen and its outcome."""

    def save(
        self,
        state: OperationState,
        operation: operations_pb2.Operation,
        checkpoint: bytes | None,
        *,
        insert: bool,
        now: datetime,
    ) -> None:
        """Write the row; `checkpoint` None keeps the stored bytes."""

    def record(self, identities: Sequence[tuple[Identity, Outcome]], now: datetime) -> None: ...

    def add_outbox(self, item: OutboxItem) -> None: ...

    def removed(self, names: Sequence[str]) -> set[str]:
        """Of `names` (none of which has a row), those with de-duplication records: the
        operation existed and was deleted or expired. Its records are its tombstone."""

    def delete(self, name: str) -> bool:
        """Delete the operation row; False if there is none."""

    def tombstone(self, name: str, now: datetime) -> None:
        """Record that `name` was removed at `now` (a de-duplication record of its own,
        with the empty source no producer can send), so the tombstone lasts as long as
        de-duplication records do, counted from the removal."""


def apply_batch(
    tx: Tx,
    events: Sequence[Event],
    now: datetime,
    *,
    strict: bool = False,
    notify: Wanted | bool = True,
    is_operation: Callable[[str], bool] | None = None,
    history_limit: int = 0,
) -> BatchResult:
    """Apply events in order inside `tx`. Pure apart from `tx`; safe to re-run on abort.

    `notify`: which outbox rows to write (`tracker.notices.Wanted`: only those a durable
    sink will read). `is_operation`: whether a `parent` names an operation, whose
    children the tracker counts (default: the default name pattern). `history_limit`:
    entries kept per operation in its event history (0: none recorded)."""
    is_op = is_operation or _default_is_operation
    changes = Changes(tx, now, wanted(notify), is_op, history_limit=history_limit)
    names = list(dict.fromkeys(e.operation for e in events))
    changes.loaded(tx.load(names))
    states = changes.states
    missing = [n for n in names if n not in states]
    gone = tx.removed(missing) if missing else set()
    identities = [e.identity for e in events]
    seen = tx.seen(identities, now)
    recorded: list[tuple[Identity, Outcome]] = []
    results: list[tuple[Event, Outcome, bool]] = []
    for event, identity in zip(events, identities, strict=True):
        if identity in seen:
            outcome, became_done = Outcome.DUPLICATE, False
        elif event.operation in gone:
            # Deleted or expired: a late event must not bring it back as a new operation.
            seen.add(identity)
            outcome, became_done = Outcome.LATE, False
            recorded.append((identity, outcome))
        elif event.create_only and event.operation in states:
            # Rolls the transaction back: the group applies its other requests alone.
            raise AlreadyExists(f"operation {echo(event.operation)} already exists")
        else:
            seen.add(identity)
            transition = apply_event(states.get(event.operation), event, now, strict=strict)
            outcome, became_done = transition.outcome, transition.became_done
            recorded.append((identity, outcome))
            if outcome is Outcome.APPLIED:
                changes.changed(
                    transition.state, became_done=became_done, caused=transition.notices
                )
                if event.traceparent is not None:
                    changes.traces[event.operation] = (event.traceparent, event.tracestate or "")
                if event.kind is Kind.CHECKPOINT:
                    assert isinstance(event.data, events_pb2.Checkpoint)
                    changes.checkpoints[event.operation] = event.data.data
        results.append((event, outcome, became_done))
        if history_limit:
            changes.heard.append((event, outcome))
    changes.count_children()
    changed = changes.write()
    written = changes.written
    if recorded:
        tx.record(recorded, now)
    statuses = {name: status_of(states[name]) for name in names if name in states}
    final = [
        ApplyResult(e.operation, e.id, e.source, outcome, done, statuses.get(e.operation))
        for e, outcome, done in results
    ]
    return BatchResult(final, changed, written)


def _default_is_operation(name: str) -> bool:
    return DEFAULT_RULES.is_name(name)


def status_of(state: OperationState) -> OperationStatus:
    """What an ingest answer says of the operation after the batch."""
    return OperationStatus(result_of(state), attempt_of(state), state.cancel_requested)


class Store(DeadLetterStore, abc.ABC):
    """The store contract. Backends fill in the abstract primitives (the dead-letter ones:
    `tracker.stores.dead_letters`)."""

    strict: bool = False
    # Whether a `parent` names an operation (whose children are counted); the service
    # sets it from its name pattern.
    is_operation: Callable[[str], bool] = staticmethod(_default_is_operation)
    # Entries kept per operation in its event history; 0 records none (tracker.stores.history).
    history_limit: int = history.DEFAULT_PER_OPERATION
    # Called once for each retry of a read-write transaction after an abort (backends
    # that retry: Spanner); the server counts them (tracker_store_transaction_retries).
    count_retry: Callable[[], object] = staticmethod(lambda: None)

    # ---- primitives --------------------------------------------------------------------

    @abc.abstractmethod
    def run_in_transaction(self, fn: Callable[[Tx], T]) -> T:
        """Run fn in one read-write transaction; it may be called more than once."""

    @abc.abstractmethod
    def get(self, name: str) -> Stored | None: ...

    @abc.abstractmethod
    def due(self, now: datetime, limit: int) -> list[str]:
        """Names of not-done operations whose due time is at or before `now`, the
        earliest first (at most `limit`); a read, in no write transaction."""

    @abc.abstractmethod
    def list_operations(self, query: ListQuery) -> list[Stored]:
        """Up to page_size + 1 rows ordered by name (the extra row says there is more)."""

    @abc.abstractmethod
    def count_operations(self, expr: filtering.Expr | None) -> tuple[int, bool]:
        """(operations matching, whether counting stopped at its bound: then a lower
        bound). The backends' query mixins (`tracker.stores.query`) implement it."""

    @abc.abstractmethod
    def outbox_pending(self, limit: int = 100, now: datetime | None = None) -> list[OutboxItem]:
        """Pending items, earliest next attempt first (then by id).

        With `now`, only those whose next attempt is at or before it: what the dispatcher
        delivers. Without, every pending item (for tests and operators).
        """

    @abc.abstractmethod
    def outbox_mark_sent(self, ids: Iterable[str], now: datetime) -> None:
        """Every sink took these: never deliver them again."""

    @abc.abstractmethod
    def outbox_reschedule(self, item_id: str, retry_at: datetime, error: str) -> None:
        """Count a failed attempt and try again at `retry_at`; only this item moves.

        An item that is no longer pending (sent or given up by another process) is left
        as it is, so a late failure report never brings a sent notification back.
        """

    @abc.abstractmethod
    def outbox_give_up(self, item_id: str, now: datetime, error: str) -> None:
        """Count a failed attempt and stop retrying: the item is a failed notification."""

    @abc.abstractmethod
    def failed_notifications(
        self, limit: int = 100, after: tuple[datetime, str] | None = None
    ) -> list[OutboxItem]:
        """Given-up items, oldest `gave_up_at` first (then by id), at most `limit`.

        `after` is the (gave_up_at, id) of the last item of the previous page.
        """

    @abc.abstractmethod
    def requeue_failed(self, item_id: str, now: datetime) -> bool:
        """Make a failed notification pending again, due at `now`, with attempts reset.

        The id stays the same (consumers de-duplicate by it). False if there is no failed
        notification with this id (unknown, pending or sent).
        """

    @abc.abstractmethod
    def close(self) -> None: ...

    # ---- shared behaviour --------------------------------------------------------------

    def apply(
        self, events: Sequence[Event], now: datetime | None = None, *, notify: Wanted | bool = True
    ) -> BatchResult:
        """Apply a batch atomically: all of it commits, or none of it."""
        return self.run_in_transaction(self._applying(events, now, notify))

    def apply_now(
        self, events: Sequence[Event], *, notify: Wanted | bool = True
    ) -> BatchResult | None:
        """As `apply`, if that can be done at once without waiting on a lock or the
        network; else None (nothing was written) and the caller applies it in a worker
        thread. Lets an event loop skip a thread hop that costs more than a small local
        write. The default never can."""
        return None

    def _applying(
        self, events: Sequence[Event], now: datetime | None, notify: Wanted | bool
    ) -> Callable[[Tx], BatchResult]:
        when = now or datetime.now(UTC)
        return lambda tx: apply_batch(
            tx,
            events,
            when,
            strict=self.strict,
            notify=notify,
            is_operation=self.is_operation,
            history_limit=self.history_limit,
        )

    def cancel(
        self,
        name: str,
        now: datetime | None = None,
        *,
        notify: Wanted | bool = True,
        reason: ReasonValue = Notice.CANCEL_REQUESTED,
    ) -> tuple[Stored, bool]:
        """Mark cancelled; returns the row and whether this call made it done."""
        when = now or datetime.now(UTC)

        def work(tx: Tx) -> tuple[Stored, bool]:
            changes = Changes(
                tx, when, wanted(notify), self.is_operation, history_limit=self.history_limit
            )
            changes.loaded(tx.load([name]))
            if name not in changes.states:
                raise NotFound(f"operation {echo(name)} not found")
            t = request_cancel(changes.states[name], when, reason)
            changes.changed(t.state, became_done=t.became_done, caused=t.notices)
            changes.count_children()
            operation = changes.write()[name]
            return Stored(changes.states[name], operation, None), t.became_done

        return self.run_in_transaction(work)

    def expire_due(
        self, now: datetime | None = None, limit: int = 100, *, notify: Wanted | bool = True
    ) -> list[Stored]:
        """Operations past their deadline or heartbeat timeout: failed (DEADLINE_EXCEEDED),
        or in their next attempt when their retry policy allows."""
        when = now or datetime.now(UTC)
        # Found by a read, outside any write transaction: a sweep with nothing due takes
        # no writer's lock (SQLite's, or Google's emulator's one read-write transaction at
        # a time) and no Spanner locks on the due index. What is found is loaded again in
        # the transaction, and `expire` skips what an event moved meanwhile.
        names = self.due(when, limit)
        if not names:
            return []

        def work(tx: Tx) -> list[Stored]:
            changes = Changes(
                tx, when, wanted(notify), self.is_operation, history_limit=self.history_limit
            )
            changes.loaded(tx.load(names))
            ended: list[str] = []
            for name in names:
                if name not in changes.states:
                    continue
                t = expire(changes.states[name], when)
                if t is None:  # an event moved its due time meanwhile
                    continue
                changes.changed(t.state, became_done=t.became_done, caused=t.notices)
                ended.append(name)
            changes.count_children()
            rendered = changes.write()
            return [Stored(changes.states[n], rendered[n], None) for n in ended]

        return self.run_in_transaction(work)

    def delete(self, name: str, now: datetime | None = None) -> bool:
        """DeleteOperation: remove the row and leave a tombstone (see `Tx.tombstone`)."""
        when = now or datetime.now(UTC)

        def work(tx: Tx) -> bool:
            if not tx.delete(name):
                return False
            tx.tombstone(name, when)
            return True

        return self.run_in_transaction(work)

    def purge_expired(self, now: datetime | None = None) -> int:
        """Delete done operations past retention; stores whose server does it return 0."""
        return 0

    @abc.abstractmethod
    def read_history(
        self, name: str, after: int = 0, limit: int = 100
    ) -> tuple[bool, list[history.Entry]]:
        """(whether the operation exists, up to `limit` of its history entries with an
        ordinal above `after`, oldest first, none past `history_limit`)."""

    @abc.abstractmethod
    def get_operation(self, name: str) -> operations_pb2.Operation | None:
        """The served Operation only: no state blob parsed, no checkpoint bytes copied."""

    def get_operations(self, names: Sequence[str]) -> dict[str, operations_pb2.Operation]:
        """The served Operation of each of `names` that exists, in one read where the
        backend can (the cross-instance wake-up polls the watched names with it)."""
        found = {name: self.get_operation(name) for name in dict.fromkeys(names)}
        return {name: op for name, op in found.items() if op is not None}

    @abc.abstractmethod
    def read_checkpoint(self, name: str) -> tuple[bool, bytes | None]:
        """(whether the operation exists, its checkpoint bytes or None): one column."""

    def checkpoint(self, name: str) -> bytes | None:
        """The latest checkpoint bytes (None: none yet); NotFound without the operation."""
        exists, data = self.read_checkpoint(name)
        if not exists:
            raise NotFound(f"operation {echo(name)} not found")
        return data
