"""Spanner's List and count: filter pushdown, order_by and keyset paging (`stores.query`).

What the SQL says of a filter is limited to what every server the store runs on takes
alike (Cloud Spanner, Google's emulator, handy-spanner): no label condition in SQL (a
subquery on OperationLabels makes the emulator scan for every row), no prefix pushdown,
and no update_time comparison (the column is the commit timestamp, a little after the
state's update time the filter is judged on). The rest is checked row by row, as
everywhere. By name with `labels.k = "v"` AND anything (`query.label_driver`), the rows
come from the label index instead (`_by_label`): its entries for (k, v) by a read of
one full index key (every server reads that as a range), then the page's rows by key.

Sort values travel in page tokens as RFC 3339 text with the column's nanoseconds, so a
position compares exactly as the row it came from.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from google.api_core import datetime_helpers
from google.cloud import spanner
from google.cloud.spanner_v1.keyset import KeyRange, KeySet

from tracker import filtering
from tracker.apply import OperationState
from tracker.errors import InvalidArgument
from tracker.filter_fields import facts
from tracker.stores import query as q
from tracker.stores.base import ListQuery, Stored
from tracker.stores.spanner_schema import Names

_NANOS: Any = datetime_helpers.DatetimeWithNanoseconds
OPS_COLUMNS: Final = ("key", "Operation", "State", "Checkpoint")
FILTER_COLUMNS: Final[dict[str, str | None]] = {
    "done": "Done",
    "name": "key",
    "operation_type": "OperationType",
    "parent": "Parent",
    "create_time": "CreateTime",
    "update_time": None,
    "end_time": "EndTime",
    "result": "Result",
    "error.code": "ErrorCode",
    "percent": "Percent",
    "attempt": "Attempt",
}
SORT_COLUMNS: Final[dict[str, str | None]] = {**FILTER_COLUMNS, "update_time": "UpdateTime"}


def _dialect(columns: dict[str, str | None]) -> q.Dialect:
    return q.Dialect(
        columns=columns,
        placeholder=lambda name: f"@{name}",
        time_value=lambda t: t,
        true="TRUE",
        false="FALSE",
    )


FILTERS: Final = _dialect(FILTER_COLUMNS)
SORTS: Final = _dialect(SORT_COLUMNS)
SETTLED: Final = dataclasses.replace(FILTERS, late_columns=frozenset())
# The emulator variant has no columns of later versions (tracker.stores.spanner_schema).
PLAIN_FILTERS: Final = _dialect(
    {k: None if k in FILTERS.late_columns else v for k, v in FILTER_COLUMNS.items()}
)


def row_columns(state: OperationState) -> dict[str, Any]:
    """The columns of schema version 5 for a row being written."""
    f = facts(state)
    return {
        "Result": f["result"],
        "ErrorCode": f["error_code"],
        "Percent": f["percent"],
        "Attempt": f["attempt"],
    }


def _type(value: Any) -> Any:
    types = spanner.param_types
    if isinstance(value, bool):
        return types.BOOL
    if isinstance(value, int):
        return types.INT64
    if isinstance(value, float):
        return types.FLOAT64
    if isinstance(value, datetime):
        return types.TIMESTAMP
    return types.STRING


def _text(value: Any) -> str | None:
    """A sort value as a token carries it."""
    if value is None:
        return None
    if isinstance(value, _NANOS):
        return str(getattr(value, "rfc3339")())  # noqa: B009  (untyped library)
    if isinstance(value, datetime):
        return str(_NANOS.from_timestamp_pb(_pb(value)).rfc3339())
    return str(value)


def _pb(value: datetime) -> Any:
    from google.protobuf import timestamp_pb2

    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        parsed: datetime = _NANOS.from_rfc3339(text)
        return parsed
    except ValueError:
        raise InvalidArgument("page_token is not a token this server issued") from None


class SpannerQueries:
    """Mixin of `SpannerStore`: list_operations and count_operations."""

    database: Any  # google.cloud.spanner_v1.database.Database
    n: Names
    layout: Any  # spanner._Layout

    def _filters(self) -> q.Dialect:
        """What the SQL can say: nothing of the later columns in the emulator variant;
        in the canonical one, exactly once no row has NULL there (rows written before
        version 5; OperationsByResult answers at once, the columns are written together)."""
        if not self.layout.late_columns:
            return PLAIN_FILTERS
        sql = self.n.sql("SELECT 1 FROM Operations WHERE Result IS NULL LIMIT 1")
        with self._guard(), self.database.snapshot() as snapshot:
            unsettled = list(snapshot.execute_sql(sql))
        return FILTERS if unsettled else SETTLED

    if TYPE_CHECKING:  # provided by the store class

        def _guard(self, *, writing: bool = False) -> AbstractContextManager[None]: ...

        def _stored(self, row: Sequence[Any]) -> Stored: ...

    def _select(
        self, query: ListQuery, position: list[Any] | None, limit: int, dialect: q.Dialect
    ) -> list[Stored]:
        params: dict[str, Any] = {}
        where = q.pushdown(query.filter, dialect, params).where
        if position is not None:
            where += " AND " + q.after_position(query.order, position, SORTS, params)
        sort = [SORT_COLUMNS[k.field] for k in query.order if k.field != "name"]
        picked = "".join(f", {c}" for c in sort)
        params["limit"] = limit
        sql = self.n.sql(
            f"SELECT key, Operation, State, Checkpoint{picked} FROM Operations"
            f" WHERE {where} ORDER BY {q.order_sql(query.order, SORTS)} LIMIT @limit"
        )
        types = {k: _type(v) for k, v in params.items()}
        with self._guard(), self.database.snapshot() as snapshot:
            rows = list(snapshot.execute_sql(sql, params=params, param_types=types))
        out = []
        for r in rows:
            stored = self._stored(r)
            out.append(Stored(stored.state, stored.operation, stored.checkpoint, _sorts(r[4:])))
        return out

    def _position(self, query: ListQuery, row: Stored) -> list[Any]:
        return [*(_time(v) for v in row.sort), row.state.name]

    def list_operations(self, query: ListQuery) -> list[Stored]:
        """Up to page_size + 1 rows in the query's order (the extra one: there is more)."""
        dialect = self._filters()
        driver = q.label_driver(query.filter)
        if driver is not None and q.by_name(query.order) and not any(k.desc for k in query.order):
            return q.scan(
                query,
                lambda position, limit: self._by_label(driver[0], position, limit),
                lambda row: [row.state.name],
            )
        return q.scan(
            query,
            lambda position, limit: self._select(query, position, limit, dialect),
            lambda row: self._position(query, row),
            self.list_position(query),
        )

    def _by_label(
        self, label: tuple[str, str], position: list[Any] | None, limit: int
    ) -> list[Stored]:
        """Up to `limit` rows with the label, by name after `position`: the names from
        OperationLabelsByValue (its one key (LabelKey, Value) read, entries in name
        order: a full index key, which every server reads as a range), then those rows
        by key. Nothing of the table beyond them is read; `scan` checks the filter."""
        after = position[0] if position else None
        index_key = [label[0], label[1]]
        with self._guard(), self.database.snapshot(multi_use=True) as snapshot:
            entries = snapshot.read(
                self.n("OperationLabels"),
                ("key",),
                KeySet(ranges=[KeyRange(start_closed=index_key, end_closed=index_key)]),
                index=self.n("OperationLabelsByValue"),
            )
            names = sorted(str(r[0]) for r in entries)
            if after is not None:
                names = names[bisect.bisect_right(names, after) :]
            names = names[:limit]
            if not names:
                return []
            rows = list(
                snapshot.read(self.n("Operations"), OPS_COLUMNS, KeySet(keys=[[n] for n in names]))
            )
        found = sorted((self._stored(r) for r in rows), key=lambda s: s.state.name)
        return found

    def list_position(self, query: ListQuery) -> list[Any] | None:
        """The start position of a query with store-native values (tokens carry text)."""
        start = q.start_values(query)
        if start is None:
            return None
        return [*(_time(v) for v in start[:-1]), start[-1]]

    def count_operations(self, expr: filtering.Expr | None) -> tuple[int, bool]:
        params: dict[str, Any] = {}
        dialect = self._filters()
        pushed = q.pushdown(expr, dialect, params)
        if pushed.exact:
            sql = self.n.sql(f"SELECT COUNT(*) FROM Operations WHERE {pushed.where}")
            types = {k: _type(v) for k, v in params.items()}
            with self._guard(), self.database.snapshot() as snapshot:
                rows = list(snapshot.execute_sql(sql, params=params, param_types=types))
            return int(rows[0][0]), False

        return q.count_scan(
            expr, lambda query, position, size: self._select(query, position, size, dialect)
        )


def _sorts(values: Sequence[Any]) -> tuple[str | None, ...]:
    return tuple(_text(v) for v in values)


__all__ = ["SpannerQueries", "row_columns"]
