"""Pub/Sub in and out, against Google's pstest server on loopback.

Pull: binary and structured mode, redelivery, poison (dead-letter table or topic),
transient failures (nack, then redelivery applies), streaming pull. Out: the completion
topic with filterable attributes, and a notification committed before a crash.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.longrunning import operations_pb2
from google.rpc import code_pb2, status_pb2

from tests.helpers import ROOT, T0, ingest, make_event, outbox_item
from tests.pubsub_kit import PROJECT, PubSub, _names, drain, filtered
from tracker.bindings import DONE_TYPE, done_attributes, ordering_key
from tracker.config import Config
from tracker.events import Kind
from tracker.server import Server, running
from tracker.sources.pubsub_pull import PullSubscriber
from tracker.stores.sqlite import SqliteStore
from tracker.v1 import operation_pb2


@pytest.fixture
def pubsub(pubsub_env: str) -> PubSub:
    return PubSub()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running(Config(db=str(tmp_path / "t.db"), http_port=0, grpc_port=0)) as s:
        yield s


def test_pull_applies_binary_and_structured_and_absorbs_redelivery(
    pubsub: PubSub, server: Server
) -> None:
    topic = pubsub.topic()
    sub = pubsub.subscription(topic)
    name = "operations/pull-1"
    created = make_event(Kind.CREATED, name, seq=1, data={"operation_type": "export"})
    pubsub.publish(topic, created)
    pubsub.publish(
        topic, make_event(Kind.PROGRESS, name, seq=2, data={"percent": 50}), "structured"
    )
    pubsub.publish(topic, created)  # a producer retry: same event id
    assert drain(server, sub) == 3
    stored = server.store.get(name)
    assert stored is not None and stored.state.percent == 50
    assert stored.state.operation_type == "export"
    assert drain(server, sub) == 0  # everything was acked


def test_pull_poison_goes_to_dead_letter_table_and_is_acked(pubsub: PubSub, server: Server) -> None:
    topic = pubsub.topic()
    sub = pubsub.subscription(topic)
    pubsub.publish_raw(
        topic,
        b"{}",
        **{
            "ce-specversion": "1.0",
            "ce-id": "1",
            "ce-source": "w",
            "ce-type": "tracker.operation.v1.bogus",
            "ce-subject": "operations/x",
        },
    )
    pubsub.publish_raw(topic, b"not a cloudevent at all")
    good = make_event(Kind.SUCCEEDED, "operations/fine")
    pubsub.publish(topic, good)
    assert drain(server, sub) == 3
    reasons = sorted(d.reason for d in server.store.dead_letters())
    assert reasons == ["bad_content_type", "unknown_type"]
    assert {d.route for d in server.store.dead_letters()} == {"pull"}
    assert server.store.get("operations/fine") is not None
    assert drain(server, sub) == 0  # poison was acked, not looping


def test_pull_poison_goes_to_dead_letter_topic_with_reason(pubsub: PubSub, server: Server) -> None:
    topic, dlq = pubsub.topic(), pubsub.topic()
    sub, dlq_sub = pubsub.subscription(topic), pubsub.subscription(dlq)
    event = make_event(Kind.PROGRESS, "bad name with spaces")
    pubsub.publish(topic, event)
    assert drain(server, sub, dead_letter_topic=dlq) == 1
    (message,) = pubsub.pull_all(dlq_sub)
    assert message.attributes["tracker-reason"] == "bad_name"
    assert message.attributes["ce-id"] == event.id  # original attributes kept for replay
    assert server.store.dead_letters() == []


def test_pull_transient_failure_nacks_and_redelivery_applies(
    pubsub: PubSub, tmp_path: Path
) -> None:
    db = tmp_path / "locked.db"
    store = SqliteStore(db, busy_timeout_ms=50)
    topic = pubsub.topic()
    sub = pubsub.subscription(topic)
    with running(Config(db=str(db), http_port=0, grpc_port=-1), store=store) as server:
        pubsub.publish(topic, make_event(Kind.SUCCEEDED, "operations/retry"))
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        puller = PullSubscriber(server.tracker, sub)
        loop: asyncio.AbstractEventLoop = server.loop  # type: ignore[attr-defined]
        # One pull: the store is locked, the message is nacked (not lost, not dead-lettered).
        response = puller.subscriber.pull(subscription=sub, max_messages=10, timeout=5)
        acks: list[str] = []
        nacks: list[str] = []
        from tracker.sources.pubsub_pull import _from_pull

        batch = [_from_pull(r, acks, nacks) for r in response.received_messages]
        asyncio.run_coroutine_threadsafe(puller.handle(batch), loop).result(30)
        assert (len(acks), len(nacks)) == (0, 1)
        puller.subscriber.modify_ack_deadline(
            subscription=sub, ack_ids=nacks, ack_deadline_seconds=0
        )
        blocker.execute("ROLLBACK")
        blocker.close()
        assert drain(server, sub) == 1  # redelivered and applied
        assert store.get("operations/retry").operation.done  # type: ignore[union-attr]
        assert store.dead_letters() == []


def test_streaming_pull_in_serve_applies_and_wakes_waiters(pubsub: PubSub, tmp_path: Path) -> None:
    topic = pubsub.topic()
    sub = pubsub.subscription(topic)
    config = Config(db=str(tmp_path / "s.db"), http_port=0, grpc_port=-1, subscription=sub)
    with running(config) as server:
        name = "operations/streamed"
        ingest(server, [make_event(Kind.CREATED, name)])
        waiter = asyncio.run_coroutine_threadsafe(
            server.tracker.wait(name, 60),
            server.loop,  # type: ignore[attr-defined]
        )
        pubsub.publish(topic, make_event(Kind.PROGRESS, name, data={"percent": 10}))
        pubsub.publish(topic, make_event(Kind.SUCCEEDED, name))
        operation = waiter.result(60)  # wakes on the commit; no polling
        assert operation.done and operation.HasField("response")


# ---- completion topic --------------------------------------------------------------------


def _done_server(tmp_path: Path, topic: str) -> Any:
    return running(Config(db=str(tmp_path / "d.db"), http_port=0, grpc_port=-1, done_topic=topic))


def test_done_notifications_reach_exactly_the_filtered_subscribers(
    pubsub: PubSub, tmp_path: Path
) -> None:
    done = pubsub.topic()
    filters = {
        "exports": 'attributes.operation_type = "export"',
        "failures": 'attributes.result = "failed"',
        "prod": 'attributes.label_env = "prod"',
    }
    subs = {key: pubsub.subscription(done, f) for key, f in filters.items()}
    with _done_server(tmp_path, done) as server:
        ingest(
            server,
            [
                make_event(
                    Kind.CREATED,
                    "operations/a",
                    data={"operation_type": "export", "labels": {"env": "prod"}},
                ),
                make_event(Kind.SUCCEEDED, "operations/a"),
                make_event(Kind.CREATED, "operations/b", data={"operation_type": "import"}),
                make_event(
                    Kind.FAILED,
                    "operations/b",
                    data={"error": status_pb2.Status(code=code_pb2.NOT_FOUND, message="x")},
                ),
                make_event(Kind.PROGRESS, "operations/c"),  # not done: no notification
            ],
        )
        loop: asyncio.AbstractEventLoop = server.loop
        asyncio.run_coroutine_threadsafe(server.tracker.dispatcher.drain(), loop).result(30)
        assert server.store.outbox_pending() == []
    # Two notifications (operations/a, operations/b); Google's emulator delivers both to
    # every subscription, and `filtered` keeps what its attributes select there.
    got = {
        key: filtered(pubsub, pubsub.pull_all(sub), filters[key], published=2)
        for key, sub in subs.items()
    }
    assert [m.attributes["operation"] for m in got["exports"]] == ["operations/a"]
    assert [m.attributes["operation"] for m in got["failures"]] == ["operations/b"]
    assert [m.attributes["operation"] for m in got["prod"]] == ["operations/a"]
    failed = got["failures"][0]
    assert failed.attributes["error_code"] == "NOT_FOUND"
    assert failed.attributes["ce-type"] == DONE_TYPE
    assert failed.ordering_key == "operations/b"
    operation = operations_pb2.Operation.FromString(failed.data)
    assert operation.done and operation.error.code == code_pb2.NOT_FOUND


def test_notification_committed_before_a_crash_is_published_after_restart(
    pubsub: PubSub, tmp_path: Path
) -> None:
    done = pubsub.topic()
    sub = pubsub.subscription(done)
    crashed = SqliteStore(tmp_path / "d.db")  # committed the done transition, then died
    crashed.apply([make_event(Kind.SUCCEEDED, "operations/crash")])
    (pending,) = crashed.outbox_pending()
    crashed.close()
    with _done_server(tmp_path, done) as server:
        loop: asyncio.AbstractEventLoop = server.loop
        asyncio.run_coroutine_threadsafe(server.tracker.dispatcher.drain(), loop).result(30)
    messages = pubsub.pull_all(sub)
    # Exactly one id, the outbox row's, even if the start-up sweep and drain both ran.
    assert {m.attributes["ce-id"] for m in messages} == {pending.id}
    assert all(m.attributes["operation"] == "operations/crash" for m in messages)


def test_subscribe_done_drops_redelivered_notifications(pubsub: PubSub) -> None:
    import threading

    from tracker.done import subscribe_done
    from tracker.notify.pubsub import PubSubSink

    done = pubsub.topic()
    sub = pubsub.subscription(done)
    sink = PubSubSink(done)
    operation = operations_pb2.Operation(name="operations/twice", done=True)
    for _ in range(2):  # the dispatcher redelivers after a crash: same notification id
        asyncio.run(sink.deliver(outbox_item("note-1", operation)))
    asyncio.run(
        sink.deliver(
            outbox_item("note-2", operations_pb2.Operation(name="operations/other", done=True))
        )
    )
    seen: list[tuple[str, str]] = []
    both = threading.Event()

    def on_done(note: Any) -> None:
        seen.append((note.id, note.operation.name))
        if len(seen) >= 2:
            both.set()

    future = subscribe_done(sub, on_done)
    try:
        assert both.wait(30)
    finally:
        future.cancel()
    assert sorted(seen) == [("note-1", "operations/twice"), ("note-2", "operations/other")]


def test_a_publish_that_fails_is_retried_by_the_dispatcher_with_the_same_id(
    pubsub: PubSub, tmp_path: Path
) -> None:
    from datetime import timedelta

    from tracker.metrics import Metrics
    from tracker.notify.outbox import Dispatcher
    from tracker.notify.pubsub import PubSubSink

    name = f"projects/{PROJECT}/topics/later{next(_names)}"  # not created yet
    store = SqliteStore(tmp_path / "r.db")
    store.apply([make_event(Kind.SUCCEEDED, "operations/retry")], now=T0)
    (item,) = store.outbox_pending()
    now = [T0 + timedelta(minutes=1)]
    dispatcher = Dispatcher(
        store, [PubSubSink(name, timeout=30)], metrics=Metrics(), clock=lambda: now[0]
    )
    assert asyncio.run(dispatcher.drain()) == 0
    (failed,) = store.outbox_pending()
    assert failed.attempts == 1 and failed.last_error.startswith("pubsub: NotFound")
    pubsub.publisher.create_topic(name=name)
    sub = pubsub.subscription(name)
    now[0] += timedelta(hours=1)
    # The failed publish paused the ordering key; the sink resumed it, so this goes out.
    assert asyncio.run(dispatcher.drain()) == 1
    (message,) = pubsub.pull_all(sub)
    assert message.attributes["ce-id"] == item.id
    # ce-time is the operation's end, not either publish's: the same as a first try's.
    assert message.attributes["ce-time"] == done_attributes(item.id, item.operation)["ce-time"]
    meta = operation_pb2.OperationMetadata()
    assert item.operation.metadata.Unpack(meta) and meta.HasField("end_time")
    assert message.attributes["ce-time"] == meta.end_time.ToJsonString()
    assert store.outbox_pending() == []
    store.close()


# ---- attribute limits ---------------------------------------------------------------------


def _labelled(labels: dict[str, str]) -> operations_pb2.Operation:
    meta = operation_pb2.OperationMetadata(operation_type="export", labels=labels)
    operation = operations_pb2.Operation(name="operations/many-labels", done=True)
    operation.metadata.Pack(meta)
    return operation


def _many_labels() -> dict[str, str]:
    """200 labels with long keys and values, some too long, two that collide."""
    labels = {}
    for i in range(200):
        key = f"k{i:03d}-" + "k" * (60 if i % 40 != 7 else 300)  # every 40th: key too long
        labels[key] = f"{i}:" + "v" * (900 if i % 40 != 9 else 1100)  # value too long
    labels["a.same"] = "first"  # both become label_a_same: the first in key order counts
    labels["a/same"] = "second"
    labels["\u00e9t\u00e9"] = "\u00fc" * 600  # 1200 bytes: too long, though 600 characters
    return labels


def _expected_labels(labels: dict[str, str], room: int) -> dict[str, str]:
    """The documented rule, written out: key order, too long or colliding left out."""
    out: dict[str, str] = {}
    for key in sorted(labels):
        attribute = "label_" + "".join(
            c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in key
        )
        if attribute in out or len(attribute.encode()) > 256 or len(labels[key].encode()) > 1024:
            continue
        out[attribute] = labels[key]
    return dict(list(out.items())[:room])


def test_done_attributes_follow_one_deterministic_rule_within_pubsub_limits() -> None:
    labels = _many_labels()
    first = done_attributes("note-1", _labelled(labels), T0)
    again = done_attributes("note-1", _labelled(dict(reversed(list(labels.items())))), T0)
    assert first == again  # whatever the map order
    assert len(first) == 100 and first["attributes_truncated"] == "true"
    fixed = {k: v for k, v in first.items() if not k.startswith("label_")}
    assert fixed["operation_type"] == "export" and fixed["ce-id"] == "note-1"
    assert fixed["ce-time"] == "2026-01-01T00:00:00Z"  # no end_time: when the row was written
    room = 100 - len(fixed)  # the fixed ones and the flag, then the labels
    assert {k: v for k, v in first.items() if k.startswith("label_")} == _expected_labels(
        labels, room
    )
    assert first["label_a_same"] == "first"

    few = done_attributes("note-2", _labelled({"env": "prod", "team": "data"}))
    assert few["label_env"] == "prod" and "attributes_truncated" not in few
    just_full = {f"l{i:03d}": "v" for i in range(100 - len(few) + 2)}  # exactly the room left
    full = done_attributes("note-3", _labelled(just_full))
    assert len(full) == 100 and "attributes_truncated" not in full
    over = done_attributes("note-4", _labelled({**just_full, "zz": "one more"}))
    assert len(over) == 100 and over["attributes_truncated"] == "true"
    assert "label_zz" not in over and "label_l000" in over
    long_type = _labelled({})
    meta = operation_pb2.OperationMetadata(operation_type="t" * 2000)
    long_type.metadata.Pack(meta)
    cut = done_attributes("note-5", long_type)
    assert "operation_type" not in cut and cut["attributes_truncated"] == "true"  # never cut
    assert ordering_key(long_type) == "operations/many-labels"
    assert ordering_key(operations_pb2.Operation(name="operations/" + "\u00e9" * 600)) == ""


def test_notification_with_200_long_labels_is_published_within_the_limits(pubsub: PubSub) -> None:
    from tracker.notify.pubsub import PubSubSink

    done = pubsub.topic()
    everything = pubsub.subscription(done)
    truncated = pubsub.subscription(done, 'attributes.attributes_truncated = "true"')
    labels = _many_labels()
    operation = _labelled(labels)
    asyncio.run(PubSubSink(done).deliver(outbox_item("note-many", operation)))
    (message,) = pubsub.pull_all(everything)
    assert [m.attributes["ce-id"] for m in pubsub.pull_all(truncated)] == ["note-many"]
    attributes = dict(message.attributes)
    assert len(attributes) == 100
    assert all(len(k.encode()) <= 256 and len(v.encode()) <= 1024 for k, v in attributes.items())
    assert attributes["attributes_truncated"] == "true"
    assert attributes["operation"] == "operations/many-labels"
    assert attributes["result"] == "succeeded" and attributes["operation_type"] == "export"
    fixed = [k for k in attributes if not k.startswith("label_")]
    got = {k: v for k, v in attributes.items() if k.startswith("label_")}
    assert got == _expected_labels(labels, 100 - len(fixed))
    assert message.ordering_key == "operations/many-labels"
    # The data still carries every label.
    meta = operation_pb2.OperationMetadata()
    assert operations_pb2.Operation.FromString(message.data).metadata.Unpack(meta)
    assert dict(meta.labels) == labels


def test_serve_stops_with_one_line_when_the_subscription_does_not_exist(pubsub_env: str) -> None:
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracker.cli",
            "serve",
            "--db",
            ":memory:",
            "--http-port",
            "0",
            "--grpc-port",
            "-1",
            "--log-level",
            "warning",
            "--subscription",
            f"projects/{PROJECT}/subscriptions/missing",
        ],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("tracker: error:")]
    assert len(errors) == 1 and "subscriptions/missing" in errors[0]
    assert "Traceback" not in result.stderr


def test_one_message_that_fails_in_the_store_is_dead_lettered_alone(
    pubsub: PubSub, tmp_path: Path
) -> None:
    """Pulled together, the messages apply together; the one the store cannot take is
    found and dead-lettered, every other one applies."""
    from tests.faulty_serve import FaultyStore

    store = FaultyStore(str(tmp_path / "f.db"))
    topic = pubsub.topic()
    sub = pubsub.subscription(topic, ordered=False)
    names = [f"operations/batch-{i}" for i in range(7)] + ["operations/explode-in-batch"]
    for name in names:
        pubsub.publish(topic, make_event(Kind.SUCCEEDED, name))
    with running(Config(db=str(tmp_path / "f.db"), http_port=0, grpc_port=-1), store=store) as s:
        assert drain(s, sub) == len(names)
        (letter,) = store.dead_letters()
        assert letter.reason == "internal" and "explode" in letter.attributes["ce-subject"]
        for name in names[:-1]:
            stored = store.get(name)
            assert stored is not None and stored.operation.done, name
        assert drain(s, sub) == 0  # all acked


def test_subscribe_done_runs_a_failed_callback_again_on_redelivery(pubsub: PubSub) -> None:
    import threading

    from tracker.done import subscribe_done
    from tracker.notify.pubsub import PubSubSink

    done = pubsub.topic()
    sub = pubsub.subscription(done)
    sink = PubSubSink(done)
    for note_id, name in (("note-a", "operations/flaky"), ("note-b", "operations/fine")):
        asyncio.run(
            sink.deliver(outbox_item(note_id, operations_pb2.Operation(name=name, done=True)))
        )
    asyncio.run(  # and a duplicate, as after a dispatcher crash
        sink.deliver(
            outbox_item("note-a", operations_pb2.Operation(name="operations/flaky", done=True))
        )
    )
    attempts: list[str] = []
    effects: list[str] = []
    lock = threading.Lock()
    both = threading.Event()

    def on_done(note: Any) -> None:
        with lock:
            attempts.append(note.id)
            if note.id == "note-a" and attempts.count("note-a") == 1:
                raise RuntimeError("the consumer's database is down, this once")
            effects.append(note.id)
            if {"note-a", "note-b"} <= set(effects):
                both.set()

    future = subscribe_done(sub, on_done)
    try:
        assert both.wait(60), f"lost a notification: attempts {attempts}, effects {effects}"
    finally:
        future.cancel()
    assert attempts.count("note-a") >= 2  # the failure was retried, not dropped as seen
    assert sorted(effects) == ["note-a", "note-b"]  # each effect exactly once


class _Delivery:
    """A Pub/Sub message as subscribe_done's callback receives it, recording the answer."""

    def __init__(self, note_id: str) -> None:
        self.attributes = {"ce-type": DONE_TYPE, "ce-id": note_id}
        self.data = operations_pb2.Operation(name="operations/dup", done=True).SerializeToString()
        self.answers: list[str] = []

    def ack(self) -> None:
        self.answers.append("ack")

    def nack(self) -> None:
        self.answers.append("nack")

    def drop(self) -> None:
        self.answers.append("drop")


