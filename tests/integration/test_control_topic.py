"""Resume and cancel notices on the control topic (`--control-topic`), against pstest.

A stalled attempt and a retryable failure resume the next attempt with one notice each,
a cancel is announced, filtered subscriptions see only their notices, a row committed
before a crash goes out after the restart under its id, a retry's notice is not handed
over before its backoff has passed (and the dispatcher wakes for it), and the Python
consumers de-duplicate and ack only after the callback returned.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import duration_pb2
from google.rpc import code_pb2, status_pb2

from tests.helpers import T0, ingest, make_event
from tests.pubsub_kit import PROJECT, PubSub, filtered, google_emulator
from tracker import notices
from tracker.bindings import (
    CANCEL_TYPE,
    NOTICE_SCHEMA,
    RESUME_TYPE,
    ControlNotice,
    notice_attributes,
    notice_data,
    parse_notice,
)
from tracker.config import Config
from tracker.errors import InvalidArgument
from tracker.events import Event, Kind
from tracker.metrics import Metrics
from tracker.notify.control import ControlTopicSink
from tracker.notify.outbox import Dispatcher
from tracker.resume import iter_notices, subscribe_notices
from tracker.server import Server, running
from tracker.stores.base import OutboxItem
from tracker.stores.sqlite import SqliteStore
from tracker.v1 import events_pb2, operation_pb2

Notice = operation_pb2.Notice


@pytest.fixture
def pubsub(pubsub_env: str) -> PubSub:
    return PubSub()


def _server(tmp_path: Path, control: str, **settings: Any) -> Any:
    config = Config(
        db=str(tmp_path / "c.db"), http_port=0, grpc_port=-1, control_topic=control, **settings
    )
    return running(config)


def seconds(value: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(timedelta(seconds=value))
    return d


def created(name: str, *, kind: str = "export", **fields: Any) -> Event:
    return make_event(
        Kind.CREATED,
        name,
        time=datetime.now(UTC),
        data=events_pb2.Created(operation_type=kind, **fields),
    )


def failed(name: str, code: int, attempt: int | None = None) -> Event:
    error = status_pb2.Status(code=code, message="backend away")
    event = make_event(Kind.FAILED, name, time=datetime.now(UTC), data={"error": error})
    return replace(event, attempt=attempt)


def policy(max_attempts: int, initial: float = 0.001) -> events_pb2.RetryPolicy:
    return events_pb2.RetryPolicy(max_attempts=max_attempts, initial_backoff=seconds(initial))


class Collector:
    """subscribe_notices' callback: every notice it got, and a wake-up at a count."""

    def __init__(self) -> None:
        self.got: list[ControlNotice] = []
        self.lock = threading.Condition()

    def __call__(self, note: ControlNotice) -> None:
        with self.lock:
            self.got.append(note)
            self.lock.notify_all()

    def wait_for(self, count: int, timeout: float = 60) -> list[ControlNotice]:
        with self.lock:
            assert self.lock.wait_for(lambda: len(self.got) >= count, timeout), self.got
            return list(self.got)


@pytest.fixture
def collect() -> Iterator[Any]:
    futures: list[Any] = []

    def start(subscription: str) -> Collector:
        collector = Collector()
        futures.append(subscribe_notices(subscription, collector))
        return collector

    yield start
    for future in futures:
        future.cancel()


def drain(server: Server) -> None:
    loop: asyncio.AbstractEventLoop = server.loop  # type: ignore[attr-defined]
    asyncio.run_coroutine_threadsafe(server.tracker.dispatcher.drain(), loop).result(60)


def wait(server: Server, name: str) -> Any:
    loop: asyncio.AbstractEventLoop = server.loop  # type: ignore[attr-defined]
    return asyncio.run_coroutine_threadsafe(server.tracker.wait(name, 60), loop).result(90)


