"""The event history on Spanner (tracker.stores.history): tables of schema version 3.

`OperationEvents` and `HistoryHeads` are interleaved in `Operations` ON DELETE CASCADE:
an operation's history is one key range stored beside its row, and it goes with the row
(DeleteOperation, and the row deletion policy of done operations). Everything is key
reads and mutations, so it runs unchanged on Cloud Spanner and both emulators.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Final

from google.cloud.spanner_v1.database import Database
from google.cloud.spanner_v1.keyset import KeyRange, KeySet

from tracker.stores.history import Entry, floor
from tracker.stores.spanner_keys import read_keys
from tracker.stores.spanner_schema import Names

if TYPE_CHECKING:
    from tracker.stores.spanner import _Layout

COLUMNS: Final = (
    "key",
    "Ordinal",
    "Type",
    "EventId",
    "Source",
    "EventTime",
    "Sequence",
    "Attempt",
    "Outcome",
    "ReceivedAt",
    "Data",
    "Truncated",
)
MAX_INT64: Final = 2**63 - 1


class SpannerHistoryTx:
    """History primitives of a read-write transaction (`history.HistoryTx`)."""

    t: Any
    n: Names
    layout: _Layout

    def history_heads(self, names: Sequence[str]) -> dict[str, int]:
        keys = [[n] for n in names]
        columns = ("key", "LastOrdinal")
        chunked = self.layout.chunked_reads
        rows = read_keys(self.t, self.n("HistoryHeads"), columns, keys, chunked=chunked)
        return {str(r[0]): int(r[1]) for r in rows}

    def add_history(
        self, entries: Sequence[Entry], heads: dict[str, int], trims: dict[str, int]
    ) -> None:
        self.t.insert(
            self.n("OperationEvents"),
            COLUMNS,
            [
                (
                    e.operation,
                    e.ordinal,
                    e.type,
                    e.id,
                    e.source,
                    e.time,
                    e.sequence,
                    e.attempt,
                    e.outcome,
                    e.received,
                    base64.b64encode(e.data),  # the client takes BYTES base64-encoded
                    e.truncated,
                )
                for e in entries
            ],
        )
        self.t.insert_or_update(
            self.n("HistoryHeads"), ("key", "LastOrdinal"), [list(h) for h in heads.items()]
        )
        for name, below in trims.items():
            # Full keys at both ends: handy-spanner cannot take a key prefix as a range.
            older = KeyRange(start_closed=[name, 0], end_open=[name, below])
            self.t.delete(self.n("OperationEvents"), KeySet(ranges=[older]))


class SpannerHistory:
    """The history read of `SpannerStore`: a few key reads in one snapshot."""

    database: Database
    n: Names
    history_limit: int
    explicit_begin: bool

    if TYPE_CHECKING:  # provided by the store class

        def _guard(self, *, writing: bool = False) -> AbstractContextManager[None]: ...

    def read_history(self, name: str, after: int = 0, limit: int = 100) -> tuple[bool, list[Entry]]:
        keys = KeySet(keys=[[name]])
        with self._guard(), self.database.snapshot(multi_use=True) as snapshot:
            if self.explicit_begin:  # handy-spanner returns no id from an inline begin
                snapshot.begin()
            head = list(snapshot.read(self.n("HistoryHeads"), ("LastOrdinal",), keys))
            if not head:  # no entries yet (or none ever): does the operation exist?
                exists = list(snapshot.read(self.n("Operations"), ("key",), keys))
                return bool(exists), []
            start = max(after, floor(int(head[0][0]), self.history_limit))
            span = KeyRange(start_open=[name, start], end_closed=[name, MAX_INT64])
            rows = list(
                snapshot.read(
                    self.n("OperationEvents"), COLUMNS, KeySet(ranges=[span]), limit=limit
                )
            )
        return True, [_entry(r) for r in rows]


def _entry(r: Sequence[Any]) -> Entry:
    return Entry(
        operation=str(r[0]),
        ordinal=int(r[1]),
        type=str(r[2]),
        id=str(r[3]),
        source=str(r[4]),
        time=r[5],
        sequence=None if r[6] is None else int(r[6]),
        attempt=int(r[7]),
        outcome=str(r[8]),
        received=r[9],
        data=base64.b64decode(r[10]),  # and returns it base64-encoded
        truncated=bool(r[11]),
    )


__all__ = ["SpannerHistory", "SpannerHistoryTx"]
