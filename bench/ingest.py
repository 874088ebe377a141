"""Ingest throughput and wait latency on the embedded default. Prints figures; asserts nothing.

    .venv/bin/python bench/ingest.py [--operations 200] [--events 10]

Figures: events/s applied straight into the SQLite store (one transaction per event,
and batches of 100), events/s through POST /v1/events over loopback HTTP (single
events, and batches), and the time from sending a succeeded event to a waiting
:wait caller getting its answer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import make_event
from tracker.bindings import to_batch, to_binary
from tracker.config import Config
from tracker.events import Event, Kind
from tracker.server import running
from tracker.stores.sqlite import SqliteStore


def stream(operations: int, per_op: int, prefix: str) -> list[Event]:
    events = []
    for o in range(operations):
        name = f"operations/{prefix}-{o}"
        events.append(make_event(Kind.CREATED, name, seq=0))
        for i in range(1, per_op - 1):
            events.append(make_event(Kind.PROGRESS, name, seq=i, data={"percent": i}))
        events.append(make_event(Kind.SUCCEEDED, name, seq=per_op))
    return events


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:10.0f} events/s  ({n} events in {seconds:.2f} s)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--operations", type=int, default=200)
    parser.add_argument("--events", type=int, default=10, help="events per operation")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "a.db")
        events = stream(args.operations, args.events, "single")
        start = time.perf_counter()
        for event in events:
            store.apply([event])
        print("store, 1 event/transaction  ", rate(len(events), time.perf_counter() - start))
        events = stream(args.operations, args.events, "batch")
        start = time.perf_counter()
        for i in range(0, len(events), 100):
            store.apply(events[i : i + 100])
        print("store, 100 events/batch     ", rate(len(events), time.perf_counter() - start))
        store.close()

        config = Config(db=str(Path(tmp) / "b.db"), http_port=0, grpc_port=0, log_level="warning")
        with running(config) as server, httpx.Client(base_url=server.http_url) as http:
            events = stream(args.operations // 4, args.events, "http")
            start = time.perf_counter()
            for event in events:
                headers, body = to_binary(event)
                http.post("/v1/events", headers=headers, content=body).raise_for_status()
            print("HTTP, binary single events  ", rate(len(events), time.perf_counter() - start))
            events = stream(args.operations, args.events, "httpbatch")
            start = time.perf_counter()
            for i in range(0, len(events), 100):
                headers, body = to_batch(events[i : i + 100])
                http.post("/v1/events", headers=headers, content=body).raise_for_status()
            print("HTTP, batches of 100        ", rate(len(events), time.perf_counter() - start))

            latencies = []
            for n in range(30):
                name = f"operations/wait-{n}"
                headers, body = to_binary(make_event(Kind.CREATED, name))
                http.post("/v1/events", headers=headers, content=body).raise_for_status()
                woke: list[float] = []
                ready = threading.Event()

                def waiter(
                    name: str = name, woke: list[float] = woke, ready: threading.Event = ready
                ) -> None:
                    with httpx.Client(base_url=server.http_url, timeout=30) as c:
                        ready.set()
                        c.post(f"/v1/{name}:wait", json={"timeout": "20s"}).raise_for_status()
                        woke.append(time.perf_counter())

                thread = threading.Thread(target=waiter)
                thread.start()
                ready.wait()
                time.sleep(0.05)  # let the waiter's request reach the server first
                headers, body = to_binary(make_event(Kind.SUCCEEDED, name))
                sent = time.perf_counter()
                http.post("/v1/events", headers=headers, content=body).raise_for_status()
                thread.join()
                latencies.append((woke[0] - sent) * 1000)
            print(
                f"done event sent -> :wait answered  median {statistics.median(latencies):.1f} ms,"
                f" max {max(latencies):.1f} ms over {len(latencies)} waits"
            )


if __name__ == "__main__":
    main()
