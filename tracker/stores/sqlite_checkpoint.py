"""WAL checkpoints of the SQLite store on a thread of their own.

SQLite in WAL mode appends each commit to the `-wal` file and copies pages back into the
database file in a checkpoint. By default the committing connection runs one itself,
right after a commit that takes the log past 1,000 pages (about 100 one-event commits
of the store): that commit then waits for two fsyncs, the log's and the database's. On a
disk whose fsync takes ~10 ms that is the largest single cost of a stream of small
commits, and the SQLite store commits small writes on the server's event loop
(`SqliteStore.apply_now`), which stops serving for as long.

Here a `Checkpointer` with a connection of its own runs passive checkpoints instead: a
while (`delay`) after the first commit since the last one, or sooner once the writer
has changed `rows` rows. A passive checkpoint never takes the write lock, so commits go
on while it copies and syncs; SQLite releases the GIL for it. The writer keeps SQLite's
own checkpoint as a backstop with a larger threshold (`BACKSTOP_PAGES`): when the log
never gets copied to its end (commits without a pause as long as a checkpoint, so the
next writer cannot start the log afresh), or this thread cannot run, the writer
checkpoints as before, then only once every `BACKSTOP_PAGES` pages (~10x fewer). The
durability is SQLite's (`synchronous = NORMAL`): every commit survives the process
being killed; the log is synced at each checkpoint, whoever runs it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Final

log = logging.getLogger(__name__)

# The writer's own checkpoint threshold (pages of log) when this thread checkpoints:
# SQLite's default is 1,000.
BACKSTOP_PAGES: Final = 10_000
# What the log file is cut back to once a checkpoint has copied it all and a writer
# starts it afresh (it keeps its largest size otherwise): about SQLite's default log.
LOG_SIZE_LIMIT: Final = 4 * 1024 * 1024


class Checkpointer:
    """Passive checkpoints of the WAL-mode file at `path`, from a daemon thread started
    with the first commit. The writer calls `committed` after each of its commits."""

    def __init__(
        self, path: str, *, delay: float = 1.0, rows: int = 400, busy_timeout_ms: int = 5000
    ) -> None:
        self.path = path
        self.delay = delay  # seconds from the first commit since the last checkpoint
        self.rows = rows  # or sooner, once the writer changed this many rows
        self.busy_timeout_ms = busy_timeout_ms
        self.checkpoints = 0  # passive checkpoints run (tests and benches read it)
        self._wake = threading.Event()
        self._closing = False
        self._changes = 0  # the writer's total_changes at its latest commit
        self._mark = 0  # ... at the latest checkpoint: rows changed since, the difference
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def committed(self, changes: int) -> None:
        """After a commit on the writer connection; `changes` is its `total_changes`.
        Cheap: an attribute or two, an Event set at most twice per checkpoint."""
        before, self._changes = self._changes, changes
        if changes == before or self._wake.is_set():  # nothing written, or asked already
            return  # (Event.set takes a lock and notifies)
        # The first change since the latest checkpoint starts its clock; `rows` more ask
        # for it at once.
        if before == self._mark or changes - self._mark >= self.rows:
            if self._thread is None:
                self._start()
            self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closing:
                self._thread = threading.Thread(
                    target=self._run, name="tracker-sqlite-checkpoint", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._closing:
            self._wake.wait()
            self._wake.clear()
            deadline = time.monotonic() + self.delay
            while not self._closing and self._changes - self._mark < self.rows:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.wait(left)
                self._wake.clear()
            if self._closing:
                break
            self._checkpoint()

    def _checkpoint(self) -> None:
        """One passive checkpoint, on a connection of its own for that time (an idle
        store holds no file open for it)."""
        self._mark = self._changes  # a change from here on asks for the next one
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=self.busy_timeout_ms / 1000,
            )
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                conn.close()
            self.checkpoints += 1
        except sqlite3.Error as exc:  # busy or gone: the next commit asks again, and
            log.debug("SQLite checkpoint skipped: %s", exc)  # the backstop stays

    def stop(self) -> None:
        """Ask the thread to end, without waiting (the store's finalizer)."""
        with self._lock:
            self._closing = True
        self._wake.set()

    def close(self) -> None:
        """Stop the thread (a checkpoint under way ends first)."""
        self.stop()
        thread = self._thread
        if thread is not None:
            thread.join()


__all__ = ["BACKSTOP_PAGES", "LOG_SIZE_LIMIT", "Checkpointer"]
