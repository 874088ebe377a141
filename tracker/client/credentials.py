"""What clients send to prove who they are: one place for the SDK, the worker and the CLI.

A tracker that authenticates callers (`--auth-tokens-file`, `--auth-audience`; see
docs/auth.md) wants `Authorization: Bearer <token>` on every request. Two kinds of token:

- `BearerToken`: a static token (one the tracker keeps the SHA-256 digest of), or any
  token minted elsewhere, e.g. `gcloud auth print-identity-token`.
- `GoogleIdToken`: a Google-signed ID token for an audience, minted from Application
  Default Credentials (a service account key in GOOGLE_APPLICATION_CREDENTIALS, or the
  metadata server on Google Cloud). The credentials are made once and refreshed only
  when the token is about to expire, so a long-running worker asks for a token about
  once an hour, not once a request.

Both are `httpx.Auth`s, so one object serves `httpx.Client` and `httpx.AsyncClient`
alike; the async flow mints in a thread so the event loop never waits on the metadata
server. `resolve` picks one from arguments, else from TRACKER_TOKEN /
TRACKER_ID_TOKEN_AUDIENCE.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import AsyncGenerator, Generator, Mapping
from typing import Any, Final

import httpx

from tracker.errors import ConfigError, Unavailable, clip

__all__ = [
    "ENV_ID_TOKEN_AUDIENCE",
    "ENV_TOKEN",
    "BearerToken",
    "GoogleIdToken",
    "check_token",
    "resolve",
]

ENV_TOKEN: Final = "TRACKER_TOKEN"
ENV_ID_TOKEN_AUDIENCE: Final = "TRACKER_ID_TOKEN_AUDIENCE"
# What an HTTP header value may hold without quoting: visible ASCII, no spaces.
_TOKEN_CHARS: Final = re.compile(r"[\x21-\x7e]+")


def check_token(token: str) -> str:
    """`token` without surrounding whitespace; ConfigError unless it can travel in a
    header as it is. The message never quotes the token: it is a secret."""
    token = token.strip()
    if not _TOKEN_CHARS.fullmatch(token):
        raise ConfigError(
            "the bearer token must be printable ASCII without spaces"
            f" ({len(token)} characters given)"
        )
    return token


class BearerToken(httpx.Auth):
    """Sends one fixed token. Its text never appears in an error message or a repr."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {check_token(token)}"

    def __repr__(self) -> str:
        return "BearerToken(***)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


class GoogleIdToken(httpx.Auth):
    """Sends a Google ID token for `audience`, minted from Application Default Credentials.

    Args:
        audience: the audience the tracker accepts (its `--auth-audience`, usually its URL).
        credentials: google-auth ID-token credentials to use instead of looking them up
            (e.g. `impersonated_credentials.IDTokenCredentials`); they must have
            `refresh(request)`, `valid` and `token`.
    """

    def __init__(self, audience: str, credentials: Any = None) -> None:
        if not audience.strip():
            raise ConfigError("the ID token audience must not be empty")
        self.audience = audience.strip()
        self._credentials = credentials
        self._lock = threading.Lock()  # one refresh at a time, from any thread or loop
        self._session: Any = None

    def __repr__(self) -> str:
        return f"GoogleIdToken({self.audience!r})"

    @property
    def _fresh(self) -> str | None:
        """The cached token while it is still valid (google-auth refreshes a few minutes
        before expiry), without any I/O."""
        credentials = self._credentials
        if credentials is not None and credentials.valid and credentials.token:
            return str(credentials.token)
        return None

    def token(self) -> str:
        """A valid ID token; blocks while one is minted (at most one refresh at a time)."""
        fresh = self._fresh
        if fresh is not None:
            return fresh
        with self._lock:
            fresh = self._fresh  # another thread may have refreshed meanwhile
            if fresh is not None:
                return fresh
            return self._refresh()

    def _refresh(self) -> str:
        from google.auth import exceptions
        from google.auth.transport import requests as google_requests
        from google.oauth2 import id_token

        if self._session is None:
            self._session = google_requests.Request()
        try:
            if self._credentials is None:
                self._credentials = id_token.fetch_id_token_credentials(  # type: ignore[no-untyped-call]
                    self.audience, request=self._session
                )
            self._credentials.refresh(self._session)
        except exceptions.DefaultCredentialsError as exc:
            raise ConfigError(
                f"cannot get an ID token for {self.audience}: no Application Default"
                " Credentials that mint ID tokens (a service account key in"
                " GOOGLE_APPLICATION_CREDENTIALS, or the metadata server on Google Cloud):"
                f" {clip(exc, 300)}"
            ) from None
        except (exceptions.GoogleAuthError, ValueError) as exc:
            raise Unavailable(
                f"cannot get an ID token for {self.audience}: {clip(exc, 300)}"
            ) from None
        token = self._credentials.token
        if not token:
            raise Unavailable(f"cannot get an ID token for {self.audience}: none was issued")
        return str(token)

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        import asyncio  # here: a synchronous client (the CLI) never loads asyncio

        token = self._fresh or await asyncio.to_thread(self.token)
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def close(self) -> None:
        """Close the HTTP session used to mint tokens (the credentials stay cached)."""
        session, self._session = self._session, None
        if session is not None:
            session.session.close()


def resolve(
    token: str | None = None,
    id_token_audience: str | None = None,
    auth: httpx.Auth | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> httpx.Auth | None:
    """The credentials a client sends: the arguments when any is given, else the
    environment (TRACKER_TOKEN or TRACKER_ID_TOKEN_AUDIENCE), else none.

    An empty string counts as not given. Two kinds at once is a ConfigError: which one
    was meant cannot be guessed.
    """
    given = [x for x in (token, id_token_audience, auth) if x]
    if len(given) > 1:
        raise ConfigError("give one of a bearer token, an ID token audience or an auth, not two")
    if auth is not None:
        return auth
    if token:
        return BearerToken(token)
    if id_token_audience:
        return GoogleIdToken(id_token_audience)
    env = os.environ if environ is None else environ
    env_token, env_audience = env.get(ENV_TOKEN, ""), env.get(ENV_ID_TOKEN_AUDIENCE, "")
    if env_token and env_audience:
        raise ConfigError(
            f"{ENV_TOKEN} and {ENV_ID_TOKEN_AUDIENCE} are both set; unset one (or pass one"
            " explicitly, which wins over the environment)"
        )
    if env_token:
        return BearerToken(env_token)
    if env_audience:
        return GoogleIdToken(env_audience)
    return None
