"""Google-style operation names (`projects/P/locations/L/operations/ID`) on every route:
HTTP paths as Google services annotate them, gRPC, Google's own REST and gRPC clients,
the SDK and the CLI; List of one parent collection."""

from __future__ import annotations

import json
import uuid

import grpc
import httpx
import pytest
from google.api_core import exceptions, operations_v1
from google.api_core.operations_v1 import AbstractOperationsClient
from google.api_core.operations_v1.transports.rest import OperationsRestTransport
from google.auth.credentials import AnonymousCredentials

from tests.cli_kit import invoke
from tests.helpers import google_error, ingest, make_event, running_op, succeed
from tracker.bindings import parse_message, to_binary
from tracker.client import TrackerClient
from tracker.errors import InvalidEvent
from tracker.events import Kind
from tracker.server import Server

# The HTTP rules Google services put on their Operations mixin (e.g. Vertex AI, Cloud Run).
GOOGLE_RULES = {
    "google.longrunning.Operations.ListOperations": [
        {"method": "get", "uri": "/v1/{name=projects/*/locations/*}/operations"}
    ],
    "google.longrunning.Operations.GetOperation": [
        {"method": "get", "uri": "/v1/{name=projects/*/locations/*/operations/*}"}
    ],
    "google.longrunning.Operations.DeleteOperation": [
        {"method": "delete", "uri": "/v1/{name=projects/*/locations/*/operations/*}"}
    ],
    "google.longrunning.Operations.CancelOperation": [
        {
            "method": "post",
            "uri": "/v1/{name=projects/*/locations/*/operations/*}:cancel",
            "body": "*",
        }
    ],
}


@pytest.fixture
def project() -> str:
    """A fresh project id, so tests sharing the module's server do not see each other."""
    return f"p{uuid.uuid4().hex[:10]}"


def names(body: dict[str, object]) -> list[str]:
    return [str(o["name"]) for o in body.get("operations", [])]  # type: ignore[attr-defined]


def seed(server: Server, project: str) -> dict[str, str]:
    """Operations in two locations of `project`, one at the project level, one elsewhere."""
    ops = {
        "a": f"projects/{project}/locations/us/operations/a",
        "b": f"projects/{project}/locations/us/operations/batch/b",
        "eu": f"projects/{project}/locations/eu/operations/c",
        "top": f"projects/{project}/operations/d",
        "other": f"projects/{project}x/locations/us/operations/a",
    }
    for name in ops.values():
        running_op(server, name)
    return ops


def test_every_http_route_serves_a_google_style_name(
    server: Server, http: httpx.Client, project: str
) -> None:
    name = f"projects/{project}/locations/us-central1/operations/job-1"
    running_op(server, name, team="a")
    ingest(server, [make_event(Kind.CHECKPOINT, name, data={"data": b"\x00\x01"})])
    got = http.get(f"/v1/{name}")
    assert got.status_code == 200 and got.json()["name"] == name
    waited = http.post(f"/v1/{name}:wait", json={"timeout": "0s"})
    assert waited.status_code == 200 and waited.json()["name"] == name
    assert http.get(f"/v1/{name}:checkpoint").content == b"\x00\x01"
    history = http.get(f"/v1/{name}/events").json()
    assert [e["type"] for e in history["events"]][-1] == "tracker.operation.v1.checkpoint"
    with http.stream("GET", f"/v1/{name}:watch", params={"timeout": "0s"}) as stream:
        first = next(line for line in stream.iter_lines() if line.startswith("data:"))
    assert json.loads(first.removeprefix("data:"))["name"] == name
    assert http.post(f"/v1/{name}:cancel", json={}).status_code == 200
    assert http.get(f"/v1/{name}").json()["error"]["code"] == 1  # CANCELLED
    assert http.delete(f"/v1/{name}").status_code == 200
    gone = http.get(f"/v1/{name}")
    assert gone.status_code == 404 and google_error(gone)[0] == "NOT_FOUND"


