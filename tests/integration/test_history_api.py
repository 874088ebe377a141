"""The event history through a real server: HTTP route, SDK (sync and async), CLI."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.cli_kit import assert_one_error_line, invoke
from tracker import errors
from tracker.client import AsyncTrackerClient, HistoryEntry, TrackerClient
from tracker.config import Config
from tracker.errors import ConfigError
from tracker.events import Kind
from tracker.server import Server, running
from tracker.v1 import events_pb2


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running(Config(db=":memory:", http_port=0, grpc_port=-1)) as srv:
        yield srv


@pytest.fixture
def client(server: Server) -> Iterator[TrackerClient]:
    with TrackerClient(server.http_url, source="tests/history") as c:
        yield c


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url) as c:
        yield c


@pytest.fixture
def name() -> str:
    return f"operations/hist/{uuid.uuid4().hex[:12]}"


def publish_steps(client: TrackerClient, name: str, n: int) -> None:
    client.publish(client.event(Kind.CREATED, name, events_pb2.Created(), seq=0, event_id="c"))
    for i in range(1, n):
        progress = events_pb2.Progress(percent=i, message=f"step {i}")
        client.publish(client.event(Kind.PROGRESS, name, progress, seq=i, event_id=f"p{i}"))


def test_the_route_serves_each_event_with_its_outcome(
    client: TrackerClient, http: httpx.Client, name: str
) -> None:
    publish_steps(client, name, 2)
    again = client.event(Kind.PROGRESS, name, events_pb2.Progress(percent=1), seq=1, event_id="p1")
    assert client.publish(again)[0].outcome == "duplicate"
    client.cancel(name)
    answer = http.get(f"/v1/{name}/events")
    assert answer.status_code == 200
    body = answer.json()
    assert "nextPageToken" not in body
    events = body["events"]
    assert [(e["type"], e["outcome"]) for e in events] == [
        ("tracker.operation.v1.created", "applied"),
        ("tracker.operation.v1.progress", "applied"),
        ("tracker.operation.v1.progress", "duplicate"),
        ("tracker.cancel", "cancel_requested"),
    ]
    step = events[1]
    assert step["id"] == "p1" and step["source"] == "tests/history"
    assert step["sequence"] == 1 and step["attempt"] == 1 and step["truncated"] is False
    assert step["data"] == {"percent": 1.0, "message": "step 1"}
    assert step["time"].endswith("Z") and step["receivedTime"].endswith("Z")
    assert events[3]["source"] == "tracker" and "sequence" not in events[3]
    assert events[3]["data"]["kind"] == "CANCEL"


def test_pages_and_their_tokens(client: TrackerClient, http: httpx.Client, name: str) -> None:
    publish_steps(client, name, 5)
    seen: list[str] = []
    token = ""
    for _ in range(5):
        params = {"pageSize": "2", **({"pageToken": token} if token else {})}
        body = http.get(f"/v1/{name}/events", params=params).json()
        seen += [e["id"] for e in body["events"]]
        token = body.get("nextPageToken", "")
        if not token:
            break
    assert seen == ["c", "p1", "p2", "p3", "p4"]
    first = http.get(f"/v1/{name}/events", params={"pageSize": "2"}).json()["nextPageToken"]
    other = f"{name}-other"
    publish_steps(client, other, 1)
    refused = http.get(f"/v1/{other}/events", params={"pageToken": first})
    assert refused.status_code == 400 and "another operation" in refused.text


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/v1/operations/hist/none/events", {}, 404),
        ("/v1/operations/hist/x/events", {"pageToken": "junk!"}, 400),
        ("/v1/operations/hist/x/events", {"pageSize": "-1"}, 400),
        ("/v1/operations/hist/x/events", {"pageSize": "many"}, 400),
        ("/v1/operations/hist/x/events", {"filter": "done"}, 400),
    ],
)
def test_bad_requests_get_a_clear_answer(
    client: TrackerClient, http: httpx.Client, path: str, params: dict[str, str], status: int
) -> None:
    publish_steps(client, "operations/hist/x", 1)
    answer = http.get(path, params=params)
    assert answer.status_code == status
    assert answer.json()["error"]["message"]


def test_other_methods_are_refused(client: TrackerClient, http: httpx.Client, name: str) -> None:
    publish_steps(client, name, 1)
    answer = http.post(f"/v1/{name}/events", json={})
    assert answer.status_code == 405
    assert client.get(name).name == name  # and nothing was deleted by a DELETE either
    assert http.delete(f"/v1/{name}/events").status_code == 405
    assert client.get(name).name == name


def test_an_operation_named_like_a_history_stays_reachable(
    client: TrackerClient, http: httpx.Client, name: str
) -> None:
    odd = f"{name}/events"
    publish_steps(client, odd, 2)
    assert client.get(odd).name == odd  # the SDK escapes the last slash
    raw = http.get(f"/v1/{name}%2Fevents").json()
    assert raw["name"] == odd
    assert [e.id for e in client.history(odd)] == ["c", "p1"]
    assert http.get(f"/v1/{name}/events").status_code == 404  # `name` itself does not exist


def test_binary_data_is_served_as_base64(
    client: TrackerClient, http: httpx.Client, name: str
) -> None:
    blob = bytes(range(256)) * 64  # 16 KiB: past the bound
    client.publish(client.event(Kind.CHECKPOINT, name, events_pb2.Checkpoint(data=blob)))
    (event,) = http.get(f"/v1/{name}/events").json()["events"]
    assert event["truncated"] is True and "data" not in event
    kept = base64.b64decode(event["dataBase64"])
    assert len(kept) == 8192 and kept == events_pb2.Checkpoint(data=blob).SerializeToString()[:8192]


def test_the_sdk_iterates_every_page(client: TrackerClient, server: Server, name: str) -> None:
    publish_steps(client, name, 7)
    entries = list(client.history(name, page_size=3))
    assert [e.id for e in entries] == ["c", *[f"p{i}" for i in range(1, 7)]]
    assert isinstance(entries[1], HistoryEntry)
    assert entries[1].kind == "progress" and entries[1].sequence == 1
    assert entries[1].data == {"percent": 1.0, "message": "step 1"}
    assert entries[1].time is not None and entries[1].time.tzinfo is not None
    page, token = client.history_page(name, page_size=3)
    assert len(page) == 3 and token
    with pytest.raises(errors.NotFound):
        list(client.history("operations/hist/never"))

    async def read() -> list[str]:
        async with AsyncTrackerClient(server.http_url) as a:
            return [e.id async for e in a.history(name, page_size=2)]

    assert asyncio.run(read()) == [e.id for e in entries]


def test_the_cli_shows_a_table_json_and_a_limit(
    client: TrackerClient, server: Server, name: str
) -> None:
    publish_steps(client, name, 4)
    table = invoke(["history", name], server.http_url)
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split() == ["TIME", "TYPE", "OUTCOME", "ID", "SOURCE", "SEQ", "ATTEMPT", "DATA"]
    assert lines[2].split()[1:7] == ["progress", "applied", "p1", "tests/history", "1", "1"]
    assert '{"percent":1.0,"message":"step 1"}' in lines[2]
    limited = invoke(["history", name, "--json", "--limit", "2"], server.http_url)
    assert limited.exit_code == 0
    assert [e["id"] for e in json.loads(limited.output)] == ["c", "p1"]
    missing = invoke(["history", "operations/hist/never"], server.http_url)
    assert missing.exit_code == 1
    assert "not found" in assert_one_error_line(missing.output)


def test_zero_per_operation_records_nothing() -> None:
    config = Config(db=":memory:", http_port=0, grpc_port=-1, history_per_operation=0)
    with running(config) as srv, TrackerClient(srv.http_url) as c:
        publish_steps(c, "operations/quiet", 3)
        assert list(c.history("operations/quiet")) == []
    with pytest.raises(ConfigError, match="--history-per-operation"):
        Config(history_per_operation=-1).validate()


def test_the_bound_is_the_servers_setting() -> None:
    config = Config(db=":memory:", http_port=0, grpc_port=-1, history_per_operation=3)
    with running(config) as srv, TrackerClient(srv.http_url) as c:
        publish_steps(c, "operations/short", 6)
        assert [e.id for e in c.history("operations/short")] == ["p3", "p4", "p5"]
