"""The event contract in schemas/: JSON Schema, canonical test vectors and their generator.

These tests check the vectors against the schema and the generated protobuf code, not the
tracker's parser (a parser test loads the same vectors).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2
from jsonschema import Draft202012Validator

from tests.helpers import ROOT
from tracker.bindings import _parse_attempt
from tracker.errors import InvalidEvent
from tracker.v1 import events_pb2

SCHEMA = json.loads((ROOT / "schemas/jsonschema/tracker.operation.v1.json").read_text())
TESTDATA = ROOT / "schemas/testdata"
CASES: list[dict[str, Any]] = json.loads((TESTDATA / "vectors.json").read_text())["cases"]

PREFIX = "tracker.operation.v1."
MESSAGES: dict[str, type[Message]] = {
    "created": events_pb2.Created,
    "progress": events_pb2.Progress,
    "checkpoint": events_pb2.Checkpoint,
    "heartbeat": events_pb2.Heartbeat,
    "succeeded": events_pb2.Succeeded,
    "failed": events_pb2.Failed,
    "cancelled": events_pb2.Cancelled,
}
STRUCT_URL = "type.googleapis.com/" + struct_pb2.Struct.DESCRIPTOR.full_name
# Any in JSON needs the descriptor of its type: the vectors use these besides tracker.v1.
KNOWN_ANY_TYPES = (struct_pb2.Struct, error_details_pb2.ErrorInfo)

validator = Draft202012Validator(SCHEMA)


def ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in cases]


def body(case: dict[str, Any]) -> bytes:
    if "body_base64" in case:
        return base64.b64decode(case["body_base64"], validate=True)
    return case["body"].encode()


def meta(case: dict[str, Any]) -> dict[str, str]:
    return case["attributes"] if case["mode"].startswith("pubsub") else case["headers"]


def media_type(value: str | None) -> str:
    return (value or "application/json").split(";")[0].strip().lower()


def as_structured(case: dict[str, Any]) -> dict[str, Any] | None:
    """The case as one structured-mode CloudEvent, or None when its bytes are not JSON."""
    raw = body(case)
    headers = meta(case)
    if case["mode"] in ("structured", "pubsub-structured"):
        try:
            return json.loads(raw)
        except ValueError:
            return None
    event: dict[str, Any] = {}
    for key, value in headers.items():
        if key.lower().startswith("ce-"):
            event[key[3:].lower()] = value
        elif key.lower() == "content-type":
            event["datacontenttype"] = value
    if not raw:
        return event
    if media_type(event.get("datacontenttype")) != "application/json":
        event["data_base64"] = base64.b64encode(raw).decode()
        return event
    try:
        event["data"] = json.loads(raw)
    except ValueError:
        return None
    return event


def decode(kind: str, data: Any) -> Message:
    """Data as the kind's message; a plain object in an Any field is a google.protobuf.Struct."""
    message = MESSAGES[kind]()
    if isinstance(data, bytes):
        message.ParseFromString(data)
    elif data is not None:
        data = dict(data)
        for name in ("metadata", "response"):
            if isinstance(data.get(name), dict) and "@type" not in data[name]:
                data[name] = {"@type": STRUCT_URL, "value": data[name]}
        json_format.ParseDict(data, message)
    return message


# ---- the schema ----


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_lists_exactly_the_seven_types() -> None:
    assert SCHEMA["properties"]["type"]["enum"] == [PREFIX + k for k in MESSAGES]


@pytest.mark.parametrize("kind", list(MESSAGES))
def test_schema_data_matches_the_proto_fields(kind: str) -> None:
    """A field added to events.proto must be added to the schema (and the reverse)."""
    definition = SCHEMA["$defs"][MESSAGES[kind].DESCRIPTOR.name]
    fields = MESSAGES[kind].DESCRIPTOR.fields
    assert definition["additionalProperties"] is False
    assert set(definition["properties"]) == {f.json_name for f in fields} | {f.name for f in fields}


@pytest.mark.parametrize(
    ("instance", "ok"),
    [
        ("0", True),
        ("9223372036854775807", True),
        ("009223372036854775807", True),
        ("9223372036854775808", False),
        ("18446744073709551615", False),
        ("", False),
        ("-1", False),
        ("1e3", False),
        ("7\n", False),
        (9223372036854775807, True),
        (9223372036854775808, False),
        (1.5, False),
        (None, True),  # null is unset, as for every CloudEvents attribute
    ],
)
def test_schema_sequence_bounds(instance: Any, ok: bool) -> None:
    schema = {"$defs": SCHEMA["$defs"], **SCHEMA["properties"]["sequence"]}
    assert validator.evolve(schema=schema).is_valid(instance) is ok


