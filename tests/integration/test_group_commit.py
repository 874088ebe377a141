"""Group commit (tracker.commit): concurrent ingest calls share a transaction, and each
still commits or fails as a whole, alone, in order.

The store is a real SQLite file. To have requests queue behind a running transaction
without timing anything, `GatedStore` holds its first transaction open until the test
has queued the rest (a purpose-built store, not a mock: it applies for real).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.helpers import make_event
from tracker.apply import Outcome
from tracker.bindings import to_binary
from tracker.config import Config
from tracker.errors import InvalidEvent, StoreUnavailable
from tracker.events import Event, Kind
from tracker.notices import Wanted
from tracker.server import running
from tracker.service import Tracker
from tracker.stores.base import BatchResult
from tracker.stores.sqlite import SqliteStore


class GatedStore(SqliteStore):
    """Holds its first apply until `release` is set; counts applies and their sizes;
    raises StoreUnavailable for an apply of more than `unavailable_over` events."""

    def __init__(self, path: Path, **kwargs: object) -> None:
        super().__init__(path, **kwargs)  # type: ignore[arg-type]
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sizes: list[int] = []
        self.unavailable_over: int | None = None

    def apply_now(
        self, events: Sequence[Event], *, notify: Wanted | bool = True
    ) -> BatchResult | None:
        return None  # every write through `apply`, in a worker thread, where it is held

    def apply(
        self, events: Sequence[Event], now: datetime | None = None, *, notify: Wanted | bool = True
    ) -> BatchResult:
        if not self.sizes:
            self.entered.set()
            assert self.release.wait(30), "the test never released the first transaction"
        self.sizes.append(len(events))
        if self.unavailable_over is not None and len(events) > self.unavailable_over:
            raise StoreUnavailable("the test's store is down for large writes")
        return super().apply(events, now, notify=notify)


async def _queued(
    tracker: Tracker, store: GatedStore, batches: Sequence[Sequence[Event]]
) -> list[BatchResult | BaseException]:
    """Send the first batch, wait until its transaction runs, queue the others behind
    it, then let it finish; every call's answer (or error), in order."""
    first = asyncio.ensure_future(tracker.ingest(batches[0], route="test"))
    await asyncio.to_thread(store.entered.wait, 30)
    rest = [asyncio.ensure_future(tracker.ingest(b, route="test")) for b in batches[1:]]
    await asyncio.sleep(0)  # let every queued call reach the queue
    store.release.set()
    return list(await asyncio.gather(first, *rest, return_exceptions=True))


def test_requests_queued_behind_a_transaction_share_the_next(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "g.db")
    tracker = Tracker(store)
    batches = [[make_event(Kind.CREATED, f"operations/g{i}", seq=0)] for i in range(11)]
    answers = asyncio.run(_queued(tracker, store, batches))
    assert store.sizes == [1, 10]  # the first alone, the ten queued behind it in one
    assert tracker.group.stats.transactions == 2
    assert tracker.group.stats.largest == 10
    for batch, answer in zip(batches, answers, strict=True):
        assert isinstance(answer, BatchResult)
        assert [r.event_id for r in answer.results] == [e.id for e in batch]
        assert [r.outcome for r in answer.results] == [Outcome.APPLIED]
        assert set(answer.changed) == {batch[0].operation}
        assert store.get(batch[0].operation) is not None
    store.close()


def test_a_duplicate_across_requests_of_one_group_is_a_duplicate(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "d.db")
    tracker = Tracker(store)
    created = make_event(Kind.CREATED, "operations/dup", seq=0)
    done = make_event(Kind.SUCCEEDED, "operations/dup", seq=5)
    batches = [[make_event(Kind.CREATED, "operations/other", seq=0)], [created, done], [done]]
    answers = asyncio.run(_queued(tracker, store, batches))
    assert store.sizes == [1, 3]
    second, third = answers[1], answers[2]
    assert isinstance(second, BatchResult) and isinstance(third, BatchResult)
    assert [r.outcome for r in second.results] == [Outcome.APPLIED, Outcome.APPLIED]
    assert second.results[1].became_done
    assert [r.outcome for r in third.results] == [Outcome.DUPLICATE]
    assert not third.results[0].became_done
    store.close()


