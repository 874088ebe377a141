"""List with a filter and order_by over 100k operations: p50 latency. Prints figures only.

    .venv/bin/python bench/list_query.py [--operations 100000] [--runs 30]
        [--spanner handy-spanner|cloud-spanner-emulator]

Each figure is the median of `--runs` calls of `Tracker.list` (parse, store query, page
token; no HTTP) for one page of 50, printed with its ratio to a baseline measured in the
same run on the same data: List without filter or order (the name-ordered first page).
The machine's load moves the absolute numbers; the ratio is the point. SQLite runs on a
file; Spanner (optional) on an emulator, holding the same rows (copied through the
store's row writer: applying the 300k events a batch at a time took the emulator over
40 min), whose absolute numbers say nothing of Cloud Spanner (bench/spanner.py says why).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from google.rpc import code_pb2, status_pb2

from tests.helpers import T0, make_event
from tracker.events import Event, Kind
from tracker.service import Tracker
from tracker.stores.base import ListQuery, Store, Stored
from tracker.stores.sqlite import SqliteStore

RESULT_PERCENT = 'result = "failed" AND percent >= 50'
QUERIES: list[tuple[str, str, str]] = [
    # (label, filter, order_by)
    (
        "filter result+percent, order end_time desc",
        'result = "failed" AND percent >= 50',
        "end_time desc",
    ),
    ("filter end_time range, order end_time", 'end_time > "2026-01-01T10:00:00Z"', "end_time"),
    ("filter attempt > 1, order create_time desc", "attempt > 1", "create_time desc"),
    ("filter labels (checked per row), order update_time", 'labels.team = "t3"', "update_time"),
    ("no filter, order create_time desc", "", "create_time desc"),
    ("filter done = false, by name", "done = false", ""),
]


def events_for(i: int) -> list[Event]:
    name = f"operations/bench-{i:07d}"
    created = make_event(
        Kind.CREATED,
        name,
        time=T0 + timedelta(milliseconds=(i * 7919) % 10_000_000),
        data={"operation_type": "export", "labels": {"team": f"t{i % 10}"}},
    )
    out = [created, make_event(Kind.PROGRESS, name, seq=1, data={"percent": i % 100})]
    if i % 13 == 0:
        out[1] = dataclasses.replace(out[1], attempt=2)
    end = T0 + timedelta(seconds=(i * 104729) % 86_400)
    kind = i % 10
    if kind < 3:
        out.append(make_event(Kind.SUCCEEDED, name, seq=9, time=end))
    elif kind < 5:
        error = status_pb2.Status(code=code_pb2.INTERNAL if kind == 3 else code_pb2.NOT_FOUND)
        out.append(make_event(Kind.FAILED, name, seq=9, time=end, data={"error": error}))
    elif kind == 5:
        out.append(make_event(Kind.CANCELLED, name, seq=9, time=end))
    return out


def populate(store: Store, n: int, batch: int) -> float:
    start = time.perf_counter()
    pending: list[Event] = []
    for i in range(n):
        pending += events_for(i)
        if len(pending) >= batch:
            store.apply(pending)
            pending = []
    if pending:
        store.apply(pending)
    return time.perf_counter() - start


def p50(runs: int, call: Callable[[], Awaitable[Any]]) -> float:
    async def timed() -> list[float]:
        await call()  # warm
        out = []
        for _ in range(runs):
            start = time.perf_counter()
            await call()
            out.append(time.perf_counter() - start)
        return out

    return statistics.median(asyncio.run(timed())) * 1000


def measure(store: Store, runs: int, title: str, *, scan_counts: bool = True) -> None:
    tracker = Tracker(store)
    print(title)
    base = p50(runs, lambda: tracker.list("", 50))
    print(f"  {'baseline: List, no filter, by name':52s} p50 {base:8.2f} ms   1.00x")
    get = p50(runs, lambda: tracker.get("operations/bench-0000042"))
    print(f"  {'Get one operation':52s} p50 {get:8.2f} ms  {get / base:5.2f}x")
    for label, text, order in QUERIES:
        page = asyncio.run(tracker.list(text, 50, "", order))
        ms = p50(runs, lambda text=text, order=order: tracker.list(text, 50, "", order))
        print(f"  {label:52s} p50 {ms:8.2f} ms  {ms / base:5.2f}x  ({len(page.operations)} rows)")
        if page.next_page_token:
            token = page.next_page_token
            ms = p50(runs, lambda t=token, text=text, order=order: tracker.list(text, 50, t, order))
            row("  ... its second page (keyset token)", ms, base)
    counts = [("count result+percent (one COUNT(*) where exact)", RESULT_PERCENT)]
    if scan_counts:
        counts.append(("count labels (rows checked where not, bounded)", 'labels.team = "t3"'))
    for label, text in counts:
        ms = p50(max(3, runs // 5), lambda text=text: tracker.count(text))
        row(label, ms, base)


def row(label: str, ms: float, base: float) -> None:
    print(f"  {label:52s} p50 {ms:8.2f} ms  {ms / base:5.2f}x")


def copy_rows(source: SqliteStore, target: Store, batch: int = 500) -> float:
    """The source's rows written into the target by its own row writer (`Tx.save`), many
    per transaction: the same rows as applying the events, far fewer round trips."""
    start = time.perf_counter()
    query = ListQuery(page_size=batch)
    while True:
        rows = source.list_operations(query)[:batch]
        if not rows:
            break

        def write(tx: Any, rows: list[Stored] = rows) -> None:
            for row in rows:
                when = row.state.update_time.ToDatetime(UTC)
                tx.save(row.state, row.operation, None, insert=True, now=when)

        target.run_in_transaction(write)
        query = ListQuery(page_size=batch, after=rows[-1].state.name)
    return time.perf_counter() - start


def spanner(kind: str, source: SqliteStore, runs: int) -> None:
    from tests.emulators import harness
    from tracker.stores import spanner_schema
    from tracker.stores.spanner import SpannerStore

    os.environ.update(harness.SPANNER_CLIENT_ENV)
    with harness.running_server(kind) as host:
        os.environ["SPANNER_EMULATOR_HOST"] = host
        from google.cloud import spanner as gspanner

        client = gspanner.Client(project="bench")
        instance = client.instance(
            "bench", configuration_name="projects/bench/instanceConfigs/emulator-config"
        )
        if kind == "cloud-spanner-emulator":
            instance.create().result(60)
        database = instance.database("bench")
        database.create().result(60)
        variant = "emulator" if kind != "cloud-spanner-emulator" else "canonical"
        spanner_schema.apply(database, variant)
        store = SpannerStore(database, explicit_begin=kind == "handy-spanner")
        seconds = copy_rows(source, store)
        n = store.count_operations(None)[0]
        title = f"Spanner ({kind}, {variant} schema), {n} operations"
        # A count the SQL cannot say reads the table in chunks; the emulator answers each
        # chunk by scanning everything (~0.7 s at 100k rows): minutes per count, skipped.
        title += f" (copied from the SQLite file in {seconds:.0f} s)"
        measure(store, runs, title, scan_counts=False)
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--operations", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--spanner", choices=["handy-spanner", "cloud-spanner-emulator"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "bench.db")
        seconds = populate(store, args.operations, 2000)
        measure(
            store,
            args.runs,
            f"SQLite file, {args.operations} operations (written in {seconds:.0f} s)",
        )
        if args.spanner:
            spanner(args.spanner, store, args.runs)
        store.close()


if __name__ == "__main__":
    main()
