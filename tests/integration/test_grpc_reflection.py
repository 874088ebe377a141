"""gRPC server reflection (v1 and v1alpha) and health over a real channel, and grpcurl.

The tracker serves `grpc.reflection.v1.ServerReflection` with grpcio-reflection's v1alpha
servicer under the v1 name (tracker.api.grpc). The Python calls here use each version's
own messages (v1's from the descriptor the server put in the pool); grpcurl, a client
built from its own copy of the protos (tests/emulators/grpcurl, built once into
.tools/bin), checks the docs/api.md commands against a running tracker.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha_pb2

from tests.doc_blocks import doc_block
from tests.emulators import harness
from tracker.api.grpc import REFLECTION_V1, REFLECTION_V1_FILE, reflection_v1_file
from tracker.client import TrackerClient
from tracker.server import Server

VERSIONS = ("v1", "v1alpha")
SERVICES = {
    "google.longrunning.Operations",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "tracker.v1.DeadLetters",
    "tracker.v1.Operations",
}


@pytest.fixture(scope="module")
def channel(server: Server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_target) as ch:
        yield ch


def messages(version: str) -> tuple[Any, Any]:
    """(ServerReflectionRequest, ServerReflectionResponse) classes of `version`."""
    if version == "v1alpha":
        return v1alpha_pb2.ServerReflectionRequest, v1alpha_pb2.ServerReflectionResponse
    pool = descriptor_pool.Default()
    request, response = (
        message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"grpc.reflection.v1.ServerReflection{kind}")
        )
        for kind in ("Request", "Response")
    )
    return request, response


def reflect(channel: grpc.Channel, version: str, **request: Any) -> Any:
    """One request over `version`'s ServerReflectionInfo stream; its one answer."""
    request_type, response_type = messages(version)
    call = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    answers = list(call(iter([request_type(**request)]), timeout=10))
    assert len(answers) == 1, answers
    answer = answers[0]
    assert (
        type(answer).DESCRIPTOR.full_name == f"grpc.reflection.{version}.ServerReflectionResponse"
    )
    return answer


def files(answer: Any) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    protos = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in answer.file_descriptor_response.file_descriptor_proto
    ]
    return {p.name: p for p in protos}


@pytest.mark.parametrize("version", VERSIONS)
def test_reflection_lists_every_service(channel: grpc.Channel, version: str) -> None:
    answer = reflect(channel, version, list_services="")
    assert {s.name for s in answer.list_services_response.service} == SERVICES


@pytest.mark.parametrize("version", VERSIONS)
def test_reflection_finds_the_file_of_google_longrunning_operations(
    channel: grpc.Channel, version: str
) -> None:
    answer = reflect(channel, version, file_containing_symbol="google.longrunning.Operations")
    assert answer.original_request.file_containing_symbol == "google.longrunning.Operations"
    found = files(answer)
    operations = found["google/longrunning/operations.proto"]
    service = next(s for s in operations.service if s.name == "Operations")
    assert {m.name for m in service.method} == {
        "ListOperations",
        "GetOperation",
        "DeleteOperation",
        "CancelOperation",
        "WaitOperation",
    }
    # The dependencies come along, so that a client can build the descriptors.
    assert set(operations.dependency) <= set(found), (operations.dependency, set(found))


