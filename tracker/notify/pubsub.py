"""Done-notifications on a Pub/Sub completion topic.

Each notification is a CloudEvent in Pub/Sub binary mode: type
`tracker.operation.v1.done`, `ce-id` = the outbox row id (the same on redelivery, for
consumers to de-duplicate), data = the final `google.longrunning.Operation` as protobuf.
Plain attributes make it selectable by subscription filters, e.g.
`attributes.operation_type = "export" AND attributes.result = "failed"`:

    operation       the operation name
    result          succeeded | failed | cancelled
    error_code      google.rpc.Code name, OK on success
    operation_type  parent   (when set)
    label_<key>     one per label (key characters outside [A-Za-z0-9_-] become _)
    attributes_truncated   "true" when the rule below left anything out

The ordering key is the operation name (none if it is longer than 1024 bytes).

Pub/Sub takes at most 100 attributes per message, keys of at most 256 bytes and values of
at most 1024 bytes (https://cloud.google.com/pubsub/quotas#resource_limits), and refuses
the whole message otherwise. Whatever labels an operation has, the attributes stay within
those limits by one deterministic rule:

1. No attribute is ever cut: one whose key or value is too long is left out (a cut value
   would make `=` filters match the wrong thing).
2. The fixed attributes above come first.
3. Then labels in order of their key (code point order): a label is left out when its
   attribute key or value is too long, or when its key becomes the same attribute key
   as an earlier label's (`a.b` and `a/b` are both `label_a_b`: the first one counts).
4. Labels are taken while the count allows, keeping one place for the flag.
5. If anything was left out, `attributes_truncated` is `true`.

The data always carries the whole Operation, every label included.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Final

import google.cloud.pubsub_v1 as pubsub_v1
from google.api_core import exceptions as gexc
from google.longrunning import operations_pb2
from google.rpc import code_pb2

from tracker import gcp
from tracker.v1 import operation_pb2

DONE_TYPE: Final = "tracker.operation.v1.done"
_LABEL_KEY = re.compile(r"[^A-Za-z0-9_-]")


MAX_ATTRIBUTES: Final = 100
MAX_KEY_BYTES: Final = 256
MAX_VALUE_BYTES: Final = 1024
MAX_ORDERING_KEY_BYTES: Final = 1024
TRUNCATED: Final = "attributes_truncated"


def _fits(key: str, value: str) -> bool:
    return len(key.encode()) <= MAX_KEY_BYTES and len(value.encode()) <= MAX_VALUE_BYTES


def done_attributes(item_id: str, operation: operations_pb2.Operation) -> dict[str, str]:
    """The message attributes of a notification, by the rule in the module docstring."""
    if operation.HasField("error"):
        code = operation.error.code
        result = "cancelled" if code == code_pb2.CANCELLED else "failed"
    else:
        code, result = code_pb2.OK, "succeeded"
    fixed = {
        "ce-specversion": "1.0",
        "ce-id": item_id,
        "ce-source": "tracker",
        "ce-type": DONE_TYPE,
        "ce-subject": operation.name,
        "ce-time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "content-type": "application/protobuf",
        "operation": operation.name,
        "result": result,
        "error_code": code_pb2.Code.Name(code) if code in code_pb2.Code.values() else str(code),
    }
    meta = operation_pb2.OperationMetadata()
    labels: dict[str, str] = {}
    if operation.metadata.Is(meta.DESCRIPTOR):
        operation.metadata.Unpack(meta)
        if meta.operation_type:
            fixed["operation_type"] = meta.operation_type
        if meta.parent:
            fixed["parent"] = meta.parent
        labels = dict(meta.labels)
    attributes = {k: v for k, v in fixed.items() if _fits(k, v)}
    left_out = len(attributes) < len(fixed)
    eligible: dict[str, str] = {}
    for key in sorted(labels):
        attribute = f"label_{_LABEL_KEY.sub('_', key)}"
        if attribute in eligible or not _fits(attribute, labels[key]):
            left_out = True
            continue
        eligible[attribute] = labels[key]
    room = MAX_ATTRIBUTES - len(attributes)
    if len(eligible) > room:
        left_out = True
    if left_out:
        room -= 1  # for the flag
    for attribute, value in list(eligible.items())[: max(room, 0)]:
        attributes[attribute] = value
    if left_out:
        attributes[TRUNCATED] = "true"
    return attributes


def ordering_key(operation: operations_pb2.Operation) -> str:
    """The operation name, or none when Pub/Sub would refuse it as an ordering key."""
    name = operation.name
    return name if len(name.encode()) <= MAX_ORDERING_KEY_BYTES else ""


class PubSubSink:
    """Outbox sink publishing to the completion topic; raises so the row stays pending."""

    name = "pubsub"

    def __init__(
        self, topic: str, publisher: pubsub_v1.PublisherClient | None = None, timeout: float = 30
    ) -> None:
        self.topic = topic
        self.timeout = timeout
        self.publisher = publisher or gcp.client(
            f"--done-topic {topic}",
            lambda: pubsub_v1.PublisherClient(
                publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
            ),
        )

    async def deliver(self, item_id: str, operation: operations_pb2.Operation) -> None:
        key = ordering_key(operation)
        future = self.publisher.publish(
            self.topic,
            operation.SerializeToString(),
            ordering_key=key,
            **done_attributes(item_id, operation),
        )
        try:
            # Awaited on the loop, not in a worker thread: a hanging publish must not
            # hold a thread that ingest needs.
            await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except (gexc.GoogleAPICallError, TimeoutError, RuntimeError):
            # A failed publish pauses its ordering key; resume so the retry can go out.
            if key:
                self.publisher.resume_publish(self.topic, key)
            raise
