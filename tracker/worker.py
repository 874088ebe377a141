"""The Python producer SDK: report an operation's life from the code doing the work.

    from tracker.worker import Worker

    with Worker.http("http://127.0.0.1:8080") as worker:     # or Worker.pubsub(topic)
      with worker.operation("operations/export-42", operation_type="export") as op:
        resume_from = op.last_checkpoint()
        for i, chunk in enumerate(chunks):
            copy(chunk)
            op.progress(100 * (i + 1) / len(chunks), f"chunk {i + 1}")
            op.checkpoint(str(i).encode())
        op.succeed({"rows": total})

Entering publishes `created`; leaving publishes `succeeded` (unless the block already
ended the operation), or, when the block raises, `failed` with the exception mapped to
a google.rpc code (`cancelled` for KeyboardInterrupt / asyncio.CancelledError) and the
exception propagates. Events carry a per-operation sequence number starting at 1, so
the tracker orders them whatever the transport does. `Worker.track` is the decorator
form. With `heartbeat_every`, a background thread sends heartbeats while the block runs.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from google.protobuf.message import Message
from google.rpc import code_pb2

from tracker.client import MetadataValue, TrackerClient, _Producers
from tracker.events import JSON_CONTENT_TYPE, Event, to_binary

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


class WorkerError(Exception):
    """Raise to fail the operation with a specific google.rpc code."""

    def __init__(self, code: int, message: str, details: Iterable[Message] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details)


_CODES: list[tuple[type[BaseException], int]] = [
    (TimeoutError, code_pb2.DEADLINE_EXCEEDED),
    (PermissionError, code_pb2.PERMISSION_DENIED),
    (FileNotFoundError, code_pb2.NOT_FOUND),
    (LookupError, code_pb2.NOT_FOUND),
    (FileExistsError, code_pb2.ALREADY_EXISTS),
    (ValueError, code_pb2.INVALID_ARGUMENT),
    (TypeError, code_pb2.INVALID_ARGUMENT),
    (NotImplementedError, code_pb2.UNIMPLEMENTED),
    (ConnectionError, code_pb2.UNAVAILABLE),
    (MemoryError, code_pb2.RESOURCE_EXHAUSTED),
]


def code_for(exc: BaseException) -> int:
    """The google.rpc code an exception fails an operation with (UNKNOWN if unmapped).

    WorkerError carries its own; google.api_core errors carry their gRPC status; an
    exception with an integer `grpc_code` attribute in 1..16 uses it.
    """
    if isinstance(exc, WorkerError):
        return exc.code
    grpc_code = getattr(exc, "grpc_code", None)
    if isinstance(grpc_code, int) and 1 <= grpc_code <= 16:
        return grpc_code
    status = getattr(exc, "grpc_status_code", None)  # google.api_core.exceptions
    if status is not None and hasattr(status, "value"):
        value = status.value[0] if isinstance(status.value, tuple) else status.value
        if isinstance(value, int) and 1 <= value <= 16:
            return value
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return int(code)
    return int(code_pb2.UNKNOWN)


class PubSubProducer(_Producers[str]):
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

        from tracker.client import default_source

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


class Run:
    """One operation being worked on; use through `Worker.operation(...)`."""

    def __init__(
        self,
        worker: Worker,
        name: str,
        created: Mapping[str, Any],
    ) -> None:
        self.worker = worker
        self.name = name
        self._created = dict(created)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self.done = False
        self._stop_heartbeat = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def _next(self) -> int:
        with self._lock:
            return next(self._seq)

    def _terminal(self) -> None:
        with self._lock:
            if self.done:
                raise RuntimeError(f"{self.name} already ended")
            self.done = True
        self._stop_heartbeat.set()

    # ---- reporting ---------------------------------------------------------------------

    def progress(
        self, percent: float, message: str = "", *, metadata: MetadataValue | None = None
    ) -> None:
        self.worker.producer.progress(
            self.name, percent, message, metadata=metadata, seq=self._next()
        )

    def checkpoint(self, data: bytes) -> None:
        self.worker.producer.checkpoint(self.name, data, seq=self._next())

    def heartbeat(self, message: str = "") -> None:
        self.worker.producer.heartbeat(self.name, message, seq=self._next())

    def succeed(self, response: MetadataValue | None = None) -> None:
        self._terminal()
        self.worker.producer.succeeded(self.name, response, seq=self._next())

    def fail(self, code: int, message: str, details: Iterable[Message] = ()) -> None:
        self._terminal()
        self.worker.producer.failed(self.name, code, message, details=details, seq=self._next())

    def cancel(self, reason: str = "") -> None:
        self._terminal()
        self.worker.producer.cancelled(self.name, reason, seq=self._next())

    # ---- reading back (needs the tracker's URL) ----------------------------------------

    def last_checkpoint(self) -> bytes | None:
        """The newest checkpoint the tracker holds, to resume from; None if none."""
        return self.worker.reader().get_checkpoint(self.name)

    def cancel_requested(self) -> bool:
        """Whether a client called CancelOperation: stop, then `cancel()` or just return."""
        from tracker.client import metadata

        operation = self.worker.reader().get(self.name)
        meta = metadata(operation)
        return bool(meta and meta.cancel_requested) or (
            operation.done and operation.error.code == code_pb2.CANCELLED
        )

    # ---- context manager ---------------------------------------------------------------

    def __enter__(self) -> Run:
        self.worker.producer.created(self.name, seq=self._next(), **self._created)
        every = self.worker.heartbeat_every
        if every:
            self._heartbeat = threading.Thread(
                target=self._beat, args=(every,), name=f"heartbeat {self.name}", daemon=True
            )
            self._heartbeat.start()
        return self

    def _beat(self, every: float) -> None:
        while not self._stop_heartbeat.wait(every):
            try:
                self.heartbeat()
            except Exception as exc:  # a missed heartbeat must not kill the work
                log.warning("heartbeat for %s failed: %s", self.name, exc)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop_heartbeat.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self.done:
            return
        if exc is None:
            self.succeed()
            return
        try:
            if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
                self.cancel(f"{type(exc).__name__}")
            else:
                details = exc.details if isinstance(exc, WorkerError) else ()
                message = exc.message if isinstance(exc, WorkerError) else str(exc)
                self.fail(code_for(exc), message or type(exc).__name__, details)
        except Exception as publish_error:  # never hide the work's own exception
            log.error("could not report %s as failed: %s", self.name, publish_error)


class Worker:
    """Reports operations through a producer (HTTP or Pub/Sub)."""

    def __init__(
        self,
        producer: _Producers[Any],
        *,
        tracker_url: str | None = None,
        heartbeat_every: float | None = None,
    ) -> None:
        self.producer = producer
        self.tracker_url = tracker_url
        self.heartbeat_every = heartbeat_every
        self._reader: TrackerClient | None = (
            producer if isinstance(producer, TrackerClient) else None
        )

    @classmethod
    def http(cls, url: str = "http://127.0.0.1:8080", **kwargs: Any) -> Worker:
        """Events over HTTP straight to the tracker (the embedded default)."""
        return cls(TrackerClient(url), tracker_url=url, **kwargs)

    @classmethod
    def pubsub(
        cls,
        topic: str,
        *,
        tracker_url: str | None = None,
        source: str | None = None,
        content_type: str = JSON_CONTENT_TYPE,
        heartbeat_every: float | None = None,
    ) -> Worker:
        """Events to a Pub/Sub topic. `tracker_url` enables reading back (checkpoint, cancel)."""
        producer = PubSubProducer(topic, source=source, content_type=content_type)
        return cls(producer, tracker_url=tracker_url, heartbeat_every=heartbeat_every)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections this worker opened."""
        for client in {id(c): c for c in (self.producer, self._reader) if c is not None}.values():
            close = getattr(client, "close", None)
            if callable(close):
                close()

    def reader(self) -> TrackerClient:
        if self._reader is None:
            if not self.tracker_url:
                raise RuntimeError("reading back needs the tracker's URL (tracker_url=...)")
            self._reader = TrackerClient(self.tracker_url)
        return self._reader

    def operation(
        self,
        name: str,
        *,
        operation_type: str = "",
        labels: Mapping[str, str] | None = None,
        parent: str = "",
        metadata: MetadataValue | None = None,
        deadline: datetime | None = None,
        heartbeat_timeout: timedelta | float | None = None,
    ) -> Run:
        return Run(
            self,
            name,
            {
                "operation_type": operation_type,
                "labels": labels,
                "parent": parent,
                "metadata": metadata,
                "deadline": deadline,
                "heartbeat_timeout": heartbeat_timeout,
            },
        )

    def track(self, name: str, **created: Any) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator: the call is the operation. `name` is formatted with the call's
        arguments (`"operations/export-{job_id}"`); a parameter named `op` receives the
        Run; a returned dict or message becomes the response."""

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            signature = inspect.signature(func)
            wants_op = "op" in signature.parameters

            @functools.wraps(func)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                bound = signature.bind_partial(*args, **kwargs)
                bound.apply_defaults()
                op_name = name.format(**bound.arguments)
                with self.operation(op_name, **created) as run:
                    if wants_op:
                        kwargs["op"] = run
                    result = func(*args, **kwargs)
                    if isinstance(result, (Message, Mapping)):
                        run.succeed(result)
                    return result

            return wrapper

        return decorate
