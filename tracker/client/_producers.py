"""Events as the SDK builds them, and the producer verbs every client shares.

`Producer` is the base of `TrackerClient`, `AsyncTrackerClient` and the Pub/Sub producer
of `tracker.worker`: each verb (created, progress, checkpoint, heartbeat, succeeded,
failed, cancelled) builds one event and hands it to the subclass's `_emit`, which
returns what that transport returns (a PublishResult, a coroutine of one, a message id).
"""

from __future__ import annotations

import abc
import socket
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from google.protobuf import any_pb2
from google.protobuf.message import Message

from tracker.bindings import to_binary
from tracker.events import DATA_MESSAGES, JSON_CONTENT_TYPE, Event, Kind, struct
from tracker.v1 import events_pb2

MetadataValue = Message | Mapping[str, Any]
R = TypeVar("R")


def default_source() -> str:
    return f"tracker-client/{socket.gethostname()}"


def to_any(value: MetadataValue) -> any_pb2.Any:
    """Pack a message into Any; a plain mapping becomes a google.protobuf.Struct."""
    packed = any_pb2.Any()
    if isinstance(value, any_pb2.Any):
        packed.CopyFrom(value)
    elif isinstance(value, Message):
        packed.Pack(value)
    else:
        packed.Pack(struct(value))
    return packed


def new_event(
    kind: Kind,
    name: str,
    data: Message,
    *,
    source: str | None = None,
    seq: int | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
    attempt: int | None = None,
) -> Event:
    """An event with a fresh id and the current time unless given.

    `attempt` is the run of the work the event belongs to (None: unset, read as 1); a
    restarted worker sends the previous run's attempt + 1 and numbers `seq` from 1 again.
    """
    expected = DATA_MESSAGES[kind].DESCRIPTOR
    if data.DESCRIPTOR is not expected:
        raise TypeError(
            f"{kind.value} data must be {expected.full_name}, not {data.DESCRIPTOR.full_name}"
        )
    return Event(
        id=event_id or uuid.uuid4().hex,
        source=source or default_source(),
        kind=kind,
        operation=name,
        time=(time or datetime.now(UTC)).astimezone(UTC),
        data=data,
        sequence=seq,
        attempt=attempt,
    )


def _created_data(
    operation_type: str,
    labels: Mapping[str, str] | None,
    parent: str,
    metadata: MetadataValue | None,
    deadline: datetime | None,
    heartbeat_timeout: timedelta | float | None,
) -> events_pb2.Created:
    data = events_pb2.Created(
        operation_type=operation_type, labels=dict(labels or {}), parent=parent
    )
    if metadata is not None:
        data.metadata.CopyFrom(to_any(metadata))
    if deadline is not None:
        data.deadline.FromDatetime(deadline.astimezone(UTC))
    if heartbeat_timeout is not None:
        if not isinstance(heartbeat_timeout, timedelta):
            heartbeat_timeout = timedelta(seconds=heartbeat_timeout)
        data.heartbeat_timeout.FromTimedelta(heartbeat_timeout)
    return data


