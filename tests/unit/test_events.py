"""The tracker's parser against the shared test vectors in schemas/testdata, and round trips."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

import pytest
from google.protobuf import json_format

from tests.helpers import ROOT, make_event
from tracker.bindings import (
    parse_batch,
    parse_message,
    parse_pubsub,
    to_batch,
    to_binary,
    to_structured,
)
from tracker.errors import InvalidEvent
from tracker.events import EventRules, Kind
from tracker.v1 import events_pb2

VECTORS = json.loads((ROOT / "schemas/testdata/vectors.json").read_text())["cases"]


def _body(case: dict[str, Any]) -> bytes:
    if "body_base64" in case:
        return base64.b64decode(case["body_base64"])
    return str(case.get("body", "")).encode()


def _parse(case: dict[str, Any]) -> Any:
    if case["mode"].startswith("pubsub"):
        return parse_pubsub(case["attributes"], _body(case))
    events = parse_message(case["headers"], _body(case))
    assert len(events) == 1
    return events[0]


@pytest.mark.parametrize("case", [c for c in VECTORS if c["valid"]], ids=lambda c: c["name"])
def test_valid_vector_decodes_to_expected(case: dict[str, Any]) -> None:
    event = _parse(case)
    expected = case["expected"]
    assert event.id == expected["id"]
    assert event.source == expected["source"]
    assert event.kind.type == expected["type"]
    assert event.operation == expected["subject"]
    assert event.sequence == expected.get("sequence")
    assert event.attempt == expected["attempt"]
    if expected.get("time"):
        want = datetime.fromisoformat(expected["time"].replace("Z", "+00:00"))
        assert event.time == want
    decoded = json_format.MessageToDict(event.data)
    assert decoded == expected.get("data", {})


@pytest.mark.parametrize("case", [c for c in VECTORS if not c["valid"]], ids=lambda c: c["name"])
def test_invalid_vector_rejected_with_reason(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent) as info:
        _parse(case)
    assert info.value.reason == case["reason"], info.value.message
    assert info.value.message  # says what is wrong


def test_every_kind_has_a_valid_vector() -> None:
    kinds = {json.loads(json.dumps(c["expected"]))["type"] for c in VECTORS if c["valid"]}
    assert kinds == {k.type for k in Kind}


@pytest.mark.parametrize("content_type", ["application/json", "application/protobuf"])
@pytest.mark.parametrize("kind", list(Kind))
def test_round_trip_binary_structured_batch(kind: Kind, content_type: str) -> None:
    samples: dict[Kind, dict[str, Any]] = {
        Kind.PROGRESS: {"percent": 42.5, "message": "m"},
        Kind.CHECKPOINT: {"data": b"\x00\xff"},
        Kind.FAILED: {"error": {"code": 5, "message": "gone"}},
        Kind.CREATED: {"operation_type": "t", "labels": {"a": "b"}},
    }
    data = samples.get(kind, {})
    event = make_event(kind, "operations/rt", seq=7, data=_message(kind, data))
    for headers, body in (to_binary(event, content_type), to_structured(event, content_type)):
        (back,) = parse_message(headers, body)
        assert back == event
    headers, body = to_batch([event, event], content_type)
    assert parse_message(headers, body) == [event, event]


def _message(kind: Kind, fields: dict[str, Any]) -> Any:
    from tracker.events import DATA_MESSAGES

    message = DATA_MESSAGES[kind]()
    json_format.ParseDict(
        {k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in fields.items()},
        message,
    )
    return message


def test_plain_json_object_in_any_becomes_struct() -> None:
    headers = {
        "ce-id": "1",
        "ce-source": "s",
        "ce-specversion": "1.0",
        "ce-subject": "operations/x",
        "ce-type": Kind.SUCCEEDED.type,
        "content-type": "application/json",
    }
    (event,) = parse_message(headers, b'{"response": {"rows": 3}}')
    assert isinstance(event.data, events_pb2.Succeeded)
    assert event.data.response.type_url == "type.googleapis.com/google.protobuf.Struct"


def test_size_limit_applies_to_single_and_batch_items() -> None:
    rules = EventRules(max_event_bytes=2048)
    event = make_event(Kind.PROGRESS, "operations/big", data={"message": "x" * 4000})
    headers, body = to_binary(event)
    with pytest.raises(InvalidEvent) as info:
        parse_message(headers, body, rules)
    assert info.value.reason == "too_large"
    headers, body = to_batch([event])
    with pytest.raises(InvalidEvent) as info:
        parse_message(headers, body, rules)
    assert info.value.reason == "too_large"


def test_name_pattern_is_configurable() -> None:
    rules = EventRules(name_pattern=r"^projects/[a-z]+/operations/[0-9]+$")
    event = make_event(Kind.HEARTBEAT, "projects/acme/operations/42")
    assert parse_message(*to_binary(event), rules)[0].operation == event.operation
    with pytest.raises(InvalidEvent) as info:
        parse_message(*to_binary(make_event(Kind.HEARTBEAT, "operations/42")), rules)
    assert info.value.reason == "bad_name"


def test_batch_is_all_or_nothing_and_names_the_bad_item() -> None:
    good = json.loads(to_structured(make_event(Kind.HEARTBEAT, "operations/a"))[1])
    bad = dict(good, type="tracker.operation.v1.nope")
    with pytest.raises(InvalidEvent) as info:
        parse_batch(json.dumps([good, bad]).encode())
    assert info.value.reason == "unknown_type" and "batch[1]" in info.value.message
    with pytest.raises(InvalidEvent):
        parse_batch(b'{"not": "a list"}')


def test_not_a_cloudevent() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_message({"content-type": "text/plain"}, b"hello")
    assert info.value.reason == "bad_content_type"


# ---- edges: nesting, time range, null attributes, text that no store holds ---------------

HEADERS = {
    "ce-id": "1",
    "ce-source": "s",
    "ce-specversion": "1.0",
    "ce-subject": "operations/x",
    "ce-type": Kind.PROGRESS.type,
    "content-type": "application/json",
}
STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}
DEEP = b"[" * 100_000 + b"]" * 100_000  # far past the JSON parser's stack


def _event(**attrs: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "1",
        "source": "s",
        "type": Kind.PROGRESS.type,
        "subject": "operations/x",
        **attrs,
    }


def _reason(headers: dict[str, str], body: bytes) -> str:
    with pytest.raises(InvalidEvent) as info:
        parse_message(headers, body)
    assert info.value.message
    return info.value.reason


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (STRUCTURED, DEEP),
        (BATCH, DEEP),
        (HEADERS, b'{"metadata": ' + DEEP + b"}"),
        (STRUCTURED, json.dumps(_event(data={"metadata": []})).encode().replace(b"[]", DEEP)),
    ],
    ids=["structured", "batch", "binary-data", "structured-data"],
)
def test_json_nested_past_the_parser_stack_is_too_deep(
    headers: dict[str, str], body: bytes
) -> None:
    assert _reason(headers, body) == "too_deep"


def _nested(levels: int) -> dict[str, Any]:
    """Progress data nested `levels` deep in all (the data object is level 1)."""
    value: Any = 1
    for _ in range(levels - 1):
        value = {"a": value}
    return {"percent": 1, "metadata": value}


def test_data_nesting_limit_keeps_metadata_readable() -> None:
    from tracker.events import MAX_DATA_DEPTH

    (event,) = parse_message(HEADERS, json.dumps(_nested(MAX_DATA_DEPTH)).encode())
    # What was accepted reads back: a Struct this deep still parses (protobuf stops at 100).
    assert json_format.MessageToDict(event.data)["metadata"]["value"]["a"]
    assert _reason(HEADERS, json.dumps(_nested(MAX_DATA_DEPTH + 1)).encode()) == "too_deep"


@pytest.mark.parametrize(
    "text",
    [
        "9999-12-31T23:59:59-23:59",  # valid RFC 3339, after year 9999 in UTC
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "2024-06-01T12:00:00",  # no offset
        "2024-W01",
        "2024-06-01T12:00:00.1234567890Z",  # ten fractional digits
        "2024-06-01T24:00:00Z",
    ],
)
def test_time_outside_rfc3339_or_the_range_is_bad_time_in_every_mode(text: str) -> None:
    assert _reason({**HEADERS, "ce-time": text}, b"{}") == "bad_time"
    assert _reason(STRUCTURED, json.dumps(_event(time=text)).encode()) == "bad_time"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("9999-12-31T23:59:59.999999999Z", datetime(9999, 12, 31, 23, 59, 59, 999999)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1)),
        ("2024-06-01t12:00:00+02:00", datetime(2024, 6, 1, 10)),
    ],
)
def test_times_at_the_ends_of_the_range_are_accepted(text: str, want: datetime) -> None:
    from datetime import UTC

    (event,) = parse_message({**HEADERS, "ce-time": text}, b"{}")
    assert event.time == want.replace(tzinfo=UTC)


def test_a_null_attribute_is_unset() -> None:
    received = datetime(2026, 3, 1, tzinfo=__import__("datetime").UTC)
    body = json.dumps(_event(sequence=None, time=None, tenant=None)).encode()
    (event,) = parse_message(STRUCTURED, body, received=received)
    assert event.sequence is None and event.time == received and event.extensions == {}
    assert _reason(STRUCTURED, json.dumps(_event(subject=None)).encode()) == "missing_subject"


def test_an_empty_sequence_is_not_a_number() -> None:
    assert _reason({**HEADERS, "ce-sequence": ""}, b"{}") == "bad_sequence"
    assert _reason(STRUCTURED, json.dumps(_event(sequence="")).encode()) == "bad_sequence"
    # Too many digits for int() to read is still a bad sequence, not a ValueError.
    assert _reason({**HEADERS, "ce-sequence": "9" * 5000}, b"{}") == "bad_sequence"


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        ({"id": "\ud800"}, "bad_id"),
        ({"source": "\udfff"}, "bad_source"),
        ({"id": 7}, "invalid_attributes"),
        ({"subject": ["operations/x"]}, "invalid_attributes"),
        ({"tenant": {"nested": 1}}, "invalid_attributes"),
        ({"tenant": 1.5}, "invalid_attributes"),
    ],
)
def test_structured_attributes_a_store_cannot_hold_are_refused(
    attrs: dict[str, Any], reason: str
) -> None:
    assert _reason(STRUCTURED, json.dumps(_event(**attrs)).encode()) == reason


def test_protobuf_durations_and_times_out_of_range_are_invalid_data() -> None:
    from google.protobuf import duration_pb2, timestamp_pb2

    from tracker.v1 import events_pb2

    headers = {**HEADERS, "ce-type": Kind.CREATED.type, "content-type": "application/protobuf"}
    for created in (
        events_pb2.Created(heartbeat_timeout=duration_pb2.Duration(seconds=10**15)),
        events_pb2.Created(heartbeat_timeout=duration_pb2.Duration(seconds=-1)),
        events_pb2.Created(heartbeat_timeout=duration_pb2.Duration(nanos=-5)),
        events_pb2.Created(deadline=timestamp_pb2.Timestamp(seconds=-62135596801)),
        events_pb2.Created(deadline=timestamp_pb2.Timestamp(nanos=10**9)),
    ):
        assert _reason(headers, created.SerializeToString()) == "invalid_data", created
    longest = events_pb2.Created(heartbeat_timeout=duration_pb2.Duration(seconds=315576000000))
    (event,) = parse_message(headers, longest.SerializeToString())
    assert event.data == longest


def test_name_segments_of_dots_are_refused_by_the_default_pattern() -> None:
    for name in ("operations/.", "operations/..", "operations/a/./b", "operations/a/../b"):
        assert _reason({**HEADERS, "ce-subject": name}, b"{}") == "bad_name", name
    for name in ("operations/.a", "operations/a..b", "operations/..a", "operations/v1.2"):
        assert parse_message({**HEADERS, "ce-subject": name}, b"{}")[0].operation == name


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        (Kind.CREATED, {"metadata": {"@type": None, "value": {"a": 1}}}),
        (Kind.CREATED, {"metadata": {"@type": 5}}),
        (Kind.SUCCEEDED, {"response": {"@type": []}}),
        (Kind.CREATED, {"metadata": {"@type": "type.googleapis.com/google.protobuf.Value"}}),
        (Kind.FAILED, {"error": {"code": 3, "details": [{"@type": None}]}}),
        (Kind.PROGRESS, {"percent": 10**400}),
    ],
)
def test_json_the_protobuf_parser_trips_on_is_invalid_data(kind: Kind, data: Any) -> None:
    """Found by tests/integration/test_fuzz.py: json_format raised AttributeError /
    KeyError (a 500, and an "internal" dead letter on the push route)."""
    body = json.dumps(data).encode()
    assert _reason({**HEADERS, "ce-type": kind.type}, body) == "invalid_data"


def test_sequence_is_a_number_not_the_extensions_string_order() -> None:
    """docs/publishing.md: `sequence` compares as a number (10 after 9), unlike the
    CloudEvents sequence extension's string order; anything but digits is refused."""
    from tracker.apply import Outcome
    from tracker.stores.sqlite import SqliteStore

    name = "operations/seq-order"
    store = SqliteStore(":memory:")
    store.apply([make_event(Kind.CREATED, name, seq=1)])
    ten = make_event(Kind.PROGRESS, name, seq=10, data={"percent": 10})
    nine = make_event(Kind.PROGRESS, name, seq=9, data={"percent": 9})
    assert store.apply([ten]).results[0].outcome is Outcome.APPLIED
    assert store.apply([nine]).results[0].outcome is Outcome.STALE  # 9 is older than 10
    headers, body = to_binary(make_event(Kind.PROGRESS, name, seq=3))
    for bad in ("0x0a", "1e3", "ten", "-1", " 7"):
        with pytest.raises(InvalidEvent) as caught:
            parse_message({**headers, "ce-sequence": bad}, body)
        assert "sequence" in str(caught.value), (bad, caught.value)
    store.close()
