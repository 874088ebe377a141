"""`GET /v1/operations:stream` against a real server: ready first, then every changed
operation matching the filter, from the routes that commit (events, cancel)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import google_error, ingest, make_event, packed_struct, running_op, succeed
from tracker.config import Config
from tracker.events import Kind
from tracker.server import Server, running


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running(Config(db=":memory:", http_port=0, grpc_port=-1)) as s:
        yield s


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=15) as client:
        yield client


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:10]


def sse(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(event type, parsed data) of each event; comments are skipped."""
    kind, data = "message", list[str]()
    for line in lines:
        if line == "":
            if data:
                yield kind, json.loads("\n".join(data))
            kind, data = "message", []
        elif line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: "):
            data.append(line[len("data: ") :])


def percent(op: dict[str, Any]) -> float:
    return float(op["metadata"].get("percent", 0.0))


def test_ready_then_every_matching_change_in_commit_order(
    server: Server, http: httpx.Client, tag: str
) -> None:
    mine, other = f"operations/{tag}-mine", f"operations/{tag}-other"
    running_op(server, mine, 10.0, run=tag)
    running_op(server, other, 10.0, run="someone-else")
    params = {"filter": f'labels.run = "{tag}"', "timeout": "30s"}
    with http.stream("GET", "/v1/operations:stream", params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse(response.iter_lines())
        assert next(events) == ("ready", {})  # subscribed: what follows is not missed
        ingest(server, [make_event(Kind.PROGRESS, other, data={"percent": 99.0})])
        ingest(server, [make_event(Kind.PROGRESS, mine, data={"percent": 40.0})])
        kind, op = next(events)
        assert (kind, op["name"], percent(op)) == ("operation", mine, 40.0)
        http.post(f"/v1/{mine}:cancel")  # the cancel route's commit is streamed too
        kind, op = next(events)
        assert kind == "operation" and op["metadata"]["cancelRequested"] is True
        assert op["error"]["code"] == 1  # CancelOperation ends it at once


def test_a_new_operation_is_streamed_and_no_filter_means_all(
    server: Server, http: httpx.Client, tag: str
) -> None:
    name = f"operations/{tag}-new"
    with http.stream("GET", "/v1/operations:stream", params={"timeout": "30s"}) as response:
        events = sse(response.iter_lines())
        assert next(events)[0] == "ready"
        running_op(server, name, 5.0)
        kind, op = next(events)
        assert (kind, op["name"]) == ("operation", name)
        succeed(server, name, rows=1)
        kind, op = next(events)
        assert kind == "operation" and op["done"] is True and op["response"]["value"] == {"rows": 1}


def test_a_producer_metadata_type_is_filtered_by_the_stored_row(
    server: Server, http: httpx.Client, tag: str
) -> None:
    """Its served metadata has no labels; the filter reads the stored ones."""
    mine, other = f"operations/{tag}-own", f"operations/{tag}-own-other"
    for name, run in ((mine, tag), (other, "elsewhere")):
        ingest(server, [make_event(Kind.CREATED, name, data={"labels": {"run": run}})])
    params = {"filter": f'labels.run = "{tag}"', "timeout": "30s"}
    with http.stream("GET", "/v1/operations:stream", params=params) as response:
        events = sse(response.iter_lines())
        assert next(events)[0] == "ready"
        for name in (other, mine):
            own = packed_struct(step=name)
            ingest(server, [make_event(Kind.PROGRESS, name, data={"metadata": own})])
        kind, op = next(events)
        assert kind == "operation" and op["name"] == mine
        assert op["metadata"]["value"] == {"step": mine}


def test_timeout_zero_is_ready_then_the_end(http: httpx.Client) -> None:
    with http.stream("GET", "/v1/operations:stream", params={"timeout": "0s"}) as response:
        assert [k for k, _ in sse(response.iter_lines())] == ["ready"]


def test_the_stream_ends_after_its_timeout(http: httpx.Client) -> None:
    with http.stream("GET", "/v1/operations:stream", params={"timeout": "0.2s"}) as response:
        assert [k for k, _ in sse(response.iter_lines())] == ["ready"]


def test_keepalives_while_idle() -> None:
    config = Config(db=":memory:", http_port=0, grpc_port=-1, watch_keepalive_seconds=0.05)
    with running(config) as server, httpx.Client(base_url=server.http_url, timeout=10) as http:
        params = {"timeout": "0.5s"}
        with http.stream("GET", "/v1/operations:stream", params=params) as response:
            lines = list(response.iter_lines())
    assert ": keepalive" in lines


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"filter": "labels.env ~ 1"}, "filter"),
        ({"filter": "nonsense = 1"}, "nonsense"),
        ({"timeout": "forever"}, "timeout"),
        ({"pagesize": "3"}, "unknown query parameter"),
    ],
)
def test_bad_requests_are_400_before_the_stream(
    http: httpx.Client, params: dict[str, str], match: str
) -> None:
    response = http.get("/v1/operations:stream", params=params)
    assert response.status_code == 400
    assert google_error(response)[0] == "INVALID_ARGUMENT"
    assert match in response.json()["error"]["message"]


def test_only_get(http: httpx.Client) -> None:
    response = http.post("/v1/operations:stream")
    assert response.status_code == 405 and response.headers["allow"] == "GET"
