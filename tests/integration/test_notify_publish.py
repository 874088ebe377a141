"""The notifications' publisher (`tracker.notify.pubsub.AsyncPublisher`) against pstest:
the Publish RPC on the caller's loop, in call order per ordering key; an outbox row
published again is the same message (ce-time the operation's end, not the publish's)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from google.longrunning import operations_pb2
from google.protobuf import timestamp_pb2

from tests.helpers import outbox_item
from tests.pubsub_kit import PubSub
from tracker.bindings import DONE_SCHEMA
from tracker.notify.pubsub import AsyncPublisher, PubSubSink
from tracker.stores.base import OutboxItem
from tracker.v1 import operation_pb2


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


def test_an_outbox_row_published_twice_is_the_same_message(pubsub: PubSub) -> None:
    """A redelivery after a crash, or a publish retried, is the same message: ce-time is
    the operation's end_time (to the nanosecond), else when the row was written, never
    when it was published; the content type in `Content-Type` and `content-type`."""
    topic = pubsub.topic()
    sub = pubsub.subscription(topic)
    sink = PubSubSink(topic)
    ended = operations_pb2.Operation(name="operations/ended", done=True)
    meta = operation_pb2.OperationMetadata(
        end_time=timestamp_pb2.Timestamp(seconds=1717243205, nanos=123456789)
    )
    ended.metadata.Pack(meta)
    written = datetime(2024, 6, 1, 12, 30, tzinfo=UTC)
    items = [
        OutboxItem(id="twice-1", operation=ended, created_at=written),
        OutboxItem(
            id="twice-2",
            operation=operations_pb2.Operation(name="operations/no-end", done=True),
            created_at=written,
        ),
    ]
    for _ in range(2):
        for item in items:
            asyncio.run(sink.deliver(item))
    messages = pubsub.pull_all(sub)
    by_id: dict[str, list[dict[str, str]]] = {}
    for m in messages:
        by_id.setdefault(m.attributes["ce-id"], []).append(dict(m.attributes))
    assert sorted(by_id) == ["twice-1", "twice-2"]
    for copies in by_id.values():
        first, second = copies
        assert first == second
        # Both spellings of the binding (CloudEvents' and Google's), the same value.
        assert first["Content-Type"] == first["content-type"] == "application/protobuf"
        assert first["ce-dataschema"] == DONE_SCHEMA
    assert by_id["twice-1"][0]["ce-time"] == "2024-06-01T12:00:05.123456789Z"
    assert by_id["twice-2"][0]["ce-time"] == "2024-06-01T12:30:00Z"
