"""The store contract: every rule of the event model, on every backend."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from google.longrunning import operations_pb2
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from google.rpc import code_pb2, status_pb2

from tests.conftest import TENANT_PREFIX, VARIANT, is_sqlite, spanner_database
from tests.helpers import T0, make_event
from tracker import filtering, notices
from tracker.apply import Outcome
from tracker.commit import MAX_GROUP_EVENTS
from tracker.errors import InvalidEvent, NotFound
from tracker.events import Kind
from tracker.stores.base import DeadLetter, ListQuery, OutboxItem, Store
from tracker.stores.sqlite import SqliteStore
from tracker.stores.sqlite_times import ts
from tracker.v1 import operation_pb2

OP = "operations/job-1"


def meta(store: Store, name: str = OP) -> operation_pb2.OperationMetadata:
    stored = store.get(name)
    assert stored is not None
    m = operation_pb2.OperationMetadata()
    assert stored.operation.metadata.Unpack(m)
    return m


def outcomes(result: object) -> list[Outcome]:
    return [r.outcome for r in result.results]  # type: ignore[attr-defined]


def test_first_event_creates_unknown_operation(store: Store) -> None:
    result = store.apply([make_event(Kind.PROGRESS, OP, data={"percent": 10, "message": "a"})])
    assert outcomes(result) == [Outcome.APPLIED]
    assert meta(store).percent == 10
    assert meta(store).message == "a"
    assert not store.get(OP).operation.done  # type: ignore[union-attr]


def test_strict_rejects_unknown_operation_and_changes_nothing(strict_store: Store) -> None:
    with pytest.raises(InvalidEvent) as info:
        strict_store.apply([make_event(Kind.PROGRESS, OP, data={"percent": 10})])
    assert info.value.reason == "unknown_operation"
    assert strict_store.get(OP) is None
    strict_store.apply([make_event(Kind.CREATED, OP), make_event(Kind.PROGRESS, OP)])
    assert strict_store.get(OP) is not None


def test_duplicate_event_id_has_no_effect(store: Store) -> None:
    first = make_event(Kind.PROGRESS, OP, id="e1", data={"percent": 10})
    store.apply([first])
    # Same identity, different content: still the same event, ignored.
    again = make_event(Kind.PROGRESS, OP, id="e1", data={"percent": 90}, time=T0 + timedelta(1))
    assert outcomes(store.apply([again])) == [Outcome.DUPLICATE]
    assert meta(store).percent == 10
    # Duplicates inside one batch, too.
    e2 = make_event(Kind.PROGRESS, OP, id="e2", data={"percent": 20}, time=T0 + timedelta(2))
    assert outcomes(store.apply([e2, e2])) == [Outcome.APPLIED, Outcome.DUPLICATE]


def test_identity_includes_source(store: Store) -> None:
    a = make_event(Kind.PROGRESS, OP, id="1", source="worker-a", data={"percent": 10}, seq=1)
    b = make_event(Kind.PROGRESS, OP, id="1", source="worker-b", data={"percent": 20}, seq=2)
    assert outcomes(store.apply([a, b])) == [Outcome.APPLIED, Outcome.APPLIED]
    assert meta(store).percent == 20


def test_terminal_wins_and_second_terminal_never_overwrites(store: Store) -> None:
    ok = make_event(Kind.SUCCEEDED, OP, seq=5, data={"response": _any_struct({"rows": 3})})
    store.apply([ok])
    fail = make_event(
        Kind.FAILED, OP, seq=6, data={"error": status_pb2.Status(code=code_pb2.INTERNAL)}
    )
    late = make_event(Kind.PROGRESS, OP, seq=7, data={"percent": 50})
    assert outcomes(store.apply([fail, late])) == [Outcome.LATE, Outcome.LATE]
    op = store.get(OP).operation  # type: ignore[union-attr]
    assert op.done and op.HasField("response") and not op.HasField("error")
    result = struct_pb2.Struct()
    assert op.response.Unpack(result)
    assert result["rows"] == 3


def test_failed_has_real_error_code(store: Store) -> None:
    err = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="quota")
    store.apply([make_event(Kind.FAILED, OP, data={"error": err})])
    op = store.get(OP).operation  # type: ignore[union-attr]
    assert op.done and op.error.code == code_pb2.RESOURCE_EXHAUSTED
    assert op.error.message == "quota"


def test_cancelled_event_ends_with_code_cancelled(store: Store) -> None:
    store.apply([make_event(Kind.CANCELLED, OP, data={"reason": "user asked"})])
    op = store.get(OP).operation  # type: ignore[union-attr]
    assert op.done and op.error.code == code_pb2.CANCELLED and op.error.message == "user asked"


def test_newer_sequence_wins_no_rollback(store: Store) -> None:
    store.apply([make_event(Kind.PROGRESS, OP, seq=5, data={"percent": 50, "message": "five"})])
    older = make_event(Kind.PROGRESS, OP, seq=3, data={"percent": 30, "message": "three"})
    assert outcomes(store.apply([older])) == [Outcome.STALE]
    assert meta(store).percent == 50 and meta(store).message == "five"
    assert meta(store).last_sequence == 5


def test_event_time_orders_when_no_sequence(store: Store) -> None:
    newer = make_event(Kind.PROGRESS, OP, time=T0 + timedelta(seconds=10), data={"percent": 70})
    older = make_event(Kind.PROGRESS, OP, time=T0 + timedelta(seconds=5), data={"percent": 40})
    assert outcomes(store.apply([newer, older])) == [Outcome.APPLIED, Outcome.STALE]
    assert meta(store).percent == 70


def test_progress_older_than_terminal_still_fills_in(store: Store) -> None:
    # Delivered after the terminal event but produced before it: applied as in order.
    store.apply([make_event(Kind.FAILED, OP, seq=9, data={"error": {"code": 13}})])
    store.apply([make_event(Kind.PROGRESS, OP, seq=4, data={"percent": 40, "message": "x"})])
    assert meta(store).message == "x"
    assert store.get(OP).operation.error.code == 13  # type: ignore[union-attr]


def test_checkpoint_bytes_stored_newest_wins(store: Store) -> None:
    store.apply([make_event(Kind.CHECKPOINT, OP, seq=2, data={"data": b"\x00two"})])
    store.apply([make_event(Kind.CHECKPOINT, OP, seq=1, data={"data": b"one"})])
    assert store.checkpoint(OP) == b"\x00two"
    store.apply([make_event(Kind.CHECKPOINT, OP, seq=3, data={"data": b"three"})])
    assert store.checkpoint(OP) == b"three"
    # Other events keep the stored bytes.
    store.apply([make_event(Kind.PROGRESS, OP, seq=4)])
    assert store.checkpoint(OP) == b"three"
    with pytest.raises(NotFound):
        store.checkpoint("operations/none")


def test_created_fills_identity_whenever_it_arrives(store: Store) -> None:
    store.apply([make_event(Kind.PROGRESS, OP, seq=2, data={"percent": 5})])
    store.apply(
        [
            make_event(
                Kind.CREATED, OP, seq=1, data={"operation_type": "export", "labels": {"a": "b"}}
            )
        ]
    )
    m = meta(store)
    assert m.operation_type == "export" and dict(m.labels) == {"a": "b"} and m.percent == 5


def test_custom_metadata_type_replaces_tracker_metadata(store: Store) -> None:
    custom = _any_struct({"stage": "copy"})
    store.apply([make_event(Kind.PROGRESS, OP, data={"percent": 5, "metadata": custom})])
    op = store.get(OP).operation  # type: ignore[union-attr]
    assert op.metadata.type_url.endswith("google.protobuf.Struct")


def test_batch_is_atomic(strict_store: Store) -> None:
    good = make_event(Kind.CREATED, "operations/a")
    bad = make_event(Kind.PROGRESS, "operations/unknown")
    with pytest.raises(InvalidEvent):
        strict_store.apply([good, bad])
    assert strict_store.get("operations/a") is None
    assert strict_store.apply([good]).results[0].outcome is Outcome.APPLIED


def test_done_transition_writes_one_outbox_row(store: Store) -> None:
    store.apply([make_event(Kind.PROGRESS, OP)])
    assert store.outbox_pending() == []
    result = store.apply([make_event(Kind.SUCCEEDED, OP), make_event(Kind.CANCELLED, OP)])
    assert result.done == [OP]
    pending = store.outbox_pending()
    assert [p.operation.name for p in pending] == [OP]
    assert pending[0].operation.done
    assert pending[0].next_attempt_at == pending[0].created_at  # due at once
    store.outbox_reschedule(pending[0].id, T0, "pubsub: boom")
    again = store.outbox_pending()
    assert again[0].id == pending[0].id and again[0].attempts == 1
    store.outbox_mark_sent([pending[0].id], T0)
    assert store.outbox_pending() == []


# ---- outbox retries ------------------------------------------------------------------------


def _done_items(store: Store, *names: str) -> dict[str, OutboxItem]:
    """One done notification per name, written at T0 + i seconds; by operation name."""
    for i, name in enumerate(names):
        store.apply([make_event(Kind.SUCCEEDED, name)], now=T0 + timedelta(seconds=i))
    return {item.operation.name: item for item in store.outbox_pending()}


def _names(items: list[OutboxItem]) -> list[str]:
    return [i.operation.name for i in items]


def test_outbox_gives_each_item_its_own_next_attempt(store: Store) -> None:
    items = _done_items(store, "operations/a", "operations/b", "operations/c")
    soon = T0 + timedelta(seconds=10)
    assert _names(store.outbox_pending(now=soon)) == [
        "operations/a",
        "operations/b",
        "operations/c",
    ]
    assert _names(store.outbox_pending(now=T0)) == ["operations/a"]  # b, c not due yet
    a = items["operations/a"]
    store.outbox_reschedule(a.id, T0 + timedelta(seconds=100), "pubsub: DeadlineExceeded")
    # Only a moved: b and c are due, a comes back when its own time has come.
    assert _names(store.outbox_pending(now=soon)) == ["operations/b", "operations/c"]
    later = store.outbox_pending(now=T0 + timedelta(seconds=100))
    assert _names(later) == ["operations/b", "operations/c", "operations/a"]
    moved = later[-1]
    assert moved.id == a.id and moved.attempts == 1
    assert moved.last_error == "pubsub: DeadlineExceeded"
    assert moved.next_attempt_at == T0 + timedelta(seconds=100)
    assert _names(store.outbox_pending(limit=1, now=soon)) == ["operations/b"]
    store.outbox_reschedule(a.id, T0 + timedelta(seconds=300), "pubsub: again")
    (again,) = [i for i in store.outbox_pending() if i.id == a.id]
    assert again.attempts == 2 and again.last_error == "pubsub: again"


def test_a_late_failure_report_never_brings_a_sent_item_back(store: Store) -> None:
    item = _done_items(store, "operations/a")["operations/a"]
    store.outbox_mark_sent([item.id], T0)
    store.outbox_reschedule(item.id, T0 + timedelta(seconds=1), "late")
    store.outbox_give_up(item.id, T0, "late")
    assert store.outbox_pending() == []
    assert store.failed_notifications() == []
    assert not store.requeue_failed(item.id, T0)


def test_given_up_item_is_a_failed_notification_until_requeued(store: Store) -> None:
    items = _done_items(store, "operations/a", "operations/b")
    a, b = items["operations/a"], items["operations/b"]
    store.outbox_reschedule(a.id, T0 + timedelta(seconds=1), "first")
    gave_up = T0 + timedelta(seconds=5)
    store.outbox_give_up(a.id, gave_up, "pubsub: NotFound: topic gone")
    assert _names(store.outbox_pending()) == ["operations/b"]  # never retried
    store.outbox_reschedule(a.id, T0, "late")  # no effect on a failed notification
    assert _names(store.outbox_pending(now=T0 + timedelta(days=1))) == ["operations/b"]
    (failed,) = store.failed_notifications()
    assert (failed.id, failed.operation.name, failed.attempts) == (a.id, "operations/a", 2)
    assert failed.last_error == "pubsub: NotFound: topic gone"
    assert failed.gave_up_at == gave_up and failed.next_attempt_at is None
    assert failed.operation.done

    assert not store.requeue_failed(b.id, T0)  # pending, not failed
    assert not store.requeue_failed("no-such-id", T0)
    requeued_at = T0 + timedelta(seconds=50)
    assert store.requeue_failed(a.id, requeued_at)
    assert not store.requeue_failed(a.id, requeued_at)  # once
    assert store.failed_notifications() == []
    assert _names(store.outbox_pending(now=T0 + timedelta(seconds=49))) == ["operations/b"]
    due = store.outbox_pending(now=requeued_at)
    assert _names(due) == ["operations/b", "operations/a"]
    assert due[1].id == a.id and due[1].attempts == 0 and due[1].gave_up_at is None


def test_failed_notifications_page_oldest_first(store: Store) -> None:
    items = _done_items(store, *(f"operations/f{i}" for i in range(5)))
    when = [T0 + timedelta(seconds=s) for s in (3, 1, 2, 2, 9)]
    for (name, item), t in zip(sorted(items.items()), when, strict=True):
        store.outbox_give_up(item.id, t, f"failed {name}")
    expected = sorted(store.failed_notifications(), key=lambda i: (i.gave_up_at, i.id))
    assert len(expected) == 5 and store.failed_notifications() == expected
    pages, after = [], None
    while True:
        page = store.failed_notifications(limit=2, after=after)
        if not page:
            break
        assert len(page) <= 2
        pages += page
        last = page[-1]
        assert last.gave_up_at is not None
        after = (last.gave_up_at, last.id)
    assert [p.id for p in pages] == [e.id for e in expected]
    assert _names(expected)[0] == "operations/f1" and _names(expected)[-1] == "operations/f4"


def test_cancel_ends_operation_once(store: Store) -> None:
    store.apply([make_event(Kind.PROGRESS, OP, seq=1)])
    stored, became_done = store.cancel(OP)
    assert became_done and stored.operation.error.code == code_pb2.CANCELLED
    assert stored.state.cancel_requested
    _, again = store.cancel(OP)
    assert not again
    # One done-notice and one cancel notice (for the worker), each written once.
    kinds = sorted(i.notice.kind for i in store.outbox_pending())
    assert kinds == [notices.DONE, notices.CANCEL]
    late = make_event(Kind.SUCCEEDED, OP, seq=2)
    assert outcomes(store.apply([late])) == [Outcome.LATE]
    with pytest.raises(NotFound):
        store.cancel("operations/none")


def test_after_cancel_every_event_is_late_sequence_or_not(store: Store) -> None:
    store.apply([make_event(Kind.PROGRESS, OP, seq=1, data={"percent": 10, "message": "a"})])
    store.cancel(OP, T0 + timedelta(minutes=1))
    # Before or after the cancel by the producer's clock, with or without a sequence.
    events = [
        make_event(Kind.PROGRESS, OP, seq=2, data={"percent": 50, "message": "b"}),
        make_event(Kind.PROGRESS, OP, seq=3, time=T0 + timedelta(hours=1), data={"percent": 60}),
        make_event(Kind.PROGRESS, OP, data={"percent": 70}),
        make_event(Kind.CHECKPOINT, OP, seq=4, data={"data": b"x"}),
        make_event(Kind.SUCCEEDED, OP, seq=5),
    ]
    assert outcomes(store.apply(events)) == [Outcome.LATE] * len(events)
    m = meta(store)
    assert (m.percent, m.message) == (10, "a")
    stored = store.get(OP)
    assert stored is not None and stored.checkpoint is None
    assert stored.operation.error.code == code_pb2.CANCELLED


def test_after_expiry_every_event_is_late(store: Store) -> None:
    created = make_event(
        Kind.CREATED, OP, seq=1, data={"heartbeat_timeout": duration_pb2.Duration(seconds=10)}
    )
    store.apply([created])
    (expired,) = store.expire_due(T0 + timedelta(minutes=5))
    late = make_event(Kind.PROGRESS, OP, seq=2, data={"percent": 90})
    assert outcomes(store.apply([late])) == [Outcome.LATE]
    assert meta(store).percent == 0
    assert expired.operation.error.code == code_pb2.DEADLINE_EXCEEDED


def test_a_new_event_for_a_deleted_operation_does_not_bring_it_back(store: Store) -> None:
    store.apply([make_event(Kind.CREATED, OP), make_event(Kind.PROGRESS, OP, seq=1)])
    assert store.delete(OP)
    # Events never seen before: a worker still running, a late `created`.
    late = [
        make_event(Kind.HEARTBEAT, OP, seq=2),
        make_event(Kind.CREATED, OP),
        make_event(Kind.SUCCEEDED, OP, seq=3),
    ]
    assert outcomes(store.apply(late)) == [Outcome.LATE] * 3
    assert store.get(OP) is None
    assert store.outbox_pending() == []
    # An operation that never existed is still created by its first event.
    other = "operations/never-seen"
    assert outcomes(store.apply([make_event(Kind.PROGRESS, other)])) == [Outcome.APPLIED]


class _Calls:
    """A Spanner client transaction that notes the name of every method called on it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attr(*args, **kwargs)

        return call


