"""docs/auth.md against a running tracker: every route's and RPC's permission, over HTTP
and gRPC, the safe defaults, and the worked examples' files.

The permission table is read from the document, so a row that stops being true, a
route or RPC the table leaves out, or a table row the code does not have, fails here.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.doc_blocks import doc_block
from tests.helpers import ROOT, make_event
from tracker.api.guard import OPEN_SERVICES, RPC_PERMISSIONS
from tracker.api.http import PERMISSIONS as RESOURCE_PERMISSIONS
from tracker.auth import Permission, Policy, StaticTokens, token_digest
from tracker.bindings import to_binary
from tracker.config import Config
from tracker.errors import ConfigError
from tracker.events import Kind
from tracker.server import Server, running
from tracker.stores.base import DeadLetter

DOC = ROOT / "docs" / "auth.md"
TEXT = DOC.read_text()
OPEN = "none"


def section(title: str) -> str:
    return TEXT.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def table() -> dict[str, str]:
    """route or method -> permission ("none" for open ones), from the Permissions table."""
    rows = re.findall(r"^\| (.+?) \| `?([a-z.]+)`? \|$", section("Permissions"), re.M)[1:]
    out = dict(rows)
    assert len(out) == len(rows), "a route listed twice"
    return out


HTTP_ROWS = {k: v for k, v in table().items() if not k.startswith("gRPC")}
GRPC_ROWS = {
    k.removeprefix("gRPC ").strip("`"): v for k, v in table().items() if k.startswith("gRPC")
}


DEAD_LETTER_ROUTES = {
    "`GET /v1/deadLetters`": "operations.read",
    "`GET /v1/deadLetters/{id}`": "operations.read",
    "`DELETE /v1/deadLetters/{id}`": "operations.write",
    "`POST /v1/deadLetters/{id}:replay`": "operations.write",
    "`POST /v1/deadLetters:replay`": "operations.write",
    "`POST /v1/deadLetters:purge`": "operations.write",
    "`POST /v1/deadLetters:replayMessages`": "operations.write",
}


def test_the_table_lists_every_route_and_rpc_the_code_guards() -> None:
    resource = {
        f"`{method} /v1/operations/{{name}}{':' + verb if verb else ''}`": permission.value
        for (verb, method), permission in RESOURCE_PERMISSIONS.items()
    }
    expected = {
        "`POST /v1/events`": "events.publish",
        "`POST /v1/operations`": "events.publish",
        "`POST /v1/pubsub/push`": "pubsub.push",
        "`GET /v1/operations`": "operations.read",
        "`GET /metrics`": "operations.read",
        "`GET /v1/operations:stream`": "operations.read",
        "`GET /healthz`": OPEN,
        "`GET /console/`": OPEN,
        **resource,
        **DEAD_LETTER_ROUTES,
    }
    assert expected == HTTP_ROWS
    rpcs = {path.rsplit("/", 1)[1]: p.value for path, p in RPC_PERMISSIONS.items()}
    assert {k: v for k, v in GRPC_ROWS.items() if v != OPEN} == rpcs
    assert {k for k, v in GRPC_ROWS.items() if v != OPEN} == set(rpcs)
    assert {k for k, v in GRPC_ROWS.items() if v == OPEN} == {
        "grpc.health.v1.Health",
        "server reflection",
    } and OPEN_SERVICES == ("/grpc.health.v1.Health/", "/grpc.reflection.")
    assert set(HTTP_ROWS.values()) | set(GRPC_ROWS.values()) == {p.value for p in Permission} | {
        OPEN
    }


# ---- a tracker with one static token per permission, and one holding all but it ------


def _token(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex}{uuid.uuid4().hex}"


ONLY = {p: _token(f"only-{p.value}") for p in Permission}
ALL_BUT = {p: _token(f"but-{p.value}") for p in Permission}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("auth")
    tokens = folder / "tokens.toml"
    lines = [f'"only-{p.value}" = "{token_digest(t)}"' for p, t in ONLY.items()]
    lines += [f'"but-{p.value}" = "{token_digest(t)}"' for p, t in ALL_BUT.items()]
    tokens.write_text("\n".join(lines) + "\n")
    grants = [f"{p.value}=token:only-{p.value}" for p in Permission]
    grants += [f"{o.value}=token:but-{p.value}" for p in Permission for o in Permission if o != p]
    config = Config(
        db=":memory:",
        http_port=0,
        grpc_port=0,
        auth_tokens_file=str(tokens),
        grant=tuple(grants),
    )
    with running(config) as s:
        yield s


def _publish(server: Server, name: str, kind: Kind = Kind.SUCCEEDED) -> None:
    headers, body = to_binary(make_event(kind, name))
    headers["authorization"] = f"Bearer {ONLY[Permission.EVENTS_PUBLISH]}"
    answer = httpx.post(f"{server.http_url}/v1/events", headers=headers, content=body)
    assert answer.status_code == 200, answer.text


def _http(server: Server, row: str, token: str | None) -> httpx.Response:
    method, path = row.strip("`").split(" ", 1)
    name = f"operations/auth-docs/{uuid.uuid4().hex[:12]}"
    _publish(server, name)  # done, so :wait and :watch answer at once
    path = path.replace("{name}", name)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    kwargs: dict[str, object] = {}
    if path == "/v1/events":
        headers_, body = to_binary(make_event(Kind.PROGRESS, name))
        headers.update(headers_)
        kwargs["content"] = body
    elif path == "/v1/pubsub/push":
        headers_, body = to_binary(make_event(Kind.PROGRESS, name))
        kwargs["json"] = {
            "message": {
                "attributes": headers_,
                "data": base64.b64encode(body).decode(),
                "messageId": uuid.uuid4().hex,
            },
            "subscription": "projects/p/subscriptions/s",
        }
    elif method == "POST":
        kwargs["json"] = {}
    url = f"{server.http_url}{path}"
    with httpx.stream(method, url, headers=headers, **kwargs) as r:  # type: ignore[arg-type]
        if r.status_code in (401, 403):
            r.read()  # the error body; a granted :watch would stream on
        return r


def _refusal(response: httpx.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    (info,) = [d for d in error["details"] if d["@type"].endswith("ErrorInfo")]
    return error["code"], info["reason"], info.get("metadata", {}).get("permission", "")


@pytest.mark.parametrize("row", list(HTTP_ROWS))
def test_http_route_needs_the_permission_the_table_gives(server: Server, row: str) -> None:
    permission = HTTP_ROWS[row]
    if permission == OPEN:
        assert _http(server, row, None).status_code == 200
        return
    p = Permission(permission)
    refused = _http(server, row, None)
    assert _refusal(refused) == (401, "CREDENTIALS_MISSING", permission)
    denied = _http(server, row, ALL_BUT[p])
    assert _refusal(denied) == (403, "PERMISSION_MISSING", permission)
    assert f"token:but-{permission} lacks {permission}" in denied.json()["error"]["message"]
    assert _refusal(_http(server, row, "not-a-token"))[:2] == (401, "INVALID_TOKEN")
    allowed = _http(server, row, ONLY[p])
    assert allowed.status_code not in (401, 403), allowed.status_code
    assert allowed.status_code < 300 or allowed.status_code == 404  # :checkpoint: none saved


def _rpc(server: Server, method: str, token: str | None) -> grpc.StatusCode:
    name = f"operations/auth-docs/{uuid.uuid4().hex[:12]}"
    _publish(server, name)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = operations_pb2_grpc.OperationsStub(channel)
        requests = {
            "GetOperation": operations_pb2.GetOperationRequest(name=name),
            "ListOperations": operations_pb2.ListOperationsRequest(name="operations"),
            "WaitOperation": operations_pb2.WaitOperationRequest(name=name),
            "CancelOperation": operations_pb2.CancelOperationRequest(name=name),
            "DeleteOperation": operations_pb2.DeleteOperationRequest(name=name),
        }
        if method == "CreateOperation":  # tracker.v1.Operations
            return _create_rpc(channel, metadata)
        if method not in requests:  # tracker.v1.DeadLetters, on a dead letter of its own
            return _dead_letter_rpc(server, channel, method, metadata)
        try:
            getattr(stub, method)(requests[method], metadata=metadata, timeout=30)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def _create_rpc(channel: grpc.Channel, metadata: Any) -> grpc.StatusCode:
    from tracker.v1 import operations_pb2 as create_pb2

    call: Any = channel.unary_unary(
        "/tracker.v1.Operations/CreateOperation",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=lambda b: b,
    )
    try:
        call(create_pb2.CreateOperationRequest(), metadata=metadata, timeout=30)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _dead_letter_rpc(
    server: Server, channel: grpc.Channel, method: str, metadata: Any
) -> grpc.StatusCode:
    from tracker.v1 import admin_pb2

    letter = DeadLetter(
        id=uuid.uuid4().hex,
        received_at=datetime.now(UTC),
        route="push",
        reason="bad_data",
        detail="seeded",
        attributes={},
        body=b"",
    )
    server.store.add_dead_letter(letter)
    descriptor = admin_pb2.DESCRIPTOR.services_by_name["DeadLetters"].methods_by_name[method]
    request: Any = message_factory.GetMessageClass(descriptor.input_type)()
    if "name" in descriptor.input_type.fields_by_name:
        request.name = f"deadLetters/{letter.id}"
    if method == "ReplayDeadLetter":  # it fails again (400): apply what is pushed instead
        _publish(server, "operations/auth-docs/replayed")
        headers, body = to_binary(make_event(Kind.PROGRESS, "operations/auth-docs/replayed"))
        server.store.add_dead_letter(
            DeadLetter(
                **{**letter.__dict__, "id": letter.id + "r", "attributes": headers, "body": body}
            )
        )
        request.name = f"deadLetters/{letter.id}r"
    call: Any = channel.unary_unary(
        f"/tracker.v1.DeadLetters/{method}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=lambda b: b,
    )
    try:
        call(request, metadata=metadata, timeout=30)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("method", [m for m, p in GRPC_ROWS.items() if p != OPEN])
def test_rpc_needs_the_permission_the_table_gives(server: Server, method: str) -> None:
    p = Permission(GRPC_ROWS[method])
    assert _rpc(server, method, None) == grpc.StatusCode.UNAUTHENTICATED
    assert _rpc(server, method, ALL_BUT[p]) == grpc.StatusCode.PERMISSION_DENIED
    assert _rpc(server, method, ONLY[p]) == grpc.StatusCode.OK


def test_health_and_reflection_need_no_credentials(server: Server) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())  # type: ignore[attr-defined]  # stubs lack the method
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = list(reflection.ServerReflectionInfo(iter([request]), timeout=30))  # type: ignore[operator]  # stubs: Incomplete
        names = {s.name for s in answer.list_services_response.service}
        assert "google.longrunning.Operations" in names


# ---- safe defaults ---------------------------------------------------------------------


def test_without_authentication_only_loopback_is_served() -> None:
    shown = section("Safe defaults, and `--allow-unauthenticated`")
    (line,) = [x for x in shown.splitlines() if x.startswith("tracker: error:")]
    with pytest.raises(ConfigError) as refused:
        Config(http_host="0.0.0.0").validate()
    assert f"tracker: error: {refused.value}" == line  # the line the document shows
    with pytest.raises(ConfigError, match="--grpc-host ::"):
        Config(grpc_host="::").validate()
    Config(grpc_host="0.0.0.0", grpc_port=-1).validate()  # gRPC off: nothing exposed
    for host in ("127.0.0.1", "localhost", "::1"):
        Config(http_host=host, grpc_host=host).validate()
    Config(http_host="0.0.0.0", grpc_host="0.0.0.0", allow_unauthenticated=True).validate()
    Config(http_host="0.0.0.0", grpc_host="0.0.0.0", auth_audience=("aud",)).validate()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"allow_unauthenticated": True, "auth_audience": ("a",)}, "--allow-unauthenticated"),
        ({"allow_unauthenticated": True, "grant": ("operations.read=allUsers",)}, "cannot be"),
        ({"grant": ("operations.read=token:ci",)}, "nobody can prove"),
        ({"push_audience": "https://t.example"}, "--push-service-account"),
        ({"push_service_account": "push@p.iam.gserviceaccount.com"}, "--push-audience"),
    ],
)
def test_settings_that_contradict_stop_start_up(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(**settings).validate()  # type: ignore[arg-type]


# ---- the worked examples' files --------------------------------------------------------


def _blocks(lang: str, text: str = TEXT) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def test_the_tokens_file_and_policy_files_shown_are_what_the_tracker_reads(
    tmp_path: Path,
) -> None:
    tokens, policy, *_ = _blocks("toml")
    path = tmp_path / "tokens.toml"
    path.write_text(re.sub(r"^ +", "", tokens, flags=re.M))
    assert set(StaticTokens.from_file(path).digests) == {"ci", "dashboard"}
    path.write_text(policy)
    assert {p for p, _ in Policy.from_file(path)} == {
        Permission.EVENTS_PUBLISH,
        Permission.OPERATIONS_READ,
        Permission.OPERATIONS_WRITE,
    }


def test_the_static_token_example_runs(tmp_path: Path) -> None:
    """The VM example: tokens file (with real digests), policy file and command line."""
    vm = section("Worked examples").split("### A VM or a shared host", 1)[1]
    tokens_shown, policy_shown = _blocks("toml", vm)
    ci, dashboard = _token("ci"), _token("dashboard")
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        tokens_shown.replace("<digest of CI_TOKEN>", token_digest(ci)[7:]).replace(
            "<digest of the dashboard's token>", token_digest(dashboard)[7:]
        )
    )
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_shown)
    command = doc_block("docs/auth.md", "vm-serve")
    assert command in vm
    assert "--auth-tokens-file /etc/tracker/tokens.toml" in command
    assert "--auth-policy /etc/tracker/policy.toml" in command
    config = Config(
        db=":memory:",
        http_port=0,
        grpc_port=-1,
        auth_tokens_file=str(tokens),
        auth_policy=str(policy),
    )
    with running(config) as server:
        name = "operations/auth-docs/vm-1"
        headers, body = to_binary(make_event(Kind.PROGRESS, name))
        url = server.http_url

        def status(method: str, path: str, token: str | None, **kw: Any) -> int:
            sent = {"authorization": f"Bearer {token}"} if token else {}
            sent.update(kw.pop("headers", {}))
            return httpx.request(method, f"{url}{path}", headers=sent, **kw).status_code

        assert status("POST", "/v1/events", dashboard, headers=headers, content=body) == 403
        assert status("POST", "/v1/events", ci, headers=headers, content=body) == 200
        assert status("GET", f"/v1/{name}", dashboard) == 200
        assert status("POST", f"/v1/{name}:cancel", dashboard, json={}) == 403
        assert status("POST", f"/v1/{name}:cancel", ci, json={}) == 200
        assert status("GET", "/v1/operations", None) == 401


def test_hash_token_equivalent_is_the_sha256_of_the_token() -> None:
    """`printf %s "$TOKEN" | sha256sum` gives the digest the tokens file holds."""
    import hashlib

    token = _token("x")
    assert token_digest(token) == "sha256:" + hashlib.sha256(token.encode()).hexdigest()
    assert 'printf %s "$TOKEN" | sha256sum' in TEXT
