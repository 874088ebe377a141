"""The embedded default: one SQLite file in WAL mode.

One connection guarded by a lock serves the process (SQLite allows one writer at a
time anyway); other processes on the same file wait up to `busy_timeout`, after which
the store reports `StoreUnavailable` (transient: retried, never dropped).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from google.longrunning import operations_pb2

from tracker import filtering
from tracker.apply import OperationState, Outcome, due_time
from tracker.errors import StoreUnavailable
from tracker.schemas import sqlite_migrations
from tracker.stores.base import (
    DeadLetter,
    Identity,
    ListQuery,
    OutboxItem,
    Store,
    Stored,
    Tx,
)

T = TypeVar("T")


def ts(when: datetime) -> str:
    """Fixed-width UTC text, so that string order is time order."""
    when = when.astimezone(UTC)
    # %Y is not zero-padded for years before 1000 (glibc): "1-01-01" would sort after "2026".
    return f"{when.year:04d}" + when.strftime("-%m-%dT%H:%M:%S.%fZ")


def _from_ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


_DIALECT = filtering.Dialect(
    param=lambda i: "?",
    label_value=lambda key: f"json_extract(labels, '$.\"' || {key} || '\"')",
    label_has=lambda key: f"json_type(labels, '$.\"' || {key} || '\"') IS NOT NULL",
    prefix=lambda column, p: f"instr({column}, {p}) = 1",
    time_value=ts,
    true=1,
    false=0,
)


_TRANSIENT = ("locked", "busy", "unable to open", "disk i/o", "readonly")


def _transient(exc: sqlite3.OperationalError) -> bool:
    """Lock contention and I/O trouble pass; a bad statement does not (not a retry)."""
    text = str(exc).lower()
    return any(marker in text for marker in _TRANSIENT)


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection, done_ttl: timedelta) -> None:
        self.conn = conn
        self.done_ttl = done_ttl

    def due(self, now: datetime, limit: int) -> list[str]:
        rows = self.conn.execute(
            "SELECT name FROM operations WHERE due_time IS NOT NULL AND due_time <= ?"
            " ORDER BY due_time LIMIT ?",
            (ts(now), limit),
        )
        return [r[0] for r in rows]

    def load(self, names: Sequence[str]) -> dict[str, OperationState]:
        out: dict[str, OperationState] = {}
        for chunk in _chunks(list(names), 500):
            marks = ",".join("?" * len(chunk))
            for name, blob in self.conn.execute(
                f"SELECT name, state FROM operations WHERE name IN ({marks})", chunk
            ):
                out[name] = OperationState.FromString(blob)
        return out

    def seen(self, identities: Sequence[Identity]) -> set[Identity]:
        found: set[Identity] = set()
        for ident in set(identities):
            row = self.conn.execute(
                "SELECT 1 FROM applied_events WHERE operation = ? AND source = ? AND event_id = ?",
                ident,
            ).fetchone()
            if row:
                found.add(ident)
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
        values: dict[str, Any] = {
            "name": state.name,
            "operation": operation.SerializeToString(),
            "state": state.SerializeToString(),
            "done": int(state.done),
            "operation_type": state.operation_type,
            "parent": state.parent,
            "labels": json.dumps(dict(state.labels), sort_keys=True),
            "create_time": ts(state.create_time.ToDatetime(UTC)),
            "update_time": ts(now),
            "end_time": ts(state.end_time.ToDatetime(UTC)) if state.done else None,
            "due_time": ts(due) if (due := due_time(state)) else None,
            # Retention counts on the tracker's clock from when it recorded the end, not
            # the producer's event time (old, replayed or skewed events would vanish).
            "expire_time": ts(now + self.done_ttl) if state.done else None,
        }
        if insert:
            values["checkpoint"] = checkpoint
            cols = ", ".join(values)
            marks = ", ".join(f":{k}" for k in values)
            self.conn.execute(f"INSERT INTO operations ({cols}) VALUES ({marks})", values)
        else:
            if checkpoint is not None:
                values["checkpoint"] = checkpoint
            sets = ", ".join(f"{k} = :{k}" for k in values if k != "name")
            self.conn.execute(f"UPDATE operations SET {sets} WHERE name = :name", values)

    def record(self, identities: Sequence[tuple[Identity, Outcome]], now: datetime) -> None:
        self.conn.executemany(
            "INSERT INTO applied_events (operation, source, event_id, outcome, applied_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [(*ident, outcome.value, ts(now)) for ident, outcome in identities],
        )

    def add_outbox(self, item: OutboxItem) -> None:
        self.conn.execute(
            "INSERT INTO outbox (id, operation, payload, state, created_at, attempts)"
            " VALUES (?, ?, ?, ?, ?, 0)",
            (
                item.id,
                item.operation.name,
                item.operation.SerializeToString(),
                item.state.SerializeToString(),
                ts(item.created_at),
            ),
        )


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class SqliteStore(Store):
    """Store on a SQLite file (`:memory:` works too, for one process)."""

    def __init__(
        self,
        path: str | Path,
        *,
        strict: bool = False,
        busy_timeout_ms: int = 5000,
        done_ttl: timedelta = timedelta(days=30),
    ):
        self.path = str(path)
        self.strict = strict
        self.done_ttl = done_ttl
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                self.path,
                check_same_thread=False,
                isolation_level=None,
                timeout=busy_timeout_ms / 1000,
            )
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            if self.path != ":memory:":
                self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self.migrate()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path!r}: {exc}") from exc

    # ---- schema ------------------------------------------------------------------------

    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> list[int]:
        """Apply pending schemas/sqlite/NNNN_*.sql files, each in its own transaction."""
        applied = []
        with self._lock:
            for version, sql in sqlite_migrations():
                if version <= self.schema_version():
                    continue
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    if version > self.schema_version():
                        for statement in sql.split(";\n"):
                            if statement.strip():
                                self._conn.execute(statement)
                        self._conn.execute(f"PRAGMA user_version = {version}")
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                applied.append(version)
        return applied

    # ---- transactions ------------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.OperationalError as exc:
                if not _transient(exc):
                    raise
                raise StoreUnavailable(f"SQLite store unavailable: {exc}") from exc

    def run_in_transaction(self, fn: Callable[[Tx], T]) -> T:
        with self._guard() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(_SqliteTx(conn, self.done_ttl))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

    # ---- reads -------------------------------------------------------------------------

    @staticmethod
    def _row(state: bytes, operation: bytes, checkpoint: bytes | None) -> Stored:
        return Stored(
            OperationState.FromString(state),
            operations_pb2.Operation.FromString(operation),
            checkpoint,
        )

    def get(self, name: str) -> Stored | None:
        with self._guard() as conn:
            row = conn.execute(
                "SELECT state, operation, checkpoint FROM operations WHERE name = ?", (name,)
            ).fetchone()
        return self._row(*row) if row else None

    def list_operations(self, query: ListQuery) -> list[Stored]:
        where, params = filtering.to_sql(query.filter, _DIALECT)
        sql = (
            "SELECT state, operation, checkpoint FROM operations"
            f" WHERE name > ? AND ({where}) ORDER BY name LIMIT ?"
        )
        with self._guard() as conn:
            rows = conn.execute(sql, [query.after, *params, query.page_size + 1]).fetchall()
        return [self._row(*r) for r in rows]

    def purge_expired(self, now: datetime | None = None) -> int:
        """Retention, as Spanner's row deletion policies do it: done operations past
        `done_ttl`, applied event ids older than `done_ttl`, notifications sent a week ago."""
        current = now or datetime.now(UTC)
        with self._guard() as conn:
            cur = conn.execute(
                "DELETE FROM operations WHERE expire_time IS NOT NULL AND expire_time <= ?",
                (ts(current),),
            )
            conn.execute(
                "DELETE FROM applied_events WHERE applied_at <= ?", (ts(current - self.done_ttl),)
            )
            conn.execute(
                "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at <= ?",
                (ts(current - timedelta(days=7)),),
            )
        return cur.rowcount

    def delete(self, name: str) -> bool:
        # applied_events stay: a redelivered old event must not resurrect the operation.
        with self._guard() as conn:
            cur = conn.execute("DELETE FROM operations WHERE name = ?", (name,))
        return cur.rowcount > 0

    # ---- outbox ------------------------------------------------------------------------

    def outbox_pending(self, limit: int = 100) -> list[OutboxItem]:
        with self._guard() as conn:
            rows = conn.execute(
                "SELECT id, payload, state, created_at, attempts FROM outbox"
                " WHERE sent_at IS NULL ORDER BY created_at, id LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            OutboxItem(
                id=r[0],
                operation=operations_pb2.Operation.FromString(r[1]),
                state=OperationState.FromString(r[2]),
                created_at=_from_ts(r[3]),
                attempts=r[4],
            )
            for r in rows
        ]

    def outbox_mark_sent(self, ids: Iterable[str], now: datetime) -> None:
        with self._guard() as conn:
            conn.executemany(
                "UPDATE outbox SET sent_at = ? WHERE id = ?", [(ts(now), i) for i in ids]
            )

    def outbox_failed(self, item_id: str) -> None:
        with self._guard() as conn:
            conn.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", (item_id,))

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
        with self._guard() as conn:
            rows = conn.execute(
                "SELECT id, received_at, route, reason, detail, message_id, attributes, body"
                " FROM dead_letters ORDER BY received_at, id LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            DeadLetter(
                id=r[0],
                received_at=_from_ts(r[1]),
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
        if table not in {"operations", "applied_events", "outbox", "dead_letters"}:
            raise ValueError(table)
        with self._guard() as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
