"""List filters, order_by, keyset pages and counts (issue #12 item 3) on every store.

Each backend's answer is compared with the reference: `filtering.matches` on every
operation, sorted in Python. The stores push part of a filter into their SQL (which
part differs between SQLite, Spanner and the emulator schema variant); the answers must
not differ.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.rpc import code_pb2, status_pb2

from tests.contract.listing_kit import everything, reference
from tests.helpers import T0, make_event
from tracker import filtering
from tracker.events import Event, Kind
from tracker.listing import parse_order_by
from tracker.stores.base import ListQuery, SortKey, Store, Stored

N = 18


def _at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def populate(store: Store) -> None:
    """N operations: running at various percents and attempts, succeeded, failed with
    two codes, cancelled; create and end times in an order other than the names'."""
    for i in range(N):
        name = f"operations/q-{i:02d}"
        created = (i * 7) % N  # create order differs from name order
        events: list[Event] = [
            make_event(
                Kind.CREATED,
                name,
                time=_at(created),
                data={"operation_type": "ab"[i % 2], "labels": {"env": "prod" if i % 3 else "dev"}},
            ),
            make_event(Kind.PROGRESS, name, seq=1, time=_at(100 + i), data={"percent": i * 5}),
        ]
        if i % 4 == 1:
            events.append(
                dataclasses.replace(
                    make_event(Kind.PROGRESS, name, seq=1, time=_at(150 + i), data={"percent": 1}),
                    attempt=2 + i % 3,
                )
            )
        end = _at(1000 - i * 11)
        kind = i % 6
        if kind == 0:
            events.append(make_event(Kind.SUCCEEDED, name, seq=9, time=end))
        elif kind in (2, 3):
            code = code_pb2.NOT_FOUND if kind == 2 else code_pb2.INTERNAL
            error = status_pb2.Status(code=code, message="no")
            events.append(make_event(Kind.FAILED, name, seq=9, time=end, data={"error": error}))
        elif kind == 4:
            events.append(make_event(Kind.CANCELLED, name, seq=9, time=end))
        store.apply(events)


FILTERS = [
    'result = "succeeded"',
    "result = failed",
    'state = "cancelled"',
    'result != "running"',
    "result = running AND percent >= 40",
    "NOT result = running",
    "error.code = 5",
    'error.code = "INTERNAL"',
    "error.code > 0 AND error.code != CANCELLED",
    "error.code = 0",
    'end_time > "2026-01-01T00:15:00Z"',
    'end_time <= "2026-01-01T00:15:00Z" OR done = false',
    'NOT end_time > "2026-01-01T00:15:00Z"',
    "percent >= 50",
    "percent < 20 AND -result = succeeded",
    "attempt > 1",
    "attempt = 1 AND labels.env = prod",
    'attempt >= 2 OR operation_type = "a"',
    '(result = failed OR result = cancelled) AND labels.env != "dev"',
    'create_time > "2026-01-01T00:00:08Z" AND percent > 10',
    "done = true AND NOT (result = succeeded OR error.code = 5)",
]


@pytest.mark.parametrize("text", FILTERS)
def test_filters_agree_with_the_reference(store: Store, text: str) -> None:
    populate(store)
    want = reference(store, text)
    expr = filtering.parse(text)
    got = [s.state.name for s in store.list_operations(ListQuery(filter=expr, page_size=100))]
    assert got == want, text
    assert store.count_operations(expr) == (len(want), False)


def test_the_fixture_covers_every_new_field(store: Store) -> None:
    """The filters above are not vacuous: each field splits the operations."""
    populate(store)
    for text in (
        "result = succeeded",
        "result = failed",
        "result = cancelled",
        "error.code = 5",
        "attempt > 1",
        "percent >= 50",
        'end_time > "2026-01-01T00:15:00Z"',
    ):
        assert 0 < len(reference(store, text)) < N, text


def _key(stored: Stored, field: str) -> Any:
    state = stored.state
    if field == "create_time":
        return state.create_time.ToDatetime(UTC)
    if field == "end_time":
        return state.end_time.ToDatetime(UTC) if state.done else None
    return state.name


