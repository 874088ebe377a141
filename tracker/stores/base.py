"""The store contract, and the apply logic every backend shares.

A backend implements a handful of primitives on a transaction (`Tx`) and a way to
run a function in one read-write transaction (`run_in_transaction`, which may call
the function again on an abort, so the function touches nothing but the `Tx`).
Everything that decides state lives in `apply_batch`, once.
"""

from __future__ import annotations

import abc
import uuid
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
    due_time,
    expire,
    render,
    request_cancel,
)
from tracker.errors import NotFound, echo
from tracker.events import Event, Kind
from tracker.v1 import events_pb2

T = TypeVar("T")
Identity = tuple[str, str, str]  # (operation, source, event id)
# The identity of a tombstone record: no event can have an empty source.
TOMBSTONE_SOURCE = ""
TOMBSTONE_ID = "removed"
TOMBSTONE_OUTCOME = "removed"


@dataclass(frozen=True)
class ApplyResult:
    """What one event did."""

    operation: str
    event_id: str
    source: str
    outcome: Outcome
    became_done: bool = False


@dataclass(frozen=True)
class BatchResult:
    results: list[ApplyResult]
    # Final served Operation of every operation the batch changed, by name.
    changed: dict[str, operations_pb2.Operation] = field(default_factory=dict)

    @property
    def done(self) -> list[str]:
        return [r.operation for r in self.results if r.became_done]


@dataclass(frozen=True)
class Stored:
    """One operation row."""

    state: OperationState
    operation: operations_pb2.Operation
    checkpoint: bytes | None


@dataclass(frozen=True)
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
            labels=dict(state.labels),
            create_time=state.create_time.ToDatetime(UTC),
            end_time=state.end_time.ToDatetime(UTC) if state.done else None,
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

    The outbox row's State column (schema version 1) is no longer read and is written
    empty: the served Operation is all a notification carries.

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
class ListQuery:
    filter: filtering.Expr | None = None
    page_size: int = 50
    after: str = ""  # names strictly greater than this


class Tx(Protocol):
    """Primitives a backend offers inside one read-write transaction."""

    def load(self, names: Sequence[str]) -> dict[str, OperationState]: ...

    def seen(self, identities: Sequence[Identity]) -> set[Identity]: ...

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

    def due(self, now: datetime, limit: int) -> list[str]:
        """Names of not-done operations whose due time is at or before `now`."""

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
    tx: Tx, events: Sequence[Event], now: datetime, *, strict: bool = False, notify: bool = True
) -> BatchResult:
    """Apply events in order inside `tx`. Pure apart from `tx`; safe to re-run on abort.

    `notify`: write an outbox row for each done transition (only when a durable sink
    will read it)."""
    names = list(dict.fromkeys(e.operation for e in events))
    states = tx.load(names)
    existing = set(states)
    missing = [n for n in names if n not in states]
    gone = tx.removed(missing) if missing else set()
    seen = tx.seen([e.identity for e in events])
    checkpoints: dict[str, bytes] = {}
    dirty: set[str] = set()
    done_now: set[str] = set()
    recorded: list[tuple[Identity, Outcome]] = []
    results: list[ApplyResult] = []
    for event in events:
        if event.identity in seen:
            outcome, became_done = Outcome.DUPLICATE, False
        elif event.operation in gone:
            # Deleted or expired: a late event must not bring it back as a new operation.
            seen.add(event.identity)
            outcome, became_done = Outcome.LATE, False
            recorded.append((event.identity, outcome))
        else:
            seen.add(event.identity)
            transition = apply_event(states.get(event.operation), event, now, strict=strict)
            outcome, became_done = transition.outcome, transition.became_done
            recorded.append((event.identity, outcome))
            if outcome is Outcome.APPLIED:
                states[event.operation] = transition.state
                dirty.add(event.operation)
                if became_done:
                    done_now.add(event.operation)
                if event.kind is Kind.CHECKPOINT:
                    assert isinstance(event.data, events_pb2.Checkpoint)
                    checkpoints[event.operation] = event.data.data
        results.append(ApplyResult(event.operation, event.id, event.source, outcome, became_done))
    changed: dict[str, operations_pb2.Operation] = {}
    for name in names:
        if name not in dirty:
            continue
        state = states[name]
        operation = render(state)
        changed[name] = operation
        tx.save(state, operation, checkpoints.get(name), insert=name not in existing, now=now)
        if notify and name in done_now:
            tx.add_outbox(new_outbox_item(operation, now))
    if recorded:
        tx.record(recorded, now)
    return BatchResult(results, changed)