def test_a_stalled_attempt_resumes_on_the_control_topic_then_fails_at_the_last(
    pubsub: PubSub, tmp_path: Path, collect: Any
) -> None:
    control = pubsub.topic()
    collector = collect(pubsub.subscription(control))
    name = "operations/stall-1"
    started = datetime.now(UTC)
    with _server(tmp_path, control, sweep_seconds=0.1) as server:
        ingest(
            server,
            [
                created(name, heartbeat_timeout=seconds(0.5), retry=policy(2)),
                make_event(Kind.CHECKPOINT, name, time=datetime.now(UTC), data={"data": b"c"}),
            ],
        )
        # The server's own sweeper finds the stall; attempt 2 starts with a notice.
        (note,) = collector.wait_for(1)
        assert (note.kind, note.operation, note.attempt, note.reason) == (
            "resume",
            name,
            2,
            "stalled",
        )
        assert note.has_checkpoint and note.notice.error.code == code_pb2.DEADLINE_EXCEEDED
        attributes = note.attributes
        assert attributes["ce-type"] == RESUME_TYPE and attributes["ce-subject"] == name
        assert {k: attributes[k] for k in ("kind", "attempt", "reason", "has_checkpoint")} == {
            "kind": "resume",
            "attempt": "2",
            "reason": "stalled",
            "has_checkpoint": "true",
        }
        assert attributes["operation_type"] == "export"
        assert attributes["error_code"] == "DEADLINE_EXCEEDED"
        assert attributes["Content-Type"] == attributes["content-type"] == "application/json"
        assert attributes["ce-dataschema"] == NOTICE_SCHEMA
        # When the row was written: after the checkpoint, before it was received here.
        decided = datetime.fromisoformat(attributes["ce-time"])
        assert attributes["ce-time"].endswith("Z") and started <= decided <= datetime.now(UTC)
        # Attempt 2 stalls too: the last one, so the operation fails.
        operation = wait(server, name)
        assert operation.done and operation.error.code == code_pb2.DEADLINE_EXCEEDED
        assert "attempt 2" in operation.error.message
        drain(server)
        assert server.store.outbox_pending() == []
    assert len(collector.got) == 1  # no resume after the last attempt


def test_resume_notices_carry_the_operation_as_ordering_key(pubsub: PubSub, tmp_path: Path) -> None:
    control = pubsub.topic()
    sub = pubsub.subscription(control)
    name = "operations/ordered-1"
    with _server(tmp_path, control) as server:
        ingest(server, [created(name, retry=policy(3)), failed(name, code_pb2.UNAVAILABLE)])
        ingest(server, [failed(name, code_pb2.ABORTED, attempt=2)])
        drain(server)
    messages = pubsub.pull_all(sub)
    assert [m.ordering_key for m in messages] == [name, name]
    assert [m.attributes["attempt"] for m in messages] == ["2", "3"]  # in order


def test_a_retryable_failure_resumes_and_a_non_retryable_one_fails_at_once(
    pubsub: PubSub, tmp_path: Path, collect: Any
) -> None:
    control = pubsub.topic()
    collector = collect(pubsub.subscription(control))
    only_fatal = 'attributes.operation = "operations/fatal-1"'
    fatal = pubsub.subscription(control, only_fatal)
    with _server(tmp_path, control) as server:
        result = ingest(
            server,
            [
                created("operations/fatal-1", retry=policy(3)),
                failed("operations/fatal-1", code_pb2.PERMISSION_DENIED),
            ],
        )
        status = result.results[-1].status
        assert status is not None and (status.state, status.attempt) == ("failed", 1)
        result = ingest(
            server,
            [
                created("operations/flaky-1", retry=policy(3)),
                failed("operations/flaky-1", code_pb2.UNAVAILABLE),
            ],
        )
        status = result.results[-1].status
        assert status is not None and (status.state, status.attempt) == ("running", 2)
        (note,) = collector.wait_for(1)
        assert (note.operation, note.reason, note.attempt) == ("operations/flaky-1", "failed", 2)
        assert note.notice.error.code == code_pb2.UNAVAILABLE
        assert note.attributes["error_code"] == "UNAVAILABLE"
        drain(server)
        assert server.store.outbox_pending() == []
    # Its failure was final: nothing to resume (flaky-1's one resume is all there is).
    assert filtered(pubsub, pubsub.pull_all(fatal), only_fatal, published=1) == []


