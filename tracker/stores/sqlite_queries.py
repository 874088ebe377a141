"""SQLite's List and count: filter pushdown, order_by and keyset paging (`stores.query`).

Sort values travel in page tokens as the columns' own text (`ts` is fixed-width UTC, so
text order is time order): a position compares exactly as the rows it came from.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Final

from google.longrunning import operations_pb2

from tracker import filtering
from tracker.apply import OperationState
from tracker.stores import query as q
from tracker.stores.base import ListQuery, Stored
from tracker.stores.sqlite_times import ts

COLUMNS: Final[dict[str, str | None]] = {
    "done": "done",
    "name": "name",
    "operation_type": "operation_type",
    "parent": "parent",
    "create_time": "create_time",
    "update_time": "update_time",
    "end_time": "end_time",
    "result": "result",
    "error.code": "error_code",
    "percent": "percent",
    "attempt": "attempt",
}


DIALECT: Final = q.Dialect(
    columns=COLUMNS,
    placeholder=lambda name: f":{name}",
    time_value=ts,
    prefix=lambda column, p: f"instr({column}, {p}) = 1",
    # By name: the list of names (the index range) can drive the read, in name order.
    label_in=lambda cond: f"name IN (SELECT name FROM operation_labels WHERE {cond})",
    true=1,
    false=0,
)


# The name as the label driver's join yields it (`_select`): order and position by it.
DRIVEN: Final = dataclasses.replace(DIALECT, columns={**COLUMNS, "name": "lname"})


# In another order: each row the order's index yields probes its label (no list built,
# no sort), unless the label is rare (`FEW_LABELLED`).
def _probe(cond: str) -> str:
    return f"EXISTS (SELECT 1 FROM operation_labels WHERE {cond} AND name = operations.name)"


# A label value at most this many operations carry, in an order other than the name's:
# read them all from the label index and sort them (few), rather than scan the order.
FEW_LABELLED: Final = 1000

# Once no row lacks them, the columns of version 6 are exact: the IS NULL escape goes.
SETTLED: Final = dataclasses.replace(DIALECT, late_columns=frozenset())


# `done = false` in an order: an index holding only the running rows (schema 7).
RUNNING: Final = {
    "create_time": "operations_running_create_time",
    "update_time": "operations_running_update_time",
    "end_time": "operations_running_end_time",
}


def _running_index(query: ListQuery) -> str | None:
    """The index of the running rows in the query's order, when the filter says
    `done = false` AND ... and the order is one time key (the name after it, same way)."""
    expr = query.filter
    parts = expr.exprs if isinstance(expr, filtering.BoolOp) and expr.op == "AND" else (expr,)
    running = any(
        isinstance(p, filtering.Cmp) and p.field == "done" and (p.op == "=") != bool(p.value)
        for p in parts
    )
    keys = q.full_order(query.order)
    if not running or len(keys) != 2 or keys[0].desc != keys[1].desc:
        return None
    return RUNNING.get(keys[0].field)


class SqliteQueries:
    """Mixin of `SqliteStore`: list_operations and count_operations."""

    if TYPE_CHECKING:  # provided by the store class

        def _reading(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def _dialect(self) -> q.Dialect:
        """SETTLED unless some row still has NULL in the columns of version 6 (written
        before it; the `result` index answers at once, the columns are written together)."""
        with self._reading() as conn:
            row = conn.execute("SELECT 1 FROM operations WHERE result IS NULL LIMIT 1").fetchone()
        return DIALECT if row else SETTLED

    def _statement(
        self, query: ListQuery, position: list[Any] | None, limit: int, dialect: q.Dialect
    ) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {}
        source, expr, sorts = "operations", query.filter, DIALECT
        driver = q.label_driver(query.filter) if q.by_name(query.order) else None
        if driver is not None:
            # By name with `labels.k = "v"` AND ...: the label rows' primary key range, in
            # name order, drives; each page reads its own rows only (no sort, no scan).
            source = (
                "(SELECT name AS lname FROM operation_labels WHERE key = :lk AND value = :lv)"
                " CROSS JOIN operations ON name = lname"
            )
            params.update(lk=driver[0][0], lv=driver[0][1])
            expr = driver[1]
            sorts = DRIVEN
        elif (index := _running_index(query)) is not None:
            # Without statistics the planner takes `done = 0` on operations_done and sorts
            # what it finds: the index of the running rows in this order reads a page.
            source = f"operations INDEXED BY {index}"
        where = q.pushdown(expr, dialect, params).where
        if position is not None:
            where += " AND " + q.after_position(query.order, position, sorts, params)
        sort = [COLUMNS[k.field] for k in query.order if k.field != "name"]
        picked = "".join(f", {c}" for c in sort)
        params["limit"] = limit
        sql = (
            f"SELECT state, operation, checkpoint{picked} FROM {source}"
            f" WHERE {where} ORDER BY {q.order_sql(query.order, sorts)} LIMIT :limit"
        )
        return sql, params

    def _select(
        self, query: ListQuery, position: list[Any] | None, limit: int, dialect: q.Dialect
    ) -> list[Stored]:
        sql, params = self._statement(query, position, limit, dialect)
        with self._reading() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [
            Stored(
                OperationState.FromString(r[0]),
                operations_pb2.Operation.FromString(r[1]),
                r[2],
                tuple(r[3:]),
            )
            for r in rows
        ]

    def explain_list(self, query: ListQuery) -> list[str]:
        """EXPLAIN QUERY PLAN of the statement a List of `query` runs for its first chunk
        (operators and tests: which index it reads, whether it sorts)."""
        dialect = self._query_dialect(query)
        sql, params = self._statement(query, q.start_values(query), q.CHUNK, dialect)
        with self._reading() as conn:
            return [str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]

    def _query_dialect(self, query: ListQuery) -> q.Dialect:
        """How this query says labels (see `_probe`, `FEW_LABELLED`)."""
        dialect = self._dialect()
        if q.by_name(query.order):
            return dialect
        driver = q.label_driver(query.filter)
        if driver is not None:
            with self._reading() as conn:
                few = conn.execute(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM operation_labels"
                    " WHERE key = ? AND value = ? LIMIT ?)",
                    (*driver[0], FEW_LABELLED + 1),
                ).fetchone()[0]
            if few <= FEW_LABELLED:
                return dialect
        return dataclasses.replace(dialect, label_in=_probe)

    def list_operations(self, query: ListQuery) -> list[Stored]:
        """Up to page_size + 1 rows in the query's order (the extra one: there is more)."""
        dialect = self._query_dialect(query)
        return q.scan(
            query,
            lambda position, limit: self._select(query, position, limit, dialect),
            lambda row: [*row.sort, row.state.name],
        )

    def count_operations(self, expr: filtering.Expr | None) -> tuple[int, bool]:
        params: dict[str, Any] = {}
        dialect = self._dialect()
        pushed = q.pushdown(expr, dialect, params)
        if pushed.exact:
            with self._reading() as conn:
                sql = f"SELECT COUNT(*) FROM operations WHERE {pushed.where}"
                return int(conn.execute(sql, params).fetchone()[0]), False

        return q.count_scan(
            expr, lambda query, position, size: self._select(query, position, size, dialect)
        )


__all__ = ["DIALECT", "SqliteQueries"]