def new_outbox_item(operation: operations_pb2.Operation, now: datetime) -> OutboxItem:
    return OutboxItem(id=uuid.uuid4().hex, operation=operation, created_at=now, next_attempt_at=now)


class Store(abc.ABC):
    """The store contract. Backends fill in the abstract primitives."""

    strict: bool = False

    # ---- primitives --------------------------------------------------------------------

    @abc.abstractmethod
    def run_in_transaction(self, fn: Callable[[Tx], T]) -> T:
        """Run fn in one read-write transaction; it may be called more than once."""

    @abc.abstractmethod
    def get(self, name: str) -> Stored | None: ...

    @abc.abstractmethod
    def list_operations(self, query: ListQuery) -> list[Stored]:
        """Up to page_size + 1 rows ordered by name (the extra row says there is more)."""

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
    def add_dead_letter(self, letter: DeadLetter) -> None: ...

    @abc.abstractmethod
    def dead_letters(self, limit: int = 100) -> list[DeadLetter]: ...

    @abc.abstractmethod
    def remove_dead_letter(self, letter_id: str) -> bool: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    # ---- shared behaviour --------------------------------------------------------------

    def apply(
        self, events: Sequence[Event], now: datetime | None = None, *, notify: bool = True
    ) -> BatchResult:
        """Apply a batch atomically: all of it commits, or none of it."""
        when = now or datetime.now(UTC)
        return self.run_in_transaction(
            lambda tx: apply_batch(tx, events, when, strict=self.strict, notify=notify)
        )

    def cancel(
        self, name: str, now: datetime | None = None, *, notify: bool = True
    ) -> tuple[Stored, bool]:
        """Mark cancelled; returns the row and whether this call made it done."""
        when = now or datetime.now(UTC)

        def work(tx: Tx) -> tuple[Stored, bool]:
            states = tx.load([name])
            if name not in states:
                raise NotFound(f"operation {echo(name)} not found")
            before = states[name]
            state = request_cancel(before, when)
            operation = render(state)
            tx.save(state, operation, None, insert=False, now=when)
            became_done = state.done and not before.done
            if became_done and notify:
                tx.add_outbox(new_outbox_item(operation, when))
            return Stored(state, operation, None), became_done

        return self.run_in_transaction(work)

    def expire_due(
        self, now: datetime | None = None, limit: int = 100, *, notify: bool = True
    ) -> list[Stored]:
        """End operations past their deadline or heartbeat timeout (DEADLINE_EXCEEDED)."""
        when = now or datetime.now(UTC)

        def work(tx: Tx) -> list[Stored]:
            names = tx.due(when, limit)
            expired = []
            for state in tx.load(names).values():
                ended = expire(state, when)
                if ended is None:  # an event moved its due time meanwhile
                    continue
                operation = render(ended)
                tx.save(ended, operation, None, insert=False, now=when)
                if notify:
                    tx.add_outbox(new_outbox_item(operation, when))
                expired.append(Stored(ended, operation, None))
            return expired

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
    def get_operation(self, name: str) -> operations_pb2.Operation | None:
        """The served Operation only: no state blob parsed, no checkpoint bytes copied."""

    @abc.abstractmethod
    def read_checkpoint(self, name: str) -> tuple[bool, bytes | None]:
        """(whether the operation exists, its checkpoint bytes or None): one column."""

    def checkpoint(self, name: str) -> bytes | None:
        """The latest checkpoint bytes (None: none yet); NotFound without the operation."""
        exists, data = self.read_checkpoint(name)
        if not exists:
            raise NotFound(f"operation {echo(name)} not found")
        return data
