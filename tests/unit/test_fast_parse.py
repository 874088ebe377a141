"""The fast parse paths give exactly what the CloudEvents SDK and json_format give.

`tracker.bindings._parse(..., fast=False)` is the reference: every event through the SDK's
`CloudEvent` validation (and `from_binary` in binary mode), every JSON data object through
`json_format`, every batch item measured. The fast path (what `parse_message` runs) reads
binary-mode headers directly, sets plain data fields without json_format and skips the
per-item size in small batches. For every test vector, every bad request the HTTP tests
pin, and generated requests around each shortcut's edges, both must accept the same events
or refuse with the same reason, message and event id.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import ROOT, make_event
from tests.integration.test_ingest import BAD_HTTP, BINARY_OK
from tracker.bindings import (
    _EXPANSION,
    _parse,
    _sdk_accepts,
    pubsub_headers,
    to_batch,
    to_binary,
)
from tracker.errors import InvalidEvent
from tracker.events import DATA_MESSAGES, EventRules, Kind, _plain_message
from tracker.v1 import events_pb2

VECTORS = json.loads((ROOT / "schemas/testdata/vectors.json").read_text())["cases"]
RECEIVED = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
RULES = [EventRules(), EventRules(max_event_bytes=300)]


def outcome(headers: dict[str, str], body: bytes, rules: EventRules, *, fast: bool) -> Any:
    try:
        return ("accepted", _parse(headers, body, rules, RECEIVED, fast=fast))
    except InvalidEvent as exc:
        return ("refused", exc.reason, exc.message, exc.event_id)


def same(headers: dict[str, str], body: bytes, rules: EventRules = RULES[0]) -> str:
    fast = outcome(headers, body, rules, fast=True)
    assert fast == outcome(headers, body, rules, fast=False), (headers, body[:300])
    return str(fast[0])


def _vector(case: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    body = (
        base64.b64decode(case["body_base64"])
        if "body_base64" in case
        else str(case.get("body", "")).encode()
    )
    if case["mode"].startswith("pubsub"):
        return pubsub_headers(case["attributes"]), body
    return dict(case["headers"]), body


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["name"])
def test_every_vector_parses_the_same_on_both_paths(case: dict[str, Any]) -> None:
    headers, body = _vector(case)
    assert same(headers, body) == ("accepted" if case["valid"] else "refused")
    same(headers, body, RULES[1])  # a small limit: the batch item sizes are measured


@pytest.mark.parametrize(("reason", "status", "headers", "body"), BAD_HTTP)
def test_every_bad_http_request_is_refused_the_same(
    reason: str, status: int, headers: dict[str, str], body: bytes
) -> None:
    assert same(dict(headers), body) == "refused"


def test_the_fast_path_is_the_one_taken_for_ordinary_events() -> None:
    # Without this, both paths could be the slow one and the comparison would prove nothing.
    headers, _ = to_binary(make_event(Kind.PROGRESS, "operations/x", data={"percent": 5}))
    attrs = {k[3:]: v for k, v in headers.items() if k.startswith("ce-") and k != "ce-time"}
    assert _sdk_accepts(attrs)
    assert not _sdk_accepts({**attrs, "specversion": "0.3"})
    assert not _sdk_accepts({**attrs, "Ext": "1"})
    plain = _plain_message(events_pb2.Progress(), {"percent": 5, "message": "m"})
    assert plain == events_pb2.Progress(percent=5, message="m")
    assert _plain_message(events_pb2.Progress(), {"percent": None}) is None
    assert (
        _plain_message(events_pb2.Created(), {"operationType": "a", "operation_type": "b"}) is None
    )


# ---- generated requests around each shortcut's edges ---------------------------------------

FIELD_NAMES = sorted(
    {n for t in DATA_MESSAGES.values() for f in t.DESCRIPTOR.fields for n in (f.name, f.json_name)}
)
TEXT = st.text(max_size=6) | st.sampled_from(["", "a", "é", "\ud800", "%41", "x y", "0"])
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.sampled_from([2**53, 2**53 + 1, -(2**53) - 1, 10**400 // 10**300])
    | st.floats()
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
DATA = st.dictionaries(
    st.sampled_from([*FIELD_NAMES, "x", "@type", ""]) | TEXT,
    JSON | st.dictionaries(TEXT, TEXT, max_size=3),
    max_size=4,
)
ATTR_NAMES = st.sampled_from(
    ["ext", "x1", "Ext", "a-b", "data", "sequence", "attempt", "dataschema", "subject",
     "specversion", "id", "source", "time", "datacontenttype", "type"]
)  # fmt: skip
ATTR_VALUES = TEXT | st.sampled_from(["1.0", "0.3", "7", "operations/x", "2024-06-01T12:00:00Z"])
GEN = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


@GEN
@given(
    kind=st.sampled_from(list(Kind)),
    data=DATA,
    extra=st.dictionaries(ATTR_NAMES, ATTR_VALUES, max_size=3),
    drop=st.sets(st.sampled_from(["ce-id", "ce-source", "ce-type", "ce-specversion"]), max_size=1),
    upper=st.booleans(),
    rules=st.sampled_from(RULES),
)
def test_binary_mode_generated(
    kind: Kind,
    data: dict[str, Any],
    extra: dict[str, str],
    drop: set[str],
    upper: bool,
    rules: EventRules,
) -> None:
    headers = {k: v for k, v in {**BINARY_OK, "ce-type": kind.type}.items() if k not in drop}
    headers.update({f"ce-{k}": v for k, v in extra.items()})
    if upper:  # two spellings of one header: the SDK reads the last, `header` the first
        headers = {**headers, "CE-ID": "other", "Content-Type": "application/json"}
    same(headers, _json(data), rules)


def _item(kind: Kind, data: Any, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "1",
        "source": "s",
        "type": kind.type,
        "subject": "operations/x",
        "data": data,
        **extra,
    }


STRUCTURED_EXTRA = st.dictionaries(
    ATTR_NAMES, ATTR_VALUES | st.integers(-3, 3) | st.none() | st.booleans(), max_size=3
)


@GEN
@given(
    items=st.lists(
        st.tuples(st.sampled_from(list(Kind)), DATA, STRUCTURED_EXTRA), min_size=1, max_size=3
    ),
    rules=st.sampled_from(RULES),
)
def test_structured_and_batch_modes_generated(
    items: list[tuple[Kind, dict[str, Any], dict[str, Any]]], rules: EventRules
) -> None:
    objects = [_item(*item) for item in items]
    same({"content-type": "application/cloudevents+json"}, _json(objects[0]), rules)
    same({"content-type": "application/cloudevents-batch+json"}, _json(objects), rules)


def test_a_batch_item_over_the_limit_is_still_measured() -> None:
    # The per-item size is skipped only when the whole body is too small to hold one.
    rules = EventRules(max_event_bytes=300)
    big = make_event(Kind.HEARTBEAT, "operations/x", data={"message": "m" * 400})
    small = make_event(Kind.HEARTBEAT, "operations/y")
    headers, body = to_batch([small, big])
    with pytest.raises(InvalidEvent) as info:
        _parse(headers, body, rules, RECEIVED, fast=True)
    assert info.value.reason == "too_large"
    assert info.value.message.startswith("batch[1]: ")


NUMBER_TOKENS = st.sampled_from(
    ["1e5", "1E15", "1e16", "1e400", "-1e400", "1.0", "1e-7", "0.1", "5e-324", "-0", "7",
     "1.7976931348623157e308", "123456789012345678901234567890", "2.5E+3"]
)  # fmt: skip


@GEN
@given(tokens=st.lists(NUMBER_TOKENS | JSON.map(lambda v: json.dumps(v)), min_size=1, max_size=20))
def test_written_again_an_event_takes_at_most_8_times_its_bytes(tokens: list[str]) -> None:
    # Why a batch body under max_event_bytes / 8 needs no per-item measuring.
    text = "[" + ",".join(tokens) + "]"
    written = json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    assert len(written.encode("utf-8", "surrogatepass")) <= _EXPANSION * len(text.encode())


def test_batch_items_nested_up_to_the_parser_stack_are_refused_the_same() -> None:
    # Unmeasured, an item is never written again: json.dumps must not have failed where
    # json.loads, which read it, did not (both paths refuse with the same answer).
    answers = set()
    for depth in range(0, 3000, 25):
        item = {**_item(Kind.PROGRESS, {}, {}), "x": None}
        text = json.dumps([item]).replace("null", "[" * depth + "]" * depth)
        answers.add(same({"content-type": "application/cloudevents-batch+json"}, text.encode()))
    assert answers == {"refused"}