def test_cancel_notices_reach_only_the_subscriptions_whose_filter_matches(
    pubsub: PubSub, tmp_path: Path
) -> None:
    control = pubsub.topic()
    filters = (
        'attributes.operation_type = "export"',
        'attributes.kind = "cancel" AND attributes.operation_type = "import"',
        'attributes.kind = "resume"',
    )
    exports, import_cancels, resumes = (pubsub.subscription(control, f) for f in filters)
    with _server(tmp_path, control) as server:
        ingest(
            server,
            [created("operations/ex-1"), created("operations/im-1", kind="import")],
        )
        loop: asyncio.AbstractEventLoop = server.loop
        for name in ("operations/ex-1", "operations/im-1"):
            asyncio.run_coroutine_threadsafe(server.tracker.cancel(name), loop).result(30)
        drain(server)
    # Two cancel notices; Google's emulator delivers both to each subscription.
    got = [
        filtered(pubsub, pubsub.pull_all(sub), f, published=2)
        for sub, f in zip((exports, import_cancels, resumes), filters, strict=True)
    ]
    (export,), (imported,), no_resumes = got
    assert no_resumes == []
    assert export.attributes["operation"] == "operations/ex-1"
    assert imported.attributes["operation"] == "operations/im-1"
    assert imported.ordering_key == "operations/im-1"
    note = parse_notice(dict(imported.attributes), imported.data)
    assert (note.kind, note.reason, note.attempt) == ("cancel", "cancel_requested", 1)
    assert note.attributes["ce-type"] == CANCEL_TYPE
    assert note.notice.operation_type == "import"


def test_a_resume_committed_before_a_crash_goes_out_after_restart_under_its_id(
    pubsub: PubSub, tmp_path: Path
) -> None:
    control = pubsub.topic()
    sub = pubsub.subscription(control)
    name = "operations/crash-resume"
    crashed = SqliteStore(tmp_path / "c.db")  # committed the retry, then died
    crashed.apply([created(name, retry=policy(2)), failed(name, code_pb2.UNAVAILABLE)])
    (pending,) = crashed.outbox_pending()
    assert pending.notice.kind == notices.RESUME
    crashed.close()
    with _server(tmp_path, control) as server:
        drain(server)
        drain(server)  # a second pass finds nothing left
        assert server.store.outbox_pending() == []
    messages = pubsub.pull_all(sub)
    assert [m.attributes["ce-id"] for m in messages] == [pending.id]
    assert parse_notice(dict(messages[0].attributes), messages[0].data).attempt == 2


# ---- the dispatcher and a retry's backoff ------------------------------------------------


def _resume_row(store: SqliteStore, backoff: float, now: datetime) -> OutboxItem:
    name = "operations/backoff-1"
    first = replace(created(name, retry=policy(2, backoff)), time=now)
    store.apply([first, replace(failed(name, code_pb2.UNAVAILABLE), time=now)], now=now)
    (item,) = store.outbox_pending()
    return item


def test_a_resume_is_not_published_before_its_backoff_has_passed(
    pubsub: PubSub, tmp_path: Path
) -> None:
    control = pubsub.topic()
    sub = pubsub.subscription(control)
    store = SqliteStore(tmp_path / "b.db")
    item = _resume_row(store, 30.0, T0)
    assert item.next_attempt_at == T0 + timedelta(seconds=30)
    now = [T0 + timedelta(seconds=29)]
    dispatcher = Dispatcher(
        store, [ControlTopicSink(control)], metrics=Metrics(), clock=lambda: now[0]
    )
    assert asyncio.run(dispatcher.drain()) == 0
    assert pubsub.pull_all(sub) == []
    now[0] = T0 + timedelta(seconds=30)
    assert asyncio.run(dispatcher.drain()) == 1
    (message,) = pubsub.pull_all(sub)
    assert message.attributes["ce-id"] == item.id
    store.close()


class _Recording:
    """An in-process sink taking resume notices, signalling the first."""

    name = "recording"
    kinds: frozenset[int] = frozenset({notices.RESUME})
    targets = False

    def __init__(self) -> None:
        self.got: list[str] = []
        self.arrived = asyncio.Event()

    async def deliver(self, item: OutboxItem) -> None:
        self.got.append(item.id)
        self.arrived.set()


