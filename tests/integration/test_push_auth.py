"""Push OIDC verification with locally signed tokens and a local certificate endpoint.

The tracker fetches certificates from `--auth-certs-url` exactly as it fetches Google's
in production; here that URL is a loopback server publishing a test key.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import envelope, make_event
from tests.tokens import ACCOUNT, AUDIENCE, CERT, KEY, OTHER_KEY, Certs, id_token
from tracker.bindings import to_binary
from tracker.config import Config
from tracker.events import Kind
from tracker.server import Server, running


def token(key: str = KEY, kid: str = "k1", **overrides: Any) -> str:
    return id_token(key, kid, **overrides)


@pytest.fixture
def server(certs: Certs) -> Iterator[Server]:
    config = Config(
        db=":memory:",
        http_port=0,
        grpc_port=-1,
        push_audience=AUDIENCE,
        push_service_account=ACCOUNT,
        auth_certs_url=certs.url,
        auth_certs_refetch_seconds=0,  # the rotation test needs a refetch at once
    )
    with running(config) as s:
        yield s


def push(server: Server, auth: str | None) -> httpx.Response:
    headers, body = to_binary(make_event(Kind.SUCCEEDED, "operations/auth"))
    extra = {"authorization": auth} if auth is not None else {}
    return httpx.post(
        f"{server.http_url}/v1/pubsub/push", json=envelope(headers, body), headers=extra
    )


def test_valid_token_is_accepted(server: Server) -> None:
    assert push(server, f"Bearer {token()}").status_code == 204
    assert server.store.get("operations/auth") is not None


@pytest.mark.parametrize(
    ("auth", "status"),
    [
        (None, 401),
        ("Basic abc", 401),
        ("Bearer not.a.jwt", 401),
        (f"Bearer {token(aud='https://elsewhere')}", 401),
        (f"Bearer {token(iss='https://evil.example')}", 401),
        (f"Bearer {token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)}", 401),
        (f"Bearer {token(key=OTHER_KEY)}", 401),  # right kid, wrong signature
        (f"Bearer {token(kid='unknown')}", 401),
        (f"Bearer {token(email='other@proj.iam.gserviceaccount.com')}", 403),
        (f"Bearer {token(email_verified=False)}", 401),
    ],
    ids=[
        "missing",
        "not-bearer",
        "malformed",
        "audience",
        "issuer",
        "expired",
        "signature",
        "unknown-kid",
        "other-account",
        "unverified-email",
    ],
)
def test_bad_tokens_are_refused_and_nothing_applies(
    server: Server, auth: str | None, status: int
) -> None:
    response = push(server, auth)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]
    assert server.store.get("operations/auth") is None


def test_certificates_are_cached_and_refetched_for_a_new_key(server: Server, certs: Certs) -> None:
    push(server, f"Bearer {token()}")
    before = certs.fetches
    assert push(server, f"Bearer {token()}").status_code == 204
    assert certs.fetches == before  # cached
    certs.certs["k2"] = CERT  # a rotated key appears
    assert push(server, f"Bearer {token(kid='k2')}").status_code == 204
    assert certs.fetches == before + 1


def test_unreachable_certificates_are_a_retry_not_an_ack() -> None:
    config = Config(
        db=":memory:",
        http_port=0,
        grpc_port=-1,
        push_audience=AUDIENCE,
        push_service_account=ACCOUNT,
        auth_certs_url="http://127.0.0.1:9/certs",
    )
    with running(config) as s:
        assert push(s, f"Bearer {token()}").status_code == 503
