"""The embedded default: one SQLite file in WAL mode.

One connection guarded by a lock serves the process (SQLite allows one writer at a
time anyway); other processes on the same file wait up to `busy_timeout`, after which
the store reports `StoreUnavailable` (transient: retried, never dropped).
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Final, TypeVar

from google.longrunning import operations_pb2

from tracker.apply import OperationState, Outcome
from tracker.errors import StoreUnavailable
from tracker.events import Event
from tracker.filter_fields import columns
from tracker.notices import Notice, Wanted
from tracker.schemas import sqlite_migrations
from tracker.stores.base import (
    TOMBSTONE_ID,
    TOMBSTONE_OUTCOME,
    TOMBSTONE_SOURCE,
    BatchResult,
    DeadLetter,
    Identity,
    OutboxItem,
    RowValues,
    Store,
    Stored,
    Tx,
)
from tracker.stores.history import Entry
from tracker.stores.labels import write_sqlite
from tracker.stores.sqlite_checkpoint import BACKSTOP_PAGES, LOG_SIZE_LIMIT, Checkpointer
from tracker.stores.sqlite_dead_letters import SqliteDeadLetters
from tracker.stores.sqlite_history import SqliteHistory, SqliteHistoryTx
from tracker.stores.sqlite_queries import SqliteQueries
from tracker.stores.sqlite_times import from_ts, ts, ts_or_none
from tracker.stores.tenants import Rewriter, check_prefix, ddl_names

T = TypeVar("T")
# Rows the retention sweep deletes per table and round, each round its own short
# transaction, so that it never holds the writer for long.
PURGE_BATCH = 1000
SENT_RETENTION = timedelta(days=7)


_TRANSIENT = ("locked", "busy", "unable to open", "disk i/o", "readonly")


def _transient(exc: sqlite3.OperationalError) -> bool:
    """Lock contention and I/O trouble pass; a bad statement does not (not a retry)."""
    text = str(exc).lower()
    return any(marker in text for marker in _TRANSIENT)


class _SqliteTx(SqliteHistoryTx):
    def __init__(
        self, conn: sqlite3.Connection, done_ttl: timedelta, purge_batch: int = 1000
    ) -> None:
        self.conn = conn
        self.done_ttl = done_ttl
        self.purge_batch = purge_batch
        # The stored column values of each row this transaction loaded: an update sets
        # only the columns that change, so SQLite touches only the indexes that must move
        # (what a commit costs is mostly the pages it writes).
        self.rows: dict[str, tuple[Any, ...]] = {}  # in the order of _VALUE_COLUMNS
        # What `load` learned of each name it was asked for, so no later statement asks
        # again: the history head of a row (0: none), and for a name without a row
        # whether it has de-duplication records (deleted or expired: its tombstone).
        self.heads: dict[str, int] = {}
        self.gone: dict[str, bool] = {}
        # Identities `seen` recorded already, provisionally as applied (`record` writes
        # only the outcomes that differ).
        self.claimed: set[Identity] = set()

    def removed(self, names: Sequence[str]) -> set[str]:
        out = {n for n in names if self.gone.get(n)}
        unknown = [n for n in names if n not in self.gone]
        for chunk in _chunks(unknown, 500):
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT DISTINCT operation FROM applied_events WHERE operation IN ({marks})",
                chunk,
            )
            out.update(r[0] for r in rows)
        return out

    def delete(self, name: str) -> bool:
        cur = self.conn.execute("DELETE FROM operations WHERE name = ?", (name,))
        self.heads[name] = 0  # its history went with it (ON DELETE CASCADE)
        self.gone.pop(name, None)
        self.rows.pop(name, None)
        return cur.rowcount > 0

    def tombstone(self, name: str, now: datetime) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO applied_events (operation, source, event_id, outcome,"
            " applied_at) VALUES (?, ?, ?, ?, ?)",
            (name, TOMBSTONE_SOURCE, TOMBSTONE_ID, TOMBSTONE_OUTCOME, ts(now)),
        )
        self.gone[name] = True

    def load(self, names: Sequence[str]) -> dict[str, OperationState]:
        # One statement for the rows, their history heads and, for names without a row,
        # whether they were removed: `history_heads` and `removed` answer from it.
        out: dict[str, OperationState] = {}
        for chunk in _chunks(list(dict.fromkeys(names)), 500):
            marks = ",".join(["(?)"] * len(chunk))
            for row in self.conn.execute(LOAD.format(marks=marks), chunk):
                name, state = row[0], row[1]
                if state is None:
                    self.gone[name] = bool(row[3])
                    self.heads[name] = 0
                    continue
                out[name] = OperationState.FromString(state)
                self.heads[name] = row[2] or 0
                self.rows[name] = row[4:]
        return out

    def history_heads(self, names: Sequence[str]) -> dict[str, int]:
        heads = self.heads
        out = {n: heads[n] for n in names if heads.get(n)}
        unknown = [n for n in names if n not in heads]
        if unknown:
            out.update(super().history_heads(unknown))
        return out

    def add_history(
        self, entries: Sequence[Entry], heads: dict[str, int], trims: dict[str, int]
    ) -> None:
        super().add_history(entries, heads, trims)
        self.heads.update(heads)

    def seen(self, identities: Sequence[Identity], now: datetime) -> set[Identity]:
        # One statement for the batch, which both finds the identities recorded before and
        # records the others (as applied: `record` corrects the few that were not). The
        # INSERT returns only the rows it wrote; the rest were there.
        unique = [i for i in dict.fromkeys(identities) if i not in self.claimed]
        found: set[Identity] = set()
        when = ts(now)
        for i in range(0, len(unique), 200):  # 4 parameters each, under SQLite's 999
            chunk = unique[i : i + 200]
            marks = ",".join(["(?, ?, ?, 'applied', ?)"] * len(chunk))
            new = set(
                self.conn.execute(
                    CLAIM.format(marks=marks),
                    [part for ident in chunk for part in (*ident, when)],
                )
            )
            self.claimed.update(new)
            found.update(ident for ident in chunk if ident not in new)
        return found

    def save(
        self,
        state: OperationState,
        operation: operations_pb2.Operation,
        checkpoint: bytes | None,
        *,
        insert: bool,
        now: datetime,
    ) -> None:
        row = RowValues.of(state, now, self.done_ttl)
        result, error_code, percent, attempt = columns(state)
        name = row.name
        labels = json.dumps(row.labels, sort_keys=True) if row.labels else "{}"
        plain = (  # in the order of _VALUE_COLUMNS
            int(row.done),
            row.operation_type,
            row.parent,
            labels,
            ts(row.create_time),
            ts(now),
            ts_or_none(row.end_time),
            ts_or_none(row.due_time),
            ts_or_none(row.expire_time),
            result,  # result .. attempt: the columns of schema version 6
            error_code,
            percent,
            attempt,
        )
        stored = self.rows.get(name)
        self.rows[name] = plain
        blobs = (operation.SerializeToString(), state.SerializeToString())
        # The label rows follow the labels column: rewritten only when it changes.
        if insert:
            before: dict[str, str] | None = {}
        elif stored is None:
            before = None  # not loaded in this transaction: replaced whole
        elif stored[_LABELS] != labels:
            before = json.loads(stored[_LABELS])
        else:
            before = row.labels  # unchanged: nothing to write
        if insert:
            self.conn.execute(_INSERT, (name, *blobs, *plain, checkpoint))
            write_sqlite(self.conn, name, row.labels, before)
            return
        changed = (
            _VALUE_INDEXES
            if stored is None
            else tuple(i for i in _VALUE_INDEXES if plain[i] != stored[i])
        )
        extra = (checkpoint,) if checkpoint is not None else ()
        self.conn.execute(
            _update(changed, bool(extra)), (*blobs, *(plain[i] for i in changed), *extra, name)
        )
        write_sqlite(self.conn, name, row.labels, before)

    def record(self, identities: Sequence[tuple[Identity, Outcome]], now: datetime) -> None:
        claimed = self.claimed
        amend = [
            (outcome.value, *ident)
            for ident, outcome in identities
            if ident in claimed and outcome is not Outcome.APPLIED
        ]
        if amend:
            self.conn.executemany(
                "UPDATE applied_events SET outcome = ?"
                " WHERE operation = ? AND source = ? AND event_id = ?",
                amend,
            )
        fresh = [
            (*ident, outcome.value, ts(now))
            for ident, outcome in identities
            if ident not in claimed
        ]
        if fresh:
            self.conn.executemany(
                "INSERT INTO applied_events (operation, source, event_id, outcome, applied_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                fresh,
            )

    def add_outbox(self, item: OutboxItem) -> None:
        self.conn.execute(
            "INSERT INTO outbox (id, operation, payload, state, created_at, attempts)"
            " VALUES (?, ?, ?, ?, ?, 0)",
            (
                item.id,
                item.operation.name,
                item.operation.SerializeToString(),
                item.notice.SerializeToString(),  # State: the notice envelope
                ts(item.created_at),
            ),
        )
        self.conn.execute(
            "INSERT INTO outbox_due (id, next_attempt_at) VALUES (?, ?)",
            (item.id, ts(item.next_attempt_at or item.created_at)),
        )


CLAIM: Final = (
    "INSERT INTO applied_events (operation, source, event_id, outcome, applied_at)"
    " VALUES {marks} ON CONFLICT DO NOTHING RETURNING operation, source, event_id"
)

# The plain columns of an operations row (not its blobs), as `save` writes them.
_VALUE_COLUMNS: Final = (
    "done",
    "operation_type",
    "parent",
    "labels",
    "create_time",
    "update_time",
    "end_time",
    "due_time",
    "expire_time",
    "result",
    "error_code",
    "percent",
    "attempt",
)
_VALUE_LIST: Final = ", ".join(f"o.{c}" for c in _VALUE_COLUMNS)
_VALUE_INDEXES: Final = tuple(range(len(_VALUE_COLUMNS)))
_LABELS: Final = _VALUE_COLUMNS.index("labels")
_INSERT: Final = (
    f"INSERT INTO operations (name, operation, state, {', '.join(_VALUE_COLUMNS)}, checkpoint)"
    f" VALUES ({', '.join('?' * (len(_VALUE_COLUMNS) + 4))})"
)


@functools.lru_cache(maxsize=512)
def _update(changed: tuple[int, ...], checkpoint: bool) -> str:
    """The UPDATE of a row's blobs, the plain columns at `changed` (indexes into
    _VALUE_COLUMNS) and the checkpoint if given, by position: an update sets only what
    changes, so SQLite moves only the indexes that must move."""
    names = ["operation", "state", *(_VALUE_COLUMNS[i] for i in changed)]
    if checkpoint:
        names.append("checkpoint")
    return f"UPDATE operations SET {', '.join(f'{n} = ?' for n in names)} WHERE name = ?"


# Each asked name: its row's state and plain columns, its history head (the end of its
# range of the history's primary key: one seek), and, only when there is no row, whether
# de-duplication records remain (one seek of that primary key's prefix).
LOAD: Final = (
    "SELECT v.column1, o.state,"
    " (SELECT MAX(e.ordinal) FROM operation_events e WHERE e.operation = o.name),"
    " CASE WHEN o.name IS NULL THEN"
    " EXISTS (SELECT 1 FROM applied_events a WHERE a.operation = v.column1) END,"
    f" {_VALUE_LIST} FROM (VALUES {{marks}}) v LEFT JOIN operations o ON o.name = v.column1"
)


PURGE_STATEMENTS: Final = {
    "operations": (
        "SELECT name FROM operations WHERE expire_time IS NOT NULL AND expire_time <= ?"
        " ORDER BY expire_time LIMIT ?"
    ),
    "applied_events": (
        "DELETE FROM applied_events WHERE (operation, source, event_id) IN"
        " (SELECT operation, source, event_id FROM applied_events WHERE applied_at <= ?"
        " ORDER BY applied_at LIMIT ?)"
    ),
    "outbox": (
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE sent_at IS NOT NULL"
        " AND sent_at <= ? ORDER BY sent_at LIMIT ?)"
    ),
}


def _purge_round(tx: Tx, now: datetime) -> tuple[int, bool]:
    """One bounded retention round: (operations removed, whether any table had more)."""
    assert isinstance(tx, _SqliteTx)
    conn, limit = tx.conn, tx.purge_batch
    names = [r[0] for r in conn.execute(PURGE_STATEMENTS["operations"], (ts(now), limit))]
    for name in names:
        tx.delete(name)
        tx.tombstone(name, now)
    events = conn.execute(
        PURGE_STATEMENTS["applied_events"], (ts(now - tx.done_ttl), limit)
    ).rowcount
    sent = conn.execute(PURGE_STATEMENTS["outbox"], (ts(now - SENT_RETENTION), limit)).rowcount
    return len(names), limit in (len(names), events, sent)


@contextmanager
def _translated() -> Iterator[None]:
    """SQLite's transient failures as StoreUnavailable; anything else is a bug."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if not _transient(exc):
            raise
        raise StoreUnavailable(f"SQLite store unavailable: {exc}") from exc


