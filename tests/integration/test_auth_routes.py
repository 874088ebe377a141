"""Every HTTP route and gRPC method x every kind of credentials, against a real server.

The server accepts Google-style ID tokens (signed by a test key, published by a loopback
certificate server) and grants each permission to a different service account. For each
route and method: no credentials, garbage, an expired token, a wrong audience, a wrong
issuer, an unverified email and a valid token without the permission are refused (401 or
403, UNAUTHENTICATED or PERMISSION_DENIED) and change nothing; a valid token with the
permission gets through.
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import duration_pb2

from tests.helpers import ROOT, google_error, make_event
from tests.tokens import AUDIENCE, Certs, expired, id_token
from tracker.bindings import to_binary
from tracker.config import Config
from tracker.errors import ConfigError
from tracker.events import Kind
from tracker.server import Server, running
from tracker.stores.base import DeadLetter
from tracker.stores.sqlite import SqliteStore
from tracker.v1 import admin_pb2

PUSH_AUDIENCE = "https://tracker.example.run.app/v1/pubsub/push"
SA = {
    "events.publish": "publisher@p.iam.gserviceaccount.com",
    "pubsub.push": "pusher@p.iam.gserviceaccount.com",
    "operations.read": "reader@p.iam.gserviceaccount.com",
    "operations.write": "writer@p.iam.gserviceaccount.com",
}
OP = "operations/guarded"
DL = "dead-letter-id"  # replaced by a fresh dead letter's id


@pytest.fixture(scope="module")
def server(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db = tmp_path_factory.mktemp("auth") / "t.db"
    config = Config(
        db=str(db),
        http_port=0,
        grpc_port=0,
        auth_audience=(AUDIENCE,),
        push_audience=PUSH_AUDIENCE,
        push_service_account=SA["pubsub.push"],
        grant=tuple(f"{p}=serviceAccount:{email}" for p, email in SA.items() if p != "pubsub.push"),
        auth_certs_url=certs.url,
    )
    with running(config) as s:
        yield s


_seeded = itertools.count()


def seed(server: Server) -> str:
    """A fresh operation with a checkpoint for the routes to find (one per test: the
    delete tests leave tombstones behind)."""
    name = f"{OP}-{next(_seeded)}"
    server.store.apply([make_event(Kind.CHECKPOINT, name, data={"data": b"cp"})])
    return name


def snapshot(server: Server) -> tuple[int, ...]:
    store = server.store
    assert isinstance(store, SqliteStore)
    return tuple(store.count(t) for t in ("operations", "applied_events", "outbox", "dead_letters"))


def token_for(permission: str, audience: str = AUDIENCE) -> str:
    return id_token(audience=audience, email=SA[permission])


# Credentials that must be refused whatever the route: (label, header value or None, status).
def refused(permission: str, audience: str = AUDIENCE) -> list[tuple[str, str | None, int]]:
    email = SA[permission]
    lacking = next(p for p in SA if p != permission)
    return [
        ("none", None, 401),
        ("garbage", "Bearer garbage", 401),
        ("not-bearer", "Basic dXNlcjpwYXNz", 401),
        ("expired", f"Bearer {expired(audience=audience, email=email)}", 401),
        ("audience", f"Bearer {id_token(audience='https://elsewhere', email=email)}", 401),
        ("issuer", f"Bearer {id_token(audience=audience, email=email, iss='https://evil')}", 401),
        (
            "unverified",
            f"Bearer {id_token(audience=audience, email=email, email_verified=False)}",
            401,
        ),
        ("lacking", f"Bearer {token_for(lacking, audience)}", 403),
    ]


@dataclass(frozen=True)
class HttpRoute:
    method: str
    path: str
    permission: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    def call(
        self, server: Server, authorization: str | None, op: str = OP, dl: str = DL
    ) -> httpx.Response:
        headers = dict(self.headers)
        if authorization is not None:
            headers["authorization"] = authorization
        return httpx.request(
            self.method,
            server.http_url + self.path.replace(OP, op).replace(DL, dl),
            content=self.body,
            headers=headers,
            timeout=10,
        )


def _event_request() -> tuple[tuple[tuple[str, str], ...], bytes]:
    headers, body = to_binary(make_event(Kind.PROGRESS, "operations/published"))
    return tuple(headers.items()), body


def _push_request() -> tuple[tuple[tuple[str, str], ...], bytes]:
    headers, body = to_binary(make_event(Kind.PROGRESS, "operations/pushed"))
    envelope = {
        "message": {
            "attributes": headers,
            "data": base64.b64encode(body).decode(),
            "messageId": "m-1",
        },
        "subscription": "projects/p/subscriptions/s",
    }
    return (("content-type", "application/json"),), json.dumps(envelope).encode()


EVENT_HEADERS, EVENT_BODY = _event_request()
PUSH_HEADERS, PUSH_BODY = _push_request()
HTTP_ROUTES = [
    HttpRoute("POST", "/v1/events", "events.publish", EVENT_BODY, EVENT_HEADERS),
    HttpRoute("POST", "/v1/pubsub/push", "pubsub.push", PUSH_BODY, PUSH_HEADERS),
    HttpRoute("GET", "/v1/operations", "operations.read"),
    HttpRoute("GET", f"/v1/{OP}", "operations.read"),
    HttpRoute("POST", f"/v1/{OP}:wait", "operations.read", b'{"timeout": "0s"}'),
    HttpRoute("GET", f"/v1/{OP}:watch?timeout=0s", "operations.read"),
    HttpRoute("GET", f"/v1/{OP}:checkpoint", "operations.read"),
    HttpRoute("GET", "/v1/operations:stream?timeout=0s", "operations.read"),
    HttpRoute("GET", f"/v1/{OP}/events", "operations.read"),
    HttpRoute("GET", "/metrics", "operations.read"),
    HttpRoute("POST", f"/v1/{OP}:cancel", "operations.write", b"{}"),
    HttpRoute("DELETE", f"/v1/{OP}", "operations.write"),
    HttpRoute("GET", "/v1/deadLetters", "operations.read"),
    HttpRoute("GET", f"/v1/deadLetters/{DL}", "operations.read"),
    HttpRoute("DELETE", f"/v1/deadLetters/{DL}", "operations.write"),
    HttpRoute("POST", f"/v1/deadLetters/{DL}:replay", "operations.write", b"{}"),
    HttpRoute("POST", "/v1/deadLetters:replay", "operations.write", b'{"limit": 1}'),
    HttpRoute("POST", "/v1/deadLetters:purge", "operations.write", b'{"filter": "reason = x"}'),
    HttpRoute("POST", "/v1/deadLetters:replayMessages", "operations.write", b'{"dryRun": true}'),
]


def seed_letter(server: Server, op: str) -> str:
    """A dead letter that applies when replayed (a progress event for `op`)."""
    headers, body = to_binary(make_event(Kind.PROGRESS, op))
    letter = DeadLetter(
        id=uuid.uuid4().hex,
        received_at=datetime.now(UTC),
        route="push",
        reason="unknown_operation",
        detail="seeded",
        attributes=headers,
        body=body,
    )
    server.store.add_dead_letter(letter)
    return letter.id


def _audience(route: HttpRoute) -> str:
    return PUSH_AUDIENCE if route.permission == "pubsub.push" else AUDIENCE


@pytest.mark.parametrize("route", HTTP_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_http_route_refuses_every_bad_credential_and_admits_the_right_one(
    server: Server, route: HttpRoute
) -> None:
    op = seed(server)
    dl = seed_letter(server, op)
    for label, authorization, expected in refused(route.permission, _audience(route)):
        before = snapshot(server)
        response = route.call(server, authorization, op, dl)
        assert response.status_code == expected, (label, response.text)
        name, reason, metadata = google_error(response)
        assert name == ("UNAUTHENTICATED" if expected == 401 else "PERMISSION_DENIED"), label
        assert reason and snapshot(server) == before, label
        if label in ("none", "lacking"):
            assert metadata == {"permission": route.permission}, label
    good = route.call(server, f"Bearer {token_for(route.permission, _audience(route))}", op, dl)
    assert good.status_code < 300, good.text


def test_health_needs_no_credentials(server: Server) -> None:
    assert httpx.get(server.http_url + "/healthz").status_code == 200


@pytest.mark.parametrize("path", ["/console/", "/console/app.js", "/console/console.css"])
def test_the_console_shell_needs_no_credentials_and_holds_no_data(
    server: Server, path: str
) -> None:
    """A browser cannot send a bearer token on navigation: the shell is open, and every
    operation it shows comes from the routes above, with their permissions."""
    op = seed(server)
    response = httpx.get(server.http_url + path)
    assert response.status_code == 200
    assert op not in response.text and OP not in response.text


GRPC_METHODS = [
    ("GetOperation", operations_pb2.GetOperationRequest(name=OP), "operations.read"),
    ("ListOperations", operations_pb2.ListOperationsRequest(name="operations"), "operations.read"),
    (
        "WaitOperation",
        operations_pb2.WaitOperationRequest(name=OP, timeout=duration_pb2.Duration(nanos=1)),
        "operations.read",
    ),
    ("CancelOperation", operations_pb2.CancelOperationRequest(name=OP), "operations.write"),
    ("DeleteOperation", operations_pb2.DeleteOperationRequest(name=OP), "operations.write"),
]


@pytest.mark.parametrize(("method", "request_", "permission"), GRPC_METHODS, ids=lambda x: x)
def test_grpc_method_refuses_every_bad_credential_and_admits_the_right_one(
    server: Server, method: str, request_: object, permission: str
) -> None:
    op = seed(server)
    request = type(request_)()
    request.CopyFrom(request_)  # type: ignore[attr-defined]
    if request.name == OP:  # type: ignore[attr-defined]
        request.name = op  # type: ignore[attr-defined]
    with grpc.insecure_channel(server.grpc_target) as channel:
        call = getattr(operations_pb2_grpc.OperationsStub(channel), method)
        for label, authorization, expected in refused(permission):
            before = snapshot(server)
            metadata = [] if authorization is None else [("authorization", authorization)]
            with pytest.raises(grpc.RpcError) as info:
                call(request, metadata=metadata, timeout=10)
            code = info.value.code()
            want = {401: grpc.StatusCode.UNAUTHENTICATED, 403: grpc.StatusCode.PERMISSION_DENIED}
            assert code == want[expected], (label, info.value)
            assert snapshot(server) == before, label
        call(request, metadata=[("authorization", f"Bearer {token_for(permission)}")], timeout=10)


DEAD_LETTER_RPCS = [
    ("ListDeadLetters", admin_pb2.ListDeadLettersRequest(), "operations.read"),
    ("GetDeadLetter", admin_pb2.GetDeadLetterRequest(name=DL), "operations.read"),
    ("DeleteDeadLetter", admin_pb2.DeleteDeadLetterRequest(name=DL), "operations.write"),
    ("ReplayDeadLetter", admin_pb2.ReplayDeadLetterRequest(name=DL), "operations.write"),
    ("ReplayDeadLetters", admin_pb2.ReplayDeadLettersRequest(limit=1), "operations.write"),
    (
        "PurgeDeadLetters",
        admin_pb2.PurgeDeadLettersRequest(filter="reason = x"),
        "operations.write",
    ),
    ("ReplayMessages", admin_pb2.ReplayMessagesRequest(dry_run=True), "operations.write"),
]


@pytest.mark.parametrize(("method", "request_", "permission"), DEAD_LETTER_RPCS, ids=lambda x: x)
def test_dead_letter_rpc_refuses_every_bad_credential_and_admits_the_right_one(
    server: Server, method: str, request_: Any, permission: str
) -> None:
    request = type(request_)()
    request.CopyFrom(request_)
    if getattr(request, "name", "") == DL:
        request.name = f"deadLetters/{seed_letter(server, seed(server))}"
    with grpc.insecure_channel(server.grpc_target) as channel:
        call: Any = channel.unary_unary(
            f"/tracker.v1.DeadLetters/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=lambda b: b,
        )
        for label, authorization, expected in refused(permission):
            before = snapshot(server)
            metadata = [] if authorization is None else [("authorization", authorization)]
            with pytest.raises(grpc.RpcError) as info:
                call(request, metadata=metadata, timeout=10)
            want = {401: grpc.StatusCode.UNAUTHENTICATED, 403: grpc.StatusCode.PERMISSION_DENIED}
            assert info.value.code() == want[expected], (label, info.value)
            assert snapshot(server) == before, label
        call(request, metadata=[("authorization", f"Bearer {token_for(permission)}")], timeout=10)


def test_grpc_health_and_reflection_need_no_credentials(server: Server) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(server.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)  # type: ignore[attr-defined]  # stubs lack the method
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_many_junk_key_ids_while_valid_pushes_keep_succeeding(server: Server, certs: Certs) -> None:
    good = f"Bearer {token_for('pubsub.push', PUSH_AUDIENCE)}"
    route = HTTP_ROUTES[1]
    assert route.call(server, good).status_code < 300
    before = certs.fetches
    junk = [
        f"Bearer {id_token(audience=PUSH_AUDIENCE, email=SA['pubsub.push'], kid=f'junk-{i}')}"
        for i in range(30)
    ]
    for bad in junk:
        assert route.call(server, bad).status_code == 401
        assert route.call(server, good).status_code < 300
    assert certs.fetches - before <= 1  # at most one refetch per interval (60 s here)


# ---- start-up refusals -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "flag"),
    [
        ({"http_host": "0.0.0.0"}, "--allow-unauthenticated"),
        ({"grpc_host": "::"}, "--allow-unauthenticated"),
        ({"http_host": "192.168.1.20"}, "--http-host 192.168.1.20"),
        ({"push_audience": PUSH_AUDIENCE}, "--push-service-account"),
        ({"push_service_account": "a@p.iam.gserviceaccount.com"}, "--push-audience"),
        ({"grant": ("operations.read=allUsers",)}, "--auth-audience"),
        ({"allow_unauthenticated": True, "auth_audience": (AUDIENCE,)}, "cannot be combined"),
    ],
)
def test_unsafe_settings_refuse_to_start(settings: dict[str, object], flag: str) -> None:
    with pytest.raises(ConfigError, match=flag.replace("-", r"\-")):
        Config(db=":memory:", **settings).validate()  # type: ignore[arg-type]


def test_loopback_without_auth_and_allow_unauthenticated_start() -> None:
    Config(db=":memory:", http_host="127.0.0.1", grpc_host="::1").validate()
    Config(db=":memory:", http_host="localhost").validate()
    Config(db=":memory:", http_host="0.0.0.0", allow_unauthenticated=True).validate()
    Config(db=":memory:", http_host="0.0.0.0", grpc_port=-1, auth_audience=(AUDIENCE,)).validate()


def test_serve_refuses_a_public_address_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracker.cli",
            "serve",
            "--db",
            str(tmp_path / "t.db"),
            "--http-host",
            "0.0.0.0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--allow-unauthenticated" in lines[0], result.stderr
