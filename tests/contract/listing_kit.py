"""What List contract tests compare a store's answers with: the Python filter applied
to every row."""

from __future__ import annotations

from tracker import filtering
from tracker.stores.base import ListQuery, Store, Stored


def everything(store: Store) -> list[Stored]:
    return store.list_operations(ListQuery(page_size=1000))


def reference(store: Store, text: str) -> list[str]:
    """Names of the rows the Python filter keeps, in name order."""
    expr = filtering.parse(text)
    return [
        s.state.name
        for s in everything(store)
        if filtering.matches(expr, filtering.row_of(s.state))
    ]
