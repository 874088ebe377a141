"""tracker.once over a real completion subscription: duplicates, a consumer restart and a
failing effect, on both Pub/Sub emulators."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from google.longrunning import operations_pb2

from tests.helpers import outbox_item
from tests.pubsub_kit import PubSub
from tracker.bindings import DoneNotification
from tracker.done import subscribe_done
from tracker.notify.pubsub import PubSubSink
from tracker.once import SqliteSeen, once


def _publish(sink: PubSubSink, note_id: str, name: str) -> None:
    asyncio.run(sink.deliver(outbox_item(note_id, operations_pb2.Operation(name=name, done=True))))


def _until(check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_effect_runs_once_across_duplicates_restarts_and_a_failure(
    pubsub_env: str, tmp_path: Path
) -> None:
    pubsub = PubSub()
    topic = pubsub.topic()
    sub = pubsub.subscription(topic, ordered=False)
    sink = PubSubSink(topic)
    lock = threading.Lock()
    ran: list[str] = []
    calls: list[str] = []
    fail_first = {"flaky"}

    def effect(note: DoneNotification) -> None:
        with lock:
            calls.append(note.id)
            if note.id in fail_first:
                fail_first.discard(note.id)
                raise RuntimeError("the invoice service is down")
            ran.append(note.id)

    path = tmp_path / "seen.db"
    stream = subscribe_done(sub, once(effect, SqliteSeen(path)))
    try:
        _publish(sink, "n-1", "operations/a")
        _publish(sink, "n-1", "operations/a")  # a duplicate publish, same id
        _publish(sink, "flaky", "operations/b")  # fails once, nacked, redelivered
        _until(lambda: sorted(ran) == ["flaky", "n-1"])
    finally:
        stream.cancel()
        stream.result(timeout=30)  # stopped for good: what it held goes back (nacked)
    assert calls.count("flaky") == 2 and ran.count("n-1") == 1

    # A new consumer process opens the same file: the ids it finished stay finished. It
    # reads a subscription of its own on the topic, so that what is proved is the file,
    # not how soon an emulator hands a restarted stream what the cancelled one held
    # (Google's emulator sometimes took over 60 s under a full test run's load).
    again = pubsub.subscription(topic, ordered=False)
    stream = subscribe_done(again, once(effect, SqliteSeen(path)))
    try:
        _publish(sink, "n-1", "operations/a")
        _publish(sink, "flaky", "operations/b")
        _publish(sink, "n-2", "operations/c")
        _until(lambda: "n-2" in ran)
        time.sleep(1.0)  # room for a wrongly repeated effect to show
    finally:
        stream.cancel()
    assert sorted(ran) == ["flaky", "n-1", "n-2"]
