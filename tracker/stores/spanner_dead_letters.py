"""Spanner's dead-letter primitives (`tracker.stores.dead_letters`), a mixin of SpannerStore.

A dead letter by id is one key read. Listing is one parameterised query on the columns
DeadLettersByReceivedAt and DeadLettersByReason index (schema version 4), bounded by its
LIMIT. Retention: the canonical schema's row deletion policy removes dead letters 30 days
after they were received; the sweep (`expire_dead_letters`) removes them after
--dead-letter-retention-days in bounded rounds, on both variants, so the setting holds
where there is no policy (the emulator variant) and when it is shorter than the policy's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from google.cloud import spanner
from google.cloud.spanner_v1.keyset import KeySet

from tracker.stores.base import DeadLetter
from tracker.stores.dead_letters import DEAD_LETTER_BATCH, DeadLetterQuery

if TYPE_CHECKING:
    from google.cloud.spanner_v1.database import Database

    from tracker.stores.spanner_schema import Names

T = TypeVar("T")
_COLUMNS = ("Id", "ReceivedAt", "Route", "Reason", "Detail", "MessageId", "Attributes", "Body")
_STRING = spanner.param_types.STRING
_TIME = spanner.param_types.TIMESTAMP


def _where(query: DeadLetterQuery, *, page: bool) -> tuple[str, dict[str, Any], dict[str, Any]]:
    clauses: list[str] = []
    params: dict[str, Any] = {}
    types: dict[str, Any] = {}
    for column, name, value, op, kind in (
        ("Reason", "reason", query.reason, "=", _STRING),
        ("Route", "route", query.route, "=", _STRING),
        ("ReceivedAt", "since", query.since, ">=", _TIME),
        ("ReceivedAt", "until", query.until, "<", _TIME),
    ):
        if value is not None:
            clauses.append(f"{column} {op} @{name}")
            params[name] = value
            types[name] = kind
    if page and query.after is not None:
        op = ">" if query.oldest_first else "<"
        clauses.append(f"(ReceivedAt {op} @at OR (ReceivedAt = @at AND Id {op} @id))")
        params.update(at=query.after[0], id=query.after[1])
        types.update(at=_TIME, id=_STRING)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params, types


class SpannerDeadLetters:
    """The dead-letter primitives over SpannerStore's database."""

    if TYPE_CHECKING:  # provided by SpannerStore
        database: Database
        n: Names

        def _guard(self, *, writing: bool = False) -> AbstractContextManager[None]: ...

        def _tx(self, fn: Callable[[Any], T]) -> T: ...

    def _letter(self, row: Sequence[Any]) -> DeadLetter:
        from tracker.stores.spanner import _json, _r  # late: spanner.py imports this module

        return DeadLetter(
            id=str(row[0]),
            received_at=row[1],
            route=str(row[2]),
            reason=str(row[3]),
            detail=str(row[4]),
            message_id=str(row[5]),
            attributes=_json(row[6]),
            body=_r(row[7]),
        )

    def _query(self, sql: str, params: dict[str, Any], types: dict[str, Any]) -> Iterator[Any]:
        with self._guard(), self.database.snapshot() as snapshot:
            rows = list(snapshot.execute_sql(self.n.sql(sql), params=params, param_types=types))
        return iter(rows)

    def get_dead_letter(self, letter_id: str) -> DeadLetter | None:
        with self._guard(), self.database.snapshot() as snapshot:
            rows = list(snapshot.read(self.n("DeadLetters"), _COLUMNS, KeySet(keys=[[letter_id]])))
        return self._letter(rows[0]) if rows else None

    def list_dead_letters(self, query: DeadLetterQuery) -> list[DeadLetter]:
        where, params, types = _where(query, page=True)
        order = "ASC" if query.oldest_first else "DESC"
        params["limit"] = query.limit + 1
        types["limit"] = spanner.param_types.INT64
        rows = self._query(
            f"SELECT {', '.join(_COLUMNS)} FROM DeadLetters{where}"
            f" ORDER BY ReceivedAt {order}, Id {order} LIMIT @limit",
            params,
            types,
        )
        return [self._letter(r) for r in rows]

    def remove_dead_letters(self, letter_ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(letter_ids))
        if not ids:
            return 0

        def work(transaction: Any) -> int:
            keys = KeySet(keys=[[i] for i in ids])
            found = list(transaction.read(self.n("DeadLetters"), ("Id",), keys))
            if found:
                transaction.delete(self.n("DeadLetters"), KeySet(keys=[[r[0]] for r in found]))
            return len(found)

        return self._tx(work)

    def purge_dead_letters(
        self, query: DeadLetterQuery, *, dry_run: bool = False, max_rounds: int = 1000
    ) -> int:
        where, params, types = _where(query, page=False)
        if dry_run:
            (row,) = self._query(f"SELECT COUNT(*) FROM DeadLetters{where}", params, types)
            return int(row[0])
        params["limit"] = DEAD_LETTER_BATCH
        types["limit"] = spanner.param_types.INT64
        removed = 0
        for _ in range(max_rounds):
            ids = [
                str(r[0])
                for r in self._query(
                    f"SELECT Id FROM DeadLetters{where} ORDER BY ReceivedAt LIMIT @limit",
                    params,
                    types,
                )
            ]
            if ids:
                removed += self.remove_dead_letters(ids)
            if len(ids) < DEAD_LETTER_BATCH:
                break
        return removed


__all__ = ["SpannerDeadLetters"]
