"""Labels in an index (issue #13): the side tables `operation_labels` (SQLite, schema 7)
and `OperationLabels` (Spanner, schema 6), written beside the operation's row.

A row's labels change only with a newer `created` event (`tracker.apply`), so almost
every save leaves them as they were. `save` hands the new labels over with what the
row held when loaded (SQLite: its labels column; Spanner: `LabelsMemo.remember`, from
`Tx.load`), and nothing at all is written (no statement, no mutation) unless they
differ. A row saved without having been loaded in the transaction (a store's own copy
tool) has its label rows replaced whole: correct, only slower.

The list queries (`tracker.stores.query`) read these tables for a label condition; the
Python check of every row read stays the judge (`filtering.matches`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from tracker.apply import OperationState

# The last code point, and the first and last surrogate (not encodable: skipped).
_MAX = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


class LabelsMemo:
    """Mixin of the Spanner store's `Tx`: the labels of the rows loaded in this
    transaction (SQLite compares the labels column it already loads)."""

    _label_memo: dict[str, dict[str, str]] | None = None

    def remember(self, states: Mapping[str, OperationState]) -> None:
        """Call from `Tx.load` with what it read (copies: the states change later)."""
        if self._label_memo is None:
            self._label_memo = {}
        for name, state in states.items():
            self._label_memo[name] = dict(state.labels)

    def loaded_labels(self, name: str, *, insert: bool) -> Mapping[str, str] | None:
        """The labels the row has in the side table now: none for a new row, what was
        loaded for an existing one, None if unknown (not loaded in this transaction)."""
        if insert:
            return {}
        return None if self._label_memo is None else self._label_memo.get(name)

    def now_labels(self, name: str, labels: Mapping[str, str]) -> None:
        """After a write: a second save of the row in this transaction compares with these."""
        if self._label_memo is None:
            self._label_memo = {}
        self._label_memo[name] = dict(labels)


def write_sqlite(
    conn: sqlite3.Connection,
    name: str,
    labels: Mapping[str, str],
    before: Mapping[str, str] | None,
) -> None:
    """Bring `operation_labels` to `labels` for `name`, from `before` (what it holds
    now; None: unknown, replaced whole); no statement when unchanged. The SQLite store
    knows `before` from the labels column it loaded, so it needs no memo of its own."""
    if before is not None and before == labels:
        return
    if before is None:
        conn.execute("DELETE FROM operation_labels WHERE name = ?", (name,))
        gone: list[str] = []
        new = dict(labels)
    else:
        gone = [k for k, v in before.items() if labels.get(k) != v]
        new = {k: v for k, v in labels.items() if before.get(k) != v}
    if gone:
        conn.executemany(
            "DELETE FROM operation_labels WHERE name = ? AND key = ?", [(name, k) for k in gone]
        )
    if new:
        conn.executemany(
            "INSERT INTO operation_labels (key, value, name) VALUES (?, ?, ?)",
            [(k, v, name) for k, v in new.items()],
        )


def write_spanner(
    tx: LabelsMemo,
    transaction: Any,
    table: str,
    name: str,
    labels: Mapping[str, str],
    *,
    insert: bool,
) -> None:
    """Bring the `OperationLabels` rows of `name` to `labels` by mutations (after the
    Operations row's own: an interleaved row needs its parent); none when unchanged."""
    before = tx.loaded_labels(name, insert=insert)
    if before is not None and before == labels:
        return
    if before is None:
        # Unknown: the keys it may have are read by a query (handy-spanner reads no
        # key prefix as a range).
        rows = transaction.execute_sql(
            f"SELECT LabelKey FROM {table} WHERE key = @name",
            params={"name": name},
            param_types={"name": _string()},
        )
        before = {str(r[0]): "\0" for r in rows}
    gone = [k for k in before if k not in labels]
    new = [(name, k, v) for k, v in labels.items() if before.get(k) != v]
    if gone:
        # Imported here, not at the top: the SQLite store imports this module too, and
        # the Spanner client library costs ~0.5 s to import.
        from google.cloud.spanner_v1.keyset import KeySet

        transaction.delete(table, KeySet(keys=[[name, k] for k in gone]))
    if new:
        transaction.insert_or_update(table, ("key", "LabelKey", "Value"), new)
    tx.now_labels(name, labels)


def _string() -> Any:
    from google.cloud import spanner

    return spanner.param_types.STRING


def prefix_end(prefix: str) -> str | None:
    """The least string greater than every string that starts with `prefix` (code point
    order, which is UTF-8 byte order), or None when there is none: `value >= prefix AND
    value < prefix_end(prefix)` is exactly "starts with prefix", and reads an index range."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop()) + 1
        if last in _SURROGATES:
            last = _SURROGATES.stop
        if last <= _MAX:
            return "".join(chars) + chr(last)
    return None


def backfill_spanner(database: Any, names: Any, batch: int = 500) -> int:
    """The OperationLabels rows of every operation written before schema version 6, from
    its Labels column (`tracker schema apply` runs it once, after that version's DDL).
    Idempotent (insert_or_update), in transactions of `batch` operations; returns the rows
    written."""
    import json

    from google.cloud.spanner_v1.keyset import KeySet

    table, labels_table = names("Operations"), names("OperationLabels")
    with database.snapshot() as snapshot:
        found = [
            (str(r[0]), r[1]) for r in snapshot.read(table, ("key", "Labels"), KeySet(all_=True))
        ]
    rows: list[tuple[str, str, str]] = []
    for key, value in found:
        if value is None:
            continue
        parsed = json.loads(value) if isinstance(value, str) else dict(value)
        rows.extend((key, str(k), str(v)) for k, v in parsed.items())
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]

        def work(transaction: Any, chunk: list[tuple[str, str, str]] = chunk) -> None:
            transaction.insert_or_update(labels_table, ("key", "LabelKey", "Value"), chunk)

        database.run_in_transaction(work)
    return len(rows)


__all__ = ["LabelsMemo", "backfill_spanner", "prefix_end", "write_spanner", "write_sqlite"]
