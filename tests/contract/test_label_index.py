"""Labels in an index (issue #13): the side table every store keeps beside its rows
(`tracker.stores.labels`), what List reads for a label condition.

The answers are compared with the reference (`filtering.matches` on every operation):
a label row missing from the side table would hide an operation from the answer (the
store's SQL or index read decides which rows are read at all), so these tests fail when
a write, a label change or a delete leaves the side table wrong.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.contract.listing_kit import reference
from tests.helpers import T0, make_event
from tracker import filtering
from tracker.events import Event, Kind
from tracker.listing import parse_order_by
from tracker.stores.base import ListQuery, Store

N = 30


def _env(i: int) -> str:
    return ("prod", "dev", "staging")[i % 3]


def populate(store: Store, n: int = N) -> None:
    events: list[Event] = []
    for i in range(n):
        name = f"operations/l-{i:02d}"
        labels = {"env": _env(i)}
        if i % 4 == 0:
            labels["team"] = f"t{i % 8}"
        events.append(
            make_event(
                Kind.CREATED,
                name,
                time=T0 + timedelta(seconds=(i * 7) % n),
                data={"operation_type": "x", "labels": labels},
            )
        )
        if i % 5 == 0:
            events.append(make_event(Kind.SUCCEEDED, name, seq=9))
    store.apply(events)


def pages(store: Store, text: str, size: int, order_by: str = "") -> list[str]:
    """Every page of the query, continued by keyset as a page token carries it."""
    query = ListQuery(filter=filtering.parse(text), page_size=size, order=parse_order_by(order_by))
    names: list[str] = []
    while True:
        rows = store.list_operations(query)
        names += [r.state.name for r in rows[:size]]
        if len(rows) <= size:
            return names
        last = rows[size - 1]
        query = dataclasses.replace(query, after=last.state.name, position=last.sort)


LABEL_FILTERS = [
    'labels.env = "prod"',
    'labels.env = "prod" AND done = false',
    'done = false AND labels.env = "dev" AND labels.team = "t4"',
    'labels.env = "pr*"',
    'labels.team = "*"',
    "labels.team:*",
    "labels:team",
    'labels.env != "dev"',
    'NOT labels.env = "staging"',
    'labels.env = "dev" OR labels.team = "t0"',
    'labels.missing = "x"',
    'labels.env = "prod" AND name = "operations/l-1*"',
]


@pytest.mark.parametrize("text", LABEL_FILTERS)
def test_label_filters_page_as_the_reference(store: Store, text: str) -> None:
    populate(store)
    want = reference(store, text)
    assert pages(store, text, size=4) == want, text
    assert store.count_operations(filtering.parse(text))[0] == len(want)


def test_the_label_filters_are_not_vacuous(store: Store) -> None:
    populate(store)
    for text in LABEL_FILTERS[:-2]:
        assert 0 < len(reference(store, text)) < N, text


@pytest.mark.parametrize("order_by", ["create_time", "create_time desc", "name desc"])
def test_label_filters_in_another_order(store: Store, order_by: str) -> None:
    populate(store)
    text = 'labels.env = "prod"'
    expr = filtering.parse(text)
    want = [
        s.state.name
        for s in store.list_operations(ListQuery(page_size=1000, order=parse_order_by(order_by)))
        if filtering.matches(expr, filtering.row_of(s.state))
    ]
    assert len(want) == N // 3
    assert pages(store, text, size=3, order_by=order_by) == want


def test_a_newer_created_event_moves_the_operation_between_label_values(store: Store) -> None:
    name = "operations/moves"
    store.apply([make_event(Kind.CREATED, name, seq=1, data={"labels": {"env": "dev"}})])
    store.apply([make_event(Kind.PROGRESS, name, seq=2, data={"percent": 10})])
    assert pages(store, 'labels.env = "dev"', 5) == [name]
    store.apply(
        [make_event(Kind.CREATED, name, seq=3, data={"labels": {"env": "prod", "tier": "1"}})]
    )
    assert pages(store, 'labels.env = "prod"', 5) == [name]
    assert pages(store, 'labels.tier = "1"', 5) == [name]
    assert pages(store, 'labels.env = "dev"', 5) == []
    store.apply([make_event(Kind.CREATED, name, seq=4, data={"labels": {}})])
    assert pages(store, "labels.env:*", 5) == []
    assert pages(store, 'labels.tier = "1"', 5) == []


def test_an_older_created_event_changes_no_label(store: Store) -> None:
    name = "operations/stays"
    store.apply([make_event(Kind.CREATED, name, seq=5, data={"labels": {"env": "prod"}})])
    store.apply([make_event(Kind.CREATED, name, seq=1, data={"labels": {"env": "dev"}})])
    assert pages(store, 'labels.env = "prod"', 5) == [name]
    assert pages(store, 'labels.env = "dev"', 5) == []


def test_a_deleted_operation_leaves_no_label_row(store: Store) -> None:
    populate(store)
    gone = [f"operations/l-{i:02d}" for i in (0, 3, 6)]
    for name in gone:
        assert store.delete(name)
    want = [n for n in reference(store, 'labels.env = "prod"') if n not in gone]
    assert pages(store, 'labels.env = "prod"', 4) == want
    assert label_rows(store, gone) == []
    assert label_rows(store, ["operations/l-01"]) == [("env", "dev")]


def test_one_transaction_writes_a_label_change_and_later_events(store: Store) -> None:
    """A batch that changes the labels and then the row again: one label write, the
    last state's labels (a second save compares with the first one's)."""
    name = "operations/batch"
    store.apply(
        [
            make_event(Kind.CREATED, name, seq=1, data={"labels": {"env": "dev"}}),
            make_event(Kind.CREATED, name, seq=2, data={"labels": {"env": "prod"}}),
            make_event(Kind.PROGRESS, name, seq=3, data={"percent": 5}),
        ]
    )
    assert label_rows(store, [name]) == [("env", "prod")]


def label_rows(store: Store, names: list[str]) -> list[tuple[str, str]]:
    """The side table's (key, value) rows of these operations, read as stored."""
    from tracker.stores.spanner import SpannerStore
    from tracker.stores.sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        marks = ",".join("?" * len(names))
        with sqlite3.connect(store.path) as conn:
            rows = conn.execute(
                f"SELECT key, value FROM {store.table_prefix}operation_labels"
                f" WHERE name IN ({marks})"
                " ORDER BY name, key",
                names,
            ).fetchall()
        return [(str(k), str(v)) for k, v in rows]
    assert isinstance(store, SpannerStore)
    with store.database.snapshot() as snapshot:
        found = snapshot.execute_sql(
            f"SELECT LabelKey, Value FROM {store.n('OperationLabels')}"
            " WHERE key IN UNNEST(@names) ORDER BY key, LabelKey",
            params={"names": names},
            param_types={"names": _strings()},
        )
        return [(str(k), str(v)) for k, v in found]


