"""Tenants: several services in one database, each with its own tables (--table-prefix,
made by `tracker schema apply --table-prefix`), and callers whose permissions are scoped
to a name prefix (--grant-scope, the policy file's [scopes]), so one service's workers
cannot touch another's operations on any route."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc

from tests.cli_kit import invoke
from tests.conftest import session_database
from tests.helpers import google_error, make_event
from tracker.auth import token_digest
from tracker.bindings import to_batch, to_binary
from tracker.client import TrackerClient
from tracker.config import Config
from tracker.errors import ConfigError
from tracker.events import Kind
from tracker.server import Server, build_guard, running
from tracker.v1 import operations_pb2 as create_pb2

TOKENS = {
    name: f"{name}-{uuid.uuid4().hex}{uuid.uuid4().hex}" for name in ("billing", "search", "admin")
}
BILLING = "projects/billing/"
SEARCH = "projects/search/"


def bearer(who: str) -> dict[str, str]:
    return {"authorization": f"Bearer {TOKENS[who]}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("tenants")
    tokens = folder / "tokens.toml"
    tokens.write_text("".join(f'{n} = "{token_digest(t)}"\n' for n, t in TOKENS.items()))
    policy = folder / "policy.toml"
    # search's scope comes from the policy file, billing's from --grant-scope.
    policy.write_text(f'[scopes]\n"token:search" = ["{SEARCH}", "operations/search-"]\n')
    grants = [
        f"{p}=token:{who}"
        for who in TOKENS
        for p in ("events.publish", "operations.read", "operations.write", "pubsub.push")
    ]
    config = Config(
        db=":memory:",
        http_port=0,
        grpc_port=0,
        auth_tokens_file=str(tokens),
        auth_policy=str(policy),
        grant=tuple(grants),
        grant_scope=(f"token:billing={BILLING}",),
        max_wait_seconds=5,
    )
    with running(config) as s:
        yield s


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        yield client


@pytest.fixture
def ops(http: httpx.Client) -> dict[str, str]:
    """One running operation per tenant, each created by its own service."""
    uid = uuid.uuid4().hex[:8]
    out = {}
    for who, collection in (
        ("billing", "projects/billing/locations/eu"),
        ("search", "projects/search/locations/us"),
    ):
        answer = http.post(
            f"/v1/{collection}/operations",
            json={"operationId": f"job-{uid}", "operation": {"operationType": who}},
            headers=bearer(who),
        )
        assert answer.status_code == 200, answer.text
        out[who] = answer.json()["name"]
    return out


def out_of_scope(answer: httpx.Response) -> None:
    assert answer.status_code == 403, answer.text
    assert google_error(answer)[1] == "OUT_OF_SCOPE"


def test_each_service_reaches_its_own_operations_only(
    http: httpx.Client, ops: dict[str, str]
) -> None:
    mine, theirs = ops["billing"], ops["search"]
    assert http.get(f"/v1/{mine}", headers=bearer("billing")).status_code == 200
    for method, path, body in (
        ("GET", f"/v1/{theirs}", None),
        ("POST", f"/v1/{theirs}:wait", {"timeout": "0s"}),
        ("GET", f"/v1/{theirs}:watch?timeout=0s", None),
        ("GET", f"/v1/{theirs}:checkpoint", None),
        ("GET", f"/v1/{theirs}/events", None),
        ("POST", f"/v1/{theirs}:cancel", {}),
        ("DELETE", f"/v1/{theirs}", None),
    ):
        out_of_scope(http.request(method, path, json=body, headers=bearer("billing")))
    still = http.get(f"/v1/{theirs}", headers=bearer("search")).json()
    assert not still.get("done")  # the refused cancel changed nothing
    assert http.get(f"/v1/{theirs}", headers=bearer("admin")).status_code == 200


def test_lists_counts_and_bulk_actions_say_the_scope(
    http: httpx.Client, ops: dict[str, str]
) -> None:
    def listed(who: str, **params: str) -> list[str]:
        body = http.get(
            "/v1/operations", params={"pageSize": "1000", **params}, headers=bearer(who)
        ).json()
        return [o["name"] for o in body.get("operations", [])]

    billing = listed("billing")
    assert ops["billing"] in billing and all(n.startswith(BILLING) for n in billing)
    search = listed("search", filter="done = false")
    assert ops["search"] in search and all(
        n.startswith(("projects/search/", "operations/search-")) for n in search
    )
    assert {ops["billing"], ops["search"]} <= set(listed("admin"))
    # Another tenant's collection lists as empty, not as theirs.
    theirs = http.get(
        "/v1/projects/search/locations/us/operations", headers=bearer("billing")
    ).json()
    assert theirs.get("operations", []) == []
    counted = http.get(
        "/v1/operations",
        params={"count": "true", "filter": "done = false"},
        headers=bearer("billing"),
    ).json()
    assert counted["totalSize"] == sum(1 for n in listed("billing", filter="done = false"))
    # A filter that tries to close the scope's parenthesis is not a filter.
    escape = 'done = false) OR (name = "projects/search/*"'
    tricked = http.get("/v1/operations", params={"filter": escape}, headers=bearer("billing"))
    assert tricked.status_code == 400
    dry = http.post(
        "/v1/operations:batchCancel",
        json={"filter": 'operation_type = "search"', "dryRun": True},
        headers=bearer("billing"),
    )
    assert dry.status_code == 200 and dry.json()["matched"] == 0
    own = http.post(
        "/v1/operations:batchCancel",
        json={"filter": 'operation_type = "billing"', "dryRun": True},
        headers=bearer("billing"),
    )
    assert own.json()["matched"] >= 1


def test_events_and_creates_outside_the_scope_are_refused_whole(
    http: httpx.Client, ops: dict[str, str]
) -> None:
    inside = make_event(Kind.PROGRESS, ops["billing"], data={"percent": 10.0})
    outside = make_event(Kind.PROGRESS, ops["search"], data={"percent": 99.0})
    headers, body = to_binary(outside)
    out_of_scope(http.post("/v1/events", content=body, headers={**headers, **bearer("billing")}))
    batch_headers, batch = to_batch([inside, outside])
    refused = http.post("/v1/events", content=batch, headers={**batch_headers, **bearer("billing")})
    out_of_scope(refused)
    for name in (ops["billing"], ops["search"]):  # nothing of the batch applied
        meta = http.get(f"/v1/{name}", headers=bearer("admin")).json()["metadata"]
        assert meta.get("percent", 0) == 0
    headers, body = to_binary(inside)
    assert (
        http.post("/v1/events", content=body, headers={**headers, **bearer("billing")}).status_code
        == 200
    )
    out_of_scope(
        http.post("/v1/projects/search/locations/us/operations", json={}, headers=bearer("billing"))
    )
    out_of_scope(http.post("/v1/operations", json={"operationId": "x"}, headers=bearer("billing")))
    made = http.post(
        "/v1/operations",
        json={"operationId": f"search-{uuid.uuid4().hex[:6]}"},
        headers=bearer("search"),
    )
    assert made.status_code == 200  # its second prefix, from the policy file


def test_a_push_outside_the_scope_is_dead_lettered_and_acked(
    http: httpx.Client, ops: dict[str, str]
) -> None:
    headers, body = to_binary(make_event(Kind.PROGRESS, ops["search"], data={"percent": 5.0}))
    envelope = {
        "message": {
            "attributes": headers,
            "data": base64.b64encode(body).decode(),
            "messageId": uuid.uuid4().hex,
        },
        "subscription": "projects/p/subscriptions/push",
    }
    answer = http.post("/v1/pubsub/push", json=envelope, headers=bearer("billing"))
    assert answer.status_code < 300, answer.text  # acked: a redelivery would fail the same way
    letters = http.get(
        "/v1/deadLetters", params={"filter": 'reason = "out_of_scope"'}, headers=bearer("admin")
    ).json()
    assert any(
        ops["search"] in (d.get("bodyText", "") + json.dumps(d.get("attributes", {})))
        for d in letters["deadLetters"]
    )
    meta = http.get(f"/v1/{ops['search']}", headers=bearer("admin")).json()["metadata"]
    assert meta.get("percent", 0) == 0


def test_dead_letters_need_an_unscoped_grant(http: httpx.Client) -> None:
    out_of_scope(http.get("/v1/deadLetters", headers=bearer("billing")))
    assert http.get("/v1/deadLetters", headers=bearer("admin")).status_code == 200


def test_the_stream_carries_the_callers_operations_only(
    server: Server, http: httpx.Client, ops: dict[str, str]
) -> None:
    seen: list[str] = []
    ready = threading.Event()

    def follow() -> None:
        with httpx.stream(
            "GET",
            f"{server.http_url}/v1/operations:stream",
            params={"timeout": "4s"},
            headers=bearer("billing"),
            timeout=30,
        ) as stream:
            kind = ""
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                    if kind == "ready":
                        ready.set()
                elif line.startswith("data:") and kind == "operation":
                    seen.append(json.loads(line[5:])["name"])

    thread = threading.Thread(target=follow)
    thread.start()
    assert ready.wait(10)
    for who in ("search", "billing"):
        headers, body = to_binary(make_event(Kind.PROGRESS, ops[who], data={"percent": 50.0}))
        http.post("/v1/events", content=body, headers={**headers, **bearer(who)}).raise_for_status()
    thread.join(30)
    assert seen == [ops["billing"]]


def test_grpc_is_scoped_the_same_way(server: Server, ops: dict[str, str]) -> None:
    metadata = (("authorization", f"Bearer {TOKENS['billing']}"),)
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = operations_pb2_grpc.OperationsStub(channel)
        assert (
            stub.GetOperation(
                operations_pb2.GetOperationRequest(name=ops["billing"]),
                metadata=metadata,
                timeout=10,
            ).name
            == ops["billing"]
        )
        for call, request in (
            (stub.GetOperation, operations_pb2.GetOperationRequest(name=ops["search"])),
            (stub.WaitOperation, operations_pb2.WaitOperationRequest(name=ops["search"])),
            (stub.CancelOperation, operations_pb2.CancelOperationRequest(name=ops["search"])),
            (stub.DeleteOperation, operations_pb2.DeleteOperationRequest(name=ops["search"])),
        ):
            with pytest.raises(grpc.RpcError) as info:
                call(request, metadata=metadata, timeout=10)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "may touch only" in (info.value.details() or "")
        listed = stub.ListOperations(
            operations_pb2.ListOperationsRequest(name="", page_size=1000),
            metadata=metadata,
            timeout=10,
        )
        names = [o.name for o in listed.operations]
        assert ops["billing"] in names and all(n.startswith(BILLING) for n in names)
        create: Any = channel.unary_unary(
            "/tracker.v1.Operations/CreateOperation",
            response_deserializer=operations_pb2.Operation.FromString,
        )
        with pytest.raises(grpc.RpcError) as info:
            create(
                create_pb2.CreateOperationRequest(parent="projects/search").SerializeToString(),
                metadata=metadata,
                timeout=10,
            )
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        letters: Any = channel.unary_unary(
            "/tracker.v1.DeadLetters/ListDeadLetters", response_deserializer=lambda b: b
        )
        with pytest.raises(grpc.RpcError) as info:
            letters(b"", metadata=metadata, timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    "scope",
    ["token:x=", "token:x=projects/*", 'token:x=a"b', "nobody=projects/a/", "projects/a/"],
)
def test_a_bad_scope_is_a_config_error(scope: str, tmp_path: Path) -> None:
    tokens = tmp_path / "t.toml"
    tokens.write_text(f'x = "{token_digest("x" * 40)}"\n')
    with pytest.raises(ConfigError):
        build_guard(Config(auth_tokens_file=str(tokens), grant_scope=(scope,)).validate())


# ---- tables per tenant, side by side in one database -----------------------------------


def _tenant_servers(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> list[Config]:
    if backend == "sqlite":
        db = str(tmp_path / "shared.db")
        for prefix in ("billing_", "search_"):
            result = invoke(["schema", "apply", "--db", db, "--table-prefix", prefix])
            assert result.exit_code == 0 and f"tables {prefix}*" in result.output, result.output
        return [
            Config(db=db, table_prefix=p, http_port=0, grpc_port=-1)
            for p in ("billing_", "search_")
        ]
    hosts = request.getfixturevalue("spanner_hosts")
    path = session_database(backend, hosts, monkeypatch)
    suffix = uuid.uuid4().hex[:6]
    prefixes = (f"billing{suffix}_", f"search{suffix}_")
    variant = "emulator" if backend == "spanner-handy" else "canonical"
    for prefix in prefixes:
        result = invoke(
            [
                "schema",
                "apply",
                "--store",
                "spanner",
                "--spanner-database",
                path,
                "--table-prefix",
                prefix,
                "--variant",
                variant,
            ]
        )
        assert result.exit_code == 0 and f"tables {prefix}*" in result.output, result.output
    return [
        Config(
            store="spanner",
            spanner_database=path,
            table_prefix=p,
            spanner_explicit_begin=backend == "spanner-handy",
            http_port=0,
            grpc_port=-1,
        )
        for p in prefixes
    ]


@pytest.mark.parametrize("backend", ["sqlite", "spanner-handy", "spanner-google"])
def test_two_tenants_side_by_side_in_one_database(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    billing, search = _tenant_servers(tmp_path, backend, request, monkeypatch)
    with (
        running(billing) as b,
        running(search) as s,
        TrackerClient(b.http_url) as bc,
        TrackerClient(s.http_url) as sc,
    ):
        # The same name in both: two operations, one per tenant.
        bc.create("operations/shared", operation_type="billing")
        sc.create("operations/shared", operation_type="search")
        bc.succeeded("operations/shared", {"rows": 1})
        sc.progress("operations/only-search", 10, "working")
        assert bc.get("operations/shared").done and not sc.get("operations/shared").done
        assert [o.name for o in bc.list()] == ["operations/shared"]
        assert sorted(o.name for o in sc.list()) == ["operations/only-search", "operations/shared"]
        assert bc.count() == 1 and sc.count() == 2
        bc.delete("operations/shared")
        assert sc.get("operations/shared").name == "operations/shared"
        assert (
            next(e.type for e in sc.history("operations/shared")) == "tracker.operation.v1.created"
        )
    # A tenant whose tables were never made is told so (Spanner), or makes them (SQLite).
    if backend != "sqlite":
        other = Config(**{**billing.__dict__, "table_prefix": "never" + uuid.uuid4().hex[:6] + "_"})
        with pytest.raises(Exception) as info, running(other):
            time.sleep(0)
        assert f"schema apply --store spanner --spanner-database {billing.spanner_database}" in (
            str(info.value)
        )
        assert f"--table-prefix {other.table_prefix}" in str(info.value)