def test_poison_in_one_request_fails_only_that_request(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "p.db", strict=True)
    tracker = Tracker(store)
    good = [[make_event(Kind.CREATED, f"operations/ok{i}", seq=0)] for i in range(3)]
    # Strict mode: an event for an operation never created can never apply.
    poison = [make_event(Kind.PROGRESS, "operations/never-created", seq=1, data={"percent": 1})]
    batches = [good[0], good[1], poison, good[2]]
    answers = asyncio.run(_queued(tracker, store, batches))
    assert isinstance(answers[2], InvalidEvent)
    for i in (0, 1, 3):
        answer = answers[i]
        assert isinstance(answer, BatchResult), answer
        assert answer.results[0].outcome is Outcome.APPLIED
        assert store.get(batches[i][0].operation) is not None
    assert tracker.group.stats.splits == 1
    # The group of three failed as one, then each of its requests ran alone.
    assert store.sizes == [1, 3, 1, 1, 1]
    store.close()


def test_store_unavailable_fails_every_request_of_the_group(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "u.db")
    store.unavailable_over = 1
    tracker = Tracker(store)
    batches = [[make_event(Kind.CREATED, f"operations/u{i}", seq=0)] for i in range(4)]
    answers = asyncio.run(_queued(tracker, store, batches))
    assert isinstance(answers[0], BatchResult)
    assert all(isinstance(a, StoreUnavailable) for a in answers[1:])
    assert store.sizes == [1, 3]  # not retried one by one: each caller retries
    for batch in batches[1:]:
        assert store.get(batch[0].operation) is None
    store.close()


def test_a_group_takes_at_most_max_events(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "m.db")
    tracker = Tracker(store)
    tracker.group.max_events = 5
    batches = [
        [make_event(Kind.CREATED, f"operations/m{i}-{j}", seq=0) for j in range(3)]
        for i in range(5)
    ]
    answers = asyncio.run(_queued(tracker, store, batches))
    assert all(isinstance(a, BatchResult) for a in answers)
    assert store.sizes == [3, 3, 3, 3, 3]  # 3 + 3 > 5: never two requests together
    store.close()


def test_a_changed_parent_is_reported_with_the_first_request(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "c.db")
    tracker = Tracker(store)
    parent = "operations/parent"
    batches = [
        [make_event(Kind.CREATED, parent, seq=0)],
        [make_event(Kind.CREATED, "operations/child-a", seq=0, data={"parent": parent})],
        [make_event(Kind.CREATED, "operations/child-b", seq=0, data={"parent": parent})],
    ]
    answers = asyncio.run(_queued(tracker, store, batches))
    second, third = answers[1], answers[2]
    assert isinstance(second, BatchResult) and isinstance(third, BatchResult)
    # The parent's count changed in the group's transaction: reported once, first.
    assert set(second.changed) == {"operations/child-a", parent}
    assert set(third.changed) == {"operations/child-b"}
    stored = store.get(parent)
    assert stored is not None and stored.state.children.total == 2
    store.close()


@pytest.mark.parametrize("connections", [8])
def test_concurrent_http_requests_each_get_their_own_answer(
    tmp_path: Path, connections: int
) -> None:
    """Eight keep-alive connections at once: every answer names exactly its own event,
    every operation ends, whatever the grouping was."""
    config = Config(db=str(tmp_path / "h.db"), http_port=0, grpc_port=0, log_level="warning")

    async def client(url: str, worker: int) -> list[tuple[str, str, str]]:
        seen: list[tuple[str, str, str]] = []
        async with httpx.AsyncClient(base_url=url) as http:
            for op in range(5):
                name = f"operations/w{worker}-{op}"
                stream = [
                    make_event(Kind.CREATED, name, seq=0),
                    make_event(Kind.PROGRESS, name, seq=1, data={"percent": 50}),
                    make_event(Kind.SUCCEEDED, name, seq=2),
                ]
                for event in stream:
                    headers, body = to_binary(event)
                    response = await http.post("/v1/events", headers=headers, content=body)
                    assert response.status_code == 200, response.text
                    (result,) = response.json()["results"]
                    seen.append((event.id, result["id"], result["outcome"]))
        return seen

    async def main(url: str) -> list[list[tuple[str, str, str]]]:
        return list(await asyncio.gather(*(client(url, w) for w in range(connections))))

    with running(config) as server:
        per_client = asyncio.run(main(server.http_url))
        for seen in per_client:
            assert len(seen) == 15
            for sent, answered, outcome in seen:
                assert answered == sent
                assert outcome == "applied"
        store = SqliteStore(config.db)
        for worker in range(connections):
            for op in range(5):
                stored = store.get(f"operations/w{worker}-{op}")
                assert stored is not None and stored.operation.done
        store.close()


