"""The SQLite store against raw sqlite3, and group commit. Prints figures; asserts nothing.

    .venv/bin/python bench/ingest.py [--operations 300] [--events 10] [--quick]

Baseline, measured in the same run: raw sqlite3 writing the same rows into the same
tables (the tracker's own schema, so the same indexes): per event one upsert of the
operation row (blobs of the size the store writes) and one insert of its dedup row, one
event per transaction and batches of 100. Then the store applying the same event stream
(with the default event history, and without; and with the history but SQLite's own
checkpoints, run by the committing connection, instead of the store's checkpoint thread:
`tracker/stores/sqlite_checkpoint.py`), and `Tracker.ingest` called by 8
concurrent producers one event per call (group commit) beside the same calls one at a
time. Each figure is the median of `--runs` runs (3), every run measuring each figure
of a shape in turn; ratios are store / raw.

Beside each store figure, its SQL alone: the very statements and parameters the store
issued for that stream (recorded by a connection subclass), replayed by raw sqlite3 on a
fresh file of the same schema. Its ratio is the ceiling the store's statement shape
allows with no Python of ours at all; the rest of the gap to it is the store's Python.
The replay, like the raw baseline, leaves checkpoints to SQLite (in commits): where
they cost much, the store with its checkpoint thread can come near or past it.

Then the time of each COMMIT, one event per transaction, with the store's checkpoint
thread and with SQLite's checkpoints in commits: the latter's slow commits are those
that ran a checkpoint (two fsyncs), and on the server they hold up the event loop.

The last block is a cProfile summary of the store's one-event-per-transaction path,
for the record.

`--instructions` prints instead the CPU instructions per event, counted by valgrind's
callgrind (user-space instructions of the whole process, the same on every run: a
measure of the work that machine noise does not move), of raw sqlite3 and of the store
on each shape, and their ratio. Each figure is a run with the work less a run that
only sets it up. Instructions leave out the time the kernel spends writing the WAL, so
the ratio is not the time ratio; it is what a change of the store's own code moves.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import make_event
from tracker.events import Event, Kind
from tracker.service import Tracker
from tracker.stores.sqlite import SqliteStore
from tracker.stores.sqlite_times import ts

RUNS = 3


def stream(operations: int, per_op: int, prefix: str, *, interleaved: bool = False) -> list[Event]:
    """Each operation created, `per_op - 2` progress events, succeeded: one operation
    after the other (a batch of 100 touches 100 / per_op operations), or interleaved
    across operations as many concurrent workers send them (a batch touches 100)."""
    if not interleaved:
        return [
            e
            for o in range(operations)
            for e in stream(1, per_op, f"{prefix}-{o}", interleaved=True)
        ]
    events: list[Event] = []
    names = [f"operations/{prefix}-{o}" for o in range(operations)]
    events.extend(make_event(Kind.CREATED, n, seq=0) for n in names)
    for i in range(1, per_op - 1):
        events.extend(make_event(Kind.PROGRESS, n, seq=i, data={"percent": i}) for n in names)
    events.extend(make_event(Kind.SUCCEEDED, n, seq=per_op) for n in names)
    return events


RAW_UPSERT = (
    "INSERT INTO operations (name, operation, state, done, operation_type, parent, labels,"
    " create_time, update_time, percent, attempt) VALUES (?, ?, ?, 0, '', '', '{}', ?, ?, ?, 1)"
    " ON CONFLICT (name) DO UPDATE SET operation = excluded.operation, state = excluded.state,"
    " update_time = excluded.update_time, percent = excluded.percent"
)
RAW_DEDUP = (
    "INSERT INTO applied_events (operation, source, event_id, outcome, applied_at)"
    " VALUES (?, ?, ?, 'applied', ?) ON CONFLICT DO NOTHING"
)


def raw_connection(path: Path, *, foreign_keys: bool = False) -> sqlite3.Connection:
    """A bare sqlite3 connection in the store's journal mode; with the store's foreign
    keys for a replay of its statements (its history rows reference the operation's)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    if foreign_keys:
        conn.execute("PRAGMA foreign_keys = ON")
    return conn


def raw(path: Path, events: list[Event], size: int, blob: int) -> float:
    """Seconds for raw sqlite3 to write the same rows, `size` events per transaction."""
    SqliteStore(path).close()  # the tracker's schema, migrations and all
    conn = raw_connection(path)
    payload = b"x" * blob
    rows = [(e.operation, e.source, e.id, ts(e.time), i % 100) for i, e in enumerate(events)]
    start = time.perf_counter()
    for i in range(0, len(rows), size):
        conn.execute("BEGIN IMMEDIATE")
        for name, source, event_id, when, percent in rows[i : i + size]:
            conn.execute(RAW_UPSERT, (name, payload, payload, when, when, percent))
            conn.execute(RAW_DEDUP, (name, source, event_id, when))
        conn.execute("COMMIT")
    took = time.perf_counter() - start
    conn.close()
    return took


def through_store(
    path: Path, events: list[Event], size: int, history: int, background: bool = True
) -> float:
    store = SqliteStore(path, background_checkpoints=background)
    store.history_limit = history
    start = time.perf_counter()
    for i in range(0, len(events), size):
        store.apply(events[i : i + size])
    took = time.perf_counter() - start
    store.close()
    return took


class _Recording(sqlite3.Connection):
    """A connection that keeps every statement it runs, with its parameters."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log: list[tuple[str, Any, bool]] = []

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        self.log.append((sql, parameters, False))
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        rows = list(parameters)
        self.log.append((sql, rows, True))
        return super().executemany(sql, rows)


class _RecordingStore(SqliteStore):
    connection_class = _Recording


class _TimedCommits(sqlite3.Connection):
    """A connection that times each of its COMMITs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commits: list[float] = []

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if sql != "COMMIT":
            return super().execute(sql, parameters)
        start = time.perf_counter()
        try:
            return super().execute(sql, parameters)
        finally:
            self.commits.append(time.perf_counter() - start)


class _TimedCommitsStore(SqliteStore):
    connection_class = _TimedCommits


def commit_times(path: Path, events: list[Event], background: bool) -> list[float]:
    """Seconds each COMMIT took, one event per transaction, sorted: a checkpoint run by
    the committing connection shows as the commit that waited for it."""
    store = _TimedCommitsStore(path, background_checkpoints=background)
    conn = store._conn
    assert isinstance(conn, _TimedCommits)
    conn.commits.clear()  # the schema's
    for event in events:
        store.apply([event])
    store.close()
    return sorted(conn.commits)


def commit_lines(root: Path, ops: int, per: int) -> list[str]:
    lines = ["\nCOMMIT of one event per transaction (the same stream each; checkpoints):"]
    for background, what in ((True, "the store's thread (default)"), (False, "in commits")):
        took = commit_times(root / f"commits-{background}.db", stream(ops, per, "c"), background)
        n = len(took)
        slow = sum(1 for t in took if t > 0.005)
        lines.append(
            f"  checkpoints {what:30} p50 {took[n // 2] * 1e6:6.0f} us"
            f"  p99 {took[int(n * 0.99)] * 1e6:7.0f} us  max {took[-1] * 1e3:6.1f} ms"
            f"  mean {sum(took) / n * 1e6:5.0f} us  over 5 ms: {slow} of {n}"
        )
    return lines


def sql_alone(root: Path, events: list[Event], size: int, history: int) -> float:
    """Seconds for raw sqlite3 to run the statements the store ran for these events."""
    store = _RecordingStore(root / "recorded.db")
    store.history_limit = history
    conn = store._conn
    assert isinstance(conn, _Recording)
    conn.log.clear()  # the schema's statements are not the store's work
    for i in range(0, len(events), size):
        store.apply(events[i : i + size])
    log = list(conn.log)
    store.close()
    SqliteStore(root / "replayed.db").close()
    raw_conn = raw_connection(root / "replayed.db", foreign_keys=True)
    start = time.perf_counter()
    for sql, parameters, many in log:
        if many:
            raw_conn.executemany(sql, parameters)
        else:
            for _ in raw_conn.execute(sql, parameters):  # RETURNING rows are read
                pass
    took = time.perf_counter() - start
    raw_conn.close()
    return took


def through_tracker(path: Path, events: list[Event], producers: int) -> tuple[float, float]:
    """Seconds for `producers` concurrent callers of Tracker.ingest, one event per call;
    and the events per transaction that group commit made of them."""
    store = SqliteStore(path)
    tracker = Tracker(store)
    lanes = [events[i::producers] for i in range(producers)]

    async def lane(mine: list[Event]) -> None:
        for event in mine:
            await tracker.ingest([event], route="bench")

    async def main() -> None:
        await asyncio.gather(*(lane(m) for m in lanes))

    start = time.perf_counter()
    asyncio.run(main())
    took = time.perf_counter() - start
    stats = tracker.group.stats
    store.close()
    return took, stats.events / max(1, stats.transactions)


def blob_size(path: Path, events: list[Event]) -> int:
    """The size of the blobs the store writes for these operations (the raw baseline
    writes as many bytes)."""
    store = SqliteStore(path)
    store.apply(events)
    stored = store.get(events[-1].operation)
    store.close()
    assert stored is not None
    return max(stored.operation.ByteSize(), stored.state.ByteSize())


def profile(path: Path, events: list[Event]) -> str:
    store = SqliteStore(path)
    profiler = cProfile.Profile()
    profiler.enable()
    for event in events:
        store.apply([event])
    profiler.disable()
    store.close()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    return "\n".join(lines[start:])


# (history entries kept, checkpoints on the store's own thread, label); the SQL alone is
# replayed for those with background checkpoints.
VARIANTS: Final = (
    (1000, True, "history on (default)"),
    (1000, False, "history on, SQLite's checkpoints in commits"),
    (0, True, "history off"),
)

SHAPES: Final = (
    (1, False, "one event per transaction"),
    (100, False, "batches of 100"),
    (100, True, "batches of 100, interleaved"),
)


def one_piece(what: str, size: int, mixed: bool, ops: int, per: int, dry: bool) -> None:
    """One measured piece, for `--instructions`: set up, then (unless `dry`) do the work."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        blob = blob_size(root / "size.db", stream(1, per, "size"))
        events = stream(ops, per, "i", interleaved=mixed)
        if what == "raw":
            if dry:
                SqliteStore(root / "raw.db").close()
            else:
                raw(root / "raw.db", events, size, blob)
            return
        store = SqliteStore(root / "store.db")
        if not dry:
            for i in range(0, len(events), size):
                store.apply(events[i : i + size])
        store.close()


def instructions(args: argparse.Namespace) -> None:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind (Debian: apt-get install valgrind)")

    def counted(what: str, size: int, mixed: bool, dry: bool) -> int:
        cmd = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
               __file__, "--one", what, "--size", str(size), "--operations", str(args.operations),
               "--events", str(args.events)]  # fmt: skip
        cmd += ["--mixed"] if mixed else []
        cmd += ["--dry"] if dry else []
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
        return int(next(ln for ln in out.splitlines() if "Collected" in ln).split()[-1])

    n = args.operations * args.events
    print(f"{n} events ({args.operations} operations x {args.events}); CPU instructions per event")
    print(f"{'path':52}{'instr/event':>12}{'raw/store':>10}")
    for size, mixed, label in SHAPES[:1] if args.quick else SHAPES:
        per = {
            what: (counted(what, size, mixed, False) - counted(what, size, mixed, True)) / n
            for what in ("raw", "store")
        }
        print(f"{'raw sqlite3, ' + label:52}{per['raw']:12.0f}{1.0:10.2f}")
        print(f"{'  store, history on (default)':52}{per['store']:12.0f}"
              f"{per['raw'] / per['store']:10.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--operations", type=int, default=300)
    parser.add_argument("--events", type=int, default=10, help="events per operation")
    parser.add_argument("--producers", type=int, default=8)
    parser.add_argument("--runs", type=int, default=RUNS, help="runs of each figure (3)")
    parser.add_argument("--quick", action="store_true", help="small sizes (tests)")
    parser.add_argument(
        "--instructions", action="store_true", help="instructions per event (valgrind)"
    )
    parser.add_argument("--one", choices=["raw", "store"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--mixed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dry", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one_piece(args.one, args.size, args.mixed, args.operations, args.events, args.dry)
        return
    if args.quick:
        args.operations = 20
    runs = max(1, args.runs)
    if args.instructions:
        instructions(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        blob = blob_size(root / "size.db", stream(1, args.events, "size"))
        n = args.operations * args.events
        print(f"{n} events ({args.operations} operations x {args.events}), blobs {blob} B")
        print(f"{'path':52}{'events/s':>10}{'ratio':>8}")
        ops, per = args.operations, args.events
        for size, mixed, label in SHAPES:
            # Each run measures every figure of the shape in turn (raw, then each store
            # variant and its SQL alone), so a drift of the machine's speed weighs on all.
            took: dict[Any, list[float]] = {}
            for i in range(runs):
                took.setdefault("raw", []).append(
                    raw(
                        root / f"raw-{size}-{mixed}-{i}.db",
                        stream(ops, per, f"r{i}", interleaved=mixed),
                        size,
                        blob,
                    )
                )
                for history, background, _ in VARIANTS:
                    took.setdefault((history, background), []).append(
                        through_store(
                            root / f"s-{size}-{mixed}-{history}-{background}-{i}.db",
                            stream(ops, per, f"s{i}", interleaved=mixed),
                            size,
                            history,
                            background,
                        )
                    )
                    if background:
                        took.setdefault(("alone", history), []).append(
                            sql_alone(
                                Path(tempfile.mkdtemp(dir=root)),
                                stream(ops, per, f"q{i}", interleaved=mixed),
                                size,
                                history,
                            )
                        )
            base = n / statistics.median(took["raw"])
            print(f"{'raw sqlite3, ' + label:52}{base:10.0f}{1.0:8.2f}")
            for history, background, what in VARIANTS:
                rate = n / statistics.median(took[history, background])
                print(f"{'  store, ' + what:52}{rate:10.0f}{rate / base:8.2f}")
                if not background:
                    continue
                floor = n / statistics.median(took["alone", history])
                print(
                    f"{'    its SQL alone, replayed by raw sqlite3':52}{floor:10.0f}"
                    f"{floor / base:8.2f}   (Python: {1 - rate / floor:.0%} of the store's time)"
                )
        single = [
            through_tracker(root / f"t1-{i}.db", stream(ops, per, f"t{i}"), 1)[0]
            for i in range(runs)
        ]
        one = n / statistics.median(single)
        grouped = [
            through_tracker(root / f"t8-{i}.db", stream(ops, per, f"g{i}"), args.producers)
            for i in range(runs)
        ]
        many = n / statistics.median(t for t, _ in grouped)
        per_tx = statistics.median(g for _, g in grouped)
        print(f"{'Tracker.ingest, 1 producer, 1 event/call':52}{one:10.0f}{1.0:8.2f}")
        print(
            f"{f'Tracker.ingest, {args.producers} producers, group commit':52}{many:10.0f}"
            f"{many / one:8.2f}   ({per_tx:.1f} events per transaction)"
        )
        print("\n".join(commit_lines(root, ops, per)))
        print("\nprofile, store, one event per transaction (tottime, top 12):")
        print(profile(root / "profile.db", stream(max(20, args.operations // 3), args.events, "p")))


if __name__ == "__main__":
    main()
