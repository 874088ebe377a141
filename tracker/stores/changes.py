"""What a transaction writes once its transitions are decided: rows, parents, notices.

Shared by every path that changes operations (events, CancelOperation, the expiry
sweep), so that all of them count children in their parents, fire parents' policies and
write the same notices. Pure apart from the `Tx` it is given.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from google.longrunning import operations_pb2

from tracker import children, filtering, notices
from tracker.apply import (
    Notice,
    OperationState,
    attempt_of,
    ended_by_tracker,
    render,
    request_cancel,
    timestamp,
)
from tracker.notices import Wanted
from tracker.stores import history

if TYPE_CHECKING:
    from tracker.apply import Outcome
    from tracker.events import Event
    from tracker.stores.base import OutboxItem, Tx

# A parent of a parent of ...: counted this many levels up in one transaction (deeper
# trees still count; a level's end is counted when that level's own row changes).
MAX_LEVELS = 16


@dataclass
class Changes:
    """The states one transaction has loaded and changed, and the notices it owes."""

    tx: Tx
    now: datetime
    want: Wanted
    is_operation: Callable[[str], bool]
    states: dict[str, OperationState] = field(default_factory=dict)
    existing: set[str] = field(default_factory=set)
    dirty: set[str] = field(default_factory=set)
    done_now: set[str] = field(default_factory=set)
    checkpoints: dict[str, bytes] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # names in first-touched order
    written: int = 0  # outbox rows
    # The event history's bound (0: off) and the events it records (tracker.stores.history).
    history_limit: int = 0
    heard: list[tuple[Event, Outcome]] = field(default_factory=list)
    # The trace context (traceparent, tracestate) of the last event applied to each
    # operation; its notices keep it for their delivery (`tracker.tracing`). A parent that
    # ends or owes a notice because of a child takes the child's.
    traces: dict[str, tuple[str, str]] = field(default_factory=dict)
    _ordered: set[str] = field(default_factory=set)

    def loaded(self, states: dict[str, OperationState]) -> None:
        for name, state in states.items():
            self.states[name] = state
            self.existing.add(name)
            self._touch(name)

    def _touch(self, name: str) -> None:
        if name not in self._ordered:
            self._ordered.add(name)
            self.order.append(name)

    def changed(
        self, state: OperationState, *, became_done: bool, caused: Sequence[Notice] = ()
    ) -> None:
        self.states[state.name] = state
        self._touch(state.name)
        self.dirty.add(state.name)
        if became_done:
            self.done_now.add(state.name)
        self.notices.extend(caused)

    # ---- parents -----------------------------------------------------------------------

    def _parent(self, name: str) -> OperationState | None:
        state = self.states.get(name)
        if state is not None:
            return state
        found = self.tx.load([name])
        if name in found:
            self.loaded(found)
            return found[name]
        if self.tx.removed([name]):
            return None  # deleted or expired: its children no longer count anywhere
        state = OperationState(name=name, attempt=1)
        state.create_time.CopyFrom(timestamp(self.now))
        state.update_time.CopyFrom(timestamp(self.now))
        self.states[name] = state
        self._touch(name)
        return state

    def count_children(self) -> None:
        """Count every changed child in its parent, up to MAX_LEVELS of parents."""
        pending = [n for n in self.order if n in self.dirty]
        for name in pending:  # a parent's policy that came after its children's ends
            state = self.states[name]
            was_done = state.done
            caused = children.settle(state, self.now)
            if caused or state.done != was_done:
                self.changed(state, became_done=state.done and not was_done, caused=caused)
        levels = 0
        while pending and levels < MAX_LEVELS:
            levels += 1
            upper: list[str] = []
            for name in pending:
                child = self.states[name]
                if not self._needs_count(child):
                    continue
                parent = self._parent(child.parent)
                if parent is None:
                    continue
                was_done = parent.done
                caused = children.count(parent, child, self.now)
                if child.name in self.traces and (caused or parent.done != was_done):
                    # What the parent owes now, the child's event caused.
                    self.traces[parent.name] = self.traces[child.name]
                self.changed(child, became_done=False)
                self.changed(parent, became_done=parent.done and not was_done, caused=caused)
                if self._cancelled(parent) and not child.done:
                    # A child started under a parent that was already cancelled (or failed
                    # fast): it is cancelled at once, as the cascade would have.
                    t = request_cancel(child, self.now, Notice.PARENT_CANCELLED)
                    self.changed(t.state, became_done=t.became_done, caused=t.notices)
                    children.count(parent, t.state, self.now)
                upper.append(parent.name)
            pending = list(dict.fromkeys(upper))

    def _needs_count(self, child: OperationState) -> bool:
        if not child.parent or child.parent == child.name:
            return False
        if child.counted_in_parent and (not child.done or child.counted_done_in_parent):
            return False
        return self.is_operation(child.parent)

    @staticmethod
    def _cancelled(parent: OperationState) -> bool:
        return parent.done and ended_by_tracker(parent) and parent.HasField("error")

    # ---- writing -----------------------------------------------------------------------

    def write(self) -> dict[str, operations_pb2.Operation]:
        """Save every changed row and its notices; the served Operation of each."""
        rendered: dict[str, operations_pb2.Operation] = {}
        for name in self.order:
            if name not in self.dirty:
                continue
            state = self.states[name]
            operation = render(state)
            rendered[name] = operation
            self.tx.save(
                state,
                operation,
                self.checkpoints.get(name),
                insert=name not in self.existing,
                now=self.now,
            )
        owed = list(self.notices)
        for name in self.order:
            if name in self.done_now:
                state = self.states[name]
                owed.append(
                    notices.make(
                        notices.DONE,
                        name,
                        attempt=attempt_of(state),
                        has_checkpoint=state.has_checkpoint,
                        operation_type=state.operation_type,
                    )
                )
        for notice in owed:
            state = self.states[notice.operation]
            trace = self.traces.get(notice.operation)
            if trace is not None:
                notice.traceparent, notice.tracestate = trace
            rows = notices.keep(notices.targets(notice, state.webhooks), self.want)
            if self.want.subscriptions:
                rows += notices.subscribed(notice, filtering.row_of(state), self.want)
            for row in rows:
                self.tx.add_outbox(self._item(row, rendered[notice.operation]))
                self.written += 1
        history.flush(self)
        return rendered

    def _item(self, notice: Notice, operation: operations_pb2.Operation) -> OutboxItem:
        from tracker.stores.base import OutboxItem  # base imports this module

        due = (
            notice.not_before.ToDatetime(self.now.tzinfo) if notice.HasField("not_before") else None
        )
        return OutboxItem(
            id=uuid.uuid4().hex,
            operation=operation,
            created_at=self.now,
            notice=notice,
            next_attempt_at=max(due, self.now) if due is not None else self.now,
        )


__all__ = ["Changes"]
