"""List and count in any order, for every SQL backend: what goes into the query, once.

A store reads rows in the requested order from an index, with as much of the filter as
its SQL can say (`pushdown`), and checks every row it reads with `filtering.matches` on
the row's state: the Python check is the judge, so every backend gives the same answer
whatever its SQL can express. The pushed-down part is a *superset* of the filter: the
filter in negation normal form, with every comparison the store cannot say exactly
replaced by TRUE (a NULL in a column added by a later schema version reads as "maybe").
When nothing was replaced (`Pushdown.exact`), a count is one `COUNT(*)`. A label
condition is said on the side table of labels (`Dialect.label_in`, `tracker.stores.labels`),
and `label_driver` finds the shape whose label index can drive a page by name.

Paging is by keyset: the position of the last row (its sort values and name) and the
predicate "after it in this order" (`after_position`). NULL (the end time of a running
operation) sorts first ascending and last descending, as both SQLite and Spanner sort it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from tracker import filtering
from tracker.stores.base import ListQuery, SortKey, Stored
from tracker.stores.labels import prefix_end

# Rows a count reads at most when the filter needs the Python check (`totalSize` is then
# a lower bound and says so).
COUNT_SCAN_LIMIT: Final = 100_000
# Rows read per query while scanning for a page.
CHUNK: Final = 200


@dataclass(frozen=True)
class Dialect:
    """How a store spells columns and values. A column of None cannot be pushed down."""

    columns: dict[str, str | None]  # filter/sort field -> column
    placeholder: Callable[[str], str]  # param name -> ":p0" / "@p0"
    time_value: Callable[[datetime], Any]
    prefix: Callable[[str, str], str] | None = None  # column, placeholder -> bool SQL
    # The side table of labels (`tracker.stores.labels`): a condition on its columns
    # `key` and `value` -> "the row has a label row so" (None: labels are not said).
    label_in: Callable[[str], str] | None = None
    true: Any = True
    false: Any = False
    # Fields whose column may be NULL for rows older than the column (schema 0006/0005).
    late_columns: frozenset[str] = frozenset({"result", "error.code", "percent", "attempt"})


@dataclass
class Pushdown:
    where: str  # SQL boolean expression ("TRUE" for everything)
    params: dict[str, Any] = field(default_factory=dict)
    exact: bool = True


class _Builder:
    def __init__(self, dialect: Dialect, params: dict[str, Any]) -> None:
        self.d = dialect
        self.params = params
        self.exact = True

    def add(self, value: Any) -> str:
        name = f"q{len(self.params)}"
        self.params[name] = value
        return self.d.placeholder(name)

    def relax(self) -> None:
        self.exact = False

    def walk(self, e: filtering.Expr, negated: bool) -> str | None:
        """SQL for `e` (or NOT e), None for TRUE (nothing said)."""
        if isinstance(e, filtering.Not):
            return self.walk(e.expr, not negated)
        if isinstance(e, filtering.BoolOp):
            is_and = (e.op == "AND") != negated  # De Morgan
            parts = [self.walk(x, negated) for x in e.exprs]
            if is_and:
                said = [p for p in parts if p is not None]
                return "(" + " AND ".join(said) + ")" if said else None
            if any(p is None for p in parts):
                return None
            return "(" + " OR ".join(p for p in parts if p is not None) + ")"
        sql = self.leaf(e)
        if sql is None:
            self.relax()
            return None
        column = self.d.columns.get(_field_key(e.field))
        late = _field_key(e.field) in self.d.late_columns
        if late:
            self.relax()
        term = f"NOT ({sql})" if negated else sql
        return f"({column} IS NULL OR {term})" if late else term

    def leaf(self, e: filtering.Cmp) -> str | None:
        """Exact two-valued SQL for one comparison on a non-NULL column, or None."""
        key = _field_key(e.field)
        column = self.d.columns.get(key)
        if e.field.startswith("labels"):
            return self.label(e)
        if column is None:
            return None
        if key == "done":
            # A literal, not a parameter: SQLite uses a partial index (WHERE done = 0) only
            # for a query that says so in its text.
            flag = self.d.true if e.value else self.d.false
            return f"{column} {'=' if e.op == '=' else '!='} {flag}"
        if key in filtering.STRING_FIELDS:
            text = str(e.value)
            if text.endswith("*"):
                if self.d.prefix is None:
                    return None
                hit = self.d.prefix(column, self.add(text[:-1]))
            else:
                hit = f"{column} = {self.add(text)}"
            return hit if e.op == "=" else f"NOT ({hit})"
        op = "<>" if e.op == "!=" else e.op
        value: Any = e.value
        if isinstance(value, datetime):
            value = self.d.time_value(value)
        elif isinstance(value, float) and key != "percent":
            value = int(value)
        # Two-valued without COALESCE (handy-spanner has none): NULL is false here.
        return f"({column} IS NOT NULL AND {column} {op} {self.add(value)})"

    def label(self, e: filtering.Cmp) -> str | None:
        if self.d.label_in is None:
            return None
        if e.field == "labels":
            return self.d.label_in(f"key = {self.add(str(e.value))}")
        key = f"key = {self.add(e.field[len('labels.') :])}"
        if e.value is None:
            return self.d.label_in(key)
        value = str(e.value)
        if value.endswith("*"):
            start = f"value >= {self.add(value[:-1])}"
            end = prefix_end(value[:-1])
            bound = f" AND value < {self.add(end)}" if end is not None else ""
            hit = self.d.label_in(f"{key} AND {start}{bound}")
        else:
            hit = self.d.label_in(f"{key} AND value = {self.add(value)}")
        return hit if e.op == "=" else f"NOT {hit}"


def label_driver(
    expr: filtering.Expr | None,
) -> tuple[tuple[str, str], filtering.Expr | None] | None:
    """((key, value), the rest of the filter) when the filter is `labels.key = "value"`
    (exact, no wildcard) AND the rest: the label index then yields the candidate rows in
    name order, and only the rest needs saying of them. None for any other shape."""
    parts: tuple[filtering.Expr, ...]
    if isinstance(expr, filtering.Cmp):
        parts = (expr,)
    elif isinstance(expr, filtering.BoolOp) and expr.op == "AND":
        parts = expr.exprs
    else:
        return None
    for i, part in enumerate(parts):
        if (
            isinstance(part, filtering.Cmp)
            and part.field.startswith("labels.")
            and part.op == "="
            and isinstance(part.value, str)
            and not part.value.endswith("*")
        ):
            rest = parts[:i] + parts[i + 1 :]
            remaining: filtering.Expr | None = (
                None if not rest else rest[0] if len(rest) == 1 else filtering.BoolOp("AND", rest)
            )
            return (part.field[len("labels.") :], part.value), remaining
    return None


def by_name(order: Sequence[SortKey]) -> bool:
    """Whether the order is the name's alone (either direction)."""
    return all(k.field == "name" for k in order)


