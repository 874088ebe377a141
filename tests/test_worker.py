"""tracker.worker against a real tracker (HTTP) and pstest (Pub/Sub)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import struct_pb2
from google.rpc import code_pb2

from tests.test_pubsub import PubSub, drain
from tracker.client import TrackerClient, metadata
from tracker.config import Config
from tracker.server import Server, running
from tracker.worker import Worker, WorkerError, code_for


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running(Config(db=str(tmp_path / "w.db"), http_port=0, grpc_port=-1)) as s:
        yield s


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