def test_a_removed_name_is_told_from_the_names_it_prefixes(store: Store, backend: str) -> None:
    gone, longer, shorter = "operations/pre", "operations/prefix", "operations/pr"
    store.apply([make_event(Kind.CREATED, gone), make_event(Kind.PROGRESS, gone, seq=1)])
    assert store.delete(gone)
    batch = [make_event(Kind.PROGRESS, n, seq=2) for n in (gone, longer, shorter)]
    assert outcomes(store.apply(batch)) == [Outcome.LATE, Outcome.APPLIED, Outcome.APPLIED]
    assert store.get(gone) is None and store.get(longer) and store.get(shorter)
    if is_sqlite(backend):
        return  # its load statement answers this (tests/integration/test_sqlite_store.py)

    # On the canonical schema (Google's emulator, Cloud Spanner) one read of the names'
    # key prefixes, not a query, which Google's emulator answers by scanning the table;
    # handy-spanner reads no prefix range: a query there.
    def removed(tx: Any) -> tuple[set[str], list[str]]:
        tx.t = recorded = _Calls(tx.t)
        return tx.removed([gone, "operations/prefix-never", "operations/p"]), recorded.calls

    found, calls = store.run_in_transaction(removed)
    assert found == {gone}
    assert calls == (["read"] if VARIANT[backend] == "canonical" else ["execute_sql"])