def test_the_dispatcher_wakes_when_a_resume_becomes_due_without_a_kick_or_sweep(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "w.db")
    item = _resume_row(store, 1.0, datetime.now(UTC))  # not due at the first pass

    async def main() -> list[str]:
        sink = _Recording()
        dispatcher = Dispatcher(store, [sink], sweep_seconds=3600, metrics=Metrics())
        task = asyncio.create_task(dispatcher.run())
        try:
            await asyncio.wait_for(sink.arrived.wait(), 60)  # a sweep an hour away: timeout
        finally:
            dispatcher.stop()
            await task
        return sink.got

    assert asyncio.run(main()) == [item.id]
    store.close()


# ---- the format and the consumers ------------------------------------------------------


def test_control_topic_setting_needs_a_topic_path(pubsub_env: str) -> None:
    from tracker.errors import ConfigError
    from tracker.server import config_sinks

    with pytest.raises(ConfigError, match="--control-topic: needs projects/P/topics/T"):
        Config(db=":memory:", control_topic="tracker-control").validate()
    config = Config(db=":memory:", control_topic="projects/p/topics/c").validate()
    assert [type(s).__name__ for s in config_sinks(config)] == ["ControlTopicSink"]


def _notice(name: str = "operations/fmt", **fields: Any) -> Notice:
    return notices.make(notices.RESUME, name, attempt=2, reason=Notice.STALLED, **fields)


def test_parse_notice_reads_what_the_sink_writes_and_refuses_anything_else() -> None:
    notice = _notice(has_checkpoint=True, operation_type="export")
    notice.target = ""
    attributes = notice_attributes("n-1", notice)
    note = parse_notice(attributes, notice_data(notice))
    assert (note.id, note.kind, note.attempt, note.reason, note.has_checkpoint) == (
        "n-1",
        "resume",
        2,
        "stalled",
        True,
    )
    assert note.notice == notice
    with pytest.raises(InvalidArgument, match="not a control notice"):
        parse_notice({"ce-type": "tracker.operation.v1.done"}, b"{}")
    with pytest.raises(InvalidArgument, match=r"not a tracker\.v1\.Notice"):
        parse_notice({"ce-type": RESUME_TYPE}, b"\xff not json")
    with pytest.raises(InvalidArgument, match="disagree"):
        parse_notice({"ce-type": CANCEL_TYPE}, notice_data(notice))
    newer = notice_data(notice).replace(b"{", b'{"someFutureField": 1,', 1)
    assert parse_notice(attributes, newer).notice == notice  # unknown fields ignored


def test_notice_attributes_stay_within_pubsub_limits() -> None:
    long_name = "operations/" + "n" * 1100  # longer than an attribute value may be
    attributes = notice_attributes("n-2", _notice(long_name))
    assert "operation" not in attributes and "ce-subject" not in attributes
    assert attributes["attributes_truncated"] == "true"
    assert all(len(k.encode()) <= 256 and len(v.encode()) <= 1024 for k, v in attributes.items())
    assert len(attributes) <= 100


def test_subscribe_notices_runs_the_callback_once_per_id(pubsub: PubSub, collect: Any) -> None:
    control = pubsub.topic()
    sub = pubsub.subscription(control)
    sink = ControlTopicSink(control)
    from google.longrunning import operations_pb2

    operation = operations_pb2.Operation(name="operations/twice")
    for item_id in ("r-1", "r-1", "r-2"):  # r-1 redelivered, as after a crash
        item = OutboxItem(
            id=item_id,
            operation=operation,
            created_at=datetime.now(UTC),
            notice=_notice("operations/twice"),
        )
        asyncio.run(sink.deliver(item))
    collector = collect(sub)
    collector.wait_for(2)
    # The duplicate arrives before r-2 on the ordering key: once r-2 is in, r-1's copy
    # has been seen and dropped.
    assert sorted(n.id for n in collector.got) == ["r-1", "r-2"]


