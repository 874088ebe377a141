"""Bulk actions by filter (issue #12 item 4): cancel or delete every matching operation.

A bulk action is itself an operation, `operations/tracker-bulk/<uuid>` of type
`tracker.bulk`, written with the tracker's own events (source `tracker/bulk`): created,
then per step a progress (percent = handled / matched, the counts in the message) and a
checkpoint holding the plan and its cursor, then succeeded with a summary response.
GetOperation, WaitOperation, :watch and CancelOperation work on it as on any other.

Each step is ONE store transaction: it reads the bulk operation (cancelled: stop, having
done nothing), re-reads the step's targets and acts on those that still match (a cancel
on the running ones only), and writes the progress and the new cursor. So a process
killed at any point resumes from the last committed cursor, and no operation is acted
on twice nor counted twice. Targets are read in name order after the cursor; a deleted
or cancelled one no longer matches the next read anyway.

The rate is bounded (`ratePerSecond`, at most MAX_RATE): a step handles at most a
second's worth, and the next starts no sooner than the rate allows. On start, a server
resumes every running bulk operation of its store; several replicas over one Spanner
database would each resume them (one transaction per step keeps the counts right, but
the rate is then per replica; docs/api.md says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from google.longrunning import operations_pb2
from google.protobuf import any_pb2, struct_pb2

from tracker import filtering
from tracker.apply import request_cancel
from tracker.errors import InvalidArgument, StoreUnavailable
from tracker.events import Event, Kind
from tracker.hooks import Committed
from tracker.notices import Notice
from tracker.service import Tracker
from tracker.stores.base import ListQuery, Tx, apply_batch
from tracker.stores.changes import Changes
from tracker.v1 import events_pb2

log = logging.getLogger(__name__)

PREFIX: Final = "operations/tracker-bulk/"
OPERATION_TYPE: Final = "tracker.bulk"
SOURCE: Final = "tracker/bulk"
ACTIONS: Final = ("cancel", "delete")
DEFAULT_RATE: Final = 100.0
MAX_RATE: Final = 1000.0
# Targets per step at most (one transaction): a second's worth, capped.
MAX_STEP: Final = 100
PLAN_VERSION: Final = 1


@dataclass(frozen=True)
class Plan:
    """What a bulk operation does and how far it is: its checkpoint, as JSON."""

    action: str
    filter: str
    rate: float
    matched: int
    cursor: str = ""  # the last name handled
    acted: int = 0  # cancelled or deleted
    skipped: int = 0  # read but no longer matching when the step ran
    step: int = 0

    def to_bytes(self) -> bytes:
        return json.dumps({"v": PLAN_VERSION, **asdict(self)}, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Plan:
        raw = json.loads(data)
        raw.pop("v", None)
        return cls(**raw)

    @property
    def percent(self) -> float:
        if self.matched <= 0:
            return 0.0
        return min(100.0, 100.0 * (self.acted + self.skipped) / self.matched)

    @property
    def message(self) -> str:
        verb = "cancelled" if self.action == "cancel" else "deleted"
        return f"{verb} {self.acted} of {self.matched} matched ({self.skipped} skipped)"


def targets(action: str, filter_text: str) -> filtering.Expr | None:
    """The filter a bulk action acts on: a cancel takes the running operations only."""
    if action not in ACTIONS:
        raise InvalidArgument(f"bulk action must be one of {', '.join(ACTIONS)}")
    expr = filtering.parse(filter_text)
    if action == "cancel":
        running = filtering.Cmp("done", "=", False)
        return running if expr is None else filtering.BoolOp("AND", (expr, running))
    return expr


def check_rate(rate: float | None) -> float:
    if rate is None:
        return DEFAULT_RATE
    if not (0 < rate <= MAX_RATE):
        raise InvalidArgument(f"ratePerSecond must be more than 0 and at most {MAX_RATE:g}")
    return float(rate)


def _event(name: str, kind: Kind, data: Any, seq: int, now: datetime) -> Event:
    return Event(
        id=uuid.uuid4().hex,
        source=SOURCE,
        kind=kind,
        operation=name,
        time=now,
        data=data,
        sequence=seq,
    )


def progress_events(name: str, plan: Plan, now: datetime) -> list[Event]:
    """A step's progress and checkpoint (sequences 2 step + 1 and + 2; created is 0)."""
    progress = events_pb2.Progress(percent=plan.percent, message=plan.message)
    checkpoint = events_pb2.Checkpoint(data=plan.to_bytes())
    return [
        _event(name, Kind.PROGRESS, progress, 2 * plan.step + 1, now),
        _event(name, Kind.CHECKPOINT, checkpoint, 2 * plan.step + 2, now),
    ]


@dataclass
class StepResult:
    plan: Plan
    changed: dict[str, operations_pb2.Operation]
    done: list[str]
    notices: bool


