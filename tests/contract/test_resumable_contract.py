"""Resumable work, on every store backend: attempts, retries, stalls, children, cancels.

The rules of docs/semantics.md ("Attempts, retries and children"), each through
`Store.apply` / `expire_due` / `cancel` on the `store` fixture, and the cascade through
the `Tracker` (its dispatcher's passes) over that store. The outbox rows are read back as
the dispatcher would: kind, reason, attempt, and when each is due.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2
from google.rpc import code_pb2, status_pb2

from tests.helpers import T0, make_event
from tracker import notices
from tracker.apply import Outcome
from tracker.events import Event, Kind
from tracker.service import Tracker
from tracker.stores.base import OutboxItem, Store
from tracker.v1 import events_pb2, operation_pb2

OP = "operations/resumable-1"
PARENT = "operations/parent-1"
Notice = operation_pb2.Notice
OnDone = events_pb2.ChildrenPolicy


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ev(kind: Kind, name: str = OP, *, attempt: int | None = None, t: float, **kw: Any) -> Event:
    return replace(make_event(kind, name, time=at(t), **kw), attempt=attempt)


def seconds(value: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(timedelta(seconds=value))
    return d


def retry(max_attempts: int, initial: float = 1.0, *codes: int) -> events_pb2.RetryPolicy:
    return events_pb2.RetryPolicy(
        max_attempts=max_attempts,
        initial_backoff=seconds(initial),
        backoff_multiplier=2.0,
        retryable_status_codes=list(codes),
    )


def created(name: str = OP, *, t: float = 0, **fields: Any) -> Event:
    return ev(Kind.CREATED, name, t=t, data=events_pb2.Created(operation_type="export", **fields))


def failed(code: int, *, t: float, attempt: int | None = None, name: str = OP) -> Event:
    error = status_pb2.Status(code=code, message=f"code {code}")
    return ev(Kind.FAILED, name, attempt=attempt, t=t, data={"error": error})


def meta(store: Store, name: str = OP) -> operation_pb2.OperationMetadata:
    stored = store.get(name)
    assert stored is not None, name
    m = operation_pb2.OperationMetadata()
    assert stored.operation.metadata.Unpack(m)
    return m


def rows(store: Store, name: str = OP, kind: int | None = None) -> list[OutboxItem]:
    """The pending outbox rows of `name` (of `kind`), earliest due first."""
    return [
        i
        for i in store.outbox_pending(1000)
        if i.notice.operation == name and (kind is None or i.notice.kind == kind)
    ]


# ---- attempts -------------------------------------------------------------------------------


def test_a_later_attempt_is_newer_whatever_the_sequence(store: Store) -> None:
    first = ev(Kind.PROGRESS, t=5, seq=99, data={"percent": 90, "message": "attempt 1"})
    second = ev(Kind.PROGRESS, attempt=2, t=1, seq=1, data={"percent": 10, "message": "a2"})
    store.apply([created(), second])
    assert [r.outcome for r in store.apply([first]).results] == [Outcome.STALE]
    m = meta(store)
    assert (m.percent, m.message, m.attempt, m.attempt_reason) == (10, "a2", 2, "restarted")
    assert m.last_sequence == 1  # the new attempt's numbering, not attempt 1's 99


def test_a_second_created_never_moves_create_time(store: Store) -> None:
    store.apply([created(t=10)])
    store.apply([replace(created(t=20), attempt=2)])  # a restarted worker says created again
    assert meta(store).create_time.ToDatetime(UTC) == at(10)
    other = "operations/resumable-2"
    store.apply([replace(created(other, t=20), attempt=2)])  # delivered the other way round
    store.apply([created(other, t=10)])
    assert meta(store, other).create_time.ToDatetime(UTC) == at(10)


# ---- retries --------------------------------------------------------------------------------


def test_a_retryable_failure_starts_the_next_attempt_until_the_last(store: Store) -> None:
    store.apply([created(retry=retry(3, 1.0))], now=at(0))
    result = store.apply([failed(code_pb2.UNAVAILABLE, t=1)], now=at(1))
    assert result.results[0].status is not None and result.results[0].status.state == "running"
    m = meta(store)
    assert (m.attempt, m.attempt_reason, m.last_attempt_error.code) == (
        2,
        "failed",
        code_pb2.UNAVAILABLE,
    )
    assert m.attempt_start_time.ToDatetime(UTC) == at(2)  # initial backoff 1 s
    (resume,) = rows(store, kind=notices.RESUME)
    assert (resume.notice.attempt, resume.notice.reason) == (2, Notice.FAILED)
    assert resume.notice.error.code == code_pb2.UNAVAILABLE
    assert resume.next_attempt_at == at(2)  # the row is due when the backoff has passed
    assert [i.id for i in store.outbox_pending(100, at(1.5)) if i.id == resume.id] == []
    assert [i.id for i in store.outbox_pending(100, at(2)) if i.id == resume.id] == [resume.id]

    store.apply([failed(code_pb2.UNAVAILABLE, t=3, attempt=2)], now=at(3))
    m = meta(store)
    assert m.attempt == 3 and m.attempt_start_time.ToDatetime(UTC) == at(5)  # 2 s: doubled
    store.apply([failed(code_pb2.UNAVAILABLE, t=6, attempt=3)], now=at(6))
    stored = store.get(OP)
    assert stored is not None and stored.operation.done  # the last attempt: it fails
    assert stored.operation.error.code == code_pb2.UNAVAILABLE
    assert [i.notice.attempt for i in rows(store, kind=notices.RESUME)] == [2, 3]


def test_a_non_retryable_failure_fails_at_once(store: Store) -> None:
    store.apply([created(retry=retry(5, 1.0, code_pb2.UNAVAILABLE))])
    store.apply([failed(code_pb2.INTERNAL, t=1)])  # retryable by default, not in this policy
    stored = store.get(OP)
    assert stored is not None and stored.operation.done
    assert stored.operation.error.code == code_pb2.INTERNAL
    assert rows(store, kind=notices.RESUME) == []


def test_the_failure_of_a_superseded_attempt_is_late(store: Store) -> None:
    store.apply([created(retry=retry(3))])
    store.apply([failed(code_pb2.UNAVAILABLE, t=1)])  # attempt 2 starts
    late = failed(code_pb2.NOT_FOUND, t=2)  # attempt 1 again (a zombie worker)
    assert [r.outcome for r in store.apply([late]).results] == [Outcome.LATE]
    assert not store.get(OP).operation.done  # type: ignore[union-attr]
    ok = ev(Kind.SUCCEEDED, t=3, attempt=1)  # but a success of any attempt counts
    assert [r.outcome for r in store.apply([ok]).results] == [Outcome.APPLIED]
    assert store.get(OP).operation.done  # type: ignore[union-attr]


def test_a_stall_starts_the_next_attempt_after_its_backoff_then_fails(store: Store) -> None:
    store.apply(
        [created(heartbeat_timeout=seconds(10), retry=retry(2, 3.0))],
        now=at(0),
    )
    assert store.expire_due(now=at(9)) == []
    (stalled,) = store.expire_due(now=at(11))
    assert not stalled.operation.done
    m = meta(store)
    assert (m.attempt, m.attempt_reason) == (2, "stalled")
    assert m.last_attempt_error.code == code_pb2.DEADLINE_EXCEEDED
    assert m.attempt_start_time.ToDatetime(UTC) == at(14)
    (resume,) = rows(store, kind=notices.RESUME)
    assert (resume.notice.reason, resume.notice.attempt) == (Notice.STALLED, 2)
    assert resume.next_attempt_at == at(14)
    assert resume.notice.not_before.ToDatetime(UTC) == at(14)
    # Attempt 2's liveness counts from its start, not from attempt 1's last event.
    assert store.expire_due(now=at(23)) == []
    (ended,) = store.expire_due(now=at(25))
    assert ended.operation.done and ended.operation.error.code == code_pb2.DEADLINE_EXCEEDED
    assert "attempt 2" in ended.operation.error.message
    assert len(rows(store, kind=notices.RESUME)) == 1  # the last attempt: no resume


def test_a_resume_notice_says_whether_there_is_a_checkpoint(store: Store) -> None:
    store.apply(
        [
            created(retry=retry(2)),
            ev(Kind.CHECKPOINT, t=1, data={"data": b"cursor=7"}),
            failed(code_pb2.ABORTED, t=2),
        ]
    )
    (resume,) = rows(store, kind=notices.RESUME)
    assert resume.notice.has_checkpoint and resume.notice.operation_type == "export"


# ---- children -------------------------------------------------------------------------------


def child(i: int, *, parent: str = PARENT, t: float = 1) -> Event:
    return created(f"{parent}-c{i}", t=t, parent=parent)


def end(i: int, outcome: str, *, parent: str = PARENT, t: float = 5) -> Event:
    name = f"{parent}-c{i}"
    if outcome == "succeeded":
        return ev(Kind.SUCCEEDED, name, t=t)
    if outcome == "cancelled":
        return ev(Kind.CANCELLED, name, t=t)
    return failed(code_pb2.NOT_FOUND, t=t, name=name)


def test_children_are_counted_and_the_last_end_resumes_the_parent_once(store: Store) -> None:
    policy = events_pb2.ChildrenPolicy(on_done=OnDone.RESUME)
    store.apply([created(PARENT, children=policy), *(child(i) for i in range(3))])
    assert meta(store, PARENT).children.total == 3
    store.apply([end(0, "succeeded"), end(1, "failed")])
    summary = meta(store, PARENT).children
    assert (summary.total, summary.done, summary.succeeded, summary.failed) == (3, 2, 1, 1)
    assert round(summary.percent, 2) == 66.67
    assert rows(store, PARENT, notices.RESUME) == []
    store.apply([end(2, "cancelled")])
    store.apply([end(2, "cancelled")])  # a redelivery counts nothing twice
    summary = meta(store, PARENT).children
    assert (summary.done, summary.cancelled, summary.percent) == (3, 1, 100.0)
    (resume,) = rows(store, PARENT, notices.RESUME)
    assert (resume.notice.reason, resume.notice.attempt) == (Notice.CHILDREN_DONE, 2)
    assert resume.notice.children.done == 3
    assert resume.next_attempt_at is not None and resume.next_attempt_at <= datetime.now(UTC)
    assert meta(store, PARENT).attempt_reason == "children_done"
    assert not store.get(PARENT).operation.done  # type: ignore[union-attr]


def test_complete_succeeds_the_parent_with_the_summary(store: Store) -> None:
    policy = events_pb2.ChildrenPolicy(on_done=OnDone.COMPLETE)
    store.apply([created(PARENT, children=policy), child(0), child(1)])
    store.apply([end(0, "succeeded"), end(1, "succeeded")])
    stored = store.get(PARENT)
    assert stored is not None and stored.operation.done
    summary = operation_pb2.ChildrenSummary()
    assert stored.operation.response.Unpack(summary)
    assert (summary.total, summary.succeeded) == (2, 2)
    assert [i.notice.kind for i in rows(store, PARENT)] == [notices.DONE]


def test_complete_fails_the_parent_when_a_child_did_not_succeed(store: Store) -> None:
    policy = events_pb2.ChildrenPolicy(on_done=OnDone.COMPLETE)
    store.apply([created(PARENT, children=policy), child(0), child(1)])
    store.apply([end(0, "failed")])
    assert not store.get(PARENT).operation.done  # type: ignore[union-attr]
    store.apply([end(1, "succeeded")])
    stored = store.get(PARENT)
    assert stored is not None and stored.operation.error.code == code_pb2.ABORTED
    assert "1 of 2 children did not succeed" in stored.operation.error.message


def test_fail_fast_fails_the_parent_at_the_first_failed_child(store: Store) -> None:
    policy = events_pb2.ChildrenPolicy(on_done=OnDone.COMPLETE, fail_fast=True)
    store.apply([created(PARENT, children=policy), child(0), child(1), child(2)])
    store.apply([end(1, "failed")])
    stored = store.get(PARENT)
    assert stored is not None and stored.operation.error.code == code_pb2.NOT_FOUND
    assert f"child {PARENT}-c1 did not succeed" in stored.operation.error.message
    (cancel,) = rows(store, PARENT, notices.CANCEL)
    assert cancel.notice.reason == Notice.CHILD_FAILED and cancel.notice.children.total == 3
    store.apply([end(2, "failed")])  # fired once
    assert len(rows(store, PARENT, notices.CANCEL)) == 1


def test_expected_children_wait_for_the_expected_count(store: Store) -> None:
    policy = events_pb2.ChildrenPolicy(on_done=OnDone.COMPLETE, expected=3)
    store.apply([created(PARENT, children=policy), child(0), end(0, "succeeded")])
    store.apply([child(1), end(1, "succeeded")])
    m = meta(store, PARENT)
    assert round(m.children.percent, 2) == 66.67 and not store.get(PARENT).operation.done  # type: ignore[union-attr]
    store.apply([child(2), end(2, "succeeded")])
    assert store.get(PARENT).operation.done  # type: ignore[union-attr]


def test_children_counted_before_the_parent_exists(store: Store) -> None:
    store.apply([child(0), child(1)])  # the parent's created comes later
    parent = store.get(PARENT)
    assert parent is not None and not parent.operation.done
    assert meta(store, PARENT).children.total == 2
    policy = events_pb2.ChildrenPolicy(on_done=OnDone.COMPLETE)
    store.apply([created(PARENT, children=policy, t=0)])
    assert meta(store, PARENT).children.total == 2  # its created keeps the counts
    store.apply([end(0, "succeeded"), end(1, "succeeded")])
    assert store.get(PARENT).operation.done  # type: ignore[union-attr]


def test_children_that_all_ended_before_the_parents_policy_arrived(store: Store) -> None:
    store.apply([child(0), child(1), end(0, "succeeded"), end(1, "succeeded")])
    assert not store.get(PARENT).operation.done  # type: ignore[union-attr]
    policy = events_pb2.ChildrenPolicy(on_done=OnDone.RESUME)
    store.apply([created(PARENT, children=policy, t=0)])
    (resume,) = rows(store, PARENT, notices.RESUME)  # the policy fires when it arrives
    assert resume.notice.reason == Notice.CHILDREN_DONE and resume.notice.children.done == 2
    other = "operations/parent-2"
    store.apply([child(0, parent=other), end(0, "succeeded", parent=other)])
    complete = events_pb2.ChildrenPolicy(on_done=OnDone.COMPLETE)
    store.apply([created(other, children=complete, t=0)])
    assert store.get(other).operation.done  # type: ignore[union-attr]
    assert [i.notice.kind for i in rows(store, other)] == [notices.DONE]


def test_a_child_created_under_a_cancelled_parent_is_cancelled_at_once(store: Store) -> None:
    store.apply([created(PARENT), child(0)])
    store.cancel(PARENT)
    late = child(1, t=9)
    result = store.apply([late])
    assert result.results[0].status is not None
    assert result.results[0].status.state == "cancelled"
    stored = store.get(late.operation)
    assert stored is not None and stored.operation.error.code == code_pb2.CANCELLED
    (cancel,) = rows(store, late.operation, notices.CANCEL)
    assert cancel.notice.reason == Notice.PARENT_CANCELLED
    assert meta(store, PARENT).children.cancelled == 1


def test_cancelling_a_parent_cancels_its_running_children(store: Store) -> None:
    store.apply([created(PARENT), *(child(i) for i in range(3)), end(0, "succeeded")])

    async def cancel_and_deliver() -> None:
        # The Tracker every route calls; its dispatcher passes run here, not in a loop of
        # their own, so nothing is left running on the store when the test ends.
        tracker = Tracker(store)
        await tracker.cancel(PARENT)
        # The cascade is an outbox sink: a pass of the dispatcher delivers it; the
        # children's own cancel rows, which it writes, are due after that pass began, so
        # the next pass takes them.
        for _ in range(2):
            await tracker.dispatcher.drain()

    asyncio.run(cancel_and_deliver())
    for i in (1, 2):
        stored = store.get(f"{PARENT}-c{i}")
        assert stored is not None and stored.operation.error.code == code_pb2.CANCELLED
        assert "its parent operation ended" in stored.operation.error.message
    stored = store.get(f"{PARENT}-c0")
    assert stored is not None and stored.operation.HasField("response")  # ended before
    summary = meta(store, PARENT).children
    assert (summary.done, summary.succeeded, summary.cancelled) == (3, 1, 2)
    assert store.outbox_pending() == []  # every row the cascade wrote was delivered
