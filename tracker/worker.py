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
form, for plain and `async def` functions; `async with worker.operation(...)` gives an
`AsyncRun` whose methods are coroutines. With `heartbeat_every`, a background thread
sends heartbeats while the block runs.

When the operation ends elsewhere while the work runs (CancelOperation, the deadline
sweeper, another producer's terminal event), the next `progress` / `heartbeat` /
`checkpoint` raises `Cancelled` or `OperationEnded`, and the run reports nothing more.
Over HTTP the tracker's answer to each event says so (`late`); over Pub/Sub there is no
answer, so only `heartbeat` checks, by reading the operation back, and only when the
worker has a `tracker_url`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import itertools
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

import httpx
from google.longrunning import operations_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2

from tracker.bindings import to_binary
from tracker.client import MetadataValue, Producer, PublishResult, TrackerClient
from tracker.client.credentials import resolve
from tracker.constants import DEFAULT_URL
from tracker.errors import NotFound, clip, code_name
from tracker.events import JSON_CONTENT_TYPE, Event

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


class OperationEnded(Exception):
    """The operation ended while its work still ran; raised by `progress`, `heartbeat`
    and `checkpoint` so the work stops instead of reporting into a finished operation.

    Raised out of a `with worker.operation(...)` block (or a `track`ed function), it
    propagates to the caller and the run publishes nothing further: the operation's
    result is the one it already has.

    Attributes:
        operation: the operation's name.
        final: the operation as the tracker held it when the end was noticed; None when
            it could not be read back (no tracker URL, tracker unreachable, deleted).
        cancelled: whether it ended as CANCELLED (then the exception is `Cancelled`).
    """

    # What a run around this one fails with if the exception escapes its block too.
    grpc_code = code_pb2.ABORTED

    def __init__(self, operation: str, final: operations_pb2.Operation | None = None) -> None:
        self.operation = operation
        self.final = final
        super().__init__(_ended_message(operation, final))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.operation, self.final))  # survives a process pool

    @property
    def cancelled(self) -> bool:
        return isinstance(self, Cancelled)


class Cancelled(OperationEnded):
    """The operation was cancelled (CancelOperation, or a `cancelled` event) while the
    work ran: stop, clean up, and let the exception leave the block."""

    grpc_code = code_pb2.CANCELLED


def _ended_message(name: str, final: operations_pb2.Operation | None) -> str:
    if final is None or not final.done:
        return f"{name} has already ended"
    if final.HasField("error"):
        if final.error.code == code_pb2.CANCELLED:
            return f"{name} was cancelled: {clip(final.error.message)}"
        return (
            f"{name} has already ended: failed with {code_name(final.error.code)}:"
            f" {clip(final.error.message)}"
        )
    return f"{name} has already ended: succeeded"


def _end_of(name: str, final: operations_pb2.Operation | None) -> OperationEnded:
    """`Cancelled` when `final` is done with code CANCELLED, else `OperationEnded`."""
    if final is not None and final.done and final.error.code == code_pb2.CANCELLED:
        return Cancelled(name, final)
    return OperationEnded(name, final)


def _late(answer: object) -> bool:
    return isinstance(answer, PublishResult) and answer.outcome == "late"


