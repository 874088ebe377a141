"""Operation futures (tracker.client.OperationFuture) and one completion subscription shared
by many waiters (tracker.completions.Completions), on a real tracker and both Pub/Sub
emulators."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.protobuf import duration_pb2, struct_pb2
from google.rpc import code_pb2

from tests.pubsub_kit import PubSub
from tracker.client import (
    AsyncOperationFuture,
    AsyncTrackerClient,
    Completions,
    OperationFuture,
    TrackerClient,
)
from tracker.config import Config
from tracker.server import Server, running


@pytest.fixture
def pubsub(pubsub_env: str) -> PubSub:
    return PubSub()


@pytest.fixture
def done_topic(pubsub: PubSub) -> str:
    return pubsub.topic()


@pytest.fixture
def server(tmp_path: Path, done_topic: str) -> Iterator[Server]:
    config = Config(db=str(tmp_path / "f.db"), http_port=0, grpc_port=-1, done_topic=done_topic)
    with running(config) as srv:
        yield srv


@pytest.fixture
def client(server: Server) -> Iterator[TrackerClient]:
    with TrackerClient(server.http_url, source="tests/futures") as c:
        yield c


def _name() -> str:
    return f"operations/f-{uuid.uuid4().hex[:10]}"


# ---- WaitOperation path (no completion topic needed) ------------------------------------


def test_future_without_completions_resolves_by_wait_operation(client: TrackerClient) -> None:
    name = _name()
    client.created(name)
    future = client.operation(name, result_type=duration_pb2.Duration)
    assert not future.done() and future.running()
    with pytest.raises(TimeoutError):
        future.result(timeout=0.3)
    called = threading.Event()
    future.add_done_callback(lambda f: called.set())  # starts a WaitOperation thread
    client.progress(name, 50, "half")
    client.succeeded(name, duration_pb2.Duration(seconds=90))
    assert future.result(timeout=30) == duration_pb2.Duration(seconds=90)
    assert called.wait(30)
    assert future.done() and not future.cancelled() and future.exception() is None
    assert future.metadata.type_url.endswith("OperationMetadata")  # the Any, untyped


def test_failed_and_cancelled_operations_raise_google_errors(client: TrackerClient) -> None:
    failed, cancelled = _name(), _name()
    client.created(failed)
    client.failed(failed, code_pb2.NOT_FOUND, "no such table")
    future: OperationFuture[Any] = client.operation(failed)
    with pytest.raises(gexc.NotFound, match="no such table"):
        future.result(timeout=30)
    error = future.exception()
    assert isinstance(error, gexc.NotFound) and error.response.name == failed

    client.created(cancelled)
    future = client.operation(cancelled)
    assert future.cancel() is True
    with pytest.raises(gexc.Cancelled):
        future.result(timeout=30)
    assert future.cancelled() and future.cancel() is False  # done: nothing to cancel


def test_a_response_of_another_type_than_asked_is_a_clear_error(client: TrackerClient) -> None:
    name = _name()
    client.created(name)
    client.succeeded(name, {"rows": 3})
    with pytest.raises(ValueError, match=r"Struct, not google\.protobuf\.Duration"):
        client.operation(name, result_type=duration_pb2.Duration).result(timeout=30)
    assert client.operation(name, result_type=struct_pb2.Struct).result(30)["rows"] == 3


# ---- completion topic -------------------------------------------------------------------


def test_hundreds_of_waiters_share_one_subscription(
    client: TrackerClient, pubsub: PubSub, done_topic: str
) -> None:
    sub = pubsub.subscription(done_topic, ordered=False)
    operations = [_name() for _ in range(150)]
    for name in operations:
        client.created(name)
    with Completions(sub) as completions:
        # Two futures per operation, and a callback on every second one: 375 waiters.
        futures: list[tuple[str, OperationFuture[struct_pb2.Struct]]] = [
            (name, client.operation(name, completions=completions, result_type=struct_pb2.Struct))
            for name in operations
            for _ in range(2)
        ]
        fired: list[str] = []
        lock = threading.Lock()

        def on_done(future: OperationFuture[struct_pb2.Struct]) -> None:
            with lock:
                fired.append(future.name)

        for _, future in futures[::2]:
            future.add_done_callback(on_done)
        assert completions.waiting() == 300 and not any(f.done() for _, f in futures)
        for index, name in enumerate(operations):
            if index % 10 == 0:
                client.failed(name, code_pb2.RESOURCE_EXHAUSTED, f"quota {index}")
            else:
                client.succeeded(name, {"index": index})
        for name, future in futures:
            index = operations.index(name)
            if index % 10 == 0:
                with pytest.raises(gexc.ResourceExhausted, match=f"quota {index}$"):
                    future.result(timeout=60)
            else:
                assert future.result(timeout=60)["index"] == index
        assert sorted(fired) == sorted(operations)
        assert completions.waiting() == 0
        assert completions.received >= len(operations)


def test_a_waiter_after_the_notification_still_resolves(
    client: TrackerClient, pubsub: PubSub, done_topic: str
) -> None:
    sub = pubsub.subscription(done_topic, ordered=False)
    early, late = _name(), _name()
    client.created(early)
    client.succeeded(early, {"when": "before the subscriber"})  # before Completions pulls
    with Completions(sub) as completions:
        client.created(late)
        client.succeeded(late, {"when": "before the future"})
        seen = threading.Event()
        completions.watch(late, lambda op: seen.set())
        assert seen.wait(60)  # routed: now remembered
        assert completions.latest(late) is not None
        # Registered after the notification went by: the remembered one resolves it.
        future = client.operation(late, completions=completions, result_type=struct_pb2.Struct)
        assert future.done() and future.result(0)["when"] == "before the future"
        # Done before the subscription pulled anything: the future's first read finds it.
        future = client.operation(early, completions=completions, result_type=struct_pb2.Struct)
        assert future.result(timeout=5)["when"] == "before the subscriber"


def test_ephemeral_subscription_is_created_filtered_and_deleted(
    client: TrackerClient, pubsub: PubSub, done_topic: str, pubsub_server: str
) -> None:
    name = _name()
    client.created(name, operation_type="export")
    completions = Completions.ephemeral(done_topic, filter='attributes.operation_type = "export"')
    try:
        stored = pubsub.subscriber.get_subscription(
            request={"subscription": completions.subscription}
        )
        assert stored.topic == done_topic
        assert stored.filter == 'attributes.operation_type = "export"'
        # Both emulators keep the expiration policy they were given (probed here).
        assert stored.expiration_policy.ttl.total_seconds() == 86400
        future: OperationFuture[Any] = client.operation(name, completions=completions)
        client.succeeded(name, {"ok": True})
        assert future.result(timeout=60) is not None
    finally:
        completions.close()
    with pytest.raises(gexc.NotFound):
        pubsub.subscriber.get_subscription(request={"subscription": completions.subscription})


def test_ephemeral_refuses_a_bad_topic_with_a_clear_message(pubsub: PubSub) -> None:
    from tracker.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="projects/PROJECT/topics/TOPIC"):
        Completions.ephemeral("tracker-done")
    with pytest.raises(InvalidArgument, match="does not exist"):
        Completions.ephemeral("projects/tracker-test/topics/no-such-topic")


# ---- asyncio ------------------------------------------------------------------------------


def test_async_futures_by_wait_operation_and_by_one_subscription(
    server: Server, client: TrackerClient, pubsub: PubSub, done_topic: str
) -> None:
    sub = pubsub.subscription(done_topic, ordered=False)
    waited, failed = _name(), _name()
    shared = [_name() for _ in range(100)]
    for name in [waited, failed, *shared]:
        client.created(name)

    async def main() -> None:
        async with AsyncTrackerClient(server.http_url) as aclient:
            future = aclient.operation(waited, result_type=struct_pb2.Struct)
            with pytest.raises(TimeoutError):
                await future.result(timeout=0.3)
            called = asyncio.Event()
            future.add_done_callback(lambda f: called.set())  # a task that waits
            await aclient.succeeded(waited, {"n": 1})
            assert (await future.result(timeout=30))["n"] == 1
            await asyncio.wait_for(called.wait(), 30)
            assert future.done() and await future.exception() is None

            with Completions(sub) as completions:
                futures: list[AsyncOperationFuture[struct_pb2.Struct]] = [
                    aclient.operation(n, completions=completions, result_type=struct_pb2.Struct)
                    for n in shared
                ]
                doomed: AsyncOperationFuture[Any] = aclient.operation(
                    failed, completions=completions
                )
                assert await doomed.cancel() is True
                for index, name in enumerate(shared):
                    await aclient.succeeded(name, {"index": index})
                results = await asyncio.gather(*(f.result(timeout=60) for f in futures))
                assert [r["index"] for r in results] == list(range(100))
                with pytest.raises(gexc.Cancelled):
                    await doomed.result(timeout=60)
                assert doomed.cancelled() and await doomed.cancel() is False

    asyncio.run(main())


def test_a_subscription_that_does_not_exist_is_a_clear_error(pubsub: PubSub) -> None:
    from tracker.errors import NotFound

    missing = "projects/tracker-test/subscriptions/no-such-subscription"
    with pytest.raises(NotFound, match=f"subscription {missing} does not exist"):
        Completions(missing)
