"""Producers' own message types (--proto-descriptors, schemas/types/): a proto compiled
here, its FileDescriptorSet handed to a `tracker serve` of its own process, and JSON and
protobuf events carrying those types: accepted, checked, served as those types, and
unpacked into this process's classes by Google's `operation.from_gapic`."""

from __future__ import annotations

import contextlib
import importlib
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import httpx
import pytest
from google.api_core import operation, operations_v1
from google.protobuf import any_pb2
from grpc_tools import protoc  # type: ignore[import-untyped]

from tests.cli_kit import TRACKER, assert_one_error_line, clean_env
from tests.helpers import ROOT, google_error
from tracker.client import TrackerClient
from tracker.dev import free_port

PROTO = """
syntax = "proto3";
package trackertest.export.v1;
import "google/protobuf/timestamp.proto";

message ExportMetadata {
  string table = 1;
  int64 rows_done = 2;
  Stage stage = 3;
  enum Stage { STAGE_UNSPECIFIED = 0; COPYING = 1; VERIFYING = 2; }
}

message ExportResponse {
  string uri = 1;
  int64 rows = 2;
  google.protobuf.Timestamp finished = 3;
}
"""
META = "type.googleapis.com/trackertest.export.v1.ExportMetadata"
RESPONSE = "type.googleapis.com/trackertest.export.v1.ExportResponse"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModuleType]:
    """(the FileDescriptorSet, the generated Python module) of PROTO."""
    root = tmp_path_factory.mktemp("acme")
    # Its own package, named by no test vector: the module imported here stays in this
    # process's descriptor pool for every later test.
    source = root / "src" / "trackertest" / "export" / "v1" / "export.proto"
    source.parent.mkdir(parents=True)
    source.write_text(PROTO)
    out = root / "gen"
    out.mkdir()
    binpb = root / "acme.binpb"
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{root / 'src'}",
        f"-I{include}",
        "--include_imports",
        f"--descriptor_set_out={binpb}",
        f"--python_out={out}",
        "trackertest/export/v1/export.proto",
    ]
    assert protoc.main(args) == 0
    sys.path.insert(0, str(out))
    try:
        module = importlib.import_module("trackertest.export.v1.export_pb2")
    finally:
        sys.path.remove(str(out))
    return binpb, module


