"""Who may do what: authentication and authorization for every HTTP route and RPC.

Every route and RPC declares the one permission it needs (`Permission`). A request's
bearer token (HTTP `Authorization: Bearer ...`, gRPC `authorization` metadata) is turned
into a `Principal` by the configured authenticators, and the `Policy` says whether that
principal holds the permission:

- `GoogleIdTokens`: Google-signed ID tokens (what Pub/Sub push, Cloud Run, Workload
  Identity and `gcloud auth print-identity-token` mint): signature against Google's
  published certificates, issuer, audience, expiry with a small skew, and
  `email_verified` strictly true. The principal is `serviceAccount:EMAIL` for service
  accounts and `user:EMAIL` otherwise; `domain:D` in a policy matches either by domain.
- `StaticTokens`: bearer tokens from a file for setups without Google identity, stored
  as SHA-256 digests and compared in constant time. The principal is `token:NAME`.

Members in a policy use IAM's spelling: `serviceAccount:a@p.iam.gserviceaccount.com`,
`user:me@example.com`, `domain:example.com`, `token:ci`, `allAuthenticatedUsers`,
`allUsers` (anyone, no token needed).

Certificates are no denial-of-service lever: they are fetched once, refreshed in the
background when Cache-Control's max-age runs out (verification goes on with the old ones
meanwhile), and a token naming an unknown key id makes at most one fetch per
`refetch_interval`; every other request goes on with the keys at hand and never queues
behind a fetch.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import enum
import hashlib
import hmac
import json
import logging
import re
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import httpx
from google.auth import exceptions as auth_exceptions
from google.auth import jwt

from tracker import filtering
from tracker.constants import GOOGLE_CERTS_URL
from tracker.errors import (
    ConfigError,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    clip,
    echo,
)

log = logging.getLogger(__name__)

GOOGLE_ISSUERS: Final = ("https://accounts.google.com", "accounts.google.com")
SERVICE_ACCOUNT_SUFFIX: Final = ".gserviceaccount.com"
DEFAULT_MAX_AGE: Final = 3600.0
_MAX_AGE = re.compile(r"max-age=(\d+)")
_MEMBER = re.compile(
    r"^(allUsers|allAuthenticatedUsers|(serviceAccount|user):[^@\s]+@[^@\s]+|domain:[^@\s:]+"
    r"|token:[A-Za-z0-9._-]+)$"
)
MAX_TOKEN_CHARS: Final = 16 * 1024
SCOPES_TABLE: Final = "scopes"


class Permission(enum.StrEnum):
    """What a route or RPC needs. `operations.write` covers every operator action."""

    EVENTS_PUBLISH = "events.publish"
    PUBSUB_PUSH = "pubsub.push"
    OPERATIONS_READ = "operations.read"
    OPERATIONS_WRITE = "operations.write"


@dataclass(frozen=True)
class Principal:
    """Who a verified token says the caller is."""

    member: str  # serviceAccount:EMAIL | user:EMAIL | token:NAME | allUsers (anonymous)
    email: str = ""

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2].lower() if self.email else ""


ANONYMOUS: Final = Principal("allUsers")


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> Principal | None:
        """The principal of `token`; None when the token is not of this kind (the next
        authenticator is asked); Unauthenticated when it is but does not verify."""


# ---- Google ID tokens ------------------------------------------------------------------


def _jwt_header(token: str) -> dict[str, Any] | None:
    """The decoded header of a JWT, or None when `token` is not shaped like one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        head = parts[0]
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        return None
    return header if isinstance(header, dict) else None


