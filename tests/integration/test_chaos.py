"""Chaos: a real `tracker serve` killed with SIGKILL, again and again, under load.

Concurrent clients send every event of many operations three times, in random order,
one per request (binary or structured mode) or in batches, and retry whatever got no
2xx answer (refused connections while the server is down, 503s). Meanwhile the server
is killed with SIGKILL several times and started again on the same SQLite file and
port. Afterwards:

- each operation's served state equals that of its stream applied once, in order;
- every event identity is recorded exactly once (nothing lost, nothing applied twice);
- every done operation was notified on the completion topic, under one id only
  (redeliveries after a kill carry the id written with the done transition).

It prints its figures. The seed is fixed for CI; TRACKER_CHAOS_SEED picks another.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
import httpx
import pytest
from google.longrunning import operations_pb2
from google.rpc import code_pb2, status_pb2

from tests.helpers import ROOT, T0, make_event, packed_struct
from tests.pubsub_kit import PubSub
from tracker.bindings import DoneNotification, parse_done, to_batch, to_binary, to_structured
from tracker.dev import free_port
from tracker.events import Event, Kind
from tracker.stores.sqlite import SqliteStore
from tracker.v1 import operation_pb2

OPERATIONS = 60
COPIES = 3
CLIENTS = 4
KILLS = 4
SEED = int(os.environ.get("TRACKER_CHAOS_SEED", "20261201"))


def stream(index: int, rng: random.Random) -> list[Event]:
    """One operation's life, in order: created, progress/checkpoints, one terminal event."""
    name = f"operations/chaos-{index}"
    start = T0 + timedelta(minutes=index)
    events = [make_event(Kind.CREATED, name, seq=1, time=start, data={"operation_type": "c"})]
    for step in range(1, rng.randint(3, 8)):
        kind = Kind.CHECKPOINT if step % 3 == 0 else Kind.PROGRESS
        data: dict[str, object] = (
            {"data": f"chunk-{step}".encode()}
            if kind is Kind.CHECKPOINT
            else {"percent": min(10.0 * step, 99.0), "message": f"step {step}"}
        )
        events.append(
            make_event(kind, name, seq=step + 1, time=start + timedelta(seconds=step), data=data)
        )
    end = start + timedelta(seconds=30)
    seq = len(events) + 1
    if index % 4 == 3:
        error = status_pb2.Status(code=code_pb2.INTERNAL, message="worker gave up")
        events.append(make_event(Kind.FAILED, name, seq=seq, time=end, data={"error": error}))
    else:
        response = packed_struct(rows=index)
        events.append(
            make_event(Kind.SUCCEEDED, name, seq=seq, time=end, data={"response": response})
        )
    return events


def expected_states(streams: list[list[Event]]) -> dict[str, tuple[bytes, bytes | None]]:
    """Each stream applied once, in order, on a fresh store: (served operation, checkpoint)."""
    store = SqliteStore(":memory:")
    for events in streams:
        for event in events:
            store.apply([event])
    out = {}
    for events in streams:
        stored = store.get(events[0].operation)
        assert stored is not None
        out[events[0].operation] = (comparable(stored.operation), stored.checkpoint)
    store.close()
    return out


def comparable(operation: operations_pb2.Operation) -> bytes:
    """The served operation without update_time (the wall clock of the last change)."""
    copy = operations_pb2.Operation()
    copy.CopyFrom(operation)
    meta = operation_pb2.OperationMetadata()
    if copy.metadata.Unpack(meta):
        meta.ClearField("update_time")
        copy.metadata.Pack(meta)
    return copy.SerializeToString(deterministic=True)


