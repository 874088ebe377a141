"""The HTTP/JSON Operations API against a real server: httpx, and Google's REST client."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.api_core import exceptions
from google.api_core.operations_v1 import AbstractOperationsClient
from google.protobuf import any_pb2, struct_pb2
from google.rpc import code_pb2, status_pb2

from tests.faulty_serve import EXPLODE, SECRET, FaultyStore
from tests.helpers import (
    ERROR_INFO,
    google_error,
    ingest,
    make_event,
    rest_client,
    running_op,
    succeed,
)
from tracker.api import http as api_http
from tracker.api import status
from tracker.config import Config
from tracker.events import Kind
from tracker.server import Server, running

OPERATION_METADATA = "type.googleapis.com/tracker.v1.OperationMetadata"
STRUCT = "type.googleapis.com/google.protobuf.Struct"


@pytest.fixture
def prefix() -> str:
    """A fresh name prefix, so tests sharing the module's server do not see each other."""
    return f"operations/t{uuid.uuid4().hex[:12]}"


def progress(server: Server, name: str, percent: float) -> None:
    ingest(server, [make_event(Kind.PROGRESS, name, data={"percent": percent})])


def url(name: str, verb: str = "") -> str:
    return f"/v1/{name}" + (f":{verb}" if verb else "")


def expect_error(response: httpx.Response, http_status: int, rpc_status: str) -> str:
    """Assert the Google JSON error shape; return the message."""
    assert response.status_code == http_status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert google_error(response)[0] == rpc_status
    message = str(response.json()["error"]["message"])
    assert "Traceback" not in response.text
    return message


# ---- get -------------------------------------------------------------------------------


def test_get_is_the_proto3_json_mapping_in_camel_case(
    server: Server, http: httpx.Client, prefix: str
) -> None:
    name = f"{prefix}/a/b"
    running_op(server, name, percent=42.0, env="prod")

    response = http.get(url(name))

    assert response.status_code == 200
    body = response.json()
    assert body["name"] == name
    assert "done" not in body  # proto3 JSON omits defaults
    meta = body["metadata"]
    assert meta["@type"] == OPERATION_METADATA
    assert meta["percent"] == 42.0
    assert meta["operationType"] == "export"
    assert meta["labels"] == {"env": "prod"}
    assert "createTime" in meta and "operation_type" not in meta


def test_get_done_operation_has_response(server: Server, http: httpx.Client, prefix: str) -> None:
    name = f"{prefix}/job"
    running_op(server, name)
    succeed(server, name, rows=3)

    body = http.get(url(name)).json()

    assert body["done"] is True
    assert body["response"] == {"@type": STRUCT, "value": {"rows": 3}}
    assert "error" not in body


def test_get_failed_operation_has_error(server: Server, http: httpx.Client, prefix: str) -> None:
    name = f"{prefix}/job"
    error = status_pb2.Status(code=code_pb2.NOT_FOUND, message="no table")
    ingest(server, [make_event(Kind.FAILED, name, data={"error": error})])

    body = http.get(url(name)).json()

    assert body["done"] is True
    assert body["error"] == {"code": 5, "message": "no table"}


def test_any_of_an_unknown_type_falls_back_to_base64(
    server: Server, http: httpx.Client, prefix: str
) -> None:
    name = f"{prefix}/job"
    unknown = any_pb2.Any(type_url="type.googleapis.com/acme.v1.Secret", value=b"\x08\x01")
    detail = any_pb2.Any(type_url="type.googleapis.com/acme.v1.Detail", value=b"\x10\x02")
    ingest(
        server,
        [
            make_event(Kind.CREATED, f"{name}-ok", data={"metadata": unknown}),
            make_event(Kind.SUCCEEDED, f"{name}-ok", data={"response": unknown}),
            make_event(
                Kind.FAILED,
                f"{name}-err",
                data={"error": status_pb2.Status(code=13, message="x", details=[detail])},
            ),
        ],
    )

    ok = http.get(url(f"{name}-ok"))
    err = http.get(url(f"{name}-err"))

    assert ok.status_code == 200 and err.status_code == 200
    fallback = {"@type": "type.googleapis.com/acme.v1.Secret", "value": "CAE="}
    assert ok.json()["metadata"] == fallback
    assert ok.json()["response"] == fallback
    assert err.json()["error"]["details"] == [
        {
            "@type": "type.googleapis.com/acme.v1.Detail",
            "value": base64.b64encode(b"\x10\x02").decode(),
        }
    ]
    listed = http.get("/v1/operations", params={"filter": f'name = "{name}-*"'})
    assert listed.status_code == 200 and len(listed.json()["operations"]) == 2


