"""The tracker's parser against the shared test vectors in schemas/testdata, and round trips."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from tests.helpers import make_event
from tracker.errors import InvalidEvent
from tracker.events import (
    EventRules,
    Kind,
    parse_batch,
    parse_message,
    parse_pubsub,
    to_batch,
    to_binary,
    to_structured,
)

VECTORS = json.loads((Path(__file__).parent.parent / "schemas/testdata/vectors.json").read_text())[
    "cases"
]


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
    data: dict[str, Any] = {
        Kind.PROGRESS: {"percent": 42.5, "message": "m"},
        Kind.CHECKPOINT: {"data": b"\x00\xff"},
        Kind.FAILED: {"error": {"code": 5, "message": "gone"}},
        Kind.CREATED: {"operation_type": "t", "labels": {"a": "b"}},
    }.get(kind, {})
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
