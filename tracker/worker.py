"""The Python producer SDK: report an operation's life from the code doing the work.

    from tracker.worker import Worker

    with Worker.http("http://127.0.0.1:8080") as worker:     # or Worker.pubsub(topic)
      with worker.operation("operations/export-42", operation_type="export") as op:
        start = int(op.checkpoint_data or b"0")        # where a killed run left off
        for i in range(start, len(chunks)):
            copy(chunks[i])
            op.progress(100 * (i + 1) / len(chunks), f"chunk {i + 1}")
            op.checkpoint(str(i + 1).encode())
        op.succeed({"rows": total})

Entering reads the operation, then publishes `created`; leaving publishes `succeeded`
(unless the block already ended the operation), or, when the block raises, `failed` with
the exception mapped to a google.rpc code (`cancelled` for KeyboardInterrupt /
asyncio.CancelledError) and the exception propagates. `Worker.track` is the decorator
form, for plain and `async def` functions; `async with worker.operation(...)` gives an
`AsyncRun` whose methods are coroutines. With `heartbeat_every`, a background thread
sends heartbeats while the block runs.

Restarts: a run is one attempt of the work. Its events carry the attempt (CloudEvents
`attempt`) and a sequence number from 1, and the tracker orders a later attempt after
every event of an earlier one. The attempt is the one given (`attempt=`, e.g. from a
resume notice), else the operation's current attempt + 1 when it already exists (a
restarted worker), else 1; `op.checkpoint_data` is the checkpoint it held. Over HTTP
`created` is answered before the work starts, so the next restart reads the new attempt.
Over Pub/Sub nothing waits for `created` to be applied, and a restart may read the
operation before the previous run's events arrive: pass `attempt=` there (the resume
notice's, or the platform's retry count + 1).

When the operation ends elsewhere while the work runs (CancelOperation, the deadline
sweeper, another producer's terminal event), the next `progress` / `heartbeat` /
`checkpoint` raises `Cancelled` or `OperationEnded`, and the run reports nothing more.
Over HTTP the tracker's answer to each event says so (`late`, `state`,
`cancelRequested`); over Pub/Sub there is no answer: with `watch=True` a background
thread on the tracker's `:watch` stream hears of it at once (`tracker.ends`, where any
other `EndListener` plugs in), else only `heartbeat` checks, by reading the operation
back, and only when the worker has a `tracker_url`.
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

from tracker.client import MetadataValue, Producer, PublishResult, TrackerClient, metadata
from tracker.client._producers import PubSubProducer
from tracker.client.credentials import resolve
from tracker.constants import DEFAULT_URL
from tracker.ends import (
    Cancelled,
    EndListener,
    OperationEnded,
    WatchEnds,
    WorkerError,
    code_for,
    end_of,
    has_ended,
)
from tracker.errors import NotFound, PermissionDenied, Unauthenticated
from tracker.events import JSON_CONTENT_TYPE, MAX_ATTEMPT

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


_ENDED_STATES = frozenset({"succeeded", "failed", "cancelled"})


def _late(answer: object) -> bool:
    return isinstance(answer, PublishResult) and answer.outcome == "late"


def _ended_by(answer: object) -> bool:
    """Whether the tracker's answer to an event says the operation has ended: `late`,
    a state other than running, or a cancel request."""
    if not isinstance(answer, PublishResult):
        return False  # Pub/Sub: a message id, nothing to tell
    return _late(answer) or answer.state in _ENDED_STATES or answer.cancel_requested


class Run:
    """One operation being worked on; use through `Worker.operation(...)`.

    `with` gives this object (blocking methods); `async with` gives its `AsyncRun` view,
    whose methods are coroutines.

    Attributes:
        attempt: the attempt this run reports as (set on entering): the one given, else
            the operation's current attempt + 1 when it already exists (a restart), else
            1. Every event of the run carries it; sequence numbers start at 1 per run.
        checkpoint_data: the checkpoint the operation held when the run started (None:
            none, or nothing to read it from): where a restarted run resumes.
        start: the operation as read when the run started; None when it did not exist
            yet or could not be read.
    """

    def __init__(
        self,
        worker: Worker,
        name: str,
        created: Mapping[str, Any],
        attempt: int | None = None,
    ) -> None:
        if attempt is not None and not 1 <= attempt <= MAX_ATTEMPT:
            raise ValueError(f"attempt must be in 1..{MAX_ATTEMPT}, not {attempt}")
        self.worker = worker
        self.name = name
        self._created = dict(created)
        self._given_attempt = attempt
        self.attempt = attempt or 1
        self.checkpoint_data: bytes | None = None
        self.start: operations_pb2.Operation | None = None
        self._unstarted = False  # it exists, and no run has reported on it yet
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self.done = False
        self._ended: OperationEnded | None = None
        self._end_known = threading.Event()
        self._stop_heartbeat = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._stop_listening: Callable[[], None] | None = None

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

    def notice_end(self, end: OperationEnded) -> None:
        """Tell the run its operation has ended (or was asked to cancel) elsewhere: the
        work's next `progress` / `heartbeat` / `checkpoint` raises `end`, and the run
        publishes nothing more. What an `EndListener` calls; safe from any thread, and
        only the first call counts. Ignored once the run has ended the operation itself.
        """
        if self.done:
            return
        self._remember(end)

    def wait_for_end(self, timeout: float | None = None) -> OperationEnded | None:
        """Block until the run knows its operation has ended elsewhere (from an answer,
        a heartbeat, or the end listener), or `timeout` seconds pass: the end, or None.

        Work that waits on something else can wait here instead, and stop at once.
        """
        self._end_known.wait(timeout)
        return self._ended

    # ---- reporting ---------------------------------------------------------------------

    def progress(
        self, percent: float, message: str = "", *, metadata: MetadataValue | None = None
    ) -> None:
        """Raises `Cancelled` / `OperationEnded` when the operation has already ended."""
        self._report(
            lambda seq: self.worker.producer.progress(
                self.name, percent, message, metadata=metadata, seq=seq, attempt=self.attempt
            )
        )

    def checkpoint(self, data: bytes) -> None:
        """Raises `Cancelled` / `OperationEnded` when the operation has already ended."""
        self._report(
            lambda seq: self.worker.producer.checkpoint(
                self.name, data, seq=seq, attempt=self.attempt
            )
        )

    def heartbeat(self, message: str = "") -> None:
        """Raises `Cancelled` / `OperationEnded` when the operation has already ended.

        Over Pub/Sub (no answer per event) with a tracker URL and no end listener, this
        is the one call that reads the operation back to find out.
        """
        self._report(
            lambda seq: self.worker.producer.heartbeat(
                self.name, message, seq=seq, attempt=self.attempt
            ),
            read_back=self._stop_listening is None,
        )

    def _report(self, send: Callable[[int], object], *, read_back: bool = False) -> None:
        self._raise_if_ended()
        answer = send(self._next())
        if _ended_by(answer):
            raise self._learn_end(answer)
        if read_back and not isinstance(answer, PublishResult) and self.worker.can_read:
            self._check_back()
        self._raise_if_ended()  # the end listener may have heard meanwhile

    def _raise_if_ended(self) -> None:
        known = self._ended
        if known is not None:
            # A fresh instance each time: re-raising one would pile up tracebacks.
            raise type(known)(known.operation, known.final)

    def _learn_end(self, answer: object) -> OperationEnded:
        """The tracker said the operation has ended: read it back to say how (the answer's
        state says whether it was a cancel when that fails), remember it."""
        final: operations_pb2.Operation | None = None
        try:
            final = self.worker.reader().get(self.name)
        except Exception as exc:
            log.warning("%s has ended; reading it back failed: %s", self.name, exc)
        cancelled = isinstance(answer, PublishResult) and (
            answer.state == "cancelled"
            or (answer.cancel_requested and answer.state in ("", "running"))
        )
        return self._remember(end_of(self.name, final, cancelled=cancelled))

    def _check_back(self) -> None:
        try:
            operation = self.worker.reader().get(self.name)
        except NotFound:
            return  # not applied yet: the events are still on their way
        except Exception as exc:  # a failed check must not fail the heartbeat
            log.warning("could not read %s back: %s", self.name, exc)
            return
        if has_ended(operation):
            raise self._remember(end_of(self.name, operation))

    def _remember(self, end: OperationEnded) -> OperationEnded:
        with self._lock:
            if self._ended is None:
                self._ended = end
        self._stop_heartbeat.set()
        self._end_known.set()
        return end

    def succeed(self, response: MetadataValue | None = None) -> None:
        self._terminal()
        answer = self.worker.producer.succeeded(
            self.name, response, seq=self._next(), attempt=self.attempt
        )
        self._answered(answer)

    def fail(self, code: int, message: str, details: Iterable[Message] = ()) -> None:
        self._terminal()
        answer = self.worker.producer.failed(
            self.name, code, message, details=details, seq=self._next(), attempt=self.attempt
        )
        self._answered(answer)

    def cancel(self, reason: str = "") -> None:
        self._terminal()
        answer = self.worker.producer.cancelled(
            self.name, reason, seq=self._next(), attempt=self.attempt
        )
        self._answered(answer)

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
        operation = self.worker.reader().get(self.name)
        if has_ended(operation):
            self._remember(end_of(self.name, operation))
        meta = metadata(operation)
        return bool(meta and meta.cancel_requested) or (
            operation.done and operation.error.code == code_pb2.CANCELLED
        )

    # ---- context manager ---------------------------------------------------------------

    def _read_start(self) -> None:
        """Where the operation stands before this run reports: its attempt, checkpoint."""
        if not self.worker.can_read:
            return
        try:
            self.start = self.worker.reader().get(self.name)
        except NotFound:
            return  # the first run
        except (Unauthenticated, PermissionDenied) as exc:
            # Allowed to publish, not to read (operations.read): a restart cannot be told
            # from a first run. The events still go out; the refusal is the warning's.
            log.warning(
                "cannot read %s (%s): reporting as attempt %d", self.name, exc, self.attempt
            )
            return
        meta = metadata(self.start)
        # Created by `Worker.create` (or any create) and no run has reported since: the
        # first run, not a restart.
        self._unstarted = meta is not None and meta.last_sequence == 0 and not self.start.done
        if self._given_attempt is None and meta is not None and not self._unstarted:
            # A restart: one more than the operation's current attempt, so the events
            # of this run, numbered from 1 again, order after the previous run's.
            self.attempt = min(int(meta.attempt or 1) + 1, MAX_ATTEMPT)
        if not self.start.done:
            self.checkpoint_data = self.worker.reader().get_checkpoint(self.name)

    def _send_created(self) -> object:
        if self._unstarted and not any(self._created.values()):
            # Created (`Worker.create`) and never run, and this run says nothing of what
            # it is: a `created` would blank its type and labels. A heartbeat starts the
            # run's sequence and is answered the same way.
            return self.worker.producer.heartbeat(
                self.name, "started", seq=self._next(), attempt=self.attempt
            )
        answer = self.worker.producer.created(
            self.name, seq=self._next(), attempt=self.attempt, **self._created
        )
        unreadable = (
            self._given_attempt is None and self.start is not None and metadata(self.start) is None
        )
        if (
            unreadable
            and isinstance(answer, PublishResult)
            and answer.attempt > 0
            and answer.state == "running"
        ):
            # The operation's metadata is the producer's own, so its attempt could not
            # be read before: the answer tells it; start the attempt after it.
            self.attempt = min(answer.attempt + 1, MAX_ATTEMPT)
            self._seq = itertools.count(1)
            answer = self.worker.producer.created(
                self.name, seq=self._next(), attempt=self.attempt, **self._created
            )
        return answer

    def __enter__(self) -> Run:
        self._read_start()
        answer = self._send_created()
        if _ended_by(answer):
            self._learn_end(answer)  # the work's first progress/heartbeat/checkpoint raises
            return self
        listener = self.worker.end_listener()
        if listener is not None:
            self._stop_listening = listener.listen(self.name, self.notice_end)
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
        try:
            self._exit(exc)
        finally:
            if self._stop_listening is not None:
                self._stop_listening()

    def _exit(self, exc: BaseException | None) -> None:
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

    @property
    def attempt(self) -> int:
        return self.run.attempt

    @property
    def checkpoint_data(self) -> bytes | None:
        return self.run.checkpoint_data

    def notice_end(self, end: OperationEnded) -> None:
        self.run.notice_end(end)

    async def wait_for_end(self, timeout: float | None = None) -> OperationEnded | None:
        return await asyncio.to_thread(self.run.wait_for_end, timeout)

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
        watch: bool = False,
        end_listener: EndListener | None = None,
    ) -> None:
        """
        Args:
            producer: where the events go.
            tracker_url: where to read operations back (the producer's own URL when it
                is a `TrackerClient`).
            heartbeat_every: seconds between the background heartbeats (None: none).
            auth: the credentials the reader sends when it is made from `tracker_url`
                (`tracker.client.credentials.resolve` makes them; None reads the
                environment).
            watch: hear of a cancel or an end while the work runs, through the
                tracker's `:watch` stream (`tracker.ends.WatchEnds`), so the next call
                raises even over Pub/Sub, with no answer to tell; needs the URL.
            end_listener: any other `tracker.ends.EndListener` (say, on a topic of
                cancel notices) instead.
        """
        self.producer = producer
        self.tracker_url = tracker_url
        self.heartbeat_every = heartbeat_every
        self._watch = watch
        self._end_listener = end_listener
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
        watch: bool = False,
    ) -> Worker:
        """Events to a Pub/Sub topic. `tracker_url` enables reading back (the attempt
        and checkpoint at start, cancel, the end check of `heartbeat`, and `watch`),
        with `token` / `id_token_audience` (else from the environment) as credentials;
        Pub/Sub itself uses Application Default Credentials."""
        producer = PubSubProducer(topic, source=source, content_type=content_type)
        auth = resolve(token, id_token_audience)
        worker = cls(
            producer,
            tracker_url=tracker_url,
            heartbeat_every=heartbeat_every,
            auth=auth,
            watch=watch,
        )
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

    def end_listener(self) -> EndListener | None:
        """What tells this worker's runs of an end while they work (None: nothing)."""
        if self._end_listener is None and self._watch:
            self._end_listener = WatchEnds(self.reader())
        return self._end_listener

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
        attempt: int | None = None,
    ) -> Run:
        """The run of `name`: `with` it (a `Run`) or `async with` it (an `AsyncRun`).

        `attempt`: the attempt this run is, when the caller knows (a resume notice
        names it; over Pub/Sub, pass it: see the module's docstring). Else the run
        reads the operation on entering and takes its attempt + 1 if it exists.
        """
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
            attempt,
        )

    def create(
        self,
        name: str = "",
        *,
        collection: str = "",
        request_id: str | None = None,
        operation_type: str = "",
        labels: Mapping[str, str] | None = None,
        parent: str = "",
        metadata: MetadataValue | None = None,
        deadline: datetime | None = None,
        heartbeat_timeout: timedelta | float | None = None,
    ) -> operations_pb2.Operation:
        """Create the operation now, committed, and return it (`TrackerClient.create`):
        over HTTP to the tracker (`tracker_url`), whatever transport this worker's events
        take, so that the caller's first GetOperation finds it. Run it later with
        `worker.operation(op.name)`."""
        return self.reader().create(
            name,
            collection=collection,
            request_id=request_id,
            operation_type=operation_type,
            labels=labels,
            parent=parent,
            metadata=metadata,
            deadline=deadline,
            heartbeat_timeout=heartbeat_timeout,
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


__all__ = [
    "AsyncRun",
    "Cancelled",
    "EndListener",
    "OperationEnded",
    "PubSubProducer",
    "Run",
    "Track",
    "WatchEnds",
    "Worker",
    "WorkerError",
    "code_for",
]
