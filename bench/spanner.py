"""Spanner store throughput, one event per transaction vs batches vs group commit.
Prints figures only.

    .venv/bin/python bench/spanner.py [--server handy-spanner|cloud-spanner-emulator]

Emulators are not Cloud Spanner: the absolute numbers say little about production, the
ratios between single events, batches and group commit (round trips per event) are the
point. Group commit: 8 producers call `Tracker.ingest` at once, one event per call, and
concurrent calls share transactions (tracker/commit.py).

Then the anatomy of a one-event transaction: the mean time of each read the store's
transaction makes (its rows, the de-duplication records, the history heads, and for a
new name whether it was removed), each a round trip of its own, and what is left of the
work (the rules, rendering, buffering the mutations), beside the transaction's begin and
commit (the transaction's time less its work). What a change to the round trips would
save is read from it. `--fill N` takes it apart again after N more operations (3 events
each) are written: a read that grows with the table shows there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import stream
from tests.emulators import harness
from tracker.events import Event
from tracker.service import Tracker
from tracker.stores import spanner_schema
from tracker.stores.base import Tx
from tracker.stores.spanner import SpannerStore

if TYPE_CHECKING:
    from google.cloud.spanner_v1.database import Database

T = TypeVar("T")

# The reads of a write transaction (tracker.stores.base.Tx), each a round trip.
READS = ("load", "seen", "history_heads", "removed")


@contextlib.contextmanager
def bench_database(server: str, name: str) -> Iterator[Database]:
    """A Spanner emulator started for the bench, holding database `name` with the
    tracker's schema (the variant the server takes); SPANNER_EMULATOR_HOST points at it
    meanwhile. Shared by the benches that run on Spanner."""
    from google.cloud import spanner

    os.environ.update(harness.SPANNER_CLIENT_ENV)
    with harness.running_server(server) as host:
        os.environ["SPANNER_EMULATOR_HOST"] = host
        try:
            client = spanner.Client(project="bench")
            instance = client.instance(
                "bench", configuration_name="projects/bench/instanceConfigs/emulator-config"
            )
            if server == "cloud-spanner-emulator":
                instance.create().result(60)
            database = instance.database(name)
            database.create().result(60)
            variant = "emulator" if server != "cloud-spanner-emulator" else "canonical"
            spanner_schema.apply(database, variant)
            yield database
        finally:
            del os.environ["SPANNER_EMULATOR_HOST"]


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:10.0f} events/s  ({n} events in {seconds:.2f} s)"


def grouped(store: SpannerStore, events: list[Event], producers: int) -> tuple[float, float]:
    """Seconds for `producers` concurrent one-event calls, and events per transaction."""
    tracker = Tracker(store)
    lanes = [events[i::producers] for i in range(producers)]

    async def lane(mine: list[Event]) -> None:
        for event in mine:
            await tracker.ingest([event], route="bench")

    async def run() -> None:
        await asyncio.gather(*(lane(m) for m in lanes))

    start = time.perf_counter()
    asyncio.run(run())
    stats = tracker.group.stats
    return time.perf_counter() - start, stats.events / max(1, stats.transactions)


class _TimedTx:
    """A transaction whose reads are timed into `spent` and counted into `calls`."""

    def __init__(self, tx: Tx, spent: Counter[str], calls: Counter[str]) -> None:
        self._tx, self._spent, self._calls = tx, spent, calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._tx, name)
        if name not in READS:
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self._spent[name] += time.perf_counter() - start
                self._calls[name] += 1

        return timed


class TimedStore(SpannerStore):
    """The Spanner store with each transaction taken apart while `timing` (`anatomy`);
    otherwise the store itself, so the rates above carry no timing of their own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timing = False
        self.spent: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def run_in_transaction(self, fn: Callable[[Tx], T]) -> T:
        if not self.timing:
            return super().run_in_transaction(fn)

        def work(tx: Tx) -> T:
            start = time.perf_counter()
            try:
                return fn(_TimedTx(tx, self.spent, self.calls))  # type: ignore[arg-type]
            finally:
                self.spent["work"] += time.perf_counter() - start

        start = time.perf_counter()
        try:
            return super().run_in_transaction(work)
        finally:
            self.spent["transaction"] += time.perf_counter() - start
            self.calls["transaction"] += 1


def anatomy(store: TimedStore, events: list[Event]) -> list[str]:
    """Lines: each read's mean time and count per transaction, the rest of the work, and
    the begin and commit, for `events` applied one per transaction."""
    store.spent.clear()
    store.calls.clear()
    store.timing = True
    try:
        for event in events:
            store.apply([event])
    finally:
        store.timing = False
    n = store.calls["transaction"]
    reads = sum(store.spent[r] for r in READS)
    rows = [
        (f"read: {r}", store.spent[r], f"{store.calls[r] / n:.2f} per transaction")
        for r in READS
        if store.calls[r]
    ]
    rows.append(("rest of the work (rules, rendering, mutations)", store.spent["work"] - reads, ""))
    rows.append(("begin and commit", store.spent["transaction"] - store.spent["work"], ""))
    total = store.spent["transaction"]
    out = [f"  a one-event transaction, {1e3 * total / n:.2f} ms (mean of {n}):"]
    for label, seconds, extra in rows:
        share = f"{100 * seconds / total:3.0f}%"
        out.append(f"    {label:48}{1e3 * seconds / n:7.2f} ms {share}  {extra}".rstrip())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", default="handy-spanner", choices=harness.SPANNER_SERVERS)
    parser.add_argument("--operations", type=int, default=50)
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument(
        "--fill", type=int, default=0, help="operations written before a second anatomy"
    )
    args = parser.parse_args()
    with bench_database(args.server, "bench") as database:
        store = TimedStore(database, explicit_begin=args.server == "handy-spanner")
        print(f"Spanner store on {args.server}")
        events = stream(args.operations, args.events, "single")
        start = time.perf_counter()
        for event in events:
            store.apply([event])
        print("  1 event/transaction   ", rate(len(events), time.perf_counter() - start))
        events = stream(args.operations, args.events, "batch")
        start = time.perf_counter()
        for i in range(0, len(events), 100):
            store.apply(events[i : i + 100])
        print("  100 events/batch      ", rate(len(events), time.perf_counter() - start))
        events = stream(args.operations, args.events, "group", interleaved=True)
        took, per_tx = grouped(store, events, 8)
        print(
            "  8 producers, grouped  ", rate(len(events), took), f" {per_tx:.1f} events/transaction"
        )
        for line in anatomy(store, stream(args.operations, args.events, "anatomy")):
            print(line)
        if args.fill:
            filled = stream(args.fill, 3, "fill", interleaved=True)
            for i in range(0, len(filled), 500):
                store.apply(filled[i : i + 500])
            print(f"  after {args.fill} more operations ({len(filled)} events):")
            for line in anatomy(store, stream(args.operations, args.events, "filled")):
                print(line)
        store.close()


if __name__ == "__main__":
    main()