class _WriterBusy(Exception):
    """`apply_now`'s BEGIN met another writer: nothing was written."""


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# Schema versions of prefixed tenants (`table_prefix`); the plain schema keeps its
# version in PRAGMA user_version, as it always has.
TENANT_VERSIONS: Final = "tracker_schema_versions"


class _PrefixedConnection(sqlite3.Connection):
    """A connection whose every statement names a tenant's tables (`tracker.stores.tenants`)."""

    rewrite: Callable[[str], str]

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return super().execute(self.rewrite(sql), parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        return super().executemany(self.rewrite(sql), parameters)


class SqliteStore(SqliteHistory, SqliteDeadLetters, SqliteQueries, Store):
    """Store on a SQLite file (`:memory:` works too, for one process).

    Writes go through one connection, one transaction at a time. Reads use a
    connection of their own per thread: in WAL mode a reader sees the last commit and
    never waits for a writer, so Get, List, Wait and Watch answer while a write (of this
    or another process) holds the lock. `:memory:` has one connection for everything.
    """

    # The class of every connection the store opens (a subclass may record statements:
    # bench/ingest.py does); a tenant's store uses one that rewrites table names instead.
    connection_class: ClassVar[type[sqlite3.Connection]] = sqlite3.Connection

    def __init__(
        self,
        path: str | Path,
        *,
        strict: bool = False,
        busy_timeout_ms: int = 5000,
        done_ttl: timedelta = timedelta(days=30),
        purge_batch: int = PURGE_BATCH,
        table_prefix: str = "",
        background_checkpoints: bool = True,
    ):
        """`table_prefix`: this store's tables and indexes are the schema's under that
        prefix (one file, many tenants: `tracker.stores.tenants`). `background_checkpoints`:
        WAL checkpoints on a thread of their own, not in a commit
        (`tracker.stores.sqlite_checkpoint`); False leaves them to SQLite."""
        self.path = str(path)
        self.table_prefix = check_prefix(table_prefix)
        self._rewriter = (
            Rewriter(table_prefix, ddl_names(sql for _, sql in sqlite_migrations()))
            if table_prefix
            else None
        )
        self.strict = strict
        self.done_ttl = done_ttl
        self.purge_batch = purge_batch
        self._busy_timeout_ms = busy_timeout_ms
        self._timeout_now = busy_timeout_ms  # the writer connection's busy_timeout
        self._lock = threading.RLock()
        self._no_wait = False  # apply_now's transaction: BEGIN without busy_timeout
        self._memory = self.path == ":memory:"
        self._readers = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._checkpointer: Checkpointer | None = None
        try:
            self._conn = self._connect()
            wal = (
                not self._memory
                and self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
            )
            if wal and background_checkpoints:
                self._conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
                self._conn.execute(f"PRAGMA journal_size_limit = {LOG_SIZE_LIMIT}")
                self._checkpointer = Checkpointer(self.path, busy_timeout_ms=busy_timeout_ms)
                # A store dropped unclosed ends its thread too.
                weakref.finalize(self, self._checkpointer.stop)
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self.migrate()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path!r}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            check_same_thread=False,
            isolation_level=None,
            timeout=self._busy_timeout_ms / 1000,
            factory=_PrefixedConnection if self._rewriter else self.connection_class,
        )
        if isinstance(conn, _PrefixedConnection) and self._rewriter is not None:
            conn.rewrite = self._rewriter.sql
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        return conn

    # ---- schema ------------------------------------------------------------------------

    def schema_version(self) -> int:
        if not self.table_prefix:
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TENANT_VERSIONS}"
            " (prefix TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        row = self._conn.execute(
            f"SELECT version FROM {TENANT_VERSIONS} WHERE prefix = ?", (self.table_prefix,)
        ).fetchone()
        return int(row[0]) if row else 0

    def _set_version(self, version: int) -> None:
        if not self.table_prefix:
            self._conn.execute(f"PRAGMA user_version = {version}")
            return
        self._conn.execute(
            f"INSERT OR REPLACE INTO {TENANT_VERSIONS} (prefix, version) VALUES (?, ?)",
            (self.table_prefix, version),
        )

    def migrate(self) -> list[int]:
        """Apply pending schemas/sqlite/NNNN_*.sql files, each in its own transaction."""
        applied = []
        with self._lock:
            self._writer_timeout(self._busy_timeout_ms)
            for version, sql in sqlite_migrations():
                if version <= self.schema_version():
                    continue
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    if version > self.schema_version():
                        for statement in sql.split(";\n"):
                            if statement.strip():
                                self._conn.execute(statement)
                        self._set_version(version)
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                applied.append(version)
        return applied

    # ---- transactions ------------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[sqlite3.Connection]:
        """The writer connection, one caller at a time; it waits up to busy_timeout for
        another process's lock (but in `apply_now`, which takes it without waiting)."""
        with self._lock, _translated():
            if not self._no_wait:
                self._writer_timeout(self._busy_timeout_ms)
            yield self._conn

    def _writer_timeout(self, ms: int) -> None:
        """Set the writer's busy_timeout, if it is not that already: the server's small
        writes (`apply_now`, 0) follow each other without a PRAGMA between them."""
        if self._timeout_now != ms:
            self._conn.execute(f"PRAGMA busy_timeout = {int(ms)}")
            self._timeout_now = ms

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """This thread's read connection (the writer's for `:memory:`)."""
        if self._memory:
            with self._guard() as writer:
                yield writer
            return
        reader: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        with _translated():
            if reader is None:
                reader = self._connect()
                reader.execute("PRAGMA query_only = 1")
                self._readers.conn = reader
                with self._readers_lock:
                    self._reader_conns.append(reader)
            yield reader

    @contextmanager
    def _atomic(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the writer connection: committed when the block
        ends, rolled back when it raises."""
        with self._guard() as conn:
            self._begin(conn)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if self._checkpointer is not None:
                self._checkpointer.committed(conn.total_changes)

    def run_in_transaction(self, fn: Callable[[Tx], T]) -> T:
        with self._atomic() as conn:
            return fn(_SqliteTx(conn, self.done_ttl, self.purge_batch))

    def _begin(self, conn: sqlite3.Connection) -> None:
        if not self._no_wait:
            conn.execute("BEGIN IMMEDIATE")
            return
        # Left at 0 for the rest of the transaction, which in WAL mode meets no other
        # lock (the write lock is ours from BEGIN IMMEDIATE), and for the next apply_now;
        # `_guard` sets it back for a caller that waits.
        self._writer_timeout(0)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _transient(exc):
                raise _WriterBusy from exc
            raise

    def apply_now(
        self, events: Sequence[Event], *, notify: Wanted | bool = True
    ) -> BatchResult | None:
        """`apply` at once when the writer is free: this process's lock taken without
        waiting, and SQLite's write lock too (busy_timeout 0 for the BEGIN; in WAL mode
        only the BEGIN can meet another writer). Otherwise None, nothing written. Goes
        through `apply`, so whatever a subclass does there it does here."""
        if self._memory or not self._lock.acquire(blocking=False):
            return None
        try:
            self._no_wait = True  # read by _begin, on this thread: the lock is ours
            try:
                return self.apply(events, notify=notify)
            except _WriterBusy:
                return None  # another process writes: the caller waits in a thread
            finally:
                self._no_wait = False
        finally:
            self._lock.release()

    # ---- reads -------------------------------------------------------------------------

    @staticmethod
    def _row(state: bytes, operation: bytes, checkpoint: bytes | None) -> Stored:
        return Stored(
            OperationState.FromString(state),
            operations_pb2.Operation.FromString(operation),
            checkpoint,
        )

    def due(self, now: datetime, limit: int) -> list[str]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT name FROM operations WHERE due_time IS NOT NULL AND due_time <= ?"
                " ORDER BY due_time LIMIT ?",
                (ts(now), limit),
            ).fetchall()
        return [r[0] for r in rows]

    def get(self, name: str) -> Stored | None:
        with self._reading() as conn:
            row = conn.execute(
                "SELECT state, operation, checkpoint FROM operations WHERE name = ?", (name,)
            ).fetchone()
        return self._row(*row) if row else None

    def get_operation(self, name: str) -> operations_pb2.Operation | None:
        with self._reading() as conn:
            row = conn.execute(
                "SELECT operation FROM operations WHERE name = ?", (name,)
            ).fetchone()
        return operations_pb2.Operation.FromString(row[0]) if row else None

    def get_operations(self, names: Sequence[str]) -> dict[str, operations_pb2.Operation]:
        out: dict[str, operations_pb2.Operation] = {}
        with self._reading() as conn:
            for chunk in _chunks(list(dict.fromkeys(names)), 500):
                marks = ",".join("?" * len(chunk))
                for name, blob in conn.execute(
                    f"SELECT name, operation FROM operations WHERE name IN ({marks})", chunk
                ):
                    out[name] = operations_pb2.Operation.FromString(blob)
        return out

    def read_checkpoint(self, name: str) -> tuple[bool, bytes | None]:
        with self._reading() as conn:
            row = conn.execute(
                "SELECT checkpoint FROM operations WHERE name = ?", (name,)
            ).fetchone()
        return (True, row[0]) if row else (False, None)

    def purge_expired(self, now: datetime | None = None, *, max_rounds: int = 10) -> int:
        """Retention, as Spanner's row deletion policies do it: done operations past
        `done_ttl` (each leaving a tombstone), de-duplication records older than
        `done_ttl`, notifications sent a week ago. Returns how many operations went.

        Work is done in rounds of at most `purge_batch` rows per table, each round its
        own short write transaction found by an index, so a large backlog never holds
        the writer for long; what is left waits for the next sweep.
        """
        current = now or datetime.now(UTC)
        removed = 0
        for _ in range(max_rounds):
            count, more = self.run_in_transaction(lambda tx: _purge_round(tx, current))
            removed += count
            if not more:
                break
        return removed

    def explain(self, sql: str, params: Sequence[Any] = ()) -> list[str]:
        """EXPLAIN QUERY PLAN of a statement (operators and tests: which index it uses)."""
        with self._reading() as conn:
            return [str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]

    # ---- outbox ------------------------------------------------------------------------

    @staticmethod
    def _outbox_item(r: Sequence[Any]) -> OutboxItem:
        return OutboxItem(
            id=r[0],
            operation=operations_pb2.Operation.FromString(r[1]),
            notice=Notice.FromString(r[2] or b""),
            created_at=from_ts(r[3]),
            attempts=r[4],
            next_attempt_at=from_ts(r[5]) if r[5] else None,
            last_error=r[6] or "",
            gave_up_at=from_ts(r[7]) if r[7] else None,
        )

    def outbox_pending(self, limit: int = 100, now: datetime | None = None) -> list[OutboxItem]:
        due, params = ("", []) if now is None else (" WHERE d.next_attempt_at <= ?", [ts(now)])
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT o.id, o.payload, o.state, o.created_at, o.attempts, d.next_attempt_at,"
                " d.last_error, NULL FROM outbox_due d JOIN outbox o ON o.id = d.id"
                f"{due} ORDER BY d.next_attempt_at, d.id LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [self._outbox_item(r) for r in rows]

    def outbox_mark_sent(self, ids: Iterable[str], now: datetime) -> None:
        keys = [(i,) for i in ids]
        with self._atomic() as conn:
            conn.executemany(
                "UPDATE outbox SET sent_at = ? WHERE id = ?", [(ts(now), k) for (k,) in keys]
            )
            conn.executemany("DELETE FROM outbox_due WHERE id = ?", keys)
            conn.executemany("DELETE FROM failed_notifications WHERE id = ?", keys)

    def outbox_reschedule(self, item_id: str, retry_at: datetime, error: str) -> None:
        with self._atomic() as conn:
            cur = conn.execute(
                "UPDATE outbox_due SET next_attempt_at = ?, last_error = ? WHERE id = ?",
                (ts(retry_at), error, item_id),
            )
            if cur.rowcount:
                conn.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", (item_id,))

    def outbox_give_up(self, item_id: str, now: datetime, error: str) -> None:
        with self._atomic() as conn:
            cur = conn.execute("DELETE FROM outbox_due WHERE id = ?", (item_id,))
            if not cur.rowcount:
                return
            conn.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", (item_id,))
            conn.execute(
                "INSERT OR REPLACE INTO failed_notifications"
                " (id, operation, gave_up_at, attempts, last_error)"
                " SELECT id, operation, ?, attempts, ? FROM outbox WHERE id = ?",
                (ts(now), error, item_id),
            )

    def failed_notifications(
        self, limit: int = 100, after: tuple[datetime, str] | None = None
    ) -> list[OutboxItem]:
        page, params = "", []
        if after is not None:
            page = " WHERE f.gave_up_at > ? OR (f.gave_up_at = ? AND f.id > ?)"
            params = [ts(after[0]), ts(after[0]), after[1]]
        with self._guard() as conn:
            rows = conn.execute(
                "SELECT o.id, o.payload, o.state, o.created_at, f.attempts, NULL, f.last_error,"
                " f.gave_up_at FROM failed_notifications f JOIN outbox o ON o.id = f.id"
                f"{page} ORDER BY f.gave_up_at, f.id LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [self._outbox_item(r) for r in rows]

    def requeue_failed(self, item_id: str, now: datetime) -> bool:
        with self._atomic() as conn:
            row = conn.execute(
                "SELECT f.last_error FROM failed_notifications f JOIN outbox o ON o.id = f.id"
                " WHERE f.id = ? AND o.sent_at IS NULL",
                (item_id,),
            ).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM failed_notifications WHERE id = ?", (item_id,))
            conn.execute(
                "INSERT OR REPLACE INTO outbox_due (id, next_attempt_at, last_error)"
                " VALUES (?, ?, ?)",
                (item_id, ts(now), row[0]),
            )
            conn.execute("UPDATE outbox SET attempts = 0 WHERE id = ?", (item_id,))
        return True

    # ---- dead letters ------------------------------------------------------------------

    def add_dead_letter(self, letter: DeadLetter) -> None:
        with self._guard() as conn:
            conn.execute(
                "INSERT INTO dead_letters (id, received_at, route, reason, detail, message_id,"
                " attributes, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    letter.id,
                    ts(letter.received_at),
                    letter.route,
                    letter.reason,
                    letter.detail,
                    letter.message_id,
                    json.dumps(letter.attributes, sort_keys=True),
                    letter.body,
                ),
            )

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT id, received_at, route, reason, detail, message_id, attributes, body"
                " FROM dead_letters ORDER BY received_at, id LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            DeadLetter(
                id=r[0],
                received_at=from_ts(r[1]),
                route=r[2],
                reason=r[3],
                detail=r[4],
                message_id=r[5],
                attributes=json.loads(r[6]),
                body=r[7],
            )
            for r in rows
        ]

    def remove_dead_letter(self, letter_id: str) -> bool:
        with self._guard() as conn:
            cur = conn.execute("DELETE FROM dead_letters WHERE id = ?", (letter_id,))
        return cur.rowcount > 0

    def count(self, table: str) -> int:
        """Rows in a table (operators and tests)."""
        if table not in {
            "operations",
            "applied_events",
            "outbox",
            "outbox_due",
            "failed_notifications",
            "dead_letters",
        }:
            raise ValueError(table)
        with self._reading() as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        with self._readers_lock:
            readers, self._reader_conns = self._reader_conns, []
        for conn in readers:
            conn.close()
        with self._lock:
            self._conn.close()
