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

from cloudevents.core.bindings.http import HTTPMessage, from_binary
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2  # noqa: F401  (standard Status details in JSON)

from tracker.errors import InvalidEvent, echo
from tracker.v1 import events_pb2

TYPE_PREFIX: Final = "tracker.operation.v1."
SEQUENCE_ATTR: Final = "sequence"
STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"
BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json"
JSON_CONTENT_TYPE: Final = "application/json"
PROTOBUF_CONTENT_TYPE: Final = "application/protobuf"
_PROTOBUF_TYPES: Final = frozenset({"application/protobuf", "application/x-protobuf"})
_JSON_TYPE = re.compile(r"^(application|text)/([a-zA-Z0-9.\-]+\+)?json$")
DEFAULT_NAME_PATTERN: Final = r"^operations/[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*$"
MAX_NAME_LENGTH: Final = 512
MAX_ID_LENGTH: Final = 256
MAX_SEQUENCE: Final = 2**63 - 1
DEFAULT_MAX_EVENT_BYTES: Final = 1024 * 1024


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

    def check_name(self, name: str) -> None:
        name_re: re.Pattern[str] = self._name_re  # type: ignore[attr-defined]
        if len(name) > MAX_NAME_LENGTH or not name_re.fullmatch(name):
            raise InvalidEvent(
                "bad_name",
                f"operation name {echo(name)} does not match {echo(self.name_pattern)}"
                f" (at most {MAX_NAME_LENGTH} characters)",
            )


