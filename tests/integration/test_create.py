"""Creating an operation synchronously (tracker.v1.Operations.CreateOperation): over
HTTP/JSON, gRPC, the SDK (sync and async) and tracker.worker; idempotent by request id
(AIP-155); ALREADY_EXISTS for a name taken; every bad request a clear 4xx."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from typing import Any

import grpc
import httpx
import pytest
from google.longrunning import operations_pb2
from google.protobuf import struct_pb2
from google.rpc import code_pb2

from tests.helpers import google_error
from tests.pubsub_kit import PubSub, drain
from tests.tokens import READER_TOKEN, TOKEN
from tracker import AsyncTrackerClient, TrackerClient, errors
from tracker.server import Server
from tracker.v1 import operations_pb2 as create_pb2
from tracker.wire import metadata
from tracker.worker import Worker

CREATE = "/tracker.v1.Operations/CreateOperation"


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:12]


def create(http: httpx.Client, path: str = "/v1/operations", **body: object) -> httpx.Response:
    return http.post(path, json=body)


# ---- HTTP ------------------------------------------------------------------------------


def test_create_answers_the_committed_operation_and_get_finds_it(
    http: httpx.Client, uid: str
) -> None:
    answer = create(
        http,
        operationId=f"export-{uid}",
        requestId=str(uuid.uuid4()),
        operation={"operationType": "export", "labels": {"team": "a"}},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["name"] == f"operations/export-{uid}" and not body.get("done")
    got = http.get(f"/v1/operations/export-{uid}").json()
    assert got["metadata"]["operationType"] == "export"
    assert got["metadata"]["labels"] == {"team": "a"}
    assert got["metadata"]["createTime"] == body["metadata"]["createTime"]
    history = http.get(f"/v1/operations/export-{uid}/events").json()["events"]
    assert [(e["type"], e["source"]) for e in history] == [
        ("tracker.operation.v1.created", "tracker/create")
    ]


def test_a_retried_request_id_answers_the_same_operation(http: httpx.Client, uid: str) -> None:
    request_id = str(uuid.uuid4())
    first = create(http, requestId=request_id, operation={"operationType": "t"}).json()
    assert first["name"].startswith("operations/")
    http.post(f"/v1/{first['name']}:cancel", json={})  # it moved on meanwhile
    again = create(http, requestId=request_id, operation={"operationType": "t"})
    assert again.status_code == 200
    assert again.json()["name"] == first["name"]
    assert again.json()["done"] is True  # the operation as it stands now
    other = create(http, requestId=str(uuid.uuid4()), operation={"operationType": "t"}).json()
    assert other["name"] != first["name"]
    # Without a request id, each call is a new operation.
    assert create(http).json()["name"] != create(http).json()["name"]


def test_a_name_taken_is_already_exists_and_a_deleted_one_too(http: httpx.Client, uid: str) -> None:
    name = f"operations/taken-{uid}"
    assert create(http, operationId=f"taken-{uid}", requestId="r1").status_code == 200
    again = create(http, operationId=f"taken-{uid}", requestId="r2")
    assert again.status_code == 409, again.text
    assert google_error(again)[0] == "ALREADY_EXISTS"
    assert "already exists" in again.json()["error"]["message"]
    # A name events made first is taken as well.
    http.post(
        "/v1/events",
        content=b"{}",
        headers={
            "ce-specversion": "1.0",
            "ce-id": "e1",
            "ce-source": "w",
            "ce-type": "tracker.operation.v1.progress",
            "ce-subject": f"operations/evented-{uid}",
            "content-type": "application/json",
        },
    ).raise_for_status()
    assert create(http, operationId=f"evented-{uid}").status_code == 409
    assert http.delete(f"/v1/{name}").status_code == 200
    gone = create(http, operationId=f"taken-{uid}", requestId="r3")
    assert gone.status_code == 409 and "not used twice" in gone.json()["error"]["message"]


def test_create_under_a_parent_names_it_in_that_collection(http: httpx.Client, uid: str) -> None:
    path = f"/v1/projects/p-{uid}/locations/us/operations"
    named = create(http, path, operationId="job-1").json()
    assert named["name"] == f"projects/p-{uid}/locations/us/operations/job-1"
    generated = create(http, path, requestId="abc").json()
    assert generated["name"].startswith(f"projects/p-{uid}/locations/us/operations/")
    listed = http.get(path).json()["operations"]
    assert sorted(o["name"] for o in listed) == sorted([named["name"], generated["name"]])
    # The body may repeat the URL's parent, not name another.
    same = create(http, path, parent=f"projects/p-{uid}/locations/us", operationId="job-2")
    assert same.status_code == 200
    other = create(http, path, parent="projects/x/locations/us", operationId="job-3")
    assert other.status_code == 400 and "differs" in other.json()["error"]["message"]


def test_metadata_without_type_is_a_struct_as_in_events(http: httpx.Client, uid: str) -> None:
    body = create(http, operationId=f"m-{uid}", operation={"metadata": {"rows": 5}}).json()
    assert body["metadata"] == {
        "@type": "type.googleapis.com/google.protobuf.Struct",
        "value": {"rows": 5},
    }


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"not json", 400, "not valid JSON"),
        (b"[1]", 400, "JSON object"),
        (json.dumps({"operationId": "a", "nope": 1}).encode(), 400, "nope"),
        (json.dumps({"operationId": "../etc"}).encode(), 400, "does not match"),
        (json.dumps({"operationId": "a", "requestId": "x" * 300}).encode(), 400, "request_id"),
        (json.dumps({"operation": {"labels": {"k": 5}}}).encode(), 400, "created"),
        (json.dumps({"operation": "export"}).encode(), 400, "must be a JSON object"),
        (json.dumps({"operation": [1]}).encode(), 400, "must be a JSON object"),
        (json.dumps({"operation": {"operationType": "x" * 300}}).encode(), 400, "operationType"),
        (
            json.dumps(
                {"operation": {"metadata": {"@type": "type.googleapis.com/x.Nope"}}}
            ).encode(),
            400,
            "x.Nope",
        ),
        (
            json.dumps({"operation": {"webhooks": [{"url": "https://h/x"}]}}).encode(),
            400,
            "webhooks",
        ),
        (json.dumps({"operation": {"deadline": "tomorrow"}}).encode(), 400, "deadline"),
        (b'{"operation": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "deep"),
        (json.dumps({"operationId": 7}).encode(), 400, "operationId"),
    ],
)
def test_bad_requests_are_a_clear_400(
    http: httpx.Client, body: bytes, status: int, words: str
) -> None:
    answer = http.post("/v1/operations", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == status, answer.text
    assert google_error(answer)[0] == "INVALID_ARGUMENT"
    assert words.lower() in answer.json()["error"]["message"].lower(), answer.text


def test_a_body_over_the_event_limit_is_413(http: httpx.Client) -> None:
    big = {"operation": {"labels": {"k": "v" * (3 * 1024 * 1024)}}}
    answer = http.post("/v1/operations", json=big)
    assert answer.status_code == 413
    assert google_error(answer)[0] == "RESOURCE_EXHAUSTED"


def test_concurrent_creates_of_one_request_make_one_operation(
    http: httpx.Client, server: Server, uid: str
) -> None:
    request_id = str(uuid.uuid4())
    names: list[str] = []
    codes: list[int] = []
    lock = threading.Lock()

    def call(request: str) -> None:
        with httpx.Client(base_url=server.http_url, timeout=60) as own:
            answer = own.post(
                "/v1/operations", json={"operationId": f"race-{uid}", "requestId": request}
            )
        with lock:
            codes.append(answer.status_code)
            if answer.status_code == 200:
                names.append(answer.json()["name"])

    threads = [threading.Thread(target=call, args=(request_id,)) for _ in range(10)]
    threads += [threading.Thread(target=call, args=(str(uuid.uuid4()),)) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The one request id's ten calls and none of the others' (the name was taken by it,
    # or one of them took it first and the request id's calls were refused).
    assert sorted(set(codes)) == [200, 409]
    assert set(names) == {f"operations/race-{uid}"}
    history = http.get(f"/v1/operations/race-{uid}/events").json()["events"]
    applied = [e for e in history if e["outcome"] == "applied"]
    assert len(applied) == 1
    winner = applied[0]["id"]
    assert codes.count(200) == (10 if winner == request_id else 1)


# ---- gRPC ------------------------------------------------------------------------------


def grpc_create(
    server: Server, request: create_pb2.CreateOperationRequest | bytes
) -> operations_pb2.Operation:
    raw = request if isinstance(request, bytes) else request.SerializeToString()
    with grpc.insecure_channel(server.grpc_target) as channel:
        call: Any = channel.unary_unary(
            CREATE, response_deserializer=operations_pb2.Operation.FromString
        )
        answer: operations_pb2.Operation = call(raw, timeout=30)
        return answer


def test_grpc_create_is_the_same_call(server: Server, uid: str) -> None:
    request = create_pb2.CreateOperationRequest(
        parent=f"projects/g-{uid}/locations/eu", request_id="same"
    )
    request.operation.operation_type = "grpc"
    first = grpc_create(server, request)
    assert first.name.startswith(f"projects/g-{uid}/locations/eu/operations/")
    assert grpc_create(server, request).name == first.name
    with TrackerClient(server.http_url) as client:
        assert metadata(client.get(first.name)).operation_type == "grpc"  # type: ignore[union-attr]
    taken = create_pb2.CreateOperationRequest(
        parent=f"projects/g-{uid}/locations/eu",
        operation_id=first.name.rpartition("/")[2],
        request_id="another",
    )
    with pytest.raises(grpc.RpcError) as info:
        grpc_create(server, taken)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    for bad in (b"\xff\xff\xff", create_pb2.CreateOperationRequest(parent="folders/f")):
        with pytest.raises(grpc.RpcError) as info:
            grpc_create(server, bad)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details()
    progress = create_pb2.CreateOperationRequest()
    progress.operation.labels["k"] = "v" * 2000  # a label value over 1024 bytes
    with pytest.raises(grpc.RpcError) as info:
        grpc_create(server, progress)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ---- SDK and worker --------------------------------------------------------------------


def test_the_sdk_creates_with_its_own_or_a_given_request_id(server: Server, uid: str) -> None:
    with TrackerClient(server.http_url) as client:
        op = client.create(
            f"projects/s-{uid}/locations/l/operations/a",
            operation_type="sdk",
            labels={"x": "1"},
            metadata={"rows": 1},
        )
        assert op.name == f"projects/s-{uid}/locations/l/operations/a"
        meta = struct_pb2.Struct()
        assert op.metadata.Unpack(meta) and meta["rows"] == 1
        generated = client.create(collection=f"projects/s-{uid}/locations/l", request_id="r")
        assert generated.name.startswith(f"projects/s-{uid}/locations/l/operations/")
        assert client.create(collection=f"projects/s-{uid}/locations/l", request_id="r") == (
            client.get(generated.name)
        )
        with pytest.raises(errors.AlreadyExists):
            client.create(f"projects/s-{uid}/locations/l/operations/a")
        with pytest.raises(errors.InvalidArgument):
            client.create("not/a/name")
        with pytest.raises(errors.InvalidArgument):
            client.create("operations/x", collection="projects/p")

    async def in_async() -> operations_pb2.Operation:
        async with AsyncTrackerClient(server.http_url) as client:
            return await client.create(f"operations/async-{uid}", operation_type="a")

    assert asyncio.run(in_async()).name == f"operations/async-{uid}"


def test_a_pubsub_worker_creates_over_http_then_reports_over_pubsub(
    pubsub_env: str, server: Server, uid: str
) -> None:
    pubsub = PubSub()
    topic = pubsub.topic()
    subscription = pubsub.subscription(topic)
    with Worker.pubsub(topic, tracker_url=server.http_url) as worker:
        op = worker.create(
            collection="projects/w/locations/l", operation_type="export", labels={"t": uid}
        )
        with TrackerClient(server.http_url) as client:
            assert client.get(op.name).name == op.name  # found at once: nothing in flight
        with worker.operation(op.name) as run:
            assert run.attempt == 1  # created, not yet run: the first attempt
            run.progress(50, "half")
            run.succeed({"rows": 3})
    assert drain(server, subscription) == 3  # heartbeat (start), progress, succeeded
    with TrackerClient(server.http_url) as client:
        done = client.get(op.name)
    assert done.done and not done.HasField("error")
    meta = metadata(done)
    assert meta is not None
    assert meta.operation_type == "export" and dict(meta.labels) == {"t": uid}
    assert meta.attempt == 1


def test_create_needs_events_publish(secured_server: Server) -> None:
    body = {"operationId": f"auth-{uuid.uuid4().hex[:8]}"}
    with httpx.Client(base_url=secured_server.http_url, timeout=30) as http:
        anonymous = http.post("/v1/operations", json=body)
        assert anonymous.status_code == 401
        reader = http.post(
            "/v1/operations", json=body, headers={"authorization": f"Bearer {READER_TOKEN}"}
        )
        assert reader.status_code == 403 and google_error(reader)[1] == "PERMISSION_MISSING"
        ok = http.post("/v1/operations", json=body, headers={"authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
    request = create_pb2.CreateOperationRequest(operation_id="grpc-" + body["operationId"])
    with grpc.insecure_channel(secured_server.grpc_target) as channel:
        call = channel.unary_unary(
            CREATE,
            request_serializer=create_pb2.CreateOperationRequest.SerializeToString,
            response_deserializer=operations_pb2.Operation.FromString,
        )
        with pytest.raises(grpc.RpcError) as info:
            call(request, timeout=30, metadata=(("authorization", f"Bearer {READER_TOKEN}"),))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        made = call(request, timeout=30, metadata=(("authorization", f"Bearer {TOKEN}"),))
        assert made.name == "operations/grpc-" + body["operationId"]
        assert made.error.code == code_pb2.OK
