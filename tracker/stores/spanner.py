"""Cloud Spanner store. Same contract as SQLite; state decided by `apply_batch` alone.

Writes are mutations and reads are key reads or simple parameterised queries, so the
store runs unchanged on Cloud Spanner, Google's emulator and handy-spanner. Applying
runs in `Database.run_in_transaction`, which calls the function again after an
`Aborted`: the function only reads and buffers mutations on the transaction, so a retry
repeats nothing outside it. Notifications go through the Outbox table, never from inside.

Only this module (and spanner_schema) catches google.api_core exceptions.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import spanner
from google.cloud.spanner_v1.data_types import JsonObject
from google.cloud.spanner_v1.database import Database
from google.cloud.spanner_v1.keyset import KeyRange, KeySet
from google.longrunning import operations_pb2

from tracker.apply import OperationState, Outcome
from tracker.errors import ConfigError, InvalidEvent, StoreUnavailable, clip
from tracker.notices import Notice
from tracker.stores import spanner_schema
from tracker.stores.base import (
    TOMBSTONE_ID,
    TOMBSTONE_OUTCOME,
    TOMBSTONE_SOURCE,
    DeadLetter,
    Identity,
    OutboxItem,
    RowValues,
    Store,
    Stored,
    Tx,
)
from tracker.stores.labels import LabelsMemo, write_spanner
from tracker.stores.spanner_dead_letters import SpannerDeadLetters
from tracker.stores.spanner_history import SpannerHistory, SpannerHistoryTx
from tracker.stores.spanner_keys import UNNEST_CHUNK, read_keys
from tracker.stores.spanner_queries import SpannerQueries, row_columns
from tracker.stores.spanner_schema import Names

T = TypeVar("T")
log = logging.getLogger(__name__)

OPS_COLUMNS = ("key", "Operation", "State", "Checkpoint")
_TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.ResourceExhausted,
    gexc.Aborted,
    gexc.Unknown,
)
# Errors that mean "this can never apply": the same write fails the same way again.
_REJECTED = (gexc.InvalidArgument, gexc.FailedPrecondition, gexc.OutOfRange)
DEFAULT_DONE_TTL = timedelta(days=30)
# Seconds waited before retrying an aborted transaction the server gave no delay for.
ABORT_RETRY_DELAY = (0.01, 0.1)


def _w(data: bytes | None) -> bytes | None:
    """A BYTES value to write: the Python client takes BYTES base64-encoded."""
    return None if data is None else base64.b64encode(data)


def _r(value: Any) -> bytes:
    """A BYTES value read: the Python client returns it base64-encoded."""
    return base64.b64decode(value)


@dataclass
class _Layout:
    """What differs between the canonical schema and the emulator variant."""

    variant: str

    @property
    def writes_key(self) -> bool:
        return self.variant == "emulator"

    @property
    def late_columns(self) -> bool:
        """Whether the columns later versions add exist (not in the emulator variant)."""
        return self.variant == "canonical"

    @property
    def reads_prefixes(self) -> bool:
        """Whether the server reads a key prefix as a range (not handy-spanner)."""
        return self.variant == "canonical"

    @property
    def chunked_reads(self) -> bool:
        """Whether reads by key go in chunks: handy-spanner's request limits
        (tracker.stores.spanner_keys)."""
        return self.variant == "emulator"

    def operation_value(self, operation: operations_pb2.Operation) -> Any:
        return _w(operation.SerializeToString()) if self.variant == "emulator" else operation

    def operation_read(self, value: Any) -> operations_pb2.Operation:
        if isinstance(value, operations_pb2.Operation):
            return value
        # A PROTO column arrives decoded; a BYTES column base64-encoded.
        raw = _r(value) if self.variant == "emulator" else bytes(value)
        return operations_pb2.Operation.FromString(raw)

    def json_value(self, value: dict[str, str]) -> Any:
        text = json.dumps(value, sort_keys=True)
        return text if self.variant == "emulator" else JsonObject(value)


class _SpannerTx(SpannerHistoryTx, LabelsMemo):
    def __init__(
        self, transaction: Any, layout: _Layout, done_ttl: timedelta, names: Names
    ) -> None:
        self.t = transaction
        self.layout = layout
        self.done_ttl = done_ttl
        self.n = names

    def removed(self, names: Sequence[str]) -> set[str]:
        if self.layout.reads_prefixes:
            # A read of each name's key prefix: Google's emulator scans the whole table
            # for a query (14 ms a new name at 500 operations, growing with the table);
            # a name never seen reads nothing, a removed one its own records.
            ranges = [KeyRange(start_closed=[n], end_closed=[n]) for n in dict.fromkeys(names)]
            found = self.t.read(self.n("AppliedEvents"), ("OperationKey",), KeySet(ranges=ranges))
            return {str(r[0]) for r in found}
        # A query, not a read: handy-spanner cannot read a key prefix as a range. In
        # chunks (tracker.stores.spanner_keys).
        unique = list(dict.fromkeys(names))
        out: set[str] = set()
        for i in range(0, len(unique), UNNEST_CHUNK):
            rows = self.t.execute_sql(
                self.n.sql(
                    "SELECT DISTINCT OperationKey FROM AppliedEvents"
                    " WHERE OperationKey IN UNNEST(@names)"
                ),
                params={"names": unique[i : i + UNNEST_CHUNK]},
                param_types={"names": spanner.param_types.Array(spanner.param_types.STRING)},
            )
            out.update(str(r[0]) for r in rows)
        return out

    def delete(self, name: str) -> bool:
        keys = KeySet(keys=[[name]])
        found = list(self.t.read(self.n("Operations"), ("key",), keys))
        if found:
            self.t.delete(self.n("Operations"), keys)
        return bool(found)

    def tombstone(self, name: str, now: datetime) -> None:
        self.t.insert_or_update(
            self.n("AppliedEvents"),
            ("OperationKey", "Source", "EventId", "Outcome", "AppliedAt"),
            [(name, TOMBSTONE_SOURCE, TOMBSTONE_ID, TOMBSTONE_OUTCOME, spanner.COMMIT_TIMESTAMP)],
        )

    def load(self, names: Sequence[str]) -> dict[str, OperationState]:
        if not names:
            return {}
        keys = [[n] for n in names]
        chunked = self.layout.chunked_reads
        rows = read_keys(self.t, self.n("Operations"), ("key", "State"), keys, chunked=chunked)
        out = {str(r[0]): OperationState.FromString(_r(r[1])) for r in rows}
        self.remember(out)
        return out

    def seen(self, identities: Sequence[Identity], now: datetime) -> set[Identity]:
        keys = [list(i) for i in set(identities)]
        if not keys:
            return set()
        columns = ("OperationKey", "Source", "EventId")
        chunked = self.layout.chunked_reads
        rows = read_keys(self.t, self.n("AppliedEvents"), columns, keys, chunked=chunked)
        return {(str(r[0]), str(r[1]), str(r[2])) for r in rows}

    def save(
        self,
        state: OperationState,
        operation: operations_pb2.Operation,
        checkpoint: bytes | None,
        *,
        insert: bool,
        now: datetime,
    ) -> None:
        row = RowValues.of(state, now, self.done_ttl)
        values: dict[str, Any] = {
            "Operation": self.layout.operation_value(operation),
            "State": _w(state.SerializeToString()),
            "Done": row.done,
            "OperationType": row.operation_type,
            "Parent": row.parent,
            "Labels": self.layout.json_value(row.labels),
            "CreateTime": row.create_time,
            "UpdateTime": spanner.COMMIT_TIMESTAMP,
            "EndTime": row.end_time,
            "DueTime": row.due_time,
            "ExpireTime": row.expire_time,
        }
        if self.layout.late_columns:
            values.update(row_columns(state))
        if insert or checkpoint is not None:
            values["Checkpoint"] = _w(checkpoint)
        if self.layout.writes_key or not insert:
            # key is the primary key: needed to address an update; generated on insert.
            values["key"] = state.name
        write = self.t.insert if insert else self.t.update
        write(self.n("Operations"), tuple(values), [tuple(values.values())])
        write_spanner(self, self.t, self.n("OperationLabels"), row.name, row.labels, insert=insert)

    def record(self, identities: Sequence[tuple[Identity, Outcome]], now: datetime) -> None:
        self.t.insert(
            self.n("AppliedEvents"),
            ("OperationKey", "Source", "EventId", "Outcome", "AppliedAt"),
            [(*ident, outcome.value, spanner.COMMIT_TIMESTAMP) for ident, outcome in identities],
        )

    def add_outbox(self, item: OutboxItem) -> None:
        self.t.insert(
            self.n("Outbox"),
            ("Id", "OperationKey", "Payload", "State", "CreatedAt", "Attempts", "SentAt"),
            [
                (
                    item.id,
                    item.operation.name,
                    _w(item.operation.SerializeToString()),
                    _w(item.notice.SerializeToString()),  # State: the notice envelope
                    item.created_at,
                    0,
                    None,
                )
            ],
        )
        self.t.insert(
            self.n("OutboxDue"),
            ("Id", "NextAttemptAt"),
            [(item.id, item.next_attempt_at or item.created_at)],
        )


class SpannerStore(SpannerHistory, SpannerDeadLetters, SpannerQueries, Store):
    """Store on a Cloud Spanner database whose schema `tracker schema apply` created."""

    def __init__(
        self,
        database: str | Database,
        *,
        strict: bool = False,
        done_ttl: timedelta = DEFAULT_DONE_TTL,
        client: spanner.Client | None = None,
        explicit_begin: bool = False,
        table_prefix: str = "",
    ) -> None:
        """`explicit_begin` sends BeginTransaction before the first read, for servers that
        do not return a transaction id from an inline begin (handy-spanner). Off by default:
        Cloud Spanner begins inline and saves a round trip. `table_prefix` names the
        tenant's own tables in a database several share (`tracker schema apply
        --table-prefix` created them)."""
        self.n = Names(table_prefix)
        self.strict = strict
        # Retries of read-write transactions after an abort, in this process (also
        # counted through `count_retry`).
        self.transaction_retries = 0
        self._retries_lock = threading.Lock()
        self.explicit_begin = explicit_begin
        self.done_ttl = done_ttl
        if isinstance(database, str):
            self.database = spanner_schema.open_database(database, client)
        else:
            self.database = database
        with self._guard():
            versions = spanner_schema.applied_versions(self.database, self.n)
        if not versions:
            raise ConfigError(spanner_schema.missing_schema_message(self.database, self.n))
        self.layout = _Layout(variant=next(iter(versions.values())))

    @contextmanager
    def _guard(self, *, writing: bool = False) -> Iterator[None]:
        """Spanner's errors in the project's words: transient ones as StoreUnavailable
        (retry); in a write, the ones that say it can never succeed as an InvalidEvent
        (`store_rejected`: poison, dead-lettered or answered 400). A read failing that
        way is a bug of ours and stays as it is (INTERNAL, logged)."""
        try:
            yield
        except _TRANSIENT as exc:
            raise StoreUnavailable(f"Spanner unavailable: {clip(exc.message, 300)}") from exc
        except _REJECTED as exc:
            if not writing:
                raise
            raise InvalidEvent(
                "store_rejected", f"Spanner rejected the write: {clip(exc.message, 300)}"
            ) from exc

    def _tx(self, fn: Callable[[Any], T]) -> T:
        attempts = 0

        def work(transaction: Any) -> T:
            nonlocal attempts
            attempts += 1
            if attempts > 1:  # the client calls again after an Aborted: a retry
                with self._retries_lock:
                    self.transaction_retries += 1
                self.count_retry()
            if self.explicit_begin:
                transaction.begin()
            return fn(transaction)

        with self._guard(writing=True):
            # After an abort without the server's RetryInfo (the emulators send none) the
            # client would sleep 2^n + rand() seconds, 2-3 s at the first retry: under
            # contention between instances that stalls every writer. A short jittered wait
            # instead; Cloud Spanner's own RetryInfo delay still wins when it sends one.
            result: T = self.database.run_in_transaction(
                work, default_retry_delay=random.uniform(*ABORT_RETRY_DELAY)
            )
            return result

    def run_in_transaction(self, fn: Callable[[Tx], T]) -> T:
        return self._tx(
            lambda transaction: fn(_SpannerTx(transaction, self.layout, self.done_ttl, self.n))
        )

    # ---- reads -------------------------------------------------------------------------

    def _stored(self, row: Sequence[Any]) -> Stored:
        return Stored(
            OperationState.FromString(_r(row[2])),
            self.layout.operation_read(row[1]),
            _r(row[3]) if row[3] is not None else None,
        )

    def _read(self, keyset: KeySet, limit: int = 0) -> list[Stored]:
        with self._guard(), self.database.snapshot() as snapshot:
            rows = list(snapshot.read(self.n("Operations"), OPS_COLUMNS, keyset, limit=limit))
        return [self._stored(r) for r in rows]

    def due(self, now: datetime, limit: int) -> list[str]:
        with self._guard(), self.database.snapshot() as snapshot:
            rows = snapshot.execute_sql(
                self.n.sql(
                    "SELECT key FROM Operations WHERE DueTime <= @now ORDER BY DueTime LIMIT @limit"
                ),
                params={"now": now, "limit": limit},
                param_types={
                    "now": spanner.param_types.TIMESTAMP,
                    "limit": spanner.param_types.INT64,
                },
            )
            return [str(r[0]) for r in rows]

    def get(self, name: str) -> Stored | None:
        rows = self._read(KeySet(keys=[[name]]))
        return rows[0] if rows else None

    def _read_column(self, name: str, column: str) -> list[Any]:
        with self._guard(), self.database.snapshot() as snapshot:
            return list(snapshot.read(self.n("Operations"), (column,), KeySet(keys=[[name]])))

    def get_operation(self, name: str) -> operations_pb2.Operation | None:
        rows = self._read_column(name, "Operation")
        return self.layout.operation_read(rows[0][0]) if rows else None

    def get_operations(self, names: Sequence[str]) -> dict[str, operations_pb2.Operation]:
        unique = list(dict.fromkeys(names))
        if not unique:
            return {}
        chunked = self.layout.chunked_reads  # then several reads of one snapshot
        with self._guard(), self.database.snapshot(multi_use=chunked) as snapshot:
            keys = [[n] for n in unique]
            rows = read_keys(
                snapshot, self.n("Operations"), ("key", "Operation"), keys, chunked=chunked
            )
        return {str(r[0]): self.layout.operation_read(r[1]) for r in rows}

    def read_checkpoint(self, name: str) -> tuple[bool, bytes | None]:
        rows = self._read_column(name, "Checkpoint")
        if not rows:
            return False, None
        return True, _r(rows[0][0]) if rows[0][0] is not None else None

    # ---- outbox ------------------------------------------------------------------------

    _outbox_backfilled = False

    def _outbox_query(
        self, sql: str, params: dict[str, Any], types: dict[str, Any], *, failed: bool
    ) -> list[OutboxItem]:
        """Rows of (Id, Payload, State, CreatedAt, Attempts, LastError, when) as items;
        `when` is GaveUpAt if `failed`, else NextAttemptAt."""
        with self._guard(), self.database.snapshot() as snapshot:
            rows = list(snapshot.execute_sql(self.n.sql(sql), params=params, param_types=types))
        return [
            OutboxItem(
                id=str(r[0]),
                operation=operations_pb2.Operation.FromString(_r(r[1])),
                notice=Notice.FromString(_r(r[2])),
                created_at=r[3],
                attempts=int(r[4]),
                last_error=str(r[5] or ""),
                next_attempt_at=None if failed else r[6],
                gave_up_at=r[6] if failed else None,
            )
            for r in rows
        ]

    def _backfill_outbox(self) -> None:
        """Give rows a version-1 tracker left pending their OutboxDue row (once per store).

        Schema version 2's data step, which DDL cannot do: the unsent ids come from
        OutboxPending (a covered read of the few unsent rows); those neither scheduled nor
        given up are due at their CreatedAt.
        """
        if self._outbox_backfilled:
            return
        with self._guard(), self.database.snapshot() as snapshot:
            ids = [
                str(r[0])
                for r in snapshot.execute_sql(
                    self.n.sql("SELECT Id FROM Outbox WHERE SentAt IS NULL")
                )
            ]
        for start in range(0, len(ids), 1000):
            keys = KeySet(keys=[[i] for i in ids[start : start + 1000]])

            def work(transaction: Any, keys: KeySet = keys) -> None:
                known = {str(r[0]) for r in transaction.read(self.n("OutboxDue"), ("Id",), keys)}
                known |= {
                    str(r[0])
                    for r in transaction.read(self.n("FailedNotifications"), ("Id",), keys)
                }
                rows = transaction.read(self.n("Outbox"), ("Id", "CreatedAt", "SentAt"), keys)
                legacy = [(r[0], r[1]) for r in rows if r[2] is None and str(r[0]) not in known]
                if legacy:
                    transaction.insert(self.n("OutboxDue"), ("Id", "NextAttemptAt"), legacy)

            self._tx(work)
        self._outbox_backfilled = True

    def outbox_pending(self, limit: int = 100, now: datetime | None = None) -> list[OutboxItem]:
        self._backfill_outbox()
        params: dict[str, Any] = {"limit": limit}
        types: dict[str, Any] = {"limit": spanner.param_types.INT64}
        due = ""
        if now is not None:
            due = " WHERE d.NextAttemptAt <= @now"
            params["now"] = now
            types["now"] = spanner.param_types.TIMESTAMP
        return self._outbox_query(
            "SELECT o.Id, o.Payload, o.State, o.CreatedAt, o.Attempts, d.LastError,"
            f" d.NextAttemptAt FROM OutboxDue AS d JOIN Outbox AS o ON o.Id = d.Id{due}"
            " ORDER BY d.NextAttemptAt, d.Id LIMIT @limit",
            params,
            types,
            failed=False,
        )

    def outbox_mark_sent(self, ids: Iterable[str], now: datetime) -> None:
        keys = list(ids)
        if not keys:
            return

        def work(transaction: Any) -> None:
            transaction.update(self.n("Outbox"), ("Id", "SentAt"), [(i, now) for i in keys])
            keyset = KeySet(keys=[[i] for i in keys])
            transaction.delete(self.n("OutboxDue"), keyset)
            transaction.delete(self.n("FailedNotifications"), keyset)

        self._tx(work)

    def _count_attempt(self, transaction: Any, item_id: str) -> tuple[str, int]:
        """Attempts + 1 on the Outbox row; returns its operation name and the new count."""
        (row,) = transaction.read(
            self.n("Outbox"), ("OperationKey", "Attempts"), KeySet(keys=[[item_id]])
        )
        attempts = int(row[1]) + 1
        transaction.update(self.n("Outbox"), ("Id", "Attempts"), [(item_id, attempts)])
        return str(row[0]), attempts

    def outbox_reschedule(self, item_id: str, retry_at: datetime, error: str) -> None:
        def work(transaction: Any) -> None:
            if not list(transaction.read(self.n("OutboxDue"), ("Id",), KeySet(keys=[[item_id]]))):
                return  # not pending (any more): leave it
            transaction.update(
                self.n("OutboxDue"),
                ("Id", "NextAttemptAt", "LastError"),
                [(item_id, retry_at, error)],
            )
            self._count_attempt(transaction, item_id)

        self._tx(work)

    def outbox_give_up(self, item_id: str, now: datetime, error: str) -> None:
        def work(transaction: Any) -> None:
            keys = KeySet(keys=[[item_id]])
            if not list(transaction.read(self.n("OutboxDue"), ("Id",), keys)):
                return
            transaction.delete(self.n("OutboxDue"), keys)
            operation, attempts = self._count_attempt(transaction, item_id)
            transaction.insert_or_update(
                self.n("FailedNotifications"),
                ("Id", "OperationKey", "GaveUpAt", "Attempts", "LastError"),
                [(item_id, operation, now, attempts, error)],
            )

        self._tx(work)

    def failed_notifications(
        self, limit: int = 100, after: tuple[datetime, str] | None = None
    ) -> list[OutboxItem]:
        params: dict[str, Any] = {"limit": limit}
        types: dict[str, Any] = {"limit": spanner.param_types.INT64}
        page = ""
        if after is not None:
            page = " WHERE f.GaveUpAt > @t OR (f.GaveUpAt = @t AND f.Id > @id)"
            params.update(t=after[0], id=after[1])
            types.update(t=spanner.param_types.TIMESTAMP, id=spanner.param_types.STRING)
        return self._outbox_query(
            "SELECT o.Id, o.Payload, o.State, o.CreatedAt, f.Attempts, f.LastError,"
            " f.GaveUpAt FROM FailedNotifications AS f"
            f" JOIN Outbox AS o ON o.Id = f.Id{page}"
            " ORDER BY f.GaveUpAt, f.Id LIMIT @limit",
            params,
            types,
            failed=True,
        )

    def requeue_failed(self, item_id: str, now: datetime) -> bool:
        def work(transaction: Any) -> bool:
            keys = KeySet(keys=[[item_id]])
            failed = list(transaction.read(self.n("FailedNotifications"), ("LastError",), keys))
            sent = [r[0] for r in transaction.read(self.n("Outbox"), ("SentAt",), keys)]
            if not failed or sent != [None]:
                return False
            transaction.delete(self.n("FailedNotifications"), keys)
            transaction.insert_or_update(
                self.n("OutboxDue"),
                ("Id", "NextAttemptAt", "LastError"),
                [(item_id, now, failed[0][0])],
            )
            transaction.update(self.n("Outbox"), ("Id", "Attempts"), [(item_id, 0)])
            return True

        return self._tx(work)

    # ---- dead letters ------------------------------------------------------------------

    _DL_COLUMNS = (
        "Id",
        "ReceivedAt",
        "Route",
        "Reason",
        "Detail",
        "MessageId",
        "Attributes",
        "Body",
    )

    def add_dead_letter(self, letter: DeadLetter) -> None:
        row = (
            letter.id,
            letter.received_at,
            letter.route,
            letter.reason,
            letter.detail,
            letter.message_id,
            self.layout.json_value(letter.attributes),
            _w(letter.body),
        )

        def work(transaction: Any) -> None:
            transaction.insert(self.n("DeadLetters"), self._DL_COLUMNS, [row])

        self._tx(work)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self._guard(), self.database.snapshot() as snapshot:
            rows = list(snapshot.read(self.n("DeadLetters"), self._DL_COLUMNS, KeySet(all_=True)))
        letters = [
            DeadLetter(
                id=str(r[0]),
                received_at=r[1],
                route=str(r[2]),
                reason=str(r[3]),
                detail=str(r[4]),
                message_id=str(r[5]),
                attributes=_json(r[6]),
                body=_r(r[7]),
            )
            for r in rows
        ]
        letters.sort(key=lambda d: (d.received_at, d.id))
        return letters[:limit]

    def remove_dead_letter(self, letter_id: str) -> bool:
        def work(transaction: Any) -> bool:
            keys = KeySet(keys=[[letter_id]])
            found = list(transaction.read(self.n("DeadLetters"), ("Id",), keys))
            if found:
                transaction.delete(self.n("DeadLetters"), keys)
            return bool(found)

        return self._tx(work)

    def close(self, timeout: float = 5.0) -> None:
        """Release sessions, waiting at most `timeout` seconds.

        With multiplexed sessions (the client's default) `Database.close()` can block for
        minutes while a background thread winds down; shutdown must not wait for that
        (Cloud Run allows 10 s after SIGTERM), so it runs on a daemon thread.
        """
        close = getattr(self.database, "close", None)
        if not callable(close):
            return
        done = threading.Event()

        def run() -> None:
            try:
                close()
            except Exception as exc:  # closing is best effort
                log.warning("closing the Spanner database: %s", exc)
            finally:
                done.set()

        threading.Thread(target=run, name="spanner-close", daemon=True).start()
        if not done.wait(timeout):
            log.warning("Spanner sessions still closing after %.0f s; not waiting", timeout)


def _json(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, str):
        value = json.loads(value)
    return {str(k): str(v) for k, v in dict(value).items()}