def _field_key(field_name: str) -> str:
    return "labels" if field_name.startswith("labels") else field_name


def pushdown(expr: filtering.Expr | None, dialect: Dialect, params: dict[str, Any]) -> Pushdown:
    """The superset of `expr` the store's SQL can say (see the module docstring)."""
    if expr is None:
        return Pushdown("TRUE", params, True)
    builder = _Builder(dialect, params)
    sql = builder.walk(expr, False)
    return Pushdown(sql or "TRUE", params, builder.exact)


def order_sql(order: Sequence[SortKey], dialect: Dialect) -> str:
    return ", ".join(
        f"{dialect.columns[k.field]} {'DESC' if k.desc else 'ASC'}" for k in full_order(order)
    )


def full_order(order: Sequence[SortKey]) -> tuple[SortKey, ...]:
    """The order with the name as its final key (in the last key's direction)."""
    keys = tuple(order)
    if keys and keys[-1].field == "name":
        return keys
    return (*keys, SortKey("name", keys[-1].desc if keys else False))


def after_position(
    order: Sequence[SortKey],
    values: Sequence[Any],
    dialect: Dialect,
    params: dict[str, Any],
) -> str:
    """SQL for "after the row at `values`" (one per key of `full_order(order)`)."""
    keys = full_order(order)
    assert len(keys) == len(values)
    builder = _Builder(dialect, params)
    ors = []
    for i, key in enumerate(keys):
        terms = [
            _equal(dialect.columns[k.field], v, builder)
            for k, v in zip(keys[:i], values[:i], strict=True)
        ]
        column = dialect.columns[key.field]
        beyond = _beyond(column, key.desc, values[i], builder, nullable=key.field != "name")
        if beyond is None:
            continue
        ors.append("(" + " AND ".join([*terms, beyond]) + ")")
    return "(" + " OR ".join(ors) + ")" if ors else "FALSE"


