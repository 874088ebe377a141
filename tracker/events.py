"""The tracker's event model: kinds, the typed `Event`, limits, and data validation.

All validation of what an event may hold lives here, once: names, sizes, times, the
data of each kind. How events travel (the CloudEvents bindings for HTTP and Pub/Sub,
inbound and outbound, and the done-notification format) is `tracker.bindings`.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from google.protobuf import descriptor_pool, json_format, message_factory, struct_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2  # noqa: F401  (standard Status details in JSON)

from tracker.errors import InvalidEvent, clip, echo
from tracker.resource_names import PARENT_PATTERN
from tracker.v1 import events_pb2

TYPE_PREFIX: Final = "tracker.operation.v1."
SEQUENCE_ATTR: Final = "sequence"
# The run of the work an event comes from (1, 2, ...): ordered before the sequence, so a
# restarted worker numbering its events from 1 again is newer than the run before.
ATTEMPT_ATTR: Final = "attempt"
MAX_ATTEMPT: Final = 2**31 - 1
STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"
BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json"
JSON_CONTENT_TYPE: Final = "application/json"
PROTOBUF_CONTENT_TYPE: Final = "application/protobuf"
PROTOBUF_TYPES: Final = frozenset({"application/protobuf", "application/x-protobuf"})
_JSON_TYPE = re.compile(r"^(application|text)/([a-zA-Z0-9.\-]+\+)?json$")
# Every segment has a character other than "." (so "." and ".." segments are refused);
# written without alternation or lookahead so that RE2 and ECMA-262 read it the same way.
# An optional parent resource first, as Google APIs name operations
# (`projects/P/locations/L/operations/ID`, tracker.resource_names).
DEFAULT_NAME_PATTERN: Final = (
    "^"
    + PARENT_PATTERN
    + r"operations/\.*[A-Za-z0-9_~-][A-Za-z0-9._~-]*(/\.*[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*$"
)

# ---- limits ------------------------------------------------------------------------------
# What every store and the completion topic can hold, checked once, here, when an event is
# parsed (schemas/README.md "Limits"). Never looser than the Spanner columns of
# schemas/spanner/0001_init.sql: STRING(N) counts characters, a key and a Pub/Sub attribute
# count UTF-8 bytes, so each limit is counted the way the tightest holder counts.
#
# Operations.key STRING(1024); the name is also the ce-subject and `operation` attribute of
# a done-notification (Pub/Sub: attribute values <= 1024 bytes).
MAX_NAME_BYTES: Final = 1024
# AppliedEvents.EventId STRING(256).
MAX_ID_CHARS: Final = 256
# AppliedEvents.Source is STRING(MAX), but (OperationKey, Source, EventId) is a primary key
# and Spanner keys are at most 8 KiB with their encoding: 1024 + 4096 + 256 * 4 bytes of
# name, source and id leave 2 KiB of it unused.
MAX_SOURCE_BYTES: Final = 4096
# Operations.OperationType STRING(256) (and <= 1024 bytes as a Pub/Sub attribute).
MAX_OPERATION_TYPE_CHARS: Final = 256
# Operations.Parent STRING(1024), and the `parent` Pub/Sub attribute (<= 1024 bytes).
MAX_PARENT_BYTES: Final = 1024
# Labels become Pub/Sub attributes `label_<key>` of the done-notification: at most 100
# attributes (12 are the tracker's), names <= 256 bytes (one byte per key character once
# sanitized), values <= 1024 bytes.
MAX_LABELS: Final = 64
MAX_LABEL_KEY_CHARS: Final = 256 - len("label_")
MAX_LABEL_VALUE_BYTES: Final = 1024
# Nesting of JSON data (the data object is level 1). A google.protobuf.Struct costs three
# message levels per JSON level and protobuf readers stop at 100 levels: deeper metadata
# or a deeper response could be stored but never read back.
MAX_DATA_DEPTH: Final = 32
DEFAULT_MAX_EVENT_BYTES: Final = 1024 * 1024
# The largest --max-event-bytes. An operation's state holds at most four events' worth of
# data (labels, message, metadata, result): 4 x 2 MiB stays below Spanner's 10 MiB cell
# limit, and the served Operation (at most three) below Pub/Sub's 10 MB message limit.
MAX_EVENT_BYTES_LIMIT: Final = 2 * 1024 * 1024
# A batch request is applied in one transaction, which writes each byte of event data at
# most four times (state and Operation, outbox state and payload): 16 MiB stays below
# Spanner's 100 MB commit limit whatever --max-event-bytes is.
MAX_BATCH_BYTES: Final = 16 * 1024 * 1024


class Kind(enum.Enum):
    """Event kinds; the CloudEvents type is TYPE_PREFIX + value."""

    CREATED = "created"
    PROGRESS = "progress"
    CHECKPOINT = "checkpoint"
    HEARTBEAT = "heartbeat"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __init__(self, value: str) -> None:
        # Plain attributes, not properties: both are read several times per event, and
        # a property of an enum member (a hash of it in a set) costs ~10x an attribute.
        self.type: str = TYPE_PREFIX + value  # the CloudEvents type
        self.terminal: bool = value in ("succeeded", "failed", "cancelled")

    @classmethod
    def from_type(cls, ce_type: str) -> Kind:
        kind = _BY_TYPE.get(ce_type)
        if kind is not None:
            return kind
        if ce_type.startswith(TYPE_PREFIX):
            try:
                return cls(ce_type[len(TYPE_PREFIX) :])
            except ValueError:
                pass
        known = ", ".join(k.type for k in cls)
        raise InvalidEvent("unknown_type", f"unknown event type {echo(ce_type)}; known: {known}")


_BY_TYPE: Final = {k.type: k for k in Kind}

DATA_MESSAGES: Final[dict[Kind, type[Message]]] = {
    Kind.CREATED: events_pb2.Created,
    Kind.PROGRESS: events_pb2.Progress,
    Kind.CHECKPOINT: events_pb2.Checkpoint,
    Kind.HEARTBEAT: events_pb2.Heartbeat,
    Kind.SUCCEEDED: events_pb2.Succeeded,
    Kind.FAILED: events_pb2.Failed,
    Kind.CANCELLED: events_pb2.Cancelled,
}


@dataclass(frozen=True)
class Event:
    """A validated tracker event.

    `time` is the producer's event time, or the receive time when it sent none.
    Identity for de-duplication is (operation, source, id).
    """

    id: str
    source: str
    kind: Kind
    operation: str
    time: datetime
    data: Message
    sequence: int | None = None
    extensions: Mapping[str, str] = field(default_factory=dict)
    attempt: int | None = None  # None reads as 1, the first run
    # The CloudEvents distributed-tracing extension (W3C trace context), when the event
    # carried a valid one (`valid_traceparent`); once ingested, the context its processing
    # continues in (docs/api.md#tracing). Not part of its identity.
    traceparent: str | None = field(default=None, compare=False)
    tracestate: str | None = field(default=None, compare=False)
    # It carried a traceparent (or tracestate) that was not valid, so it was left out.
    trace_dropped: bool = field(default=False, compare=False)
    # A create that must not find the operation there already (ALREADY_EXISTS, AIP-133):
    # set by `Tracker.create` only; no event from outside carries it.
    create_only: bool = field(default=False, compare=False)

    @property
    def run(self) -> int:
        """The attempt this event belongs to: 1 when it names none."""
        return self.attempt or 1

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.operation, self.source, self.id)


TRACEPARENT_ATTR: Final = "traceparent"
TRACESTATE_ATTR: Final = "tracestate"
# W3C Trace Context (https://www.w3.org/TR/trace-context/): version-traceid-parentid-flags,
# lower-case hex. Version ff is invalid; a later version may append "-" fields.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE: Final = "0" * 32
_ZERO_SPAN: Final = "0" * 16
# A tracestate is at most 32 list members; 512 characters is what every system must keep
# (the W3C limit for propagation). Printable ASCII only.
MAX_TRACESTATE_CHARS: Final = 512
_TRACESTATE = re.compile(r"[\x20-\x7e]*")


def valid_traceparent(value: object) -> bool:
    """Whether `value` is a W3C traceparent a tracer can continue."""
    if not isinstance(value, str) or len(value) > 256:
        return False
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return False
    version, trace_id, span_id, _, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return False
    return trace_id != _ZERO_TRACE and span_id != _ZERO_SPAN


def valid_tracestate(value: object) -> bool:
    """Whether `value` is a tracestate worth carrying along (printable ASCII, at most 512
    characters, at most 32 members)."""
    return (
        isinstance(value, str)
        and len(value) <= MAX_TRACESTATE_CHARS
        and value.count(",") < 32
        and _TRACESTATE.fullmatch(value) is not None
    )


@dataclass(frozen=True)
class EventRules:
    """What the deployment accepts; from config."""

    name_pattern: str = DEFAULT_NAME_PATTERN
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    # Whether `created` may ask for webhooks: off when no webhook sink would deliver them
    # (the `Tracker` sets it from its sinks), so that they are refused, not dropped.
    webhooks: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "_name_re", re.compile(self.name_pattern))

    @property
    def max_batch_bytes(self) -> int:
        """The largest batch request: 16 events' worth, at most MAX_BATCH_BYTES."""
        return min(self.max_event_bytes * BATCH_FACTOR, MAX_BATCH_BYTES)

    def is_name(self, name: str) -> bool:
        """Whether `name` is an operation name this deployment accepts."""
        try:
            self.check_name(name)
        except InvalidEvent:
            return False
        return True

    def check_name(self, name: str) -> None:
        name_re: re.Pattern[str] = self._name_re  # type: ignore[attr-defined]
        # The length first: the pattern never runs on unbounded input.
        size = text_bytes(name, "bad_name", "operation name")
        if size > MAX_NAME_BYTES or not name_re.fullmatch(name):
            raise InvalidEvent(
                "bad_name",
                f"operation name {echo(name)} does not match {echo(self.name_pattern)}"
                f" (at most {MAX_NAME_BYTES} bytes)",
            )


