"""The notifications' publisher (`tracker.notify.pubsub.AsyncPublisher`) against pstest:
the Publish RPC on the caller's loop, in call order per ordering key."""

from __future__ import annotations

import asyncio

import pytest
from google.longrunning import operations_pb2

from tests.helpers import outbox_item
from tests.pubsub_kit import PubSub
from tracker.notify.pubsub import AsyncPublisher, PubSubSink


@pytest.fixture
def pubsub(pubsub_env: str) -> PubSub:
    return PubSub()


def test_publishes_of_one_ordering_key_keep_their_order_when_started_together(
    pubsub: PubSub,
) -> None:
    """A big message first, then small ones, all started at once: concurrent RPCs would
    let the small ones land first; one key's publishes wait for the one before."""
    topic = pubsub.topic()
    sub = pubsub.subscription(topic)  # ordered delivery on
    publisher = AsyncPublisher("--done-topic test")

    async def main() -> list[str]:
        sizes = [3_000_000] + [10] * 7
        return await asyncio.gather(
            *(
                publisher.publish(
                    topic,
                    b"x" * size,
                    ordering_key="operations/ordered",
                    attributes={"n": str(n)},
                    timeout=30,
                )
                for n, size in enumerate(sizes)
            )
        )

    ids = asyncio.run(main())
    assert len(set(ids)) == 8
    messages = pubsub.pull_all(sub)
    assert [m.attributes["n"] for m in messages] == [str(n) for n in range(8)]
    assert all(m.ordering_key == "operations/ordered" for m in messages)


def test_a_sink_publishes_under_one_loop_then_another(pubsub: PubSub) -> None:
    """A sink used under one event loop, then another (as a restarted dispatcher would),
    still publishes, each with its operation name as ordering key: a grpc.aio channel
    belongs to its loop, so each loop gets a client of its own."""
    topic = pubsub.topic()
    sub = pubsub.subscription(topic)
    sink = PubSubSink(topic)

    async def burst(prefix: str) -> None:
        await asyncio.gather(
            *(
                sink.deliver(
                    outbox_item(
                        f"{prefix}-{i}",
                        operations_pb2.Operation(name=f"operations/{prefix}-{i}", done=True),
                    )
                )
                for i in range(5)
            )
        )

    asyncio.run(burst("first"))
    asyncio.run(burst("second"))
    messages = pubsub.pull_all(sub)
    assert sorted(m.attributes["ce-id"] for m in messages) == sorted(
        f"{p}-{i}" for p in ("first", "second") for i in range(5)
    )
    assert {m.ordering_key for m in messages} == {m.attributes["operation"] for m in messages}
