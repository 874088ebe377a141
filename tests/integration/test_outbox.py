"""The outbox dispatcher never starves: per-item backoff, giving up, requeue, restarts.

A purpose-built sink fails for chosen operations; the dispatcher's clock and jitter are
injected, so nothing here waits for time to pass.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import T0, make_event
from tracker.config import Config
from tracker.errors import ConfigError
from tracker.events import Kind
from tracker.metrics import Metrics
from tracker.notices import DONE
from tracker.notify.outbox import Dispatcher, Permanent, RetryPolicy
from tracker.server import Server
from tracker.stores.base import OutboxItem, Store
from tracker.stores.sqlite import SqliteStore


class Clock:
    """What time the dispatcher thinks it is."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class MaxJitter(random.Random):
    """Draws the longest wait the policy allows, so that waits are exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


class FlakySink:
    """Refuses the operations in `fail_for`, takes every other one."""

    name = "flaky"

    kinds: frozenset[int] = frozenset({DONE})

    targets = False

    def __init__(self, *fail_for: str) -> None:
        self.fail_for = set(fail_for)
        self.calls: Counter[str] = Counter()
        self.delivered: list[tuple[str, str]] = []  # (notification id, operation)

    async def deliver(self, item: OutboxItem) -> None:
        item_id, operation = item.id, item.operation
        self.calls[operation.name] += 1
        if operation.name in self.fail_for:
            raise RuntimeError(f"refused {operation.name}")
        self.delivered.append((item_id, operation.name))


class HangingSink:
    """Never answers for `hang_for` (a publish that hangs), takes the others."""

    name = "hanging"

    kinds: frozenset[int] = frozenset({DONE})

    targets = False

    def __init__(self, hang_for: str) -> None:
        self.hang_for = hang_for
        self.delivered: list[str] = []

    async def deliver(self, item: OutboxItem) -> None:
        operation = item.operation
        if operation.name == self.hang_for:
            await asyncio.Event().wait()
        self.delivered.append(operation.name)


def done(store: Store, *names: str) -> dict[str, str]:
    """A done transition for each name, in order (one second apart); notification ids."""
    for i, name in enumerate(names):
        store.apply([make_event(Kind.SUCCEEDED, name)], now=T0 + timedelta(seconds=i))
    return {item.operation.name: item.id for item in store.outbox_pending()}


def drain(dispatcher: Dispatcher) -> int:
    return asyncio.run(dispatcher.drain())


def reopen(store: Store) -> Store:
    """A second store on the same database: another process, or this one after a restart."""
    if isinstance(store, SqliteStore):
        return SqliteStore(store.path, table_prefix=store.table_prefix)
    from tracker.stores.spanner import SpannerStore

    assert isinstance(store, SpannerStore)
    return SpannerStore(
        store.database.name, explicit_begin=store.explicit_begin, table_prefix=store.n.prefix
    )


def test_a_failing_item_does_not_hold_back_the_others_in_the_same_drain(store: Store) -> None:
    names = [f"operations/n{i}" for i in range(5)]
    ids = done(store, *names)
    sink = FlakySink("operations/n0", "operations/n3")  # the oldest one among them
    metrics = Metrics()
    clock = Clock(T0 + timedelta(minutes=1))
    dispatcher = Dispatcher(store, [sink], batch=2, metrics=metrics, clock=clock)

    assert drain(dispatcher) == 3
    assert sink.delivered == [
        (ids[n], n) for n in ("operations/n1", "operations/n2", "operations/n4")
    ]
    pending = store.outbox_pending()
    assert sorted(p.operation.name for p in pending) == ["operations/n0", "operations/n3"]
    assert all(p.attempts == 1 and p.next_attempt_at > clock.now for p in pending)  # type: ignore[operator]
    by_name = {p.operation.name: p for p in pending}
    assert by_name["operations/n0"].last_error == "flaky: RuntimeError: refused operations/n0"
    assert metrics.value(metrics.notifications, result="sent") == 3
    assert metrics.value(metrics.notifications, result="failed") == 2

    # Not due yet: a second pass at the same time tries nothing again.
    assert drain(dispatcher) == 0
    assert sink.calls["operations/n0"] == 1

    sink.fail_for = {"operations/n0"}
    clock.advance(3600)
    assert drain(dispatcher) == 1
    assert sink.delivered[-1] == (ids["operations/n3"], "operations/n3")  # same id as before
    (left,) = store.outbox_pending()
    assert left.operation.name == "operations/n0" and left.attempts == 2


def test_each_failure_moves_only_that_item_forward_exponentially(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")
    done(store, "operations/bad")
    sink = FlakySink("operations/bad")
    clock = Clock(T0 + timedelta(minutes=1))
    policy = RetryPolicy(initial_seconds=0.5, max_seconds=4, max_attempts=100)
    dispatcher = Dispatcher(
        store, [sink], retry=policy, metrics=Metrics(), clock=clock, rng=MaxJitter()
    )
    waits = []
    for attempt in range(1, 7):
        drain(dispatcher)
        assert sink.calls["operations/bad"] == attempt
        (item,) = store.outbox_pending()
        assert item.attempts == attempt and item.next_attempt_at is not None
        waits.append((item.next_attempt_at - clock.now).total_seconds())
        clock.now = item.next_attempt_at - timedelta(milliseconds=1)
        drain(dispatcher)  # a moment too early: not tried
        assert sink.calls["operations/bad"] == attempt
        clock.now = item.next_attempt_at
    assert waits == [0.5, 1, 2, 4, 4, 4]
    store.close()


def test_full_jitter_stays_within_a_cap_that_doubles_up_to_the_maximum() -> None:
    policy = RetryPolicy(initial_seconds=0.5, max_seconds=300, max_attempts=12)
    assert [policy.cap(n) for n in range(1, 13)] == [
        0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300,
    ]  # fmt: skip
    rng = random.Random(7)
    for attempts in range(1, 13):
        delays = [policy.delay(attempts, rng) for _ in range(200)]
        cap = policy.cap(attempts)
        assert all(0 <= d <= cap for d in delays)
        assert min(delays) < cap / 4 and max(delays) > cap * 3 / 4  # spread, not fixed
    assert policy.cap(10_000) == 300  # no overflow
    for bad in ({"initial_seconds": 0}, {"max_seconds": 0.1}, {"max_attempts": 0}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)


def test_gives_up_after_max_attempts_then_an_operator_requeues_it(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    ids = done(store, "operations/poison", "operations/fine")
    sink = FlakySink("operations/poison")
    metrics = Metrics()
    clock = Clock(T0 + timedelta(minutes=1))
    policy = RetryPolicy(initial_seconds=1, max_seconds=10, max_attempts=3)
    dispatcher = Dispatcher(store, [sink], retry=policy, metrics=metrics, clock=clock)
    with caplog.at_level(logging.WARNING, logger="tracker.notify.outbox"):
        for _ in range(3):
            drain(dispatcher)
            clock.advance(60)
    assert sink.calls["operations/poison"] == 3
    assert sink.delivered == [(ids["operations/fine"], "operations/fine")]
    assert store.outbox_pending() == []
    (failed,) = store.failed_notifications()
    assert (failed.id, failed.operation.name, failed.attempts) == (
        ids["operations/poison"],
        "operations/poison",
        3,
    )
    assert failed.last_error == "flaky: RuntimeError: refused operations/poison"
    assert failed.gave_up_at == clock.now - timedelta(seconds=60)
    assert metrics.value(metrics.notifications, result="gave_up") == 1
    assert metrics.value(metrics.notifications, result="failed") == 3
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    message = record.getMessage()
    for part in (ids["operations/poison"], "operations/poison", "3 attempts", "refused"):
        assert part in message

    clock.advance(86400)  # no longer retried, however long it waits
    assert drain(dispatcher) == 0
    assert sink.calls["operations/poison"] == 3

    sink.fail_for.clear()  # the cause is fixed; the operator requeues it
    assert store.requeue_failed(failed.id, clock.now)
    assert drain(dispatcher) == 1
    assert sink.delivered[-1] == (ids["operations/poison"], "operations/poison")
    assert store.failed_notifications() == [] and store.outbox_pending() == []


def test_pending_and_rescheduled_items_survive_a_restart(store: Store) -> None:
    ids = done(store, "operations/x", "operations/y")
    clock = Clock(T0 + timedelta(minutes=1))
    before = Dispatcher(store, [FlakySink(*ids)], metrics=Metrics(), clock=clock)
    assert drain(before) == 0  # both failed once, rescheduled
    ids = done(store, "operations/z")  # written, never tried

    other = reopen(store)  # the next process on the same database
    try:
        assert sorted((i.operation.name, i.attempts) for i in other.outbox_pending()) == [
            ("operations/x", 1),
            ("operations/y", 1),
            ("operations/z", 0),
        ]
        sink = FlakySink()
        clock.advance(3600)
        after = Dispatcher(other, [sink], metrics=Metrics(), clock=clock)
        assert drain(after) == 3
        assert sorted(sink.delivered) == sorted((i, n) for n, i in ids.items())  # same ids
        assert store.outbox_pending() == []
    finally:
        other.close()


def test_a_hanging_sink_costs_the_pass_one_timeout_and_the_others_go_out(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")
    done(store, "operations/hang", "operations/a", "operations/b")
    sink = HangingSink("operations/hang")
    clock = Clock(T0 + timedelta(minutes=1))
    dispatcher = Dispatcher(store, [sink], attempt_timeout=0.05, metrics=Metrics(), clock=clock)
    assert drain(dispatcher) == 2
    assert sorted(sink.delivered) == ["operations/a", "operations/b"]
    (item,) = store.outbox_pending()
    assert item.operation.name == "operations/hang" and "TimeoutError" in item.last_error
    store.close()


class OnceSink:
    """Refuses each operation's first delivery; signals when `name` got through."""

    name = "once"

    kinds: frozenset[int] = frozenset({DONE})

    targets = False

    def __init__(self, name: str) -> None:
        self.wanted = name
        self.seen: set[str] = set()
        self.through = asyncio.Event()

    async def deliver(self, item: OutboxItem) -> None:
        operation = item.operation
        if operation.name not in self.seen:
            self.seen.add(operation.name)
            raise RuntimeError("first time")
        if operation.name == self.wanted:
            self.through.set()


