"""AIP-160 edges of the filter parser (`:` and unquoted timestamps), and the columns the
stores write for its fields."""

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


def _states() -> list[tuple[str, object]]:
    """States reached by real event sequences: running (also in a second attempt, after a
    retried failure), succeeded, failed, cancelled, and done by the tracker itself."""
    from google.rpc import code_pb2, status_pb2

    from tests.helpers import make_event
    from tracker.apply import apply_event, end_by_tracker
    from tracker.events import Kind

    name = "operations/cols"
    created = make_event(Kind.CREATED, name, seq=0, data={"retry": {"max_attempts": 3}})
    progress = make_event(Kind.PROGRESS, name, seq=1, data={"percent": 42.5})
    failure = status_pb2.Status(code=code_pb2.UNAVAILABLE, message="flaky")
    out: list[tuple[str, object]] = []
    state = apply_event(None, created, T).state
    state = apply_event(state, progress, T).state
    out.append(("running", state))
    retried = apply_event(state, make_event(Kind.FAILED, name, seq=2, data={"error": failure}), T)
    out.append(("running, retried", retried.state))
    for kind, data in (
        (Kind.SUCCEEDED, None),
        (Kind.FAILED, {"error": status_pb2.Status(code=code_pb2.NOT_FOUND, message="x")}),
        (Kind.CANCELLED, None),
    ):
        ended = apply_event(state, make_event(kind, name, seq=9, data=data, attempt=1), T)
        out.append((kind.value, ended.state))
    by_tracker = type(state)()
    by_tracker.CopyFrom(state)
    end_by_tracker(by_tracker, T, status_pb2.Status(code=code_pb2.DEADLINE_EXCEEDED))
    out.append(("expired", by_tracker))
    return out


# (result, error code, percent, attempt) each state must be stored with, said by hand.
EXPECTED_COLUMNS = {
    "running": ("running", 0, 42.5, 1),
    "running, retried": ("running", 0, 42.5, 2),  # the failure is the last attempt's
    "succeeded": ("succeeded", 0, 100.0, 1),
    "failed": ("failed", 5, 42.5, 1),  # NOT_FOUND
    "cancelled": ("cancelled", 1, 42.5, 1),  # CANCELLED
    "expired": ("failed", 4, 42.5, 1),  # DEADLINE_EXCEEDED, ended by the tracker
}


@pytest.mark.parametrize(("label", "state"), _states(), ids=[label for label, _ in _states()])
def test_the_columns_a_store_writes_for_every_kind_of_end(label: str, state: object) -> None:
    """`filter_fields.columns`, what both stores write on every save (and what a
    pushed-down filter reads), for each kind of end; `facts`, what the row-by-row filter
    evaluates, and `result_of` say the same."""
    from tracker.filter_fields import columns, facts, result_of

    assert columns(state) == EXPECTED_COLUMNS[label]  # type: ignore[arg-type]
    f = facts(state)  # type: ignore[arg-type]
    assert (f["result"], f["error_code"], f["percent"], f["attempt"]) == EXPECTED_COLUMNS[label]
    assert result_of(state) == EXPECTED_COLUMNS[label][0]  # type: ignore[arg-type]
