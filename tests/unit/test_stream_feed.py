"""The console stream's fan-out: bounded per client, a lost change is said, not hidden."""

from __future__ import annotations

import asyncio
import json
import threading

from google.longrunning import operations_pb2

from tracker.api.stream import ChangeFeed, OperationsStream, Subscription
from tracker.hooks import Committed
from tracker.service import Tracker
from tracker.stores.sqlite import SqliteStore


def op(name: str) -> operations_pb2.Operation:
    return operations_pb2.Operation(name=name)


def test_a_full_queue_drops_the_oldest_and_flags_the_loss() -> None:
    async def main() -> None:
        client = Subscription(limit=2)
        for name in ("a", "b", "c"):
            client.put(op(name))
        items, lost = client.take()
        assert [o.name for o in items] == ["b", "c"] and lost
        client.put(op("d"))
        items, lost = client.take()
        assert [o.name for o in items] == ["d"] and not lost  # the flag is cleared
        assert not client.wake.is_set()

    asyncio.run(main())


def test_every_client_gets_each_commit_and_leaving_unsubscribes() -> None:
    async def main() -> None:
        feed = ChangeFeed(limit=8)
        async with feed.subscribe() as one, feed.subscribe() as two:
            assert feed.clients == 2
            feed.hook(Committed(route="test", changed={"x": op("x"), "y": op("y")}))
            for client in (one, two):
                await client.wake.wait()
                assert [o.name for o in client.take()[0]] == ["x", "y"]
        assert feed.clients == 0

    asyncio.run(main())


def test_a_commit_on_another_thread_hops_onto_the_loop() -> None:
    async def main() -> None:
        feed = ChangeFeed()
        async with feed.subscribe() as client:
            thread = threading.Thread(
                target=feed.hook, args=(Committed(route="t", changed={"z": op("z")}),)
            )
            thread.start()
            await client.wake.wait()
            thread.join()
            assert [o.name for o in client.take()[0]] == ["z"]

    asyncio.run(main())


def test_nobody_connected_costs_nothing() -> None:
    feed = ChangeFeed()
    feed.hook(Committed(route="t", changed={"z": op("z")}))  # no loop yet: ignored
    assert feed.clients == 0


def test_a_reader_that_fell_behind_is_told_to_resync_then_gets_the_latest() -> None:
    async def main() -> None:
        store = SqliteStore(":memory:")
        feed = ChangeFeed(limit=2)
        handler = OperationsStream(Tracker(store), feed, keepalive_seconds=15)
        events = handler._events(None, 30.0)
        try:
            assert (await anext(events)).event == "ready"
            for name in ("a", "b", "c"):  # three commits while the reader is away
                feed.hook(Committed(route="t", changed={name: op(name)}))
            sent = [await anext(events) for _ in range(3)]
            assert [e.event for e in sent] == ["resync", "operation", "operation"]
            assert [json.loads(str(e.data))["name"] for e in sent[1:]] == ["b", "c"]
        finally:
            await events.aclose()
            store.close()

    asyncio.run(main())