def test_an_idle_sqlite_store_applies_on_the_loop_without_a_thread(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "i.db")
    tracker = Tracker(store)
    event = make_event(Kind.CREATED, "operations/inline", seq=0)
    result = asyncio.run(tracker.ingest([event], route="test"))
    assert result.results[0].outcome is Outcome.APPLIED
    assert tracker.group.stats.inline == 1
    assert store.get("operations/inline") is not None
    # A group larger than the inline bound goes to a worker thread.
    tracker.group.max_inline_events = 2
    big = [make_event(Kind.CREATED, f"operations/big{i}", seq=0) for i in range(3)]
    asyncio.run(tracker.ingest(big, route="test"))
    assert tracker.group.stats.inline == 1 and tracker.group.stats.transactions == 2
    store.close()


def test_apply_now_declines_when_another_writer_holds_the_file(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "w.db"
    store = SqliteStore(path)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's write transaction
    event = make_event(Kind.CREATED, "operations/waits", seq=0)
    assert store.apply_now([event]) is None  # at once, not after busy_timeout
    other.execute("ROLLBACK")
    assert store.get("operations/waits") is None  # nothing half-written
    # Through the service the same write waits in a thread instead, and applies.
    other.execute("BEGIN IMMEDIATE")
    tracker = Tracker(store)

    async def main() -> BatchResult:
        pending = asyncio.ensure_future(tracker.ingest([event], route="test"))
        # Yield until the drain task has tried the loop (declined) and gone to a thread:
        # it counts the transaction before trying. No time passes; no clock is read.
        while tracker.group.stats.transactions == 0:  # noqa: ASYNC110
            await asyncio.sleep(0)
        other.execute("ROLLBACK")  # the thread's BEGIN, waiting on busy_timeout, goes on
        return await pending

    result = asyncio.run(main())
    assert result.results[0].outcome is Outcome.APPLIED
    assert tracker.group.stats.inline == 0
    assert store.get("operations/waits") is not None
    # And with this process's own writer busy in another thread: declined as well.
    with store._lock:
        held = threading.Thread(target=lambda: results.append(store.apply_now([event])))
        results: list[BatchResult | None] = []
        held.start()
        held.join(10)
    assert results == [None]
    other.close()
    store.close()


def test_small_writes_in_a_row_set_no_busy_timeout_between_them(tmp_path: Path) -> None:
    """apply_now takes the lock without waiting (busy_timeout 0) and leaves it so for the
    next; a write that may wait sets it back first (the test above: it then waits)."""
    store = SqliteStore(tmp_path / "p.db")
    log: list[str] = []
    store._conn.set_trace_callback(log.append)
    pragmas = []
    for i in range(3):
        assert store.apply_now([make_event(Kind.CREATED, f"operations/p{i}", seq=0)])
        pragmas.append([s for s in log if s.startswith("PRAGMA")])
        log.clear()
    store.apply([make_event(Kind.CREATED, "operations/waiting", seq=0)])
    waiting = [s for s in log if s.startswith("PRAGMA")]
    store._conn.set_trace_callback(None)
    assert pragmas == [["PRAGMA busy_timeout = 0"], [], []], pragmas
    assert waiting == ["PRAGMA busy_timeout = 5000"], waiting
    store.close()


def test_apply_now_is_never_taken_for_memory_stores() -> None:
    store = SqliteStore(":memory:")
    assert store.apply_now([make_event(Kind.CREATED, "operations/m", seq=0)]) is None
    store.close()
