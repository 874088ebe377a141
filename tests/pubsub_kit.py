"""Pub/Sub helpers for tests: admin and client calls bound to the emulator, and a drain."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
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
