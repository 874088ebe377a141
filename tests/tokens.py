"""Test identities: a signing key, a loopback certificate endpoint, ID tokens minted here,
a loopback GCE metadata server minting them for clients, and a tracker that checks callers.

The tracker fetches certificates from its configured URL exactly as it fetches Google's
in production; in tests that URL is a loopback server publishing these test keys.
Clients get ID tokens from Application Default Credentials exactly as on Google Cloud;
in tests the metadata server they ask is `MetadataServer`.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from tracker.config import Config

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


class MetadataServer:
    """A loopback GCE metadata server, as google-auth talks to it for ID tokens.

    google-auth pings `http://$GCE_METADATA_IP/` and wants `Metadata-Flavor: Google`
    back; it then GETs `http://$GCE_METADATA_HOST/computeMetadata/v1/instance/
    service-accounts/default/identity?audience=A&format=full` with the same header and
    takes the body as the ID token (after reading the account's email from
    `.../service-accounts/default/?recursive=true`). This one mints it with the test key, valid for
    `lifetime` seconds; `identities` lists the audience of each mint, `on_gce=False`
    answers the ping as something that is not a metadata server.
    """

    IDENTITY = "/computeMetadata/v1/instance/service-accounts/default/identity"
    ACCOUNT_INFO = "/computeMetadata/v1/instance/service-accounts/default/"

    def __init__(self, lifetime: int = 3600, on_gce: bool = True) -> None:
        self.lifetime = lifetime
        self.on_gce = on_gce
        self.identities: list[str] = []
        # With `hold`, each mint waits for GET /test/release (GET /test/arrived returns
        # once a mint waits); `held` records whether the release came (True) or the wait
        # gave up (False).
        self.hold = False
        self.held: list[bool] = []
        self.arrived = threading.Event()
        self.released = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                flavored = self.headers.get("metadata-flavor") == "Google"
                if url.path == "/test/arrived":
                    self._answer(200 if outer.arrived.wait(30) else 504, b"")
                elif url.path == "/test/release":
                    outer.released.set()
                    self._answer(200, b"")
                elif url.path == "/" and flavored:
                    self._answer(200, b"", flavor=outer.on_gce)
                elif url.path == outer.ACCOUNT_INFO and flavored:
                    info = {"email": ACCOUNT, "aliases": ["default"], "scopes": []}
                    self._answer(200, json.dumps(info).encode(), "application/json")
                elif url.path == outer.IDENTITY and flavored and query.get("format") == ["full"]:
                    audience = query.get("audience", [""])[0]
                    outer.identities.append(audience)
                    if outer.hold:
                        outer.arrived.set()
                        outer.held.append(outer.released.wait(20))
                    now = int(time.time())
                    token = id_token(audience=audience, iat=now, exp=now + outer.lifetime)
                    self._answer(200, token.encode())
                else:
                    self._answer(403 if not flavored else 404, b"no")

            def _answer(
                self,
                status: int,
                body: bytes,
                content_type: str = "application/text",
                flavor: bool = True,
            ) -> None:
                self.send_response(status)
                if flavor:
                    self.send_header("Metadata-Flavor", "Google")
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """`base` pointing google-auth at this server, with no other credentials."""
        env = {k: v for k, v in base.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
        env.update(GCE_METADATA_HOST=self.host, GCE_METADATA_IP=self.host)
        return env

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---- a tracker that checks its callers ---------------------------------------------------

TOKEN = "ci-" + "0123456789abcdef" * 3  # token:ci: publishes, reads, cancels, deletes
READER_TOKEN = "reader-" + "fedcba9876543210" * 3  # token:reader: reads only
SECURED_GRANTS = (
    "events.publish=token:ci",
    "operations.read=token:ci",
    "operations.write=token:ci",
    "operations.read=token:reader",
    f"events.publish=serviceAccount:{ACCOUNT}",
    f"operations.read=serviceAccount:{ACCOUNT}",
)


def secured_config(folder: Path, certs_url: str, **overrides: Any) -> Config:
    """A tracker on free loopback ports accepting the two static tokens above and ID
    tokens for AUDIENCE signed by the key `certs_url` publishes."""
    from tracker.auth import token_digest

    tokens = folder / "tokens.toml"
    tokens.write_text(f'ci = "{token_digest(TOKEN)}"\nreader = "{token_digest(READER_TOKEN)}"\n')
    settings: dict[str, Any] = {
        "db": ":memory:",
        "http_port": 0,
        "grpc_port": 0,
        "auth_tokens_file": str(tokens),
        "auth_audience": (AUDIENCE,),
        "auth_certs_url": certs_url,
        "grant": SECURED_GRANTS,
        "max_wait_seconds": 30,
    }
    settings.update(overrides)
    return Config(**settings)
