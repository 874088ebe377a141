"""The producer examples in examples/ (Go, Node.js, curl), run for real.

End to end: the Go and Node examples publish created -> progress -> progress ->
succeeded|failed to a pstest topic, which a tracker drains with a PullSubscriber; the curl
example posts the same sequence to a running tracker's POST /v1/events. All three post
to a tracker that checks callers, refused without TRACKER_TOKEN (401) and stored with it
(Go and Node with `--url`). The stored
Operation must show what was sent: type and labels from created, the last progress
message, percent 100 and the response on success, the error code on failure.

Vectors: for every valid case of schemas/testdata/vectors.json with JSON data, each example
encodes the case's event with its own helper (Go and Node: `--print-vector CASE`; curl:
`publish_event` against a loopback server that records the request). The attributes must
equal the case's (binary-mode cases as they are; structured-mode cases in the binary form
the CloudEvents binding gives the same event), the body must decode to the same message,
and the tracker's parser must read the example's bytes as the case's expected event.

Builds happen once and are reused while their inputs are unchanged: the Go example into
the shared tools cache (tests/emulators/harness.py), `npm ci` into
examples/node/node_modules. `python -m tests.integration.test_examples` does both up front
(./scripts/test runs it). A missing go, node, npm, bash or curl fails
these tests; nothing is skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format, struct_pb2
from google.rpc import code_pb2

from tests.emulators import harness
from tests.helpers import ROOT
from tests.pubsub_kit import PubSub, drain
from tests.tokens import TOKEN
from tracker.auth import token_digest
from tracker.bindings import parse_pubsub
from tracker.client import TrackerClient
from tracker.config import Config
from tracker.events import Kind, decode_data
from tracker.server import Server, running
from tracker.v1 import operation_pb2

EXAMPLES = ROOT / "examples"
GO_DIR = EXAMPLES / "go"
GO_CONSUMER_DIR = GO_DIR / "consumer"
NODE_DIR = EXAMPLES / "node"
CURL_SCRIPT = EXAMPLES / "curl" / "publish.sh"
VECTORS_PATH = ROOT / "schemas" / "testdata" / "vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text())["cases"]

BUILD_TIMEOUT_S = 540.0
RUN_TIMEOUT_S = 90.0
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S + 60)  # the first test may wait for a build

LANGUAGES = ["go", "node", "curl"]
# What every example sends (examples/*/): keep in step with them.
OPERATION_TYPE = "export"
LAST_PROGRESS = (75.0, "writing file")
RESPONSE = {"rows": 1200, "uri": "gs://example/export.csv"}
ERROR = (code_pb2.FAILED_PRECONDITION, "bucket example does not exist")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


# ---- building ----------------------------------------------------------------------------


class ToolMissing(RuntimeError):
    """A toolchain the examples need is not installed."""


INSTALL = {
    "node": "install Node.js 18 or newer with npm (`sudo apt-get install nodejs npm` on"
    " Debian/Ubuntu, or https://nodejs.org/), then run ./scripts/test again",
    "npm": "install npm (`sudo apt-get install npm` on Debian/Ubuntu; it comes with"
    " https://nodejs.org/), then run ./scripts/test again",
    "go": harness.GO_INSTALL,
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        how = INSTALL.get(name, f"install {name}")
        raise ToolMissing(f"{name} not found on PATH: the examples' tests need it; {how}")
    return path


def _run(
    cmd: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run with a timeout; a failure shows the command and its output."""
    timeout = kw.pop("timeout", RUN_TIMEOUT_S)
    result = subprocess.run(
        list(cmd),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
        **kw,
    )
    assert result.returncode == 0, (
        f"{' '.join(cmd)} exited {result.returncode}\n"
        f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    )
    return result


def _digest(files: Sequence[Path], *extra: str) -> str:
    h = hashlib.sha256()
    for part in extra:
        h.update(part.encode() + b"\0")
    for path in files:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def build_go() -> Path:
    """The Go example's binary in the tools cache, built when its sources or Go changed."""
    return _build_go(GO_DIR, "example-go-producer", "example-go")