@dataclass
class Tracker:
    """The real server process, restartable on the same file and port."""

    db: Path
    topic: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[str] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tracker.cli",
                "serve",
                "--db",
                str(self.db),
                "--http-port",
                str(self.port),
                "--grpc-port",
                "-1",
                "--done-topic",
                self.topic,
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=dict(os.environ),
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if re.search(r"HTTP on http://", line):
                self.starts += 1
                threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()
                return
        raise AssertionError(f"tracker serve exited with {self.proc.wait()}")

    @staticmethod
    def _drain(proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for _ in proc.stderr:
            pass
        proc.stderr.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@dataclass
class Figures:
    requests: int = 0
    retries: int = 0
    rejected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def deliveries(streams: list[list[Event]], rng: random.Random) -> list[list[Event]]:
    """Every event COPIES times, shuffled, cut into single events and small batches."""
    flat = [event for events in streams for event in events for _ in range(COPIES)]
    rng.shuffle(flat)
    out: list[list[Event]] = []
    while flat:
        size = 1 if rng.random() < 0.6 else rng.randint(2, 8)
        out.append(flat[:size])
        flat = flat[size:]
    return out


def send(url: str, batch: list[Event], rng: random.Random, figures: Figures) -> None:
    """Send until the tracker answers 2xx; a 4xx is a defect (every event is valid)."""
    if len(batch) > 1:
        headers, body = to_batch(batch)
    else:
        encode = to_binary if rng.random() < 0.5 else to_structured
        headers, body = encode(batch[0])
    while True:
        with figures.lock:
            figures.requests += 1
        try:
            response = httpx.post(f"{url}/v1/events", headers=headers, content=body, timeout=10)
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code < 300:
            return
        if response is not None and response.status_code < 500:
            with figures.lock:
                figures.rejected.append(response.text[:200])
            return
        with figures.lock:
            figures.retries += 1
        time.sleep(0.05)  # the server is down or busy: a retry interval, not a sync point


@pytest.fixture
def chaos_topic(pubsub_env: str) -> Iterator[tuple[str, str]]:
    pubsub = PubSub()
    topic = pubsub.topic()
    yield topic, pubsub.subscription(topic, ordered=False)


def test_sigkill_under_concurrent_duplicated_reordered_load(
    chaos_topic: tuple[str, str], tmp_path: Path
) -> None:
    topic, subscription = chaos_topic
    rng = random.Random(SEED)
    streams = [stream(i, rng) for i in range(OPERATIONS)]
    expected = expected_states(streams)
    work = deliveries(streams, rng)
    assert len(work) > 100
    tracker = Tracker(tmp_path / "chaos.db", topic)
    figures = Figures()
    started = time.monotonic()
    tracker.start()
    queue = list(reversed(work))
    queue_lock = threading.Lock()
    left_at_kill: list[int] = []

    def client(seed: int) -> None:
        local = random.Random(seed)
        while True:
            with queue_lock:
                if not queue:
                    return
                batch = queue.pop()
            send(tracker.url, batch, local, figures)

    threads = [threading.Thread(target=client, args=(SEED + i,)) for i in range(CLIENTS)]
    try:
        for t in threads:
            t.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 1.0))  # load runs for a while, then the kill
            with queue_lock:
                left_at_kill.append(len(queue))
            tracker.kill()
            tracker.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads), "clients did not finish"
        notes = collect_notifications(subscription, {n for n, (op, _) in expected.items()})
    finally:
        tracker.stop()
    elapsed = time.monotonic() - started

    assert figures.rejected == [], figures.rejected[:3]
    assert all(left_at_kill), f"a kill came after the load ended: {left_at_kill}"
    store = SqliteStore(tracker.db)
    try:
        for name, (operation, checkpoint) in expected.items():
            stored = store.get(name)
            assert stored is not None, name
            assert comparable(stored.operation) == operation, name
            assert stored.checkpoint == checkpoint, name
        distinct = {e.identity for events in streams for e in events}
        assert store.count("applied_events") == len(distinct)
        assert store.outbox_pending() == []
    finally:
        store.close()
    ids: dict[str, set[str]] = defaultdict(set)
    for note in notes:
        ids[note.operation.name].add(note.id)
    assert set(ids) == set(expected), "every done operation is notified"
    assert all(len(v) == 1 for v in ids.values()), {k: v for k, v in ids.items() if len(v) > 1}
    print(
        f"\nchaos: {OPERATIONS} operations, {len(distinct)} events x{COPIES} in"
        f" {len(work)} deliveries by {CLIENTS} clients; {KILLS} SIGKILLs"
        f" ({tracker.starts} starts, deliveries left at each: {left_at_kill});"
        f" {figures.requests} requests, {figures.retries} retried;"
        f" {len(notes)} notifications received for {len(ids)} operations"
        f" ({len(notes) - len(ids)} redelivered, one id each); {elapsed:.1f} s"
    )


def collect_notifications(subscription: str, names: set[str]) -> list[DoneNotification]:
    """Every done-notification delivered (redeliveries included, nothing de-duplicated),
    until each name has one; the last process delivers what the killed ones left."""
    notes: list[DoneNotification] = []
    lock = threading.Lock()
    complete = threading.Event()

    def on_message(message: Any) -> None:
        note = parse_done(dict(message.attributes), bytes(message.data))
        with lock:
            notes.append(note)
            if names <= {n.operation.name for n in notes}:
                complete.set()
        message.ack()

    subscriber = pubsub_v1.SubscriberClient()
    future = subscriber.subscribe(subscription, on_message)
    try:
        assert complete.wait(90), "not every done operation was notified"
    finally:
        future.cancel()
        subscriber.close()
    with lock:
        return list(notes)
