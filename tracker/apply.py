"""The pure state machine: (state, event) -> (new state, outcome). No I/O here.

The state is split into facets (created, progress, metadata, checkpoint, terminal),
each remembering the key of the event that last set it. An event changes a facet
only when its key is newer, so the final state does not depend on delivery order:
any permutation and duplication of a stream converges to the in-order result.

Rules (docs/semantics.md has the long form):
1. Exactly-once effect: the store filters event identities already applied.
2. Terminal wins: the first terminal event sets the result; a later one is ignored.
   A non-terminal event newer than the terminal one is late and ignored; one older
   than it (delivered late) still fills its facet, as it would have in order.
3. Newest wins: per facet, a later attempt first; in the same attempt by sequence when
   both events carry one, else event time, ties broken by event id.
4. Unknown operations are created by their first event, unless strict.
5. Attempts: an event of a higher attempt than the operation's starts that attempt (a
   restarted worker); a retry policy turns a stall or a retryable failure of the current
   attempt into the next attempt and a resume notice (`tracker.notices`), until the last.
"""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from google.longrunning import operations_pb2
from google.protobuf import any_pb2, empty_pb2, timestamp_pb2
from google.rpc import code_pb2, status_pb2

from tracker import notices
from tracker.errors import InvalidEvent, echo
from tracker.events import Event, Kind
from tracker.v1 import events_pb2, operation_pb2

OperationState = operation_pb2.OperationState
EventKey = operation_pb2.EventKey
Notice = notices.Notice
ReasonValue = notices.ReasonValue
# The event id of the terminal key the tracker writes itself (cancel, expiry); it sorts
# after every id a producer can send.
TRACKER_END_ID = "\U0010ffff"


class Outcome(enum.Enum):
    """What an event did. Every outcome except REJECTED records the event id."""

    APPLIED = "applied"  # changed the operation
    DUPLICATE = "duplicate"  # same (operation, source, id) already applied
    STALE = "stale"  # older than what its facet holds; no rollback
    LATE = "late"  # non-terminal after the terminal event, or a second terminal


@dataclass(frozen=True)
class Transition:
    state: OperationState
    outcome: Outcome
    became_done: bool = False
    # Resume or cancel notices this transition causes (done-notices are the writer's).
    notices: tuple[Notice, ...] = ()


# A failed event with one of these codes starts the next attempt, when the operation has
# a retry policy that names no codes of its own.
DEFAULT_RETRYABLE: Final = frozenset(
    {
        code_pb2.UNAVAILABLE,
        code_pb2.ABORTED,
        code_pb2.RESOURCE_EXHAUSTED,
        code_pb2.DEADLINE_EXCEEDED,
        code_pb2.INTERNAL,
    }
)
DEFAULT_INITIAL_BACKOFF: Final = timedelta(seconds=1)
DEFAULT_MAX_BACKOFF: Final = timedelta(seconds=300)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH: Final = datetime(1970, 1, 1)


def timestamp(when: datetime) -> timestamp_pb2.Timestamp:
    """As `Timestamp.FromDatetime` (a naive time is UTC), in integer arithmetic: this
    runs several times per event, and the library's version costs several times more."""
    delta = when - (_NAIVE_EPOCH if when.tzinfo is None else _EPOCH)
    return timestamp_pb2.Timestamp(
        seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000
    )


def to_datetime(value: timestamp_pb2.Timestamp) -> datetime:
    """As `value.ToDatetime(UTC)`, in integer arithmetic (the hot path's conversion)."""
    return _EPOCH + timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def attempt_of(state: OperationState) -> int:
    """The operation's current attempt (1 for rows written before attempts existed)."""
    return state.attempt or 1


def event_key(event: Event) -> EventKey:
    key = EventKey(time=timestamp(event.time), event_id=event.id, attempt=event.run)
    if event.sequence is not None:
        key.has_sequence = True
        key.sequence = event.sequence
    return key