def test_list_of_a_parent_holds_its_collection_only(
    server: Server, http: httpx.Client, project: str
) -> None:
    ops = seed(server, project)
    us = http.get(f"/v1/projects/{project}/locations/us/operations").json()
    assert names(us) == [ops["a"], ops["b"]]
    at_project = http.get(f"/v1/projects/{project}/operations").json()
    assert names(at_project) == [ops["top"]]
    succeed(server, ops["b"])
    filtered = http.get(
        f"/v1/projects/{project}/locations/us/operations",
        params={"filter": "done = true", "count": "true"},
    ).json()
    assert names(filtered) == [ops["b"]] and filtered["totalSize"] == 1
    paged = http.get(
        f"/v1/projects/{project}/locations/us/operations", params={"pageSize": 1}
    ).json()
    assert names(paged) == [ops["a"]]
    second = http.get(
        f"/v1/projects/{project}/locations/us/operations",
        params={"pageSize": 1, "pageToken": paged["nextPageToken"]},
    ).json()
    assert names(second) == [ops["b"]] and "nextPageToken" not in second
    everything = names(http.get("/v1/operations", params={"pageSize": 1000}).json())
    assert set(ops.values()) <= set(everything)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/projects/p/zones/z/operations",  # not a parent of operations here
        "/v1/projects/p/locations/operations",
        "/v1/projects/p/locations/l/x/operations",
    ],
)
def test_a_collection_that_is_not_one_is_a_clear_400(http: httpx.Client, path: str) -> None:
    answer = http.get(path)
    assert answer.status_code == 400, answer.text
    assert google_error(answer)[0] == "INVALID_ARGUMENT"
    assert "not a collection of operations" in answer.json()["error"]["message"]


def test_a_bad_filter_under_a_parent_is_reported_in_its_own_words(http: httpx.Client) -> None:
    answer = http.get("/v1/projects/p/locations/l/operations", params={"filter": "done = "})
    assert answer.status_code == 400
    assert "projects/p" not in answer.json()["error"]["message"]


def test_names_outside_the_pattern_are_refused_at_ingest(server: Server) -> None:
    for good in ("projects/p/operations/1", "projects/p/locations/l/operations/1/2"):
        event = make_event(Kind.HEARTBEAT, good)
        assert parse_message(*to_binary(event), server.tracker.rules)[0].operation == good
    for bad in ("projects/p/zones/z/operations/1", "projects//operations/1", "folders/f/x"):
        with pytest.raises(InvalidEvent) as info:
            parse_message(*to_binary(make_event(Kind.HEARTBEAT, bad)), server.tracker.rules)
        assert info.value.reason == "bad_name", bad


def test_googles_rest_client_with_the_rules_google_services_annotate(
    server: Server, project: str
) -> None:
    ops = seed(server, project)
    transport = OperationsRestTransport(
        host=server.http_url,
        credentials=AnonymousCredentials(),
        url_scheme="http",
        http_options=GOOGLE_RULES,
    )
    client = AbstractOperationsClient(transport=transport)
    listed = [o.name for o in client.list_operations(f"projects/{project}/locations/us", "")]
    # The rule's `operations/*` is one segment: the nested id "batch/b" is not a match
    # for this client's GetOperation, but it is listed.
    assert listed == [ops["a"], ops["b"]]
    assert client.get_operation(ops["a"]).name == ops["a"]
    client.cancel_operation(ops["eu"])
    assert client.get_operation(ops["eu"]).done
    client.delete_operation(ops["eu"])
    with pytest.raises(exceptions.NotFound):
        client.get_operation(ops["eu"])


def test_grpc_list_takes_the_parent_or_its_collection(server: Server, project: str) -> None:
    ops = seed(server, project)
    with grpc.insecure_channel(server.grpc_target) as channel:
        client = operations_v1.OperationsClient(channel)
        for parent in (
            f"projects/{project}/locations/us",
            f"projects/{project}/locations/us/operations",
        ):
            assert [o.name for o in client.list_operations(parent, "")] == [ops["a"], ops["b"]]
        assert client.get_operation(ops["top"]).name == ops["top"]
        with pytest.raises(exceptions.InvalidArgument) as info:
            list(client.list_operations("projects/p/zones/z", ""))
        assert "not a collection of operations" in str(info.value)


def test_the_sdk_and_the_cli_list_one_parent(server: Server, project: str) -> None:
    ops = seed(server, project)
    parent = f"projects/{project}/locations/us"
    with TrackerClient(server.http_url) as client:
        assert [o.name for o in client.list(parent=parent)] == [ops["a"], ops["b"]]
        assert client.count("done = false", parent=parent) == 2
        assert client.get(ops["b"]).name == ops["b"]
        assert [o.name for o in client.list(parent=f"projects/{project}")] == [ops["top"]]
    result = invoke(["list", "--parent", parent, "--json"], url=server.http_url)
    assert result.exit_code == 0, result.output
    assert [o["name"] for o in json.loads(result.output)] == [ops["a"], ops["b"]]
