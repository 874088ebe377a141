"""Test identities: a signing key, a loopback certificate endpoint, ID tokens minted here.

The tracker fetches certificates from its configured URL exactly as it fetches Google's
in production; in tests that URL is a loopback server publishing these test keys.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

AUDIENCE = "https://tracker.example.run.app"
ACCOUNT = "push@proj.iam.gserviceaccount.com"


def key_and_cert() -> tuple[str, str]:
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


KEY, CERT = key_and_cert()
OTHER_KEY, _ = key_and_cert()


class Certs:
    """A loopback endpoint publishing {kid: certificate}, counting fetches.

    `gate`, when set, holds every fetch until it is released (a slow endpoint)."""

    def __init__(self, certs: dict[str, str], max_age: int = 3600) -> None:
        self.certs = certs
        self.max_age = max_age
        self.fetches = 0
        self.gate: threading.Event | None = None
        self.arrived = threading.Event()  # set by every fetch as it reaches the endpoint
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                outer.arrived.set()
                if outer.gate is not None:
                    outer.gate.wait(30)
                body = json.dumps(outer.certs).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("cache-control", f"public, max-age={outer.max_age}")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/certs"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def id_token(key: str = KEY, kid: str = "k1", audience: str = AUDIENCE, **overrides: Any) -> str:
    """A Google-style ID token signed with a test key; claims can be overridden."""
    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com",
        "aud": audience,
        "email": ACCOUNT,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
        "sub": "1",
    }
    claims.update(overrides)
    signer = crypt.RSASigner.from_string(key, key_id=kid)
    return jwt.encode(signer, claims).decode()


def expired(**overrides: Any) -> str:
    now = int(time.time())
    return id_token(exp=now - 3600, iat=now - 7200, **overrides)
