"""Which index a Spanner List reads (issue #13): the store's own account of a query
(`SpannerQueries.explain_list`) on both emulators.

Neither emulator reports a query plan (PLAN mode: Google's emulator answers one node,
"No query plan"; handy-spanner no stats at all), so what shows the index is the
FORCE_INDEX hint the SQL carries. Google's emulator checks it (a hint naming an index
that does not exist is an error, asserted here), so an accepted hint names a real index
with the columns the query reads; handy-spanner ignores hints (asserted too). The
tests assert "PLAN: <none>" too: if an emulator starts reporting plans they fail, and
should then assert that the plan reads the index (tests/README.md, "Gaps").
"""

from __future__ import annotations

from typing import Any

import pytest
from google.api_core import exceptions as gexc

from tests.contract.test_label_index import pages, populate
from tracker import filtering
from tracker.listing import parse_order_by
from tracker.stores import spanner_queries
from tracker.stores.base import ListQuery, Store

pytestmark = pytest.mark.parametrize("backend", ["spanner-handy", "spanner-google"])


def explain(store: Store, text: str, order_by: str = "") -> list[str]:
    query = ListQuery(
        filter=filtering.parse(text) if text else None, order=parse_order_by(order_by)
    )
    lines: list[str] = store.explain_list(query)  # type: ignore[attr-defined]
    return lines


def reference(store: Store, text: str, order_by: str) -> list[str]:
    """Every operation matching `text`, in the order, from an unfiltered read."""
    query = ListQuery(page_size=1000, order=parse_order_by(order_by))
    expr = filtering.parse(text) if text else None
    return [
        s.state.name
        for s in store.list_operations(query)
        if filtering.matches(expr, filtering.row_of(s.state))
    ]


SHAPES = [
    ("done = false", "", "OperationsByDone"),
    ("done = false", "create_time desc", "OperationsByDoneCreateTimeDesc"),
    ('done = false AND operation_type = "x"', "create_time desc", "OperationsByDoneCreateTimeDesc"),
    ("", "create_time desc", "OperationsByCreateTimeDesc"),
    ("", "create_time", "OperationsByCreateTime"),
    ("", "update_time", "OperationsByUpdateTime"),
    ("", "end_time", "OperationsByEndTime"),
]


@pytest.mark.parametrize(("text", "order_by", "index"), SHAPES)
def test_the_sql_names_the_index_of_its_order(
    store: Store, text: str, order_by: str, index: str
) -> None:
    populate(store)
    sql, *plan = explain(store, text, order_by)
    prefix = store.n.prefix  # type: ignore[attr-defined]
    assert f"@{{FORCE_INDEX={prefix}{index}}}" in sql, sql
    assert plan == ["PLAN: <none>"], plan
    assert pages(store, text, 4, order_by) == reference(store, text, order_by)


@pytest.mark.parametrize(
    ("text", "order_by"),
    [("done = false", "update_time desc"), ("done = true", "create_time desc")],
)
def test_a_shape_without_its_index_gets_no_hint(store: Store, text: str, order_by: str) -> None:
    populate(store)
    sql, *_ = explain(store, text, order_by)
    assert "FORCE_INDEX" not in sql, sql
    assert pages(store, text, 4, order_by) == reference(store, text, order_by)


def test_a_hint_naming_no_index_is_refused_by_google_s_emulator(store: Store, backend: str) -> None:
    """What makes an accepted hint mean something on Google's emulator: it checks the
    name. handy-spanner does not (it answers the query as if unhinted): asserted too."""
    database: Any = store.database  # type: ignore[attr-defined]
    sql = f"SELECT key FROM {store.n('Operations')}@{{FORCE_INDEX=NoSuchIndex}}"  # type: ignore[attr-defined]
    with database.snapshot() as snapshot:
        if backend == "spanner-google":
            with pytest.raises(gexc.GoogleAPICallError, match="NoSuchIndex"):
                list(snapshot.execute_sql(sql))
        else:
            assert list(snapshot.execute_sql(sql)) == []


@pytest.mark.parametrize("order_by", ["create_time desc", "update_time", "name desc"])
def test_a_label_in_another_order_reads_the_label_index_or_the_order(
    store: Store, order_by: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most LABEL_SORT_LIMIT operations with the label: the label index and a sort of
    its rows; more: the order's SQL, each row checked. Both answer as the reference."""
    populate(store)
    text = 'labels.env = "prod" AND done = false'
    lines = explain(store, text, order_by)
    assert lines[0].startswith(f"READ INDEX {store.n('OperationLabelsByValue')}"), lines  # type: ignore[attr-defined]
    assert lines[1] == "READ BY KEY, SORT", lines
    want = reference(store, text, order_by)
    assert want and pages(store, text, 3, order_by) == want
    monkeypatch.setattr(spanner_queries, "LABEL_SORT_LIMIT", 3)
    lines = explain(store, text, order_by)
    assert lines[0].startswith("SELECT"), lines
    assert pages(store, text, 3, order_by) == want