def _sort_tuple(key: EventKey) -> tuple[int, int, str]:
    return (key.time.seconds, key.time.nanos, key.event_id)


def newer(a: EventKey, b: EventKey) -> bool:
    """True when a is strictly newer than b (b may be unset: then a is newer)."""
    if not b.event_id:
        return True
    if (a.attempt or 1) != (b.attempt or 1):
        return (a.attempt or 1) > (b.attempt or 1)
    if a.has_sequence and b.has_sequence and a.sequence != b.sequence:
        return a.sequence > b.sequence
    return _sort_tuple(a) > _sort_tuple(b)


def new_state(name: str, event: Event) -> OperationState:
    state = OperationState(name=name, attempt=event.run)
    state.create_time.CopyFrom(timestamp(event.time))
    return state


def apply_event(
    state: OperationState | None, event: Event, now: datetime, *, strict: bool = False
) -> Transition:
    """Apply one (not yet seen) event. Returns a new state object; `state` is not mutated."""
    created = state is None
    if state is None:
        if strict and event.kind is not Kind.CREATED:
            raise InvalidEvent(
                "unknown_operation",
                f"operation {echo(event.operation)} does not exist and the tracker is strict:"
                f" send {Kind.CREATED.type} first",
                event_id=event.id,
            )
        state = new_state(event.operation, event)
    else:
        state = _copy(state)
    key = event_key(event)
    notices: tuple[Notice, ...] = ()
    if event.kind.terminal:
        if state.done or (event.run < attempt_of(state) and event.kind is not Kind.SUCCEEDED):
            # A second terminal event; or the failure of an attempt that was already
            # superseded (retried, or restarted): only a success still counts.
            outcome = Outcome.LATE
        elif (resume := _retry_failure(state, event, key, now)) is not None:
            outcome, notices = Outcome.APPLIED, (resume,)
        else:
            outcome = _terminal(state, event, key)
    elif state.done and (ended_by_tracker(state) or newer(key, state.terminal_key)):
        outcome = Outcome.LATE
    else:
        outcome = _non_terminal(state, event, key)
    if outcome is not Outcome.LATE:
        _liveness(state, key)
    if outcome is Outcome.APPLIED or created:
        state.update_time.CopyFrom(timestamp(now))
    return Transition(
        state=state,
        outcome=outcome if not created else Outcome.APPLIED,
        became_done=outcome is Outcome.APPLIED and event.kind.terminal and state.done,
        notices=notices,
    )


def _retryable(state: OperationState, code: int, now: datetime) -> bool:
    """Whether a failure with `code` of the current attempt starts another attempt."""
    if not state.HasField("retry") or state.done:
        return False
    policy = state.retry
    codes = set(policy.retryable_status_codes) or DEFAULT_RETRYABLE
    if code not in codes or state.retries + 1 >= max(policy.max_attempts, 1):
        return False
    return not (state.HasField("deadline") and to_datetime(state.deadline) <= now)


def backoff(policy: events_pb2.RetryPolicy, retries: int) -> timedelta:
    """The wait before the retry after `retries` earlier ones (gRPC's retryPolicy)."""
    initial = (
        policy.initial_backoff.ToTimedelta()
        if policy.HasField("initial_backoff")
        else DEFAULT_INITIAL_BACKOFF
    )
    most = (
        policy.max_backoff.ToTimedelta() if policy.HasField("max_backoff") else DEFAULT_MAX_BACKOFF
    )
    factor = policy.backoff_multiplier or 2.0
    seconds = initial.total_seconds() * factor ** min(retries, 64)
    return min(most, timedelta(seconds=min(seconds, most.total_seconds())))


