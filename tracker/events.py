"""CloudEvents <-> typed tracker events. All event validation lives here, once.

Inbound, every route (HTTP binary/structured/batch, Pub/Sub push and pull) turns
its bytes into `HTTPMessage`-like headers and body and calls `parse_message` or
`parse_batch`; a failure is an `InvalidEvent` with a stable `reason` keyword.
Outbound, `to_binary` / `to_structured` build the same wire forms for producers.
"""

from __future__ import annotations

import base64
import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import unquote

from cloudevents.core.bindings.http import HTTPMessage, from_binary
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2  # noqa: F401  (standard Status details in JSON)

from tracker.errors import InvalidEvent, clip, echo
from tracker.v1 import events_pb2

TYPE_PREFIX: Final = "tracker.operation.v1."
SEQUENCE_ATTR: Final = "sequence"
STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"
BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json"
JSON_CONTENT_TYPE: Final = "application/json"
PROTOBUF_CONTENT_TYPE: Final = "application/protobuf"
_PROTOBUF_TYPES: Final = frozenset({"application/protobuf", "application/x-protobuf"})
_JSON_TYPE = re.compile(r"^(application|text)/([a-zA-Z0-9.\-]+\+)?json$")
# Every segment has a character other than "." (so "." and ".." segments are refused);
# written without alternation or lookahead so that RE2 and ECMA-262 read it the same way.
DEFAULT_NAME_PATTERN: Final = (
    r"^operations/\.*[A-Za-z0-9_~-][A-Za-z0-9._~-]*(/\.*[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*$"
)
MAX_SEQUENCE: Final = 2**63 - 1

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

    @property
    def type(self) -> str:
        return TYPE_PREFIX + self.value

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    @classmethod
    def from_type(cls, ce_type: str) -> Kind:
        if ce_type.startswith(TYPE_PREFIX):
            try:
                return cls(ce_type[len(TYPE_PREFIX) :])
            except ValueError:
                pass
        known = ", ".join(k.type for k in cls)
        raise InvalidEvent("unknown_type", f"unknown event type {echo(ce_type)}; known: {known}")


_TERMINAL = frozenset({Kind.SUCCEEDED, Kind.FAILED, Kind.CANCELLED})

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

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.operation, self.source, self.id)


@dataclass(frozen=True)
class EventRules:
    """What the deployment accepts; from config."""

    name_pattern: str = DEFAULT_NAME_PATTERN
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES

    def __post_init__(self) -> None:
        object.__setattr__(self, "_name_re", re.compile(self.name_pattern))

    @property
    def max_batch_bytes(self) -> int:
        """The largest batch request: 16 events' worth, at most MAX_BATCH_BYTES."""
        return min(self.max_event_bytes * BATCH_FACTOR, MAX_BATCH_BYTES)

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


