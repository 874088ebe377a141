"""tracker.worker against a real tracker (HTTP) and pstest (Pub/Sub)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import struct_pb2
from google.rpc import code_pb2

from tests.pubsub_kit import PubSub, drain
from tracker.client import PublishResult, TrackerClient, metadata
from tracker.config import Config
from tracker.events import Event
from tracker.server import Server, running
from tracker.worker import (
    AsyncRun,
    Cancelled,
    OperationEnded,
    Run,
    Worker,
    WorkerError,
    code_for,
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running(Config(db=str(tmp_path / "w.db"), http_port=0, grpc_port=-1)) as s:
        yield s


class Recording(TrackerClient):
    """A real HTTP client that also records each event it publishes: its kind, the
    tracker's answer and the thread that published it."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.sent: list[tuple[str, str]] = []
        self.threads: set[int] = set()

    def _emit(self, event: Event) -> PublishResult:
        result = super()._emit(event)
        self.sent.append((event.kind.value, result.outcome))
        self.threads.add(threading.get_ident())
        return result


@pytest.fixture
def recording(server: Server) -> Iterator[Recording]:
    with Recording(server.http_url) as producer:
        yield producer


@pytest.fixture
def worker(server: Server) -> Iterator[Worker]:
    with Worker.http(server.http_url) as w:
        yield w


@pytest.fixture
def client(server: Server) -> Iterator[TrackerClient]:
    with TrackerClient(server.http_url) as c:
        yield c


def test_context_manager_reports_the_whole_life(worker: Worker, client: TrackerClient) -> None:
    name = "operations/w-1"
    with worker.operation(name, operation_type="export", labels={"team": "data"}) as op:
        assert op.last_checkpoint() is None
        op.progress(50, "half")
        op.checkpoint(b"\x00resume-here")
        assert op.last_checkpoint() == b"\x00resume-here"
        op.heartbeat()
    operation = client.get(name)
    assert operation.done and operation.response.type_url.endswith("google.protobuf.Empty")
    meta = metadata(operation)
    assert meta is not None
    assert (meta.operation_type, dict(meta.labels)) == ("export", {"team": "data"})
    assert (meta.percent, meta.message, meta.last_sequence) == (100, "half", 5)


def test_explicit_result_and_no_second_terminal(worker: Worker, client: TrackerClient) -> None:
    with worker.operation("operations/w-2") as op:
        op.succeed({"rows": 3})
        with pytest.raises(RuntimeError):
            op.fail(code_pb2.INTERNAL, "too late")
    response = struct_pb2.Struct()
    assert client.get("operations/w-2").response.Unpack(response)
    assert response["rows"] == 3


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ValueError("bad input"), code_pb2.INVALID_ARGUMENT),
        (KeyError("k"), code_pb2.NOT_FOUND),
        (TimeoutError("slow"), code_pb2.DEADLINE_EXCEEDED),
        (PermissionError("no"), code_pb2.PERMISSION_DENIED),
        (WorkerError(code_pb2.RESOURCE_EXHAUSTED, "quota"), code_pb2.RESOURCE_EXHAUSTED),
        (RuntimeError("boom"), code_pb2.UNKNOWN),
    ],
)
def test_exceptions_fail_the_operation_with_a_mapped_code_and_propagate(
    worker: Worker, client: TrackerClient, exc: Exception, code: int
) -> None:
    name = f"operations/w-{type(exc).__name__}"
    with pytest.raises(type(exc)), worker.operation(name):
        raise exc
    operation = client.get(name)
    assert operation.done and operation.error.code == code
    assert operation.error.message


def test_google_api_errors_keep_their_code() -> None:
    from google.api_core import exceptions as gexc

    assert code_for(gexc.NotFound("x")) == code_pb2.NOT_FOUND
    assert code_for(gexc.Aborted("x")) == code_pb2.ABORTED


def test_interrupt_reports_cancelled(worker: Worker, client: TrackerClient) -> None:
    with pytest.raises(KeyboardInterrupt), worker.operation("operations/w-int"):
        raise KeyboardInterrupt
    assert client.get("operations/w-int").error.code == code_pb2.CANCELLED


