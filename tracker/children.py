"""Parents and children: a child's start and end counted in its parent, and the parent's
`ChildrenPolicy` fired once, when its last child ends. Pure: no I/O.

A child counts in its parent when its `parent` names an operation (a name the tracker
accepts, `EventRules.check_name`); the parent row is created on the spot if it does not
exist yet, so that children counted before the parent's own `created` are not lost. The
first parent a child names is the one it counts in.

The counts are updated in the transaction that starts or ends the child, on the parent's
row: two children ending at once on two processes are two transactions on that row, one
after the other, and only the one that sees the last end fires the policy
(`children_fired` is then set on the row). That is what makes the resume exactly one.

Percent is the share of children ended, 100 * done / max(total, expected), not the mean
of the children's own progress: that would write the parent on every child's progress
event, one hot row for all of them.
"""

from __future__ import annotations

from datetime import datetime

from google.protobuf import any_pb2
from google.rpc import code_pb2, status_pb2

from tracker import apply, notices
from tracker.apply import Notice, OperationState
from tracker.v1 import events_pb2, operation_pb2

ChildrenSummary = operation_pb2.ChildrenSummary
OnDone = events_pb2.ChildrenPolicy


def wants_counting(child: OperationState) -> bool:
    """The child names a parent and has not yet been counted in it."""
    return bool(child.parent) and not child.counted_in_parent


def _outcome(child: OperationState) -> str:
    if child.HasField("response"):
        return "succeeded"
    if child.error.code == code_pb2.CANCELLED:
        return "cancelled"
    return "failed"


def count(parent: OperationState, child: OperationState, now: datetime) -> list[Notice]:
    """Count `child`'s start and (if done) end in `parent` (both mutated, once each).

    Returns the notices this causes: the parent's resume (RESUME policy), or its cancel
    notice when it failed fast (to stop its worker and, through the cascade, its other
    children). A parent ended by COMPLETE is done afterwards: the caller sees
    `parent.done` change and writes its done-notice like any other.
    """
    summary = parent.children
    changed = False
    if not child.counted_in_parent:
        child.counted_in_parent = True
        summary.total += 1
        changed = True
    if child.done and not child.counted_done_in_parent:
        child.counted_done_in_parent = True
        summary.done += 1
        outcome = _outcome(child)
        setattr(summary, outcome, getattr(summary, outcome) + 1)
        changed = True
        if outcome != "succeeded":
            failed = _fail_fast(parent, child, now)
            if failed is not None:
                _percent(parent)
                return [failed]
    if not changed:
        return []
    _percent(parent)
    parent.update_time.CopyFrom(apply.timestamp(now))
    return _fire(parent, now)


def settle(parent: OperationState, now: datetime) -> list[Notice]:
    """Fire the parent's policy if its children have all ended already: its `created`
    (which brings the policy) may arrive after the last child's end was counted."""
    if not parent.children.total or parent.done or parent.children_fired:
        return []
    _percent(parent)
    return _fire(parent, now)


def _percent(parent: OperationState) -> None:
    summary = parent.children
    expected = max(summary.total, parent.children_policy.expected)
    summary.percent = 100.0 * summary.done / expected if expected else 0.0


def _last_ended(parent: OperationState) -> bool:
    summary = parent.children
    return summary.done >= max(summary.total, parent.children_policy.expected, 1)


def _fire(parent: OperationState, now: datetime) -> list[Notice]:
    policy = parent.children_policy
    if parent.done or parent.children_fired or not _last_ended(parent):
        return []
    if policy.on_done == OnDone.RESUME:
        parent.children_fired = True
        return [apply.next_attempt(parent, now, Notice.CHILDREN_DONE, retry=False)]
    if policy.on_done == OnDone.COMPLETE:
        parent.children_fired = True
        summary = parent.children
        if summary.succeeded == summary.done:
            response = any_pb2.Any()
            response.Pack(summary)
            _end(parent, now, response=response)
        else:
            bad = summary.done - summary.succeeded
            _end(
                parent,
                now,
                error=status_pb2.Status(
                    code=code_pb2.ABORTED,
                    message=f"{bad} of {summary.done} children did not succeed",
                ),
            )
    return []


def _fail_fast(parent: OperationState, child: OperationState, now: datetime) -> Notice | None:
    policy = parent.children_policy
    if policy.on_done != OnDone.COMPLETE or not policy.fail_fast:
        return None
    if parent.done or parent.children_fired:
        return None
    parent.children_fired = True
    error = status_pb2.Status(
        code=child.error.code or code_pb2.ABORTED,
        message=f"child {child.name} did not succeed: {child.error.message}"[:1024],
    )
    _end(parent, now, error=error)
    return notices.make(
        notices.CANCEL,
        parent.name,
        attempt=apply.attempt_of(parent),
        reason=Notice.CHILD_FAILED,
        has_checkpoint=parent.has_checkpoint,
        operation_type=parent.operation_type,
        error=error,
        children=parent.children,
    )


def _end(
    parent: OperationState,
    now: datetime,
    *,
    response: any_pb2.Any | None = None,
    error: status_pb2.Status | None = None,
) -> None:
    """End the parent from the tracker's side: its worker's later events are late."""
    apply.end_by_tracker(parent, now, error or status_pb2.Status())
    if response is not None:
        parent.response.CopyFrom(response)


__all__ = ["ChildrenSummary", "count", "settle", "wants_counting"]
