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

The ordering key is the operation name.
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


def done_attributes(item_id: str, operation: operations_pb2.Operation) -> dict[str, str]:
    if operation.HasField("error"):
        code = operation.error.code
        result = "cancelled" if code == code_pb2.CANCELLED else "failed"
    else:
        code, result = code_pb2.OK, "succeeded"
    attributes = {
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
    if operation.metadata.Is(meta.DESCRIPTOR):
        operation.metadata.Unpack(meta)
        if meta.operation_type:
            attributes["operation_type"] = meta.operation_type
        if meta.parent:
            attributes["parent"] = meta.parent
        for key, value in meta.labels.items():
            attributes[f"label_{_LABEL_KEY.sub('_', key)}"] = value
    return attributes


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
        future = self.publisher.publish(
            self.topic,
            operation.SerializeToString(),
            ordering_key=operation.name,
            **done_attributes(item_id, operation),
        )
        try:
            await asyncio.to_thread(future.result, self.timeout)
        except (gexc.GoogleAPICallError, TimeoutError, RuntimeError):
            # A failed publish pauses its ordering key; resume so the retry can go out.
            self.publisher.resume_publish(self.topic, operation.name)
            raise