def test_decorator_names_the_operation_from_arguments(
    worker: Worker, client: TrackerClient
) -> None:
    @worker.track("operations/export-{job_id}", operation_type="export")
    def export(job_id: str, op: object = None) -> dict[str, int]:
        op.progress(10, "started")  # type: ignore[attr-defined]
        return {"rows": 7}

    assert export("j9") == {"rows": 7}
    operation = client.get("operations/export-j9")
    response = struct_pb2.Struct()
    assert operation.done and operation.response.Unpack(response) and response["rows"] == 7


def test_worker_sees_a_cancel_request(worker: Worker, client: TrackerClient) -> None:
    with worker.operation("operations/w-cancel") as op:
        assert not op.cancel_requested()
        client.cancel("operations/w-cancel")
        assert op.cancel_requested()
        op.cancel("stopping as asked")
    assert client.get("operations/w-cancel").error.code == code_pb2.CANCELLED


def test_heartbeat_thread_beats_while_the_block_runs(server: Server, client: TrackerClient) -> None:
    name = "operations/w-beat"
    with Worker.http(server.http_url, heartbeat_every=0.05) as worker, worker.operation(name) as op:
        # Watch the operation change with no event sent by this block: the heartbeats.
        states = client.watch(name, timeout=30)
        first = next(states)
        beat = next(states)
        assert metadata(beat).last_sequence > metadata(first).last_sequence  # type: ignore[union-attr]
        assert op._heartbeat is not None
    assert not op._heartbeat.is_alive()
    assert client.get(name).done


def test_pubsub_transport(pubsub_env: str, server: Server, client: TrackerClient) -> None:
    pubsub = PubSub()
    topic = pubsub.topic()
    subscription = pubsub.subscription(topic)
    with (
        Worker.pubsub(topic, tracker_url=server.http_url) as worker,
        pytest.raises(WorkerError),
        worker.operation("operations/w-ps", operation_type="ps") as op,
    ):
        op.progress(30, "thirty")
        raise WorkerError(code_pb2.FAILED_PRECONDITION, "input not ready")
    assert drain(server, subscription) == 3
    operation = client.get("operations/w-ps")
    assert operation.error.code == code_pb2.FAILED_PRECONDITION
    assert operation.error.message == "input not ready"
    assert metadata(operation).message == "thirty"  # type: ignore[union-attr]


# ---- the operation ends while the work runs ------------------------------------------


def test_a_cancel_mid_work_raises_cancelled_at_the_next_progress(
    recording: Recording, client: TrackerClient
) -> None:
    name = "operations/w-cancelled"
    worker = Worker(recording)
    with pytest.raises(Cancelled) as raised, worker.operation(name) as op:
        op.progress(10, "started")
        client.cancel(name)
        op.progress(20, "still going")
        pytest.fail("progress into a cancelled operation returned")
    assert raised.value.cancelled and raised.value.operation == name
    assert raised.value.final is not None
    assert raised.value.final.error.code == code_pb2.CANCELLED
    assert isinstance(op.ended, Cancelled)
    # Nothing after the late progress: no `failed` for the Cancelled leaving the block.
    assert recording.sent == [("created", "applied"), ("progress", "applied"), ("progress", "late")]
    operation = client.get(name)
    assert operation.error.code == code_pb2.CANCELLED
    assert operation.error.message == "cancelled by CancelOperation"
    assert metadata(operation).percent == 10  # type: ignore[union-attr]


def test_an_end_by_another_producer_raises_operation_ended_not_cancelled(
    recording: Recording, client: TrackerClient
) -> None:
    name = "operations/w-ended"
    worker = Worker(recording)
    with pytest.raises(OperationEnded) as raised, worker.operation(name) as op:
        op.progress(10, "started")  # seq 2
        client.succeeded(name, {"by": "other"}, seq=2)
        op.checkpoint(b"resume")  # seq 3: after the other producer's end
    assert type(raised.value) is OperationEnded and not raised.value.cancelled
    assert "succeeded" in str(raised.value)
    assert recording.sent[-1] == ("checkpoint", "late")
    assert [kind for kind, _ in recording.sent] == ["created", "progress", "checkpoint"]
    response = struct_pb2.Struct()
    assert client.get(name).response.Unpack(response) and response["by"] == "other"


