"""Webhooks: notices POSTed to receivers, signed per the Standard Webhooks spec.

Two kinds of receivers (docs/webhooks.md): the per-operation `webhooks` of a `created`
event (target = the URL) and the server-level subscriptions of `--webhook-subscriptions`
(target = "subscription:<name>", resolved to its URL here, so that editing a
subscription's URL redirects what is still pending). Each (notice, receiver) is its own
outbox row: one failing receiver is retried alone, with the outbox's backoff, and given
up after `--notify-max-attempts`; a target the SSRF policy forbids is given up at once.

The request (stable across retries except the timestamp and signature):

    POST <url>
    content-type: application/json
    webhook-id: <outbox item id>            the same on every redelivery: de-duplicate
    webhook-timestamp: <unix seconds>       of this attempt
    webhook-signature: v1,<b64> [v1,<b64>]  HMAC-SHA256 with each configured secret

    {"type": "tracker.notice.v1.done",      (or .cancel, .resume)
     "timestamp": "<RFC 3339>",             when the notice was decided
     "data": {"notice": <tracker.v1.Notice, proto3 JSON, without target>,
              "operation": <google.longrunning.Operation, proto3 JSON>}}

Signing with every secret (at most two) is the spec's rotation: a receiver that knows
either verifies, so the new secret can be rolled out to receivers before the old goes.
A 2xx answer is success; any other status, a timeout or an answer larger than
`max_response_bytes` raises, so the row is retried. Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import ssl
import tomllib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import standardwebhooks
from google.protobuf import json_format

from tracker import __version__, filtering, tracing, wire
from tracker.config import WEBHOOK_SECRETS_ENV as SECRETS_ENV
from tracker.errors import ConfigError, InvalidArgument, clip
from tracker.events import NOTICE_KINDS
from tracker.notices import KINDS_BY_NAME, SUBSCRIPTION_PREFIX, Notice, Subscription, kind_name
from tracker.notify import ssrf
from tracker.notify.outbox import Permanent
from tracker.stores.base import OutboxItem

TYPE_PREFIX: Final = "tracker.notice.v1."
SECRET_PREFIX: Final = "whsec_"
MAX_SECRETS: Final = 2  # the current one and the next (rotation)
# The spec recommends 24 to 64 bytes of random secret.
MIN_SECRET_BYTES: Final = 24
MAX_SECRET_BYTES: Final = 64
DEFAULT_TIMEOUT_SECONDS: Final = 10.0
DEFAULT_MAX_RESPONSE_BYTES: Final = 64 * 1024
MAX_SUBSCRIPTIONS: Final = 100
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


class WebhookFailed(Exception):
    """The receiver did not take the notice (the row is retried)."""


# ---- settings ----------------------------------------------------------------------------


def parse_secrets(values: Sequence[str], where: str) -> tuple[str, ...]:
    """`whsec_<base64>` secrets, first the one to sign with; at most two (rotation)."""
    secrets = tuple(v.strip() for v in values if v.strip())
    if len(secrets) > MAX_SECRETS:
        raise ConfigError(
            f"{where}: {len(secrets)} secrets; at most {MAX_SECRETS} (the current and the next)"
        )
    for i, secret in enumerate(secrets, 1):
        if not secret.startswith(SECRET_PREFIX):
            raise ConfigError(f"{where}: secret {i} must look like whsec_<base64>")
        try:
            raw = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{where}: secret {i} is not valid base64 after whsec_") from None
        if not MIN_SECRET_BYTES <= len(raw) <= MAX_SECRET_BYTES:
            raise ConfigError(
                f"{where}: secret {i} is {len(raw)} bytes; use"
                f" {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} random bytes"
            )
    return secrets


def read_secrets(path: str, env: Sequence[str]) -> tuple[str, ...]:
    """The secrets of `--webhook-secret-file` (one a line, # comments) and of the
    environment (space-separated); the file's first."""
    found: list[str] = []
    if path:
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--webhook-secret-file: cannot read {path!r}: {exc}") from None
        lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        found += parse_secrets([line for line in lines if line], "--webhook-secret-file")
    found += parse_secrets(env, SECRETS_ENV)
    return parse_secrets(found, "--webhook-secret-file and " + SECRETS_ENV)


def read_subscriptions(path: str, policy: ssrf.TargetPolicy) -> tuple[Subscription, ...]:
    """Subscriptions of a TOML file: `[[subscription]]` tables with name, url, and an
    optional filter (ListOperations syntax) and notices (default: every kind)."""
    where = f"--webhook-subscriptions {path}"
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read it: {exc}") from None
    unknown = set(data) - {"subscription"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}; use [[subscription]]")
    tables = data.get("subscription", [])
    if not isinstance(tables, list) or len(tables) > MAX_SUBSCRIPTIONS:
        raise ConfigError(f"{where}: [[subscription]] tables, at most {MAX_SUBSCRIPTIONS}")
    found: dict[str, Subscription] = {}
    for i, table in enumerate(tables, 1):
        found_sub = _subscription(table, f"{where}: subscription {i}", policy)
        if found_sub.name in found:
            raise ConfigError(f"{where}: two subscriptions named {found_sub.name!r}")
        found[found_sub.name] = found_sub
    return tuple(found.values())


def _subscription(table: Any, where: str, policy: ssrf.TargetPolicy) -> Subscription:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = set(table) - {"name", "url", "filter", "notices"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    name, url = table.get("name"), table.get("url")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: name must be 1..64 of A-Z a-z 0-9 . _ -")
    if not isinstance(url, str):
        raise ConfigError(f"{where} ({name}): url is required")
    try:
        ssrf.check_url(url, policy)
    except ssrf.Forbidden as exc:
        raise ConfigError(f"{where} ({name}): {exc}") from None
    text = table.get("filter", "")
    if not isinstance(text, str):
        raise ConfigError(f"{where} ({name}): filter must be a string")
    try:
        expr = filtering.parse(text)
    except InvalidArgument as exc:
        raise ConfigError(f"{where} ({name}): {exc.message}") from None
    kinds = table.get("notices", sorted(NOTICE_KINDS))
    if (
        not isinstance(kinds, list)
        or not kinds
        or not all(isinstance(k, str) and k in NOTICE_KINDS for k in kinds)
    ):
        raise ConfigError(f"{where} ({name}): notices must be a list of done, cancel, resume")
    return Subscription(name, url, expr, frozenset(KINDS_BY_NAME[k] for k in kinds))


# ---- the request -------------------------------------------------------------------------


def payload(item: OutboxItem) -> bytes:
    """The body: {type, timestamp, data: {notice, operation}} (the spec's shape)."""
    notice = Notice()
    notice.CopyFrom(item.notice)
    notice.ClearField("target")  # where it goes is the receiver's own business
    notice.ClearField("traceparent")  # sent as the traceparent header
    notice.ClearField("tracestate")
    body = {
        "type": TYPE_PREFIX + kind_name(notice.kind),
        "timestamp": item.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": {
            "notice": json_format.MessageToDict(notice),
            "operation": wire.operation_to_dict(item.operation),
        },
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secrets: Sequence[str], msg_id: str, when: datetime, body: bytes) -> str:
    """The webhook-signature header: one `v1,<b64>` per secret, space-separated."""
    text = body.decode()
    return " ".join(standardwebhooks.Webhook(s).sign(msg_id, when, text) for s in secrets)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class WebhookSink:
    """The outbox sink for rows with a target (per-operation webhooks, subscriptions)."""

    name = "webhook"
    kinds: frozenset[int] = frozenset()  # takes no rows for the topics
    targets = True

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        policy: ssrf.TargetPolicy | None = None,
        subscriptions: Sequence[Subscription] = (),
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        verify: ssl.SSLContext | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not secrets:
            raise ConfigError(f"webhooks: need a secret (--webhook-secret-file or {SECRETS_ENV})")
        self.secrets = parse_secrets(secrets, "webhook secrets")
        self.policy = policy or ssrf.TargetPolicy()
        self.subscriptions = tuple(subscriptions)
        self._urls = {s.target: s.url for s in self.subscriptions}
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.verify = verify or ssl.create_default_context()
        self.clock = clock

    def url_of(self, target: str) -> str:
        if not target.startswith(SUBSCRIPTION_PREFIX):
            return target
        url = self._urls.get(target)
        if url is None:  # removed from the file since the row was written
            raise Permanent(f"no subscription {clip(target.removeprefix(SUBSCRIPTION_PREFIX))}")
        return url

    async def deliver(self, item: OutboxItem) -> None:
        target = item.notice.target
        url = self.url_of(target)
        body = payload(item)
        notice = item.notice
        span = {
            "tracker.notice": kind_name(notice.kind),
            "tracker.operation": notice.operation,
            "tracker.outbox_id": item.id,
            "server.address": _host(url),
        }
        try:
            with tracing.delivery_span(notice.traceparent, notice.tracestate, span) as trace:
                async with asyncio.timeout(self.timeout):
                    await self._post(url, item.id, body, trace)
        except TimeoutError:
            raise WebhookFailed(f"{_where(target, url)}: no answer in {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise WebhookFailed(
                f"{_where(target, url)}: {type(exc).__name__}: {clip(exc, 200)}"
            ) from None

    async def _post(
        self, url: str, msg_id: str, body: bytes, trace: Mapping[str, str] | None = None
    ) -> None:
        resolved = await ssrf.resolve(url, self.policy)
        when = self.clock()
        headers = {
            "host": resolved.host_header,
            "content-type": "application/json",
            "user-agent": f"tracker/{__version__}",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": sign(self.secrets, msg_id, when, body),
            **(trace or {}),  # traceparent, tracestate (W3C trace context)
        }
        extensions = {"sni_hostname": resolved.host} if resolved.url.scheme == "https" else {}
        async with httpx.AsyncClient(
            verify=self.verify,
            trust_env=False,  # no proxy from the environment: it would bypass the checks
            follow_redirects=False,
            timeout=httpx.Timeout(self.timeout),
            # No connection reuse: a pooled connection is keyed by address, and its TLS
            # session was checked for the name of the request that opened it.
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as client:
            request = client.build_request(
                "POST", resolved.url, content=body, headers=headers, extensions=extensions
            )
            response = await client.send(request, stream=True)
            try:
                await self._read_bounded(response, url)
            finally:
                await response.aclose()
        if not 200 <= response.status_code < 300:
            raise WebhookFailed(f"{_host(url)}: HTTP {response.status_code}")

    async def _read_bounded(self, response: httpx.Response, url: str) -> None:
        """Read at most `max_response_bytes` of the answer, whatever it claims."""
        too_large = WebhookFailed(
            f"{_host(url)}: answer larger than {self.max_response_bytes} bytes"
        )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            raise too_large
        size = 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > self.max_response_bytes:
                raise too_large


def _host(url: str) -> str:
    """The URL's host only: a path or query may hold a receiver's token, never logged."""
    try:
        return clip(httpx.URL(url).host, 100) or "?"
    except (httpx.InvalidURL, ValueError, TypeError):
        return "?"


def _where(target: str, url: str) -> str:
    return clip(target, 80) if target.startswith(SUBSCRIPTION_PREFIX) else _host(url)


__all__ = [
    "SECRETS_ENV",
    "TYPE_PREFIX",
    "WebhookFailed",
    "WebhookSink",
    "parse_secrets",
    "payload",
    "read_secrets",
    "read_subscriptions",
    "sign",
]
