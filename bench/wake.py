"""Cross-instance wake-up: Wait on instance A for an event applied on instance B.
Prints figures only.

    .venv/bin/python bench/wake.py [--waits 60] [--poll 0.1] [--servers sqlite,handy-spanner,
        cloud-spanner-emulator] [--quick]

Two `Tracker`s, each with its own store connection and its own waiters, on one database
(an SQLite file, or a Spanner emulator's database): A waits (WaitOperation's code path),
B applies `succeeded`; the figure is the time from B's commit returning to A's wait
returning, p50 and p99 over `--waits` operations. A learns of B's changes by its store
poll (`--wake-poll-seconds`, tracker/notify/waiters.py); the baseline, measured in the
same run, is A waking for its own commit (the in-process hook). Issue #14's target: p50 <
100 ms, p99 < 500 ms on the emulators. The emulators are not Cloud Spanner: a read there
costs what the emulator costs, so the figure shows the mechanism, not production latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import make_event
from tracker.events import Kind
from tracker.service import Tracker
from tracker.stores.base import Store
from tracker.stores.sqlite import SqliteStore


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def latencies(a: Tracker, b: Tracker, waits: int, prefix: str) -> list[float]:
    """Seconds from `b`'s commit of `succeeded` to `a`'s wait returning done."""
    out: list[float] = []
    for i in range(waits):
        name = f"operations/{prefix}-{i}"
        await b.ingest([make_event(Kind.CREATED, name, seq=0)], route="bench")
        waiting = asyncio.create_task(a.wait(name, timeout=30))
        while not a.hub.watching(name):  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01 * (i % 10))  # spread over the poll's phase
        await b.ingest([make_event(Kind.SUCCEEDED, name, seq=1)], route="bench")
        committed = time.perf_counter()
        operation = await waiting
        assert operation.done, operation
        out.append(time.perf_counter() - committed)
    return out


def line(label: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return f"{label:60} p50 {statistics.median(ms):7.2f} ms  p99 {pct(ms, 0.99):7.2f} ms"


def measure(first: Store, second: Store, waits: int, poll: float, server: str) -> None:
    async def main() -> tuple[list[float], list[float]]:
        a = Tracker(first, wake_poll_seconds=poll)
        b = Tracker(second)
        task = await a.start()
        try:
            own = await latencies(a, a, waits, f"{server}-own")
            across = await latencies(a, b, waits, f"{server}-across")
        finally:
            await a.stop(task)
        return own, across

    own, across = asyncio.run(main())
    print(line(f"{server}: A wakes for its own commit", own))
    print(line(f"{server}: A wakes for B's commit (poll {poll:g} s)", across))


@contextlib.contextmanager
def spanner_pair(server: str) -> Iterator[tuple[Store, Store]]:
    from bench.spanner import bench_database
    from tracker.stores.spanner import SpannerStore

    with bench_database(server, "wake") as database:
        begin = server == "handy-spanner"
        first = SpannerStore(database, explicit_begin=begin)
        # Another client's connection, as another instance would have.
        second = SpannerStore(database.name, explicit_begin=begin)
        try:
            yield first, second
        finally:
            first.close()
            second.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waits", type=int, default=60)
    parser.add_argument("--poll", type=float, default=0.1, help="A's --wake-poll-seconds")
    parser.add_argument("--servers", default="sqlite,handy-spanner,cloud-spanner-emulator")
    parser.add_argument("--quick", action="store_true", help="small sizes (tests)")
    args = parser.parse_args()
    if args.quick:
        args.waits = 5
    for server in args.servers.split(","):
        if server == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "wake.db"
                first, second = SqliteStore(path), SqliteStore(path)
                measure(first, second, args.waits, args.poll, server)
                first.close()
                second.close()
            continue
        with spanner_pair(server) as (first, second):
            measure(first, second, args.waits, args.poll, server)


if __name__ == "__main__":
    main()