@contextlib.contextmanager
def serving(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    """`tracker serve` in a process of its own: (HTTP URL, gRPC target)."""
    http, grpc_port = free_port(), free_port()
    command = [TRACKER, "serve", "--db", ":memory:", "--http-port", str(http)]
    command += ["--grpc-port", str(grpc_port), *args]
    with subprocess.Popen(
        command,
        env=clean_env(**(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        url = f"http://127.0.0.1:{http}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                assert time.monotonic() < deadline
                time.sleep(0.1)
            yield url, f"127.0.0.1:{grpc_port}"
        finally:
            proc.terminate()
            proc.wait(30)


@pytest.fixture(scope="module")
def server(compiled: tuple[Path, ModuleType]) -> Iterator[tuple[str, str]]:
    with serving("--proto-descriptors", str(compiled[0])) as where:
        yield where


def post(url: str, kind: str, name: str, data: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/events",
        json=data,
        headers={
            "ce-specversion": "1.0",
            "ce-id": uuid.uuid4().hex,
            "ce-source": "test",
            "ce-type": f"tracker.operation.v1.{kind}",
            "ce-subject": name,
            "content-type": "application/json",
        },
    )


def test_json_events_of_registered_types_are_served_as_them(
    server: tuple[str, str], compiled: tuple[Path, ModuleType]
) -> None:
    url, target = server
    _, acme = compiled
    name = f"operations/export-{uuid.uuid4().hex[:8]}"
    meta = {"@type": META, "table": "orders", "rowsDone": "5", "stage": "COPYING"}
    assert post(url, "created", name, {"metadata": meta}).status_code == 200
    response = {"@type": RESPONSE, "uri": "gs://b/o.csv", "rows": "1200"}
    response["finished"] = "2026-12-03T10:00:00Z"
    assert post(url, "succeeded", name, {"response": response}).status_code == 200
    served = httpx.get(f"{url}/v1/{name}").json()
    assert served["metadata"] == meta  # rendered by the server, which knows the type
    assert served["response"] == response
    with grpc.insecure_channel(target) as channel:
        client = operations_v1.OperationsClient(channel)
        future = operation.from_gapic(
            client.get_operation(name),
            client,
            acme.ExportResponse,
            metadata_type=acme.ExportMetadata,
        )
        result = future.result(timeout=10)
        assert isinstance(result, acme.ExportResponse)
        assert (result.uri, result.rows) == ("gs://b/o.csv", 1200)
        assert result.finished.ToJsonString() == "2026-12-03T10:00:00Z"
        assert isinstance(future.metadata, acme.ExportMetadata)
        assert (future.metadata.table, future.metadata.rows_done) == ("orders", 5)
        assert future.metadata.stage == acme.ExportMetadata.COPYING


def test_the_sdk_sends_its_own_messages_and_reads_them_back(
    server: tuple[str, str], compiled: tuple[Path, ModuleType]
) -> None:
    url, _ = server
    _, acme = compiled
    name = f"operations/sdk-{uuid.uuid4().hex[:8]}"
    with TrackerClient(url) as client:
        client.created(name, metadata=acme.ExportMetadata(table="t", rows_done=1))
        assert client.succeeded(name, acme.ExportResponse(uri="gs://x", rows=2)).applied
        future = client.operation(name, result_type=acme.ExportResponse)
        assert future.result(timeout=10) == acme.ExportResponse(uri="gs://x", rows=2)
        packed = client.get(name).metadata
        unpacked = acme.ExportMetadata()
        assert packed.Unpack(unpacked) and unpacked.table == "t"


@pytest.mark.parametrize(
    ("data", "reason", "words"),
    [
        ({"metadata": {"@type": META, "nope": 1}}, "INVALID_DATA", "nope"),
        ({"metadata": {"@type": META, "rowsDone": "many"}}, "INVALID_DATA", "rowsdone"),
        (
            {"metadata": {"@type": "type.googleapis.com/acme.v9.Unknown"}},
            "INVALID_DATA",
            "--proto-descriptors",
        ),
    ],
)
def test_bad_or_unknown_typed_data_is_a_clear_400(
    server: tuple[str, str], data: dict[str, Any], reason: str, words: str
) -> None:
    answer = post(server[0], "created", f"operations/bad-{uuid.uuid4().hex[:8]}", data)
    assert answer.status_code == 400, answer.text
    assert google_error(answer)[1] == reason
    assert words in answer.json()["error"]["message"].lower().replace("rowsDone", "rowsdone")


def test_protobuf_data_of_a_registered_type_must_read_as_it(
    server: tuple[str, str], compiled: tuple[Path, ModuleType]
) -> None:
    from tracker.v1 import events_pb2

    url, _ = server
    _, acme = compiled
    good = events_pb2.Created()
    good.metadata.Pack(acme.ExportMetadata(table="bin"))
    bad = events_pb2.Created(metadata=any_pb2.Any(type_url=META, value=b"\xff\xff\xff"))
    unknown = events_pb2.Created(
        metadata=any_pb2.Any(type_url="type.googleapis.com/other.Thing", value=b"\x08\x01")
    )
    answers = []
    for data in (good, bad, unknown):
        answers.append(
            httpx.post(
                f"{url}/v1/events",
                content=data.SerializeToString(),
                headers={
                    "ce-specversion": "1.0",
                    "ce-id": uuid.uuid4().hex,
                    "ce-source": "test",
                    "ce-type": "tracker.operation.v1.created",
                    "ce-subject": f"operations/bin-{uuid.uuid4().hex[:8]}",
                    "content-type": "application/protobuf",
                },
            )
        )
    assert [a.status_code for a in answers] == [200, 400, 200]
    assert (
        "does not read as trackertest.export.v1.ExportMetadata"
        in answers[1].json()["error"]["message"]
    )


def test_the_schemas_types_folder_registers_them_too(
    compiled: tuple[Path, ModuleType], tmp_path: Path
) -> None:
    schemas = tmp_path / "schemas"
    shutil.copytree(ROOT / "schemas", schemas)
    (schemas / "types").mkdir(exist_ok=True)
    shutil.copy(compiled[0], schemas / "types" / "acme.binpb")
    with serving(env={"TRACKER_SCHEMAS_DIR": str(schemas)}) as (url, _):
        name = f"operations/folder-{uuid.uuid4().hex[:8]}"
        answer = post(url, "created", name, {"metadata": {"@type": META, "table": "f"}})
        assert answer.status_code == 200, answer.text
        assert httpx.get(f"{url}/v1/{name}").json()["metadata"]["table"] == "f"
    # Without it, the same event is refused with the way to register the type.
    with serving() as (url, _):
        refused = post(url, "created", "operations/no-types", {"metadata": {"@type": META}})
        assert refused.status_code == 400
        assert "--proto-descriptors" in refused.json()["error"]["message"]


@pytest.mark.parametrize("content", [b"not a descriptor set \xff\xff", None])
def test_a_bad_descriptor_set_stops_start_up_with_one_line(
    content: bytes | None, tmp_path: Path
) -> None:
    path = tmp_path / "bad.binpb"
    if content is not None:
        path.write_bytes(content)
    done = subprocess.run(
        [
            TRACKER,
            "serve",
            "--db",
            ":memory:",
            "--proto-descriptors",
            str(path),
            "--http-port",
            "0",
            "--grpc-port",
            "-1",
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    line = assert_one_error_line(done.stderr)
    assert "--proto-descriptors" in line


def test_a_set_redefining_the_trackers_own_file_is_refused(tmp_path: Path) -> None:
    from google.protobuf import descriptor_pb2

    from tracker.errors import ConfigError
    from tracker.producer_types import register
    from tracker.v1 import events_pb2

    mine = descriptor_pb2.FileDescriptorProto()
    events_pb2.DESCRIPTOR.CopyToProto(mine)
    assert register([mine]) == []  # the same file again: nothing to add
    changed = descriptor_pb2.FileDescriptorProto()
    changed.CopyFrom(mine)
    changed.message_type[0].name = "Renamed"
    with pytest.raises(ConfigError) as info:
        register([changed])
    assert "differs" in str(info.value)
    lonely = descriptor_pb2.FileDescriptorProto(name="x/y.proto", dependency=["x/missing.proto"])
    with pytest.raises(ConfigError) as info:
        register([lonely])
    assert "--include_imports" in str(info.value)
    assert json.dumps(str(info.value))  # one printable line