def test_a_batch_of_many_new_names_applies(store: Store) -> None:
    # As large as a group transaction gets (tracker.commit.MAX_GROUP_EVENTS), every name
    # new: handy-spanner took at most 127 names in the removal query and 999 key columns
    # in a read (the rows, the de-duplication records, the history heads), and failed
    # the batch as unavailable, so it was retried forever (tracker.stores.spanner_keys).
    names = [f"operations/many-{i:04d}" for i in range(MAX_GROUP_EVENTS)]
    assert not store.delete(names[7])  # nothing to delete: it stays a new name
    store.apply([make_event(Kind.CREATED, names[250])])
    assert store.delete(names[250])
    batch = [make_event(Kind.CREATED, n) for n in names]
    expected = [Outcome.LATE if n == names[250] else Outcome.APPLIED for n in names]
    assert outcomes(store.apply(batch)) == expected
    assert store.get(names[-1]) and store.get(names[250]) is None
    assert len(store.get_operations(names)) == len(names) - 1


def test_delete_keeps_dedup_so_redelivery_does_not_resurrect(store: Store) -> None:
    event = make_event(Kind.SUCCEEDED, OP)
    store.apply([event])
    assert store.delete(OP)
    assert not store.delete(OP)
    assert outcomes(store.apply([event])) == [Outcome.DUPLICATE]
    assert store.get(OP) is None


