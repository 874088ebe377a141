"""Wait and Watch wake for changes another tracker instance applies (issue #14).

Two `Tracker`s on every backend, each with its own store connection and its own waiters,
share one database: B applies, A's waiters wake through A's store poll. With the poll off,
A's waiter sits until its timeout: the poll is what wakes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from google.longrunning import operations_pb2

from tests.helpers import make_event
from tracker.events import Kind
from tracker.notify.waiters import ChangeHub
from tracker.service import Tracker
from tracker.stores.base import Store
from tracker.stores.spanner import SpannerStore
from tracker.stores.sqlite import SqliteStore
from tracker.v1 import operation_pb2

POLL = 0.05


def second(store: Store) -> Store:
    """Another connection to the same data, as another process would open it."""
    if isinstance(store, SqliteStore):
        return SqliteStore(store.path, table_prefix=store.table_prefix)
    assert isinstance(store, SpannerStore)
    return SpannerStore(
        store.database, table_prefix=store.n.prefix, explicit_begin=store.explicit_begin
    )


def percent(operation: operations_pb2.Operation) -> float:
    meta = operation_pb2.OperationMetadata()
    operation.metadata.Unpack(meta)
    return meta.percent


def test_wait_and_watch_wake_for_another_instances_changes(store: Store) -> None:
    other = second(store)
    name = "operations/across-1"

    async def main() -> tuple[operations_pb2.Operation, list[float], bool]:
        a = Tracker(store, wake_poll_seconds=POLL)
        b = Tracker(other)
        task = await a.start()
        try:
            await b.ingest([make_event(Kind.CREATED, name, seq=0)], route="test")
            seen: list[float] = []

            async def watching() -> bool:
                async for operation in a.watch(name, timeout=30):
                    seen.append(percent(operation))
                    if operation.done:
                        return True
                return False

            waiting = asyncio.create_task(a.wait(name, timeout=30))
            watcher = asyncio.create_task(watching())
            while a.hub.watching(name) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            progress = make_event(Kind.PROGRESS, name, seq=1, data={"percent": 40})
            await b.ingest([progress], route="test")
            while 40.0 not in seen:  # noqa: ASYNC110 (B's progress, seen before the end)
                await asyncio.sleep(0.01)
            await b.ingest([make_event(Kind.SUCCEEDED, name, seq=2)], route="test")
            return await waiting, seen, await watcher
        finally:
            await a.stop(task)

    done, seen, watched_to_end = asyncio.run(main())
    other.close()
    assert done.done and done.HasField("response"), done
    assert watched_to_end
    assert seen[0] == 0.0 and 40.0 in seen and seen[-1] == 100.0, seen
    assert len(seen) == len(set(seen)), seen  # no state yielded twice


def test_without_the_poll_another_instances_change_does_not_wake(store: Store) -> None:
    other = second(store)
    name = "operations/across-2"

    async def main(poll: float) -> bool:
        a = Tracker(store, wake_poll_seconds=poll)
        b = Tracker(other)
        task = await a.start()
        try:
            await b.ingest([make_event(Kind.CREATED, name + str(poll), seq=0)], route="test")
            waiting = asyncio.create_task(a.wait(name + str(poll), timeout=60))
            while not a.hub.watching(name + str(poll)):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            await b.ingest([make_event(Kind.SUCCEEDED, name + str(poll), seq=1)], route="test")
            # A hundred poll intervals: a poll wakes the waiter well within them.
            await asyncio.wait({waiting}, timeout=100 * POLL)
            woke = waiting.done()
            waiting.cancel()
            return woke
        finally:
            await a.stop(task)

    assert asyncio.run(main(0)) is False  # sits on: nothing in this process changed
    assert asyncio.run(main(POLL)) is True  # the same with the poll: woken
    other.close()


def test_the_poll_reads_only_while_someone_waits(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "p.db")
    reads: list[int] = []

    def read(names: Sequence[str]) -> dict[str, operations_pb2.Operation]:
        reads.append(len(names))
        return store.get_operations(names)

    async def main() -> tuple[int, int, int]:
        hub = ChangeHub()
        hub.bind(asyncio.get_running_loop())
        poll = asyncio.create_task(hub.poll_store(read, 0.01))
        await asyncio.sleep(0.2)
        idle = len(reads)
        async with hub.subscribe("operations/x"), hub.subscribe("operations/y"):
            await asyncio.sleep(0.2)
            busy = len(reads)
        await asyncio.sleep(0.05)  # a poll in flight ends
        after = len(reads)
        await asyncio.sleep(0.2)
        poll.cancel()
        return idle, busy, len(reads) - after

    idle, busy, later = asyncio.run(main())
    store.close()
    assert idle == 0  # nobody waited: no reads at all
    assert busy >= 3 and set(reads) == {2}  # both watched names in one read each time
    assert later == 0


def test_the_poll_delivers_only_what_differs(tmp_path: Path) -> None:
    """A state the waiter read itself, or one this process delivered, is not delivered
    again by the poll; a state another writer committed is, once."""
    store = SqliteStore(tmp_path / "d.db")
    name = "operations/d"
    store.apply([make_event(Kind.CREATED, name, seq=0)])

    async def main() -> list[float]:
        hub = ChangeHub()
        hub.bind(asyncio.get_running_loop())
        poll = asyncio.create_task(hub.poll_store(store.get_operations, 0.01))
        got: list[float] = []
        async with hub.subscribe(name) as queue:
            first = store.get_operation(name)
            assert first is not None
            hub.seen(first)
            await asyncio.sleep(0.1)  # polls read the same state: nothing delivered
            assert queue.empty()
            store.apply([make_event(Kind.PROGRESS, name, seq=1, data={"percent": 7})])
            got.append(percent(await asyncio.wait_for(queue.get(), 5)))
            await asyncio.sleep(0.1)
            assert queue.empty()  # delivered once, not once per poll
        poll.cancel()
        return got

    assert asyncio.run(main()) == [7.0]
    store.close()
