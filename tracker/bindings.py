"""The CloudEvents bindings: events in and out over HTTP and Pub/Sub, and done-notifications.

Inbound, every route (HTTP binary/structured/batch, Pub/Sub push and pull) turns its
bytes into headers and a body and calls `parse_message` or `parse_pubsub`; a failure is
an `InvalidEvent` with a stable `reason` keyword (the checks themselves are
`tracker.events`). Outbound, `to_binary` / `to_structured` / `to_batch` build the same
wire forms for producers. `tracker.notify.pubsub` and `tracker.done` share the
done-notification format, `tracker.notify.control` and `tracker.resume` the control
notices' (resume, cancel), both at the end. Nothing here does I/O: the SDK imports it
without the server's sinks.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

from google.longrunning import operations_proto_pb2 as operations_pb2  # without grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import code_pb2

from tracker.constants import MAX_SEQUENCE
from tracker.errors import InvalidArgument, InvalidEvent, echo
from tracker.events import (
    ATTEMPT_ATTR,
    BATCH_CONTENT_TYPE,
    DEFAULT_RULES,
    JSON_CONTENT_TYPE,
    MAX_ATTEMPT,
    MAX_ID_CHARS,
    MAX_SOURCE_BYTES,
    PROTOBUF_TYPES,
    SEQUENCE_ATTR,
    STRUCTURED_CONTENT_TYPE,
    TRACEPARENT_ATTR,
    TRACESTATE_ATTR,
    Event,
    EventRules,
    Kind,
    check_rules,
    check_text,
    decode_data,
    load_json,
    media_type,
    parse_time,
    valid_traceparent,
    valid_tracestate,
)
from tracker.v1 import operation_pb2

if TYPE_CHECKING:
    from cloudevents.core.v1.event import CloudEvent

# The CloudEvents SDK is imported where the slow paths use it (attributes the fast checks
# doubt): producers and the CLI build and send events without it.


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


def _parse_attempt(value: Any) -> int | None:
    """The attempt, a decimal 1..2^31-1 (a string, or a JSON integer in structured mode)."""
    if value is None:
        return None
    text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if (
        not (text.isascii() and text.isdigit())
        or len(text) > 12
        or not 1 <= int(text) <= MAX_ATTEMPT
    ):
        raise InvalidEvent(
            "bad_attempt",
            f"attempt {echo(text or repr(value))} is not a decimal integer in 1..2^31-1",
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
        ATTEMPT_ATTR,
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
    return _event(ce.get_attributes(), raw_data, rules, received, when)


def _event(
    attrs: Mapping[str, Any],
    raw_data: Any,
    rules: EventRules,
    received: datetime | None,
    when: datetime | None,
    fast: bool = True,
) -> Event:
    """`from_cloudevent` on attributes the CloudEvents SDK accepts (`_sdk_accepts`)."""
    event_id = str(attrs.get("id") or "")
    check_text(event_id, "bad_id", "id", max_chars=MAX_ID_CHARS)
    source = str(attrs.get("source") or "")
    check_text(source, "bad_source", "source", max_bytes=MAX_SOURCE_BYTES)
    kind = Kind.from_type(str(attrs.get("type")))
    subject = attrs.get("subject")
    if not subject:
        raise InvalidEvent(
            "missing_subject", "subject (the operation name) is required", event_id=event_id
        )
    rules.check_name(str(subject))
    # Most events carry no extension: one set difference in C says so.
    extensions = (
        {k: str(v) for k, v in attrs.items() if k not in _CORE_ATTRIBUTES}
        if attrs.keys() - _CORE_ATTRIBUTES
        else {}
    )
    traceparent = tracestate = None
    dropped = False
    if TRACEPARENT_ATTR in extensions or TRACESTATE_ATTR in extensions:
        traceparent, tracestate, dropped = _trace_context(extensions)
    try:
        sequence = _parse_sequence(attrs.get(SEQUENCE_ATTR))
        attempt = _parse_attempt(attrs.get(ATTEMPT_ATTR))
        data = decode_data(kind, attrs.get("datacontenttype"), raw_data, fast=fast)
        check_rules(data, rules)
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
        attempt=attempt,
        traceparent=traceparent,
        tracestate=tracestate,
        trace_dropped=dropped,
    )


def _trace_context(extensions: dict[str, str]) -> tuple[str | None, str | None, bool]:
    """The distributed-tracing extension taken out of `extensions`: (traceparent,
    tracestate, whether anything invalid was left out). It is optional metadata: an invalid
    one never refuses the event (docs/api.md#tracing); a tracestate without a valid
    traceparent means nothing and is left out too."""
    parent = extensions.pop(TRACEPARENT_ATTR, None)
    state = extensions.pop(TRACESTATE_ATTR, None)
    if parent is None or not valid_traceparent(parent):
        return None, None, True
    if state is not None and not valid_tracestate(state):
        return parent, None, True
    return parent, state or None, False


# What `cloudevents.core.v1.event.CloudEvent` validates, as its own checks (the same
# pattern, the same defaults): attributes that pass here build a CloudEvent without an
# error, so the event is read from them directly. Those that fail go through the SDK,
# whose error message is the answer (`_validation_error`).
_SDK_NAMED: Final = frozenset(
    {"id", "source", "type", "specversion", "datacontenttype", "dataschema", "subject", "time"}
)
_SDK_EXTENSION_NAME: Final = re.compile(r"^[a-z0-9]+$")


def _sdk_accepts(attrs: Mapping[str, Any]) -> bool:
    """Whether CloudEvent(attrs) would validate (a missing time or id is filled in; the
    time, when given, is already an aware datetime)."""
    for name in ("id", "source", "type"):
        value = attrs.get(name)
        if not value or type(value) is not str:
            return False
    if attrs.get("specversion", "1.0") != "1.0":
        return False
    for name in ("subject", "datacontenttype", "dataschema"):
        if name in attrs and (not attrs[name] or type(attrs[name]) is not str):
            return False
    return all(
        name != "data" and _SDK_EXTENSION_NAME.match(name) for name in attrs.keys() - _SDK_NAMED
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


def _structured(obj: Any, rules: EventRules, received: datetime | None, fast: bool = True) -> Event:
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
        integer = (SEQUENCE_ATTR, ATTEMPT_ATTR)
        if name in _CORE_ATTRIBUTES and name not in integer and not isinstance(value, str):
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
    if ATTEMPT_ATTR in attrs:
        attrs[ATTEMPT_ATTR] = str(_parse_attempt(attrs[ATTEMPT_ATTR]))
    if fast and _sdk_accepts(attrs):
        return _event(attrs, raw, rules, received, when)
    from cloudevents.core.exceptions import BaseCloudEventException
    from cloudevents.core.v1.event import CloudEvent

    try:
        ce = CloudEvent(attrs, None)
    except (BaseCloudEventException, ValueError, TypeError) as exc:
        raise _validation_error(exc) from None
    if ce.get_specversion() != "1.0":
        raise InvalidEvent("invalid_attributes", "specversion must be 1.0")
    return _event(ce.get_attributes(), raw, rules, received, when, fast)


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
    return _parse(headers, body, rules, received, fast=True)


def _parse(
    headers: Mapping[str, str],
    body: bytes,
    rules: EventRules,
    received: datetime | None,
    *,
    fast: bool,
) -> list[Event]:
    """`parse_message`; `fast=False` takes the CloudEvents SDK and json_format for every
    event (the reference the fast paths are tested against, tests/unit/test_fast_parse.py)."""
    # In one pass: each header's first value by lower-case name (what `header` returns),
    # and the attributes as the SDK's `from_binary` reads them (the last of equal names).
    first: dict[str, str] = {}
    attrs: dict[str, Any] = {}
    binary = False
    for key, value in headers.items():
        name = key.lower()
        first.setdefault(name, value)
        if name[:3] == "ce-":
            binary = True
            if name != "ce-time":
                attrs[name[3:]] = unquote(value) if "%" in value else value
        elif name == "content-type":
            attrs["datacontenttype"] = value
    media = media_type(first.get("content-type"))
    if media == BATCH_CONTENT_TYPE:
        return _batch(body, rules, received, fast)
    if media == STRUCTURED_CONTENT_TYPE:
        _check_size(len(body), rules)
        return [_structured(_load_json(body), rules, received, fast)]
    if not binary:
        raise InvalidEvent(
            "bad_content_type",
            "not a CloudEvent: send ce-* headers (binary mode) or Content-Type "
            f"{STRUCTURED_CONTENT_TYPE} or {BATCH_CONTENT_TYPE}",
        )
    _check_size(len(body), rules)
    _require(bool(first.get("ce-id")), "id")
    # The time is read here, not by the CloudEvents SDK, so that it follows the same
    # rules (and gives the same reason) as in structured mode.
    given_time = first.get("ce-time")
    when = None if given_time is None else parse_time(unquote(given_time))
    if fast and _sdk_accepts(attrs):
        return [_event(attrs, body, rules, received, when)]
    return [_binary_sdk(headers, body, rules, received, when, fast)]


def _binary_sdk(
    headers: Mapping[str, str],
    body: bytes,
    rules: EventRules,
    received: datetime | None,
    when: datetime | None,
    fast: bool,
) -> Event:
    """Binary mode through the CloudEvents SDK: what `_sdk_accepts` doubts (the SDK's
    message says what is wrong)."""
    from cloudevents.core.bindings.http import HTTPMessage, from_binary
    from cloudevents.core.exceptions import BaseCloudEventException
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    ce_headers = {k: v for k, v in headers.items() if k.lower() != "ce-time"}
    try:
        ce = from_binary(HTTPMessage(headers=ce_headers, body=b""), JSONFormat(), CloudEvent)
    except (BaseCloudEventException, ValueError, TypeError) as exc:
        raise _validation_error(exc) from None
    if ce.get_specversion() != "1.0":
        raise InvalidEvent("invalid_attributes", "ce-specversion must be 1.0")
    assert isinstance(ce, CloudEvent)
    return _event(ce.get_attributes(), body, rules, received, when, fast)


def _load_json(body: bytes) -> Any:
    return load_json(body, "malformed_json", "body")


def parse_batch(
    body: bytes, rules: EventRules = DEFAULT_RULES, *, received: datetime | None = None
) -> list[Event]:
    """A JSON array of structured events. All or nothing: one bad event rejects the batch."""
    return _batch(body, rules, received, fast=True)


def _batch(body: bytes, rules: EventRules, received: datetime | None, fast: bool) -> list[Event]:
    items = _load_json(body)
    if not isinstance(items, list):
        raise InvalidEvent("malformed_json", "a CloudEvents batch must be a JSON array")
    # Each event's size as it would be sent alone (compact JSON, UTF-8) is at most
    # _EXPANSION times the bytes it takes in the body: only a number can grow when written
    # again (1e5 is 100000.0), to at most 24 characters from at least 3. A body that small
    # holds no event over the limit, and is not measured event by event. (Nor is a
    # RecursionError of json.dumps skipped: it nests as deep as json.loads, which read it.)
    measure = not fast or len(body) * _EXPANSION > rules.max_event_bytes
    events = []
    for index, item in enumerate(items):
        try:
            if measure:
                _check_size(len(_compact(item)), rules)
            events.append(_structured(item, rules, received, fast))
        except InvalidEvent as exc:
            raise InvalidEvent(
                exc.reason, f"batch[{index}]: {exc.message}", event_id=exc.event_id
            ) from None
    return events


_EXPANSION: Final = 8


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
    if media_type(content_type) in PROTOBUF_TYPES:
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
    if event.attempt is not None:
        attrs[ATTEMPT_ATTR] = str(event.attempt)
    attrs.update(event.extensions)
    if event.traceparent is not None:
        attrs[TRACEPARENT_ATTR] = event.traceparent
        if event.tracestate is not None:
            attrs[TRACESTATE_ATTR] = event.tracestate
    return attrs


def to_binary(event: Event, content_type: str = JSON_CONTENT_TYPE) -> tuple[dict[str, str], bytes]:
    """Binary content mode: `ce-*` headers plus Content-Type; data is the body."""
    headers = {f"ce-{k}": v for k, v in attributes(event).items()}
    headers["content-type"] = content_type
    return headers, encode_data(event, content_type)


def to_structured_dict(event: Event, content_type: str = JSON_CONTENT_TYPE) -> dict[str, Any]:
    obj: dict[str, Any] = dict(attributes(event))
    obj["datacontenttype"] = content_type
    if media_type(content_type) in PROTOBUF_TYPES:
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


# ---- done-notifications -------------------------------------------------------------------
#
# Each notification is a CloudEvent in binary mode of the Pub/Sub protocol binding, data =
# the final `google.longrunning.Operation` as protobuf. The binding has two texts that
# spell the content type's attribute differently: CloudEvents' (cloudevents/spec,
# pubsub-protocol-binding.md) `Content-Type`, which sdk-go's binding reads and nothing
# else, and Google's (googleapis/google-cloudevents, docs/spec/pubsub.md, the one Eventarc
# cites) `content-type`. Pub/Sub attribute keys are case-sensitive, so both are sent, with
# the same value:
#
#     ce-specversion  1.0
#     ce-type         tracker.operation.v1.done
#     ce-id           the outbox row id: the same on every redelivery (de-duplicate by it)
#     ce-source       tracker
#     ce-subject      the operation name
#     ce-time         when the operation ended (OperationMetadata.end_time; for an Operation
#                     without one, when the outbox row was written), RFC 3339 in UTC: the
#                     same on every redelivery and on a retried publish
#     ce-dataschema   https://type.googleapis.com/google.longrunning.Operation: the type URL
#                     of the data's message (the scheme protobuf assumes for a type URL,
#                     written out: CloudEvents' dataschema is an absolute URI)
#     ce-traceparent  ce-tracestate: the W3C trace context of the publishing `tracker.notify`
#                     span (docs/api.md#tracing), when there is one
#     Content-Type    application/protobuf: the datacontenttype
#     content-type    the same
#
# The CloudEvents SDKs decode it as it is (tests/integration/test_cloudevents_sdks.py:
# Python, Go sdk-go's Pub/Sub binding, Node). Plain attributes make it selectable by
# subscription filters, e.g.
# `attributes.operation_type = "export" AND attributes.result = "failed"`:
#
#     operation       the operation name
#     result          succeeded | failed | cancelled
#     error_code      google.rpc.Code name, OK on success
#     operation_type  parent   (when set)
#     label_<key>     one per label (key characters outside [A-Za-z0-9_-] become _)
#     attributes_truncated   "true" when the rule below left anything out
#
# The ordering key is the operation name (none if it is longer than 1024 bytes).
#
# Pub/Sub takes at most 100 attributes per message, keys of at most 256 bytes and values of
# at most 1024 bytes (https://cloud.google.com/pubsub/quotas#resource_limits), and refuses
# the whole message otherwise. Whatever labels an operation has, the attributes stay within
# those limits by one deterministic rule:
#
# 1. No attribute is ever cut: one whose key or value is too long is left out (a cut value
#    would make `=` filters match the wrong thing).
# 2. The fixed attributes above come first.
# 3. Then labels in order of their key (code point order): a label is left out when its
#    attribute key or value is too long, or when its key becomes the same attribute key
#    as an earlier label's (`a.b` and `a/b` are both `label_a_b`: the first one counts).
# 4. Labels are taken while the count allows, keeping one place for the flag.
# 5. If anything was left out, `attributes_truncated` is `true`.
#
# The data always carries the whole Operation, every label included.


DONE_TYPE: Final = "tracker.operation.v1.done"
DONE_SCHEMA: Final = "https://type.googleapis.com/google.longrunning.Operation"
# The Pub/Sub binding's attribute for datacontenttype in binary mode, in both spellings
# (above). Nothing here reads it (`parse_done`, `parse_notice` go by ce-type), and inbound
# `pubsub_headers` takes any spelling.
CONTENT_TYPE_KEYS: Final = ("Content-Type", "content-type")
_LABEL_KEY = re.compile(r"[^A-Za-z0-9_-]")


MAX_ATTRIBUTES: Final = 100
MAX_KEY_BYTES: Final = 256
MAX_VALUE_BYTES: Final = 1024
MAX_ORDERING_KEY_BYTES: Final = 1024
TRUNCATED: Final = "attributes_truncated"


def _fits(key: str, value: str) -> bool:
    return len(key.encode()) <= MAX_KEY_BYTES and len(value.encode()) <= MAX_VALUE_BYTES


def _rfc3339(when: datetime) -> str:
    """A time as RFC 3339 in UTC with `Z` (microseconds when it has any)."""
    utc = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    return utc.isoformat().replace("+00:00", "Z")


def _done_time(operation: operations_pb2.Operation, created_at: datetime | None) -> str | None:
    """The done-notification's ce-time: the Operation's end_time, else `created_at` (when
    its outbox row was written); None when it has neither (then no ce-time is sent)."""
    meta = operation_pb2.OperationMetadata()
    if operation.metadata.Unpack(meta) and meta.HasField("end_time"):
        return meta.end_time.ToJsonString()
    return None if created_at is None else _rfc3339(created_at)


def done_attributes(
    item_id: str,
    operation: operations_pb2.Operation,
    created_at: datetime | None = None,
    *,
    trace: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The message attributes of a notification, by the rule in the module docstring.

    `created_at` is when the outbox row was written, the time of an Operation that has no
    end_time: the attributes are a function of the row, the same on every publish of it.
    `trace` (traceparent, tracestate) becomes ce-traceparent, ce-tracestate.
    """
    if operation.HasField("error"):
        code = operation.error.code
        result = "cancelled" if code == code_pb2.CANCELLED else "failed"
    else:
        code, result = code_pb2.OK, "succeeded"
    fixed = {
        "ce-specversion": "1.0",
        "ce-id": item_id,
        "ce-source": "tracker",
        "ce-type": DONE_TYPE,
        "ce-subject": operation.name,
    }
    when = _done_time(operation, created_at)
    if when is not None:
        fixed["ce-time"] = when
    fixed |= {
        "ce-dataschema": DONE_SCHEMA,
        **dict.fromkeys(CONTENT_TYPE_KEYS, "application/protobuf"),
        "operation": operation.name,
        "result": result,
        "error_code": code_pb2.Code.Name(code) if code in code_pb2.Code.values() else str(code),
    }
    _add_trace(fixed, trace)
    meta = operation_pb2.OperationMetadata()
    labels: dict[str, str] = {}
    if operation.metadata.Is(meta.DESCRIPTOR):
        operation.metadata.Unpack(meta)
        if meta.operation_type:
            fixed["operation_type"] = meta.operation_type
        if meta.parent:
            fixed["parent"] = meta.parent
        labels = dict(meta.labels)
    return _within_limits(fixed, labels)


def _add_trace(fixed: dict[str, str], trace: Mapping[str, str] | None) -> None:
    """The CloudEvents distributed-tracing extension, in binary mode (docs/api.md#tracing)."""
    for name in (TRACEPARENT_ATTR, TRACESTATE_ATTR):
        if trace and trace.get(name):
            fixed[f"ce-{name}"] = trace[name]


def _within_limits(fixed: Mapping[str, str], labels: Mapping[str, str]) -> dict[str, str]:
    """`fixed`, then label_<key> attributes, by the rule above (shared by both formats)."""
    attributes = {k: v for k, v in fixed.items() if _fits(k, v)}
    left_out = len(attributes) < len(fixed)
    eligible: dict[str, str] = {}
    for key in sorted(labels):
        attribute = f"label_{_LABEL_KEY.sub('_', key)}"
        if attribute in eligible or not _fits(attribute, labels[key]):
            left_out = True
            continue
        eligible[attribute] = labels[key]
    room = MAX_ATTRIBUTES - len(attributes)
    if len(eligible) > room:
        left_out = True
    if left_out:
        room -= 1  # for the flag
    for attribute, value in list(eligible.items())[: max(room, 0)]:
        attributes[attribute] = value
    if left_out:
        attributes[TRUNCATED] = "true"
    return attributes


def ordering_key(operation: operations_pb2.Operation) -> str:
    """The operation name, or none when Pub/Sub would refuse it as an ordering key."""
    name = operation.name
    return name if len(name.encode()) <= MAX_ORDERING_KEY_BYTES else ""


@dataclass(frozen=True)
class DoneNotification:
    """One done-notification as a consumer receives it."""

    id: str
    operation: operations_pb2.Operation
    attributes: dict[str, str]

    @property
    def traceparent(self) -> str | None:
        """The W3C trace context of the `tracker.notify` span that published it: a consumer
        starts its span from it (`trace_context`) to stay in the producer's trace."""
        return _traceparent(self.attributes)

    @property
    def tracestate(self) -> str | None:
        return self.attributes.get(f"ce-{TRACESTATE_ATTR}") if self.traceparent else None

    def trace_context(self) -> Any:
        """An OpenTelemetry Context to start a span in (`context=`), or None without a
        valid traceparent; needs opentelemetry-api (imported only here)."""
        from tracker.tracing import context_of

        return context_of(self.traceparent, self.tracestate)


def _traceparent(attributes: Mapping[str, str]) -> str | None:
    value = attributes.get(f"ce-{TRACEPARENT_ATTR}")
    return value if value is not None and valid_traceparent(value) else None


def parse_done(attributes: Mapping[str, str], data: bytes) -> DoneNotification:
    """A done-notification from a message's attributes and data; InvalidArgument if the
    message is something else."""
    if attributes.get("ce-type") != DONE_TYPE:
        raise InvalidArgument(
            f"not a done-notification (ce-type {echo(attributes.get('ce-type'))})"
        )
    try:
        operation = operations_pb2.Operation.FromString(data)
    except DecodeError:
        raise InvalidArgument("a done-notification whose data is not an Operation") from None
    return DoneNotification(
        id=attributes.get("ce-id", ""), operation=operation, attributes=dict(attributes)
    )


# ---- control notices ----------------------------------------------------------------------
#
# Resume and cancel notices (`tracker.notices`) on the control topic, for the work itself:
# a worker (or Eventarc, or a push subscription to Cloud Run) starts the attempt a resume
# names, or stops on a cancel. Each is a CloudEvent in binary mode of the Pub/Sub protocol
# binding, as the done-notification:
#
#     ce-specversion  1.0
#     ce-type         tracker.notice.v1.resume | tracker.notice.v1.cancel
#     ce-id           the outbox row id: the same on every redelivery (de-duplicate by it)
#     ce-source       tracker
#     ce-subject      the operation name
#     ce-time         when the notice was decided (its outbox row written), RFC 3339 in
#                     UTC: the same on every redelivery and on a retried publish
#     ce-dataschema   https://type.googleapis.com/tracker.v1.Notice (the data's message)
#     Content-Type    application/json: data is the `tracker.v1.Notice` in proto3 JSON
#                     (int64 fields such as `attempt` are JSON strings, as proto3 JSON has it)
#     content-type    the same
#
# and plain attributes for subscription filters, e.g.
# `attributes.kind = "resume" AND attributes.operation_type = "export"`:
#
#     kind            resume | cancel
#     operation       the operation name
#     operation_type  (when set)
#     attempt         RESUME: the attempt to start; CANCEL: the one that was running
#     reason          stalled | failed | children_done | cancel_requested |
#                     parent_cancelled | child_failed
#     has_checkpoint  true | false: whether to resume from the checkpoint
#     error_code      google.rpc.Code name of the failure that caused a retry (when any)
#     parent          (when set), label_<key> per label, attributes_truncated
#
# within Pub/Sub's limits by the same rule as the done-notification's. The ordering key is
# the operation name (none when longer than 1024 bytes), so one operation's notices reach
# an ordered subscription in the order they were published.

RESUME_TYPE: Final = "tracker.notice.v1.resume"
NOTICE_SCHEMA: Final = "https://type.googleapis.com/tracker.v1.Notice"
CANCEL_TYPE: Final = "tracker.notice.v1.cancel"
NOTICE_TYPES: Final[dict[int, str]] = {
    operation_pb2.Notice.RESUME: RESUME_TYPE,
    operation_pb2.Notice.CANCEL: CANCEL_TYPE,
}
_KIND_BY_TYPE: Final = {v: k for k, v in NOTICE_TYPES.items()}
_KIND_WORDS: Final = {operation_pb2.Notice.RESUME: "resume", operation_pb2.Notice.CANCEL: "cancel"}


def _reason_word(reason: int) -> str:
    name = operation_pb2.Notice.Reason.Name(reason) if reason else ""
    return "" if name in ("", "REASON_UNSPECIFIED") else name.lower()


def notice_attributes(
    item_id: str,
    notice: operation_pb2.Notice,
    operation: operations_pb2.Operation | None = None,
    created_at: datetime | None = None,
    *,
    trace: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The message attributes of a control notice (the table above); `operation`, the
    served Operation the outbox row holds, adds parent and labels; `created_at`, when the
    row was written, is its ce-time (none without it); `trace` as for `done_attributes`."""
    if notice.kind not in NOTICE_TYPES:
        raise ValueError(f"not a control notice kind: {notice.kind}")
    fixed = {
        "ce-specversion": "1.0",
        "ce-id": item_id,
        "ce-source": "tracker",
        "ce-type": NOTICE_TYPES[notice.kind],
        "ce-subject": notice.operation,
    }
    if created_at is not None:
        fixed["ce-time"] = _rfc3339(created_at)
    fixed |= {
        "ce-dataschema": NOTICE_SCHEMA,
        **dict.fromkeys(CONTENT_TYPE_KEYS, "application/json"),
        "kind": _KIND_WORDS[notice.kind],
        "operation": notice.operation,
        "attempt": str(notice.attempt or 1),
        "reason": _reason_word(notice.reason),
        "has_checkpoint": "true" if notice.has_checkpoint else "false",
    }
    if notice.operation_type:
        fixed["operation_type"] = notice.operation_type
    if notice.HasField("error") and notice.error.code:
        code = notice.error.code
        fixed["error_code"] = (
            code_pb2.Code.Name(code) if code in code_pb2.Code.values() else str(code)
        )
    _add_trace(fixed, trace)
    labels: dict[str, str] = {}
    meta = operation_pb2.OperationMetadata()
    if operation is not None and operation.metadata.Is(meta.DESCRIPTOR):
        operation.metadata.Unpack(meta)
        if meta.parent:
            fixed["parent"] = meta.parent
        labels = dict(meta.labels)
    return _within_limits(fixed, labels)


def notice_data(notice: operation_pb2.Notice) -> bytes:
    """The message data: the notice in proto3 JSON, without the outbox's routing field."""
    published = operation_pb2.Notice()
    published.CopyFrom(notice)
    published.ClearField("target")
    published.ClearField("traceparent")  # sent as ce-traceparent, ce-tracestate
    published.ClearField("tracestate")
    return json_format.MessageToJson(published, indent=None).encode()


def notice_ordering_key(notice: operation_pb2.Notice) -> str:
    name = notice.operation
    return name if len(name.encode()) <= MAX_ORDERING_KEY_BYTES else ""


@dataclass(frozen=True)
class ControlNotice:
    """One resume or cancel notice as a consumer receives it.

    `id` is stable across redeliveries; `notice` is the whole `tracker.v1.Notice`
    (operation, attempt, reason, has_checkpoint, error, children counts, not_before).
    """

    id: str
    notice: operation_pb2.Notice
    attributes: dict[str, str]

    @property
    def kind(self) -> str:
        """resume | cancel"""
        return _KIND_WORDS.get(self.notice.kind, "")

    @property
    def operation(self) -> str:
        return self.notice.operation

    @property
    def attempt(self) -> int:
        return self.notice.attempt or 1

    @property
    def reason(self) -> str:
        """stalled | failed | children_done | cancel_requested | parent_cancelled | ..."""
        return _reason_word(self.notice.reason)

    @property
    def has_checkpoint(self) -> bool:
        return self.notice.has_checkpoint

    @property
    def traceparent(self) -> str | None:
        """As `DoneNotification.traceparent`: the trace of the event that caused it."""
        return _traceparent(self.attributes)

    @property
    def tracestate(self) -> str | None:
        return self.attributes.get(f"ce-{TRACESTATE_ATTR}") if self.traceparent else None

    def trace_context(self) -> Any:
        """As `DoneNotification.trace_context`."""
        from tracker.tracing import context_of

        return context_of(self.traceparent, self.tracestate)


def parse_notice(attributes: Mapping[str, str], data: bytes) -> ControlNotice:
    """A control notice from a message's attributes and data; InvalidArgument if the
    message is something else. Fields unknown to this version are ignored (a newer
    tracker may add some)."""
    kind = _KIND_BY_TYPE.get(attributes.get("ce-type", ""))
    if kind is None:
        raise InvalidArgument(f"not a control notice (ce-type {echo(attributes.get('ce-type'))})")
    notice = operation_pb2.Notice()
    try:
        json_format.Parse(data, notice, ignore_unknown_fields=True)
    except (json_format.ParseError, UnicodeDecodeError, RecursionError):
        raise InvalidArgument("a control notice whose data is not a tracker.v1.Notice") from None
    if notice.kind != kind:
        raise InvalidArgument("a control notice whose data and ce-type disagree on its kind")
    return ControlNotice(id=attributes.get("ce-id", ""), notice=notice, attributes=dict(attributes))
