"""The store contract: every rule of the event model, on every backend."""

from __future__ import annotations

from datetime import timedelta

import pytest
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from google.rpc import code_pb2, status_pb2

from tests.helpers import T0, make_event
from tracker import filtering
from tracker.apply import Outcome
from tracker.errors import InvalidEvent, NotFound
from tracker.events import Kind
from tracker.stores.base import DeadLetter, ListQuery, Store
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
    store.outbox_failed(pending[0].id)
    again = store.outbox_pending()
    assert again[0].id == pending[0].id and again[0].attempts == 1
    store.outbox_mark_sent([pending[0].id], T0)
    assert store.outbox_pending() == []


def test_cancel_ends_operation_once(store: Store) -> None:
    store.apply([make_event(Kind.PROGRESS, OP, seq=1)])
    stored, became_done = store.cancel(OP)
    assert became_done and stored.operation.error.code == code_pb2.CANCELLED
    assert stored.state.cancel_requested
    _, again = store.cancel(OP)
    assert not again
    assert len(store.outbox_pending()) == 1
    late = make_event(Kind.SUCCEEDED, OP, seq=2)
    assert outcomes(store.apply([late])) == [Outcome.LATE]
    with pytest.raises(NotFound):
        store.cancel("operations/none")


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


def _any_struct(value: dict[str, object]):  # type: ignore[no-untyped-def]
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
