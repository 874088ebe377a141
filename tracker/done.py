"""Consumers of the completion topic: receive done-notifications, or wait for one.

    from tracker.done import subscribe_done, wait_done

    future = subscribe_done("projects/p/subscriptions/mine", lambda n: print(n.operation.name))
    operation = wait_done("projects/p/subscriptions/mine", "operations/job-1", timeout=600)

Create the subscription with a filter to receive only your operations, e.g.
`attributes.operation_type = "export"` or `attributes.label_team = "data"`
(tracker/notify/pubsub.py lists the attributes). Notifications can be redelivered;
each carries a stable id (`ce-id`), and `subscribe_done` drops ids it has already seen.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
from google.longrunning import operations_pb2

from tracker.errors import InvalidArgument
from tracker.notify.pubsub import DONE_TYPE


@dataclass(frozen=True)
class DoneNotification:
    id: str
    operation: operations_pb2.Operation
    attributes: dict[str, str]


def parse_done(attributes: dict[str, str], data: bytes) -> DoneNotification:
    if attributes.get("ce-type") != DONE_TYPE:
        raise InvalidArgument(f"not a done-notification (ce-type {attributes.get('ce-type')!r})")
    return DoneNotification(
        id=attributes.get("ce-id", ""),
        operation=operations_pb2.Operation.FromString(data),
        attributes=dict(attributes),
    )


class _Seen:
    """The last few thousand notification ids, to drop redeliveries."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.ids: OrderedDict[str, None] = OrderedDict()
        self.lock = threading.Lock()

    def first_time(self, item_id: str) -> bool:
        with self.lock:
            if item_id in self.ids:
                return False
            self.ids[item_id] = None
            if len(self.ids) > self.size:
                self.ids.popitem(last=False)
            return True


def subscribe_done(
    subscription: str,
    callback: Callable[[DoneNotification], None],
    *,
    subscriber: pubsub_v1.SubscriberClient | None = None,
) -> Any:
    """Streaming pull; `callback` runs once per notification, then it is acked.

    Returns the StreamingPullFuture: `.cancel()` to stop. A callback that raises gets
    the message redelivered.
    """
    client = subscriber or pubsub_v1.SubscriberClient()
    seen = _Seen()

    def on_message(message: Any) -> None:
        try:
            note = parse_done(dict(message.attributes), bytes(message.data))
        except (InvalidArgument, ValueError):
            message.ack()  # not ours to handle
            return
        if seen.first_time(note.id):
            callback(note)
        message.ack()

    return client.subscribe(subscription, on_message)


def wait_done(
    subscription: str,
    name: str,
    timeout: float | None = None,
    *,
    subscriber: pubsub_v1.SubscriberClient | None = None,
) -> operations_pb2.Operation:
    """Block until the done-notification of `name` arrives; TimeoutError otherwise.

    Notifications of other operations on the subscription are acknowledged: give each
    waiter its own (filtered) subscription.
    """
    got: list[operations_pb2.Operation] = []
    arrived = threading.Event()

    def on_done(note: DoneNotification) -> None:
        if note.operation.name == name:
            got.append(note.operation)
            arrived.set()

    future = subscribe_done(subscription, on_done, subscriber=subscriber)
    try:
        if not arrived.wait(timeout):
            raise TimeoutError(f"no done-notification for {name} within {timeout} s")
    finally:
        future.cancel()
    return got[0]