def test_list_filters_and_pages(store: Store) -> None:
    for i in range(7):
        name = f"operations/batch-{i}"
        events = [
            make_event(Kind.CREATED, name, data={"labels": {"env": "prod" if i % 2 else "dev"}})
        ]
        if i < 3:
            events.append(make_event(Kind.SUCCEEDED, name))
        store.apply(events)
    store.apply([make_event(Kind.CREATED, "operations/other", data={"operation_type": "x"})])

    def names(text: str, size: int = 100, after: str = "") -> list[str]:
        q = ListQuery(filter=filtering.parse(text), page_size=size, after=after)
        return [s.state.name for s in store.list_operations(q)]

    assert names("done = true") == [f"operations/batch-{i}" for i in range(3)]
    assert len(names("done = false")) == 5
    assert names('labels.env = "prod"') == [
        "operations/batch-1",
        "operations/batch-3",
        "operations/batch-5",
    ]
    assert names('name = "operations/oth*"') == ["operations/other"]
    assert names('operation_type = "x" OR labels.env = "dev" AND done = true') == [
        "operations/batch-0",
        "operations/batch-2",
    ]
    assert names("NOT labels:env") == ["operations/other"]
    # AIP-160's has: `field:*` on a string field is presence (set, not empty), on every
    # backend; `labels.k:v` is the map's value test, equal as AIP-160 says.
    assert names("operation_type:*") == ["operations/other"]
    assert names("NOT operation_type:*") == [f"operations/batch-{i}" for i in range(7)]
    assert names('labels.env:"prod"') == names('labels.env = "prod"')
    # Paging: page_size + 1 rows say there is more; `after` resumes.
    page = names("", size=3)
    assert len(page) == 4
    assert names("", size=3, after=page[2])[0] == page[3]