class Run:
    """One operation being worked on; use through `Worker.operation(...)`.

    `with` gives this object (blocking methods); `async with` gives its `AsyncRun` view,
    whose methods are coroutines.
    """

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
        self._ended: OperationEnded | None = None
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

    @property
    def ended(self) -> OperationEnded | None:
        """How the operation ended elsewhere, once this run has noticed; else None."""
        return self._ended

    # ---- reporting ---------------------------------------------------------------------

    def progress(
        self, percent: float, message: str = "", *, metadata: MetadataValue | None = None
    ) -> None:
        """Raises `Cancelled` / `OperationEnded` when the operation has already ended."""
        self._report(
            lambda seq: self.worker.producer.progress(
                self.name, percent, message, metadata=metadata, seq=seq
            )
        )

    def checkpoint(self, data: bytes) -> None:
        """Raises `Cancelled` / `OperationEnded` when the operation has already ended."""
        self._report(lambda seq: self.worker.producer.checkpoint(self.name, data, seq=seq))

    def heartbeat(self, message: str = "") -> None:
        """Raises `Cancelled` / `OperationEnded` when the operation has already ended.

        Over Pub/Sub (no answer per event) with a tracker URL, this is the one call
        that reads the operation back to find out.
        """
        self._report(
            lambda seq: self.worker.producer.heartbeat(self.name, message, seq=seq),
            read_back=True,
        )

    def _report(self, send: Callable[[int], object], *, read_back: bool = False) -> None:
        self._raise_if_ended()
        answer = send(self._next())
        if _late(answer):
            raise self._learn_end()
        if read_back and not isinstance(answer, PublishResult) and self.worker.can_read:
            self._check_back()

    def _raise_if_ended(self) -> None:
        known = self._ended
        if known is not None:
            # A fresh instance each time: re-raising one would pile up tracebacks.
            raise type(known)(known.operation, known.final)

    def _learn_end(self) -> OperationEnded:
        """The tracker said the operation is done: read it back to say how, remember it."""
        final: operations_pb2.Operation | None = None
        try:
            final = self.worker.reader().get(self.name)
        except Exception as exc:
            log.warning("%s has ended; reading it back failed: %s", self.name, exc)
        return self._remember(_end_of(self.name, final))

    def _check_back(self) -> None:
        try:
            operation = self.worker.reader().get(self.name)
        except NotFound:
            return  # not applied yet: the events are still on their way
        except Exception as exc:  # a failed check must not fail the heartbeat
            log.warning("could not read %s back: %s", self.name, exc)
            return
        if operation.done:
            raise self._remember(_end_of(self.name, operation))

    def _remember(self, end: OperationEnded) -> OperationEnded:
        with self._lock:
            if self._ended is None:
                self._ended = end
        self._stop_heartbeat.set()
        return end

    def succeed(self, response: MetadataValue | None = None) -> None:
        self._terminal()
        self._answered(self.worker.producer.succeeded(self.name, response, seq=self._next()))

    def fail(self, code: int, message: str, details: Iterable[Message] = ()) -> None:
        self._terminal()
        answer = self.worker.producer.failed(
            self.name, code, message, details=details, seq=self._next()
        )
        self._answered(answer)

    def cancel(self, reason: str = "") -> None:
        self._terminal()
        self._answered(self.worker.producer.cancelled(self.name, reason, seq=self._next()))

    def _answered(self, answer: object) -> None:
        if _late(answer):  # the first terminal event won; this one changed nothing
            log.info("%s had already ended; this run's result was not recorded", self.name)

    # ---- reading back (needs the tracker's URL) ----------------------------------------

    def last_checkpoint(self) -> bytes | None:
        """The newest checkpoint the tracker holds, to resume from; None if none."""
        return self.worker.reader().get_checkpoint(self.name)

    def cancel_requested(self) -> bool:
        """Whether a client called CancelOperation: stop and leave the block.

        Finding the operation done counts as noticing its end (`ended`), so leaving the
        block then publishes nothing more.
        """
        from tracker.client import metadata

        operation = self.worker.reader().get(self.name)
        if operation.done:
            self._remember(_end_of(self.name, operation))
        meta = metadata(operation)
        return bool(meta and meta.cancel_requested) or (
            operation.done and operation.error.code == code_pb2.CANCELLED
        )

    # ---- context manager ---------------------------------------------------------------

    def __enter__(self) -> Run:
        answer = self.worker.producer.created(self.name, seq=self._next(), **self._created)
        if _late(answer):
            self._learn_end()  # the work's first progress/heartbeat/checkpoint raises
            return self
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
            except OperationEnded as end:  # remembered: the work's next call raises
                log.info("heartbeats for %s stopped: %s", self.name, end)
                return
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
        if self._ended is not None or (
            isinstance(exc, OperationEnded) and exc.operation == self.name
        ):
            # Ended elsewhere: its result stands, anything more would be late.
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

    async def __aenter__(self) -> AsyncRun:
        entering = asyncio.ensure_future(asyncio.to_thread(self.__enter__))
        try:
            await asyncio.shield(entering)
        except asyncio.CancelledError as cancel:
            # `created` (and the heartbeat thread) may be on their way regardless: let
            # them land, then end the operation as cancelled rather than leave it open.
            with contextlib.suppress(Exception):
                await entering
                await asyncio.to_thread(self.__exit__, type(cancel), cancel, None)
            raise
        return AsyncRun(self)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.__exit__, exc_type, exc, tb)


class AsyncRun:
    """A `Run` for asyncio work (`async with worker.operation(...) as op`, or an
    `async def` under `Worker.track`): the same methods as coroutines.

    Each call runs the blocking `Run` method in a thread (asyncio.to_thread), so the
    event loop never waits on the network, whichever transport the worker uses; the
    sequence numbers, heartbeat thread and end detection are the `Run`'s own.
    """

    def __init__(self, run: Run) -> None:
        self.run = run

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def done(self) -> bool:
        return self.run.done

    @property
    def ended(self) -> OperationEnded | None:
        return self.run.ended

    async def progress(
        self, percent: float, message: str = "", *, metadata: MetadataValue | None = None
    ) -> None:
        await asyncio.to_thread(self.run.progress, percent, message, metadata=metadata)

    async def checkpoint(self, data: bytes) -> None:
        await asyncio.to_thread(self.run.checkpoint, data)

    async def heartbeat(self, message: str = "") -> None:
        await asyncio.to_thread(self.run.heartbeat, message)

    async def succeed(self, response: MetadataValue | None = None) -> None:
        await asyncio.to_thread(self.run.succeed, response)

    async def fail(self, code: int, message: str, details: Iterable[Message] = ()) -> None:
        await asyncio.to_thread(self.run.fail, code, message, details)

    async def cancel(self, reason: str = "") -> None:
        await asyncio.to_thread(self.run.cancel, reason)

    async def last_checkpoint(self) -> bytes | None:
        return await asyncio.to_thread(self.run.last_checkpoint)

    async def cancel_requested(self) -> bool:
        return await asyncio.to_thread(self.run.cancel_requested)