@dataclass
class CertificateCache:
    """Google's token-signing certificates, fetched over HTTPS and cached.

    `get(kid)` never waits for a fetch once any certificates are held: a refresh at
    expiry runs in the background, and an unknown key id starts at most one fetch per
    `refetch_interval` (and waits only for that fetch, which may bring the new key).
    """

    url: str = GOOGLE_CERTS_URL
    refetch_interval: float = 60.0
    timeout: float = 10.0
    fetches: int = 0
    _certs: dict[str, str] = field(default_factory=dict, repr=False)
    _expires: float = 0.0
    _last_fetch: float = -1e18
    _inflight: asyncio.Task[None] | None = field(default=None, repr=False)

    async def _fetch(self) -> None:
        self.fetches += 1
        self._last_fetch = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(self.url)
                response.raise_for_status()
                certs = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise Unavailable(f"cannot fetch token certificates: {clip(exc)}") from exc
        if not isinstance(certs, dict) or not all(isinstance(v, str) for v in certs.values()):
            raise Unavailable("token certificates are not a JSON object of PEM strings")
        match = _MAX_AGE.search(response.headers.get("cache-control", ""))
        self._certs = {str(k): str(v) for k, v in certs.items()}
        self._expires = time.monotonic() + (float(match.group(1)) if match else DEFAULT_MAX_AGE)

    def _start_fetch(self) -> asyncio.Task[None]:
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._fetch())
            self._inflight.add_done_callback(_log_failed_fetch)
        return self._inflight

    async def settled(self) -> None:
        """Return once no fetch is in flight (shutdown, and tests)."""
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            await asyncio.wait([inflight])

    async def get(self, kid: str | None) -> dict[str, str]:
        now = time.monotonic()
        if not self._certs:  # nothing to verify with yet: everyone waits for the first
            await asyncio.shield(self._start_fetch())
        elif now >= self._expires:
            self._start_fetch()  # refresh behind the scenes; the old keys serve meanwhile
        if kid is not None and kid not in self._certs:
            if self._inflight is not None and not self._inflight.done():
                await asyncio.shield(self._inflight)
            elif now - self._last_fetch >= self.refetch_interval:  # keys may have rotated
                await asyncio.shield(self._start_fetch())
        return self._certs


