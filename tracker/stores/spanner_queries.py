"""Spanner's List and count: filter pushdown, order_by and keyset paging (`stores.query`).

What the SQL says of a filter is limited to what every server the store runs on takes
alike (Cloud Spanner, Google's emulator, handy-spanner): no label condition in SQL (a
subquery on OperationLabels makes the emulator scan for every row), no prefix pushdown,
and no update_time comparison (the column is the commit timestamp, a little after the
state's update time the filter is judged on). The rest is checked row by row, as
everywhere. By name with `labels.k = "v"` AND anything (`query.label_driver`), the rows
come from the label index instead (`_by_label`): its entries for (k, v) by a read of
one full index key (every server reads that as a range), then the page's rows by key;
in any other order, when at most `LABEL_SORT_LIMIT` operations carry the label, the
same reads give all of them, sorted here (`_label_sorted`); more, and the order's index
is read with each row checked.

The SQL names the index that reads a page in the query's own order (`index_for`, a
FORCE_INDEX hint): `done = false` by name or newest first, and an ordered List whose
filter the SQL says nothing of. Neither emulator reports query plans (tests/README.md),
so the hint is what shows which index Cloud Spanner reads; both servers reject a hint
naming an index that does not exist.

Sort values travel in page tokens as RFC 3339 text with the column's nanoseconds, so a
position compares exactly as the row it came from.
"""

from __future__ import annotations

import bisect
import calendar
import dataclasses
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from google.api_core import datetime_helpers
from google.cloud import spanner
from google.cloud.spanner_v1 import ExecuteSqlRequest
from google.cloud.spanner_v1.keyset import KeyRange, KeySet

