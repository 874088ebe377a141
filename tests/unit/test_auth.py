"""tracker.auth on its own: ID tokens, static tokens, the policy, certificate caching."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tokens import ACCOUNT, AUDIENCE, CERT, OTHER_KEY, Certs, expired, id_token
from tracker.auth import (
    ANONYMOUS,
    CertificateCache,
    GoogleIdTokens,
    Guard,
    Permission,
    Policy,
    StaticTokens,
    token_digest,
)
from tracker.errors import ConfigError, PermissionDenied, Unauthenticated

READ, WRITE, PUBLISH = (
    Permission.OPERATIONS_READ,
    Permission.OPERATIONS_WRITE,
    Permission.EVENTS_PUBLISH,
)


@pytest.fixture
def certs() -> Iterator[Certs]:
    c = Certs({"k1": CERT})
    yield c
    c.close()


def guard(certs: Certs, *grants: str, tokens: dict[str, str] | None = None) -> Guard:
    authenticators = [GoogleIdTokens([AUDIENCE], CertificateCache(certs.url))]
    if tokens:
        authenticators.append(StaticTokens({n: token_digest(t)[7:] for n, t in tokens.items()}))  # type: ignore[arg-type]
    return Guard(Policy.build(Policy.parse_grant(g) for g in grants), authenticators)


def check(g: Guard, token: str | None, permission: Permission) -> str:
    """The member on success, else the error's class name and ErrorInfo reason."""
    authorization = None if token is None else f"Bearer {token}"
    try:
        return asyncio.run(g.check(authorization, permission)).member
    except (Unauthenticated, PermissionDenied) as exc:
        return f"{type(exc).__name__}:{exc.error_reason}"


SA = f"serviceAccount:{ACCOUNT}"


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (None, "Unauthenticated:CREDENTIALS_MISSING"),
        ("garbage", "Unauthenticated:INVALID_TOKEN"),
        ("a.b.c", "Unauthenticated:INVALID_TOKEN"),
        (expired(), "Unauthenticated:INVALID_TOKEN"),
        (id_token(audience="https://elsewhere"), "Unauthenticated:INVALID_TOKEN"),
        (id_token(iss="https://evil.example"), "Unauthenticated:WRONG_ISSUER"),
        (id_token(email_verified=False), "Unauthenticated:EMAIL_NOT_VERIFIED"),
        (id_token(email_verified="true"), "Unauthenticated:EMAIL_NOT_VERIFIED"),
        (id_token(email=None), "Unauthenticated:NO_EMAIL"),
        (id_token(key=OTHER_KEY), "Unauthenticated:INVALID_TOKEN"),
        (id_token(kid="unknown"), "Unauthenticated:UNKNOWN_KEY"),
        (
            id_token(email="other@proj.iam.gserviceaccount.com"),
            "PermissionDenied:PERMISSION_MISSING",
        ),
        (id_token(), SA),
    ],
    ids=[
        "none",
        "garbage",
        "not-base64-jwt",
        "expired",
        "audience",
        "issuer",
        "unverified",
        "verified-as-string",
        "no-email",
        "signature",
        "unknown-kid",
        "other-account",
        "valid",
    ],
)
def test_google_id_tokens(certs: Certs, token: str | None, expected: str) -> None:
    assert check(guard(certs, f"operations.read={SA}"), token, READ) == expected


def test_a_valid_token_without_the_permission_is_denied(certs: Certs) -> None:
    g = guard(certs, f"operations.read={SA}")
    assert check(g, id_token(), WRITE) == "PermissionDenied:PERMISSION_MISSING"


def test_members_by_domain_user_and_everyone(certs: Certs) -> None:
    g = guard(
        certs,
        "operations.read=domain:example.com",
        "operations.write=user:boss@example.com",
        "events.publish=allAuthenticatedUsers",
        "pubsub.push=allUsers",
    )
    alice = id_token(email="alice@example.com")
    assert check(g, alice, READ) == "user:alice@example.com"
    assert check(g, alice, WRITE) == "PermissionDenied:PERMISSION_MISSING"
    assert check(g, id_token(email="boss@example.com"), WRITE) == "user:boss@example.com"
    assert check(g, id_token(email="x@other.org"), PUBLISH) == "user:x@other.org"
    assert check(g, None, PUBLISH) == "Unauthenticated:CREDENTIALS_MISSING"
    assert check(g, None, Permission.PUBSUB_PUSH) == "allUsers"
    # A service account of another project is not in the domain example.com.
    assert check(g, id_token(email="a@example.com.evil.org"), READ).startswith("Permission")


