"""The event history on SQLite (tracker.stores.history): tables of schema version 4.

`operation_events` is keyed (operation, ordinal), so one operation's history is one range
of the primary key, and its last ordinal (the head) is the end of that range; it
references `operations` with ON DELETE CASCADE (the store turns foreign keys on), so
DeleteOperation and retention remove it with the row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from tracker.stores.history import Entry, floor
from tracker.stores.sqlite_times import from_ts, ts

_COLUMNS = (
    "operation, ordinal, type, event_id, source, event_time, sequence, attempt, outcome,"
    " received_at, data, truncated"
)


_INSERT: Final = f"INSERT INTO operation_events ({_COLUMNS}) VALUES ({', '.join('?' * 12)})"

HEADS: Final = (
    "SELECT v.column1, (SELECT MAX(e.ordinal) FROM operation_events e"
    " WHERE e.operation = v.column1) FROM (VALUES {marks}) v"
)


class SqliteHistoryTx:
    """History primitives of a write transaction (`tracker.stores.history.HistoryTx`)."""

    conn: sqlite3.Connection

    def history_heads(self, names: Sequence[str]) -> dict[str, int]:
        # The highest ordinal, from the end of the primary key: no head row to write, so
        # recording touches one more B-tree page per transaction, not two.
        # One statement for the batch: a correlated MAX per name, each one seek.
        out: dict[str, int] = {}
        unique = list(dict.fromkeys(names))
        for i in range(0, len(unique), 500):
            chunk = unique[i : i + 500]
            marks = ",".join(["(?)"] * len(chunk))
            for name, head in self.conn.execute(HEADS.format(marks=marks), chunk):
                if head is not None:
                    out[name] = int(head)
        return out

    def add_history(
        self, entries: Sequence[Entry], heads: dict[str, int], trims: dict[str, int]
    ) -> None:
        received: dict[datetime, str] = {}
        self.conn.executemany(
            _INSERT,
            [
                (
                    e.operation,
                    e.ordinal,
                    e.type,
                    e.id,
                    e.source,
                    ts(e.time),
                    e.sequence,
                    e.attempt,
                    e.outcome,
                    received.get(e.received) or received.setdefault(e.received, ts(e.received)),
                    e.data,
                    int(e.truncated),
                )
                for e in entries
            ],
        )
        if trims:
            self.conn.executemany(
                "DELETE FROM operation_events WHERE operation = ? AND ordinal < ?",
                list(trims.items()),
            )


class SqliteHistory:
    """The history read of `SqliteStore`."""

    history_limit: int

    if TYPE_CHECKING:  # provided by the store class

        def _reading(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def read_history(self, name: str, after: int = 0, limit: int = 100) -> tuple[bool, list[Entry]]:
        with self._reading() as conn, _snapshot(conn):
            if not conn.execute("SELECT 1 FROM operations WHERE name = ?", (name,)).fetchone():
                return False, []
            head = conn.execute(
                "SELECT MAX(ordinal) FROM operation_events WHERE operation = ?", (name,)
            ).fetchone()[0]
            start = max(after, floor(int(head), self.history_limit) if head else 0)
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM operation_events WHERE operation = ? AND ordinal > ?"
                " ORDER BY ordinal LIMIT ?",
                (name, start, limit),
            ).fetchall()
        return True, [_entry(r) for r in rows]


class _snapshot(AbstractContextManager[None]):
    """One read transaction, so the row, the head and the entries agree (a `:memory:`
    store reads on the writer's connection, which may be inside one already)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.began = False

    def __enter__(self) -> None:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN")
            self.began = True

    def __exit__(self, *exc: object) -> None:
        if self.began and self.conn.in_transaction:
            self.conn.execute("COMMIT")


def _entry(r: Sequence[Any]) -> Entry:
    return Entry(
        operation=str(r[0]),
        ordinal=int(r[1]),
        type=str(r[2]),
        id=str(r[3]),
        source=str(r[4]),
        time=from_ts(r[5]),
        sequence=None if r[6] is None else int(r[6]),
        attempt=int(r[7]),
        outcome=str(r[8]),
        received=from_ts(r[9]),
        data=bytes(r[10]),
        truncated=bool(r[11]),
    )


__all__ = ["SqliteHistory", "SqliteHistoryTx"]