class _OneCallbackSubscriber:
    """Stands in for SubscriberClient: keeps the callback so a test can deliver two
    copies of one message at the same moment, which pstest cannot be made to do."""

    callback: Any = None

    def subscribe(
        self, subscription: str, callback: Any, await_callbacks_on_shutdown: bool = False
    ) -> None:
        self.callback = callback


def test_subscribe_done_never_runs_one_id_twice_at_once() -> None:
    import threading

    from tracker.done import subscribe_done

    entered, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def on_done(note: Any) -> None:
        calls.append(note.id)
        if len(calls) == 1:
            entered.set()
            assert release.wait(30)
        elif len(calls) == 2:
            raise RuntimeError("fails once")

    subscriber = _OneCallbackSubscriber()
    subscribe_done("projects/p/subscriptions/s", on_done, subscriber=subscriber)
    first, duplicate = _Delivery("n1"), _Delivery("n1")
    running = threading.Thread(target=subscriber.callback, args=(first,))
    running.start()
    assert entered.wait(30)
    subscriber.callback(duplicate)  # arrives while the first copy's callback runs
    assert calls == ["n1"] and duplicate.answers == ["drop"]  # left for redelivery
    release.set()
    running.join(30)
    assert first.answers == ["ack"]
    again = _Delivery("n1")
    subscriber.callback(again)  # the dropped copy, redelivered: handled already
    assert calls == ["n1"] and again.answers == ["ack"]
    # A callback that raises: nacked, not remembered, so the redelivery runs it again.
    failing, retried = _Delivery("n2"), _Delivery("n2")
    subscriber.callback(failing)
    subscriber.callback(retried)
    assert calls == ["n1", "n2", "n2"]
    assert (failing.answers, retried.answers) == (["nack"], ["ack"])


def test_wait_done_returns_the_operation_it_waits_for(pubsub: PubSub) -> None:
    from tracker.done import wait_done
    from tracker.notify.pubsub import PubSubSink

    done = pubsub.topic()
    sub = pubsub.subscription(done)
    sink = PubSubSink(done)
    asyncio.run(
        sink.deliver(
            outbox_item("w-1", operations_pb2.Operation(name="operations/other", done=True))
        )
    )
    target = operations_pb2.Operation(name="operations/mine", done=True)
    target.error.code = code_pb2.NOT_FOUND
    asyncio.run(sink.deliver(outbox_item("w-2", target)))
    operation = wait_done(sub, "operations/mine", timeout=60)
    assert operation.name == "operations/mine" and operation.error.code == code_pb2.NOT_FOUND