def build_go_consumer() -> Path:
    """The Go done-notification consumer (examples/go/consumer, a module of its own:
    the CloudEvents Go SDK) in the tools cache, built when its sources or Go changed."""
    return _build_go(GO_CONSUMER_DIR, "example-go-consumer", "example-go-consumer")


def _build_go(directory: Path, prefix: str, lock: str) -> Path:
    go = harness.go_binary()
    version = _run([go, "env", "GOVERSION"], timeout=60).stdout.strip()
    sources = sorted(
        p for p in directory.iterdir() if p.suffix == ".go" or p.name in ("go.mod", "go.sum")
    )
    target = harness.TOOLS_BIN / f"{prefix}-{_digest(sources, version)}"
    if harness.found(target):
        return target
    with harness.build_lock(BUILD_TIMEOUT_S, lock):
        if target.is_file():
            return target
        env = dict(os.environ)
        # The pins are the pins: never edit go.mod/go.sum. The module cache is shared.
        env["GOFLAGS"] = f"{env.get('GOFLAGS', '')} -mod=readonly -buildvcs=false".strip()
        env["CGO_ENABLED"] = "0"
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        _run(
            [go, "build", "-trimpath", "-o", str(tmp), "."],
            cwd=directory,
            env=env,
            timeout=BUILD_TIMEOUT_S,
        )
        tmp.replace(target)
        harness.prune(f"{prefix}-*", target)
    return target


def install_node() -> str:
    """`npm ci` in examples/node when package.json, the lock file or Node changed."""
    node, npm = _tool("node"), _tool("npm")
    version = _run([node, "--version"], timeout=60).stdout.strip()
    key = _digest([NODE_DIR / "package.json", NODE_DIR / "package-lock.json"], version)
    stamp = NODE_DIR / "node_modules" / ".tracker-installed"
    if stamp.is_file() and stamp.read_text() == key:
        return node
    with harness.build_lock(BUILD_TIMEOUT_S, "example-node"):
        if stamp.is_file() and stamp.read_text() == key:
            return node
        # Exactly the lock file; no install scripts run (none is needed).
        _run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            timeout=BUILD_TIMEOUT_S,
        )
        stamp.write_text(key)
    return node


def build_all() -> dict[str, float]:
    """Build the Go examples and install the Node one; seconds each took."""
    took = {}
    steps = (("go", build_go), ("go-consumer", build_go_consumer), ("node", install_node))
    for name, step in steps:
        started = time.monotonic()
        step()
        took[name] = time.monotonic() - started
    return took


@pytest.fixture(scope="session")
def go_example() -> list[str]:
    """The Go example's command; it takes --topic, --operation, ... or --print-vector."""
    return [str(build_go())]


@pytest.fixture(scope="session")
def node_example() -> list[str]:
    """The Node example's command, with the same flags as the Go one."""
    return [install_node(), str(NODE_DIR / "main.mjs")]


@pytest.fixture(scope="session")
def shell() -> list[str]:
    """bash, with curl present, for the curl example."""
    _tool("curl")
    return [_tool("bash")]


# ---- end to end --------------------------------------------------------------------------


@pytest.fixture
def pubsub(pubsub_env: str) -> PubSub:
    return PubSub()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running(Config(db=str(tmp_path / "t.db"), http_port=0, grpc_port=-1)) as s:
        yield s


