"""End to end on the Google Cloud path, every piece a real server on loopback.

A worker publishes created -> progress x N -> succeeded to a pstest topic; the tracker
(schema applied by `tracker schema apply`, store on handy-spanner) takes the events by
streaming pull, or through its push endpoint; the done-notification reaches a filtered
subscriber; Google's OperationsClient reads the operation from the tracker's gRPC port.

pstest records push configs but does not deliver them, so the push variant relays
each pulled message as Pub/Sub would: POST the push envelope, ack only on 2xx.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from google.api_core import operations_v1
from google.protobuf import struct_pb2

from tests.conftest import INSTANCE, PROJECT, SPANNER_SERVER
from tests.emulators import harness
from tests.helpers import ROOT, make_event
from tests.pubsub_kit import PubSub, filtered
from tracker.client import wait_done
from tracker.config import Config
from tracker.events import Kind
from tracker.server import Server, running
from tracker.v1 import operation_pb2

STEPS = 5
OTHER = 'attributes.operation_type = "other"'  # no operation of that type


@pytest.fixture
def spanner_db(
    spanner_hosts: dict[str, str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> str:
    """A database created and migrated by the real `tracker schema apply` command."""
    monkeypatch.setenv("SPANNER_EMULATOR_HOST", spanner_hosts[SPANNER_SERVER["spanner-handy"]])
    for key, value in harness.SPANNER_CLIENT_ENV.items():
        monkeypatch.setenv(key, value)
    database_id = f"e2e{abs(hash(request.node.name)) % 10**6}"
    path = f"projects/{PROJECT}/instances/{INSTANCE}/databases/{database_id}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracker.cli",
            "schema",
            "apply",
            "--store",
            "spanner",
            "--spanner-database",
            path,
            "--variant",
            "emulator",
            "--create-database",
        ],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "applied 1" in result.stdout
    return path


def worker(pubsub: PubSub, topic: str, name: str) -> None:
    """What a producer does: created, progress x N, succeeded, ordered by operation."""
    pubsub.publish(
        topic,
        make_event(
            Kind.CREATED, name, seq=0, data={"operation_type": "e2e", "labels": {"team": "data"}}
        ),
    )
    for i in range(1, STEPS + 1):
        pubsub.publish(
            topic,
            make_event(
                Kind.PROGRESS,
                name,
                seq=i,
                data={"percent": i * 100 / (STEPS + 1), "message": f"step {i}"},
            ),
        )
    result = struct_pb2.Struct()
    result.update({"rows": 42})
    from google.protobuf import any_pb2

    response = any_pb2.Any()
    response.Pack(result)
    pubsub.publish(
        topic, make_event(Kind.SUCCEEDED, name, seq=STEPS + 1, data={"response": response})
    )


def check_everything(
    server: Server, pubsub: PubSub, done_sub: str, other_sub: str, name: str
) -> None:
    # A consumer waits on its filtered subscription of the completion topic.
    notified = wait_done(done_sub, name, timeout=90)
    assert notified.done
    # Filtered out: not its operation type (Google's emulator delivers it; `filtered`).
    assert filtered(pubsub, pubsub.pull_all(other_sub), OTHER, published=1) == []

    client = operations_v1.OperationsClient(grpc.insecure_channel(server.grpc_target))
    op = client.get_operation(name)
    assert op.done and not op.HasField("error")
    rows = struct_pb2.Struct()
    assert op.response.Unpack(rows) and rows["rows"] == 42
    meta = operation_pb2.OperationMetadata()
    assert op.metadata.Unpack(meta)
    assert meta.operation_type == "e2e" and dict(meta.labels) == {"team": "data"}
    assert meta.last_sequence == STEPS + 1 and meta.message == f"step {STEPS}"
    listed = list(client.list_operations("operations", 'labels.team = "data"'))
    assert [o.name for o in listed] == [name]
    assert notified == op


@pytest.fixture
def topics(pubsub_env: str) -> Iterator[tuple[PubSub, str, str, str, str, str]]:
    pubsub = PubSub()
    events, done = pubsub.topic(), pubsub.topic()
    events_sub = pubsub.subscription(events)
    done_sub = pubsub.subscription(done, 'attributes.operation_type = "e2e"')
    other_sub = pubsub.subscription(done, OTHER)
    yield pubsub, events, events_sub, done, done_sub, other_sub


def config(spanner_db: str, **kwargs: Any) -> Config:
    return Config(
        store="spanner",
        spanner_database=spanner_db,
        spanner_explicit_begin=True,
        http_port=0,
        grpc_port=0,
        **kwargs,
    )


def test_pull_end_to_end(spanner_db: str, topics: tuple[PubSub, str, str, str, str, str]) -> None:
    pubsub, events, events_sub, done, done_sub, other_sub = topics
    with running(config(spanner_db, subscription=events_sub, done_topic=done)) as server:
        worker(pubsub, events, "operations/e2e-pull")
        check_everything(server, pubsub, done_sub, other_sub, "operations/e2e-pull")


def relay_push(pubsub: PubSub, subscription: str, url: str, stop: threading.Event) -> None:
    """Deliver like a Pub/Sub push subscription: envelope POST, ack on 2xx, else nack."""
    with httpx.Client(timeout=30) as http:
        while not stop.is_set():
            try:
                response = pubsub.subscriber.pull(
                    subscription=subscription, max_messages=10, timeout=2
                )
            except Exception:
                continue
            for received in response.received_messages:
                m = received.message
                envelope = {
                    "message": {
                        "attributes": dict(m.attributes),
                        "data": base64.b64encode(m.data).decode(),
                        "messageId": m.message_id,
                        "publishTime": m.publish_time.isoformat().replace("+00:00", "Z"),
                        "orderingKey": m.ordering_key,
                    },
                    "subscription": subscription,
                    "deliveryAttempt": received.delivery_attempt or 1,
                }
                answer = http.post(f"{url}/v1/pubsub/push", json=envelope)
                if answer.status_code in (102, 200, 201, 202, 204):
                    pubsub.subscriber.acknowledge(
                        subscription=subscription, ack_ids=[received.ack_id]
                    )
                else:
                    pubsub.subscriber.modify_ack_deadline(
                        subscription=subscription, ack_ids=[received.ack_id], ack_deadline_seconds=0
                    )


def test_push_end_to_end(spanner_db: str, topics: tuple[PubSub, str, str, str, str, str]) -> None:
    pubsub, events, events_sub, done, done_sub, other_sub = topics
    with running(config(spanner_db, done_topic=done)) as server:
        stop = threading.Event()
        relay = threading.Thread(
            target=relay_push, args=(pubsub, events_sub, server.http_url, stop)
        )
        relay.start()
        try:
            worker(pubsub, events, "operations/e2e-push")
            check_everything(server, pubsub, done_sub, other_sub, "operations/e2e-push")
        finally:
            stop.set()
            relay.join(30)