def _log_failed_fetch(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("token certificates: %s", task.exception())


@dataclass
class GoogleIdTokens:
    """Google-signed ID tokens for one of `audiences`."""

    audiences: Sequence[str]
    certs: CertificateCache = field(default_factory=CertificateCache)
    issuers: Sequence[str] = GOOGLE_ISSUERS
    clock_skew_seconds: int = 30

    async def authenticate(self, token: str) -> Principal | None:
        header = _jwt_header(token)
        if header is None:
            return None  # not a JWT: maybe a static token
        kid = header.get("kid")
        certs = await self.certs.get(kid if isinstance(kid, str) else None)
        if isinstance(kid, str) and kid not in certs:
            raise Unauthenticated("token signed by an unknown key", reason="UNKNOWN_KEY")
        try:
            claims: Mapping[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
                token,
                certs=certs,
                audience=list(self.audiences),
                clock_skew_in_seconds=self.clock_skew_seconds,
            )
        except (auth_exceptions.GoogleAuthError, ValueError, TypeError) as exc:
            raise Unauthenticated(f"invalid token: {clip(exc)}", reason="INVALID_TOKEN") from None
        if claims.get("iss") not in self.issuers:
            raise Unauthenticated(
                f"token issuer {echo(claims.get('iss'))} is not Google", reason="WRONG_ISSUER"
            )
        email = claims.get("email")
        if not isinstance(email, str) or not email:
            raise Unauthenticated("token carries no email", reason="NO_EMAIL")
        if claims.get("email_verified") is not True:
            raise Unauthenticated(
                f"the email of the token ({echo(email)}) is not verified",
                reason="EMAIL_NOT_VERIFIED",
            )
        kind = "serviceAccount" if email.endswith(SERVICE_ACCOUNT_SUFFIX) else "user"
        return Principal(f"{kind}:{email}", email=email)


# ---- static tokens ---------------------------------------------------------------------


def token_digest(token: str) -> str:
    """The stored form of a static token: `sha256:<hex>`."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class StaticTokens:
    """Named bearer tokens, kept as SHA-256 digests only.

    The file has one `NAME = "sha256:<hex>"` line per token (TOML; `tracker auth
    hash-token` prints the digest of a token). A long random token (at least 128 bits)
    makes a fast hash enough: nothing is there to guess from the digest.
    """

    digests: Mapping[str, str]

    @classmethod
    def from_file(cls, path: str | Path) -> StaticTokens:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"--auth-tokens-file: cannot read {str(path)!r}: {exc}") from None
        digests: dict[str, str] = {}
        for name, value in data.items():
            if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
                raise ConfigError(f"--auth-tokens-file: bad token name {name!r}")
            if not isinstance(value, str) or not re.fullmatch(r"sha256:[0-9a-f]{64}", value):
                raise ConfigError(
                    f'--auth-tokens-file: {name} must be "sha256:<64 hex digits>"'
                    " (tracker auth hash-token prints it)"
                )
            digests[name] = value.removeprefix("sha256:")
        return cls(digests)

    async def authenticate(self, token: str) -> Principal | None:
        if _jwt_header(token) is not None:
            return None
        digest = hashlib.sha256(token.encode()).hexdigest()
        found = ""
        for name, expected in self.digests.items():  # every entry, whatever matches
            if hmac.compare_digest(digest, expected):
                found = name
        if not found:
            raise Unauthenticated("unknown bearer token", reason="INVALID_TOKEN")
        return Principal(f"token:{found}")


# ---- policy ----------------------------------------------------------------------------


def check_member(member: str, where: str) -> str:
    if not _MEMBER.fullmatch(member):
        raise ConfigError(
            f"{where}: {member!r} is not a member (serviceAccount:EMAIL, user:EMAIL,"
            " domain:DOMAIN, token:NAME, allAuthenticatedUsers or allUsers)"
        )
    return member


def check_permission(name: str, where: str) -> Permission:
    try:
        return Permission(name)
    except ValueError:
        known = ", ".join(p.value for p in Permission)
        raise ConfigError(f"{where}: unknown permission {name!r}; known: {known}") from None


# A scope's name prefix: what may stand in a filter's quoted prefix as it is.
_SCOPE_PREFIX = re.compile(r"[A-Za-z0-9._~/-]+")


@dataclass(frozen=True)
class Scope:
    """The operations a caller's permissions reach: those whose names start with one of
    `prefixes` (None: every operation). Checked at every route and RPC that names an
    operation, and said in the filter of every List, stream and bulk action."""

    prefixes: tuple[str, ...] | None = None
    member: str = ""

    @property
    def scoped(self) -> bool:
        return self.prefixes is not None

    def allows(self, name: str) -> bool:
        return self.prefixes is None or name.startswith(self.prefixes)

    def check(self, name: str) -> None:
        """PermissionDenied (OUT_OF_SCOPE) unless `name` is in the scope."""
        if not self.allows(name):
            raise PermissionDenied(
                f"{self.member} may touch only operations under"
                f" {', '.join(map(repr, self.prefixes or ()))}, not {echo(name)}",
                reason="OUT_OF_SCOPE",
                metadata={"name": name[:256]},
            )

    def narrow(self, filter_text: str) -> str:
        """`filter_text` AND one of the scope's name prefixes."""
        if self.prefixes is None:
            return filter_text
        # A whole expression on its own, so no text of the caller's can close the
        # parenthesis and stand outside the scope's AND (and its errors are its own).
        filtering.parse(filter_text)
        within = " OR ".join(f"name = {json.dumps(p + '*')}" for p in self.prefixes)
        return f"({within}) AND ({filter_text})" if filter_text.strip() else f"({within})"

    def unscoped_only(self, what: str) -> None:
        """PermissionDenied for a scoped caller: `what` belongs to no operation's scope."""
        if self.prefixes is not None:
            raise PermissionDenied(
                f"{self.member} is scoped to some operations; {what} needs an unscoped grant",
                reason="OUT_OF_SCOPE",
            )


UNSCOPED: Final = Scope()
# The scope of the request or RPC being served: set where its caller is checked
# (`tracker.api.guard`), read at the routes' entry (each request runs in its own task).
CURRENT_SCOPE: contextvars.ContextVar[Scope] = contextvars.ContextVar(
    "tracker_scope", default=UNSCOPED
)


def check_scope_prefix(prefix: str, where: str) -> str:
    if not _SCOPE_PREFIX.fullmatch(prefix):
        raise ConfigError(
            f"{where}: {prefix!r} is not a name prefix (letters, digits and . _ ~ / -),"
            ' e.g. "projects/billing/"'
        )
    return prefix


@dataclass(frozen=True)
class Policy:
    """Permission -> members holding it; member -> the name prefixes it is scoped to."""

    grants: Mapping[Permission, frozenset[str]]
    scopes: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        pairs: Iterable[tuple[Permission, str]],
        scopes: Iterable[tuple[str, str]] = (),
    ) -> Policy:
        grants: dict[Permission, set[str]] = {}
        for permission, member in pairs:
            grants.setdefault(permission, set()).add(member)
        scoped: dict[str, set[str]] = {}
        for member, prefix in scopes:
            scoped.setdefault(member, set()).add(prefix)
        return cls(
            {p: frozenset(m) for p, m in grants.items()},
            {m: frozenset(p) for m, p in scoped.items()},
        )

    @classmethod
    def parse_scope(cls, text: str) -> tuple[str, str]:
        """`MEMBER=PREFIX` (a --grant-scope value)."""
        member, sep, prefix = text.rpartition("=")
        if not sep:
            raise ConfigError(f"--grant-scope: {text!r} is not MEMBER=PREFIX")
        return (
            check_member(member.strip(), "--grant-scope"),
            check_scope_prefix(prefix.strip(), "--grant-scope"),
        )

    @classmethod
    def scopes_from_file(cls, path: str | Path) -> list[tuple[str, str]]:
        """The `[scopes]` table of a policy file: `"MEMBER" = ["prefix/", ...]`."""
        where = f"--auth-policy {path}"
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{where}: cannot read it: {exc}") from None
        table = data.get(SCOPES_TABLE, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [{SCOPES_TABLE}] must be a table of member = [prefixes]")
        pairs = []
        for member, prefixes in table.items():
            if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
                raise ConfigError(f"{where}: scopes.{member} must be a list of name prefixes")
            check_member(member, where)
            pairs += [(member, check_scope_prefix(p, where)) for p in prefixes]
        return pairs

    def scope_of(self, principal: Principal) -> Scope:
        """Where `principal`'s permissions reach: the union of the prefixes its member
        (and its domain) is scoped to; every operation when neither is."""
        keys = [principal.member]
        if principal.domain:
            keys.append(f"domain:{principal.domain}")
        prefixes = sorted(p for k in keys for p in self.scopes.get(k, ()))
        if not prefixes:
            return UNSCOPED
        return Scope(tuple(prefixes), principal.member)

    @classmethod
    def parse_grant(cls, text: str) -> tuple[Permission, str]:
        """`PERMISSION=MEMBER` (a --grant value)."""
        name, sep, member = text.partition("=")
        if not sep:
            raise ConfigError(f"--grant: {text!r} is not PERMISSION=MEMBER")
        return check_permission(name.strip(), "--grant"), check_member(member.strip(), "--grant")

    @classmethod
    def from_file(cls, path: str | Path) -> list[tuple[Permission, str]]:
        """Grants of a policy file: TOML `"events.publish" = ["serviceAccount:..."]`."""
        where = f"--auth-policy {path}"
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{where}: cannot read it: {exc}") from None
        pairs = []
        for name, members in data.items():
            if name == SCOPES_TABLE:
                continue  # scopes_from_file
            permission = check_permission(name, where)
            if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                raise ConfigError(f"{where}: {name} must be a list of members")
            pairs += [(permission, check_member(m, where)) for m in members]
        return pairs

    def allows(self, principal: Principal, permission: Permission) -> bool:
        members = self.grants.get(permission, frozenset())
        if "allUsers" in members or principal.member in members:
            return True
        if principal is ANONYMOUS:
            return False
        if "allAuthenticatedUsers" in members:
            return True
        return bool(principal.domain) and f"domain:{principal.domain}" in members


# ---- the layer -------------------------------------------------------------------------


@dataclass
class Guard:
    """Authenticates a request's credentials and authorizes one permission.

    With no authenticators every caller is anonymous; the policy then needs `allUsers`
    (which `--allow-unauthenticated` grants for everything).
    """

    policy: Policy
    authenticators: Sequence[Authenticator] = ()

    async def principal(self, authorization: str | None) -> Principal:
        """Who the `Authorization` value says the caller is (ANONYMOUS without one)."""
        if not authorization or not self.authenticators:
            # With nothing to check credentials against (loopback, or an IAM-guarded
            # platform), whatever a client sends is ignored: a stray TRACKER_TOKEN in a
            # shell must not break calls to an open tracker.
            return ANONYMOUS
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("credentials must be 'Bearer <token>'", reason="BAD_SCHEME")
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated("bearer token too long", reason="INVALID_TOKEN")
        for authenticator in self.authenticators:
            principal = await authenticator.authenticate(token)
            if principal is not None:
                return principal
        raise Unauthenticated(
            "bearer token of no kind this tracker accepts", reason="INVALID_TOKEN"
        )

    async def check(self, authorization: str | None, permission: Permission) -> Principal:
        """The caller's principal if it holds `permission`; 401 or 403 otherwise."""
        principal = await self.principal(authorization)
        if self.policy.allows(principal, permission):
            return principal
        if principal is ANONYMOUS:
            raise Unauthenticated(
                f"{permission.value} needs credentials",
                reason="CREDENTIALS_MISSING",
                metadata={"permission": permission.value},
            )
        raise PermissionDenied(
            f"{principal.member} lacks {permission.value}",
            reason="PERMISSION_MISSING",
            metadata={"permission": permission.value},
        )


OPEN: Final = Guard(Policy.build((p, "allUsers") for p in Permission))

__all__ = [
    "ANONYMOUS",
    "CURRENT_SCOPE",
    "OPEN",
    "UNSCOPED",
    "Authenticator",
    "CertificateCache",
    "GoogleIdTokens",
    "Guard",
    "Permission",
    "Policy",
    "Principal",
    "Scope",
    "StaticTokens",
    "token_digest",
]