from tracker import filtering
from tracker.apply import OperationState
from tracker.errors import InvalidArgument
from tracker.filter_fields import columns
from tracker.stores import query as q
from tracker.stores.base import ListQuery, SortKey, Stored
from tracker.stores.spanner_schema import LIST_INDEXES_VERSION, Names, applied_versions

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
# At most this many operations with a label are read and sorted for a page in a time order
# (as SQLite does); more, and the order's index is read and each row checked.
LABEL_SORT_LIMIT: Final = 1000
# Indexes whose keys are one sort order with the key (schema versions 5 and 7).
_ASCENDING: Final = {
    "create_time": "OperationsByCreateTime",
    "update_time": "OperationsByUpdateTime",
    "end_time": "OperationsByEndTime",
}
_NEWEST_FIRST: Final = (SortKey("create_time", True), SortKey("name", True))


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
    result, error_code, percent, attempt = columns(state)
    return {
        "Result": result,
        "ErrorCode": error_code,
        "Percent": percent,
        "Attempt": attempt,
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


def _done_false(expr: filtering.Expr | None) -> bool:
    """Whether `done = false` is the filter or one of its top-level AND terms."""
    parts = expr.exprs if isinstance(expr, filtering.BoolOp) and expr.op == "AND" else (expr,)
    return any(
        isinstance(p, filtering.Cmp) and p.field == "done" and p.op == "=" and p.value is False
        for p in parts
    )


def index_for(query: ListQuery, pushed_nothing: bool, *, list_indexes: bool) -> str | None:
    """The index whose keys are the query's order (after the rows it selects), for a
    FORCE_INDEX hint; None: the server chooses. `pushed_nothing`: the SQL says nothing
    of the filter (every row is a candidate); `list_indexes`: schema version 7 is there."""
    order = q.full_order(query.order)
    if _done_false(query.filter):
        if order == (SortKey("name"),):
            return "OperationsByDone"
        if order == _NEWEST_FIRST and list_indexes:
            return "OperationsByDoneCreateTimeDesc"
        return None
    if not pushed_nothing or len(order) != 2:
        return None
    if order == _NEWEST_FIRST:
        return "OperationsByCreateTimeDesc" if list_indexes else None
    first, last = order
    if last == SortKey("name") and not first.desc:
        return _ASCENDING.get(first.field)
    return None


def _rank(value: Any) -> tuple[int, Any]:
    """A sort value as it compares (NULL smallest; times to the nanosecond)."""
    if value is None:
        return (0, 0)
    if isinstance(value, datetime):
        nanos = getattr(value, "nanosecond", value.microsecond * 1000)
        return (1, calendar.timegm(value.utctimetuple()) * 10**9 + nanos)
    return (1, value)


def _after(
    ranks: Sequence[tuple[int, Any]], position: Sequence[tuple[int, Any]], order: Any
) -> bool:
    """Whether a row's ranks come strictly after the position's in the order."""
    for mine, theirs, key in zip(ranks, position, order, strict=True):
        if mine != theirs:
            return (mine < theirs) if key.desc else (mine > theirs)
    return False


def _rank_at(i: int) -> Callable[[tuple[list[tuple[int, Any]], Stored]], tuple[int, Any]]:
    return lambda item: item[0][i]


class SpannerQueries:
    """Mixin of `SpannerStore`: list_operations and count_operations."""

    database: Any  # google.cloud.spanner_v1.database.Database
    n: Names
    layout: Any  # spanner._Layout
    _list_indexes: bool | None = None  # whether schema version 7 is applied (read once)

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

    def _statement(
        self, query: ListQuery, position: list[Any] | None, limit: int, dialect: q.Dialect
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(SQL, params, param types) of one ordered chunk after `position`."""
        params: dict[str, Any] = {}
        where = q.pushdown(query.filter, dialect, params).where
        if position is not None:
            where += " AND " + q.after_position(query.order, position, SORTS, params)
        sort = [SORT_COLUMNS[k.field] for k in query.order if k.field != "name"]
        picked = "".join(f", {c}" for c in sort)
        params["limit"] = limit
        index = index_for(query, where == "TRUE", list_indexes=self._has_list_indexes())
        hint = f"@{{FORCE_INDEX={index}}}" if index else ""
        sql = self.n.sql(
            f"SELECT key, Operation, State, Checkpoint{picked} FROM Operations{hint}"
            f" WHERE {where} ORDER BY {q.order_sql(query.order, SORTS)} LIMIT @limit"
        )
        return sql, params, {k: _type(v) for k, v in params.items()}

    def _select(
        self, query: ListQuery, position: list[Any] | None, limit: int, dialect: q.Dialect
    ) -> list[Stored]:
        sql, params, types = self._statement(query, position, limit, dialect)
        with self._guard(), self.database.snapshot() as snapshot:
            rows = list(snapshot.execute_sql(sql, params=params, param_types=types))
        out = []
        for r in rows:
            stored = self._stored(r)
            out.append(Stored(stored.state, stored.operation, stored.checkpoint, _sorts(r[4:])))
        return out

    def _has_list_indexes(self) -> bool:
        if self._list_indexes is None:
            with self._guard():
                self._list_indexes = LIST_INDEXES_VERSION in applied_versions(self.database, self.n)
        return self._list_indexes

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
        if driver is not None:
            carried = self._label_sorted(driver[0], query)
            if carried is not None:
                order = q.full_order(query.order)

                def page(position: list[Any] | None, limit: int) -> list[Stored]:
                    at = None if position is None else [_rank(v) for v in position]
                    return [s for r, s in carried if at is None or _after(r, at, order)][:limit]

                return q.scan(
                    query,
                    page,
                    lambda row: self._position(query, row),
                    self.list_position(query),
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

    def _label_sorted(
        self, label: tuple[str, str], query: ListQuery
    ) -> list[tuple[list[tuple[int, Any]], Stored]] | None:
        """Every operation with the label, in the query's order with its ranks, when at
        most `LABEL_SORT_LIMIT` carry it (None: more): the index entries of (k, v), then
        those rows by key with their sort columns. No read grows with the table."""
        index_key = [label[0], label[1]]
        sort = [SORT_COLUMNS[k.field] for k in query.order if k.field != "name"]
        with self._guard(), self.database.snapshot(multi_use=True) as snapshot:
            entries = list(
                snapshot.read(
                    self.n("OperationLabels"),
                    ("key",),
                    KeySet(ranges=[KeyRange(start_closed=index_key, end_closed=index_key)]),
                    index=self.n("OperationLabelsByValue"),
                    limit=LABEL_SORT_LIMIT + 1,
                )
            )
            if len(entries) > LABEL_SORT_LIMIT:
                return None
            if not entries:
                return []
            keys = KeySet(keys=[[str(r[0])] for r in entries])
            rows = list(snapshot.read(self.n("Operations"), (*OPS_COLUMNS, *sort), keys))
        out: list[tuple[list[tuple[int, Any]], Stored]] = []
        for r in rows:
            stored = self._stored(r)
            ranks = [*(_rank(v) for v in r[4:]), _rank(stored.state.name)]
            out.append(
                (ranks, Stored(stored.state, stored.operation, stored.checkpoint, _sorts(r[4:])))
            )
        for i, key in reversed(list(enumerate(q.full_order(query.order)))):
            out.sort(key=_rank_at(i), reverse=key.desc)
        return out

    def explain_list(self, query: ListQuery) -> list[str]:
        """What a List of `query` reads for its first chunk (operators and tests): the
        label index reads, or the SQL statement (its FORCE_INDEX hint names the index)
        followed by the plan the server reports for it in PLAN mode, one line per plan
        node (`PLAN: <none>` when it reports none, as both emulators do)."""
        driver = q.label_driver(query.filter)
        by_label = self.n("OperationLabelsByValue")
        if driver is not None and q.by_name(query.order) and not any(k.desc for k in query.order):
            return [f"READ INDEX {by_label} (LabelKey, Value) = {driver[0]}", "READ BY KEY"]
        if driver is not None and self._label_sorted(driver[0], query) is not None:
            return [f"READ INDEX {by_label} (LabelKey, Value) = {driver[0]}", "READ BY KEY, SORT"]
        sql, params, types = self._statement(
            query, self.list_position(query), q.CHUNK, self._filters()
        )
        mode = ExecuteSqlRequest.QueryMode.PLAN
        with self._guard(), self.database.snapshot() as snapshot:
            result = snapshot.execute_sql(sql, params=params, param_types=types, query_mode=mode)
            list(result)
            stats = result.stats
        nodes = stats.query_plan.plan_nodes if stats else []
        plan = [
            f"PLAN: {n.display_name} {dict(n.metadata) if n.metadata else ''}".rstrip()
            for n in nodes
            if n.display_name != "No query plan"
        ]
        return [sql, *(plan or ["PLAN: <none>"])]

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


__all__ = ["LABEL_SORT_LIMIT", "SpannerQueries", "index_for", "row_columns"]