def _sorted(rows: list[Stored], order_by: str) -> list[str]:
    """Python's sort of the order (NULL first ascending, last descending; name last in
    the direction of the last key)."""
    keys = list(parse_order_by(order_by)) or [SortKey("name")]
    if keys[-1].field != "name":
        keys.append(SortKey("name", keys[-1].desc))
    out = list(rows)
    for key in reversed(keys):

        def k(s: Stored, field: str = key.field) -> tuple[int, Any]:
            v = _key(s, field)
            return (0, datetime.min.replace(tzinfo=UTC)) if v is None else (1, v)

        out.sort(key=k, reverse=key.desc)
    return [s.state.name for s in out]


def pages(store: Store, order_by: str, text: str = "", size: int = 4) -> list[str]:
    order = parse_order_by(order_by)
    expr = filtering.parse(text)
    names: list[str] = []
    query = ListQuery(filter=expr, page_size=size, order=order)
    while True:
        rows = store.list_operations(query)
        names += [r.state.name for r in rows[:size]]
        if len(rows) <= size:
            return names
        last = rows[size - 1]
        query = dataclasses.replace(query, after=last.state.name, position=last.sort)


@pytest.mark.parametrize(
    "order_by",
    [
        "create_time",
        "create_time desc",
        "end_time",
        "end_time desc",
        "name desc",
        "end_time desc, create_time",
        "end_time, name desc",
        "create_time desc, name",
    ],
)
def test_order_by_pages_agree_with_a_python_sort(store: Store, order_by: str) -> None:
    populate(store)
    assert pages(store, order_by) == _sorted(everything(store), order_by)
    # With a filter the store cannot say fully in SQL everywhere (a label, a prefix).
    text = 'labels.env = "prod" AND name = "operations/q-1*"'
    expr = filtering.parse(text)
    want = [
        n
        for n in _sorted(everything(store), order_by)
        if filtering.matches(
            expr, filtering.row_of(next(s.state for s in everything(store) if s.state.name == n))
        )
    ]
    assert want and pages(store, order_by, text, size=2) == want


def test_order_by_update_time_follows_the_writes(store: Store) -> None:
    """update_time is the store's time of the last write: touching an operation again
    moves it to the end; pages follow it."""
    for i in range(6):
        store.apply([make_event(Kind.CREATED, f"operations/u-{i}", time=_at(i))])
    for i in (3, 0):
        store.apply([make_event(Kind.PROGRESS, f"operations/u-{i}", seq=1, data={"percent": 5})])
    want = [f"operations/u-{i}" for i in (1, 2, 4, 5, 3, 0)]
    assert pages(store, "update_time", size=2) == want
    assert pages(store, "update_time desc", size=4) == want[::-1]


def test_a_count_beyond_what_sql_says_is_checked_row_by_row(store: Store) -> None:
    populate(store)
    for text in ('labels.env = "dev"', 'name = "operations/q-0*" AND result = failed', ""):
        assert store.count_operations(filtering.parse(text)) == (len(reference(store, text)), False)


def test_rows_written_before_the_query_columns_still_answer(tmp_path: Any) -> None:
    """Rows an older tracker wrote have NULL in the columns of schema version 6 (the
    migration adds them; it cannot read the state blobs to fill them). Filters on those
    fields still find them: a NULL reads as "maybe", and the row is checked."""
    import sqlite3

    from tracker.stores.sqlite import SqliteStore

    path = tmp_path / "t.db"
    store = SqliteStore(path)
    populate(store)
    store.close()
    with sqlite3.connect(path) as conn:  # as the migration leaves an older row
        conn.execute(
            "UPDATE operations SET result = NULL, error_code = NULL, percent = NULL, attempt = NULL"
        )
    store = SqliteStore(path)
    for text in ("result = failed", "attempt > 1", "NOT percent < 50", "error.code = NOT_FOUND"):
        want = reference(store, text)
        expr = filtering.parse(text)
        got = [s.state.name for s in store.list_operations(ListQuery(filter=expr))]
        assert want and got == want, text
        assert store.count_operations(expr) == (len(want), False)
    store.close()
