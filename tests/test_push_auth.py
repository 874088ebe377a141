"""Push OIDC verification with locally signed tokens and a local certificate endpoint.

The tracker fetches certificates from `--push-certs-url` exactly as it fetches Google's
in production; here that URL is a loopback server publishing a test key.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from tests.helpers import make_event
from tests.test_ingest import envelope
from tracker.config import Config
from tracker.events import Kind, to_binary
from tracker.server import Server, running

AUDIENCE = "https://tracker.example.run.app/v1/pubsub/push"
ACCOUNT = "push@proj.iam.gserviceaccount.com"


def _key_and_cert() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


KEY, CERT = _key_and_cert()
OTHER_KEY, _ = _key_and_cert()


class Certs:
    """A loopback endpoint publishing {kid: certificate}, counting fetches."""

    def __init__(self, certs: dict[str, str]) -> None:
        self.certs = certs
        self.fetches = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps(outer.certs).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("cache-control", "public, max-age=3600")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/certs"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def token(key: str = KEY, kid: str = "k1", **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "email": ACCOUNT,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
        "sub": "1",
    }
    claims.update(overrides)
    signer = crypt.RSASigner.from_string(key, key_id=kid)
    return jwt.encode(signer, claims).decode()


@pytest.fixture(scope="module")
def certs() -> Iterator[Certs]:
    c = Certs({"k1": CERT})
    yield c
    c.httpd.shutdown()
    c.httpd.server_close()


@pytest.fixture
def server(certs: Certs) -> Iterator[Server]:
    config = Config(
        db=":memory:",
        http_port=0,
        grpc_port=-1,
        push_audience=AUDIENCE,
        push_service_account=ACCOUNT,
        push_certs_url=certs.url,
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
        (f"Bearer {token(email_verified=False)}", 403),
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
        push_certs_url="http://127.0.0.1:9/certs",
    )
    with running(config) as s:
        assert push(s, f"Bearer {token()}").status_code == 503