def check_operation(server: Server, name: str, example: str, outcome: str) -> None:
    """The stored Operation is what the example's four events say."""
    stored = server.store.get(name)
    assert stored is not None, f"{name} was not stored"
    op = stored.operation
    assert op.name == name and op.done
    meta = operation_pb2.OperationMetadata()
    assert op.metadata.Unpack(meta), op.metadata.type_url
    assert meta.operation_type == OPERATION_TYPE
    assert dict(meta.labels) == {"example": example}
    assert meta.message == LAST_PROGRESS[1]
    assert meta.last_sequence == 4
    if outcome == "succeeded":
        assert meta.percent == 100.0  # done with a response
        assert not op.HasField("error")
        response = struct_pb2.Struct()
        assert op.response.Unpack(response), op.response.type_url
        assert json_format.MessageToDict(response) == RESPONSE
    else:
        assert meta.percent == LAST_PROGRESS[0]
        assert not op.HasField("response")
        assert (op.error.code, op.error.message) == ERROR
    assert server.store.dead_letters() == []


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
@pytest.mark.parametrize("example", ["go", "node"])
def test_pubsub_example_sequence_is_stored_by_the_tracker(
    example: str,
    outcome: str,
    pubsub: PubSub,
    pubsub_env: str,
    server: Server,
    request: pytest.FixtureRequest,
) -> None:
    command: list[str] = request.getfixturevalue(f"{example}_example")
    topic = pubsub.topic()
    events = pubsub.subscription(topic)
    copy = pubsub.subscription(topic)  # to look at the messages as they were published
    name = f"operations/example-{example}-{outcome}"
    args = ["--topic", topic, "--operation", name, "--outcome", outcome]
    _run([*command, *args], env={**os.environ, "PUBSUB_EMULATOR_HOST": pubsub_env})

    assert drain(server, events) == 4
    check_operation(server, name, example, outcome)

    messages = pubsub.pull_all(copy)
    assert [(m.attributes["ce-sequence"], m.attributes["ce-type"]) for m in messages] == [
        ("1", "tracker.operation.v1.created"),
        ("2", "tracker.operation.v1.progress"),
        ("3", "tracker.operation.v1.progress"),
        ("4", f"tracker.operation.v1.{outcome}"),
    ]
    assert {m.ordering_key for m in messages} == {name}
    assert len({m.attributes["ce-id"] for m in messages}) == 4
    for m in messages:
        assert m.attributes["ce-specversion"] == "1.0"
        assert m.attributes["ce-source"] == f"/examples/{example}"
        assert m.attributes["ce-subject"] == name
        assert m.attributes["content-type"] == "application/json"
        assert RFC3339.match(m.attributes["ce-time"]), m.attributes["ce-time"]


@pytest.mark.parametrize("example", ["go", "node"])
def test_example_creates_synchronously_then_publishes_over_pubsub(
    example: str,
    pubsub: PubSub,
    pubsub_env: str,
    server: Server,
    request: pytest.FixtureRequest,
) -> None:
    command: list[str] = request.getfixturevalue(f"{example}_example")
    topic = pubsub.topic()
    events = pubsub.subscription(topic)
    collection = f"projects/demo-{example}/locations/eu"
    request_id = f"req-{example}-{uuid.uuid4().hex[:8]}"
    args = ["--create", server.http_url, "--collection", collection, "--topic", topic]
    result = _run(
        [*command, *args, "--request-id", request_id],
        env={**os.environ, "PUBSUB_EMULATOR_HOST": pubsub_env},
    )
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"created {collection}/operations/"), result.stdout
    name = first.split()[1]
    # Committed before any event went out: the tracker has it, not yet run.
    stored = server.store.get(name)
    assert stored is not None and not stored.operation.done
    assert drain(server, events) == 3  # progress, progress, succeeded: no `created`
    op = server.store.get(name)
    assert op is not None and op.operation.done
    meta = operation_pb2.OperationMetadata()
    assert op.operation.metadata.Unpack(meta)
    assert (meta.operation_type, dict(meta.labels)) == (OPERATION_TYPE, {"example": example})
    assert meta.last_sequence == 3 and meta.attempt == 1
    # The same request id is the same operation (what the example's own retries rely on).
    again = httpx.post(
        f"{server.http_url}/v1/{collection}/operations", json={"requestId": request_id}
    )
    assert again.status_code == 200 and again.json()["name"] == name


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
def test_curl_example_sequence_is_stored_by_the_tracker(
    outcome: str, shell: list[str], server: Server
) -> None:
    name = f"operations/example-curl-{outcome}"
    result = _run([*shell, str(CURL_SCRIPT), server.http_url, name, outcome])
    answers = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [a["results"][0]["outcome"] for a in answers] == ["applied"] * 4
    check_operation(server, name, "curl", outcome)


