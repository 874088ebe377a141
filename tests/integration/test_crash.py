"""Kill the tracker between commit and publish: the notification still goes out.

A real `tracker serve` process commits a done transition whose publish cannot succeed
yet (its completion topic does not exist), is killed with SIGKILL, and is started
again once the topic exists: the notification is published then, with the id of the
outbox row written in the original transaction.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from tests.helpers import ROOT, make_event
from tests.pubsub_kit import PROJECT, PubSub
from tracker.bindings import DoneNotification, to_binary
from tracker.done import subscribe_done
from tracker.events import Kind
from tracker.stores.sqlite import SqliteStore


def start(db: Path, topic: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tracker.cli",
            "serve",
            "--db",
            str(db),
            "--http-port",
            "0",
            "--grpc-port",
            "-1",
            "--done-topic",
            topic,
        ],
        cwd=ROOT,
        env=dict(os.environ),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # the server prints its address once it listens
        match = re.search(r"HTTP on (http://\S+),", line)
        if match:
            return proc, match.group(1)
    raise AssertionError(f"tracker serve exited with {proc.wait()}")


def test_sigkill_between_commit_and_publish(pubsub_env: str, tmp_path: Path) -> None:
    pubsub = PubSub()
    topic = f"projects/{PROJECT}/topics/done-later"
    db = tmp_path / "crash.db"
    name = "operations/crash-kill"
    proc, url = start(db, topic)
    try:
        headers, body = to_binary(make_event(Kind.SUCCEEDED, name))
        assert httpx.post(f"{url}/v1/events", headers=headers, content=body).status_code == 200
    finally:
        proc.send_signal(signal.SIGKILL)  # no shutdown, no chance to publish
        proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()
    committed = SqliteStore(db)
    (pending,) = committed.outbox_pending()  # committed with the done transition
    committed.close()

    pubsub.publisher.create_topic(name=topic)
    subscription = pubsub.subscription(topic, f'attributes.operation = "{name}"')
    proc, _ = start(db, topic)
    notes: list[DoneNotification] = []
    arrived = threading.Event()

    def on_done(note: DoneNotification) -> None:
        notes.append(note)
        arrived.set()

    future = subscribe_done(subscription, on_done)
    try:
        assert arrived.wait(60), "no notification after restart"
    finally:
        future.cancel()
        proc.terminate()
        proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()
    (note,) = notes
    assert note.operation.name == name and note.operation.done
    assert note.id == pending.id  # the id written in the original transaction
    reopened = SqliteStore(db)
    assert reopened.outbox_pending() == []
    reopened.close()
