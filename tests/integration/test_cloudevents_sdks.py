"""Done-notifications decoded by the CloudEvents SDKs, as they come from a running tracker.

A tracker with `--done-topic` on the session's Pub/Sub emulator publishes the end of two
operations (one succeeded, one failed); each consumer reads them from a subscription of
its own with the CloudEvents SDK of its language, unchanged:

- Python: `cloudevents` (the core API's HTTP binary mode over the message's attributes
  and data; the Python SDK has no Pub/Sub binding);
- Go: `github.com/cloudevents/sdk-go/protocol/pubsub/v2`, the SDK's Pub/Sub binding
  (`NewMessage` and `binding.ToEvent` on the received message, then `Validate`), in
  examples/go/consumer, built once into .tools/bin;
- Node: `cloudevents` (`HTTP.toEvent` over attributes and data, then `validate()`), in
  examples/node/consumer.mjs.

Each must give type, id, source, subject, time (the operation's end_time: to the
microsecond in Python, the nanosecond in Go, the millisecond in Node, whose Date keeps
no more), datacontenttype (sdk-go reads it from `Content-Type` alone, Python and Node take
either spelling; the tracker sends `Content-Type` and `content-type`) and dataschema, and
data that decodes to the Operation, done, with its name and error. The ids are the raw
messages' ce-id, read from one more subscription with the plain Pub/Sub client.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from google.longrunning import operations_pb2
from google.rpc import code_pb2, status_pb2

from tests.helpers import ingest, make_event, packed_struct
from tests.integration.test_examples import (
    BUILD_TIMEOUT_S,
    NODE_DIR,
    build_go_consumer,
    install_node,
)
from tests.pubsub_kit import PubSub
from tracker.bindings import DONE_SCHEMA, DONE_TYPE, parse_done
from tracker.config import Config
from tracker.events import Kind
from tracker.server import running
from tracker.v1 import operation_pb2

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S + 60)  # the first test may wait for a build

CONSUMERS = ("python", "go", "node", "raw")
SUCCEEDED = "operations/sdk-succeeded"
FAILED = "operations/sdk-failed"


@dataclass
class Published:
    """What the tracker published: a subscription per consumer, the Operations as stored."""

    subscriptions: dict[str, str]
    operations: dict[str, operations_pb2.Operation]
    ids: dict[str, str]  # operation name -> ce-id, from the raw messages

    def end_time(self, name: str) -> datetime:
        meta = operation_pb2.OperationMetadata()
        assert self.operations[name].metadata.Unpack(meta) and meta.HasField("end_time")
        return meta.end_time.ToDatetime(tzinfo=UTC)


@pytest.fixture
def published(pubsub_env: str, tmp_path: Path) -> Iterator[Published]:
    pubsub = PubSub()
    topic = pubsub.topic()
    subscriptions = {who: pubsub.subscription(topic) for who in CONSUMERS}
    config = Config(db=str(tmp_path / "n.db"), http_port=0, grpc_port=-1, done_topic=topic)
    with running(config) as server:
        ingest(
            server,
            [
                make_event(Kind.CREATED, SUCCEEDED, data={"operation_type": "export"}),
                make_event(Kind.SUCCEEDED, SUCCEEDED, data={"response": packed_struct(rows=3)}),
                make_event(
                    Kind.FAILED,
                    FAILED,
                    data={"error": status_pb2.Status(code=code_pb2.NOT_FOUND, message="gone")},
                ),
            ],
        )
        loop: asyncio.AbstractEventLoop = server.loop  # type: ignore[attr-defined]
        asyncio.run_coroutine_threadsafe(server.tracker.dispatcher.drain(), loop).result(30)
        assert server.store.outbox_pending() == []
        operations = {}
        for name in (SUCCEEDED, FAILED):
            stored = server.store.get(name)
            assert stored is not None
            operations[name] = stored.operation
    raw = pubsub.pull_all(subscriptions["raw"])
    ids = {m.attributes["ce-subject"]: m.attributes["ce-id"] for m in raw}
    for m in raw:  # both texts of the binding: CloudEvents' spelling and Google's
        assert m.attributes["Content-Type"] == m.attributes["content-type"]
    assert sorted(ids) == sorted(operations) and len(set(ids.values())) == 2
    yield Published(subscriptions, operations, ids)


def check(published: Published, decoded: list[dict[str, Any]], precision: str) -> None:
    """Two notifications, one per operation, each what the SDK should make of it.
    `precision`: how much of the time the SDK keeps (Python microseconds, Go nanoseconds,
    Node milliseconds)."""
    by_subject = {d["subject"]: d for d in decoded}
    assert sorted(by_subject) == sorted(published.operations) and len(decoded) == 2
    for name, got in by_subject.items():
        assert got["specversion"] == "1.0"
        assert got["type"] == DONE_TYPE
        assert got["id"] == published.ids[name]
        assert got["source"] == "tracker"
        assert got["datacontenttype"] == "application/protobuf"
        assert got["dataschema"] == DONE_SCHEMA
        end = published.end_time(name)
        when = got["time"]
        if precision == "ms":
            assert when == end.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        else:
            assert datetime.fromisoformat(when) == end, (when, end)
        stored = published.operations[name]
        operation = got["operation"]
        assert operation["name"] == name and operation["done"] is True
        if name == FAILED:
            assert operation["error"] == {"code": code_pb2.NOT_FOUND, "message": "gone"}
        else:
            assert "error" not in operation
            assert operation["responseTypeUrl"] == stored.response.type_url
        assert operation["metadataTypeUrl"] == stored.metadata.type_url


def test_the_python_sdk_decodes_a_done_notification(published: Published) -> None:
    decoded = []
    for message in PubSub().pull_all(published.subscriptions["python"]):
        attributes, data = dict(message.attributes), bytes(message.data)
        event = from_http_event(HTTPMessage(headers=attributes, body=data))
        body = event.get_data()
        assert isinstance(body, bytes)
        operation = operations_pb2.Operation.FromString(body)
        when = event.get_time()
        assert when is not None
        error = {"code": operation.error.code, "message": operation.error.message}
        decoded.append(
            {
                "specversion": event.get_specversion(),
                "type": event.get_type(),
                "id": event.get_id(),
                "source": event.get_source(),
                "subject": event.get_subject(),
                "time": when.isoformat(),
                "datacontenttype": event.get_datacontenttype(),
                "dataschema": event.get_dataschema(),
                "operation": {
                    "name": operation.name,
                    "done": operation.done,
                    "metadataTypeUrl": operation.metadata.type_url,
                    **({"error": error} if operation.HasField("error") else {}),
                    **(
                        {"responseTypeUrl": operation.response.type_url}
                        if operation.HasField("response")
                        else {}
                    ),
                },
            }
        )
        # The tracker's own reader agrees.
        assert parse_done(attributes, data).operation == operation
    check(published, decoded, "us")


def _consume(
    command: list[str], subscription: str, pubsub_env: str, status: int = 0
) -> list[dict[str, Any]]:
    """The consumer's JSON lines; `status` is the exit status it must end with (3: it
    acted on a failed operation, examples/README.md)."""
    cmd = [*command, "--subscription", subscription, "--count", "2", "--timeout", "60"]
    env = {**os.environ, "PUBSUB_EMULATOR_HOST": pubsub_env}
    result = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    assert result.returncode == status, (
        f"{' '.join(cmd)} exited {result.returncode}\n"
        f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    )
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_go_sdk_gos_pubsub_binding_decodes_a_done_notification(
    published: Published, pubsub_env: str
) -> None:
    decoded = _consume(
        [str(build_go_consumer())], published.subscriptions["go"], pubsub_env, status=3
    )
    check(published, decoded, "ns")
    # No attribute of the tracker's is taken for an extension (only ce-* ones would be).
    assert all(d["extensions"] == {} for d in decoded)


def test_the_node_sdk_decodes_a_done_notification(published: Published, pubsub_env: str) -> None:
    command = [install_node(), str(NODE_DIR / "consumer.mjs")]
    decoded = _consume(command, published.subscriptions["node"], pubsub_env, status=3)
    check(published, decoded, "ms")
    assert all(d["extensions"] == {} for d in decoded)


def test_the_node_sdk_refuses_a_dataschema_without_a_scheme(pubsub_env: str) -> None:
    """Why ce-dataschema is `https://type.googleapis.com/...` and not the bare type URL:
    CloudEvents' dataschema is an absolute URI, and the Node SDK checks it."""
    pubsub = PubSub()
    topic = pubsub.topic()
    sub = pubsub.subscription(topic)
    attributes = {
        "ce-specversion": "1.0",
        "ce-id": "bare-1",
        "ce-source": "tracker",
        "ce-type": DONE_TYPE,
        "ce-dataschema": DONE_SCHEMA.removeprefix("https://"),
        "Content-Type": "application/protobuf",
    }
    data = operations_pb2.Operation(name="operations/bare", done=True).SerializeToString()
    pubsub.publish_raw(topic, data, **attributes)
    command = [install_node(), str(NODE_DIR / "consumer.mjs")]
    with pytest.raises(AssertionError, match=r'must match format \\?"uri\\?"'):
        _consume(command, sub, pubsub_env)