def test_any_whose_bytes_do_not_read_as_its_type_falls_back_to_base64(
    server: Server, http: httpx.Client, prefix: str
) -> None:
    """Protobuf data is opaque: a Struct nested past protobuf's 100 levels was a 500 on GET."""
    inner = struct_pb2.Struct()
    for _ in range(60):  # 180 message levels: protobuf readers stop at 100
        outer = struct_pb2.Struct()
        outer.fields["a"].struct_value.CopyFrom(inner)
        inner = outer
    deep = any_pb2.Any()
    deep.Pack(inner)
    ingest(server, [make_event(Kind.SUCCEEDED, f"{prefix}/opaque", data={"response": deep})])

    response = http.get(url(f"{prefix}/opaque"))

    assert response.status_code == 200, response.text
    assert response.json()["response"] == {
        "@type": STRUCT,
        "value": base64.b64encode(deep.value).decode(),
    }


def test_a_name_longer_than_any_stored_is_400(http: httpx.Client) -> None:
    name = "operations/" + "a" * 1100
    for response in (
        http.get(url(name)),
        http.delete(url(name)),
        http.post(url(name, "cancel")),
        http.post(url(name, "wait"), json={"timeout": "0s"}),
    ):
        assert "longer than 1024 bytes" in expect_error(response, 400, "INVALID_ARGUMENT")


def test_an_escaped_colon_is_part_of_the_name(http: httpx.Client) -> None:
    # %3A is not the custom-method separator: this is GET of "operations/x:wait".
    response = http.get("/v1/operations/x%3Await")
    assert "operations/x:wait" in expect_error(response, 404, "NOT_FOUND")


def test_head_is_get_without_a_body(server: Server, http: httpx.Client, prefix: str) -> None:
    running_op(server, f"{prefix}/job")
    assert http.head(url(f"{prefix}/job")).status_code == 200
    assert http.head(url(f"{prefix}/nope")).status_code == 404


# ---- list ------------------------------------------------------------------------------


def list_names(http: httpx.Client, **params: Any) -> list[str]:
    response = http.get("/v1/operations", params=params)
    assert response.status_code == 200, response.text
    return [op["name"] for op in response.json().get("operations", [])]


def test_list_of_nothing_is_an_empty_object(http: httpx.Client, prefix: str) -> None:
    response = http.get("/v1/operations", params={"filter": f'name = "{prefix}/*"'})
    assert response.status_code == 200 and response.json() == {}


@pytest.mark.parametrize(
    ("size_param", "token_param"), [("pageSize", "pageToken"), ("page_size", "page_token")]
)
def test_list_pages(
    server: Server, http: httpx.Client, prefix: str, size_param: str, token_param: str
) -> None:
    expected = sorted(f"{prefix}/{i}" for i in range(7))
    ingest(server, [make_event(Kind.CREATED, n) for n in expected])
    params: dict[str, Any] = {"filter": f'name = "{prefix}/*"', size_param: 3}
    pages: list[list[str]] = []
    while True:
        body = http.get("/v1/operations", params=params).json()
        pages.append([op["name"] for op in body["operations"]])
        if "nextPageToken" not in body:
            break
        params[token_param] = body["nextPageToken"]

    assert [len(p) for p in pages] == [3, 3, 1]
    assert [n for p in pages for n in p] == expected


