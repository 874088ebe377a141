"""Verify the OIDC bearer token Pub/Sub attaches to push requests.

Pub/Sub signs a Google ID token for the push subscription's service account, with the
configured audience. We check the signature (against Google's published certificates,
fetched over HTTPS and cached), the audience, the issuer, and the service account email.
Tests point `certs_url` at a local server publishing a test key: the same code path.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
from google.auth import exceptions as auth_exceptions
from google.auth import jwt

from tracker.errors import PermissionDenied, StoreUnavailable, Unauthenticated, echo

log = logging.getLogger(__name__)

GOOGLE_CERTS_URL: Final = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS: Final = ("https://accounts.google.com", "accounts.google.com")
_MAX_AGE = re.compile(r"max-age=(\d+)")


@dataclass
class PushAuth:
    """What a push request's token must say. `audience` is required to turn checks on."""

    audience: str
    service_account: str = ""
    certs_url: str = GOOGLE_CERTS_URL
    issuers: tuple[str, ...] = GOOGLE_ISSUERS
    clock_skew_seconds: int = 10
    _certs: dict[str, str] = field(default_factory=dict, repr=False)
    _certs_expire: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    async def _fetch_certs(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.get(self.certs_url)
                response.raise_for_status()
                certs = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            # Without keys nothing can be verified: transient, Pub/Sub retries.
            raise StoreUnavailable(f"cannot fetch token certificates: {exc}") from exc
        if not isinstance(certs, dict):
            raise StoreUnavailable("token certificates are not a JSON object")
        match = _MAX_AGE.search(response.headers.get("cache-control", ""))
        self._certs = {str(k): str(v) for k, v in certs.items()}
        self._certs_expire = time.monotonic() + (int(match.group(1)) if match else 3600)

    async def certs(self, kid: str | None) -> dict[str, str]:
        async with self._lock:
            stale = time.monotonic() >= self._certs_expire
            if stale or (kid is not None and kid not in self._certs):  # keys rotate
                await self._fetch_certs()
            return self._certs

    async def verify(self, authorization: str | None) -> dict[str, Any]:
        """Claims of a valid token; Unauthenticated (401) or PermissionDenied (403) if not."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthenticated("missing bearer token")
        token = authorization.split(" ", 1)[1].strip()
        try:
            head = token.split(".")[0]
            header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
            kid = header.get("kid") if isinstance(header, dict) else None
        except (ValueError, IndexError, TypeError, binascii.Error):
            raise Unauthenticated("malformed bearer token") from None
        certs = await self.certs(kid if isinstance(kid, str) else None)
        try:
            claims: dict[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
                token,
                certs=certs,
                audience=self.audience,
                clock_skew_in_seconds=self.clock_skew_seconds,
            )
        except (auth_exceptions.GoogleAuthError, ValueError) as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        if claims.get("iss") not in self.issuers:
            raise Unauthenticated(f"token issuer {echo(claims.get('iss'))} is not Google")
        email_ok = claims.get("email") == self.service_account and claims.get("email_verified")
        if self.service_account and not email_ok:
            raise PermissionDenied(
                f"token is for {echo(claims.get('email'))}, not {echo(self.service_account)}"
            )
        return claims