BATCH_FACTOR: Final = 16  # a batch may be this many times the single-event limit
DEFAULT_RULES: Final = EventRules()


def text_bytes(value: str, reason: str, what: str) -> int:
    """UTF-8 size of caller text; text that has no UTF-8 form (a lone surrogate from a JSON
    escape) is refused here, since no store can hold it."""
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidEvent(reason, f"{what} is not valid Unicode (unpaired surrogate)") from None


def check_text(
    value: str, reason: str, what: str, *, max_bytes: int = 0, max_chars: int = 0
) -> None:
    size = text_bytes(value, reason, what)
    if max_bytes and size > max_bytes:
        raise InvalidEvent(reason, f"{what} is {size} bytes; at most {max_bytes} are accepted")
    if max_chars and len(value) > max_chars:
        raise InvalidEvent(
            reason, f"{what} is {len(value)} characters; at most {max_chars} are accepted"
        )


_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def parse_time(value: object, what: str = "time") -> datetime:
    """An RFC 3339 time (offset required, at most 9 fractional digits) as a UTC datetime.

    The instant must lie in 0001-01-01..9999-12-31 UTC (what protobuf Timestamps, Python
    and Spanner hold): '9999-12-31T23:59:59-23:59' is a valid RFC 3339 string past it.
    """
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise InvalidEvent(
            "bad_time", f"{what} {echo(value)} is not an RFC 3339 time like 2024-06-01T12:00:00Z"
        )
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidEvent(
            "bad_time",
            f"{what} {echo(value)} is not a time between 0001-01-01T00:00:00Z"
            " and 9999-12-31T23:59:59Z",
        ) from None


