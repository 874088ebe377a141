"""A consumer's side effect once per notification, across redeliveries and restarts.

    from tracker.done import subscribe_done
    from tracker.once import SqliteSeen, once

    subscribe_done(subscription, once(send_invoice, SqliteSeen("seen.db")))

`once(effect, seen)` wraps a `subscribe_done` callback. Before the effect runs, it claims
the notification id in `seen` for a lease; when the effect returns the id is marked
finished, when it raises the claim is dropped and the exception goes on (the message is
nacked and its redelivery runs the effect again).

The guarantee:

- An effect that returned never runs again for that id: not on a redelivery, a duplicate
  publish, a restart of the consumer, nor in another process sharing the SQLite file.
- A delivery of an id whose effect is running in another thread or process (its lease
  not expired) is left for redelivery (`Redeliver`), never run at the same time.
- An effect interrupted before it was marked finished (the process crashed) runs again
  once its lease expires: make such effects safe to repeat, or record them in the same
  transaction as the effect itself. `MemorySeen` holds within one process only.
- Notifications without an id run the effect every time.

Finished ids are kept until `prune(older_than_seconds)`; Pub/Sub redelivers a message for
at most its retention (7 days by default), so pruning at 8 days loses nothing.
"""

from __future__ import annotations

import enum
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from tracker.done import Redeliver


class Claim(enum.Enum):
    MINE = "mine"  # run the effect
    SEEN = "seen"  # it ran before: skip
    BUSY = "busy"  # running elsewhere right now (lease not expired)


class SeenStore(Protocol):
    def claim(self, key: str, lease_seconds: float) -> Claim: ...
    def finish(self, key: str) -> None: ...
    def abandon(self, key: str) -> None: ...
    def prune(self, older_than_seconds: float) -> int: ...


class MemorySeen:
    """Finished ids in memory (the newest `size`), for one process."""

    def __init__(self, size: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self.size = size
        self._clock = clock
        self._lock = threading.Lock()
        self._finished: OrderedDict[str, float] = OrderedDict()
        self._leases: dict[str, float] = {}

    def claim(self, key: str, lease_seconds: float) -> Claim:
        now = self._clock()
        with self._lock:
            if key in self._finished:
                return Claim.SEEN
            if self._leases.get(key, 0.0) > now:
                return Claim.BUSY
            self._leases[key] = now + lease_seconds
            return Claim.MINE

    def finish(self, key: str) -> None:
        with self._lock:
            self._leases.pop(key, None)
            self._finished[key] = self._clock()
            while len(self._finished) > self.size:
                self._finished.popitem(last=False)

    def abandon(self, key: str) -> None:
        with self._lock:
            self._leases.pop(key, None)

    def prune(self, older_than_seconds: float) -> int:
        cutoff = self._clock() - older_than_seconds
        with self._lock:
            old = [key for key, at in self._finished.items() if at < cutoff]
            for key in old:
                del self._finished[key]
            return len(old)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS effects (
    key TEXT PRIMARY KEY,
    finished_at REAL,      -- NULL while claimed
    lease_until REAL NOT NULL
)
"""


class SqliteSeen:
    """Finished ids and leases in a SQLite file: shared by the threads of a process and by
    every process that opens the same file; survives restarts."""

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.path = str(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=30, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.execute(_SCHEMA)

    def claim(self, key: str, lease_seconds: float) -> Claim:
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT finished_at, lease_until FROM effects WHERE key = ?", (key,)
                ).fetchone()
                if row is not None and row[0] is not None:
                    claim = Claim.SEEN
                elif row is not None and row[1] > now:
                    claim = Claim.BUSY
                else:
                    self._db.execute(
                        "INSERT INTO effects (key, finished_at, lease_until) VALUES (?, NULL, ?)"
                        " ON CONFLICT (key) DO UPDATE SET lease_until = excluded.lease_until",
                        (key, now + lease_seconds),
                    )
                    claim = Claim.MINE
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return claim

    def finish(self, key: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO effects (key, finished_at, lease_until) VALUES (?, ?, 0)"
                " ON CONFLICT (key) DO UPDATE SET finished_at = excluded.finished_at",
                (key, self._clock()),
            )

    def abandon(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM effects WHERE key = ? AND finished_at IS NULL", (key,))

    def prune(self, older_than_seconds: float) -> int:
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM effects WHERE finished_at IS NOT NULL AND finished_at < ?",
                (self._clock() - older_than_seconds,),
            )
            return cursor.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()


N = TypeVar("N")


def once(
    effect: Callable[[N], None],
    seen: SeenStore,
    *,
    key: Callable[[N], str] = lambda note: str(getattr(note, "id", "") or ""),
    lease_seconds: float = 600.0,
) -> Callable[[N], None]:
    """`effect` as a callback that runs once per notification id (see the module
    docstring for the guarantee). `lease_seconds` should exceed the effect's longest run:
    after it, a crashed run's id may be taken by a redelivery."""

    def callback(note: N) -> None:
        item = key(note)
        if not item:
            effect(note)
            return
        claim = seen.claim(item, lease_seconds)
        if claim is Claim.SEEN:
            return
        if claim is Claim.BUSY:
            raise Redeliver(item)
        try:
            effect(note)
        except BaseException:
            seen.abandon(item)
            raise
        seen.finish(item)

    return callback


__all__ = ["Claim", "MemorySeen", "SeenStore", "SqliteSeen", "once"]