def _strings() -> Any:
    from google.cloud import spanner

    return spanner.param_types.Array(spanner.param_types.STRING)


# ---- SQLite only: retention, unchanged labels, the migration, the query plans ---------


def test_retention_removes_the_label_rows(tmp_path: Path) -> None:
    from tracker.stores.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "t.db", done_ttl=timedelta(days=1))
    populate(store)
    done = [f"operations/l-{i:02d}" for i in range(0, N, 5)]
    assert label_rows(store, done)
    assert store.purge_expired(T0 + timedelta(days=400)) == len(done)
    assert label_rows(store, done) == []
    assert pages(store, 'labels.env = "prod"', 4) == reference(store, 'labels.env = "prod"')
    store.close()


def test_events_that_keep_the_labels_write_no_label_row(tmp_path: Path) -> None:
    """The hot path: progress, heartbeats and the end leave the labels as they were, and
    the side table sees no statement (a trigger counts every insert and delete)."""
    from tracker.stores.sqlite import SqliteStore

    path = tmp_path / "t.db"
    store = SqliteStore(path)
    populate(store)
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE label_writes (n INTEGER);"
            "CREATE TRIGGER li AFTER INSERT ON operation_labels"
            " BEGIN INSERT INTO label_writes VALUES (1); END;"
            "CREATE TRIGGER ld AFTER DELETE ON operation_labels"
            " BEGIN INSERT INTO label_writes VALUES (1); END;"
        )
    names = [f"operations/l-{i:02d}" for i in range(N)]
    store.apply([make_event(Kind.PROGRESS, n, seq=1, data={"percent": 50}) for n in names])
    store.apply([make_event(Kind.HEARTBEAT, n, seq=2) for n in names])
    store.apply([make_event(Kind.FAILED, n, seq=3, data={"error": _error()}) for n in names])
    store.cancel(names[1])
    store.apply([make_event(Kind.CREATED, names[1], seq=1, data={"labels": {"env": "dev"}})])
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM label_writes").fetchone() == (0,)
    # ... while a new operation's labels are written (the trigger sees them).
    store.apply([make_event(Kind.CREATED, "operations/new", data={"labels": {"env": "x"}})])
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM label_writes").fetchone()[0] >= 1
    store.close()