def json_too_deep(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest deeper than `limit` (the value itself is level 1)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def load_json(body: bytes | str, reason: str, what: str) -> Any:
    """json.loads, with input nested beyond the parser's stack as a clear rejection."""
    try:
        return json.loads(body)
    except RecursionError:
        raise InvalidEvent("too_deep", f"{what} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(reason, f"{what} is not valid JSON: {clip(exc)}") from None


def media_type(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def header(headers: Mapping[str, str], name: str) -> str | None:
    lname = name.lower()
    for key, value in headers.items():
        if key.lower() == lname:
            return value
    return None


_UNKNOWN_TYPE: Final = re.compile(r"Can not find message descriptor by type_url: (\S+?)(?: at |$)")


def _check_known_any(kind: Kind, message: Message) -> None:
    """A protobuf event's Any of a type this process knows must read as that type (one
    it does not know is kept as it came: `tracker.producer_types`)."""
    for name in _ANY_FIELDS.get(kind, ()):
        if not message.HasField(name):
            continue
        value = getattr(message, name)
        try:
            descriptor = descriptor_pool.Default().FindMessageTypeByName(
                value.type_url.rpartition("/")[2]
            )
        except KeyError:
            continue
        try:
            message_factory.GetMessageClass(descriptor).FromString(value.value)
        except (DecodeError, RecursionError) as exc:
            raise InvalidEvent(
                "invalid_data",
                f"{kind.value} {name} does not read as {descriptor.full_name}: {clip(exc)}",
            ) from None


def _wrap_plain_any(value: Any) -> Any:
    """A JSON object without "@type" in an Any field is taken as google.protobuf.Struct."""
    if isinstance(value, dict) and "@type" not in value:
        return {"@type": "type.googleapis.com/google.protobuf.Struct", "value": value}
    return value


_ANY_FIELDS: Final = {
    Kind.CREATED: ("metadata",),
    Kind.PROGRESS: ("metadata",),
    Kind.SUCCEEDED: ("response",),
}


def decode_data(kind: Kind, content_type: str | None, data: Any, *, fast: bool = True) -> Message:
    """Decode event data (bytes, str or already-parsed JSON) into the kind's message
    (`fast=False`: always through json_format, the reference for `_plain_message`)."""
    message = DATA_MESSAGES[kind]()
    media = media_type(content_type) or JSON_CONTENT_TYPE
    if data is None or data == b"" or data == "":
        pass
    elif media in PROTOBUF_TYPES:
        if isinstance(data, str):
            raise InvalidEvent("invalid_data", f"{media} data must be bytes (use data_base64)")
        try:
            message.ParseFromString(bytes(data))
        except (DecodeError, TypeError, ValueError) as exc:
            raise InvalidEvent(
                "invalid_data", f"data is not a valid {kind.value} message: {clip(exc)}"
            ) from None
        _check_known_any(kind, message)
    elif _JSON_TYPE.match(media):
        if isinstance(data, (bytes, str)):
            data = load_json(data, "malformed_json", "data")
        if not isinstance(data, dict):
            raise InvalidEvent("invalid_data", f"{kind.value} data must be a JSON object")
        plain = _plain_message(message, data) if fast else None  # 2 levels: never too deep
        if plain is not None:
            _check_data(kind, plain)
            return plain
        if json_too_deep(data, MAX_DATA_DEPTH):
            raise InvalidEvent(
                "too_deep", f"data nests arrays and objects deeper than {MAX_DATA_DEPTH} levels"
            )
        data = dict(data)
        for name in _ANY_FIELDS.get(kind, ()):
            if name in data:
                data[name] = _wrap_plain_any(data[name])
        try:
            json_format.ParseDict(data, message)
        except json_format.ParseError as exc:
            unknown = _UNKNOWN_TYPE.search(str(exc))
            if unknown is not None:
                raise InvalidEvent(
                    "invalid_data",
                    f"{kind.value} data: {echo(unknown.group(1))} is a message type this"
                    " tracker does not know; register its FileDescriptorSet with"
                    " --proto-descriptors (docs/publishing.md, Your own message types)",
                ) from None
            raise InvalidEvent("invalid_data", f"{kind.value} data: {clip(exc, 300)}") from None
        except Exception as exc:
            # Whatever else the proto3 JSON parser raises is about the data too: it raises
            # AttributeError or KeyError for an Any whose "@type" is not a string or that
            # lacks "value", OverflowError for an integer too large for a double.
            raise InvalidEvent(
                "invalid_data",
                f"{kind.value} data does not fit {message.DESCRIPTOR.full_name} (an Any needs"
                f' a string "@type", and "value" for a well-known type): {clip(exc, 200)}',
            ) from None
    else:
        raise InvalidEvent(
            "bad_content_type",
            f"unsupported datacontenttype {echo(media)};"
            " use application/json or application/protobuf",
        )
    _check_data(kind, message)
    return message


# ---- plain data, set without json_format ---------------------------------------------
#
# Most event data is a few top-level strings, a percent and labels. The proto3 JSON parser
# spends most of an event's parse time on those; `_plain_message` sets them directly, and
# only when the JSON parser would accept them as they are and set the same fields: a known
# field name (proto or JSON spelling, each field once), an ASCII string for a string field
# (no surrogate to refuse), a finite number for a double, a JSON object of ASCII strings
# for a map<string, string>. Anything else (null, a nested message, an Any, an unknown
# field, a wrong type) goes to json_format, whose answer, accepting or refusing with its
# message, is the one the caller gets. tests/unit/test_fast_parse.py holds both to the
# same results.

_STRING, _DOUBLE, _STRING_MAP = 1, 2, 3
_DOUBLE_EXACT: Final = 2**53  # integers json_format turns into the same double


def _plain_fields(message_type: type[Message]) -> dict[str, tuple[str, int]]:
    fields: dict[str, tuple[str, int]] = {}
    for f in message_type.DESCRIPTOR.fields:
        entry = f.message_type
        if entry is not None and entry.GetOptions().map_entry:
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            if key.type != f.TYPE_STRING or value.type != f.TYPE_STRING:
                continue
            how = _STRING_MAP
        elif f.is_repeated or entry is not None:
            continue
        elif f.type == f.TYPE_STRING:
            how = _STRING
        elif f.type == f.TYPE_DOUBLE:
            how = _DOUBLE
        else:
            continue
        fields[f.name] = fields[f.json_name] = (f.name, how)
    return fields


_PLAIN_FIELDS: Final = {t: _plain_fields(t) for t in DATA_MESSAGES.values()}


def _plain_value(how: int, value: Any) -> bool:
    if how == _STRING:
        return type(value) is str and value.isascii()
    if how == _DOUBLE:
        if type(value) is int:
            return -_DOUBLE_EXACT <= value <= _DOUBLE_EXACT
        return type(value) is float and math.isfinite(value)
    return type(value) is dict and all(
        type(k) is str and k.isascii() and type(v) is str and v.isascii() for k, v in value.items()
    )


def _plain_message(message: Message, data: dict[str, Any]) -> Message | None:
    """`data` set on `message` directly, or None when json_format must parse it."""
    fields = _PLAIN_FIELDS[type(message)]
    values: dict[str, Any] = {}
    for key, value in data.items():
        spec = fields.get(key)
        if spec is None or spec[0] in values or not _plain_value(spec[1], value):
            return None
        values[spec[0]] = value
    return type(message)(**values) if values else message


# google.protobuf.Timestamp and Duration ranges (google/protobuf/*.proto); the JSON parser
# checks them, the binary parser does not.
_MIN_SECONDS: Final = -62135596800  # 0001-01-01T00:00:00Z
_MAX_SECONDS: Final = 253402300799  # 9999-12-31T23:59:59Z
_MAX_DURATION_SECONDS: Final = 315576000000  # 10000 years


def _check_created(message: events_pb2.Created) -> None:
    check_text(
        message.operation_type,
        "bad_operation_type",
        "operationType",
        max_chars=MAX_OPERATION_TYPE_CHARS,
    )
    check_text(message.parent, "bad_parent", "parent", max_bytes=MAX_PARENT_BYTES)
    if len(message.labels) > MAX_LABELS:
        raise InvalidEvent(
            "too_many_labels", f"{len(message.labels)} labels; at most {MAX_LABELS} are accepted"
        )
    for key, value in message.labels.items():
        check_text(
            key, "bad_label_key", f"label key {echo(key, 40)}", max_chars=MAX_LABEL_KEY_CHARS
        )
        check_text(
            value,
            "bad_label_value",
            f"value of label {echo(key, 40)}",
            max_bytes=MAX_LABEL_VALUE_BYTES,
        )
    if message.HasField("deadline"):
        deadline = message.deadline
        if not (_MIN_SECONDS <= deadline.seconds <= _MAX_SECONDS and 0 <= deadline.nanos < 10**9):
            raise InvalidEvent(
                "invalid_data", "deadline is not a time between 0001-01-01 and 9999-12-31"
            )
    if message.HasField("heartbeat_timeout"):
        timeout = message.heartbeat_timeout
        if not (0 <= timeout.seconds <= _MAX_DURATION_SECONDS and 0 <= timeout.nanos < 10**9):
            raise InvalidEvent(
                "invalid_data",
                f"heartbeatTimeout must be a duration from 0s to {_MAX_DURATION_SECONDS}s",
            )
    _check_resumable(message)


# Resumable work (schemas/README.md "Limits"): what one operation may ask of the tracker.
MAX_ATTEMPTS: Final = 100
MAX_BACKOFF_SECONDS: Final = 7 * 24 * 3600
MAX_WEBHOOKS: Final = 8
MAX_WEBHOOK_URL_BYTES: Final = 2048
MAX_EXPECTED_CHILDREN: Final = 10**9
NOTICE_KINDS: Final = frozenset({"done", "cancel", "resume"})


def _check_duration(value: Any, name: str, upper: int) -> None:
    if not (0 <= value.seconds <= upper and 0 <= value.nanos < 10**9) or (
        value.seconds == 0 and value.nanos == 0
    ):
        raise InvalidEvent("invalid_data", f"{name} must be a duration above 0s, at most {upper}s")


def _check_resumable(message: events_pb2.Created) -> None:
    if message.HasField("retry"):
        retry = message.retry
        if not 1 <= retry.max_attempts <= MAX_ATTEMPTS:
            raise InvalidEvent("invalid_data", f"retry.maxAttempts must be in 1..{MAX_ATTEMPTS}")
        for name in ("initial_backoff", "max_backoff"):
            if retry.HasField(name):
                _check_duration(getattr(retry, name), f"retry.{name}", MAX_BACKOFF_SECONDS)
        if retry.backoff_multiplier and not 1.0 <= retry.backoff_multiplier <= 10.0:
            raise InvalidEvent("invalid_data", "retry.backoffMultiplier must be in [1, 10]")
        if any(not 1 <= code <= 16 for code in retry.retryable_status_codes):
            raise InvalidEvent(
                "invalid_data", "retry.retryableStatusCodes: only codes 1..16 (not OK)"
            )
    if not 0 <= message.children.expected <= MAX_EXPECTED_CHILDREN:
        raise InvalidEvent(
            "invalid_data", f"children.expected must be in 0..{MAX_EXPECTED_CHILDREN}"
        )
    if len(message.webhooks) > MAX_WEBHOOKS:
        raise InvalidEvent("invalid_data", f"at most {MAX_WEBHOOKS} webhooks per operation")
    for hook in message.webhooks:
        check_text(hook.url, "bad_webhook", "webhook url", max_bytes=MAX_WEBHOOK_URL_BYTES)
        if not hook.url.startswith(("https://", "http://")):
            raise InvalidEvent(
                "bad_webhook", f"webhook url {echo(hook.url)} must be an https:// URL"
            )
        unknown = set(hook.notices) - NOTICE_KINDS
        if unknown:
            raise InvalidEvent(
                "bad_webhook",
                f"webhook notices {echo(sorted(unknown))}: known are done, cancel, resume",
            )


def check_rules(event_data: Message, rules: EventRules) -> None:
    """What the deployment refuses of otherwise valid data."""
    if isinstance(event_data, events_pb2.Created) and event_data.webhooks and not rules.webhooks:
        raise InvalidEvent(
            "webhooks_disabled",
            "this tracker delivers no webhooks (no --webhook-secret-file or"
            " TRACKER_WEBHOOK_SECRETS); remove webhooks from the created event",
        )


def _check_data(kind: Kind, message: Message) -> None:
    if isinstance(message, events_pb2.Created):
        _check_created(message)
    elif isinstance(message, events_pb2.Progress):
        if not 0.0 <= message.percent <= 100.0:
            raise InvalidEvent(
                "invalid_data", f"progress percent {message.percent} not in [0, 100]"
            )
    elif isinstance(message, events_pb2.Failed) and not 1 <= message.error.code <= 16:
        raise InvalidEvent(
            "invalid_data",
            f"failed event needs error.code in 1..16 (a google.rpc.Code other than OK),"
            f" got {message.error.code}",
        )


def struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    """Convenience for producers: a dict as google.protobuf.Struct."""
    s = struct_pb2.Struct()
    s.update(dict(value))
    return s
