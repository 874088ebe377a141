"""SQLite's dead-letter primitives (`tracker.stores.dead_letters`), a mixin of SqliteStore.

Listing goes through `dead_letters_received` (received_at, id) or, with a reason,
`dead_letters_reason` (reason, received_at, id) (schema version 5): a page is one range
of an index, in either order. Retention and purges delete in rounds of at most
DEAD_LETTER_BATCH rows, each round its own short write transaction, like the other
retention of tracker/stores/sqlite.py.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from tracker.stores.base import DeadLetter
from tracker.stores.dead_letters import DEAD_LETTER_BATCH, DeadLetterQuery
from tracker.stores.sqlite_times import from_ts, ts

_COLUMNS = "id, received_at, route, reason, detail, message_id, attributes, body"


def _where(query: DeadLetterQuery, *, page: bool) -> tuple[str, list[Any]]:
    """The WHERE clause of a query (with its page cursor if `page`), and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if query.reason is not None:
        clauses.append("reason = ?")
        params.append(query.reason)
    if query.route is not None:
        clauses.append("route = ?")
        params.append(query.route)
    if query.since is not None:
        clauses.append("received_at >= ?")
        params.append(ts(query.since))
    if query.until is not None:
        clauses.append("received_at < ?")
        params.append(ts(query.until))
    if page and query.after is not None:
        op = ">" if query.oldest_first else "<"
        at = ts(query.after[0])
        clauses.append(f"(received_at {op} ? OR (received_at = ? AND id {op} ?))")
        params += [at, at, query.after[1]]
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def purge_statement(query: DeadLetterQuery) -> tuple[str, list[Any]]:
    """One round of a purge or of retention: the DELETE and its parameters (operators and
    tests can EXPLAIN it: retention finds its rows by `dead_letters_received`)."""
    where, params = _where(query, page=False)
    sql = (
        "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters"
        f"{where} ORDER BY received_at LIMIT ?)"
    )
    return sql, [*params, DEAD_LETTER_BATCH]


def _letter(row: Sequence[Any]) -> DeadLetter:
    return DeadLetter(
        id=row[0],
        received_at=from_ts(row[1]),
        route=row[2],
        reason=row[3],
        detail=row[4],
        message_id=row[5],
        attributes=json.loads(row[6]),
        body=row[7],
    )


class SqliteDeadLetters:
    """The dead-letter primitives over SqliteStore's connections."""

    if TYPE_CHECKING:  # provided by SqliteStore

        def _reading(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _atomic(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def get_dead_letter(self, letter_id: str) -> DeadLetter | None:
        with self._reading() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM dead_letters WHERE id = ?", (letter_id,)
            ).fetchone()
        return _letter(row) if row else None

    def list_dead_letters(self, query: DeadLetterQuery) -> list[DeadLetter]:
        where, params = _where(query, page=True)
        order = "ASC" if query.oldest_first else "DESC"
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM dead_letters{where}"
                f" ORDER BY received_at {order}, id {order} LIMIT ?",
                [*params, query.limit + 1],
            ).fetchall()
        return [_letter(r) for r in rows]

    def remove_dead_letters(self, letter_ids: Sequence[str]) -> int:
        removed = 0
        with self._atomic() as conn:
            for start in range(0, len(letter_ids), 500):
                chunk = list(letter_ids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                removed += conn.execute(
                    f"DELETE FROM dead_letters WHERE id IN ({marks})", chunk
                ).rowcount
        return removed

    def purge_dead_letters(
        self, query: DeadLetterQuery, *, dry_run: bool = False, max_rounds: int = 1000
    ) -> int:
        if dry_run:
            where, params = _where(query, page=False)
            with self._reading() as conn:
                row = conn.execute(f"SELECT COUNT(*) FROM dead_letters{where}", params).fetchone()
            return int(row[0])
        sql, params = purge_statement(query)
        removed = 0
        for _ in range(max_rounds):
            with self._atomic() as conn:
                count = conn.execute(sql, params).rowcount
            removed += count
            if count < DEAD_LETTER_BATCH:
                break
        return removed


__all__ = ["SqliteDeadLetters", "purge_statement"]
