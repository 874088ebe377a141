"""Resume-notice latency, against the done-notification's in the same run. Prints figures.

    .venv/bin/python bench/resume.py [--runs 30] [--sweep-seconds 0.05]

One tracker (SQLite file) with a completion topic and a control topic on pstest (started
here, or PUBSUB_EMULATOR_HOST), and an in-process sink beside them. For each run:

- stall: an operation with a heartbeat timeout and a retry policy (initial backoff 1 ms)
  sends nothing more; from the instant its heartbeat timeout expires to the resume
  notice's arrival. Includes the wait for the next expiry sweep (--sweep-seconds).
- children: a parent with ChildrenPolicy RESUME and three children; from the answer to
  the last child's `succeeded` to the parent's resume notice.
- baseline: from the answer to an operation's `succeeded` to its done-notification,
  measured the same way in the same run: the figures above are also shown as its ratio.

"sink": the tracker's only outbox sink records arrivals in its own process (no Pub/Sub
in the path); "subscriber": a second tracker publishes to both topics and a
streaming-pull subscriber on each (`tracker.resume`, `tracker.done`) records them.
Events go in through the server's Tracker (what every route calls), not HTTP.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from google.protobuf import duration_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.emulators import harness
from tests.helpers import ingest, make_event
from tests.pubsub_kit import PubSub
from tracker import notices
from tracker.bindings import ControlNotice, DoneNotification
from tracker.config import Config
from tracker.done import subscribe_done
from tracker.events import Kind
from tracker.resume import subscribe_notices
from tracker.server import Server, running
from tracker.stores.base import OutboxItem
from tracker.v1 import events_pb2


class Arrivals:
    """When each operation's notice arrived (wall clock), and a wait for one."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.cond = threading.Condition()

    def arrived(self, name: str) -> None:
        with self.cond:
            self.times.setdefault(name, time.time())
            self.cond.notify_all()

    def wait(self, name: str, timeout: float = 60) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: name in self.times, timeout):
                raise TimeoutError(f"no notice for {name} within {timeout} s")
            return self.times[name]


class RecordingSink:
    """An outbox sink in the tracker's process: resume and done notices, arrival times."""

    name = "bench"
    kinds: frozenset[int] = frozenset({notices.RESUME, notices.DONE})
    targets = False

    def __init__(self) -> None:
        self.resumes = Arrivals()
        self.dones = Arrivals()

    async def deliver(self, item: OutboxItem) -> None:
        kind = item.notice.kind or notices.DONE
        (self.resumes if kind == notices.RESUME else self.dones).arrived(item.operation.name)


def duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(timedelta(seconds=seconds))
    return d


RETRY = events_pb2.RetryPolicy(max_attempts=2, initial_backoff=duration(0.001))


def figures(label: str, values: list[float], baseline: list[float] | None) -> str:
    ms = sorted(v * 1000 for v in values)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    line = f"{label:34} p50 {p50:8.1f} ms   p99 {p99:8.1f} ms"
    if baseline:
        base = sorted(v * 1000 for v in baseline)
        b50 = statistics.median(base)
        b99 = base[min(len(base) - 1, round(0.99 * (len(base) - 1)))]
        line += f"   ({p50 / b50:5.1f}x / {p99 / b99:5.1f}x the baseline)"
    return line


@contextmanager
def pubsub_host() -> Iterator[None]:
    if os.environ.get(harness.PUBSUB_ENV):
        yield
        return
    with harness.running_server("pstest") as host:
        os.environ[harness.PUBSUB_ENV] = host
        try:
            yield
        finally:
            del os.environ[harness.PUBSUB_ENV]


def measure(
    server: Server, resumed: Arrivals, done: Arrivals, runs: int, timeout: float, tag: str
) -> dict[str, list[float]]:
    """Each run: the baseline, a stall, a family of children; seconds per figure."""
    out: dict[str, list[float]] = {"baseline": [], "stall": [], "children": []}
    for run in range(runs):
        # Baseline: succeeded -> done-notification.
        name = f"operations/{tag}-base-{run}"
        ingest(server, [make_event(Kind.CREATED, name)])
        ingest(server, [make_event(Kind.SUCCEEDED, name)])
        acked = time.time()
        out["baseline"].append(done.wait(name) - acked)

        # Stall: heartbeat expiry -> resume notice.
        name = f"operations/{tag}-stall-{run}"
        now = datetime.now(UTC)
        created = events_pb2.Created(heartbeat_timeout=duration(timeout), retry=RETRY)
        ingest(server, [make_event(Kind.CREATED, name, time=now, data=created)])
        out["stall"].append(resumed.wait(name) - (now.timestamp() + timeout))
        ingest(server, [replace(make_event(Kind.SUCCEEDED, name), attempt=2)])

        # Children: the last child's succeeded -> the parent's resume notice.
        parent = f"operations/{tag}-parent-{run}"
        policy = events_pb2.ChildrenPolicy(on_done=events_pb2.ChildrenPolicy.RESUME)
        family = [make_event(Kind.CREATED, parent, data={"children": policy})]
        family += [
            make_event(Kind.CREATED, f"{parent}-c{i}", data={"parent": parent}) for i in range(3)
        ]
        ingest(server, family)
        for i in range(2):
            ingest(server, [make_event(Kind.SUCCEEDED, f"{parent}-c{i}")])
        ingest(server, [make_event(Kind.SUCCEEDED, f"{parent}-c2")])
        acked = time.time()
        out["children"].append(resumed.wait(parent) - acked)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--sweep-seconds", type=float, default=0.05)
    parser.add_argument("--heartbeat-timeout", type=float, default=0.2)
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    with pubsub_host(), tempfile.TemporaryDirectory() as tmp:
        common = {"http_port": 0, "grpc_port": -1, "sweep_seconds": args.sweep_seconds}
        # In-process: the tracker's only sink records the arrivals.
        sink = RecordingSink()
        config = Config(db=str(Path(tmp) / "sink.db"), **common)
        with running(config, sinks=[sink]) as server:
            results["sink"] = measure(
                server, sink.resumes, sink.dones, args.runs, args.heartbeat_timeout, "sink"
            )
        # Pub/Sub: the topics, and a streaming-pull subscriber on each.
        pubsub = PubSub()
        done_topic, control_topic = pubsub.topic(), pubsub.topic()
        resumed, done = Arrivals(), Arrivals()

        def on_notice(note: ControlNotice) -> None:
            if note.kind == "resume":
                resumed.arrived(note.operation)

        def on_done(note: DoneNotification) -> None:
            done.arrived(note.operation.name)

        futures = [
            subscribe_notices(pubsub.subscription(control_topic), on_notice),
            subscribe_done(pubsub.subscription(done_topic), on_done),
        ]
        config = Config(
            db=str(Path(tmp) / "pubsub.db"),
            done_topic=done_topic,
            control_topic=control_topic,
            **common,
        )
        try:
            with running(config) as server:
                results["subscriber"] = measure(
                    server, resumed, done, args.runs, args.heartbeat_timeout, "ps"
                )
        finally:
            for future in futures:
                future.cancel()
    print(
        f"resume-notice latency, {args.runs} runs, SQLite, pstest;"
        f" sweep every {args.sweep_seconds:g} s, heartbeat timeout {args.heartbeat_timeout:g} s"
    )
    for where, got in results.items():
        print(figures(f"{where}: succeeded -> done (baseline)", got["baseline"], None))
        print(figures(f"{where}: expiry -> resume", got["stall"], got["baseline"]))
        print(figures(f"{where}: last child's end -> resume", got["children"], got["baseline"]))


if __name__ == "__main__":
    main()
