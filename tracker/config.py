"""Settings of `tracker serve`: each a flag with a TRACKER_* environment twin.

`SETTINGS` is the single list; the CLI builds its options from it and the README
table is checked against it by a test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tracker.errors import ConfigError
from tracker.events import (
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_NAME_PATTERN,
    MAX_EVENT_BYTES_LIMIT,
    EventRules,
)


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
    max_event_bytes: int = field(
        default=DEFAULT_MAX_EVENT_BYTES,
        metadata={"help": "Largest accepted event (attributes and data), in bytes; at most 2 MiB."},
    )
    max_wait_seconds: float = field(
        default=300.0,
        metadata={"help": "Longest WaitOperation; a longer or unset timeout is cut to this."},
    )
    push_audience: str = field(
        default="",
        metadata={"help": "Verify Pub/Sub push OIDC tokens for this audience (off when empty)."},
    )
    push_service_account: str = field(
        default="",
        metadata={"help": "Push tokens must be for this service account email."},
    )
    push_certs_url: str = field(
        default="https://www.googleapis.com/oauth2/v1/certs",
        metadata={"help": "Where the token signing certificates are published."},
    )
    sweep_seconds: float = field(
        default=1.0,
        metadata={"help": "How often deadlines, heartbeat timeouts and retention are checked."},
    )
    done_ttl_days: float = field(
        default=30.0, metadata={"help": "Done operations are deleted this long after they end."}
    )
    log_level: str = field(default="info", metadata={"help": "debug, info, warning or error."})

    def validate(self) -> Config:
        """Raise ConfigError with one clear line for the first bad setting."""
        for port_name in ("http_port", "grpc_port"):
            port = getattr(self, port_name)
            low = -1 if port_name == "grpc_port" else 0
            if not low <= port <= 65535:
                raise ConfigError(
                    f"--{_flag(port_name)}: {port} is not a port number ({low}..65535)"
                )
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
        if self.max_wait_seconds <= 0:
            raise ConfigError("--max-wait-seconds: must be positive")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(
                f"--log-level: {self.log_level!r} is not debug, info, warning or error"
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
        ):
            if topic and not _TOPIC.fullmatch(topic):
                raise ConfigError(f"--{flag}: needs projects/P/topics/T")
        if self.max_outstanding_messages < 1:
            raise ConfigError("--max-outstanding-messages: must be at least 1")
        if self.push_service_account and not self.push_audience:
            raise ConfigError("--push-service-account: needs --push-audience too")
        if self.store == "sqlite" and self.db != ":memory:":
            parent = Path(self.db).expanduser().resolve().parent
            if not parent.is_dir():
                raise ConfigError(f"--db: folder {str(parent)!r} does not exist")
        return self

    @property
    def rules(self) -> EventRules:
        return EventRules(name_pattern=self.name_pattern, max_event_bytes=self.max_event_bytes)


_SPANNER_DB = re.compile(r"projects/[^/]+/instances/[^/]+/databases/[^/]+")
_SUBSCRIPTION = re.compile(r"projects/[^/]+/subscriptions/[^/]+")
_TOPIC = re.compile(r"projects/[^/]+/topics/[^/]+")


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
        type=type(f.default),
        default=f.default,
        help=str(f.metadata.get("help", "")),
    )
    for f in fields(Config)
]
