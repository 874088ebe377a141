"""The event history on every backend: what is recorded, the bound, and its removal."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from google.cloud.spanner_v1.keyset import KeyRange, KeySet
from google.protobuf import duration_pb2
from google.rpc import code_pb2, status_pb2

from tests.helpers import T0, make_event
from tracker.apply import Outcome
from tracker.events import Kind
from tracker.notices import Notice
from tracker.stores import history
from tracker.stores.base import Store
from tracker.stores.history import Entry
from tracker.stores.spanner import SpannerStore
from tracker.stores.sqlite import SqliteStore
from tracker.v1 import events_pb2

OP = "operations/history-1"


def entries(store: Store, name: str = OP) -> list[Entry]:
    exists, found = store.read_history(name, limit=10_000)
    assert exists
    return found


def stored_rows(store: Store, name: str) -> int:
    """History rows the backend holds for `name`, read from its table directly."""
    if isinstance(store, SqliteStore):
        with store._reading() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM operation_events WHERE operation = ?", (name,)
            ).fetchone()
        return int(row[0])
    assert isinstance(store, SpannerStore)
    span = KeyRange(start_closed=[name, 0], end_closed=[name, 2**63 - 1])
    with store.database.snapshot() as snapshot:
        rows = snapshot.read(store.n("OperationEvents"), ("Ordinal",), KeySet(ranges=[span]))
        return len(list(rows))


def test_every_event_is_recorded_with_what_it_did(store: Store) -> None:
    created = make_event(Kind.CREATED, OP, id="c", seq=1, source="w", time=T0)
    progress = make_event(
        Kind.PROGRESS, OP, id="p5", seq=5, source="w", data={"percent": 50, "message": "half"}
    )
    older = make_event(Kind.PROGRESS, OP, id="p3", seq=3, source="w", data={"percent": 30})
    done = make_event(Kind.SUCCEEDED, OP, id="s", seq=9, source="w")
    after = make_event(Kind.PROGRESS, OP, id="p10", seq=10, source="w", data={"percent": 99})
    store.apply([created, progress])
    result = store.apply([progress, older, done, after])
    assert [r.outcome for r in result.results] == [
        Outcome.DUPLICATE,
        Outcome.STALE,
        Outcome.APPLIED,
        Outcome.LATE,
    ]
    got = entries(store)
    assert [(e.id, e.outcome) for e in got] == [
        ("c", "applied"),
        ("p5", "applied"),
        ("p5", "duplicate"),
        ("p3", "stale"),
        ("s", "applied"),
        ("p10", "late"),
    ]
    assert [e.ordinal for e in got] == [1, 2, 3, 4, 5, 6]
    first = got[1]
    assert first.type == "tracker.operation.v1.progress"
    assert first.source == "w" and first.sequence == 5 and first.attempt == 1
    assert first.time == progress.time
    assert first.received.tzinfo is not None
    data = events_pb2.Progress.FromString(first.data)
    assert data.percent == 50 and data.message == "half" and not first.truncated


def test_pages_follow_the_ordinal(store: Store) -> None:
    store.apply([make_event(Kind.PROGRESS, OP, seq=i, id=f"e{i}") for i in range(7)])
    exists, page = store.read_history(OP, limit=3)
    assert exists and [e.id for e in page] == ["e0", "e1", "e2"]
    _, page = store.read_history(OP, after=page[-1].ordinal, limit=3)
    assert [e.id for e in page] == ["e3", "e4", "e5"]
    _, page = store.read_history(OP, after=page[-1].ordinal, limit=3)
    assert [e.id for e in page] == ["e6"]
    assert store.read_history("operations/unknown") == (False, [])


def test_cancel_is_recorded_as_the_trackers_own_entry(store: Store) -> None:
    store.apply([make_event(Kind.CREATED, OP, seq=1)])
    store.cancel(OP, T0 + timedelta(seconds=1))
    last = entries(store)[-1]
    assert (last.type, last.source, last.outcome) == (
        history.CANCEL,
        "tracker",
        "cancel_requested",
    )
    assert Notice.FromString(last.data).kind == Notice.CANCEL


def test_expiry_and_a_retry_start_are_recorded(store: Store) -> None:
    retry = events_pb2.RetryPolicy(max_attempts=2)
    store.apply(
        [
            make_event(
                Kind.CREATED,
                OP,
                seq=1,
                time=T0,
                data={"heartbeat_timeout": duration_pb2.Duration(seconds=10), "retry": retry},
            )
        ]
    )
    store.expire_due(T0 + timedelta(seconds=11))  # stalled: attempt 2 starts
    store.expire_due(T0 + timedelta(days=1))  # stalled again: the last attempt, failed
    actions = [(e.type, e.outcome, e.attempt) for e in entries(store) if e.source == "tracker"]
    assert actions == [(history.RESUME, "stalled", 2), (history.END, "expired", 2)]
    end = Notice.FromString(entries(store)[-1].data)
    assert end.error.code == code_pb2.DEADLINE_EXCEEDED


def test_a_retry_after_a_failed_event_follows_that_event(store: Store) -> None:
    retry = events_pb2.RetryPolicy(max_attempts=3)
    store.apply([make_event(Kind.CREATED, OP, seq=1, data={"retry": retry})])
    failed = make_event(
        Kind.FAILED, OP, seq=2, data={"error": status_pb2.Status(code=code_pb2.UNAVAILABLE)}
    )
    store.apply([failed])
    tail = [(e.type, e.outcome, e.attempt) for e in entries(store)[-2:]]
    assert tail == [("tracker.operation.v1.failed", "applied", 1), (history.RESUME, "failed", 2)]


def test_a_children_policy_firing_is_recorded_on_the_parent(store: Store) -> None:
    parent, child = "operations/parent", "operations/parent/child"
    policy = events_pb2.ChildrenPolicy(on_done=events_pb2.ChildrenPolicy.COMPLETE)
    store.apply([make_event(Kind.CREATED, parent, seq=1, data={"children": policy})])
    store.apply([make_event(Kind.CREATED, child, seq=1, data={"parent": parent})])
    store.apply([make_event(Kind.SUCCEEDED, child, seq=2)])
    last = entries(store, parent)[-1]
    assert (last.type, last.outcome, last.source) == (history.END, "children_done", "tracker")
    assert Notice.FromString(last.data).children.succeeded == 1
    # The child's own history holds its events only.
    assert [e.source for e in entries(store, child)] == ["test", "test"]


def test_the_bound_keeps_the_newest_and_deletes_the_rest(store: Store) -> None:
    store.history_limit = 5
    for i in range(23):
        store.apply([make_event(Kind.PROGRESS, OP, seq=i, id=f"e{i}")])
    assert [e.id for e in entries(store)] == [f"e{i}" for i in range(18, 23)]
    # Older rows are deleted, not only hidden: at most the bound plus its margin remain.
    assert 5 <= stored_rows(store, OP) <= 5 + history.margin(5)
    store.apply([make_event(Kind.PROGRESS, OP, seq=i, id=f"b{i}") for i in range(100, 112)])
    assert [e.id for e in entries(store)] == [f"b{i}" for i in range(107, 112)]
    assert stored_rows(store, OP) <= 5 + history.margin(5)


def test_zero_records_nothing(store: Store) -> None:
    store.history_limit = 0
    store.apply([make_event(Kind.CREATED, OP), make_event(Kind.PROGRESS, OP)])
    store.cancel(OP)
    assert store.read_history(OP) == (True, [])
    assert stored_rows(store, OP) == 0


def test_history_goes_with_a_deleted_operation(store: Store) -> None:
    store.apply([make_event(Kind.CREATED, OP), make_event(Kind.PROGRESS, OP)])
    assert stored_rows(store, OP) == 2
    assert store.delete(OP)
    assert store.read_history(OP) == (False, [])
    assert stored_rows(store, OP) == 0
    # A late event for the removed operation has nowhere to be kept.
    late = store.apply([make_event(Kind.PROGRESS, OP)])
    assert [r.outcome for r in late.results] == [Outcome.LATE]
    assert stored_rows(store, OP) == 0


def test_large_data_is_cut_and_flagged(store: Store) -> None:
    big = make_event(Kind.CHECKPOINT, OP, data={"data": b"x" * 20_000})
    store.apply([big])
    (entry,) = entries(store)
    assert entry.truncated and len(entry.data) == history.MAX_DATA_BYTES
    assert entry.data == big.data.SerializeToString()[: history.MAX_DATA_BYTES]


def test_retention_removes_the_history_of_expired_operations(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db", done_ttl=timedelta(days=1))
    try:
        store.apply([make_event(Kind.SUCCEEDED, OP)], now=T0)
        assert stored_rows(store, OP) == 1
        assert store.purge_expired(T0 + timedelta(days=2)) == 1
        assert stored_rows(store, OP) == 0
    finally:
        store.close()
