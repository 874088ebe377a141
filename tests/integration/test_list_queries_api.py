"""List with order_by and a count over HTTP, gRPC and the SDK, against a real server.

Order and pages are the store's (tests/contract/test_list_queries.py); here: the wire
spellings, tokens bound to filter and order, the count, and the errors callers get.
"""

from __future__ import annotations

import asyncio
import uuid

import grpc
import httpx
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.rpc import code_pb2, status_pb2

from tests.helpers import T0, google_error, ingest, make_event
from tracker import errors
from tracker.client import AsyncTrackerClient, TrackerClient
from tracker.events import Kind
from tracker.server import Server


@pytest.fixture
def ops(server: Server) -> list[str]:
    """Five operations under a fresh prefix, created in the order c, a, e, b, d (by
    time); a and b failed, c succeeded."""
    prefix = f"operations/l{uuid.uuid4().hex[:10]}"
    names = [f"{prefix}-{x}" for x in "abcde"]
    created = {"c": 0, "a": 1, "e": 2, "b": 3, "d": 4}
    for name in names:
        when = T0.replace(second=created[name[-1]])
        ingest(server, [make_event(Kind.CREATED, name, time=when)])
    error = status_pb2.Status(code=code_pb2.NOT_FOUND, message="gone")
    for x in "ab":
        ingest(server, [make_event(Kind.FAILED, f"{prefix}-{x}", data={"error": error})])
    ingest(server, [make_event(Kind.SUCCEEDED, f"{prefix}-c")])
    return names


def prefix_of(ops: list[str]) -> str:
    return f'name = "{ops[0][:-2]}*"'


def test_http_order_by_pages_and_total_size(server: Server, ops: list[str]) -> None:
    f = prefix_of(ops)
    seen: list[str] = []
    token = ""
    with httpx.Client(base_url=server.http_url) as http:
        while True:
            params: dict[str, str | int] = {
                "filter": f,
                "orderBy": "create_time desc",
                "pageSize": 2,
                "count": "true",
            }
            if token:
                params["pageToken"] = token
            body = http.get("/v1/operations", params=params).json()
            assert body["totalSize"] == 5
            seen += [o["name"] for o in body["operations"]]
            token = body.get("nextPageToken", "")
            if not token:
                break
        assert [n[-1] for n in seen] == list("dbeac")
        # Without count, no totalSize; a count of a filter on the new fields.
        plain = http.get("/v1/operations", params={"filter": f}).json()
        assert "totalSize" not in plain
        failed = http.get(
            "/v1/operations", params={"filter": f + " AND result = failed", "count": "true"}
        ).json()
        assert failed["totalSize"] == 2 and [o["name"][-1] for o in failed["operations"]] == [
            "a",
            "b",
        ]


def test_a_token_is_bound_to_its_filter_and_order(server: Server, ops: list[str]) -> None:
    f = prefix_of(ops)
    with httpx.Client(base_url=server.http_url) as http:
        first = http.get(
            "/v1/operations", params={"filter": f, "orderBy": "create_time", "pageSize": 2}
        ).json()
        token = first["nextPageToken"]
        for other in ({"orderBy": "create_time desc"}, {"orderBy": ""}, {"orderBy": "end_time"}):
            answer = http.get(
                "/v1/operations", params={"filter": f, "pageSize": 2, "pageToken": token, **other}
            )
            assert answer.status_code == 400, other
            assert google_error(answer)[0] == "INVALID_ARGUMENT"
            assert "different filter or order_by" in answer.json()["error"]["message"]
        again = http.get(
            "/v1/operations",
            params={"filter": f, "orderBy": "create_time", "pageSize": 2, "pageToken": token},
        ).json()
        assert [o["name"][-1] for o in again["operations"]] == ["e", "b"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"orderBy": "colour"}, "order_by: unknown field 'colour'"),
        ({"orderBy": "name, create_time"}, "name is the last key"),
        ({"orderBy": "create_time up"}, "not a field followed by nothing or desc"),
        ({"orderBy": "create_time,,name"}, "an empty key"),
        ({"orderBy": "end_time, end_time desc"}, "given more than once"),
        ({"count": "maybe"}, "count must be true or false"),
        ({"filter": "result = nope"}, "result takes = or !="),
        ({"filter": "percent >= lots"}, "percent needs a number"),
        ({"filter": "error.code = NOPE"}, "or a google.rpc.Code name"),
        ({"filter": "attempt > 1.5"}, "attempt needs an integer"),
        ({"filter": 'end_time > "yesterday"'}, "end_time needs an RFC 3339 time"),
        ({"filter": "error.message = x"}, "unknown field 'error.message'"),
    ],
)
def test_bad_order_by_count_or_filter_is_a_400(
    server: Server, params: dict[str, str], message: str
) -> None:
    answer = httpx.get(f"{server.http_url}/v1/operations", params=params)
    assert answer.status_code == 400, answer.text
    assert google_error(answer)[0] == "INVALID_ARGUMENT"
    assert message in answer.json()["error"]["message"]


def test_grpc_takes_order_by_as_request_metadata(server: Server, ops: list[str]) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = operations_pb2_grpc.OperationsStub(channel)
        request = operations_pb2.ListOperationsRequest(filter=prefix_of(ops), page_size=3)
        plain = stub.ListOperations(request)
        assert [o.name[-1] for o in plain.operations] == list("abc")
        ordered = stub.ListOperations(request, metadata=[("x-tracker-order-by", "create_time")])
        assert [o.name[-1] for o in ordered.operations] == list("cae")
        rest = stub.ListOperations(
            operations_pb2.ListOperationsRequest(
                filter=prefix_of(ops), page_size=3, page_token=ordered.next_page_token
            ),
            metadata=[("x-tracker-order-by", "create_time")],
        )
        assert [o.name[-1] for o in rest.operations] == list("bd")
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListOperations(request, metadata=[("x-tracker-order-by", "size")])
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "order_by: unknown field" in str(refused.value.details())


def test_sdk_lists_in_order_and_counts(server: Server, ops: list[str]) -> None:
    f = prefix_of(ops)
    with TrackerClient(server.http_url) as client:
        got = [o.name[-1] for o in client.list(f, page_size=2, order_by="end_time desc")]
        # Running ones (no end time) last when descending; then by name descending.
        assert got[-2:] == ["e", "d"] and sorted(got[:3]) == ["a", "b", "c"]
        assert client.count(f) == 5
        assert client.count(f + " AND result = succeeded") == 1
        with pytest.raises(errors.InvalidArgument, match="order_by"):
            client.list_page(f, order_by="weight")

    async def run() -> tuple[list[str], int]:
        async with AsyncTrackerClient(server.http_url) as client:
            names = [o.name[-1] async for o in client.list(f, 2, order_by="create_time")]
            return names, await client.count(f + " AND done = false")

    names, running_count = asyncio.run(run())
    assert names == list("caebd") and running_count == 2