def test_an_operation_cancelled_before_the_work_starts_raises_at_its_first_call(
    recording: Recording, client: TrackerClient
) -> None:
    name = "operations/w-precancelled"
    client.created(name)
    client.cancel(name)
    with pytest.raises(Cancelled), Worker(recording).operation(name) as op:
        op.heartbeat()
    assert recording.sent == [("created", "late")]  # the heartbeat was never sent


def test_the_heartbeat_thread_stops_on_a_late_answer_and_the_next_call_raises(
    recording: Recording, client: TrackerClient
) -> None:
    name = "operations/w-beat-cancel"
    worker = Worker(recording, heartbeat_every=0.02)
    sent: list[tuple[str, str]] = []
    with pytest.raises(Cancelled), worker.operation(name) as op:
        client.cancel(name)
        assert op._heartbeat is not None
        op._heartbeat.join(30)  # the thread ends by itself on the late heartbeat
        assert not op._heartbeat.is_alive()
        assert isinstance(op.ended, Cancelled)
        sent = list(recording.sent)
        op.checkpoint(b"unsent")
    assert sent[-1] == ("heartbeat", "late")
    assert recording.sent == sent  # neither the checkpoint nor a terminal event went out
    assert client.get(name).error.message == "cancelled by CancelOperation"


def test_ended_exceptions_map_to_codes_when_they_leave_another_run() -> None:
    import pickle

    assert code_for(Cancelled("operations/inner")) == code_pb2.CANCELLED
    assert code_for(OperationEnded("operations/inner")) == code_pb2.ABORTED
    copied = pickle.loads(pickle.dumps(Cancelled("operations/inner")))
    assert isinstance(copied, Cancelled) and copied.operation == "operations/inner"


def test_pubsub_heartbeat_reads_the_operation_back_to_see_a_cancel(
    pubsub_env: str, server: Server, client: TrackerClient
) -> None:
    pubsub = PubSub()
    topic = pubsub.topic()
    subscription = pubsub.subscription(topic)
    name = "operations/w-ps-cancel"
    with Worker.pubsub(topic, tracker_url=server.http_url) as worker:
        with pytest.raises(Cancelled), worker.operation(name) as op:
            assert drain(server, subscription) == 1  # created is applied
            op.heartbeat()  # not done yet: no exception
            client.cancel(name)
            op.heartbeat()
        assert op.ended is not None and op.ended.cancelled
    assert drain(server, subscription) == 2  # two heartbeats, no terminal event
    assert client.get(name).error.message == "cancelled by CancelOperation"


# ---- async def under track -------------------------------------------------------------


def test_async_track_reports_the_coroutine_result_off_the_event_loop(
    recording: Recording, client: TrackerClient
) -> None:
    worker = Worker(recording)

    @worker.track("operations/async-{job}", operation_type="export")
    async def export(job: str, op: AsyncRun | None = None) -> dict[str, int]:
        assert op is not None
        await asyncio.sleep(0)  # the work really suspends before it is done
        await op.progress(50, "half")
        await op.checkpoint(b"half")
        assert await op.last_checkpoint() == b"half"
        return {"rows": 7}

    async def main() -> tuple[dict[str, int], int]:
        return await export("ok"), threading.get_ident()

    result, loop_thread = asyncio.run(main())
    assert result == {"rows": 7}
    operation = client.get("operations/async-ok")
    response = struct_pb2.Struct()
    assert operation.done and operation.response.Unpack(response) and response["rows"] == 7
    assert metadata(operation).message == "half"  # type: ignore[union-attr]
    assert [kind for kind, _ in recording.sent] == [
        "created",
        "progress",
        "checkpoint",
        "succeeded",
    ]
    assert loop_thread not in recording.threads  # no report blocked the event loop


def test_async_track_fails_with_the_mapped_code_when_the_coroutine_raises(
    recording: Recording, client: TrackerClient
) -> None:
    loop_threads: list[int] = []

    @Worker(recording).track("operations/async-{job}")
    async def export(job: str) -> None:
        loop_threads.append(threading.get_ident())
        await asyncio.sleep(0)
        raise PermissionError("no access to the bucket")

    with pytest.raises(PermissionError):
        asyncio.run(export("denied"))
    operation = client.get("operations/async-denied")
    assert operation.error.code == code_pb2.PERMISSION_DENIED
    assert operation.error.message == "no access to the bucket"
    assert recording.sent == [("created", "applied"), ("failed", "applied")]
    assert loop_threads[0] not in recording.threads  # reported from a thread


