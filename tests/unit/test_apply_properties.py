"""Property: any permutation and duplication of an event stream, delivered one event
or one batch at a time, ends in the same state as the stream applied once, in order."""

from __future__ import annotations

from datetime import timedelta

from google.rpc import status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import T0, make_event
from tracker.events import Event, Kind
from tracker.stores.sqlite import SqliteStore
from tracker.v1 import events_pb2

OP = "operations/prop"


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[Event], bool]:
    """A producer's stream: created, progress/checkpoint/heartbeat, then one terminal."""
    with_sequence = draw(st.booleans())
    middle = draw(
        st.lists(st.sampled_from([Kind.PROGRESS, Kind.CHECKPOINT, Kind.HEARTBEAT]), max_size=8)
    )
    terminal = draw(st.sampled_from([Kind.SUCCEEDED, Kind.FAILED, Kind.CANCELLED]))
    kinds = [Kind.CREATED, *middle, terminal]
    events = []
    for i, kind in enumerate(kinds):
        data: object
        if kind is Kind.CREATED:
            data = events_pb2.Created(operation_type="t", labels={"k": str(i)})
        elif kind is Kind.PROGRESS:
            data = events_pb2.Progress(percent=min(100, i * 10), message=f"step {i}")
        elif kind is Kind.CHECKPOINT:
            data = events_pb2.Checkpoint(data=f"cp{i}".encode())
        elif kind is Kind.FAILED:
            data = events_pb2.Failed(error=status_pb2.Status(code=13, message="boom"))
        else:
            data = None
        events.append(
            make_event(
                kind,
                OP,
                id=f"e{i}",
                seq=i + 1 if with_sequence else None,
                time=T0 + timedelta(seconds=i),
                data=data,
            )
        )
    return events, with_sequence


def final_state(events: list[Event], batches: list[int]) -> tuple[bytes, bytes | None]:
    store = SqliteStore(":memory:")
    try:
        i = 0
        for size in batches:
            if i >= len(events):
                break
            store.apply(events[i : i + size])
            i += size
        if i < len(events):
            store.apply(events[i:])
        stored = store.get(OP)
        assert stored is not None
        state = stored.state
        state.ClearField("update_time")  # wall-clock of the last apply, by design
        return state.SerializeToString(deterministic=True), stored.checkpoint
    finally:
        store.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=streams(),
    order=st.randoms(use_true_random=False),
    dup_indexes=st.lists(st.integers(min_value=0, max_value=100), max_size=6),
    batches=st.lists(st.integers(min_value=1, max_value=4), max_size=12),
)
def test_any_permutation_and_duplication_converges(
    data: tuple[list[Event], bool], order: object, dup_indexes: list[int], batches: list[int]
) -> None:
    events, _ = data
    expected = final_state(events, [1] * len(events))
    delivered = list(events) + [events[i % len(events)] for i in dup_indexes]
    order.shuffle(delivered)  # type: ignore[attr-defined]
    assert final_state(delivered, batches) == expected


def test_events_after_the_tracker_ended_an_operation_are_late() -> None:
    """CancelOperation (and expiry) end an operation at a point in arrival order: every
    event that arrives afterwards is late, sequenced or not, whatever its event time
    (a producer's clock may lag the tracker's)."""
    from tracker.apply import Outcome, apply_event, expire, request_cancel

    created = make_event(
        Kind.CREATED, OP, seq=1, time=T0, data={"heartbeat_timeout": timedelta(seconds=10)}
    )
    state = apply_event(None, created, T0).state
    expired = expire(state, T0 + timedelta(seconds=10))
    assert expired is not None
    for ended in (request_cancel(state, T0 + timedelta(seconds=10)).state, expired.state):
        after = make_event(Kind.PROGRESS, OP, seq=2, time=T0 + timedelta(seconds=11))
        before = make_event(
            Kind.PROGRESS, OP, seq=2, time=T0 + timedelta(seconds=5), data={"percent": 40}
        )
        now = T0 + timedelta(seconds=12)
        assert apply_event(ended, after, now).outcome is Outcome.LATE
        stale = apply_event(ended, before, now)
        assert stale.outcome is Outcome.LATE and stale.state.percent == 0