class Worker:
    """Reports operations through a producer (HTTP or Pub/Sub)."""

    def __init__(
        self,
        producer: Producer[Any],
        *,
        tracker_url: str | None = None,
        heartbeat_every: float | None = None,
        auth: httpx.Auth | None = None,
    ) -> None:
        """`auth`: the credentials the reader sends when it is made from `tracker_url`
        (`tracker.client.credentials.resolve` makes them; None reads the environment)."""
        self.producer = producer
        self.tracker_url = tracker_url
        self.heartbeat_every = heartbeat_every
        self._auth = auth
        self._owns_auth = False  # True when a constructor here made `auth`
        self._reader: TrackerClient | None = (
            producer if isinstance(producer, TrackerClient) else None
        )

    @classmethod
    def http(
        cls,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        id_token_audience: str | None = None,
        **kwargs: Any,
    ) -> Worker:
        """Events over HTTP straight to the tracker (the embedded default), with the
        credentials of `TrackerClient` (`token`, `id_token_audience`, else from the
        environment)."""
        client = TrackerClient(url, token=token, id_token_audience=id_token_audience)
        return cls(client, tracker_url=url, **kwargs)

    @classmethod
    def pubsub(
        cls,
        topic: str,
        *,
        tracker_url: str | None = None,
        source: str | None = None,
        content_type: str = JSON_CONTENT_TYPE,
        heartbeat_every: float | None = None,
        token: str | None = None,
        id_token_audience: str | None = None,
    ) -> Worker:
        """Events to a Pub/Sub topic. `tracker_url` enables reading back (checkpoint,
        cancel, and the end check of `heartbeat`), with `token` / `id_token_audience`
        (else from the environment) as credentials; Pub/Sub itself uses Application
        Default Credentials."""
        producer = PubSubProducer(topic, source=source, content_type=content_type)
        auth = resolve(token, id_token_audience)
        worker = cls(producer, tracker_url=tracker_url, heartbeat_every=heartbeat_every, auth=auth)
        worker._owns_auth = True
        return worker

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
        close_auth = getattr(self._auth, "close", None)
        if self._owns_auth and callable(close_auth):
            close_auth()

    @property
    def can_read(self) -> bool:
        """Whether this worker can read operations back from the tracker."""
        return self._reader is not None or bool(self.tracker_url)

    def reader(self) -> TrackerClient:
        if self._reader is None:
            if not self.tracker_url:
                raise RuntimeError("reading back needs the tracker's URL (tracker_url=...)")
            # The worker keeps `auth` (shared by every reader it makes), so the client
            # must not close it: pass it as the caller's own.
            self._reader = TrackerClient(self.tracker_url, auth=self._auth)
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
        """The run of `name`: `with` it (a `Run`) or `async with` it (an `AsyncRun`)."""
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

    def track(self, name: str, **created: Any) -> Track:
        """Decorator: the call is the operation. `name` is formatted with the call's
        arguments (`"operations/export-{job_id}"`); a parameter named `op` receives the
        run (a `Run`, or an `AsyncRun` for an `async def`); a returned dict or message
        becomes the response.

        An `async def` gets an `async def` wrapper: the operation lasts as long as the
        coroutine, and ends with its real outcome (returned, raised, or cancelled).
        """
        return Track(self, name, created)


class Track:
    """What `Worker.track` returns: wraps a function, or a coroutine function, in a run."""

    def __init__(self, worker: Worker, name: str, created: Mapping[str, Any]) -> None:
        self.worker = worker
        self.name = name
        self.created = dict(created)

    @overload
    def __call__(
        self, func: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, func: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, func: Callable[P, Any]) -> Callable[P, Any]:
        signature = inspect.signature(func)
        wants_op = "op" in signature.parameters

        def run_for(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Run:
            bound = signature.bind_partial(*args, **kwargs)
            bound.apply_defaults()
            return self.worker.operation(self.name.format(**bound.arguments), **self.created)

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def awaiting(*args: P.args, **kwargs: P.kwargs) -> Any:
                async with run_for(args, kwargs) as run:
                    if wants_op:
                        kwargs["op"] = run
                    result = await func(*args, **kwargs)
                    if isinstance(result, (Message, Mapping)) and not run.done:
                        await run.succeed(result)
                    return result

            return awaiting

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            with run_for(args, kwargs) as run:
                if wants_op:
                    kwargs["op"] = run
                result = func(*args, **kwargs)
                if isinstance(result, (Message, Mapping)) and not run.done:
                    run.succeed(result)
                return result

        return wrapper