def test_dead_letters_recorded_and_removed(store: Store) -> None:
    letter = DeadLetter(
        id="d1",
        received_at=T0,
        route="push",
        reason="bad_base64",
        detail="x",
        attributes={"ce-id": "1"},
        body=b"\xff",
        message_id="m1",
    )
    store.add_dead_letter(letter)
    assert store.dead_letters() == [letter]
    assert store.remove_dead_letter("d1")
    assert store.dead_letters() == []


def _any_struct(value: dict[str, Any]) -> Any:
    from google.protobuf import any_pb2

    s = struct_pb2.Struct()
    s.update(value)
    a = any_pb2.Any()
    a.Pack(s)
    return a


def test_heartbeat_timeout_expires_an_operation_that_goes_quiet(store: Store) -> None:
    created = make_event(
        Kind.CREATED,
        OP,
        seq=1,
        time=T0,
        data={"heartbeat_timeout": duration_pb2.Duration(seconds=10)},
    )
    store.apply([created])
    assert store.expire_due(T0 + timedelta(seconds=9)) == []
    store.apply([make_event(Kind.HEARTBEAT, OP, seq=2, time=T0 + timedelta(seconds=8))])
    assert store.expire_due(T0 + timedelta(seconds=17)) == []  # the heartbeat moved it
    (expired,) = store.expire_due(T0 + timedelta(seconds=19))
    assert expired.operation.done and expired.operation.error.code == code_pb2.DEADLINE_EXCEEDED
    assert "heartbeat" in expired.operation.error.message
    assert [p.operation.name for p in store.outbox_pending()] == [OP]
    late = make_event(Kind.SUCCEEDED, OP, seq=3, time=T0 + timedelta(seconds=30))
    assert outcomes(store.apply([late])) == [Outcome.LATE]
    assert store.expire_due(T0 + timedelta(days=1)) == []  # done: never again