class Producer(abc.ABC, Generic[R]):
    """The producer verbs, shared by every client and producer.

    Each builds one event (fresh uuid id unless `event_id` is given, the client's
    source, the current time, optional per-operation sequence `seq`) and publishes it
    with the client's default mode and content type. `attempt` (the CloudEvents
    `attempt` attribute, 1..2^31-1) says which run of the work sends it: the tracker
    orders a later attempt after every event of an earlier one, whatever their `seq`.
    """

    source: str

    @abc.abstractmethod
    def _emit(self, event: Event) -> R:
        """Publish one event through this client's transport."""

    def event(
        self,
        kind: Kind,
        name: str,
        data: Message,
        *,
        seq: int | None = None,
        event_id: str | None = None,
        attempt: int | None = None,
    ) -> Event:
        """Build (not publish) an event from this client's source."""
        return new_event(
            kind, name, data, source=self.source, seq=seq, event_id=event_id, attempt=attempt
        )

    def created(
        self,
        name: str,
        *,
        operation_type: str = "",
        labels: Mapping[str, str] | None = None,
        parent: str = "",
        metadata: MetadataValue | None = None,
        deadline: datetime | None = None,
        heartbeat_timeout: timedelta | float | None = None,
        seq: int | None = None,
        event_id: str | None = None,
        attempt: int | None = None,
    ) -> R:
        """The operation exists. `metadata` (a message, or a dict sent as Struct) is then
        served as Operation.metadata instead of tracker.v1.OperationMetadata."""
        data = _created_data(operation_type, labels, parent, metadata, deadline, heartbeat_timeout)
        return self._emit(
            self.event(Kind.CREATED, name, data, seq=seq, event_id=event_id, attempt=attempt)
        )

    def progress(
        self,
        name: str,
        percent: float,
        message: str = "",
        *,
        metadata: MetadataValue | None = None,
        seq: int | None = None,
        event_id: str | None = None,
        attempt: int | None = None,
    ) -> R:
        data = events_pb2.Progress(percent=percent, message=message)
        if metadata is not None:
            data.metadata.CopyFrom(to_any(metadata))
        return self._emit(
            self.event(Kind.PROGRESS, name, data, seq=seq, event_id=event_id, attempt=attempt)
        )

    def checkpoint(
        self,
        name: str,
        data: bytes,
        *,
        seq: int | None = None,
        event_id: str | None = None,
        attempt: int | None = None,
    ) -> R:
        """Store opaque resume bytes; read them back with `get_checkpoint`."""
        message = events_pb2.Checkpoint(data=data)
        return self._emit(
            self.event(Kind.CHECKPOINT, name, message, seq=seq, event_id=event_id, attempt=attempt)
        )

    def heartbeat(
        self,
        name: str,
        message: str = "",
        *,
        seq: int | None = None,
        event_id: str | None = None,
        attempt: int | None = None,
    ) -> R:
        data = events_pb2.Heartbeat(message=message)
        return self._emit(
            self.event(Kind.HEARTBEAT, name, data, seq=seq, event_id=event_id, attempt=attempt)
        )

    def succeeded(
        self,
        name: str,
        response: MetadataValue | None = None,
        *,
        seq: int | None = None,
        event_id: str | None = None,
        attempt: int | None = None,
    ) -> R:
        """Terminal. `response` (a message, or a dict sent as Struct) becomes Operation.response."""
        data = events_pb2.Succeeded()
        if response is not None:
            data.response.CopyFrom(to_any(response))
        return self._emit(
            self.event(Kind.SUCCEEDED, name, data, seq=seq, event_id=event_id, attempt=attempt)
        )

    def failed(
        self,
        name: str,
        code: int,
        message: str,
        *,
        details: Iterable[Message] = (),
        seq: int | None = None,
        event_id: str | None = None,
        attempt: int | None = None,
    ) -> R:
        """Terminal. `code` is a google.rpc.Code other than OK (e.g. code_pb2.NOT_FOUND)."""
        data = events_pb2.Failed()
        data.error.code = int(code)
        data.error.message = message
        for detail in details:
            data.error.details.add().Pack(detail)
        return self._emit(
            self.event(Kind.FAILED, name, data, seq=seq, event_id=event_id, attempt=attempt)
        )

    def cancelled(
        self,
        name: str,
        reason: str = "",
        *,
        seq: int | None = None,
        event_id: str | None = None,
        attempt: int | None = None,
    ) -> R:
        """Terminal: the worker stopped on a cancel request (served as code CANCELLED)."""
        data = events_pb2.Cancelled(reason=reason)
        return self._emit(
            self.event(Kind.CANCELLED, name, data, seq=seq, event_id=event_id, attempt=attempt)
        )


class PubSubProducer(Producer[str]):
    """Publishes events to a Pub/Sub topic in binary content mode, ordered per operation.

    Returns the message id. Honours PUBSUB_EMULATOR_HOST like every Google client.
    """

    def __init__(
        self,
        topic: str,
        *,
        source: str | None = None,
        content_type: str = JSON_CONTENT_TYPE,
        publisher: Any = None,
        timeout: float = 60,
    ) -> None:
        import google.cloud.pubsub_v1 as pubsub_v1

        self.topic = topic
        self.source = source or default_source()
        self.content_type = content_type
        self.timeout = timeout
        self.publisher = publisher or pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        )

    def _emit(self, event: Event) -> str:
        headers, body = to_binary(event, self.content_type)
        future = self.publisher.publish(self.topic, body, ordering_key=event.operation, **headers)
        try:
            return str(future.result(self.timeout))
        except Exception:
            # A failed publish pauses the ordering key; resume it for the next event.
            self.publisher.resume_publish(self.topic, event.operation)
            raise


__all__ = ["MetadataValue", "Producer", "PubSubProducer", "default_source", "new_event", "to_any"]