def test_async_track_reports_a_cancelled_task_and_lets_cancelled_error_through(
    worker: Worker, client: TrackerClient
) -> None:
    started = asyncio.Event()

    @worker.track("operations/async-{job}")
    async def export(job: str) -> None:
        started.set()
        await asyncio.Event().wait()  # until cancelled

    async def main() -> None:
        task = asyncio.ensure_future(export("stopped"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    operation = client.get("operations/async-stopped")
    assert operation.done and operation.error.code == code_pb2.CANCELLED
    assert operation.error.message == "CancelledError"


def test_async_work_sees_cancelled_from_the_api_and_reports_nothing_more(
    recording: Recording, client: TrackerClient
) -> None:
    worker = Worker(recording)
    name = "operations/async-api-cancel"

    @worker.track(name)
    async def export(op: Any = None) -> dict[str, int]:
        await op.progress(10)
        await asyncio.to_thread(client.cancel, name)
        await op.progress(20)
        return {"rows": 1}

    with pytest.raises(Cancelled):
        asyncio.run(export())
    assert [kind for kind, _ in recording.sent] == ["created", "progress", "progress"]
    assert client.get(name).error.message == "cancelled by CancelOperation"


def test_async_track_keeps_heartbeating_while_the_coroutine_waits(
    server: Server, client: TrackerClient
) -> None:
    name = "operations/async-beat"
    beats: list[int] = []

    def two_states() -> None:  # the heartbeats, seen from outside
        states = client.watch(name, timeout=30)
        beats.append(metadata(next(states)).last_sequence)  # type: ignore[union-attr]
        beats.append(metadata(next(states)).last_sequence)  # type: ignore[union-attr]

    with Worker.http(server.http_url, heartbeat_every=0.05) as worker:

        @worker.track(name)
        async def export(op: Any = None) -> None:
            await asyncio.to_thread(two_states)
            runs.append(op.run)

        runs: list[Run] = []
        asyncio.run(export())
    assert beats[1] > beats[0]
    assert runs[0]._heartbeat is not None and not runs[0]._heartbeat.is_alive()
    assert client.get(name).done


class GatedCreated(Recording):
    """Holds the `created` publish until the test opens the gate."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.in_created, self.gate = threading.Event(), threading.Event()

    def _emit(self, event: Event) -> PublishResult:
        if event.kind.value == "created":
            self.in_created.set()
            assert self.gate.wait(30)
        return super()._emit(event)


def test_a_task_cancelled_while_created_is_sent_still_ends_its_operation(
    server: Server, client: TrackerClient
) -> None:
    name = "operations/async-cancel-at-start"
    with GatedCreated(server.http_url) as producer:
        worker = Worker(producer, heartbeat_every=0.05)
        runs: list[Run] = []

        async def main() -> None:
            async def work() -> None:
                async with worker.operation(name) as op:
                    runs.append(op.run)
                    pytest.fail("the block ran although the task was cancelled")

            task = asyncio.ensure_future(work())
            assert await asyncio.to_thread(producer.in_created.wait, 30)
            task.cancel()  # while `created` is on its way
            producer.gate.set()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        assert runs == []
        assert [kind for kind, _ in producer.sent] == ["created", "cancelled"]
        assert f"heartbeat {name}" not in {t.name for t in threading.enumerate()}
    operation = client.get(name)
    assert operation.done and operation.error.code == code_pb2.CANCELLED


def test_leaving_after_cancel_requested_publishes_nothing_more(
    recording: Recording, client: TrackerClient
) -> None:
    name = "operations/w-asked"
    with Worker(recording).operation(name) as op:
        client.cancel(name)
        assert op.cancel_requested()
        assert isinstance(op.ended, Cancelled)
    assert recording.sent == [("created", "applied")]  # no `succeeded` on the way out
    assert client.get(name).error.message == "cancelled by CancelOperation"
