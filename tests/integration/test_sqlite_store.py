"""SQLite-only behaviour, beyond the shared contract suite: retention and concurrency."""

from __future__ import annotations

import contextlib
import gc
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import IO

import httpx
import pytest
from google.protobuf import duration_pb2
from google.rpc import code_pb2

from tests.helpers import T0, make_event
from tracker.apply import Outcome
from tracker.bindings import to_binary
from tracker.config import Config
from tracker.errors import StoreUnavailable
from tracker.events import Kind
from tracker.metrics import Metrics
from tracker.server import running
from tracker.stores.sqlite import CLAIM, LOAD, PURGE_STATEMENTS, SqliteStore
from tracker.stores.sqlite_checkpoint import BACKSTOP_PAGES
from tracker.stores.sqlite_history import HEADS
from tracker.stores.sqlite_times import ts

OP = "operations/job-1"


def test_retention_leaves_a_tombstone(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db", done_ttl=timedelta(days=1))
    store.apply([make_event(Kind.SUCCEEDED, OP)], now=T0)
    assert store.purge_expired(T0 + timedelta(days=2)) == 1
    assert store.get(OP) is None
    # The operation's own records went with the TTL; the tombstone lives a TTL from now.
    late = make_event(Kind.PROGRESS, OP, seq=9)
    result = store.apply([late], now=T0 + timedelta(days=2, hours=1))
    assert [r.outcome for r in result.results] == [Outcome.LATE]
    assert store.get(OP) is None
    # Once the tombstone's own TTL passed, the name is free again.
    store.purge_expired(T0 + timedelta(days=4))
    again = make_event(Kind.PROGRESS, OP, seq=10)
    assert [r.outcome for r in store.apply([again]).results] == [Outcome.APPLIED]
    store.close()


def _fill_applied_events(path: Path, rows: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO applied_events (operation, source, event_id, outcome, applied_at)"
            " VALUES (?, 's', ?, 'applied', ?)",
            (
                (f"operations/op-{i % 1000}", f"e{i}", ts(T0 + timedelta(seconds=i)))
                for i in range(rows)
            ),
        )


def test_the_batch_dedup_claim_searches_the_primary_key(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    _fill_applied_events(path, 1000)
    marks = ",".join(["(?, ?, ?, 'applied', ?)"] * 2)
    plan = " | ".join(store.explain(CLAIM.format(marks=marks), ["a", "b", "c", "t"] * 2))
    assert "SCAN applied_events" not in plan and "SCAN a " not in plan, plan
    # And it finds what is there, in one statement for many identities.
    batch = [make_event(Kind.CREATED, f"operations/op-{i}", seq=0) for i in range(400)]
    store.apply(batch)
    log: list[str] = []
    store._conn.set_trace_callback(log.append)
    again = store.apply([*batch[:350], make_event(Kind.CREATED, "operations/new", seq=0)])
    store._conn.set_trace_callback(None)
    outcomes = [r.outcome for r in again.results]
    assert outcomes == [Outcome.DUPLICATE] * 350 + [Outcome.APPLIED]
    claims = [s for s in log if s.startswith("INSERT INTO applied_events")]
    assert len(claims) == 2, claims  # 351 identities, 200 a statement
    assert not [
        s for s in log if s.startswith("SELECT") and "applied_events a" in s and "v.column3" in s
    ]
    store.close()


def test_one_event_is_one_load_one_claim_one_row_and_one_history_entry(tmp_path: Path) -> None:
    """The statements of a one-event transaction: the row, its history head and (without a
    row) its tombstone come from one load; dedup lookup and record are one INSERT."""
    store = SqliteStore(tmp_path / "n.db")
    name = "operations/lean"
    log: list[str] = []
    store._conn.set_trace_callback(log.append)
    store.apply([make_event(Kind.CREATED, name, seq=0)])
    created = [s.split(" (")[0].split(" SET")[0][:40] for s in log]
    log.clear()
    store.apply([make_event(Kind.PROGRESS, name, seq=1, data={"percent": 5})])
    progress = [s.split(" (")[0].split(" SET")[0][:40] for s in log]
    store._conn.set_trace_callback(None)
    assert [s.split()[0] for s in created] == [
        "BEGIN",
        "SELECT",
        "INSERT",
        "INSERT",
        "INSERT",
        "COMMIT",
    ], created
    assert [s.split()[0] for s in progress] == [
        "BEGIN",
        "SELECT",
        "INSERT",
        "UPDATE",
        "INSERT",
        "COMMIT",
    ], progress
    ok, entries = store.read_history(name)
    assert ok and [e.ordinal for e in entries] == [1, 2]
    store.close()


def test_outcomes_other_than_applied_are_recorded_as_such(tmp_path: Path) -> None:
    """A claim records an identity as applied before the rules run; a stale or late event
    gets its own outcome in the end, in the same transaction."""
    store = SqliteStore(tmp_path / "o.db")
    name = "operations/late"
    store.apply([make_event(Kind.CREATED, name, seq=0), make_event(Kind.SUCCEEDED, name, seq=5)])
    late = make_event(Kind.FAILED, name, seq=6)  # a second terminal event
    result = store.apply([late])
    assert result.results[0].outcome is Outcome.LATE
    with sqlite3.connect(tmp_path / "o.db") as conn:
        rows = conn.execute(
            "SELECT outcome FROM applied_events WHERE event_id = ?", (late.id,)
        ).fetchall()
    assert rows == [("late",)]
    assert store.apply([late]).results[0].outcome is Outcome.DUPLICATE
    store.close()


def test_history_heads_come_with_the_rows(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "h.db")
    plan = " | ".join(store.explain(HEADS.format(marks="(?),(?)"), ["a", "b"]))
    assert "SEARCH e USING PRIMARY KEY (operation=?)" in plan, plan
    plan = " | ".join(store.explain(LOAD.format(marks="(?),(?)"), ["a", "b"]))
    assert "SEARCH e USING PRIMARY KEY (operation=?)" in plan, plan
    assert "SEARCH o USING INDEX sqlite_autoindex_operations_1 (name=?)" in plan or (
        "SEARCH o USING PRIMARY KEY" in plan
    ), plan
    names = [f"operations/h{i}" for i in range(3)]
    store.apply([make_event(Kind.CREATED, n, seq=0) for n in names])
    store.apply(
        [make_event(Kind.PROGRESS, names[0], seq=1), make_event(Kind.PROGRESS, names[1], seq=1)]
    )

    def heads(tx: object) -> tuple[dict[str, int], dict[str, int]]:
        cold = tx.history_heads([*names, "operations/none"])  # type: ignore[attr-defined]
        tx.load([*names, "operations/none"])  # type: ignore[attr-defined]
        return cold, tx.history_heads([*names, "operations/none"])  # type: ignore[attr-defined]

    cold, warm = store.run_in_transaction(heads)
    assert cold == warm == {names[0]: 2, names[1]: 2, names[2]: 1}
    store.close()


def test_retention_uses_indexes_and_is_bounded_per_round(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SqliteStore(path, done_ttl=timedelta(days=1), purge_batch=5000)
    _fill_applied_events(path, 100_000)
    for statement in PURGE_STATEMENTS.values():
        plan = " | ".join(store.explain(statement, (ts(T0), 10)))
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
        assert "SCAN applied_events" not in plan and "SCAN operations" not in plan, plan
    assert "applied_events_applied_at" in " ".join(
        store.explain(PURGE_STATEMENTS["applied_events"], (ts(T0), 10))
    )
    # All rows are past retention; one sweep of two rounds removes two batches only.
    store.purge_expired(T0 + timedelta(days=30), max_rounds=2)
    assert store.count("applied_events") == 100_000 - 2 * 5000
    # Later sweeps finish the job.
    while store.count("applied_events"):
        store.purge_expired(T0 + timedelta(days=30))
    store.close()


LOCK_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


@contextlib.contextmanager
def _write_lock_held(db: Path) -> Iterator[IO[str]]:
    """Another process holding `db`'s write lock until the block ends, or until a line is
    written to the stream it yields."""
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder.stdin
    finally:
        holder.stdin.close()  # releases the lock whatever happened
        holder.wait(10)
        holder.stdout.close()


def test_reads_answer_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    """A write of this process waits for another process's lock (busy timeout 60 s);
    Get, List, Wait and Watch answer meanwhile, from their own read connections."""
    db = tmp_path / "t.db"
    store = SqliteStore(db, busy_timeout_ms=60_000)
    store.apply([make_event(Kind.PROGRESS, OP, data={"percent": 40, "message": "half"})])
    config = Config(db=str(db), http_port=0, grpc_port=-1)
    with (
        running(config, store=store) as server,
        httpx.Client(base_url=server.http_url, timeout=20) as http,
    ):
        with _write_lock_held(db) as release:
            _reads_while_a_write_waits(server.tracker.metrics, http, release)
        assert http.get(f"/v1/{OP}").json()["done"] is True


def _reads_while_a_write_waits(metrics: Metrics, http: httpx.Client, release: IO[str]) -> None:
    before = metrics.value(metrics.writes_in_flight)
    headers, body = to_binary(make_event(Kind.SUCCEEDED, OP))
    with ThreadPoolExecutor(1) as pool:
        write = pool.submit(http.post, "/v1/events", headers=headers, content=body)
        # The write is in the store, waiting for the other process's lock.
        deadline = time.monotonic() + 20
        while metrics.value(metrics.writes_in_flight) <= before:
            assert time.monotonic() < deadline and not write.done()
            time.sleep(0.01)
        got = http.get(f"/v1/{OP}")
        assert got.status_code == 200 and "done" not in got.json()
        listed = http.get("/v1/operations", params={"filter": "done = false"})
        assert [o["name"] for o in listed.json()["operations"]] == [OP]
        waited = http.post(f"/v1/{OP}:wait", json={"timeout": "0.2s"})
        assert waited.status_code == 200 and waited.json()["name"] == OP
        with http.stream("GET", f"/v1/{OP}:watch", params={"timeout": "0.2s"}) as stream:
            assert stream.status_code == 200
            assert '"percent":40' in stream.read().decode()
        assert not write.done()  # all of that while the write still waited
        release.write("release\n")
        release.flush()
        assert write.result(30).status_code == 200


def test_a_sweep_with_nothing_due_waits_for_no_writer(tmp_path: Path) -> None:
    """Expiry finds what is due by a read: with nothing due it takes no write lock, so
    another process holding one does not hold up (or fail) the sweep; something due
    still waits for the writer, and is expired once the lock is let go."""
    db = tmp_path / "t.db"
    store = SqliteStore(db, busy_timeout_ms=300)
    timeout = {"heartbeat_timeout": duration_pb2.Duration(seconds=60)}
    store.apply([make_event(Kind.CREATED, OP, time=T0, data=timeout)])
    with _write_lock_held(db):
        assert store.expire_due(T0 + timedelta(seconds=30)) == []  # not due: no lock taken
        with pytest.raises(StoreUnavailable):
            store.expire_due(T0 + timedelta(seconds=61))  # due: the writer is busy
    (expired,) = store.expire_due(T0 + timedelta(seconds=61))
    assert expired.operation.name == OP and expired.operation.done
    assert expired.operation.error.code == code_pb2.DEADLINE_EXCEEDED
    store.close()


def _rows_in_the_database_file(db: Path, copy: Path) -> int:
    """The operations a copy of the database file alone holds, without its WAL: what
    checkpoints have copied there."""
    copy.write_bytes(db.read_bytes())
    with contextlib.closing(sqlite3.connect(copy)) as conn:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE name = 'operations'")
        if tables.fetchone() is None:
            return 0
        return int(conn.execute("SELECT COUNT(*) FROM operations").fetchone()[0])


@pytest.mark.parametrize("background", [True, False])
def test_checkpoints_run_on_a_thread_of_their_own(tmp_path: Path, background: bool) -> None:
    """A few commits are copied into the database file by the store's checkpoint thread
    (a second after the first commit, here sooner), with no commit of its own doing
    one; SQLite's own checkpoint (background_checkpoints=False) waits for 1,000 pages
    of log, which a few commits do not reach."""
    db = tmp_path / "c.db"
    store = SqliteStore(db, background_checkpoints=background)
    checkpointer = store._checkpointer
    assert (checkpointer is not None) is background
    if checkpointer is not None:
        checkpointer.delay = 0.05
        assert store._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BACKSTOP_PAGES
    for i in range(5):
        store.apply([make_event(Kind.CREATED, f"operations/c{i}", seq=0)])
    if checkpointer is not None:
        deadline = time.monotonic() + 20
        while checkpointer.checkpoints < 1:
            assert time.monotonic() < deadline, "no checkpoint ran"
            time.sleep(0.01)
        assert _rows_in_the_database_file(db, tmp_path / "copy.db") == 5
    else:
        time.sleep(0.2)
        assert _rows_in_the_database_file(db, tmp_path / "copy.db") == 0
    store.close()
    if checkpointer is not None:
        assert checkpointer._thread is not None and not checkpointer._thread.is_alive()


def test_the_writer_still_checkpoints_when_the_thread_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's own checkpoint stays as a backstop, at a larger threshold: with the
    thread held off, the log does not grow past about that many pages."""
    monkeypatch.setattr("tracker.stores.sqlite.BACKSTOP_PAGES", 100)
    db = tmp_path / "b.db"
    store = SqliteStore(db)
    assert store._checkpointer is not None
    store._checkpointer.delay = 3600.0
    store._checkpointer.rows = 10**9
    for i in range(300):  # ~3,000 pages of log
        store.apply([make_event(Kind.CREATED, f"operations/b{i}", seq=0)])
    page = int(store._conn.execute("PRAGMA page_size").fetchone()[0])
    wal = Path(f"{db}-wal").stat().st_size
    assert wal < 400 * page, wal
    assert store._checkpointer.checkpoints == 0
    store.close()


def test_a_memory_store_has_no_checkpoint_thread() -> None:
    store = SqliteStore(":memory:")
    store.apply([make_event(Kind.CREATED, OP, seq=0)])
    assert store._checkpointer is None
    store.close()


def test_a_store_dropped_unclosed_ends_its_checkpoint_thread(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "d.db")
    store.apply([make_event(Kind.CREATED, OP, seq=0)])
    assert store._checkpointer is not None
    thread = store._checkpointer._thread
    assert thread is not None and thread.is_alive()
    del store
    gc.collect()
    thread.join(20)
    assert not thread.is_alive()
