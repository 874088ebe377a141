"""Settings of `tracker serve`: each a flag with a TRACKER_* environment twin.

`SETTINGS` is the single list; the CLI builds its options from it and the README
table is checked against it by a test.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tracker.constants import DEFAULT_MAX_WAIT_SECONDS, GOOGLE_CERTS_URL
from tracker.errors import ConfigError
from tracker.events import (
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_NAME_PATTERN,
    MAX_EVENT_BYTES_LIMIT,
    EventRules,
)
from tracker.notify.outbox import RetryPolicy
from tracker.notify.ssrf import TargetPolicy
from tracker.stores.tenants import check_prefix

WEBHOOK_SECRETS_ENV = "TRACKER_WEBHOOK_SECRETS"


@dataclass(frozen=True)
class Config:
    """Everything `tracker serve` needs. Defaults serve a laptop."""

    store: str = field(default="sqlite", metadata={"help": "sqlite (embedded default) or spanner."})
    spanner_database: str = field(
        default="",
        metadata={"help": "projects/P/instances/I/databases/D, with --store spanner."},
    )
    spanner_explicit_begin: bool = field(
        default=False,
        metadata={"help": "Begin Spanner transactions with their own RPC (for handy-spanner)."},
    )
    table_prefix: str = field(
        default="",
        metadata={
            "help": "This deployment's tables in a shared database are the schema's under"
            " this prefix (one tenant of many; `tracker schema apply --table-prefix`)."
        },
    )
    subscription: str = field(
        default="",
        metadata={
            "help": "Pull events from this Pub/Sub subscription (projects/P/subscriptions/S)."
        },
    )
    dead_letter_topic: str = field(
        default="",
        metadata={"help": "Publish poison pulled events here (else the dead-letter table)."},
    )
    done_topic: str = field(
        default="",
        metadata={
            "help": "Publish done-notifications to this Pub/Sub topic (projects/P/topics/T)."
        },
    )
    control_topic: str = field(
        default="",
        metadata={
            "help": "Publish resume and cancel notices to this Pub/Sub topic (projects/P/topics/T)."
        },
    )
    max_outstanding_messages: int = field(
        default=1000, metadata={"help": "Pull flow control: messages held at once."}
    )
    db: str = field(
        default="tracker.db",
        metadata={"help": "SQLite file (WAL mode); :memory: for a throwaway store."},
    )
    http_host: str = field(
        default="127.0.0.1",
        metadata={"help": "Address of the HTTP server (events, push, Operations HTTP/JSON)."},
    )
    http_port: int = field(
        default=8080, metadata={"help": "Port of the HTTP server; 0 picks a free one."}
    )
    grpc_host: str = field(
        default="127.0.0.1", metadata={"help": "Address of the gRPC Operations service."}
    )
    grpc_port: int = field(
        default=8081,
        metadata={"help": "Port of the gRPC server; 0 picks a free one, -1 turns gRPC off."},
    )
    strict: bool = field(
        default=False,
        metadata={"help": "Reject events for unknown operations unless they are `created` events."},
    )
    name_pattern: str = field(
        default=DEFAULT_NAME_PATTERN,
        metadata={"help": "Regular expression every operation name must match."},
    )
    proto_descriptors: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "FileDescriptorSet files (or folders of *.binpb) of the producers' own"
            " metadata and response types; repeatable (schemas/types/ is always read)."
        },
    )
    max_event_bytes: int = field(
        default=DEFAULT_MAX_EVENT_BYTES,
        metadata={"help": "Largest accepted event (attributes and data), in bytes; at most 2 MiB."},
    )
    max_wait_seconds: float = field(
        default=DEFAULT_MAX_WAIT_SECONDS,
        metadata={"help": "Longest WaitOperation; a longer or unset timeout is cut to this."},
    )
    wake_poll_seconds: float = field(
        default=0.1,
        metadata={
            "help": "While anyone waits (WaitOperation, :watch), read the watched operations"
            " this often, so changes other tracker instances apply wake them; 0: off."
        },
    )
    watch_keepalive_seconds: float = field(
        default=15.0,
        metadata={"help": "A comment on an idle :watch stream this often, so proxies keep it."},
    )
    push_audience: str = field(
        default="",
        metadata={
            "help": "Accept Google-signed ID tokens for this audience on the push route"
            " (the push subscription's audience); needs --push-service-account."
        },
    )
    push_service_account: str = field(
        default="",
        metadata={"help": "The push subscription's service account: it alone holds pubsub.push."},
    )
    auth_audience: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Accept Google-signed ID tokens for this audience on every route; repeatable"
            " (environment: space-separated)."
        },
    )
    auth_tokens_file: str = field(
        default="",
        metadata={
            "help": "Accept the static bearer tokens whose SHA-256 digests this TOML file holds"
            ' (NAME = "sha256:..."; `tracker auth hash-token` prints one).'
        },
    )
    auth_policy: str = field(
        default="",
        metadata={
            "help": "TOML file granting permissions to members"
            ' ("operations.read" = ["domain:example.com"]).'
        },
    )
    grant: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Grant PERMISSION=MEMBER (e.g. events.publish=token:ci); repeatable"
            " (environment: space-separated)."
        },
    )
    grant_scope: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Scope MEMBER=PREFIX: that member's permissions reach only operations whose"
            " names start with PREFIX (e.g. projects/billing/); repeatable."
        },
    )
    allow_unauthenticated: bool = field(
        default=False,
        metadata={
            "help": "Let anyone who reaches the ports do anything: for platforms that check"
            " callers in front of the tracker (Cloud Run IAM)."
        },
    )
    auth_certs_url: str = field(
        default=GOOGLE_CERTS_URL,
        metadata={"help": "Where Google's ID-token signing certificates are published."},
    )
    auth_certs_refetch_seconds: float = field(
        default=60.0,
        metadata={
            "help": "A token naming an unknown key id refetches the certificates at most"
            " this often."
        },
    )
    sweep_seconds: float = field(
        default=1.0,
        metadata={"help": "How often deadlines, heartbeat timeouts and retention are checked."},
    )
    notify_retry_initial_seconds: float = field(
        default=0.5,
        metadata={
            "help": "Longest wait before the first retry of a failed done-notification;"
            " doubles per attempt (full jitter)."
        },
    )
    notify_retry_max_seconds: float = field(
        default=300.0,
        metadata={"help": "Longest wait between two attempts of a done-notification."},
    )
    notify_max_attempts: int = field(
        default=12,
        metadata={
            "help": "Attempts before a done-notification is given up and kept as a failed"
            " notification."
        },
    )
    webhook_secret_file: str = field(
        default="",
        metadata={
            "help": "Sign webhooks with the secrets in this file (whsec_<base64>, one a line;"
            " two while rotating, the first signs too); turns webhooks on."
        },
    )
    webhook_secrets: tuple[str, ...] = field(
        default=(),
        repr=False,
        metadata={"env_only": WEBHOOK_SECRETS_ENV},  # never a flag: argv is visible
    )
    webhook_subscriptions: str = field(
        default="",
        metadata={
            "help": "TOML file of server-level webhook subscriptions ([[subscription]] name,"
            " url, filter, notices)."
        },
    )
    webhook_allow_http: bool = field(
        default=False, metadata={"help": "Let webhooks go to http:// URLs, not only https://."}
    )
    webhook_allow_private: bool = field(
        default=False,
        metadata={
            "help": "Let webhooks go to loopback, private and link-local addresses (refused"
            " by default: SSRF)."
        },
    )
    webhook_allow_host: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Webhooks go only to this host (or *.suffix); repeatable (environment:"
            " space-separated); none: any public host."
        },
    )
    webhook_timeout_seconds: float = field(
        default=10.0,
        metadata={"help": "Longest webhook delivery: resolve, connect, send and read the answer."},
    )
    done_ttl_days: float = field(
        default=30.0, metadata={"help": "Done operations are deleted this long after they end."}
    )
    history_per_operation: int = field(
        default=1000,
        metadata={"help": "Events kept in each operation's history (the newest); 0 keeps none."},
    )
    dead_letter_retention_days: float = field(
        default=30.0,
        metadata={"help": "Dead letters are deleted this long after they were received."},
    )
    log_level: str = field(default="info", metadata={"help": "debug, info, warning or error."})
    otel_exporter: str = field(
        default="none",
        metadata={
            "help": "Export OpenTelemetry spans: none, console (stdout) or otlp"
            " (OTEL_EXPORTER_OTLP_* environment); console and otlp need the tracing extra."
        },
    )

    def validate(self) -> Config:
        """Raise ConfigError with one clear line for the first bad setting."""
        for port_name in ("http_port", "grpc_port"):
            port = getattr(self, port_name)
            low = -1 if port_name == "grpc_port" else 0
            if not low <= port <= 65535:
                raise ConfigError(
                    f"--{_flag(port_name)}: {port} is not a port number ({low}..65535)"
                )
        check_prefix(self.table_prefix)
        try:
            re.compile(self.name_pattern)
        except re.error as exc:
            raise ConfigError(f"--name-pattern: not a regular expression: {exc}") from None
        if not 1024 <= self.max_event_bytes <= MAX_EVENT_BYTES_LIMIT:
            # Above the limit, an operation's state could outgrow a Spanner cell and its
            # done-notification a Pub/Sub message (tracker/events.py).
            raise ConfigError(
                f"--max-event-bytes: {self.max_event_bytes} is not in"
                f" 1024..{MAX_EVENT_BYTES_LIMIT} (what Spanner and Pub/Sub can hold)"
            )
        if self.sweep_seconds <= 0:
            raise ConfigError("--sweep-seconds: must be positive")
        if self.done_ttl_days <= 0:
            raise ConfigError("--done-ttl-days: must be positive")
        if not 0 <= self.history_per_operation <= 100_000:
            raise ConfigError("--history-per-operation: must be 0 (off) to 100000")
        if self.dead_letter_retention_days <= 0:
            raise ConfigError("--dead-letter-retention-days: must be positive")
        if self.notify_retry_initial_seconds <= 0:
            raise ConfigError("--notify-retry-initial-seconds: must be positive")
        if self.notify_retry_max_seconds < self.notify_retry_initial_seconds:
            raise ConfigError(
                "--notify-retry-max-seconds: must be at least --notify-retry-initial-seconds"
            )
        if self.notify_max_attempts < 1:
            raise ConfigError("--notify-max-attempts: must be at least 1")
        if self.watch_keepalive_seconds <= 0:
            raise ConfigError("--watch-keepalive-seconds: must be positive")
        if not 0 <= self.wake_poll_seconds <= 60:
            raise ConfigError("--wake-poll-seconds: must be 0 (off) to 60")
        if self.max_wait_seconds <= 0:
            raise ConfigError("--max-wait-seconds: must be positive")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(
                f"--log-level: {self.log_level!r} is not debug, info, warning or error"
            )
        if self.otel_exporter not in ("none", "console", "otlp"):
            raise ConfigError(
                f"--otel-exporter: {self.otel_exporter!r} is not none, console or otlp"
            )
        if self.store not in ("sqlite", "spanner"):
            raise ConfigError(f"--store: {self.store!r} is not sqlite or spanner")
        if self.store == "spanner" and not _SPANNER_DB.fullmatch(self.spanner_database):
            raise ConfigError(
                "--spanner-database: needs projects/P/instances/I/databases/D with --store spanner"
            )
        if self.subscription and not _SUBSCRIPTION.fullmatch(self.subscription):
            raise ConfigError("--subscription: needs projects/P/subscriptions/S")
        for flag, topic in (
            ("dead-letter-topic", self.dead_letter_topic),
            ("done-topic", self.done_topic),
            ("control-topic", self.control_topic),
        ):
            if topic and not _TOPIC.fullmatch(topic):
                raise ConfigError(f"--{flag}: needs projects/P/topics/T")
        if self.max_outstanding_messages < 1:
            raise ConfigError("--max-outstanding-messages: must be at least 1")
        self._validate_auth()
        self._validate_webhooks()
        if self.store == "sqlite" and self.db != ":memory:":
            parent = Path(self.db).expanduser().resolve().parent
            if not parent.is_dir():
                raise ConfigError(f"--db: folder {str(parent)!r} does not exist")
        return self

    @property
    def authenticated(self) -> bool:
        """Whether any way to authenticate callers is configured."""
        return bool(self.auth_audience or self.auth_tokens_file or self.push_audience)

    def _validate_auth(self) -> None:
        if self.push_service_account and not self.push_audience:
            raise ConfigError("--push-service-account: needs --push-audience too")
        if self.push_audience and not self.push_service_account:
            # Any Google account can mint an ID token for any audience: the audience alone
            # proves nothing about who sends the push.
            raise ConfigError(
                "--push-audience: needs --push-service-account (the push subscription's"
                " service account); any Google account can mint a token for any audience"
            )
        if self.allow_unauthenticated and (self.authenticated or self.grant or self.auth_policy):
            raise ConfigError(
                "--allow-unauthenticated: cannot be combined with authentication settings"
                " (--auth-audience, --auth-tokens-file, --push-audience, --grant, --auth-policy)"
            )
        if (self.grant or self.auth_policy or self.grant_scope) and not self.authenticated:
            raise ConfigError(
                "--grant/--auth-policy: grant to members nobody can prove to be; set"
                " --auth-audience or --auth-tokens-file too (or grant allUsers with"
                " --allow-unauthenticated)"
            )
        if not self.authenticated and not self.allow_unauthenticated:
            exposed = [
                f"{flag} {host}"
                for flag, host, on in (
                    ("--http-host", self.http_host, True),
                    ("--grpc-host", self.grpc_host, self.grpc_port >= 0),
                )
                if on and not is_loopback(host)
            ]
            if exposed:
                raise ConfigError(
                    f"{', '.join(exposed)}: without authentication the tracker serves loopback"
                    " only; configure --auth-audience / --auth-tokens-file, or pass"
                    " --allow-unauthenticated if something in front checks callers"
                )

    @property
    def webhooks(self) -> bool:
        """Whether a webhook secret is configured (which turns webhooks on)."""
        return bool(self.webhook_secret_file or self.webhook_secrets)

    def _validate_webhooks(self) -> None:
        if self.webhook_timeout_seconds <= 0:
            raise ConfigError("--webhook-timeout-seconds: must be positive")
        for host in self.webhook_allow_host:
            if not _ALLOW_HOST.fullmatch(host):
                raise ConfigError(
                    f"--webhook-allow-host: {host[:100]!r} is not a host name or *.suffix"
                )
        if not self.webhooks:
            flags = [
                flag
                for flag, on in (
                    ("--webhook-subscriptions", self.webhook_subscriptions),
                    ("--webhook-allow-http", self.webhook_allow_http),
                    ("--webhook-allow-private", self.webhook_allow_private),
                    ("--webhook-allow-host", self.webhook_allow_host),
                )
                if on
            ]
            if flags:
                raise ConfigError(
                    f"{flags[0]}: webhooks are off; give them a secret with"
                    " --webhook-secret-file or TRACKER_WEBHOOK_SECRETS"
                )
            return
        from tracker.notify import webhooks  # reads the files: errors at start-up

        webhooks.read_secrets(self.webhook_secret_file, self.webhook_secrets)
        if self.webhook_subscriptions:
            webhooks.read_subscriptions(self.webhook_subscriptions, self.webhook_policy)

    @property
    def webhook_policy(self) -> TargetPolicy:
        return TargetPolicy(
            allow_http=self.webhook_allow_http,
            allow_private=self.webhook_allow_private,
            allow_hosts=self.webhook_allow_host,
        )

    @property
    def rules(self) -> EventRules:
        return EventRules(name_pattern=self.name_pattern, max_event_bytes=self.max_event_bytes)

    @property
    def retry(self) -> RetryPolicy:
        """How the outbox dispatcher retries done-notifications, and when it gives up."""
        return RetryPolicy(
            initial_seconds=self.notify_retry_initial_seconds,
            max_seconds=self.notify_retry_max_seconds,
            max_attempts=self.notify_max_attempts,
        )


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or name to bind) reaches this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that resolves elsewhere: assume exposed


_SPANNER_DB = re.compile(r"projects/[^/]+/instances/[^/]+/databases/[^/]+")
_SUBSCRIPTION = re.compile(r"projects/[^/]+/subscriptions/[^/]+")
_TOPIC = re.compile(r"projects/[^/]+/topics/[^/]+")
_ALLOW_HOST = re.compile(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,252})|\[?[0-9A-Fa-f:.]+\]?")


def _flag(name: str) -> str:
    return name.replace("_", "-")


@dataclass(frozen=True)
class Setting:
    name: str
    flag: str
    envvar: str
    type: type
    default: Any
    help: str


SETTINGS: list[Setting] = [
    Setting(
        name=f.name,
        flag=f"--{_flag(f.name)}",
        envvar=f"TRACKER_{f.name.upper()}",
        type=tuple if isinstance(f.default, tuple) else type(f.default),
        default=f.default,
        help=str(f.metadata.get("help", "")),
    )
    for f in fields(Config)
    if "env_only" not in f.metadata
]
