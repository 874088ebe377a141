"""The SDK against a real tracker (HTTP server in a background thread): no fakes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, duration_pb2, json_format, struct_pb2
from google.rpc import code_pb2

from tracker import errors
from tracker.client import (
    AsyncTrackerClient,
    TrackerClient,
    metadata,
    operation_to_dict,
    parse_operation,
)
from tracker.config import Config
from tracker.events import PROTOBUF_CONTENT_TYPE, Kind
from tracker.server import Server, running
from tracker.v1 import events_pb2


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running(Config(db=":memory:", http_port=0, grpc_port=-1, max_wait_seconds=60)) as srv:
        yield srv


@pytest.fixture
def client(server: Server) -> Iterator[TrackerClient]:
    with TrackerClient(server.http_url, source="tests/client") as c:
        yield c


@pytest.fixture
def name() -> str:
    return f"operations/sdk-{uuid.uuid4().hex[:12]}"


# ---- publishing -----------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", PROTOBUF_CONTENT_TYPE])
@pytest.mark.parametrize("mode", ["binary", "structured", "batch"])
def test_publish_in_every_mode_and_encoding_then_read_back(
    client: TrackerClient, name: str, mode: str, content_type: str
) -> None:
    events = [
        client.event(
            Kind.CREATED,
            name,
            events_pb2.Created(operation_type="export", labels={"team": "a"}, parent="p/1"),
        ),
        client.event(Kind.PROGRESS, name, events_pb2.Progress(percent=42.5, message="halfway")),
    ]

    results = client.publish(events, mode=mode, content_type=content_type)  # type: ignore[arg-type]

    assert [r.outcome for r in results] == ["applied", "applied"]
    assert [r.id for r in results] == [e.id for e in events]
    assert {r.operation for r in results} == {name}
    assert all(r.source == "tests/client" for r in results)
    op = client.get(name)
    assert op.name == name and not op.done
    m = metadata(op)
    assert m is not None
    assert (m.percent, m.message, m.operation_type, dict(m.labels), m.parent) == (
        42.5,
        "halfway",
        "export",
        {"team": "a"},
        "p/1",
    )


def test_the_same_event_twice_is_a_duplicate(client: TrackerClient, name: str) -> None:
    event = client.event(Kind.PROGRESS, name, events_pb2.Progress(percent=10))

    first = client.publish(event)
    again = client.publish(event, mode="structured")

    assert [r.outcome for r in first] == ["applied"]
    assert [r.outcome for r in again] == ["duplicate"]


def test_producer_verbs_build_fresh_events_with_sequence(client: TrackerClient, name: str) -> None:
    created = client.created(
        name, operation_type="t", labels={"k": "v"}, heartbeat_timeout=30.0, seq=1
    )
    newer = client.progress(name, 60, "newer", seq=3)
    older = client.progress(name, 30, "older", seq=2)  # by sequence: no rollback
    beat = client.heartbeat(name, "alive", seq=4)

    assert created.applied and newer.applied and beat.applied
    assert older.outcome == "stale"
    assert len({created.id, newer.id, older.id, beat.id}) == 4
    m = metadata(client.get(name))
    assert m is not None and (m.percent, m.message, m.last_sequence) == (60, "newer", 4)
    assert m.HasField("last_heartbeat_time")


def test_succeeded_with_a_dict_response_is_a_struct(client: TrackerClient, name: str) -> None:
    result = client.succeeded(name, {"rows": 7, "table": "t1"})

    assert result.applied and result.done
    op = client.get(name)
    assert op.done and op.WhichOneof("result") == "response"
    response = struct_pb2.Struct()
    assert op.response.Unpack(response)
    assert dict(response) == {"rows": 7, "table": "t1"}
    m = metadata(op)
    assert m is not None and m.percent == 100


def test_succeeded_with_a_message_response_keeps_its_type(client: TrackerClient, name: str) -> None:
    client.succeeded(name, duration_pb2.Duration(seconds=90))

    op = client.get(name)

    took = duration_pb2.Duration()
    assert op.response.Unpack(took) and took.seconds == 90


def test_failed_maps_the_error_code(client: TrackerClient, name: str) -> None:
    client.created(name)

    result = client.failed(name, code_pb2.RESOURCE_EXHAUSTED, "quota gone")
    op = client.get(name)

    assert result.done
    assert op.done and op.WhichOneof("result") == "error"
    assert (op.error.code, op.error.message) == (code_pb2.RESOURCE_EXHAUSTED, "quota gone")
    late = client.succeeded(name)  # terminal wins: a second terminal never overwrites
    assert late.outcome == "late"
    assert client.get(name).error.code == code_pb2.RESOURCE_EXHAUSTED


def test_cancelled_event_ends_as_cancelled(client: TrackerClient, name: str) -> None:
    client.cancelled(name, "user asked")

    op = client.get(name)

    assert op.done and op.error.code == code_pb2.CANCELLED


def test_custom_metadata_replaces_tracker_metadata(client: TrackerClient, name: str) -> None:
    client.created(name, metadata={"stage": "copy"})

    op = client.get(name)

    assert metadata(op) is None
    custom = struct_pb2.Struct()
    assert op.metadata.Unpack(custom) and dict(custom) == {"stage": "copy"}


def test_an_invalid_event_raises_invalid_event(client: TrackerClient) -> None:
    with pytest.raises(errors.InvalidEvent) as caught:
        client.progress("not-an-operation-name", 10)

    assert caught.value.reason == "bad_name"
    assert caught.value.code == code_pb2.INVALID_ARGUMENT


def test_a_bad_progress_percent_is_rejected(client: TrackerClient, name: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="percent"):
        client.progress(name, 250)


# ---- checkpoints ----------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", PROTOBUF_CONTENT_TYPE])
def test_checkpoint_bytes_round_trip(server: Server, name: str, content_type: str) -> None:
    blob = bytes(range(256)) * 3 + b"\x00\xff end"
    with TrackerClient(server.http_url, content_type=content_type) as client:
        client.created(name)
        assert client.get_checkpoint(name) is None

        client.checkpoint(name, blob)

        assert client.get_checkpoint(name) == blob


def test_checkpoint_of_a_missing_operation_is_not_found(client: TrackerClient) -> None:
    with pytest.raises(errors.NotFound):
        client.get_checkpoint("operations/never-heard-of-it")


# ---- consumer side --------------------------------------------------------------------


def test_watch_yields_each_change_until_done(
    client: TrackerClient, server: Server, name: str
) -> None:
    client.created(name)
    seen: list[float] = []
    with TrackerClient(server.http_url) as other:
        for op in client.watch(name, timeout=60):
            # Each state arrives only after the previous one was seen: the stream is live.
            m = metadata(op)
            assert m is not None
            seen.append(m.percent)
            if len(seen) == 1:
                other.progress(name, 25)
            elif len(seen) == 2:
                other.progress(name, 75)
            elif len(seen) == 3:
                other.succeeded(name)

    assert seen == [0, 25, 75, 100]


def test_watch_stops_at_its_timeout(client: TrackerClient, name: str) -> None:
    client.progress(name, 5)

    states = list(client.watch(name, timeout=0.3))

    assert len(states) == 1 and not states[0].done


def test_watch_of_a_missing_operation_raises_not_found(client: TrackerClient) -> None:
    with pytest.raises(errors.NotFound):
        list(client.watch("operations/nobody"))


# ---- failures and parsing -------------------------------------------------------------


def test_an_unreachable_tracker_is_tracker_unavailable() -> None:
    with socket_bound() as port, TrackerClient(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(errors.TrackerUnavailable, match="cannot connect"):
            client.get("operations/x")
        with pytest.raises(errors.TrackerUnavailable):
            client.progress("operations/x", 1)


def test_unknown_any_types_are_kept_by_type_url() -> None:
    packed = any_pb2.Any(type_url="type.googleapis.com/acme.v1.Secret", value=b"\x08\x01")
    served = {
        "name": "operations/x",
        "done": True,
        "metadata": {"@type": packed.type_url, "value": "CAE="},
        "response": {"@type": "type.googleapis.com/acme.v1.Result", "rows": 3},
        "newFieldFromTheFuture": 1,
    }

    op = parse_operation(served)

    assert op.metadata == packed
    assert op.response.type_url == "type.googleapis.com/acme.v1.Result"
    assert operation_to_dict(op)["metadata"] == {"@type": packed.type_url, "value": "CAE="}


def test_operation_json_round_trips() -> None:
    op = operations_pb2.Operation(name="operations/y", done=True)
    op.error.code = code_pb2.ABORTED
    op.error.message = "no"
    op.error.details.add().Pack(duration_pb2.Duration(seconds=1))

    assert parse_operation(operation_to_dict(op)) == op
    assert operation_to_dict(op) == json_format.MessageToDict(op)


# ---- async twin -----------------------------------------------------------------------


def test_async_client_publishes_lists_and_waits(server: Server, name: str) -> None:
    async def scenario() -> tuple[operations_pb2.Operation, list[str], list[bool]]:
        async with AsyncTrackerClient(server.http_url) as client:
            await client.created(name, operation_type="async")
            await client.progress(name, 50)
            watched = []
            async for op in client.watch(name, timeout=60):
                watched.append(op.done)
                if not op.done:
                    await client.succeeded(name)
            done = await client.wait(name, timeout=5)
            names = [op.name async for op in client.list('operation_type = "async"')]
            return done, names, watched

    op, names, watched = asyncio.run(scenario())

    assert op.done and name in names and watched == [False, True]


class socket_bound:
    """A loopback port that is bound but not listening: connections are refused."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_http_error_without_json_body_still_maps() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(502, text="bad gateway"))
    with (
        TrackerClient("http://tracker.invalid", transport=transport) as client,
        pytest.raises(errors.TrackerError, match="bad gateway"),
    ):
        client.get("operations/x")


def test_get_checkpoint_reads_the_raw_bytes_the_route_answers() -> None:
    """Pins the contract of GET /v1/{name}:checkpoint that the SDK relies on: 200 with
    application/octet-stream bytes, or 404 when there is none (the operation exists)."""
    blob = b"\x00\x01resume\xff"

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/operations/with:checkpoint":
            return httpx.Response(
                200, content=blob, headers={"content-type": "application/octet-stream"}
            )
        if request.url.path == "/v1/operations/without":
            return httpx.Response(200, json={"name": "operations/without"})
        error = {"error": {"code": 404, "message": "no checkpoint", "status": "NOT_FOUND"}}
        return httpx.Response(404, json=error)

    with TrackerClient("http://tracker.invalid", transport=httpx.MockTransport(answer)) as client:
        assert client.get_checkpoint("operations/with") == blob
        assert client.get_checkpoint("operations/without") is None
        with pytest.raises(errors.NotFound):
            client.get_checkpoint("operations/missing")
