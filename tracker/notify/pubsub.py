"""Done-notifications on a Pub/Sub completion topic: the sink of the outbox dispatcher.

The message format (attributes, data, the rule that keeps attributes within Pub/Sub's
limits) is `tracker.bindings`, shared with the consumers in `tracker.done`.
"""

from __future__ import annotations

import asyncio

import google.cloud.pubsub_v1 as pubsub_v1
from google.api_core import exceptions as gexc

from tracker import gcp
from tracker.bindings import done_attributes, ordering_key
from tracker.notices import DONE
from tracker.stores.base import OutboxItem


class PubSubSink:
    """Outbox sink publishing to the completion topic; raises so the row stays pending."""

    name = "pubsub"
    kinds: frozenset[int] = frozenset({DONE})
    targets = False

    def __init__(
        self, topic: str, publisher: pubsub_v1.PublisherClient | None = None, timeout: float = 30
    ) -> None:
        self.topic = topic
        self.timeout = timeout
        self.publisher = publisher or ordered_publisher(f"--done-topic {topic}")

    async def deliver(self, item: OutboxItem) -> None:
        operation = item.operation
        await publish(
            self.publisher,
            self.topic,
            operation.SerializeToString(),
            ordering_key=ordering_key(operation),
            attributes=done_attributes(item.id, operation),
            timeout=self.timeout,
        )


def ordered_publisher(flag: str) -> pubsub_v1.PublisherClient:
    """A publisher with message ordering on; `flag` names the setting in a start-up error."""
    return gcp.client(
        flag,
        lambda: pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        ),
    )


async def publish(
    publisher: pubsub_v1.PublisherClient,
    topic: str,
    data: bytes,
    *,
    ordering_key: str,
    attributes: dict[str, str],
    timeout: float,
) -> None:
    """Publish one message and wait for Pub/Sub to take it; raise (the row stays pending)."""
    future = publisher.publish(topic, data, ordering_key=ordering_key, **attributes)
    try:
        # Awaited on the loop, not in a worker thread: a hanging publish must not
        # hold a thread that ingest needs.
        await asyncio.wait_for(asyncio.wrap_future(future), timeout)
    except (gexc.GoogleAPICallError, TimeoutError, RuntimeError):
        # A failed publish pauses its ordering key; resume so the retry can go out.
        if ordering_key:
            publisher.resume_publish(topic, ordering_key)
        raise
