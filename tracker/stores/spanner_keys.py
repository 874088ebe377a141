"""Reads by key on Spanner, within what each server takes in one request.

handy-spanner runs each request as an SQLite statement: a read binds one variable per
key column (SQLite takes at most 999 in a statement) and a query passes each element of
an `UNNEST` array to SQLite's JSON_ARRAY as an argument of its own (at most 127). Past
either limit the request fails, so a large batch would fail as unavailable and be
retried forever. On the canonical schema (Google's emulator, Cloud Spanner) one request
takes them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from google.cloud.spanner_v1.keyset import KeySet

# Key columns one chunked read binds at most.
KEY_VARIABLES: Final = 900
# Array elements one chunked query takes at most.
UNNEST_CHUNK: Final = 100


def read_keys(
    reader: Any,
    table: str,
    columns: Sequence[str],
    keys: Sequence[Sequence[Any]],
    *,
    chunked: bool,
) -> list[Any]:
    """The rows of `table` at `keys` (a transaction's or a snapshot's `read`); in chunks
    of at most KEY_VARIABLES key columns when `chunked`."""
    if not keys:
        return []
    step = max(1, KEY_VARIABLES // len(keys[0])) if chunked else len(keys)
    rows: list[Any] = []
    for i in range(0, len(keys), step):
        part = KeySet(keys=[list(k) for k in keys[i : i + step]])
        rows.extend(reader.read(table, tuple(columns), part))
    return rows


__all__ = ["KEY_VARIABLES", "UNNEST_CHUNK", "read_keys"]