def _check_text(
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


def _media_type(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lname = name.lower()
    for key, value in headers.items():
        if key.lower() == lname:
            return value
    return None


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


def decode_data(kind: Kind, content_type: str | None, data: Any) -> Message:
    """Decode event data (bytes, str or already-parsed JSON) into the kind's message."""
    message = DATA_MESSAGES[kind]()
    media = _media_type(content_type) or JSON_CONTENT_TYPE
    if data is None or data == b"" or data == "":
        pass
    elif media in _PROTOBUF_TYPES:
        if isinstance(data, str):
            raise InvalidEvent("invalid_data", f"{media} data must be bytes (use data_base64)")
        try:
            message.ParseFromString(bytes(data))
        except (DecodeError, TypeError, ValueError) as exc:
            raise InvalidEvent(
                "invalid_data", f"data is not a valid {kind.value} message: {clip(exc)}"
            ) from None
    elif _JSON_TYPE.match(media):
        if isinstance(data, (bytes, str)):
            data = load_json(data, "malformed_json", "data")
        if not isinstance(data, dict):
            raise InvalidEvent("invalid_data", f"{kind.value} data must be a JSON object")
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


# google.protobuf.Timestamp and Duration ranges (google/protobuf/*.proto); the JSON parser
# checks them, the binary parser does not.
_MIN_SECONDS: Final = -62135596800  # 0001-01-01T00:00:00Z
_MAX_SECONDS: Final = 253402300799  # 9999-12-31T23:59:59Z
_MAX_DURATION_SECONDS: Final = 315576000000  # 10000 years


def _check_created(message: events_pb2.Created) -> None:
    _check_text(
        message.operation_type,
        "bad_operation_type",
        "operationType",
        max_chars=MAX_OPERATION_TYPE_CHARS,
    )
    _check_text(message.parent, "bad_parent", "parent", max_bytes=MAX_PARENT_BYTES)
    if len(message.labels) > MAX_LABELS:
        raise InvalidEvent(
            "too_many_labels", f"{len(message.labels)} labels; at most {MAX_LABELS} are accepted"
        )
    for key, value in message.labels.items():
        _check_text(
            key, "bad_label_key", f"label key {echo(key, 40)}", max_chars=MAX_LABEL_KEY_CHARS
        )
        _check_text(
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


def _parse_sequence(value: Any) -> int | None:
    """A decimal sequence, as a string (or a JSON integer in structured mode).

    An empty string is refused like any other non-number: absent means no sequence
    (the header or attribute left out, or JSON null in structured mode).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidEvent("bad_sequence", "sequence must be a decimal unsigned integer")
    text = str(value)
    if not (text.isascii() and text.isdigit()) or len(text) > 40 or int(text) > MAX_SEQUENCE:
        raise InvalidEvent(
            "bad_sequence", f"sequence {echo(text)} is not a decimal integer in 0..2^63-1"
        )
    return int(text)


_CORE_ATTRIBUTES: Final = frozenset(
    {
        "id",
        "source",
        "type",
        "specversion",
        "subject",
        "time",
        "datacontenttype",
        "dataschema",
        SEQUENCE_ATTR,
    }
)


def from_cloudevent(
    ce: CloudEvent,
    raw_data: Any,
    rules: EventRules = DEFAULT_RULES,
    *,
    received: datetime | None = None,
    when: datetime | None = None,
) -> Event:
    """Validate a parsed CloudEvent and build the typed event.

    `raw_data` is the undecoded data (bytes from a binary-mode body, or whatever the
    structured JSON held) so that protobuf bodies are never mangled by text decoding.
    `when` is the event's own time, already parsed (None: it sent none, `received` is used).
    """
    attrs = ce.get_attributes()
    event_id = str(attrs.get("id") or "")
    _check_text(event_id, "bad_id", "id", max_chars=MAX_ID_CHARS)
    source = str(attrs.get("source") or "")
    _check_text(source, "bad_source", "source", max_bytes=MAX_SOURCE_BYTES)
    kind = Kind.from_type(str(attrs.get("type")))
    subject = attrs.get("subject")
    if not subject:
        raise InvalidEvent(
            "missing_subject", "subject (the operation name) is required", event_id=event_id
        )
    rules.check_name(str(subject))
    extensions = {k: str(v) for k, v in attrs.items() if k not in _CORE_ATTRIBUTES}
    try:
        sequence = _parse_sequence(attrs.get(SEQUENCE_ATTR))
        data = decode_data(kind, attrs.get("datacontenttype"), raw_data)
    except InvalidEvent as exc:
        exc.event_id = event_id
        raise
    return Event(
        id=event_id,
        source=source,
        kind=kind,
        operation=str(subject),
        time=(when or received or datetime.now(UTC)).astimezone(UTC),
        data=data,
        sequence=sequence,
        extensions=extensions,
    )


def _validation_error(exc: Exception) -> InvalidEvent:
    text = str(exc)
    reason = "invalid_attributes"
    for attr in ("subject", "id", "source", "type"):
        if f"'{attr}'" in text:
            reason = f"missing_{attr}"
            break
    return InvalidEvent(reason, f"invalid CloudEvent attributes: {text}")


def _require(present: bool, attr: str) -> None:
    # The CloudEvents SDK would invent a missing id or time; an event must bring its id.
    if not present:
        raise InvalidEvent(f"missing_{attr}", f"CloudEvent attribute {echo(attr)} is required")


def _structured(obj: Any, rules: EventRules, received: datetime | None) -> Event:
    if not isinstance(obj, dict):
        raise InvalidEvent("invalid_attributes", "a structured CloudEvent must be a JSON object")
    # CloudEvents JSON format: an attribute that is null is unset.
    attrs = {k: v for k, v in obj.items() if v is not None}
    _require(bool(attrs.get("id")), "id")
    raw: Any = attrs.pop("data", None)
    b64 = attrs.pop("data_base64", None)
    for name, value in attrs.items():
        # CloudEvents attribute types are String, Integer and Boolean (URI, Timestamp and
        # Binary are written as strings); the core attributes are all strings.
        if name in _CORE_ATTRIBUTES and name != SEQUENCE_ATTR and not isinstance(value, str):
            raise InvalidEvent("invalid_attributes", f"attribute {echo(name)} must be a string")
        if not isinstance(value, (str, int)):
            raise InvalidEvent(
                "invalid_attributes",
                f"attribute {echo(name, 40)} must be a string, integer or boolean",
            )
    if b64 is not None:
        if raw is not None:
            raise InvalidEvent("invalid_data", "data and data_base64 are mutually exclusive")
        if not isinstance(b64, str):
            raise InvalidEvent("invalid_data", "data_base64 must be a base64 string")
        try:
            raw = base64.b64decode(b64, validate=True)
        except ValueError:
            raise InvalidEvent("invalid_data", "data_base64 is not valid base64") from None
    when = parse_time(attrs["time"]) if "time" in attrs else None
    if when is not None:
        attrs["time"] = when
    if SEQUENCE_ATTR in attrs:
        attrs[SEQUENCE_ATTR] = str(_parse_sequence(attrs[SEQUENCE_ATTR]))
    try:
        ce = CloudEvent(attrs, None)
    except (BaseCloudEventException, ValueError, TypeError) as exc:
        raise _validation_error(exc) from None
    if ce.get_specversion() != "1.0":
        raise InvalidEvent("invalid_attributes", "specversion must be 1.0")
    return from_cloudevent(ce, raw, rules, received=received, when=when)


def _check_size(size: int, rules: EventRules) -> None:
    if size > rules.max_event_bytes:
        raise InvalidEvent(
            "too_large", f"event of {size} bytes exceeds the limit of {rules.max_event_bytes}"
        )


def parse_message(
    headers: Mapping[str, str],
    body: bytes,
    rules: EventRules = DEFAULT_RULES,
    *,
    received: datetime | None = None,
) -> list[Event]:
    """Parse one HTTP (or Pub/Sub) message into events: binary, structured, or batch mode.

    The mode follows the CloudEvents HTTP binding: a batch or structured content type
    wins; otherwise `ce-*` headers mean binary mode.
    """
    media = _media_type(_header(headers, "content-type"))
    if media == BATCH_CONTENT_TYPE:
        return parse_batch(body, rules, received=received)
    if media == STRUCTURED_CONTENT_TYPE:
        _check_size(len(body), rules)
        return [_structured(_load_json(body), rules, received)]
    if not any(k.lower().startswith("ce-") for k in headers):
        raise InvalidEvent(
            "bad_content_type",
            "not a CloudEvent: send ce-* headers (binary mode) or Content-Type "
            f"{STRUCTURED_CONTENT_TYPE} or {BATCH_CONTENT_TYPE}",
        )
    _check_size(len(body), rules)
    _require(bool(_header(headers, "ce-id")), "id")
    # The time is read here, not by the CloudEvents SDK, so that it follows the same
    # rules (and gives the same reason) as in structured mode.
    given_time = _header(headers, "ce-time")
    when = None if given_time is None else parse_time(unquote(given_time))
    ce_headers = {k: v for k, v in headers.items() if k.lower() != "ce-time"}
    try:
        ce = from_binary(HTTPMessage(headers=ce_headers, body=b""), JSONFormat(), CloudEvent)
    except (BaseCloudEventException, ValueError, TypeError) as exc:
        raise _validation_error(exc) from None
    if ce.get_specversion() != "1.0":
        raise InvalidEvent("invalid_attributes", "ce-specversion must be 1.0")
    assert isinstance(ce, CloudEvent)
    return [from_cloudevent(ce, body, rules, received=received, when=when)]


def _load_json(body: bytes) -> Any:
    return load_json(body, "malformed_json", "body")


def parse_batch(
    body: bytes, rules: EventRules = DEFAULT_RULES, *, received: datetime | None = None
) -> list[Event]:
    """A JSON array of structured events. All or nothing: one bad event rejects the batch."""
    items = _load_json(body)
    if not isinstance(items, list):
        raise InvalidEvent("malformed_json", "a CloudEvents batch must be a JSON array")
    events = []
    for index, item in enumerate(items):
        try:
            # Each event's size as it would be sent alone (compact JSON, UTF-8).
            _check_size(len(_compact(item)), rules)
            events.append(_structured(item, rules, received))
        except InvalidEvent as exc:
            raise InvalidEvent(
                exc.reason, f"batch[{index}]: {exc.message}", event_id=exc.event_id
            ) from None
    return events


def _compact(value: Any) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "surrogatepass"
        )
    except RecursionError:
        raise InvalidEvent("too_deep", "event is nested too deeply") from None


def pubsub_headers(attributes: Mapping[str, str]) -> dict[str, str]:
    """Pub/Sub attributes as HTTP-binding headers.

    Producers put the content type in `content-type`, `Content-Type` or
    `ce-datacontenttype`; all three are accepted.
    """
    headers = {k.lower(): v for k, v in attributes.items()}
    ce_content_type = headers.pop("ce-datacontenttype", None)
    if "content-type" not in headers and ce_content_type is not None:
        headers["content-type"] = ce_content_type
    return headers


def parse_pubsub(
    attributes: Mapping[str, str],
    data: bytes,
    rules: EventRules = DEFAULT_RULES,
    *,
    received: datetime | None = None,
) -> Event:
    """One Pub/Sub message (binary or structured content mode) as one event."""
    events = parse_message(pubsub_headers(attributes), data, rules, received=received)
    if len(events) != 1:
        raise InvalidEvent("invalid_attributes", "a Pub/Sub message carries exactly one event")
    return events[0]


# ---- outbound ---------------------------------------------------------------------------


def encode_data(event: Event, content_type: str = JSON_CONTENT_TYPE) -> bytes:
    if _media_type(content_type) in _PROTOBUF_TYPES:
        return event.data.SerializeToString()
    return json_format.MessageToJson(event.data, indent=None).encode()


def attributes(event: Event) -> dict[str, str]:
    """CloudEvents context attributes as strings (for headers or Pub/Sub attributes)."""
    attrs = {
        "specversion": "1.0",
        "id": event.id,
        "source": event.source,
        "type": event.kind.type,
        "subject": event.operation,
        "time": event.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
    if event.sequence is not None:
        attrs[SEQUENCE_ATTR] = str(event.sequence)
    attrs.update(event.extensions)
    return attrs


def to_binary(event: Event, content_type: str = JSON_CONTENT_TYPE) -> tuple[dict[str, str], bytes]:
    """Binary content mode: `ce-*` headers plus Content-Type; data is the body."""
    headers = {f"ce-{k}": v for k, v in attributes(event).items()}
    headers["content-type"] = content_type
    return headers, encode_data(event, content_type)


def to_structured_dict(event: Event, content_type: str = JSON_CONTENT_TYPE) -> dict[str, Any]:
    obj: dict[str, Any] = dict(attributes(event))
    obj["datacontenttype"] = content_type
    if _media_type(content_type) in _PROTOBUF_TYPES:
        obj["data_base64"] = base64.b64encode(event.data.SerializeToString()).decode()
    else:
        obj["data"] = json_format.MessageToDict(event.data)
    return obj


def to_structured(
    event: Event, content_type: str = JSON_CONTENT_TYPE
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(to_structured_dict(event, content_type)).encode()
    return {"content-type": STRUCTURED_CONTENT_TYPE}, body


def to_batch(
    events: list[Event], content_type: str = JSON_CONTENT_TYPE
) -> tuple[dict[str, str], bytes]:
    body = json.dumps([to_structured_dict(e, content_type) for e in events]).encode()
    return {"content-type": BATCH_CONTENT_TYPE}, body


def struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    """Convenience for producers: a dict as google.protobuf.Struct."""
    s = struct_pb2.Struct()
    s.update(dict(value))
    return s
