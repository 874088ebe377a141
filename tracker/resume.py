"""Consumers of the control topic: resume and cancel notices, for the code doing the work.

    from tracker.resume import subscribe_notices, iter_notices

    def on_notice(n):
        if n.kind == "resume":
            start(n.operation, attempt=n.attempt, from_checkpoint=n.has_checkpoint)
        else:
            stop(n.operation)

    future = subscribe_notices("projects/p/subscriptions/export-workers", on_notice)

    for n in iter_notices("projects/p/subscriptions/export-workers", idle_timeout=600):
        ...  # acked when the loop asks for the next one

A worker pool receives only its own notices by a subscription filter on the attributes
(`tracker.bindings` lists them), set when the subscription is created:

    gcloud pubsub subscriptions create export-workers --topic tracker-control \\
        --enable-message-ordering \\
        --message-filter='attributes.operation_type = "export" AND attributes.kind = "resume"'

Notices can be redelivered; each carries a stable id (`ce-id`). The rules are
`tracker.done.subscribe_done`'s: the callback runs until it returns once per id within a
process (an id counts as handled only after its callback returned; then the message is
acked and later copies are dropped), a callback that raises gets the message nacked and
its redelivery runs the callback again, and one id never runs twice at once. Across
processes (two workers of one subscription after a redelivery) the id is the key to
de-duplicate by, e.g. the attempt's start recorded once in the worker's own store; the
tracker itself counts events of an attempt already superseded as late.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1

from tracker.bindings import ControlNotice, parse_notice
from tracker.done import Redeliver, subscribe_parsed

log = logging.getLogger(__name__)


def subscribe_notices(
    subscription: str,
    callback: Callable[[ControlNotice], None],
    *,
    subscriber: pubsub_v1.SubscriberClient | None = None,
) -> Any:
    """Streaming pull of control notices; returns the StreamingPullFuture (`.cancel()`).

    Messages that are not control notices (another format on the same topic) are acked
    and dropped.
    """
    return subscribe_parsed(subscription, parse_notice, callback, subscriber=subscriber)


class _Handoff:
    """One notice passed from the subscriber's thread to the iterating one, and back the
    word whether the loop's body finished with it."""

    def __init__(self, note: ControlNotice) -> None:
        self.note = note
        self.finished = threading.Event()
        self.handled = False

    def settle(self, handled: bool) -> None:
        self.handled = handled
        self.finished.set()


_SHUTDOWN_SECONDS = 30.0


def iter_notices(
    subscription: str,
    *,
    idle_timeout: float | None = None,
    subscriber: pubsub_v1.SubscriberClient | None = None,
) -> Iterator[ControlNotice]:
    """The notices one at a time; each is acked when the loop asks for the next one.

    A loop that breaks or raises leaves the notice it was on (and any the subscriber
    already held) unacked: they are redelivered. The iterator ends after `idle_timeout`
    seconds without a notice (None: never). Same de-duplication as `subscribe_notices`.
    """
    handoffs: queue.Queue[_Handoff] = queue.Queue()
    closed = threading.Event()
    client = subscriber or pubsub_v1.SubscriberClient()
    # Ack ids of the notices the loop did not finish. They are nacked only after the
    # stream has closed: a nack while it is open lets the server hand the notice straight
    # back on that same stream, and a notice outstanding on a stream when it closes waits
    # out its ack deadline (60 s as the client sets it) on Google's Pub/Sub emulator
    # (tests/README.md); pstest lets go of it when the stream ends.
    unfinished: list[str] = []
    lock = threading.Lock()

    def on_notice(note: ControlNotice) -> None:
        handoff = _Handoff(note)
        handoffs.put(handoff)
        if closed.is_set():  # put after the loop's end drained the queue: back it goes
            handoff.settle(False)
        handoff.finished.wait()
        if not handoff.handled:
            raise Redeliver(note.id)  # the loop stopped before finishing it

    def answer(message: Any, handled: bool) -> None:
        if handled:
            message.ack()
            return
        message.drop()  # no more lease extensions; nacked below, once the stream is closed
        with lock:
            unfinished.append(message.ack_id)

    future = subscribe_parsed(
        subscription,
        parse_notice,
        on_notice,
        subscriber=client,
        answer=answer,
        await_callbacks_on_shutdown=True,
    )
    current: _Handoff | None = None
    try:
        while True:
            try:
                current = handoffs.get(timeout=idle_timeout)
            except queue.Empty:
                return
            yield current.note
            current.settle(True)
            current = None
    finally:
        closed.set()
        if current is not None:
            current.settle(False)
        _give_back(handoffs)
        future.cancel()
        # The subscriber shuts down after every callback has returned (each unfinished
        # notice's ack id recorded), then the nacks go out with no stream left to take
        # them: the next subscriber gets them at once.
        with contextlib.suppress(Exception):
            future.result(timeout=_SHUTDOWN_SECONDS)
        _give_back(handoffs)
        with lock:
            ack_ids, unfinished[:] = list(unfinished), []
        for start in range(0, len(ack_ids), _NACK_BATCH):
            try:
                client.modify_ack_deadline(
                    subscription=subscription,
                    ack_ids=ack_ids[start : start + _NACK_BATCH],
                    ack_deadline_seconds=0,
                )
            except Exception:  # they come back at their ack deadline instead
                log.warning("could not give back %d notices on %s", len(ack_ids), subscription)
                break


_NACK_BATCH = 1000


def _give_back(handoffs: queue.Queue[_Handoff]) -> None:
    while True:
        try:
            handoffs.get_nowait().settle(False)
        except queue.Empty:
            return


__all__ = ["ControlNotice", "iter_notices", "parse_notice", "subscribe_notices"]
