"""Event history: reading an operation's 1,000 events, and what recording costs ingest.
Prints figures; asserts nothing.

    .venv/bin/python bench/history.py [--events 1000] [--reads 200]
        [--spanner handy-spanner|cloud-spanner-emulator]

Figures, each beside a baseline measured in the same run: the p50 of reading the whole
history of an operation with `--events` entries (store call, and GET /v1/{name}/events
with pageSize=1000 over loopback HTTP) against a GetOperation of the same operation; and
SQLite ingest throughput with the history on (--history-per-operation 1000) against off
(0), in CPU time. `--spanner` adds the store read on that emulator (the absolute figures say little
about Cloud Spanner; the ratio to the GetOperation is the point).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import stream
from tests.helpers import make_event
from tracker.config import Config
from tracker.events import Kind
from tracker.server import running
from tracker.stores.base import Store
from tracker.stores.sqlite import SqliteStore

NAME = "operations/bench-history"


def p50_ms(call: Callable[[], object], n: int) -> float:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def fill(store: Store, events: int) -> None:
    batch = [make_event(Kind.CREATED, NAME, seq=0)]
    batch += [
        make_event(Kind.PROGRESS, NAME, seq=i, data={"percent": i % 100}) for i in range(1, events)
    ]
    for i in range(0, len(batch), 100):
        store.apply(batch[i : i + 100])


def compare(label: str, read: Callable[[], object], base: Callable[[], object], n: int) -> None:
    read(), base()  # warm up
    history, get = p50_ms(read, n), p50_ms(base, n)
    print(
        f"{label:34} p50 {history:8.2f} ms   GetOperation p50 {get:6.2f} ms"
        f"   ratio {history / get:6.1f}x"
    )


def read_all(store: Store, events: int) -> None:
    exists, entries = store.read_history(NAME, limit=events)
    assert exists and len(entries) == events


def ingest_rates(tmp: str, operations: int, per_op: int, rounds: int) -> None:
    """Events/s of CPU time (this process, user + system: less swayed by other load on a
    shared machine than wall time) with the history on and off, alternating rounds, best
    of each."""
    best: dict[tuple[int, str], float] = {}
    for r in range(rounds):
        for limit in (1000, 0):
            store = SqliteStore(Path(tmp) / f"ingest-{r}-{limit}.db")
            store.history_limit = limit
            for mode, size in (("single", 1), ("batch", 100)):
                events = stream(operations, per_op, f"{mode}-{r}-{limit}")
                start = time.process_time()
                for i in range(0, len(events), size):
                    store.apply(events[i : i + size])
                rate = len(events) / (time.process_time() - start)
                best[limit, mode] = max(best.get((limit, mode), 0.0), rate)
            store.close()
    for mode, label in (("single", "1 event/transaction"), ("batch", "100 events/batch")):
        on, off = best[1000, mode], best[0, mode]
        print(
            f"SQLite ingest, {label:20} history on {on:8.0f} events/s, off {off:8.0f}"
            f" events/s   ratio {on / off:5.2f}"
        )


def spanner_read(server: str, events: int, reads: int) -> None:
    from bench.spanner import bench_database
    from tracker.stores.spanner import SpannerStore

    with bench_database(server, "history") as database:
        store = SpannerStore(database, explicit_begin=server == "handy-spanner")
        fill(store, events)
        compare(
            f"Spanner ({server}) store read",
            lambda: read_all(store, events),
            lambda: store.get_operation(NAME),
            reads,
        )
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--spanner", default="", help="also on this Spanner emulator")
    parser.add_argument("--ingest-rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "read.db")
        fill(store, args.events)
        compare(
            f"SQLite store read of {args.events} events",
            lambda: read_all(store, args.events),
            lambda: store.get_operation(NAME),
            args.reads,
        )
        store.close()
        config = Config(
            db=str(Path(tmp) / "read.db"), http_port=0, grpc_port=0, log_level="warning"
        )
        with running(config) as server, httpx.Client(base_url=server.http_url) as http:

            def get_history() -> None:
                answer = http.get(f"/v1/{NAME}/events", params={"pageSize": "1000"})
                assert len(answer.raise_for_status().json()["events"]) == min(args.events, 1000)

            compare(
                "HTTP GET .../events?pageSize=1000",
                get_history,
                lambda: http.get(f"/v1/{NAME}").raise_for_status(),
                max(args.reads // 4, 10),
            )
        ingest_rates(tmp, 200, 10, args.ingest_rounds)
    if args.spanner:
        spanner_read(args.spanner, args.events, max(args.reads // 4, 10))


if __name__ == "__main__":
    main()