def _token(text: str) -> str:
    """A page token the way the server encodes one, holding `text`."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"filter": "colour = red"}, "unknown field 'colour'"),
        ({"filter": "done = "}, "filter"),
        ({"filter": "(" * 2000}, "nested deeper"),
        ({"filter": "NOT " * 500 + "done = true"}, "nested deeper"),
        ({"pageToken": "garbage"}, "page_token"),
        ({"pageSize": "ten"}, "pageSize"),
        ({"pageSize": "-1"}, "negative"),
        ({"pagesize": "3"}, "unknown query parameter 'pagesize'"),
        ({"pageSize": "3", "page_size": "4"}, "more than once"),
        ({"filter": ["done = true", "done = false"]}, "more than once"),
        # Regressions: each of these was a 500.
        ({"filter": 'create_time > "9999-12-31T23:59:59-23:59"'}, "not between"),
        ({"filter": 'update_time < "0001-01-01T00:00:00+01:00"'}, "not between"),
        ({"pageToken": _token("[" * 5000 + "]" * 5000)}, "page_token"),
        ({"pageToken": _token('{"a": "\\ud800", "f": "e3b0c44298fc1c14"}')}, "page_token"),
        ({"pageToken": _token('{"a": 7, "f": "e3b0c44298fc1c14"}')}, "page_token"),
        ({"pageToken": "A" * 10_000}, "page_token"),
    ],
)
def test_list_bad_input_is_400(http: httpx.Client, params: dict[str, Any], match: str) -> None:
    message = expect_error(http.get("/v1/operations", params=params), 400, "INVALID_ARGUMENT")
    assert match in message


def test_list_token_of_another_filter_is_400(
    server: Server, http: httpx.Client, prefix: str
) -> None:
    ingest(server, [make_event(Kind.CREATED, f"{prefix}/{i}") for i in range(3)])
    first = http.get("/v1/operations", params={"filter": f'name = "{prefix}/*"', "pageSize": 1})
    token = first.json()["nextPageToken"]

    response = http.get("/v1/operations", params={"filter": "done = true", "pageToken": token})

    assert "different filter" in expect_error(response, 400, "INVALID_ARGUMENT")


def test_system_parameters_are_ignored(server: Server, http: httpx.Client, prefix: str) -> None:
    running_op(server, f"{prefix}/job")
    response = http.get(url(f"{prefix}/job"), params={"alt": "json", "prettyPrint": "false"})
    assert response.status_code == 200


# ---- delete, cancel --------------------------------------------------------------------


def test_delete(server: Server, http: httpx.Client, prefix: str) -> None:
    name = f"{prefix}/job"
    running_op(server, name)

    response = http.delete(url(name))

    assert response.status_code == 200 and response.json() == {}
    expect_error(http.get(url(name)), 404, "NOT_FOUND")
    expect_error(http.delete(url(name)), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "body", [None, b"{}", b"", "name"], ids=["none", "empty-object", "empty", "name"]
)
def test_cancel(server: Server, http: httpx.Client, prefix: str, body: bytes | str | None) -> None:
    name = f"{prefix}/job"
    running_op(server, name)
    content = json.dumps({"name": name}).encode() if body == "name" else body

    response = http.post(url(name, "cancel"), content=content)

    assert response.status_code == 200 and response.json() == {}
    op = http.get(url(name)).json()
    assert op["done"] is True
    assert op["error"]["code"] == code_pb2.CANCELLED


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"reason": "x"}', "reason"),
        (b'{"name": "operations/other"}', "differs"),
    ],
)
def test_cancel_bad_body_is_400(
    server: Server, http: httpx.Client, prefix: str, content: bytes, match: str
) -> None:
    name = f"{prefix}/job"
    running_op(server, name)
    message = expect_error(http.post(url(name, "cancel"), content=content), 400, "INVALID_ARGUMENT")
    assert match in message
    assert "done" not in http.get(url(name)).json()  # nothing was cancelled


def test_body_too_large_is_413(server: Server, http: httpx.Client, prefix: str) -> None:
    name = f"{prefix}/job"
    running_op(server, name)
    content = b'{"name": "' + b"x" * (api_http.MAX_BODY_BYTES + 1) + b'"}'
    response = http.post(url(name, "wait"), content=content)
    assert response.status_code == 413
    # 413 carries the code gRPC uses for a message over its limit.
    assert google_error(response)[:2] == ("RESOURCE_EXHAUSTED", "TOO_LARGE")


# ---- wait ------------------------------------------------------------------------------


def test_wait_zero_timeout_is_a_get(server: Server, http: httpx.Client, prefix: str) -> None:
    name = f"{prefix}/job"
    running_op(server, name)
    response = http.post(url(name, "wait"), params={"timeout": "0s"})
    assert response.status_code == 200 and response.json()["name"] == name


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"params": {"timeout": "5"}}, "like '5s'"),
        ({"params": {"timeout": "-1s"}}, "negative"),
        ({"json": {"timeout": "soon"}}, "timeout"),
        ({"json": {"timeout": "-2s"}}, "negative"),
        ({"json": {"deadline": "5s"}}, "deadline"),
        ({"content": b"timeout=5s"}, "not valid JSON"),
        ({"content": b"[" * 20000}, "nested too deeply"),
        ({"params": {"wait": "5s"}}, "unknown query parameter 'wait'"),
    ],
)
def test_wait_bad_input_is_400(
    server: Server, http: httpx.Client, prefix: str, kwargs: dict[str, Any], match: str
) -> None:
    name = f"{prefix}/job"
    running_op(server, name)
    message = expect_error(http.post(url(name, "wait"), **kwargs), 400, "INVALID_ARGUMENT")
    assert match in message


# ---- watch (Server-Sent Events) --------------------------------------------------------


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Operation JSON of each `data:` event; comments (keepalives) are skipped."""
    for line in lines:
        if line.startswith("data: "):
            yield json.loads(line[len("data: ") :])