def test_only_the_go_sdk_needs_the_content_type_spelled_content_type(pubsub_env: str) -> None:
    """Why `Content-Type` is sent beside `content-type`: Pub/Sub keys are case-sensitive
    and sdk-go's binding reads `Content-Type` alone; the `content-type` of Google's text of
    the binding (and of earlier trackers) reaches a Go consumer as no datacontenttype.
    The Python and Node SDKs read either spelling."""
    pubsub = PubSub()
    topic = pubsub.topic()
    subs = {who: pubsub.subscription(topic) for who in ("python", "go", "node")}
    data = operations_pb2.Operation(name="operations/lower", done=True).SerializeToString()
    base = {
        "ce-specversion": "1.0",
        "ce-source": "tracker",
        "ce-type": DONE_TYPE,
        "ce-subject": "operations/lower",
    }
    pubsub.publish_raw(topic, data, **base, **{"ce-id": "lower-1", "content-type": "x/y"})
    pubsub.publish_raw(topic, data, **base, **{"ce-id": "upper-1", "Content-Type": "x/y"})
    go = _consume([str(build_go_consumer())], subs["go"], pubsub_env)
    assert {d["id"]: d["datacontenttype"] for d in go} == {"lower-1": "", "upper-1": "x/y"}
    node = _consume([install_node(), str(NODE_DIR / "consumer.mjs")], subs["node"], pubsub_env)
    assert {d["id"]: d["datacontenttype"] for d in node} == {"lower-1": "x/y", "upper-1": "x/y"}
    python = {}
    for m in pubsub.pull_all(subs["python"]):
        event = from_http_event(HTTPMessage(headers=dict(m.attributes), body=bytes(m.data)))
        python[event.get_id()] = event.get_datacontenttype()
    assert python == {"lower-1": "x/y", "upper-1": "x/y"}


def test_parse_done_reads_notifications_of_the_earlier_format() -> None:
    """A tracker before this one wrote `content-type` (lower case), a publish-time ce-time
    and no ce-dataschema; what is still in a subscription from it parses as before."""
    operation = operations_pb2.Operation(name="operations/old", done=True)
    old = {
        "ce-specversion": "1.0",
        "ce-id": "old-1",
        "ce-source": "tracker",
        "ce-type": DONE_TYPE,
        "ce-subject": "operations/old",
        "ce-time": "2025-01-01T00:00:00.5Z",
        "content-type": "application/protobuf",
        "operation": "operations/old",
    }
    note = parse_done(old, operation.SerializeToString())
    assert (note.id, note.operation) == ("old-1", operation)
