"""AIP-160 edges of the filter parser: `:` (has) and unquoted timestamps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tracker import filtering
from tracker.errors import InvalidArgument
from tracker.filtering import Cmp, Row

T = datetime(2026, 1, 1, tzinfo=UTC)


def row(**kw: object) -> Row:
    base: dict[str, object] = dict(
        name="operations/a",
        done=False,
        operation_type="",
        parent="",
        labels={"env": "prod"},
        create_time=T,
        update_time=T,
    )
    base.update(kw)
    return Row(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["name", "operation_type", "parent"])
def test_has_on_a_string_field_is_presence(field: str) -> None:
    expr = filtering.parse(f"{field}:*")
    assert expr == Cmp(field, "!=", "")
    assert filtering.matches(expr, row(**{field: "x"}))
    if field != "name":
        assert not filtering.matches(expr, row(**{field: ""}))


@pytest.mark.parametrize("text", ['operation_type:"export"', "parent:p1", 'name:"operations/a"'])
def test_has_with_a_value_on_a_string_field_is_refused_with_what_to_write(text: str) -> None:
    field = text.split(":")[0]
    with pytest.raises(InvalidArgument) as caught:
        filtering.parse(text)
    message = str(caught.value)
    assert "AIP-160" in message and f"{field} = " in message and f"{field}:*" in message, message


def test_has_on_the_labels_map() -> None:
    assert filtering.matches(filtering.parse("labels:env"), row())
    assert not filtering.matches(filtering.parse("labels:team"), row())
    assert filtering.matches(filtering.parse("labels.env:*"), row())
    # m.k:v is "m has key k with value v" (AIP-160): equality on the value.
    assert filtering.parse('labels.env:"prod"') == filtering.parse('labels.env = "prod"')
    assert not filtering.matches(filtering.parse("labels.env:dev"), row())


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.5Z",
        "2026-01-01T01:00:00+01:00",
        "2025-12-31T19:00:00-05:00",
    ],
)
def test_unquoted_timestamps_equal_quoted_ones(value: str) -> None:
    bare = filtering.parse(f"create_time >= {value} AND done = false")
    quoted = filtering.parse(f'create_time >= "{value}" AND done = false')
    assert bare == quoted


def test_an_unquoted_timestamp_outside_a_time_field_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        filtering.parse("percent > 2026-01-01T00:00:00Z")
    with pytest.raises(InvalidArgument):  # not RFC 3339: a time needs its offset
        filtering.parse("create_time > 2026-01-01T00:00:00")
