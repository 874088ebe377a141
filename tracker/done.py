"""Consumers of the completion topic: receive done-notifications, or wait for one.

    from tracker.done import subscribe_done, wait_done

    future = subscribe_done("projects/p/subscriptions/mine", lambda n: print(n.operation.name))
    operation = wait_done("projects/p/subscriptions/mine", "operations/job-1", timeout=600)

Create the subscription with a filter to receive only your operations, e.g.
`attributes.operation_type = "export"` or `attributes.label_team = "data"`
(tracker/bindings.py lists the attributes). Notifications can be redelivered;
each carries a stable id (`ce-id`). `subscribe_done` runs the callback until it returns
once per id: an id counts as handled only after its callback returned (then the message
is acked and redeliveries are dropped); a callback that raises gets the message nacked
and its redelivery runs the callback again. Nothing is lost, and the callback never runs
twice at once for one id.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import google.cloud.pubsub_v1 as pubsub_v1
from google.longrunning import operations_pb2

from tracker.bindings import DoneNotification, parse_done
from tracker.errors import InvalidArgument, clip

log = logging.getLogger(__name__)


class _Claim(enum.Enum):
    """What to do with one delivery."""

    MINE = "mine"  # run the callback
    SEEN = "seen"  # handled before: ack, drop
    BUSY = "busy"  # another delivery of it is running the callback right now


class _Seen:
    """The last few thousand handled notification ids, and those being handled now.

    An id is marked handled only after its callback returned, so a failed callback's
    redelivery runs it again; `claim` keeps two deliveries of one id from running the
    callback at the same time.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.ids: OrderedDict[str, None] = OrderedDict()
        self.in_flight: set[str] = set()
        self.lock = threading.Lock()

    def claim(self, item_id: str) -> _Claim:
        with self.lock:
            if item_id in self.ids:
                return _Claim.SEEN
            if item_id in self.in_flight:
                return _Claim.BUSY
            self.in_flight.add(item_id)
            return _Claim.MINE

    def release(self, item_id: str, *, handled: bool) -> None:
        with self.lock:
            self.in_flight.discard(item_id)
            if handled:
                self.ids[item_id] = None
                if len(self.ids) > self.size:
                    self.ids.popitem(last=False)


def subscribe_done(
    subscription: str,
    callback: Callable[[DoneNotification], None],
    *,
    subscriber: pubsub_v1.SubscriberClient | None = None,
) -> Any:
    """Streaming pull; `callback` runs until it returns once per notification id.

    Returns the StreamingPullFuture: `.cancel()` to stop. After the callback returns the
    id is remembered and the message acked. A callback that raises is logged, the id is
    not remembered and the message is nacked: its redelivery runs the callback again. A
    delivery of an id whose callback is running at that moment (Pub/Sub may deliver a
    duplicate concurrently) is released untouched (`drop()`): Pub/Sub redelivers it
    after its lease expires, when it is either handled (then acked) or retried.
    Notifications without an id are not deduplicated.
    """
    return subscribe_parsed(subscription, parse_done, callback, subscriber=subscriber)


class Redeliver(Exception):
    """Raised by a callback to leave the message for redelivery without an error logged."""


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


N = TypeVar("N", bound=_Identified)


def subscribe_parsed(
    subscription: str,
    parse: Callable[[dict[str, str], bytes], N],
    callback: Callable[[N], None],
    *,
    subscriber: pubsub_v1.SubscriberClient | None = None,
    answer: Callable[[Any, bool], None] | None = None,
    await_callbacks_on_shutdown: bool = False,
) -> Any:
    """`subscribe_done`'s rules for any message format: `parse` turns a message into a
    note with an `id` (InvalidArgument or ValueError: not ours, acked and dropped).

    `answer(message, handled)` settles a message after its callback (default: ack, or
    nack when the callback raised)."""
    client = subscriber or pubsub_v1.SubscriberClient()
    reply = answer or _answer
    seen = _Seen()

    def on_message(message: Any) -> None:
        try:
            note = parse(dict(message.attributes), bytes(message.data))
        except (InvalidArgument, ValueError):
            message.ack()  # not ours to handle
            return
        if not note.id:
            reply(message, _call(callback, note))
            return
        claim = seen.claim(note.id)
        if claim is _Claim.SEEN:
            message.ack()
            return
        if claim is _Claim.BUSY:
            message.drop()
            return
        handled = False
        try:
            handled = _call(callback, note)
        finally:
            seen.release(note.id, handled=handled)
        reply(message, handled)

    return client.subscribe(
        subscription, on_message, await_callbacks_on_shutdown=await_callbacks_on_shutdown
    )


def _call(callback: Callable[[N], None], note: N) -> bool:
    """True when the callback returned; False (logged) when it raised."""
    try:
        callback(note)
    except Redeliver:
        return False
    except Exception:
        log.exception("notification callback failed for %s; redelivery retries", clip(note.id))
        return False
    return True


def _answer(message: Any, handled: bool) -> None:
    if handled:
        message.ack()
    else:
        message.nack()


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