@pytest.mark.parametrize("version", VERSIONS)
def test_reflection_finds_the_tracker_metadata_type(channel: grpc.Channel, version: str) -> None:
    # What a client needs to print an Operation's `metadata` Any.
    answer = reflect(channel, version, file_containing_symbol="tracker.v1.OperationMetadata")
    assert any(
        "OperationMetadata" in {m.name for m in f.message_type} for f in files(answer).values()
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_reflection_of_an_unknown_symbol_is_not_found(channel: grpc.Channel, version: str) -> None:
    answer = reflect(channel, version, file_containing_symbol="nope.Nope")
    assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_reflection_v1_describes_itself(channel: grpc.Channel) -> None:
    answer = reflect(channel, "v1", file_containing_symbol=REFLECTION_V1)
    proto = files(answer)[REFLECTION_V1_FILE]
    assert proto.package == "grpc.reflection.v1"
    method = proto.service[0].method[0]
    assert (method.input_type, method.output_type) == (
        ".grpc.reflection.v1.ServerReflectionRequest",
        ".grpc.reflection.v1.ServerReflectionResponse",
    )
    assert method.client_streaming and method.server_streaming
    type_names = {f.type_name for m in proto.message_type for f in m.field if f.type_name}
    assert type_names and all(t.startswith(".grpc.reflection.v1.") for t in type_names)


def test_the_v1_messages_are_wire_identical_to_v1alpha() -> None:
    reflection_v1_file()  # idempotent: the server put it in the pool already
    reflection_v1_file()
    alpha = descriptor_pb2.FileDescriptorProto.FromString(v1alpha_pb2.DESCRIPTOR.serialized_pb)
    v1 = descriptor_pb2.FileDescriptorProto()
    descriptor_pool.Default().FindFileByName(REFLECTION_V1_FILE).CopyToProto(v1)

    def shape(proto: descriptor_pb2.FileDescriptorProto) -> list[Any]:
        return [
            (m.name, [(f.name, f.number, f.type, f.label, f.oneof_index) for f in m.field])
            for m in proto.message_type
        ]

    assert shape(v1) == shape(alpha) and len(shape(v1)) >= 8
    request = v1alpha_pb2.ServerReflectionRequest(host="h", file_containing_symbol="x.Y")
    request_v1 = messages("v1")[0].FromString(request.SerializeToString())
    assert (request_v1.host, request_v1.file_containing_symbol) == ("h", "x.Y")


@pytest.mark.parametrize("service", ["", "google.longrunning.Operations"])
def test_health_check_is_serving(channel: grpc.Channel, service: str) -> None:
    stub: Any = health_pb2_grpc.HealthStub(channel)
    answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_health_check_of_an_unknown_service_is_not_found(channel: grpc.Channel) -> None:
    stub: Any = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Check(health_pb2.HealthCheckRequest(service="nope.Nope"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


# ---- grpcurl (the docs/api.md "grpcurl" section) ------------------------------------


@pytest.fixture(scope="module")
def grpcurl() -> Path:
    return harness.build_go_server("grpcurl")  # built once; `./scripts/test` builds it first


def run_grpcurl(grpcurl: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(grpcurl), "-plaintext", *args], capture_output=True, text=True, timeout=60
    )


def test_grpcurl_list(grpcurl: Path, server: Server) -> None:
    done = run_grpcurl(grpcurl, server.grpc_target, "list")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == sorted(SERVICES)


def test_grpcurl_get_operation(grpcurl: Path, server: Server) -> None:
    name = "operations/grpcurl-1"
    with TrackerClient(server.http_url) as client:
        client.created(name, operation_type="export", labels={"team": "a"})
    body = json.dumps({"name": name})
    done = run_grpcurl(
        grpcurl, "-d", body, server.grpc_target, "google.longrunning.Operations/GetOperation"
    )
    assert done.returncode == 0, done.stderr
    operation = json.loads(done.stdout)
    assert operation["name"] == name
    # The metadata Any is rendered: grpcurl found tracker.v1.OperationMetadata by reflection.
    metadata = operation["metadata"]
    assert metadata["@type"] == "type.googleapis.com/tracker.v1.OperationMetadata"
    assert metadata["operation_type"] == "export" and metadata["labels"] == {"team": "a"}


def test_grpcurl_get_of_a_missing_operation_is_not_found(grpcurl: Path, server: Server) -> None:
    body = json.dumps({"name": "operations/grpcurl-missing"})
    done = run_grpcurl(
        grpcurl, "-d", body, server.grpc_target, "google.longrunning.Operations/GetOperation"
    )
    assert done.returncode != 0
    assert "Code: NotFound" in done.stderr, done.stderr


def test_grpcurl_health_check(grpcurl: Path, server: Server) -> None:
    done = run_grpcurl(grpcurl, server.grpc_target, "grpc.health.v1.Health/Check")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"status": "SERVING"}


def test_grpcurl_calls_reflection_v1_itself(grpcurl: Path, server: Server) -> None:
    # The v1 endpoint over grpcurl's own encoding of the request and reading of the answer.
    done = run_grpcurl(
        grpcurl,
        "-d",
        '{"list_services": ""}',
        server.grpc_target,
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    )
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)["list_services_response"]["service"]
    assert {s["name"] for s in listed} == SERVICES


def test_grpcurl_describe_shows_the_v1_reflection_service(grpcurl: Path, server: Server) -> None:
    done = run_grpcurl(grpcurl, server.grpc_target, "describe", REFLECTION_V1)
    assert done.returncode == 0, done.stderr
    assert "stream .grpc.reflection.v1.ServerReflectionRequest" in done.stdout


def docs_commands() -> list[str]:
    """The grpcurl commands of docs/api.md's "grpcurl" block, continuation lines joined."""
    block = doc_block("docs/api.md", "grpcurl")
    joined = block.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.startswith("grpcurl ")]


def test_every_grpcurl_command_of_the_docs_runs(grpcurl: Path, server: Server) -> None:
    commands = docs_commands()
    assert len(commands) == 9, commands
    docs_name = "operations/exports/2026-01-07"
    outputs = []
    for i, command in enumerate(commands):
        # A name of its own for each command, done (a deleted name stays deleted), and the
        # shell's variables: the address, and a token (this tracker checks none).
        name = f"{docs_name}-{i}"
        with TrackerClient(server.http_url) as client:
            client.created(name, labels={"docs": "grpcurl"})
            client.succeeded(name)
        variables = {docs_name: name, "$A": server.grpc_target, "$TRACKER_TOKEN": "any"}
        argv = shlex.split(command)
        for variable, value in variables.items():
            argv = [word.replace(variable, value) for word in argv]
        argv[0] = str(grpcurl)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (command, done.stderr)
        outputs.append(done.stdout)
    assert outputs[0].splitlines() == sorted(SERVICES)
    assert json.loads(outputs[1])["name"] == f"{docs_name}-1" and json.loads(outputs[1])["done"]
    assert f"{docs_name}-2" in {o["name"] for o in json.loads(outputs[2])["operations"]}
    assert json.loads(outputs[3])["done"] is True
    assert json.loads(outputs[4]) == json.loads(outputs[5]) == {}  # Empty
    assert json.loads(outputs[6]) == {"status": "SERVING"}
    assert "rpc GetOperation" in outputs[7]
    assert json.loads(outputs[8])["name"] == f"{docs_name}-8"
