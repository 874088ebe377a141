"""Spanner store throughput, one event per transaction vs batches vs group commit.
Prints figures only.

    .venv/bin/python bench/spanner.py [--server handy-spanner|cloud-spanner-emulator]

Emulators are not Cloud Spanner: the absolute numbers say little about production, the
ratios between single events, batches and group commit (round trips per event) are the
point. Group commit: 8 producers call `Tracker.ingest` at once, one event per call, and
concurrent calls share transactions (tracker/commit.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import stream
from tests.emulators import harness
from tracker.events import Event
from tracker.service import Tracker
from tracker.stores import spanner_schema
from tracker.stores.spanner import SpannerStore

if TYPE_CHECKING:
    from google.cloud.spanner_v1.database import Database


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", default="handy-spanner", choices=harness.SPANNER_SERVERS)
    parser.add_argument("--operations", type=int, default=50)
    parser.add_argument("--events", type=int, default=10)
    args = parser.parse_args()
    with bench_database(args.server, "bench") as database:
        store = SpannerStore(database, explicit_begin=args.server == "handy-spanner")
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
        store.close()


if __name__ == "__main__":
    main()
