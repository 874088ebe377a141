"""Pub/Sub helpers for tests: admin and client calls bound to the emulator, and a drain."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1

from tracker.bindings import to_binary, to_structured
from tracker.events import Event
from tracker.server import Server
from tracker.sources.pubsub_pull import PullSubscriber

PROJECT = "tracker-test"


_names = itertools.count()


class PubSub:
    """Admin and client helpers bound to the pstest server."""

    def __init__(self) -> None:
        self.publisher = pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        )
        self.subscriber = pubsub_v1.SubscriberClient()

    # Names are `<prefix>topic-N` / `<prefix>sub-N`: another process on the same emulator
    # (a bench beside a test session) sets a prefix of its own.
    prefix = ""

    def topic(self) -> str:
        name = f"projects/{PROJECT}/topics/{self.prefix}topic-{next(_names)}"
        self.publisher.create_topic(name=name)
        return name

    def subscription(self, topic: str, filter: str = "", ordered: bool = True) -> str:
        name = f"projects/{PROJECT}/subscriptions/{self.prefix}sub-{next(_names)}"
        self.subscriber.create_subscription(
            request={
                "name": name,
                "topic": topic,
                "filter": filter,
                "enable_message_ordering": ordered,
                "ack_deadline_seconds": 10,
            }
        )
        return name

    def publish(self, topic: str, event: Event, mode: str = "binary", **extra: str) -> None:
        headers, body = (to_binary if mode == "binary" else to_structured)(event)
        self.publisher.publish(
            topic, body, ordering_key=event.operation, **headers, **extra
        ).result(10)

    def applies_filters(self) -> bool:
        """Whether this session's server applies subscription filters (`applies_filters`)."""
        return applies_filters(os.environ["PUBSUB_EMULATOR_HOST"])

    def publish_raw(self, topic: str, data: bytes, **attributes: str) -> None:
        self.publisher.publish(topic, data, **attributes).result(10)

    def pull_all(self, subscription: str) -> list[Any]:
        """Everything there is now, acked."""
        out: list[Any] = []
        while True:
            try:
                response = self.subscriber.pull(
                    subscription=subscription, max_messages=100, timeout=5
                )
            except Exception:
                return out
            if not response.received_messages:
                return out
            out += [r.message for r in response.received_messages]
            self.subscriber.acknowledge(
                subscription=subscription, ack_ids=[r.ack_id for r in response.received_messages]
            )


_FILTERING: dict[str, bool] = {}
_EQUALITY = re.compile(r'attributes\.([A-Za-z0-9_-]+) = "([^"\\]*)"')


def applies_filters(host: str) -> bool:
    """Probe (once per server): does the server at `host` deliver only the messages that
    match a subscription's filter? pstest does; Google's emulator stores the filter and
    delivers everything (tests/README.md). Needs PUBSUB_EMULATOR_HOST=host."""
    if host not in _FILTERING:
        assert os.environ.get("PUBSUB_EMULATOR_HOST") == host
        pubsub = PubSub()
        topic = pubsub.topic()
        sub = pubsub.subscription(topic, 'attributes.probe = "in"')
        # One ordering key: "out" comes before "in" wherever it is delivered at all.
        for value in ("out", "in"):
            pubsub.publisher.publish(topic, b"", ordering_key="probe", probe=value).result(10)
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while "in" not in seen:
            assert time.monotonic() < deadline, f"the probe's message never arrived: {seen}"
            seen += [m.attributes["probe"] for m in pubsub.pull_all(sub)]
        _FILTERING[host] = seen == ["in"]
    return _FILTERING[host]


def matches(filter: str, attributes: Any) -> bool:
    """Whether `attributes` satisfy `filter`, for the filters these tests write: equalities
    on attributes joined by AND (anything else is refused, not guessed at)."""
    terms = filter.split(" AND ")
    parsed = [_EQUALITY.fullmatch(term.strip()) for term in terms]
    if not all(parsed):
        raise ValueError(f"not a filter matches() reads: {filter!r}")
    return all(attributes.get(m.group(1)) == m.group(2) for m in parsed if m)


def filtered(pubsub: PubSub, messages: list[Any], filter: str, *, published: int) -> list[Any]:
    """What a subscription with `filter` got of `published` messages, as a server that
    applies filters delivers it. Where the server applies them, every message got must
    match. Where it does not (Google's emulator), it must have delivered all `published`
    (the gap is as tests/README.md says) and the messages whose attributes match are the
    ones a filtering server would have delivered."""
    matching = [m for m in messages if matches(filter, m.attributes)]
    if pubsub.applies_filters():
        assert matching == messages, [dict(m.attributes) for m in messages]
        return messages
    assert len(messages) == published, [dict(m.attributes) for m in messages]
    return matching


def drain(server: Server, subscription: str, **kwargs: Any) -> int:
    puller = PullSubscriber(server.tracker, subscription, **kwargs)
    loop: asyncio.AbstractEventLoop = server.loop  # type: ignore[attr-defined]
    return asyncio.run_coroutine_threadsafe(puller.drain(), loop).result(60)


GOOGLE_PUBSUB_EMULATOR = Path(
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
)


@contextlib.contextmanager
def google_emulator(log: Path) -> Iterator[str]:
    """Google's Pub/Sub emulator (the gcloud component on the machine image) on a free
    loopback port; yields its host:port."""
    import socket
    import subprocess

    from tests.emulators.harness import wait_for_grpc

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(GOOGLE_PUBSUB_EMULATOR), "--host=127.0.0.1", f"--port={port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        host = f"127.0.0.1:{port}"
        wait_for_grpc(host, 60)
        yield host
    finally:
        proc.terminate()
        proc.wait(30)