@pytest.fixture
def secured_server(tmp_path: Path) -> Iterator[Server]:
    """A tracker that lets token:ci publish, and nobody else."""
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'ci = "{token_digest(TOKEN)}"\n')
    config = Config(
        db=str(tmp_path / "t.db"),
        http_port=0,
        grpc_port=-1,
        auth_tokens_file=str(tokens),
        grant=("events.publish=token:ci",),
    )
    with running(config) as s:
        yield s


@pytest.mark.parametrize("example", LANGUAGES)
def test_http_example_sends_TRACKER_TOKEN(
    example: str, secured_server: Server, request: pytest.FixtureRequest
) -> None:
    name = f"operations/example-{example}-token"
    url = secured_server.http_url
    if example == "curl":
        command = [*request.getfixturevalue("shell"), str(CURL_SCRIPT), url, name]
    else:
        command = [*request.getfixturevalue(f"{example}_example"), "--url", url]
        command += ["--operation", name]
    env = {k: v for k, v in os.environ.items() if k != "TRACKER_TOKEN"}

    refused = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    assert refused.returncode != 0, refused.stdout
    said = refused.stdout + refused.stderr
    assert "401" in said and "events.publish needs credentials" in said, said
    assert secured_server.store.get(name) is None

    _run(command, env={**env, "TRACKER_TOKEN": TOKEN})
    check_operation(secured_server, name, example, "succeeded")


def _published(stdout: str) -> list[tuple[str, int, int, str]]:
    """(kind, attempt, sequence, outcome) of each `published ...` line an example prints."""
    found = re.findall(
        r"^published (\w+) \S+ \(attempt (\d+), sequence (\d+)\) ?(\w*)$", stdout, re.M
    )
    return [(kind, int(attempt), int(seq), outcome) for kind, attempt, seq, outcome in found]


def _meta(server: Server, name: str) -> operation_pb2.OperationMetadata:
    stored = server.store.get(name)
    assert stored is not None, f"{name} was not stored"
    meta = operation_pb2.OperationMetadata()
    assert stored.operation.metadata.Unpack(meta)
    return meta


@pytest.mark.parametrize("example", ["go", "node"])
def test_http_example_restarts_as_the_next_attempt(
    example: str, server: Server, request: pytest.FixtureRequest
) -> None:
    command: list[str] = request.getfixturevalue(f"{example}_example")
    name = f"operations/example-{example}-restart"
    args = [*command, "--url", server.http_url, "--operation", name]
    first = _run([*args, "--exit-after", "3"])  # created, two progress: then gone
    assert _published(first.stdout) == [
        ("created", 1, 1, "applied"),
        ("progress", 1, 2, "applied"),
        ("progress", 1, 3, "applied"),
    ]
    before = _meta(server, name)
    assert (before.attempt, before.last_sequence) == (1, 3)

    second = _run(args)  # the restart reads attempt 1 and numbers attempt 2 from 1
    assert _published(second.stdout) == [
        ("created", 2, 1, "applied"),
        ("progress", 2, 2, "applied"),  # stale, were it attempt 1 again
        ("progress", 2, 3, "applied"),
        ("succeeded", 2, 4, "applied"),
    ]
    after = _meta(server, name)
    assert (after.attempt, after.attempt_reason, after.last_sequence) == (2, "restarted", 4)
    assert after.create_time == before.create_time
    check_operation(server, name, example, "succeeded")


@pytest.mark.parametrize("example", ["go", "node"])
def test_http_example_stops_when_the_answer_says_cancelled(
    example: str, server: Server, request: pytest.FixtureRequest
) -> None:
    command: list[str] = request.getfixturevalue(f"{example}_example")
    name = f"operations/example-{example}-cancel"
    args = [*command, "--url", server.http_url, "--operation", name]
    _run([*args, "--exit-after", "2"])
    with TrackerClient(server.http_url) as client:
        client.cancel(name)
    restarted = _run(args)
    assert _published(restarted.stdout) == [("created", 2, 1, "late")]
    assert f"cancelled: {name} stops" in restarted.stdout
    stored = server.store.get(name)
    assert stored is not None and stored.operation.error.code == code_pb2.CANCELLED
    assert _meta(server, name).percent == 25  # nothing after the cancel was applied


# ---- test vectors ------------------------------------------------------------------------

_CONTENT_TYPE_KEYS = ("content-type", "Content-Type", "ce-datacontenttype")