def test_static_tokens_from_a_file_are_stored_hashed(tmp_path: Path, certs: Certs) -> None:
    secret = "s3cr3t-0123456789abcdef0123456789abcdef"
    path = tmp_path / "tokens.toml"
    path.write_text(f'ci = "{token_digest(secret)}"\nother = "{token_digest("x" * 40)}"\n')
    assert secret not in path.read_text()
    tokens = StaticTokens.from_file(path)
    g = Guard(Policy.build([Policy.parse_grant("events.publish=token:ci")]), [tokens])
    assert check(g, secret, PUBLISH) == "token:ci"
    assert check(g, "x" * 40, PUBLISH) == "PermissionDenied:PERMISSION_MISSING"
    assert check(g, secret + "x", PUBLISH) == "Unauthenticated:INVALID_TOKEN"
    assert check(g, id_token(), PUBLISH) == "Unauthenticated:INVALID_TOKEN"  # no ID tokens here


@pytest.mark.parametrize(
    "content",
    ['ci = "plain-text-token"', 'ci = "sha256:abc"', '"bad name" = "sha256:' + "0" * 64 + '"', "["],
)
def test_bad_token_files_stop_start_up(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(content)
    with pytest.raises(ConfigError, match="--auth-tokens-file"):
        StaticTokens.from_file(path)


def test_policy_file_and_grant_flags(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('"operations.read" = ["domain:example.com", "token:ci"]\n')
    pairs = Policy.from_file(path)
    assert pairs == [(READ, "domain:example.com"), (READ, "token:ci")]
    for bad in ("operations.read", "nope=allUsers", "operations.read=alice", "x=user:a@b"):
        with pytest.raises(ConfigError, match="--grant"):
            Policy.parse_grant(bad)
    path.write_text('"operations.fly" = ["allUsers"]\n')
    with pytest.raises(ConfigError, match="unknown permission"):
        Policy.from_file(path)


def test_anonymous_is_only_what_allUsers_allows() -> None:
    policy = Policy.build([(READ, "allAuthenticatedUsers")])
    assert not policy.allows(ANONYMOUS, READ)


# ---- certificates: no denial-of-service lever ------------------------------------------


def test_many_unknown_key_ids_fetch_at_most_once_per_interval(certs: Certs) -> None:
    g = guard(certs, f"operations.read={SA}")

    async def run() -> list[str]:
        results = []
        for i in range(50):
            results.append(await _check_async(g, id_token(kid=f"junk-{i}"), READ))
            results.append(await _check_async(g, id_token(), READ))
        return results

    results = asyncio.run(run())
    assert results[1::2] == [SA] * 50  # valid tokens kept working throughout
    assert set(results[0::2]) == {"Unauthenticated:UNKNOWN_KEY"}
    # One fetch in all: the first (for the first unknown kid, before any keys were held);
    # every later unknown kid came within the refetch interval and fetched nothing.
    assert certs.fetches == 1


def test_valid_tokens_never_queue_behind_a_slow_fetch(certs: Certs) -> None:
    """A junk key id starts a refetch that hangs; valid tokens meanwhile still verify."""
    cache = CertificateCache(certs.url, refetch_interval=0)
    g = Guard(
        Policy.build([Policy.parse_grant(f"operations.read={SA}")]),
        [GoogleIdTokens([AUDIENCE], cache)],
    )

    async def run() -> tuple[list[str], str]:
        assert await _check_async(g, id_token(), READ) == SA  # certificates held
        certs.gate = threading.Event()
        certs.arrived.clear()
        junk = asyncio.ensure_future(_check_async(g, id_token(kid="junk"), READ))
        # The refetch for the junk kid has reached the endpoint, which holds it.
        assert await asyncio.to_thread(certs.arrived.wait, 10)
        valid = [await _check_async(g, id_token(), READ) for _ in range(20)]
        assert not junk.done()  # still waiting for its own fetch
        certs.gate.set()
        return valid, await junk

    valid, junk = asyncio.run(run())
    assert valid == [SA] * 20
    assert junk == "Unauthenticated:UNKNOWN_KEY"


def test_expired_certificates_refresh_in_the_background(certs: Certs) -> None:
    certs.max_age = 0  # every response is stale at once
    cache = CertificateCache(certs.url)
    g = Guard(
        Policy.build([Policy.parse_grant(f"operations.read={SA}")]),
        [GoogleIdTokens([AUDIENCE], cache)],
    )

    async def run() -> list[str]:
        out = [await _check_async(g, id_token(), READ) for _ in range(5)]
        await cache.settled()  # the refresh started by the last check has ended
        return out

    assert asyncio.run(run()) == [SA] * 5
    assert certs.fetches >= 2  # refreshed, while every check used the keys at hand


async def _check_async(g: Guard, token: str, permission: Permission) -> str:
    try:
        return (await g.check(f"Bearer {token}", permission)).member
    except (Unauthenticated, PermissionDenied) as exc:
        return f"{type(exc).__name__}:{exc.error_reason}"


def test_an_open_tracker_ignores_credentials_it_cannot_check() -> None:
    from tracker.auth import OPEN

    for authorization in (None, "Bearer stray-token", "Basic abc", "garbage"):
        assert asyncio.run(OPEN.check(authorization, WRITE)) is ANONYMOUS