def test_deadline_expires_and_done_operations_do_not(store: Store) -> None:
    deadline = timestamp_pb2.Timestamp()
    deadline.FromDatetime(T0 + timedelta(minutes=5))
    store.apply([make_event(Kind.CREATED, OP, time=T0, data={"deadline": deadline})])
    store.apply(
        [
            make_event(Kind.CREATED, "operations/quick", time=T0, data={"deadline": deadline}),
            make_event(Kind.SUCCEEDED, "operations/quick", time=T0),
        ]
    )
    store.apply([make_event(Kind.CREATED, "operations/no-deadline", time=T0)])
    assert store.expire_due(T0 + timedelta(minutes=4)) == []
    (expired,) = store.expire_due(T0 + timedelta(minutes=6))
    assert expired.state.name == OP and "deadline" in expired.operation.error.message
    assert store.get("operations/quick").operation.HasField("response")  # type: ignore[union-attr]
    assert not store.get("operations/no-deadline").operation.done  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "text",
    [
        "done = false",
        'done = true AND operation_type = "a"',
        'operation_type = "b" AND parent = "p1"',
        'parent = "p2" AND labels.env = "prod" AND done = false',
        'done != true AND operation_type = "a*"',
        'NOT done = true AND parent = "p1"',
    ],
)
def test_list_agrees_with_the_reference_filter(store: Store, text: str) -> None:
    from datetime import UTC

    for i in range(12):
        name = f"operations/mix-{i:02d}"
        events = [
            make_event(
                Kind.CREATED,
                name,
                data={
                    "operation_type": "ab"[i % 2],
                    "parent": f"p{i % 3}",
                    "labels": {"env": "prod" if i % 4 else "dev"},
                },
            )
        ]
        if i % 5 == 0:
            events.append(make_event(Kind.SUCCEEDED, name))
        store.apply(events)
    everything = store.list_operations(ListQuery(page_size=100))
    expr = filtering.parse(text)
    expected = [
        s.state.name
        for s in everything
        if filtering.matches(
            expr,
            filtering.Row(
                name=s.state.name,
                done=s.state.done,
                operation_type=s.state.operation_type,
                parent=s.state.parent,
                labels=dict(s.state.labels),
                create_time=s.state.create_time.ToDatetime(UTC),
                update_time=s.state.update_time.ToDatetime(UTC),
            ),
        )
    ]
    assert expected, "the fixture must match something"
    got = [s.state.name for s in store.list_operations(ListQuery(filter=expr, page_size=100))]
    assert got == expected