def _is_json_data(case: dict[str, Any]) -> bool:
    if "body" not in case:  # body_base64: protobuf data
        return False
    if "structured" in case["mode"]:
        event = json.loads(case["body"])
        media = event.get("datacontenttype", "application/json")
        return "data_base64" not in event and media.split(";")[0].strip() == "application/json"
    attrs = case.get("headers") or case["attributes"]
    media = next((attrs[k] for k in _CONTENT_TYPE_KEYS if k in attrs), "application/json")
    return bool(media.split(";")[0].strip() == "application/json")


JSON_CASES = [c for c in VECTORS if c["valid"] and _is_json_data(c)]


def binary_form(case: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """The case as a producer writes it in binary mode: attributes and body.

    Binary-mode cases as they are; a structured case mapped per the CloudEvents binding
    (every attribute as ce-<name>, datacontenttype as content-type, data as the body).
    Producers write one spelling of the content type, `content-type` with the media type
    alone; cases that show other accepted spellings are compared under that one.
    """
    if "structured" in case["mode"]:
        event = json.loads(case["body"])
        data = event.pop("data", None)
        media = event.pop("datacontenttype", "application/json")
        # A null attribute is unset (CloudEvents JSON format): no header for it.
        attrs = {f"ce-{key}": str(value) for key, value in event.items() if value is not None}
        if data in (None, {}):
            return attrs, b""
        attrs["content-type"] = media
        return attrs, json.dumps(data).encode()
    attrs = dict(case.get("headers") or case["attributes"])
    media = next((attrs.pop(k) for k in _CONTENT_TYPE_KEYS if k in attrs), None)
    body = case["body"].encode()
    if media is not None and body:
        attrs["content-type"] = media.split(";")[0].strip()
    return attrs, body


def _canonical(attrs: dict[str, str], body: bytes) -> dict[str, Any]:
    """The data as the tracker decodes it, in proto3 JSON form."""
    kind = Kind.from_type(attrs["ce-type"])
    return json_format.MessageToDict(decode_data(kind, attrs.get("content-type"), body))


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def check_against_vector(case: dict[str, Any], attrs: dict[str, str], body: bytes) -> None:
    want_attrs, want_body = binary_form(case)
    got_time, want_time = attrs.get("ce-time"), want_attrs.get("ce-time")
    if want_time is not None and got_time is not None:
        # Any RFC 3339 spelling of the same instant: ".25Z" and ".250Z" are one time.
        assert RFC3339.match(got_time), got_time
        assert _instant(got_time) == _instant(want_time)
        want_attrs = {**want_attrs, "ce-time": got_time}
    assert attrs == want_attrs
    assert _canonical(attrs, body) == _canonical(want_attrs, want_body)
    # And the tracker reads the example's bytes as the case's event.
    event = parse_pubsub(attrs, body)
    expected = case["expected"]
    assert (event.id, event.source, event.kind.type, event.operation, event.sequence) == (
        expected["id"],
        expected["source"],
        expected["type"],
        expected["subject"],
        expected["sequence"],
    )
    if expected["time"] is not None:
        assert event.time == _instant(expected["time"])
    assert json_format.MessageToDict(event.data) == expected["data"]


class _Recorder(BaseHTTPRequestHandler):
    """Records each POST (headers, body) into server.requests; answers 200 {}."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.requests.append((dict(self.headers.items()), body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def recording_server() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    requests: list[tuple[dict[str, str], bytes]] = []
    httpd.requests = requests  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def encode_with_curl(shell: list[str], case: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """What the curl example's publish_event sends for the case's event."""
    x = case["expected"]
    attrs, _ = binary_form(case)
    extensions = [
        arg
        for key, value in attrs.items()
        if key.startswith("ce-")
        and key[3:] not in {"specversion", "type", "source", "id", "subject", "time", "sequence"}
        for arg in ("-H", f"{key}: {value}")
    ]
    with recording_server() as (url, requests):
        _run(
            [
                *shell,
                "-c",
                'source "$1" && shift && publish_event "$@"',
                "bash",
                str(CURL_SCRIPT),
                url,
                x["type"].removeprefix("tracker.operation.v1."),
                x["subject"],
                x["id"],
                "" if x["sequence"] is None else str(x["sequence"]),
                x["time"] or "",
                json.dumps(x["data"]) if x["data"] else "",
                *extensions,
            ],
            env={**os.environ, "SOURCE": x["source"]},
        )
    ((headers, body),) = requests
    sent = {k.lower(): v for k, v in headers.items()}
    return {k: v for k, v in sent.items() if k.startswith("ce-") or k == "content-type"}, body


def encode_with(
    example: str, case: dict[str, Any], request: pytest.FixtureRequest
) -> tuple[dict[str, str], bytes]:
    """What the example makes of the case's event: attributes and body."""
    if example == "curl":
        return encode_with_curl(request.getfixturevalue("shell"), case)
    command: list[str] = request.getfixturevalue(f"{example}_example")
    args = ["--print-vector", case["name"], "--vectors", str(VECTORS_PATH)]
    printed = json.loads(_run([*command, *args]).stdout)
    return printed["attributes"], printed["body"].encode()


def test_json_vectors_cover_every_kind() -> None:
    assert {c["expected"]["type"] for c in JSON_CASES} == {k.type for k in Kind}


@pytest.mark.parametrize("case", JSON_CASES, ids=lambda c: c["name"])
@pytest.mark.parametrize("example", LANGUAGES)
def test_example_encodes_the_vector_as_the_tracker_expects(
    example: str, case: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    attrs, body = encode_with(example, case, request)
    check_against_vector(case, attrs, body)


def test_vector_check_catches_a_wrong_attribute() -> None:
    """The comparison itself: a producer that gets one thing wrong fails it."""
    case = next(c for c in JSON_CASES if c["name"] == "failed_binary_http_json")
    attrs, body = binary_form(case)
    check_against_vector(case, attrs, body)
    for broken_attrs, broken_body in [
        ({**attrs, "ce-type": "tracker.operation.v1.succeeded"}, body),
        ({k: v for k, v in attrs.items() if k != "ce-sequence"}, body),
        ({**attrs, "ce-time": "2024-06-01T12:10:01Z"}, body),
        ({**attrs, "content-type": "application/json; charset=utf-8"}, body),
        (attrs, body.replace(b'"code": 9', b'"code": 5')),
    ]:
        with pytest.raises(AssertionError):
            check_against_vector(case, broken_attrs, broken_body)


def test_structured_case_maps_to_binary_form() -> None:
    case = next(c for c in JSON_CASES if c["name"] == "created_structured_json")
    attrs, body = binary_form(case)
    assert attrs == {
        "ce-specversion": "1.0",
        "ce-type": "tracker.operation.v1.created",
        "ce-source": "https://workers.example.com/export",
        "ce-id": "evt-0001",
        "ce-subject": "operations/export-20240601-a1b2",
        "ce-time": "2024-06-01T12:00:00Z",
        "ce-sequence": "1",
        "content-type": "application/json",
    }
    assert json.loads(body)["operationType"] == "export"


def test_docs_excerpts_are_the_examples_code() -> None:
    """Every go/js/bash block of docs/publishing.md is verbatim in the example it quotes."""
    text = (ROOT / "docs" / "publishing.md").read_text()
    blocks = re.findall(r"^```(go|js|bash)\n(.*?)^```$", text, re.M | re.S)
    sources = {
        "go": sorted(GO_DIR.glob("*.go")),
        "js": sorted(NODE_DIR.glob("*.mjs")),
        "bash": [CURL_SCRIPT],
    }
    assert sorted({lang for lang, _ in blocks}) == ["bash", "go", "js"]
    for lang, block in blocks:
        assert any(block in path.read_text() for path in sources[lang]), (
            f"docs/publishing.md quotes {lang} code that is not in the example:\n{block}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tests.integration.test_examples`: build the examples now, print the time."""
    del argv
    try:
        took = build_all()
    except (ToolMissing, harness.HarnessError) as exc:
        print(f"tracker: error: {exc}", file=sys.stderr)
        return 2
    for name, seconds in took.items():
        print(f"example {name}\tready in {seconds:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