def next_attempt(
    state: OperationState,
    now: datetime,
    reason: ReasonValue,
    error: status_pb2.Status | None = None,
    *,
    retry: bool = True,
) -> Notice:
    """Start the operation's next attempt (mutates `state`); the resume notice for it.

    `retry`: a retry of the policy (counted against max_attempts and waiting its
    backoff); else a continuation, such as the children's end, which starts at once.
    """
    wait = backoff(state.retry, state.retries) if retry else timedelta(0)
    if retry:
        state.retries += 1
    state.attempt = attempt_of(state) + 1
    state.attempt_reason = notices.REASON_NAMES.get(reason, "")
    state.last_sequence = 0
    if error is not None:
        state.last_attempt_error.CopyFrom(error)
    start = now + wait
    state.attempt_start_time.CopyFrom(timestamp(start))
    state.update_time.CopyFrom(timestamp(now))
    return notices.make(
        notices.RESUME,
        state.name,
        attempt=state.attempt,
        reason=reason,
        has_checkpoint=state.has_checkpoint,
        operation_type=state.operation_type,
        error=error,
        children=state.children if state.HasField("children") else None,
        not_before=start,
    )


def _retry_failure(
    state: OperationState, event: Event, key: EventKey, now: datetime
) -> Notice | None:
    data = event.data
    if not isinstance(data, events_pb2.Failed) or not _retryable(state, data.error.code, now):
        return None
    return next_attempt(state, now, Notice.FAILED, data.error)


def ended_by_tracker(state: OperationState) -> bool:
    """Whether the tracker ended the operation itself (CancelOperation, a deadline)."""
    return state.done and state.terminal_key.event_id == TRACKER_END_ID


def _liveness(state: OperationState, key: EventKey) -> None:
    run = key.attempt or 1
    if run > attempt_of(state):  # a restarted worker: its numbering starts again
        state.attempt = run
        state.attempt_reason = "restarted"
        state.last_sequence = key.sequence if key.has_sequence else 0
        state.ClearField("attempt_start_time")
    elif run == attempt_of(state) and key.has_sequence and key.sequence > state.last_sequence:
        state.last_sequence = key.sequence
    when = (key.time.seconds, key.time.nanos)
    if when > (state.last_heartbeat_time.seconds, state.last_heartbeat_time.nanos):
        state.last_heartbeat_time.CopyFrom(key.time)
    # Without a created event, the operation was created when its earliest event happened.
    if not state.created_key.event_id and when < (
        state.create_time.seconds,
        state.create_time.nanos,
    ):
        state.create_time.CopyFrom(key.time)


def _before(a: timestamp_pb2.Timestamp, b: timestamp_pb2.Timestamp) -> bool:
    return (a.seconds, a.nanos) < (b.seconds, b.nanos)


def _copy(state: OperationState) -> OperationState:
    copy = OperationState()
    copy.CopyFrom(state)
    return copy


def _terminal(state: OperationState, event: Event, key: EventKey) -> Outcome:
    if state.done:
        return Outcome.LATE
    state.done = True
    state.terminal_key.CopyFrom(key)
    state.end_time.CopyFrom(key.time)
    data = event.data
    if isinstance(data, events_pb2.Succeeded):
        if data.HasField("response"):
            state.response.CopyFrom(data.response)
        else:
            state.response.Pack(empty_pb2.Empty())
    elif isinstance(data, events_pb2.Failed):
        state.error.CopyFrom(data.error)
    elif isinstance(data, events_pb2.Cancelled):
        state.error.CopyFrom(
            status_pb2.Status(code=code_pb2.CANCELLED, message=data.reason or "cancelled")
        )
    return Outcome.APPLIED


