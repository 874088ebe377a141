"""The pull subscriber never stops on a per-message error (a real process, pstest)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, make_event
from tests.pubsub_kit import PubSub
from tracker.events import Kind
from tracker.stores.sqlite import SqliteStore


@dataclass
class Faulty:
    pubsub: PubSub
    topic: str
    db: Path
    flag: Path
    url: str

    def transient(self) -> float:
        """tracker_transient_failures_total{route="pull"} as the process reports it."""
        text = httpx.get(f"{self.url}/metrics").text
        match = re.search(r'^tracker_transient_failures_total\{route="pull"\} (\S+)$', text, re.M)
        return float(match.group(1)) if match else 0.0


@pytest.fixture
def serve(pubsub_env: str, tmp_path: Path) -> Iterator[Faulty]:
    """A real faulty tracker pulling from a fresh subscription."""
    pubsub = PubSub()
    topic = pubsub.topic()
    subscription = pubsub.subscription(topic)
    db = tmp_path / "t.db"
    flag = tmp_path / "busy"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.faulty_serve",
            "--db",
            str(db),
            "--subscription",
            subscription,
            "--busy-until-file",
            str(flag),
        ],
        cwd=ROOT,
        env=dict(os.environ),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    url = ""
    for line in proc.stderr:
        match = re.search(r"HTTP on (http://\S+),", line)
        if match:
            url = match.group(1)
            break
    assert url, f"faulty tracker exited with {proc.poll()}"
    os.set_blocking(proc.stderr.fileno(), False)
    try:
        yield Faulty(pubsub, topic, db, flag, url)
        assert proc.poll() is None, "the tracker process stopped"
        assert httpx.get(f"{url}/healthz").status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stderr.close()


def until(check: object, what: str, timeout: float = 60) -> None:
    """Poll an observable condition (the store's rows) until it holds."""
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_message_failing_inside_the_store_is_dead_lettered_and_pulling_goes_on(
    serve: Faulty,
) -> None:
    pubsub, topic, db = serve.pubsub, serve.topic, serve.db
    pubsub.publish(topic, make_event(Kind.PROGRESS, "operations/explode-1", id="boom"))
    pubsub.publish(topic, make_event(Kind.SUCCEEDED, "operations/fine-1"))
    store = SqliteStore(db)
    try:
        until(lambda: store.count("dead_letters") == 1, "the dead letter")
        until(lambda: store.get("operations/fine-1") is not None, "the good event")
        (letter,) = store.dead_letters()
        assert letter.reason == "internal" and letter.route == "pull"
        assert letter.attributes["ce-id"] == "boom" and "log ref" in letter.detail
        assert store.get("operations/explode-1") is None
        # The process is alive and still pulling: a later event applies too.
        pubsub.publish(topic, make_event(Kind.SUCCEEDED, "operations/fine-2"))
        until(lambda: store.get("operations/fine-2") is not None, "a later event")
        assert store.count("dead_letters") == 1  # acked: not redelivered, not recorded twice
    finally:
        store.close()


def test_an_unavailable_store_nacks_and_the_redelivery_applies(
    serve: Faulty,
) -> None:
    pubsub, topic, db, flag = serve.pubsub, serve.topic, serve.db, serve.flag
    store = SqliteStore(db)
    try:
        flag.touch()
        pubsub.publish(topic, make_event(Kind.SUCCEEDED, "operations/later-1"))
        # Nothing is applied or dead-lettered while the store is out...
        until(lambda: serve.transient() >= 1, "a refused delivery")
        assert store.get("operations/later-1") is None and store.count("dead_letters") == 0
        flag.unlink()
        # ...and the redelivery applies once it is back.
        until(lambda: store.get("operations/later-1") is not None, "the redelivery")
        assert store.count("dead_letters") == 0
    finally:
        store.close()
