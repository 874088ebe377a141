"""Done-notifications on a Pub/Sub completion topic: the sink of the outbox dispatcher.

The message format (attributes, data, the rule that keeps attributes within Pub/Sub's
limits) is `tracker.bindings`, shared with the consumers in `tracker.done`.

Publishing goes straight to the Publish RPC on the dispatcher's loop (`AsyncPublisher`,
grpc.aio), not through google-cloud-pubsub's batching `PublisherClient`: that one waits
for its batch latency (10 ms by default) on a timer thread, then starts a thread per
batch, and with message ordering on it makes one batch per ordering key anyway, i.e. one
message per batch for done-notifications. Here a notification leaves as soon as the
dispatcher has it; the dispatcher's pass is the batch (what was committed while the
previous pass ran goes out together, as concurrent RPCs on one channel).
"""

from __future__ import annotations

import asyncio
import os
import weakref
from typing import Any

from tracker import gcp, tracing
from tracker.bindings import done_attributes, ordering_key
from tracker.notices import DONE, kind_name
from tracker.stores.base import OutboxItem

EMULATOR_ENV = "PUBSUB_EMULATOR_HOST"


class AsyncPublisher:
    """Publish RPCs on the running asyncio loop, in order per ordering key.

    One grpc.aio client per event loop (a channel belongs to the loop it was made on;
    tests run sinks under several `asyncio.run`s). Messages with the same ordering key
    go out one after the other, in the order `publish` was called, as Pub/Sub's ordered
    delivery needs (a PublishRequest holds one key only); other keys do not wait.
    Credentials are checked when it is made, so a missing one fails start-up.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        if not os.environ.get(EMULATOR_ENV):
            import google.auth

            gcp.client(what, google.auth.default)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        # The last publish of each (topic, ordering key) still running, for the next to await.
        self._tails: dict[tuple[str, str], asyncio.Future[None]] = {}

    def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            from google.pubsub_v1.services.publisher import PublisherAsyncClient

            client = gcp.client(self.what, PublisherAsyncClient)
            self._clients[loop] = client
        return client

    async def publish(
        self,
        topic: str,
        data: bytes,
        *,
        ordering_key: str,
        attributes: dict[str, str],
        timeout: float,
    ) -> str:
        """Publish one message and wait for Pub/Sub to take it; its message id. Raises
        what the RPC raised (the outbox row stays pending and is retried)."""
        from google.pubsub_v1 import PubsubMessage

        message = PubsubMessage(data=data, attributes=attributes, ordering_key=ordering_key)
        key = (topic, ordering_key)
        loop = asyncio.get_running_loop()
        before = self._tails.get(key) if ordering_key else None
        if before is not None and before.get_loop() is not loop:
            before = None  # left by a loop that has gone: nothing of it runs any more
        mine: asyncio.Future[None] = loop.create_future()
        if ordering_key:
            self._tails[key] = mine
        try:
            if before is not None:
                await asyncio.shield(before)  # only its end matters, not how it ended
            response = await asyncio.wait_for(
                self._client().publish(topic=topic, messages=[message], timeout=timeout),
                timeout,
            )
            return str(response.message_ids[0])
        finally:
            mine.set_result(None)
            if self._tails.get(key) is mine:
                del self._tails[key]


class PubSubSink:
    """Outbox sink publishing to the completion topic; raises so the row stays pending."""

    name = "pubsub"
    kinds: frozenset[int] = frozenset({DONE})
    targets = False

    def __init__(
        self, topic: str, publisher: AsyncPublisher | None = None, timeout: float = 30
    ) -> None:
        self.topic = topic
        self.timeout = timeout
        self.publisher = publisher or AsyncPublisher(f"--done-topic {topic}")

    async def deliver(self, item: OutboxItem) -> None:
        operation = item.operation
        notice = item.notice
        with tracing.delivery_span(
            notice.traceparent, notice.tracestate, span_attributes(self.topic, item)
        ) as trace:
            await self.publisher.publish(
                self.topic,
                operation.SerializeToString(),
                ordering_key=ordering_key(operation),
                attributes=done_attributes(item.id, operation, item.created_at, trace=trace),
                timeout=self.timeout,
            )


def span_attributes(topic: str, item: OutboxItem) -> dict[str, str | int]:
    """What a `tracker.notify` span of a Pub/Sub delivery says of it."""
    return {
        "messaging.system": "gcp_pubsub",
        "messaging.operation.type": "send",
        "messaging.destination.name": topic,
        "messaging.message.id": item.id,
        "tracker.notice": kind_name(item.notice.kind),
        "tracker.operation": item.operation.name or item.notice.operation,
    }


__all__ = ["AsyncPublisher", "PubSubSink", "span_attributes"]