def _non_terminal(state: OperationState, event: Event, key: EventKey) -> Outcome:
    data = event.data
    changed = False
    if isinstance(data, events_pb2.Created):
        # createTime is the earliest created event's: a restarted worker's second
        # `created` never moves it (and the rule does not depend on arrival order).
        first = not state.created_key.event_id
        if first or _before(key.time, state.create_time):
            state.create_time.CopyFrom(key.time)
            changed = True
        if newer(key, state.created_key):
            state.created_key.CopyFrom(key)
            state.operation_type = data.operation_type
            state.labels.clear()
            state.labels.update(data.labels)
            state.parent = data.parent
            for name in ("deadline", "heartbeat_timeout"):
                if data.HasField(name):
                    getattr(state, name).CopyFrom(getattr(data, name))
                else:
                    state.ClearField(name)
            for name in ("retry", "children_policy"):
                source = "children" if name == "children_policy" else name
                if data.HasField(source):
                    getattr(state, name).CopyFrom(getattr(data, source))
                else:
                    state.ClearField(name)
            del state.webhooks[:]
            state.webhooks.extend(data.webhooks)
            changed = True
        changed = (
            _metadata(state, data.metadata if data.HasField("metadata") else None, key) or changed
        )
    elif isinstance(data, events_pb2.Progress):
        if newer(key, state.progress_key):
            state.progress_key.CopyFrom(key)
            state.percent = data.percent
            state.message = data.message
            changed = True
        changed = (
            _metadata(state, data.metadata if data.HasField("metadata") else None, key) or changed
        )
    elif isinstance(data, events_pb2.Checkpoint):
        if newer(key, state.checkpoint_key):
            state.checkpoint_key.CopyFrom(key)
            state.has_checkpoint = True
            changed = True
    elif isinstance(data, events_pb2.Heartbeat):
        changed = True  # liveness was recorded above
    return Outcome.APPLIED if changed else Outcome.STALE


def _metadata(state: OperationState, metadata: any_pb2.Any | None, key: EventKey) -> bool:
    if metadata is None or not newer(key, state.metadata_key):
        return False
    state.metadata_key.CopyFrom(key)
    state.custom_metadata.CopyFrom(metadata)
    return True


def end_by_tracker(state: OperationState, now: datetime, error: status_pb2.Status) -> None:
    """End a not-done operation from the tracker's side (cancel, expiry).

    Every event that arrives after such an end is late, whatever its sequence or time:
    the end happened at a point in arrival order, not in the producer's numbering, and
    a producer's clock may lag the tracker's. (A producer's own terminal event is
    different: older events delivered after it still fill their facets, rule 2.)
    """
    state.done = True
    key = EventKey(time=timestamp(now), has_sequence=False, event_id=TRACKER_END_ID)
    state.terminal_key.CopyFrom(key)
    state.end_time.CopyFrom(timestamp(now))
    state.update_time.CopyFrom(timestamp(now))
    state.error.CopyFrom(error)


def request_cancel(
    state: OperationState, now: datetime, reason: ReasonValue = Notice.CANCEL_REQUESTED
) -> Transition:
    """CancelOperation: the operation ends as CANCELLED at once (AIP-151), if not done.

    The worker learns of it from the cancel notice (`tracker.notices`), from the answer
    to its next event, or from the operation (cancel_requested, or done with CANCELLED);
    its own later events are counted as late.
    """
    state = _copy(state)
    state.cancel_requested = True
    state.update_time.CopyFrom(timestamp(now))
    if state.done:
        return Transition(state, Outcome.LATE)
    message = (
        "cancelled by CancelOperation"
        if reason == Notice.CANCEL_REQUESTED
        else "cancelled: its parent operation ended"
    )
    end_by_tracker(state, now, status_pb2.Status(code=code_pb2.CANCELLED, message=message))
    notice = notices.make(
        notices.CANCEL,
        state.name,
        attempt=attempt_of(state),
        reason=reason,
        has_checkpoint=state.has_checkpoint,
        operation_type=state.operation_type,
        children=state.children if state.children.total else None,
    )
    return Transition(state, Outcome.APPLIED, became_done=True, notices=(notice,))