def run_step(
    tx: Tx,
    tracker: Tracker,
    name: str,
    plan: Plan,
    names: Sequence[str],
    cursor: str,
    now: datetime,
) -> StepResult | None:
    """One step in one transaction (see the module docstring); None: the bulk operation
    is done or cancelled, nothing was written."""
    bulk = tx.load([name]).get(name)
    if bulk is None or bulk.done or bulk.cancel_requested:
        return None
    expr = targets(plan.action, plan.filter)
    store = tracker.store
    changes = Changes(tx, now, tracker.notify, store.is_operation)
    states = tx.load(list(names)) if names else {}
    changes.loaded(states)
    acted = skipped = 0
    for target in names:
        state = states.get(target)
        if state is None or not filtering.matches(expr, filtering.row_of(state)):
            skipped += 1
            continue
        if plan.action == "cancel":
            t = request_cancel(state, now, Notice.CANCEL_REQUESTED)
            changes.changed(t.state, became_done=t.became_done, caused=t.notices)
        else:
            tx.delete(target)
            tx.tombstone(target, now)
        acted += 1
    changes.count_children()
    changed = changes.write()
    done = sorted(changes.done_now)
    after = replace(
        plan,
        cursor=cursor,
        acted=plan.acted + acted,
        skipped=plan.skipped + skipped,
        step=plan.step + 1,
    )
    events = progress_events(name, after, now)
    batch = apply_batch(tx, events, now, notify=tracker.notify, is_operation=store.is_operation)
    changed.update(batch.changed)
    return StepResult(after, changed, done, changes.written + batch.notices > 0)


class BulkActions:
    """The bulk actions of one Tracker: start, dry-run, resume on start, stop."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def matched(self, action: str, filter_text: str) -> tuple[int, bool]:
        """A dry run: how many operations the action would act on now."""
        expr = targets(action, filter_text)
        return await asyncio.to_thread(self.tracker.store.count_operations, expr)

    async def start(
        self, action: str, filter_text: str, rate: float | None = None
    ) -> operations_pb2.Operation:
        expr = targets(action, filter_text)
        plan = Plan(action, filter_text, check_rate(rate), 0)
        matched, _ = await asyncio.to_thread(self.tracker.store.count_operations, expr)
        plan = replace(plan, matched=matched)
        name = PREFIX + uuid.uuid4().hex
        now = datetime.now(UTC)
        created = events_pb2.Created(operation_type=OPERATION_TYPE, labels={"action": action})
        events = [_event(name, Kind.CREATED, created, 0, now), *progress_events(name, plan, now)]
        result = await self.tracker.ingest(events, route="bulk")
        self._spawn(name, plan)
        return result.changed[name]

    async def resume(self) -> int:
        """Start a task for every running bulk operation of the store (on server start)."""
        text = f'operation_type = "{OPERATION_TYPE}" AND done = false AND name = "{PREFIX}*"'
        expr = filtering.parse(text)
        after, found = "", 0
        while True:
            query = ListQuery(filter=expr, page_size=100, after=after)
            rows = await asyncio.to_thread(self.tracker.store.list_operations, query)
            for row in rows[:100]:
                if row.checkpoint and row.state.name not in self.tasks:
                    self._spawn(row.state.name, Plan.from_bytes(row.checkpoint))
                    found += 1
            if len(rows) <= 100:
                return found
            after = rows[99].state.name

    def _spawn(self, name: str, plan: Plan) -> None:
        task = asyncio.create_task(self._run(name, plan), name=f"bulk {name}")
        self.tasks[name] = task
        task.add_done_callback(lambda _: self.tasks.pop(name, None))

    async def _run(self, name: str, plan: Plan) -> None:
        expr = targets(plan.action, plan.filter)
        size = max(1, min(MAX_STEP, int(plan.rate)))
        store = self.tracker.store
        while True:
            began = time.monotonic()
            try:
                query = ListQuery(filter=expr, page_size=size, after=plan.cursor)
                rows = (await asyncio.to_thread(store.list_operations, query))[:size]
                names = [r.state.name for r in rows if r.state.name != name]
                if not rows:
                    await self._finish(name, plan)
                    return
                cursor = rows[-1].state.name
                result = await asyncio.to_thread(self._step, name, plan, names, cursor)
            except StoreUnavailable as exc:
                log.warning("bulk %s: store unavailable, retrying: %s", name, exc)
                await asyncio.sleep(1.0)
                continue
            except Exception:
                log.exception("bulk %s stopped; a restart resumes it", name)
                return
            if result is None:
                log.info("bulk %s: cancelled after %s", name, plan.message)
                return
            plan = result.plan
            committed = Committed(
                route="bulk", changed=result.changed, done=result.done, notices=result.notices
            )
            self.tracker.after_commit(committed)
            wait = len(rows) / plan.rate - (time.monotonic() - began)
            if wait > 0:
                await asyncio.sleep(wait)

    def _step(self, name: str, plan: Plan, names: list[str], cursor: str) -> StepResult | None:
        def work(tx: Tx) -> StepResult | None:
            return run_step(tx, self.tracker, name, plan, names, cursor, datetime.now(UTC))

        return self.tracker.store.run_in_transaction(work)

    async def _finish(self, name: str, plan: Plan) -> None:
        summary = struct_pb2.Struct()
        summary.update(
            {
                "action": plan.action,
                "filter": plan.filter,
                "matched": plan.matched,
                "acted": plan.acted,
                "skipped": plan.skipped,
            }
        )
        response = any_pb2.Any()
        response.Pack(summary)
        now = datetime.now(UTC)
        succeeded = events_pb2.Succeeded(response=response)
        event = _event(name, Kind.SUCCEEDED, succeeded, 2 * plan.step + 3, now)
        await self.tracker.ingest([event], route="bulk")

    async def stop(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


_BY_TRACKER: weakref.WeakKeyDictionary[Tracker, BulkActions] = weakref.WeakKeyDictionary()


def bulk_of(tracker: Tracker) -> BulkActions:
    """The one BulkActions of a Tracker (the routes and the server share it)."""
    if tracker not in _BY_TRACKER:
        _BY_TRACKER[tracker] = BulkActions(tracker)
    return _BY_TRACKER[tracker]


__all__ = ["ACTIONS", "PREFIX", "BulkActions", "Plan", "bulk_of", "check_rate", "targets"]