def _equal(column: str | None, value: Any, builder: _Builder) -> str:
    return f"{column} IS NULL" if value is None else f"{column} = {builder.add(value)}"


def _beyond(
    column: str | None, desc: bool, value: Any, builder: _Builder, *, nullable: bool = True
) -> str | None:
    """Rows strictly after `value` in this key's direction (NULL is the smallest). A
    column that is never NULL (the name) gets a plain range, which an index reads."""
    if value is None:
        return None if desc else f"{column} IS NOT NULL"
    placeholder = builder.add(value)
    if desc and nullable:
        return f"({column} < {placeholder} OR {column} IS NULL)"
    return f"{column} {'<' if desc else '>'} {placeholder}"


def start_values(query: ListQuery) -> list[Any] | None:
    """The position a query continues after (None: from the start)."""
    if not query.after:
        return None
    return [*query.position, query.after]


def scan(
    query: ListQuery,
    fetch: Callable[[list[Any] | None, int], list[Stored]],
    position_of: Callable[[Stored], list[Any]],
    start: list[Any] | None = None,
) -> list[Stored]:
    """Up to page_size + 1 matching rows: chunks in order, each row checked in Python.

    `fetch(position, limit)` reads up to `limit` rows after `position` (None: from the
    start) in the query's order with the pushed-down filter; `position_of` is a row's
    sort values and name, as `fetch` takes them; `start` the query's own position in
    that form (default: as the query holds it).
    """
    want = query.page_size + 1
    out: list[Stored] = []
    position = start if start is not None else start_values(query)
    chunk = max(want, CHUNK)
    while len(out) < want:
        rows = fetch(position, chunk)
        for row in rows:
            if filtering.matches(query.filter, filtering.row_of(row.state)):
                out.append(row)
                if len(out) == want:
                    break
        if len(rows) < chunk:
            break
        position = position_of(rows[-1])
    return out


def count_scan(
    expr: filtering.Expr | None,
    select: Callable[[ListQuery, list[Any] | None, int], list[Stored]],
    limit: int = COUNT_SCAN_LIMIT,
) -> tuple[int, bool]:
    """(matching rows, whether the scan stopped at `limit` rows read).

    `select(query, position, size)` is the store's ordered read by name after
    `position` (None: from the start), with what its SQL can say of the filter."""
    seen = matched = 0
    query = ListQuery(filter=expr, page_size=CHUNK)
    position: list[Any] | None = None
    while True:
        rows = select(query, position, CHUNK)
        for row in rows:
            if seen == limit:
                return matched, True
            seen += 1
            if filtering.matches(expr, filtering.row_of(row.state)):
                matched += 1
        if len(rows) < CHUNK:
            return matched, False
        position = [rows[-1].state.name]


__all__ = [
    "COUNT_SCAN_LIMIT",
    "Dialect",
    "Pushdown",
    "after_position",
    "by_name",
    "count_scan",
    "full_order",
    "label_driver",
    "order_sql",
    "pushdown",
    "scan",
]
