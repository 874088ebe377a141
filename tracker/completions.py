"""One completion-topic subscription shared by every waiter of a process.

    from tracker.completions import Completions

    with Completions.ephemeral("projects/p/topics/tracker-done") as completions:
        future = client.operation("operations/job-1", completions=completions)
        response = future.result(timeout=600)

A `Completions` owns one subscription (streaming pull) and routes each done-notification
to every callback watching that operation; it acknowledges a notification only after
all of them ran, so no waiter of the process loses a notification to another (contrast
`tracker.done.wait_done`, which needs a subscription per waiter). It also remembers the
last notifications it saw (`remember`), so a waiter that registers just after its
operation's notification went by still gets it; `OperationFuture` reads the operation
once after registering to cover notifications from before the subscription existed.

`Completions.ephemeral(topic)` creates a subscription of its own (with a filter, and an
expiration policy so an abandoned one is deleted by Pub/Sub) and deletes it on `close()`:
the shape for short-lived consumers. A long-lived service creates its subscription once
(deploy/ or `tracker dev`) and passes its name.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Self

import google.cloud.pubsub_v1 as pubsub_v1
from google.api_core import exceptions as gexc
from google.longrunning import operations_pb2

from tracker.bindings import DoneNotification, parse_done
from tracker.done import subscribe_parsed
from tracker.errors import InvalidArgument, NotFound

log = logging.getLogger(__name__)

Watcher = Callable[[operations_pb2.Operation], None]

# Pub/Sub's minimum expiration TTL is one day; an ephemeral subscription a consumer forgot
# to delete (it crashed) goes away a day after its last pull.
MIN_EXPIRATION = timedelta(days=1)


class Completions:
    """Routes the done-notifications of one subscription to the waiters of this process.

    Args:
        subscription: `projects/P/subscriptions/S` on the completion topic.
        subscriber: a SubscriberClient to use (one is created otherwise; closed on close).
        remember: how many of the latest notifications to keep for late waiters.
        delete_on_close: delete the subscription on `close()` (set by `ephemeral`).
    """

    def __init__(
        self,
        subscription: str,
        *,
        subscriber: pubsub_v1.SubscriberClient | None = None,
        remember: int = 10_000,
        delete_on_close: bool = False,
    ) -> None:
        self.subscription = subscription
        self._owns_client = subscriber is None
        self._client = subscriber or pubsub_v1.SubscriberClient()
        self._remember = max(0, remember)
        self._delete_on_close = delete_on_close
        self._lock = threading.Lock()
        self._watchers: dict[str, list[Watcher]] = {}
        self._recent: OrderedDict[str, operations_pb2.Operation] = OrderedDict()
        self._closed = False
        self.received = 0  # notifications routed (not counting duplicates dropped by id)
        self.error: Exception | None = None  # why the stream ended, if it ended by itself
        try:
            self._client.get_subscription(request={"subscription": subscription}, timeout=30)
        except gexc.NotFound as exc:
            if self._owns_client:
                self._client.close()
            raise NotFound(f"subscription {subscription} does not exist") from exc
        except gexc.GoogleAPICallError:
            pass  # may consume without the right to read it: the stream tells
        self._stream = subscribe_parsed(
            subscription, parse_done, self._route, subscriber=self._client
        )
        self._stream.add_done_callback(self._ended)

    @classmethod
    def ephemeral(
        cls,
        topic: str,
        *,
        filter: str = "",
        expire_after: timedelta = MIN_EXPIRATION,
        subscriber: pubsub_v1.SubscriberClient | None = None,
        prefix: str = "tracker-waiters",
        remember: int = 10_000,
    ) -> Completions:
        """A subscription of its own on `topic` (`projects/P/topics/T`), created now and
        deleted on close; Pub/Sub deletes it after `expire_after` without a pull if this
        process dies first. `filter` is a Pub/Sub filter on the notification attributes
        (docs/subscribing.md lists them)."""
        project = _project_of(topic)
        if expire_after < MIN_EXPIRATION:
            raise InvalidArgument(
                f"expire_after must be at least {MIN_EXPIRATION.days} day: Pub/Sub refuses "
                "a shorter expiration policy"
            )
        client = subscriber or pubsub_v1.SubscriberClient()
        name = f"projects/{project}/subscriptions/{prefix}-{uuid.uuid4().hex[:16]}"
        try:
            client.create_subscription(
                request={
                    "name": name,
                    "topic": topic,
                    "filter": filter,
                    "ack_deadline_seconds": 30,
                    "expiration_policy": {"ttl": expire_after},
                }
            )
        except gexc.NotFound as exc:
            if subscriber is None:
                client.close()
            raise InvalidArgument(f"topic {topic} does not exist: {exc.message}") from exc
        except gexc.InvalidArgument as exc:
            if subscriber is None:
                client.close()
            raise InvalidArgument(f"cannot subscribe to {topic}: {exc.message}") from exc
        completions = cls(name, subscriber=client, remember=remember, delete_on_close=True)
        completions._owns_client = subscriber is None
        return completions

    # ---- waiters ------------------------------------------------------------------------

    def watch(self, name: str, callback: Watcher) -> Callable[[], None]:
        """Call `callback(operation)` when `name`'s done-notification arrives (at once when
        one already did). Returns a function that stops watching. A callback runs on a
        subscriber thread and must not block; one that raises is logged and does not keep
        the notification from the other watchers."""
        with self._lock:
            seen = self._recent.get(name)
            if seen is None:
                self._watchers.setdefault(name, []).append(callback)
        if seen is not None:
            _call(callback, seen)
            return _nothing

        def unwatch() -> None:
            with self._lock:
                callbacks = self._watchers.get(name)
                if callbacks is None:
                    return
                try:
                    callbacks.remove(callback)
                except ValueError:
                    return
                if not callbacks:
                    del self._watchers[name]

        return unwatch

    def latest(self, name: str) -> operations_pb2.Operation | None:
        """The done operation of `name` if its notification is among those remembered."""
        with self._lock:
            return self._recent.get(name)

    def waiting(self) -> int:
        """How many callbacks are watching now."""
        with self._lock:
            return sum(len(callbacks) for callbacks in self._watchers.values())

    def _route(self, note: DoneNotification) -> None:
        operation = note.operation
        with self._lock:
            self.received += 1
            if self._remember:
                self._recent[operation.name] = operation
                self._recent.move_to_end(operation.name)
                while len(self._recent) > self._remember:
                    self._recent.popitem(last=False)
            callbacks = self._watchers.pop(operation.name, [])
        for callback in callbacks:
            _call(callback, operation)

    # ---- lifetime -----------------------------------------------------------------------

    def _ended(self, stream: Any) -> None:
        if stream.cancelled():
            return
        error = stream.exception()
        if error is not None and not self._closed:
            self.error = error
            log.error(
                "the completion subscription %s stopped: %s; its %d waiters get no more "
                "notifications",
                self.subscription,
                error,
                self.waiting(),
            )

    def close(self) -> None:
        """Stop pulling; delete the subscription when it was made by `ephemeral`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stream.cancel()
        with contextlib.suppress(Exception):
            self._stream.result(timeout=10)
        if self._delete_on_close:
            with contextlib.suppress(gexc.NotFound):
                self._client.delete_subscription(request={"subscription": self.subscription})
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _project_of(topic: str) -> str:
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "projects" or parts[2] != "topics" or not all(parts):
        raise InvalidArgument(f"topic must be projects/PROJECT/topics/TOPIC, got {topic!r}")
    return parts[1]


def _call(callback: Watcher, operation: operations_pb2.Operation) -> None:
    try:
        callback(operation)
    except Exception:
        log.exception("a waiter of %s failed", operation.name)


def _nothing() -> None:
    return None


__all__ = ["MIN_EXPIRATION", "Completions", "Watcher"]