def test_a_notice_published_again_is_the_same_message(pubsub: PubSub) -> None:
    """The outbox row published twice (a redelivery after a crash, or a retried publish):
    the same attributes, ce-time included, which is when the row was written."""
    from google.longrunning import operations_pb2

    control = pubsub.topic()
    sub = pubsub.subscription(control)
    sink = ControlTopicSink(control)
    written = datetime(2024, 6, 1, 12, 0, 5, 250000, tzinfo=UTC)
    item = OutboxItem(
        id="again-1",
        operation=operations_pb2.Operation(name="operations/again"),
        created_at=written,
        notice=_notice("operations/again"),
    )
    asyncio.run(sink.deliver(item))
    asyncio.run(sink.deliver(item))
    first, second = pubsub.pull_all(sub)
    assert dict(first.attributes) == dict(second.attributes)
    assert first.data == second.data
    assert first.attributes["ce-time"] == "2024-06-01T12:00:05.250000Z"
    assert first.attributes["ce-dataschema"] == NOTICE_SCHEMA
    assert first.attributes["Content-Type"] == first.attributes["content-type"]
    assert first.attributes["content-type"] == "application/json"


def test_iter_notices_acks_a_notice_only_when_the_loop_moves_on(
    pubsub: PubSub, pubsub_server: str
) -> None:
    if pubsub_server == "google":
        # Reported as xfail in every run, never dropped: tests/README.md, the stream gap.
        pytest.xfail(
            "Google's emulator keeps handing a cancelled stream's messages to it: what a"
            " loop left comes back late or not within 90 s, not the same way twice"
        )
    control = pubsub.topic()
    sub = pubsub.subscription(control)
    sink = ControlTopicSink(control)
    from google.longrunning import operations_pb2

    for item_id, name in (("i-1", "operations/one"), ("i-2", "operations/two")):
        item = OutboxItem(
            id=item_id,
            operation=operations_pb2.Operation(name=name),
            created_at=datetime.now(UTC),
            notice=_notice(name),
        )
        asyncio.run(sink.deliver(item))
    seen: list[str] = []
    for note in iter_notices(sub, idle_timeout=30):
        seen.append(note.id)
        break  # stopped on the first: not acked, so it comes back
    again: list[str] = []
    for note in iter_notices(sub, idle_timeout=30):
        again.append(note.id)
        if {"i-1", "i-2"} <= set(again):
            break
    # The one the first loop stopped on was nacked and came back; none twice in a loop.
    assert seen[0] in again and sorted(again) == ["i-1", "i-2"]


# ---- subscription filters on Google's own emulator -------------------------------------


@pytest.fixture
def google_pubsub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """Google's Pub/Sub emulator for this test; PUBSUB_EMULATOR_HOST points at it."""
    with google_emulator(tmp_path / "pubsub-emulator.log") as host:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", host)
        yield host


def test_googles_emulator_keeps_a_subscription_filter_but_does_not_apply_it(
    google_pubsub: str, tmp_path: Path
) -> None:
    """What the gap in tests/README.md says: pstest applies filters (the tests above),
    Google's emulator (0.8.x) stores them and delivers every message. A test of a filter
    on it would pass for the wrong reason; a newer emulator that filters fails this."""
    pubsub = PubSub()
    # Its names need three characters at least (pstest takes PubSub.topic()'s short ones).
    control = f"projects/{PROJECT}/topics/control-probe"
    pubsub.publisher.create_topic(name=control)
    sub = f"projects/{PROJECT}/subscriptions/control-probe-exports"
    wanted = 'attributes.operation_type = "export" AND attributes.kind = "cancel"'
    pubsub.subscriber.create_subscription(
        request={"name": sub, "topic": control, "filter": wanted, "enable_message_ordering": True}
    )
    assert pubsub.subscriber.get_subscription(subscription=sub).filter == wanted
    with _server(tmp_path, control) as server:
        ingest(server, [created("operations/g-ex"), created("operations/g-im", kind="import")])
        loop: asyncio.AbstractEventLoop = server.loop
        for name in ("operations/g-ex", "operations/g-im"):
            asyncio.run_coroutine_threadsafe(server.tracker.cancel(name), loop).result(30)
        drain(server)
    got = sorted(m.attributes["operation"] for m in pubsub.pull_all(sub))
    assert got == ["operations/g-ex", "operations/g-im"]  # the import one too: not filtered