def test_watch_streams_progress_then_done(server: Server, http: httpx.Client, prefix: str) -> None:
    name = f"{prefix}/job"
    running_op(server, name, percent=10.0)

    with http.stream("GET", url(name, "watch"), params={"timeout": "30s"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response.iter_lines())
        first = next(events)
        assert first["metadata"]["percent"] == 10.0
        progress(server, name, 50.0)
        assert next(events)["metadata"]["percent"] == 50.0
        progress(server, name, 90.0)
        assert next(events)["metadata"]["percent"] == 90.0
        succeed(server, name, rows=4)
        last = next(events)
        assert last["done"] is True
        assert last["response"]["value"] == {"rows": 4}
        assert list(events) == []  # the stream ends once the operation is done


def test_watch_a_done_operation_is_one_event(
    server: Server, http: httpx.Client, prefix: str
) -> None:
    name = f"{prefix}/job"
    running_op(server, name)
    succeed(server, name)

    with http.stream("GET", url(name, "watch")) as response:
        events = list(sse_events(response.iter_lines()))

    assert [e["done"] for e in events] == [True]


def test_watch_ends_after_the_timeout(server: Server, http: httpx.Client, prefix: str) -> None:
    name = f"{prefix}/job"
    running_op(server, name, percent=20.0)

    with http.stream("GET", url(name, "watch"), params={"timeout": "0.3s"}) as response:
        events = list(sse_events(response.iter_lines()))

    assert [e["metadata"]["percent"] for e in events] == [20.0]
    assert "done" not in events[0]


def test_watch_sends_keepalives_when_idle(prefix: str) -> None:
    config = Config(db=":memory:", http_port=0, grpc_port=-1, watch_keepalive_seconds=0.05)
    with running(config) as server, httpx.Client(base_url=server.http_url, timeout=10) as http:
        name = f"{prefix}/job"
        running_op(server, name)
        with http.stream("GET", url(name, "watch"), params={"timeout": "0.5s"}) as response:
            lines = list(response.iter_lines())

    assert ": keepalive" in lines
    assert len(list(sse_events(iter(lines)))) == 1


def test_watch_errors(http: httpx.Client, server: Server, prefix: str) -> None:
    expect_error(http.get(url("operations/does-not-exist", "watch")), 404, "NOT_FOUND")
    running_op(server, f"{prefix}/job")
    response = http.get(url(f"{prefix}/job", "watch"), params={"timeout": "forever"})
    expect_error(response, 400, "INVALID_ARGUMENT")


# ---- checkpoint (extension) ------------------------------------------------------------


def test_checkpoint_returns_the_latest_bytes(
    server: Server, http: httpx.Client, prefix: str
) -> None:
    name = f"{prefix}/job"
    running_op(server, name)
    expect_error(http.get(url(name, "checkpoint")), 404, "NOT_FOUND")
    ingest(server, [make_event(Kind.CHECKPOINT, name, data={"data": b"\x00\xffshard-1"})])
    ingest(server, [make_event(Kind.CHECKPOINT, name, data={"data": b"\x00\xffshard-2"})])

    response = http.get(url(name, "checkpoint"))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == b"\x00\xffshard-2"


def test_checkpoint_errors(http: httpx.Client) -> None:
    message = expect_error(
        http.get(url("operations/does-not-exist", "checkpoint")), 404, "NOT_FOUND"
    )
    assert "has no checkpoint" not in message
    expect_error(http.post(url("operations/x", "checkpoint")), 405, "UNIMPLEMENTED")


# ---- methods, internal errors ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/operations", "GET, POST"),
        ("DELETE", "/v1/operations", "GET, POST"),
        ("POST", "/v1/operations/x", "GET, DELETE"),
        ("PUT", "/v1/operations/x", "GET, DELETE"),
        ("GET", "/v1/operations/x:cancel", "POST"),
        ("GET", "/v1/operations/x:wait", "POST"),
        ("POST", "/v1/operations/x:watch", "GET"),
    ],
)
def test_wrong_method_is_405_json(http: httpx.Client, method: str, path: str, allow: str) -> None:
    response = http.request(method, path)
    message = expect_error(response, 405, "UNIMPLEMENTED")
    assert response.headers["allow"] == allow
    assert method in message


