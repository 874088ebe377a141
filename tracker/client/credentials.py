"""Credentials the SDK, `tracker.worker` and the CLI send: `Authorization: Bearer ...`.

- `BearerToken`: a token you hold, e.g. a static token from the tracker's tokens file.
- `GoogleIdToken`: a Google-signed ID token for an audience, from Application Default
  Credentials (google-auth): a service account key, the GCE/GKE/Cloud Run metadata
  server, or `gcloud auth application-default login` for a user. It is fetched once and
  refreshed shortly before it expires; the async client refreshes in a thread.

`from_settings` picks one from arguments or the environment (TRACKER_TOKEN,
TRACKER_ID_TOKEN_AUDIENCE), the order every entry point uses.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncGenerator, Generator
from typing import Any, Final

import httpx

from tracker.errors import ConfigError

TOKEN_ENV: Final = "TRACKER_TOKEN"
AUDIENCE_ENV: Final = "TRACKER_ID_TOKEN_AUDIENCE"


class BearerToken(httpx.Auth):
    """A fixed bearer token."""

    def __init__(self, token: str) -> None:
        token = token.strip()
        if not token:
            raise ConfigError("an empty bearer token")
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


class GoogleIdToken(httpx.Auth):
    """An ID token for `audience` from Application Default Credentials."""

    def __init__(self, audience: str, credentials: Any = None) -> None:
        self.audience = audience
        self._credentials = credentials
        self._lock = threading.Lock()

    def _fresh_token(self) -> str:
        """The current token, fetched or refreshed (blocking) when needed."""
        from google.auth import exceptions as auth_exceptions
        from google.auth.transport.requests import Request
        from google.oauth2 import id_token

        with self._lock:
            try:
                if self._credentials is None:
                    self._credentials = id_token.fetch_id_token_credentials(  # type: ignore[no-untyped-call]
                        self.audience, request=Request()
                    )
                credentials = self._credentials
                # `valid` turns false a few minutes before expiry (google-auth's margin).
                if not credentials.valid:
                    credentials.refresh(Request())
            except auth_exceptions.GoogleAuthError as exc:
                raise ConfigError(
                    f"cannot get a Google ID token for {self.audience!r}: {exc}"
                    " (set up Application Default Credentials, or use a bearer token)"
                ) from None
            return str(credentials.token)

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._fresh_token()}"
        yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await asyncio.to_thread(self._fresh_token)  # google-auth's I/O blocks
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


def from_settings(
    token: str | None = None, id_token_audience: str | None = None
) -> httpx.Auth | None:
    """The credentials arguments ask for, else the environment's, else none."""
    if token and id_token_audience:
        raise ConfigError("give a bearer token or an ID-token audience, not both")
    if token:
        return BearerToken(token)
    if id_token_audience:
        return GoogleIdToken(id_token_audience)
    env_token = os.environ.get(TOKEN_ENV, "")
    env_audience = os.environ.get(AUDIENCE_ENV, "")
    if env_token and env_audience:
        raise ConfigError(f"set {TOKEN_ENV} or {AUDIENCE_ENV}, not both")
    if env_token:
        return BearerToken(env_token)
    if env_audience:
        return GoogleIdToken(env_audience)
    return None


__all__ = ["AUDIENCE_ENV", "TOKEN_ENV", "BearerToken", "GoogleIdToken", "from_settings"]