@pytest.mark.parametrize(
    ("instance", "ok"),
    [
        ("1", True),
        ("2147483647", True),
        ("002147483647", True),  # 12 characters, as the tracker reads them
        ("0002147483647", False),
        ("2147483648", False),
        ("0", False),
        ("", False),
        ("-1", False),
        ("2\n", False),
        (1, True),
        (2147483647, True),
        (2147483648, False),
        (0, False),
        (True, False),
        (1.5, False),
        (None, True),
    ],
)
def test_schema_attempt_bounds_agree_with_the_tracker(instance: Any, ok: bool) -> None:
    schema = {"$defs": SCHEMA["$defs"], **SCHEMA["properties"]["attempt"]}
    assert validator.evolve(schema=schema).is_valid(instance) is ok
    try:
        parsed = _parse_attempt(instance)
    except InvalidEvent:
        parsed = -1
    assert (parsed != -1) is ok


# ---- the vectors ----


def test_vectors_cover_every_kind_mode_and_required_defect() -> None:
    valid = [c for c in CASES if c["valid"]]
    assert {c["expected"]["type"] for c in valid} == {PREFIX + k for k in MESSAGES}
    modes = {"structured", "binary-http", "pubsub-binary", "pubsub-structured"}
    assert {c["mode"] for c in valid} == modes
    assert {c["mode"] for c in CASES} == modes
    assert len({c["name"] for c in CASES}) == len(CASES)
    reasons = {c["reason"] for c in CASES if not c["valid"]}
    assert {"missing_subject", "missing_id", "unknown_type", "bad_name", "invalid_data"} <= reasons
    assert {"bad_sequence", "malformed_json", "bad_attempt", "bad_webhook"} <= reasons
    assert any(c["valid"] and c["expected"]["attempt"] for c in CASES)
    assert any(c["valid"] and "retry" in c["expected"]["data"] for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_vector_against_schema(case: dict[str, Any]) -> None:
    event = as_structured(case)
    if case["valid"] or not case["schema_rejects"]:
        if event is None:  # not JSON at all: nothing for the schema to see
            assert not case["valid"]
            return
        errors = [e.message for e in validator.iter_errors(event)]
        assert errors == [], "the schema must accept what the tracker accepts"
    else:
        assert event is not None
        assert not validator.is_valid(event), "the schema should reject this case"


VALID = [c for c in CASES if c["valid"]]


@pytest.mark.parametrize("case", VALID, ids=ids(VALID))
def test_valid_vector_decodes_to_its_expected_data(case: dict[str, Any]) -> None:
    event = as_structured(case)
    assert event is not None
    expected = case["expected"]
    for attr in ("id", "source", "type", "subject"):
        assert event[attr] == expected[attr]
    assert event.get("time") == expected["time"]
    sequence = event.get("sequence")
    assert (None if sequence is None else int(sequence)) == expected["sequence"]
    attempt = event.get("attempt")
    assert (None if attempt is None else int(attempt)) == expected["attempt"]
    kind = expected["type"].removeprefix(PREFIX)
    data = event.get("data")
    if "data_base64" in event:
        data = base64.b64decode(event["data_base64"])
    got = decode(kind, data)
    # Compared in proto3 JSON: an Any holding a map (Struct) has no canonical encoding.
    want = json_format.ParseDict(expected["data"], MESSAGES[kind]())
    assert json_format.MessageToDict(got) == json_format.MessageToDict(want)


PROTOBUF_CASES = [c for c in CASES if "body_base64" in c]


@pytest.mark.parametrize("case", PROTOBUF_CASES, ids=ids(PROTOBUF_CASES))
def test_protobuf_vector_round_trips(case: dict[str, Any]) -> None:
    raw = body(case)
    assert (TESTDATA / case["body_file"]).read_bytes() == raw
    kind = meta(case)["ce-type"].removeprefix(PREFIX)
    message = MESSAGES[kind]()
    try:
        message.ParseFromString(raw)
    except DecodeError:
        assert not case["valid"] and case["reason"] == "invalid_data"
        return
    assert message.SerializeToString(deterministic=True) == raw


def test_a_protobuf_vector_does_not_parse() -> None:
    broken = []
    for case in PROTOBUF_CASES:
        kind = meta(case)["ce-type"].removeprefix(PREFIX)
        try:
            MESSAGES[kind]().ParseFromString(body(case))
        except DecodeError:
            broken.append(case["name"])
    assert broken == ["protobuf_body_does_not_parse"]


def test_every_bin_file_belongs_to_a_vector() -> None:
    assert {p.name for p in TESTDATA.glob("*.bin")} == {c["body_file"] for c in PROTOBUF_CASES}


def test_generator_reproduces_the_committed_files(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(TESTDATA / "generate.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    generated = sorted(p.name for p in tmp_path.iterdir())
    committed = sorted(p.name for p in TESTDATA.iterdir() if p.suffix in (".json", ".bin"))
    assert generated == committed
    for name in generated:
        assert (tmp_path / name).read_bytes() == (TESTDATA / name).read_bytes(), (
            f"{name} is stale: run python schemas/testdata/generate.py"
        )
