"""List with a filter and order_by over 100k operations: p50 latency. Prints figures only.

    .venv/bin/python bench/list_query.py [--operations 100000] [--small 1000] [--runs 30]
        [--spanner handy-spanner|cloud-spanner-emulator] [--spanner-operations 10000]
        [--spanner-runs 3] [--spanner-only] [--spanner-scaling-only] [--spanner-batch 2000]
        [--quick]

Scaling (issue #13): for a selective label filter (`labels.pick`, which 100 operations
carry at every size: a full page), `done = false`, an order_by and both together, the p50 of
one page at `--small` and at `--operations` operations and their ratio (the target is
at most 2x from 1k to 100k: the page is read from an index, not found by a scan).
Spanner's large size is `--spanner-operations`, its runs `--spanner-runs`, said in the
output: the emulators scan the table for every query, so a filter the store checks row
by row reads the table in chunks, seconds per call at 10k rows. Rows are loaded
`--spanner-batch` per transaction (one at a time: Google's emulator runs one read-write
transaction at a time, so threads would only abort each other), the load time and rate
printed. Each Spanner scaling line is followed by what the store says it reads for it
(`explain_list`: the label index reads, or the SQL with the FORCE_INDEX hint naming the
index, and the plan the server reports in PLAN mode: neither emulator reports one).
`--spanner-scaling-only` skips the ratio-to-baseline lines at the large size (minutes on
Google's emulator at 100k). `--quick` runs small sizes and few runs (the test of the
bench: it proves the bench runs, never its figures).

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
from tracker import filtering
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
    ("filter labels (1 in 10), order update_time", 'labels.team = "t3"', "update_time"),
    ("filter labels (1 in 10), by name (label index)", 'labels.team = "t3"', ""),
    ("no filter, order create_time desc", "", "create_time desc"),
    ("filter done = false, by name", "done = false", ""),
]


# (label, filter, order_by) of the scaling lines: a page of each at two sizes.
SCALING: list[tuple[str, str, str]] = [
    ("selective label (100 operations), by name", 'labels.pick = "yes"', ""),
    (
        "selective label (100 operations), create_time desc",
        'labels.pick = "yes"',
        "create_time desc",
    ),
    ("label 1 in 10, order update_time", 'labels.team = "t3"', "update_time"),
    ("done = false, by name", "done = false", ""),
    ("no filter, order create_time desc", "", "create_time desc"),
    ("done = false, order create_time desc", "done = false", "create_time desc"),
    ("selective label AND done = false, by name", 'labels.pick = "yes" AND done = false', ""),
]


def step(n: int) -> int:
    return max(1, n // 100)


def events_for(i: int, n: int = 100_000) -> list[Event]:
    """Operation `i` of `n`: 100 of them (whatever `n`) carry `labels.pick = "yes"`, all
    running (i % 10 == 7)."""
    name = f"operations/bench-{i:07d}"
    created = make_event(
        Kind.CREATED,
        name,
        time=T0 + timedelta(milliseconds=(i * 7919) % 10_000_000),
        data={
            "operation_type": "export",
            "labels": {"team": f"t{i % 10}"}
            | ({"pick": "yes"} if i % step(n) == 7 % step(n) else {}),
        },
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
        pending += events_for(i, n)
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
        counts.append(("count labels (one COUNT(*) on the label index)", 'labels.team = "t3"'))
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


def p50_pair(runs: int, calls: list[Callable[[], Awaitable[Any]]]) -> list[float]:
    """The p50 of each call, timed alternately in one loop: a change of the machine's
    load in the middle of a measurement weighs on both sizes alike."""

    async def timed() -> list[list[float]]:
        out: list[list[float]] = [[] for _ in calls]
        for call in calls:
            await call()  # warm
        for _ in range(runs):
            for i, call in enumerate(calls):
                start = time.perf_counter()
                await call()
                out[i].append(time.perf_counter() - start)
        return out

    return [statistics.median(t) * 1000 for t in asyncio.run(timed())]


def scaling(
    title: str,
    small: Store,
    large: Store,
    sizes: tuple[int, int],
    runs: int,
    *,
    explain: bool = False,
) -> None:
    """p50 of one page at each size, and the ratio large/small (target: at most 2x)."""
    print(f"{title}: one page of 50 at {sizes[0]} and at {sizes[1]} operations")
    at = [Tracker(small), Tracker(large)]
    line = "  {:52s} p50 {:8.2f} ms at {:>6d}, {:8.2f} ms at {:>6d}  ratio {:5.2f}x"
    base = p50_pair(runs, [lambda t=t: t.list("", 50) for t in at])
    print(
        line.format(
            "baseline: no filter, by name", base[0], sizes[0], base[1], sizes[1], base[1] / base[0]
        )
    )
    for label, text, order in SCALING:
        rows = len(asyncio.run(at[1].list(text, 50, "", order)).operations)
        ms = p50_pair(runs, [lambda t=t, x=text, o=order: t.list(x, 50, "", o) for t in at])
        out = line.format(label, ms[0], sizes[0], ms[1], sizes[1], ms[1] / ms[0])
        print(f"{out}  ({ms[1] / base[1]:.2f}x baseline at {sizes[1]}; {rows} rows)")
        if explain:
            query = ListQuery(filter=filtering.parse(text) if text else None, order=order_of(order))
            for said in large.explain_list(query):  # type: ignore[attr-defined]
                print(f"      {said}")


def order_of(text: str) -> tuple[Any, ...]:
    from tracker.listing import parse_order_by

    return tuple(parse_order_by(text))


def spanner_store(kind: str, database_id: str) -> Store:
    from google.cloud import spanner as gspanner

    from tracker.stores import spanner_schema
    from tracker.stores.spanner import SpannerStore

    client = gspanner.Client(project="bench")
    instance = client.instance(
        "bench", configuration_name="projects/bench/instanceConfigs/emulator-config"
    )
    if kind == "cloud-spanner-emulator" and not instance.exists():
        instance.create().result(60)
    database = instance.database(database_id)
    database.create().result(60)
    variant = "emulator" if kind != "cloud-spanner-emulator" else "canonical"
    spanner_schema.apply(database, variant)
    return SpannerStore(database, explicit_begin=kind == "handy-spanner")


def spanner(
    kind: str,
    small: SqliteStore,
    large: SqliteStore,
    sizes: tuple[int, int],
    runs: int,
    *,
    full: bool = True,
    batch: int = 2000,
) -> None:
    from tests.emulators import harness

    os.environ.update(harness.SPANNER_CLIENT_ENV)
    with harness.running_server(kind) as host:
        os.environ["SPANNER_EMULATOR_HOST"] = host
        stores = [spanner_store(kind, "bench-small"), spanner_store(kind, "bench-large")]
        seconds = [
            copy_rows(src, dst, batch) for src, dst in zip((small, large), stores, strict=True)
        ]
        variant = "emulator" if kind != "cloud-spanner-emulator" else "canonical"
        title = (
            f"Spanner ({kind}, {variant} schema; large size {sizes[1]}, {runs} runs, rows"
            f" copied from the SQLite files {batch} per transaction in {seconds[0]:.0f} s and"
            f" {seconds[1]:.0f} s, {sizes[1] / max(seconds[1], 1e-9):.0f} rows/s)"
        )
        scaling(title, stores[0], stores[1], sizes, runs, explain=True)
        if full:
            # A count the SQL cannot say reads the table in chunks; the emulator answers
            # each chunk by scanning everything: minutes per count at 100k, skipped.
            measure(stores[1], runs, f"Spanner ({kind}), {sizes[1]} operations", scan_counts=False)
        for store in stores:
            store.close()


def sqlite_store(folder: str, n: int) -> tuple[SqliteStore, float]:
    store = SqliteStore(Path(folder) / f"bench-{n}.db")
    return store, populate(store, n, 2000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--operations", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--spanner", choices=["handy-spanner", "cloud-spanner-emulator"])
    parser.add_argument("--spanner-operations", type=int, default=10_000)
    parser.add_argument("--spanner-runs", type=int, default=3)
    parser.add_argument("--spanner-only", action="store_true", help="no SQLite figures")
    parser.add_argument(
        "--spanner-scaling-only", action="store_true", help="no Spanner ratio-to-baseline lines"
    )
    parser.add_argument("--spanner-batch", type=int, default=2000, help="rows per transaction")
    parser.add_argument("--quick", action="store_true", help="small sizes, few runs")
    args = parser.parse_args()
    if args.quick:
        args.operations, args.small, args.runs = 2000, 200, 3
        args.spanner_operations = min(args.spanner_operations, 1000)
    sizes = (args.small, args.operations)
    with tempfile.TemporaryDirectory() as tmp:
        small, _ = sqlite_store(tmp, args.small)
        large: SqliteStore | None = None
        if not args.spanner_only:
            large, seconds = sqlite_store(tmp, args.operations)
            scaling("SQLite file", small, large, sizes, args.runs)
            title = f"SQLite file, {args.operations} operations (written in {seconds:.0f} s)"
            measure(large, args.runs, title)
        if args.spanner:
            if large is None or args.spanner_operations != args.operations:
                if large is not None:
                    large.close()
                large, _ = sqlite_store(tmp, args.spanner_operations)
            spanner_sizes = (args.small, args.spanner_operations)
            runs = min(args.runs, args.spanner_runs)
            full = not (args.quick or args.spanner_scaling_only)
            spanner(
                args.spanner, small, large, spanner_sizes, runs, full=full, batch=args.spanner_batch
            )
        small.close()
        if large is not None:
            large.close()


if __name__ == "__main__":
    main()