class BrokenOnceStore(SqliteStore):
    """A store whose next outbox read, once armed, fails with an unexpected error."""

    armed = broke = False

    def outbox_pending(self, limit: int = 100, now: datetime | None = None) -> list[OutboxItem]:
        if self.armed and not self.broke:
            self.broke = True
            raise RuntimeError("unexpected")
        return super().outbox_pending(limit, now)


def _run_until(dispatcher: Dispatcher, event: asyncio.Event) -> None:
    async def main() -> None:
        task = asyncio.create_task(dispatcher.run())
        try:
            await asyncio.wait_for(event.wait(), 60)
        finally:
            dispatcher.stop()
            await task

    asyncio.run(main())


def test_run_wakes_for_a_retry_without_a_kick_or_a_sweep(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")
    done(store, "operations/r")
    sink = OnceSink("operations/r")
    policy = RetryPolicy(initial_seconds=0.01, max_seconds=0.01)
    dispatcher = Dispatcher(store, [sink], sweep_seconds=3600, retry=policy, metrics=Metrics())
    _run_until(dispatcher, sink.through)  # a sweep an hour away would time this out
    assert store.outbox_pending() == []
    store.close()


def test_run_keeps_going_after_an_unexpected_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = BrokenOnceStore(tmp_path / "t.db")
    done(store, "operations/e")
    store.armed = True
    sink = FlakySink()
    delivered = asyncio.Event()

    class Signal:
        name = "signal"
        kinds: frozenset[int] = frozenset({DONE})
        targets = False

        async def deliver(self, item: OutboxItem) -> None:
            delivered.set()

    dispatcher = Dispatcher(store, [sink, Signal()], sweep_seconds=3600, metrics=Metrics())
    _run_until(dispatcher, delivered)
    assert sink.delivered and store.broke
    assert any("delivery pass failed" in r.getMessage() for r in caplog.records)
    store.close()


def test_serve_settings_set_the_retry_policy(tmp_path: Path) -> None:
    assert Config().retry == RetryPolicy(initial_seconds=0.5, max_seconds=300, max_attempts=12)
    config = Config(
        db=str(tmp_path / "t.db"),
        notify_retry_initial_seconds=2,
        notify_retry_max_seconds=60,
        notify_max_attempts=4,
    ).validate()
    server = Server(config, sinks=[FlakySink()])  # a durable sink: there is a dispatcher
    try:
        assert server.tracker.dispatcher is not None
        assert server.tracker.dispatcher.retry == RetryPolicy(2, 60, 4)
    finally:
        server.store.close()
    for bad, flag in (
        ({"notify_retry_initial_seconds": 0}, "--notify-retry-initial-seconds"),
        ({"notify_retry_max_seconds": 0.1}, "--notify-retry-max-seconds"),
        ({"notify_max_attempts": 0}, "--notify-max-attempts"),
    ):
        with pytest.raises(ConfigError, match=flag):
            Config(**bad).validate()


class PermanentSink:
    """Refuses `refuse` for good (a target no retry can fix), takes every other one."""

    name = "permanent"

    kinds: frozenset[int] = frozenset({DONE})

    targets = False

    def __init__(self, refuse: str) -> None:
        self.refuse = refuse
        self.delivered: list[str] = []

    async def deliver(self, item: OutboxItem) -> None:
        if item.operation.name == self.refuse:
            raise Permanent("forbidden target")
        self.delivered.append(item.operation.name)


def test_a_permanent_failure_is_given_up_at_once(store: Store) -> None:
    done(store, "operations/never", "operations/fine")
    sink = PermanentSink("operations/never")
    metrics = Metrics()
    clock = Clock(T0 + timedelta(minutes=1))
    dispatcher = Dispatcher(store, [sink], metrics=metrics, clock=clock)
    assert drain(dispatcher) == 1
    assert sink.delivered == ["operations/fine"]
    assert store.outbox_pending(now=clock.now + timedelta(days=1)) == []
    (failed,) = store.failed_notifications()
    assert failed.operation.name == "operations/never" and failed.attempts == 1
    assert failed.last_error == "permanent: Permanent: forbidden target"
    assert metrics.value(metrics.notifications, result="gave_up") == 1
