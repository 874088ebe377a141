"""Event history: what reached each operation, kept beside it, bounded.

Every event a transaction applies or turns away as a duplicate, stale or late one is
recorded for its operation in that same transaction, with what it did; so are the
tracker's own actions on the operation (CancelOperation, a parent's cancel or fail-fast,
the expiry of a deadline or heartbeat timeout, the start of a retry, a children policy
firing), with source "tracker". An operator reads it to see why an operation is where it
is (`GET /v1/{name}/events`, `tracker history NAME`).

Entries are numbered per operation from 1 (the ordinal), in commit order; the last number
given (the head: Spanner keeps it in a small row per operation, SQLite reads it from the
end of the key range) numbers the next ones and says how many are past the bound, so
recording needs one key read per operation and transaction, and no count. The newest
`limit` entries are kept (`--history-per-operation`, 0 turns recording off): reads never
return older ones, and the older rows are deleted in the transaction that crosses a
multiple of `margin(limit)`, so deleting costs one range delete per `margin` entries
rather than one per event. Rows go with their operation
(DeleteOperation, retention): Spanner interleaves them in Operations, SQLite's foreign
keys cascade. Events for an operation that does not exist (deleted: late) have nowhere
to go and are not kept.

Data is the event's data message serialized (the JSON an HTTP reader gets is rendered
from it), at most `MAX_DATA_BYTES`; a longer one keeps its first bytes and `truncated`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Final, Protocol, cast

from google.rpc import code_pb2

from tracker import notices
from tracker.apply import attempt_of, ended_by_tracker
from tracker.notices import Notice

if TYPE_CHECKING:
    from tracker.apply import Outcome
    from tracker.events import Event
    from tracker.stores.changes import Changes

DEFAULT_PER_OPERATION: Final = 1000
MAX_PER_OPERATION: Final = 100_000
MAX_DATA_BYTES: Final = 8 * 1024
TRACKER_SOURCE: Final = "tracker"
# Types of the tracker's own entries (an event's type is its CloudEvents type).
CANCEL: Final = "tracker.cancel"  # outcome: cancel_requested | parent_cancelled | child_failed
RESUME: Final = "tracker.resume"  # outcome: stalled | failed | children_done
END: Final = "tracker.end"  # outcome: expired | children_done
_NOTICE_TYPES: Final = {notices.CANCEL: CANCEL, notices.RESUME: RESUME}


def margin(limit: int) -> int:
    """Entries kept above the bound before the oldest are deleted in one go."""
    return max(1, limit // 10)


@dataclass(slots=True)  # not frozen: one is built per event, on the hot path
class Entry:
    """One history row (`ordinal` from 1, per operation)."""

    operation: str
    type: str
    id: str
    source: str
    time: datetime
    sequence: int | None
    attempt: int
    outcome: str
    received: datetime
    data: bytes
    truncated: bool = False
    ordinal: int = 0


class HistoryTx(Protocol):
    """What a backend's transaction offers for the history."""

    def history_heads(self, names: Sequence[str]) -> dict[str, int]:
        """The last ordinal given to each of `names` (absent: none yet)."""

    def add_history(
        self, entries: Sequence[Entry], heads: dict[str, int], trims: dict[str, int]
    ) -> None:
        """Insert the numbered entries, store the new heads, and delete each trimmed
        operation's entries with an ordinal below its value."""


def bounded(data: bytes) -> tuple[bytes, bool]:
    if len(data) <= MAX_DATA_BYTES:
        return data, False
    return data[:MAX_DATA_BYTES], True


def of_event(event: Event, outcome: Outcome, now: datetime, ordinal: int = 0) -> Entry:
    data, truncated = bounded(event.data.SerializeToString())
    # Positional, in Entry's field order: one per event on the hot path, and keywords
    # cost a third more.
    return Entry(
        event.operation,
        event.kind.type,
        event.id,
        event.source,
        event.time,
        event.sequence,
        event.attempt or 1,
        outcome.value,
        now,
        data,
        truncated,
        ordinal,
    )


def _action(
    name: str, kind: str, outcome: str, attempt: int, notice: Notice, now: datetime
) -> Entry:
    data, truncated = bounded(notice.SerializeToString())
    return Entry(
        operation=name,
        type=kind,
        id=uuid.uuid4().hex,
        source=TRACKER_SOURCE,
        time=now,
        sequence=None,
        attempt=attempt,
        outcome=outcome,
        received=now,
        data=data,
        truncated=truncated,
    )


def actions(changes: Changes) -> list[Entry]:
    """The tracker's own actions in this transaction: one entry per cancel or resume
    notice it caused, and one per operation it ended without one (expiry, COMPLETE)."""
    out: list[Entry] = []
    noticed: set[str] = set()
    for notice in changes.notices:
        kind = _NOTICE_TYPES.get(notice.kind)
        if kind is None:
            continue
        noticed.add(notice.operation)
        reason = notices.REASON_NAMES.get(notice.reason, "")
        plain = Notice()
        plain.CopyFrom(notice)
        plain.ClearField("target")
        out.append(_action(notice.operation, kind, reason, notice.attempt, plain, changes.now))
    for name in changes.order:
        state = changes.states[name]
        if name not in changes.done_now or name in noticed or not ended_by_tracker(state):
            continue
        expired = state.error.code == code_pb2.DEADLINE_EXCEEDED
        notice = notices.make(
            notices.DONE,
            name,
            attempt=attempt_of(state),
            operation_type=state.operation_type,
            error=state.error if state.HasField("error") else None,
            children=state.children if state.children.total else None,
        )
        outcome = "expired" if expired else "children_done"
        out.append(_action(name, END, outcome, attempt_of(state), notice, changes.now))
    return out


def flush(changes: Changes) -> None:
    """Number and write what reached each operation in this transaction (after its rows
    are saved: Spanner inserts an interleaved row after its parent's)."""
    limit = changes.history_limit
    if limit <= 0:
        return
    rows = changes.existing | changes.dirty
    heard = [(e, o) for e, o in changes.heard if e.operation in rows]
    done = actions(changes)
    if not heard and not done:
        return
    tx = cast(HistoryTx, changes.tx)
    names = list(dict.fromkeys([*(e.operation for e, _ in heard), *(a.operation for a in done)]))
    heads = tx.history_heads(names)
    before = {name: heads.get(name, 0) for name in names}
    numbered: list[Entry] = []
    for event, outcome in heard:
        ordinal = heads[event.operation] = heads.get(event.operation, 0) + 1
        numbered.append(of_event(event, outcome, changes.now, ordinal))
    for action in done:
        ordinal = heads[action.operation] = heads.get(action.operation, 0) + 1
        numbered.append(replace(action, ordinal=ordinal))
    step = margin(limit)
    trims = {
        name: heads[name] - limit + 1
        for name in names
        if heads[name] > limit and heads[name] // step != before[name] // step
    }
    tx.add_history(numbered, {n: heads[n] for n in names}, trims)


def floor(head: int, limit: int) -> int:
    """Entries at or below this ordinal are past the bound: never returned."""
    return max(0, head - limit) if limit > 0 else 0


__all__ = ["DEFAULT_PER_OPERATION", "MAX_DATA_BYTES", "Entry", "HistoryTx", "flush"]
