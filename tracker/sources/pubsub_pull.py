"""Pub/Sub pull: streaming pull with flow control, acked only after the store commit.

Messages that arrive together are applied as one batch (one transaction). For each
message, after the commit:
- applied, duplicate, stale or late: ack;
- poison (can never apply): published to the dead-letter topic if one is configured,
  else recorded in the store's dead-letter table, then acked;
- transient (store unavailable, dead-letter publish failed): nack, Pub/Sub redelivers.

`drain()` is the deterministic mode for tests and one-shot jobs (like arq's burst):
synchronous pulls until one comes back empty, then return.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
from google.api_core import exceptions as gexc

from tracker import gcp
from tracker.bindings import parse_pubsub
from tracker.errors import ConfigError, InvalidEvent, Unavailable
from tracker.events import Event
from tracker.service import Tracker

log = logging.getLogger(__name__)
ROUTE = "pull"


@dataclass(frozen=True)
class _Ended:
    """The streaming pull stopped for good."""

    error: BaseException


@dataclass
class Incoming:
    """One pulled message, whichever API pulled it."""

    attributes: dict[str, str]
    data: bytes
    message_id: str
    publish_time: datetime | None
    ack: Callable[[], None] = field(repr=False)
    nack: Callable[[], None] = field(repr=False)


class PullSubscriber:
    def __init__(
        self,
        tracker: Tracker,
        subscription: str,
        *,
        dead_letter_topic: str = "",
        max_outstanding: int = 1000,
        max_batch: int = 200,
        subscriber: pubsub_v1.SubscriberClient | None = None,
        publisher: pubsub_v1.PublisherClient | None = None,
    ) -> None:
        self.tracker = tracker
        self.subscription = subscription
        self.dead_letter_topic = dead_letter_topic
        self.max_outstanding = max_outstanding
        self.max_batch = max_batch
        self.ordered: bool | None = None  # read from the subscription by run()
        self.subscriber = subscriber or gcp.client(
            f"--subscription {subscription}", pubsub_v1.SubscriberClient
        )
        self._publisher = publisher
        self._queue: asyncio.Queue[Incoming | _Ended] | None = None
        self._future: Any = None

    @property
    def publisher(self) -> pubsub_v1.PublisherClient:
        if self._publisher is None:
            self._publisher = gcp.client(
                f"--dead-letter-topic {self.dead_letter_topic}", pubsub_v1.PublisherClient
            )
        return self._publisher

    # ---- handling ----------------------------------------------------------------------

    async def handle(self, messages: Sequence[Incoming]) -> None:
        """Apply a batch of messages and ack or nack each; never raises.

        Poison (a message that can never apply, whatever the reason) is dead-lettered
        and acked, alone: the others of the batch still apply together. Only a store
        that is unavailable nacks, for a redelivery.
        """
        good: list[tuple[Incoming, Event]] = []
        for message in messages:
            try:
                event = parse_pubsub(
                    message.attributes,
                    message.data,
                    self.tracker.rules,
                    received=message.publish_time,
                )
            except Exception as exc:
                await self._poison(message, self.tracker.as_poison(ROUTE, exc))
                continue
            good.append((message, event))
        if not good:
            return
        try:
            results = await self.tracker.ingest_each([e for _, e in good], route=ROUTE)
        except Unavailable as exc:
            self._transient(good, exc)
            return
        except Exception:
            # Not one of ours: find which message it is by applying each alone.
            for message, event in good:
                await self._one(message, event)
            return
        for (message, _), result in zip(good, results, strict=True):
            if isinstance(result, InvalidEvent):
                await self._poison(message, result)
            else:
                message.ack()

    async def _one(self, message: Incoming, event: Event) -> None:
        try:
            await self.tracker.ingest([event], route=ROUTE)
        except Unavailable as exc:
            self._transient([(message, event)], exc)
        except Exception as exc:
            await self._poison(message, self.tracker.as_poison(ROUTE, exc))
        else:
            message.ack()

    def _transient(self, batch: Sequence[tuple[Incoming, Event]], exc: Exception) -> None:
        self.tracker.metrics.transient.labels(route=ROUTE).inc(len(batch))
        log.warning("store unavailable, %d messages will be redelivered: %s", len(batch), exc)
        for message, _ in batch:
            message.nack()

    async def _poison(self, message: Incoming, exc: InvalidEvent) -> None:
        """Record and ack; if even recording fails, nack so that nothing is lost."""
        try:
            if self.dead_letter_topic:
                self.tracker.rejected(ROUTE, exc)
                attributes = dict(message.attributes)
                attributes.update(
                    {
                        "tracker-reason": exc.reason,
                        "tracker-detail": exc.message[:1000],
                        "tracker-message-id": message.message_id,
                    }
                )
                future = self.publisher.publish(self.dead_letter_topic, message.data, **attributes)
                await asyncio.to_thread(future.result, 30)
            else:
                await self.tracker.dead_letter(
                    route=ROUTE,
                    exc=exc,
                    attributes=message.attributes,
                    body=message.data,
                    message_id=message.message_id,
                )
        except Exception as failure:
            log.warning("could not record poison message %s: %s", message.message_id, failure)
            message.nack()  # never lose it: try again on redelivery
            return
        message.ack()

    # ---- streaming pull ----------------------------------------------------------------

    async def run(self) -> None:
        """Streaming pull until stop(); callbacks hand messages to this loop in batches.

        The client retries transient errors itself; when its stream ends for good (no
        such subscription, no permission) this raises ConfigError with the reason.
        """
        loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        queue = self._queue

        def callback(message: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, _from_streaming(message))

        def ended(future: Any) -> None:
            error = None if future.cancelled() else future.exception()
            if error is not None:
                loop.call_soon_threadsafe(queue.put_nowait, _Ended(error))

        self.ordered = await loop.run_in_executor(None, self.check_ordering)
        self._future = self.subscriber.subscribe(
            self.subscription,
            callback,
            flow_control=pubsub_v1.types.FlowControl(max_messages=self.max_outstanding),
        )
        self._future.add_done_callback(ended)
        log.info("pulling from %s", self.subscription)
        try:
            while True:
                batch = [await queue.get()]
                while not queue.empty() and len(batch) < self.max_batch:
                    batch.append(queue.get_nowait())
                for item in batch:
                    if isinstance(item, _Ended):
                        raise ConfigError(f"--subscription {self.subscription}: {item.error}")
                incoming = [i for i in batch if isinstance(i, Incoming)]
                try:
                    await self.handle(incoming)
                except Exception:  # handle() catches per message; this is the last net
                    log.exception("pull: unexpected error; %d messages nacked", len(incoming))
                    for message in incoming:
                        message.nack()
        finally:
            self.stop()

    def check_ordering(self) -> bool | None:
        """Whether the subscription delivers in order (None: it cannot be read, e.g. the
        caller may consume but not get it). Unordered delivery is correct (the final state
        does not depend on the order: docs/semantics.md) but applies more events as stale
        or late, so it is worth a warning that names the fix: ordering is fixed when a
        subscription is created."""
        from google.api_core import exceptions as gexc

        try:
            found = self.subscriber.get_subscription(
                request={"subscription": self.subscription}, timeout=10
            )
        except gexc.GoogleAPICallError:
            return None  # no such subscription: the stream says so, with the reason
        if found.enable_message_ordering:
            return True
        short = self.subscription.rsplit("/", 1)[-1]
        topic = found.topic.rsplit("/", 1)[-1]
        log.warning(
            "--subscription %s does not have message ordering: events will still apply "
            "correctly, but out of order, with more of them stale or late. Ordering is set "
            "when a subscription is created: `gcloud pubsub subscriptions create %s-ordered "
            "--topic %s --enable-message-ordering`, then serve with that one",
            self.subscription,
            short,
            topic,
        )
        return False

    def stop(self) -> None:
        if self._future is not None:
            self._future.cancel()
            self._future = None

    # ---- drain -------------------------------------------------------------------------

    async def drain(self, *, pull_timeout: float = 5.0) -> int:
        """Pull and apply until a pull returns nothing; returns how many were handled."""
        handled = 0
        while True:
            try:
                response = await asyncio.to_thread(
                    self.subscriber.pull,
                    subscription=self.subscription,
                    max_messages=self.max_batch,
                    timeout=pull_timeout,
                )
            except gexc.DeadlineExceeded:
                return handled
            received = list(response.received_messages)
            if not received:
                return handled
            acks: list[str] = []
            nacks: list[str] = []
            await self.handle([_from_pull(r, acks, nacks) for r in received])
            # One acknowledge call per pull, after every commit of the batch.
            if acks:
                await asyncio.to_thread(
                    self.subscriber.acknowledge, subscription=self.subscription, ack_ids=acks
                )
            if nacks:
                await asyncio.to_thread(
                    self.subscriber.modify_ack_deadline,
                    subscription=self.subscription,
                    ack_ids=nacks,
                    ack_deadline_seconds=0,
                )
            handled += len(received)


def _from_pull(received: Any, acks: list[str], nacks: list[str]) -> Incoming:
    message = received.message
    return Incoming(
        attributes=dict(message.attributes),
        data=bytes(message.data),
        message_id=message.message_id,
        publish_time=_publish_time(message.publish_time),
        ack=lambda: acks.append(received.ack_id),
        nack=lambda: nacks.append(received.ack_id),
    )


def _publish_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def _from_streaming(message: Any) -> Incoming:
    return Incoming(
        attributes=dict(message.attributes),
        data=bytes(message.data),
        message_id=message.message_id,
        publish_time=_publish_time(message.publish_time),
        ack=message.ack,
        nack=message.nack,
    )