def test_unexpected_error_is_500_without_details(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FaultyStore(str(tmp_path / "f.db"))
    config = Config(db=str(tmp_path / "f.db"), http_port=0, grpc_port=-1)
    with running(config, store=store) as server, httpx.Client(base_url=server.http_url) as http:
        message = expect_error(http.get(url(f"operations/{EXPLODE}")), 500, "INTERNAL")

    assert message.startswith(status.INTERNAL_MESSAGE)
    assert "secret" not in message
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info and r.exc_info[1]]
    assert any(str(exc) == SECRET for exc in logged)


@pytest.mark.parametrize(
    ("code", "http_status", "name"),
    [
        (code_pb2.INVALID_ARGUMENT, 400, "INVALID_ARGUMENT"),
        (code_pb2.FAILED_PRECONDITION, 400, "FAILED_PRECONDITION"),
        (code_pb2.UNAUTHENTICATED, 401, "UNAUTHENTICATED"),
        (code_pb2.PERMISSION_DENIED, 403, "PERMISSION_DENIED"),
        (code_pb2.NOT_FOUND, 404, "NOT_FOUND"),
        (code_pb2.ALREADY_EXISTS, 409, "ALREADY_EXISTS"),
        (code_pb2.RESOURCE_EXHAUSTED, 429, "RESOURCE_EXHAUSTED"),
        (code_pb2.CANCELLED, 499, "CANCELLED"),
        (code_pb2.INTERNAL, 500, "INTERNAL"),
        (code_pb2.UNAVAILABLE, 503, "UNAVAILABLE"),
        (code_pb2.DEADLINE_EXCEEDED, 504, "DEADLINE_EXCEEDED"),
        (99, 500, "UNKNOWN"),
    ],
)
def test_status_mapping(code: int, http_status: int, name: str) -> None:
    error = status.ApiError(code, "m")
    assert error.http_status == http_status
    info = {"@type": ERROR_INFO, "reason": name, "domain": "tracker", "metadata": {}}
    assert error.body() == {
        "error": {"code": http_status, "message": "m", "status": name, "details": [info]}
    }
    if code != 99:
        assert error.grpc_code.name == name
        assert error.grpc_code.value[0] == code


# ---- Google's REST operations client ---------------------------------------------------


@pytest.fixture(scope="module")
def rest(server: Server) -> AbstractOperationsClient:
    return rest_client(server.http_url)


def test_rest_client_errors(rest: AbstractOperationsClient) -> None:
    with pytest.raises(exceptions.NotFound, match="does-not-exist"):
        rest.get_operation("operations/does-not-exist")
    with pytest.raises(exceptions.BadRequest, match="unknown field"):
        list(rest.list_operations("operations", "colour = red"))