DEFAULT_RULES: Final = EventRules()


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
        except DecodeError as exc:
            raise InvalidEvent(
                "invalid_data", f"data is not a valid {kind.value} message: {exc}"
            ) from None
    elif _JSON_TYPE.match(media):
        if isinstance(data, (bytes, str)):
            try:
                data = json.loads(data)
            except (ValueError, UnicodeDecodeError) as exc:
                raise InvalidEvent("malformed_json", f"data is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidEvent("invalid_data", f"{kind.value} data must be a JSON object")
        data = dict(data)
        for name in _ANY_FIELDS.get(kind, ()):
            if name in data:
                data[name] = _wrap_plain_any(data[name])
        try:
            json_format.ParseDict(data, message)
        except (json_format.ParseError, TypeError, ValueError) as exc:
            raise InvalidEvent("invalid_data", f"{kind.value} data: {exc}") from None
    else:
        raise InvalidEvent(
            "bad_content_type",
            f"unsupported datacontenttype {echo(media)};"
            " use application/json or application/protobuf",
        )
    _check_data(kind, message)
    return message


def _check_data(kind: Kind, message: Message) -> None:
    if isinstance(message, events_pb2.Progress):
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
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidEvent("bad_sequence", "sequence must be a decimal unsigned integer")
    text = str(value)
    if not text.isdigit() or not text.isascii() or int(text) > MAX_SEQUENCE:
        raise InvalidEvent(
            "bad_sequence", f"sequence {echo(text)} is not a decimal integer in 0..2^63-1"
        )
    return int(text)


def from_cloudevent(
    ce: CloudEvent,
    raw_data: Any,
    rules: EventRules = DEFAULT_RULES,
    *,
    received: datetime | None = None,
    time_given: bool = True,
) -> Event:
    """Validate a parsed CloudEvent and build the typed event.

    `raw_data` is the undecoded data (bytes from a binary-mode body, or whatever the
    structured JSON held) so that protobuf bodies are never mangled by text decoding.
    """
    attrs = ce.get_attributes()
    event_id = str(attrs.get("id") or "")
    if len(event_id) > MAX_ID_LENGTH:
        raise InvalidEvent("bad_id", f"id longer than {MAX_ID_LENGTH} characters")
    kind = Kind.from_type(str(attrs.get("type")))
    subject = attrs.get("subject")
    if not subject:
        raise InvalidEvent(
            "missing_subject", "subject (the operation name) is required", event_id=event_id
        )
    rules.check_name(str(subject))
    when = attrs.get("time") if time_given else None
    if isinstance(when, datetime):
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
    else:
        when = received or datetime.now(UTC)
    extensions = {
        k: str(v)
        for k, v in attrs.items()
        if k
        not in {
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
    }
    try:
        data = decode_data(kind, attrs.get("datacontenttype"), raw_data)
    except InvalidEvent as exc:
        exc.event_id = event_id
        raise
    return Event(
        id=event_id,
        source=str(attrs["source"]),
        kind=kind,
        operation=str(subject),
        time=when.astimezone(UTC),
        data=data,
        sequence=_parse_sequence(attrs.get(SEQUENCE_ATTR)),
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
    _require(bool(obj.get("id")), "id")
    attrs = dict(obj)
    raw: Any = attrs.pop("data", None)
    b64 = attrs.pop("data_base64", None)
    if b64 is not None:
        if raw is not None:
            raise InvalidEvent("invalid_data", "data and data_base64 are mutually exclusive")
        try:
            raw = base64.b64decode(str(b64), validate=True)
        except ValueError:
            raise InvalidEvent("invalid_data", "data_base64 is not valid base64") from None
    if "time" in attrs:
        try:
            attrs["time"] = datetime.fromisoformat(str(attrs["time"]).replace("Z", "+00:00"))
        except ValueError:
            raise InvalidEvent("bad_time", f"time {echo(attrs['time'])} is not RFC 3339") from None
    if SEQUENCE_ATTR in attrs:
        attrs[SEQUENCE_ATTR] = str(_parse_sequence(attrs[SEQUENCE_ATTR]))
    try:
        ce = CloudEvent(attrs, None)
    except (BaseCloudEventException, ValueError, TypeError) as exc:
        raise _validation_error(exc) from None
    if ce.get_specversion() != "1.0":
        raise InvalidEvent("invalid_attributes", "specversion must be 1.0")
    return from_cloudevent(ce, raw, rules, received=received, time_given="time" in attrs)


def _check_size(body: bytes, rules: EventRules) -> None:
    if len(body) > rules.max_event_bytes:
        raise InvalidEvent(
            "too_large", f"event of {len(body)} bytes exceeds the limit of {rules.max_event_bytes}"
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
        _check_size(body, rules)
        return [_structured(_load_json(body), rules, received)]
    if not any(k.lower().startswith("ce-") for k in headers):
        raise InvalidEvent(
            "bad_content_type",
            "not a CloudEvent: send ce-* headers (binary mode) or Content-Type "
            f"{STRUCTURED_CONTENT_TYPE} or {BATCH_CONTENT_TYPE}",
        )
    _check_size(body, rules)
    _require(bool(_header(headers, "ce-id")), "id")
    try:
        ce = from_binary(HTTPMessage(headers=dict(headers), body=b""), JSONFormat(), CloudEvent)
    except (BaseCloudEventException, ValueError, TypeError) as exc:
        raise _validation_error(exc) from None
    if ce.get_specversion() != "1.0":
        raise InvalidEvent("invalid_attributes", "ce-specversion must be 1.0")
    assert isinstance(ce, CloudEvent)
    given = _header(headers, "ce-time") is not None
    return [from_cloudevent(ce, body, rules, received=received, time_given=given)]


def _load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent("malformed_json", f"body is not valid JSON: {exc}") from None


def parse_batch(
    body: bytes, rules: EventRules = DEFAULT_RULES, *, received: datetime | None = None
) -> list[Event]:
    """A JSON array of structured events. All or nothing: one bad event rejects the batch."""
    items = _load_json(body)
    if not isinstance(items, list):
        raise InvalidEvent("malformed_json", "a CloudEvents batch must be a JSON array")
    events = []
    for index, item in enumerate(items):
        _check_size(json.dumps(item).encode(), rules)
        try:
            events.append(_structured(item, rules, received))
        except InvalidEvent as exc:
            raise InvalidEvent(
                exc.reason, f"batch[{index}]: {exc.message}", event_id=exc.event_id
            ) from None
    return events


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