def test_rows_left_pending_by_schema_version_1_are_delivered_after_the_upgrade(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database of version 1 with a pending and a sent outbox row, then migrated: the
    pending one is due (same id), the sent one stays sent."""
    import base64
    import sqlite3

    from tracker.schemas import schemas_root

    v1 = tmp_path / "schemas-v1"
    for kind in ("sqlite", "spanner"):
        (v1 / kind).mkdir(parents=True)
        (v1 / kind / "0001_init.sql").write_text(
            (schemas_root() / kind / "0001_init.sql").read_text()
        )
    monkeypatch.setenv("TRACKER_SCHEMAS_DIR", str(v1))
    payload = operations_pb2.Operation(name="operations/old", done=True).SerializeToString()
    rows = [("pending-1", T0, None), ("sent-1", T0, T0 + timedelta(seconds=1))]
    if is_sqlite(backend):
        prefix = TENANT_PREFIX if backend == "sqlite-tenant" else ""
        SqliteStore(tmp_path / "old.db", table_prefix=prefix).close()  # version 1 only
        with sqlite3.connect(tmp_path / "old.db") as conn:
            conn.executemany(
                f"INSERT INTO {prefix}outbox"
                " (id, operation, payload, state, created_at, attempts, sent_at)"
                " VALUES (?, 'operations/old', ?, x'', ?, 3, ?)",
                [(i, payload, ts(c), ts(s) if s else None) for i, c, s in rows],
            )
        monkeypatch.delenv("TRACKER_SCHEMAS_DIR")
        store: Store = SqliteStore(tmp_path / "old.db", table_prefix=prefix)
    else:
        from tracker.stores import spanner_schema
        from tracker.stores.spanner import SpannerStore

        path = spanner_database(backend, request.getfixturevalue("spanner_hosts"), monkeypatch)
        database = spanner_schema.open_database(path)
        assert spanner_schema.applied_versions(database) == {1: VARIANT[backend]}
        database.run_in_transaction(
            lambda t: t.insert(
                "Outbox",
                ("Id", "OperationKey", "Payload", "State", "CreatedAt", "Attempts", "SentAt"),
                [
                    (i, "operations/old", base64.b64encode(payload), b"", c, 3, s)
                    for i, c, s in rows
                ],
            )
        )
        monkeypatch.delenv("TRACKER_SCHEMAS_DIR")
        assert 2 in spanner_schema.apply(database, VARIANT[backend])  # type: ignore[arg-type]
        store = SpannerStore(path, explicit_begin=backend == "spanner-handy")
    try:
        (pending,) = store.outbox_pending(now=T0)
        assert (pending.id, pending.operation.name, pending.attempts) == (
            "pending-1",
            "operations/old",
            3,
        )
        store.outbox_mark_sent([pending.id], T0)
        assert store.outbox_pending() == [] and store.failed_notifications() == []
    finally:
        store.close()


def test_reads_for_the_api_take_only_what_they_serve(store: Store) -> None:
    store.apply([make_event(Kind.PROGRESS, OP, data={"percent": 5})])
    operation = store.get_operation(OP)
    assert operation is not None and operation.name == OP and not operation.done
    assert store.get_operation("operations/none") is None
    assert store.read_checkpoint(OP) == (True, None)
    store.apply([make_event(Kind.CHECKPOINT, OP, data={"data": b"\x00state\xff"})])
    assert store.read_checkpoint(OP) == (True, b"\x00state\xff")
    assert store.checkpoint(OP) == b"\x00state\xff"
    assert store.read_checkpoint("operations/none") == (False, None)
    with pytest.raises(NotFound):
        store.checkpoint("operations/none")


def test_the_longest_heartbeat_timeout_and_the_last_deadline_are_stored(store: Store) -> None:
    """Was an OverflowError inside the apply transaction (a 500): the due time of a 10,000
    year heartbeat timeout is past datetime.max, so that timeout never comes; a deadline
    still does."""
    from datetime import UTC, datetime

    longest = duration_pb2.Duration(seconds=315576000000, nanos=999999999)
    last = timestamp_pb2.Timestamp(seconds=253402300799, nanos=999999999)
    year_9000 = timestamp_pb2.Timestamp()
    year_9000.FromDatetime(datetime(9000, 1, 1, tzinfo=UTC))
    store.apply(
        [
            make_event(Kind.CREATED, "operations/forever", data={"heartbeat_timeout": longest}),
            make_event(Kind.CREATED, "operations/last", data={"deadline": last}),
            make_event(
                Kind.CREATED,
                "operations/both",
                data={"heartbeat_timeout": longest, "deadline": year_9000},
            ),
        ]
    )
    store.apply([make_event(Kind.HEARTBEAT, "operations/forever")])  # and saved again
    assert meta(store, "operations/last").deadline == last
    # The latest "now" whose retention time (now + 30 days) is still a datetime.
    late = datetime(9999, 11, 1, tzinfo=UTC)
    (expired,) = store.expire_due(late)
    assert expired.state.name == "operations/both" and "deadline" in expired.operation.error.message
    assert store.expire_due(late) == []
    for name in ("operations/forever", "operations/last"):
        assert not store.get(name).operation.done  # type: ignore[union-attr]


def test_event_times_before_year_1000_keep_time_order(store: Store) -> None:
    """The SQLite text form of a time was not zero-padded before year 1000 ('500-01-01'
    sorted after '2026-...'): a create_time filter missed such operations."""
    from datetime import UTC, datetime

    store.apply(
        [make_event(Kind.CREATED, "operations/ancient", time=datetime(500, 1, 1, tzinfo=UTC))]
    )
    store.apply([make_event(Kind.CREATED, "operations/recent", time=T0)])
    for text, want in (
        ('create_time < "1000-01-01T00:00:00Z"', ["operations/ancient"]),
        ('create_time > "1000-01-01T00:00:00Z"', ["operations/recent"]),
        ('create_time >= "0001-01-01T00:00:00Z"', ["operations/ancient", "operations/recent"]),
    ):
        query = ListQuery(filter=filtering.parse(text), page_size=10)
        assert [s.state.name for s in store.list_operations(query)] == want, text
