"""Resume and cancel notices on a Pub/Sub control topic: an outbox sink.

The rows come from the transaction that decided them (a retry after a stall or a
retryable failure, the children's end, CancelOperation, a parent's cancel), so a crash
never loses one, and a redelivery carries the same id. A resume row of a retry is due
when its backoff has passed (its `next_attempt_at`): the dispatcher does not hand it
over before, so the notice arrives when the attempt may start.

The message format is `tracker.bindings` (`notice_attributes`, `notice_data`), shared
with the consumers in `tracker.resume`.
"""

from __future__ import annotations

from tracker import tracing
from tracker.bindings import notice_attributes, notice_data, notice_ordering_key
from tracker.notices import CANCEL, RESUME
from tracker.notify.pubsub import AsyncPublisher, span_attributes
from tracker.stores.base import OutboxItem


class ControlTopicSink:
    """Outbox sink publishing resume and cancel notices; raises so the row stays pending."""

    name = "control"
    kinds: frozenset[int] = frozenset({RESUME, CANCEL})
    targets = False

    def __init__(
        self, topic: str, publisher: AsyncPublisher | None = None, timeout: float = 30
    ) -> None:
        self.topic = topic
        self.timeout = timeout
        self.publisher = publisher or AsyncPublisher(f"--control-topic {topic}")

    async def deliver(self, item: OutboxItem) -> None:
        notice = item.notice
        with tracing.delivery_span(
            notice.traceparent, notice.tracestate, span_attributes(self.topic, item)
        ) as trace:
            await self.publisher.publish(
                self.topic,
                notice_data(notice),
                ordering_key=notice_ordering_key(notice),
                attributes=notice_attributes(
                    item.id, notice, item.operation, item.created_at, trace=trace
                ),
                timeout=self.timeout,
            )


__all__ = ["ControlTopicSink"]