def due_time(state: OperationState) -> datetime | None:
    """When a not-done operation expires if nothing else happens: its deadline, or its
    last event plus the heartbeat timeout, whichever is first. None if never.

    A heartbeat timeout may be up to 10,000 years (the Duration range): a sum past the
    last representable instant (9999-12-31, also Spanner's and Python's) never comes, so
    that candidate is dropped rather than overflowing inside the store's transaction.
    """
    if state.done:
        return None
    candidates = []
    if state.HasField("deadline"):
        candidates.append(to_datetime(state.deadline))
    timeout = state.heartbeat_timeout
    if state.HasField("heartbeat_timeout") and (timeout.seconds > 0 or timeout.nanos > 0):
        last = (
            state.last_heartbeat_time
            if state.HasField("last_heartbeat_time")
            else state.create_time
        )
        if state.HasField("attempt_start_time") and _before(last, state.attempt_start_time):
            last = state.attempt_start_time  # a retry's liveness counts from its start
        with contextlib.suppress(OverflowError):  # past datetime.max: never
            candidates.append(to_datetime(last) + timeout.ToTimedelta())
    return min(candidates) if candidates else None


def expire(state: OperationState, now: datetime) -> Transition | None:
    """The operation, if it is due by `now`: failed with DEADLINE_EXCEEDED, or, when its
    heartbeat timeout expired and its retry policy allows, in its next attempt (with the
    resume notice). None if it is not due."""
    due = due_time(state)
    if due is None or due > now:
        return None
    state = _copy(state)
    deadline_passed = state.HasField("deadline") and to_datetime(state.deadline) <= now
    if deadline_passed:
        message = f"deadline {state.deadline.ToJsonString()} passed"
    else:
        seconds = state.heartbeat_timeout.ToTimedelta().total_seconds()
        message = f"no event for {seconds:g} s (heartbeat timeout)"
        if attempt_of(state) > 1:
            message += f" in attempt {attempt_of(state)}"
    error = status_pb2.Status(code=code_pb2.DEADLINE_EXCEEDED, message=message)
    if not deadline_passed and _retryable(state, code_pb2.DEADLINE_EXCEEDED, now):
        notice = next_attempt(state, now, Notice.STALLED, error)
        return Transition(state, Outcome.APPLIED, notices=(notice,))
    end_by_tracker(state, now, error)
    return Transition(state, Outcome.APPLIED, became_done=True)


def metadata_message(state: OperationState) -> operation_pb2.OperationMetadata:
    meta = operation_pb2.OperationMetadata(
        percent=100.0 if state.done and state.HasField("response") else state.percent,
        message=state.message,
        operation_type=state.operation_type,
        parent=state.parent,
        cancel_requested=state.cancel_requested,
        last_sequence=state.last_sequence,
        attempt=attempt_of(state),
        attempt_reason=state.attempt_reason,
    )
    if state.labels:
        meta.labels.update(state.labels)
    for name in _METADATA_MESSAGES:
        if state.HasField(name):
            getattr(meta, name).CopyFrom(getattr(state, name))
    return meta


# The message fields OperationMetadata copies from the state, under the same names.
_METADATA_MESSAGES: Final = (
    "create_time",
    "update_time",
    "end_time",
    "last_heartbeat_time",
    "deadline",
    "last_attempt_error",
    "children",
    "attempt_start_time",
)


_METADATA_URL: Final = "type.googleapis.com/" + operation_pb2.OperationMetadata.DESCRIPTOR.full_name


def render(state: OperationState) -> operations_pb2.Operation:
    """The google.longrunning.Operation served for a state."""
    op = operations_pb2.Operation(name=state.name, done=state.done)
    if state.HasField("custom_metadata"):
        op.metadata.CopyFrom(state.custom_metadata)
    else:
        # What Any.Pack does, without its Python-level checks (once per changed operation).
        op.metadata.type_url = _METADATA_URL
        op.metadata.value = metadata_message(state).SerializeToString()
    if state.done:
        if state.HasField("error"):
            op.error.CopyFrom(state.error)
        else:
            op.response.CopyFrom(state.response)
    return op