def _error() -> Any:
    from google.rpc import status_pb2

    return status_pb2.Status(code=5, message="no")


def test_the_migration_fills_the_label_rows_of_older_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file an older tracker (schema 6) wrote: version 7 copies every row's labels
    from its JSON column, so label filters find them at once."""
    import shutil

    from tests.helpers import ROOT
    from tracker.stores.sqlite import SqliteStore

    older = tmp_path / "schemas"
    shutil.copytree(ROOT / "schemas", older)
    (older / "sqlite" / "0007_labels.sql").unlink()
    monkeypatch.setenv("TRACKER_SCHEMAS_DIR", str(older))
    path = tmp_path / "t.db"
    with sqlite3.connect(path) as conn:
        from tracker.schemas import sqlite_migrations

        for version, sql in sqlite_migrations():
            conn.executescript(sql)
            conn.execute(f"PRAGMA user_version = {version}")
        conn.execute(
            "INSERT INTO operations (name, operation, state, done, labels, create_time,"
            " update_time) VALUES ('operations/old', x'', x'', 0, ?, ?, ?)",
            ('{"env": "prod", "team": "a"}', "2026-01-01T00:00:00.000000Z", "x"),
        )
    monkeypatch.delenv("TRACKER_SCHEMAS_DIR")
    store = SqliteStore(path)
    assert store.schema_version() == 7
    assert label_rows(store, ["operations/old"]) == [("env", "prod"), ("team", "a")]
    store.close()


def _plan(store: Any, text: str, order_by: str = "") -> str:
    query = ListQuery(filter=filtering.parse(text), order=parse_order_by(order_by))
    return "\n".join(store.explain_list(query))


@pytest.mark.parametrize(
    "order_by",
    [
        *("", "name desc", "create_time", "create_time desc", "update_time"),
        *("update_time desc", "end_time", "end_time desc"),
    ],
)
def test_done_false_reads_an_index_in_order(tmp_path: Path, order_by: str) -> None:
    from tracker.stores.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "t.db")
    populate(store)
    plan = _plan(store, "done = false", order_by)
    assert "TEMP B-TREE" not in plan, plan
    index = "operations_done" if "name" in order_by or not order_by else "operations_running_"
    assert f"USING INDEX {index}" in plan or f"USING COVERING INDEX {index}" in plan, plan
    store.close()


@pytest.mark.parametrize(
    "text",
    ['labels.env = "prod"', 'labels.env = "prod" AND done = false AND percent < 50'],
)
@pytest.mark.parametrize("order_by", ["", "name desc"])
def test_a_label_by_name_reads_its_key_range_without_a_sort(
    tmp_path: Path, text: str, order_by: str
) -> None:
    from tracker.stores.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "t.db")
    populate(store)
    plan = _plan(store, text, order_by)
    assert "TEMP B-TREE" not in plan, plan
    assert plan.splitlines()[0].startswith("SEARCH operation_labels USING PRIMARY KEY"), plan
    # ... and continues from a page token by the same range.
    rows = store.list_operations(ListQuery(filter=filtering.parse(text), page_size=2))
    query = ListQuery(
        filter=filtering.parse(text), order=parse_order_by(order_by), after=rows[1].state.name
    )
    plan = "\n".join(store.explain_list(query))
    assert "TEMP B-TREE" not in plan and "(key=? AND value=? AND name" in plan, plan
    store.close()


def test_other_label_shapes_read_the_label_index(tmp_path: Path) -> None:
    from tracker.stores.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "t.db")
    populate(store)
    for text in ('labels.env = "pr*"', "labels.team:*", 'labels.env = "a" OR labels.env = "b"'):
        plan = _plan(store, text)
        assert "operation_labels USING PRIMARY KEY (key=?" in plan, (text, plan)
        assert "json" not in plan
    store.close()


def test_a_label_in_another_order_probes_or_sorts_by_how_many_carry_it(tmp_path: Path) -> None:
    """By create_time: a label more than FEW_LABELLED operations carry is probed per row
    of the order's index (no list, no sort); a rarer one is read from the label index and
    its few rows sorted. Both answer as the reference."""
    from tracker.stores.sqlite import SqliteStore
    from tracker.stores.sqlite_queries import FEW_LABELLED

    store = SqliteStore(tmp_path / "t.db")
    n = FEW_LABELLED + 5
    store.apply(
        [
            make_event(
                Kind.CREATED,
                f"operations/m-{i:05d}",
                time=T0 + timedelta(seconds=(i * 7) % n),
                data={"labels": {"common": "yes"} | ({"rare": "yes"} if i % 100 == 0 else {})},
            )
            for i in range(n)
        ]
    )
    common = _plan(store, 'labels.common = "yes"', "create_time desc")
    assert "TEMP B-TREE" not in common and "USING INDEX operations_create_time" in common, common
    rare = _plan(store, 'labels.rare = "yes"', "create_time desc")
    assert "operation_labels USING PRIMARY KEY (key=? AND value=?)" in rare, rare
    for text in ('labels.common = "yes"', 'labels.rare = "yes"'):
        want = [
            s.state.name
            for s in store.list_operations(
                ListQuery(page_size=2000, order=parse_order_by("create_time desc"))
            )
            if filtering.matches(filtering.parse(text), filtering.row_of(s.state))
        ]
        assert pages(store, text, 7, "create_time desc")[:50] == want[:50]
    store.close()


@pytest.mark.parametrize("backend", ["spanner-handy", "spanner-google"])
def test_schema_apply_fills_the_label_rows_of_older_rows(
    backend: str,
    spanner_hosts: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A database at schema version 5 with an operation whose labels are only in its
    Labels column: `spanner_schema.apply` (what `tracker schema apply` runs) adds version
    6 and writes its OperationLabels rows, so the label index finds it."""
    import base64
    import shutil
    import uuid

    from google.cloud import spanner
    from google.longrunning import operations_pb2

    from tests.conftest import VARIANT, session_database
    from tests.helpers import ROOT
    from tracker.stores import spanner_schema
    from tracker.stores.spanner import SpannerStore, _Layout
    from tracker.v1.operation_pb2 import OperationState

    older = tmp_path / "schemas"
    shutil.copytree(ROOT / "schemas", older)
    for later in sorted((older / "spanner").glob("*.sql"))[5:]:  # version 6 and after
        later.unlink()
    # A database of its own (on the session's server): the tests' shared one is not left
    # with an older schema's tables (handy-spanner then fails a later tenant's DDL).
    path = session_database(backend, spanner_hosts, monkeypatch)
    path = f"{path.rsplit('/', 1)[0]}/lb{uuid.uuid4().hex[:12]}"
    database = spanner_schema.open_database(path)
    assert spanner_schema.create_database(database)
    names = spanner_schema.Names("")
    variant = VARIANT[backend]
    monkeypatch.setenv("TRACKER_SCHEMAS_DIR", str(older))
    assert max(spanner_schema.apply(database, variant, names=names)) == 5  # type: ignore[arg-type]
    layout = _Layout(variant)
    name = "operations/older"
    state = OperationState(name=name, labels={"env": "prod", "team": "a"})
    state.create_time.FromDatetime(T0)
    values: dict[str, Any] = {
        "Operation": layout.operation_value(operations_pb2.Operation(name=name)),
        "State": base64.b64encode(state.SerializeToString()),
        "Done": False,
        "OperationType": "",
        "Parent": "",
        "Labels": layout.json_value(dict(state.labels)),
        "CreateTime": T0,
        "UpdateTime": spanner.COMMIT_TIMESTAMP,
    }
    if layout.writes_key:
        values["key"] = name
    database.run_in_transaction(
        lambda t: t.insert(names("Operations"), tuple(values), [tuple(values.values())])
    )
    monkeypatch.delenv("TRACKER_SCHEMAS_DIR")
    applied = spanner_schema.apply(database, variant, names=names)  # type: ignore[arg-type]
    assert applied == [v for v, _ in spanner_schema.migrations() if v >= 6]
    store = SpannerStore(database, explicit_begin=backend == "spanner-handy")
    try:
        assert label_rows(store, [name]) == [("env", "prod"), ("team", "a")]
        assert pages(store, 'labels.team = "a"', 5) == [name]
    finally:
        store.close()
        database.drop()
