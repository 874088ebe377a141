"""Three `tracker serve` processes on one Spanner database (issue #14 items 2, 3 and 5).

Every test runs on pstest + handy-spanner and on Google's Pub/Sub emulator + Google's
Cloud Spanner emulator (which runs one read-write transaction at a time and aborts the
others: the client's retries are exercised, and counted).

- Ingest: the three pull from one ordered subscription and take pushes at random; every
  message is delivered twice (published twice), a hot operation gets 200 progress events.
  Each operation ends as the stream applied once in order; every event id is recorded
  once and counted as a first application once over all instances; each done operation
  is notified under exactly one notification id.
- Background work: all three sweep every 0.2 s. Each operation past its deadline or
  heartbeat timeout expires once (one `tracker.end` history entry, one notification id);
  each stalled attempt resumes once (one `tracker.resume` entry and one notice id per
  attempt). Dead-letter retention on all three at once removes every old letter.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import code_pb2

from tests.conftest import spanner_database
from tests.emulators import harness
from tests.helpers import T0, make_event
from tests.pubsub_kit import PubSub, google_emulator
from tests.scale_kit import Instance, instances, post_push, tracebacks
from tracker.apply import attempt_of
from tracker.bindings import to_binary
from tracker.events import Event, Kind
from tracker.stores.base import DeadLetter, Store
from tracker.stores.spanner import SpannerStore
from tracker.stores.sqlite import SqliteStore
from tracker.v1 import events_pb2

SETUPS = ["pstest+handy-spanner", "google-emulators"]


@pytest.fixture(scope="module")
def pstest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """pstest of its own: the session's `pubsub_host` is one per Pub/Sub server, and these
    setups pair each Pub/Sub server with its Spanner server themselves."""
    with harness.running_server("pstest") as host:
        yield host


@pytest.fixture(scope="module")
def google_pubsub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with google_emulator(tmp_path_factory.mktemp("gpubsub") / "emulator.log") as host:
        yield host


@dataclass
class Setup:
    name: str
    database: str
    explicit_begin: bool
    pubsub: PubSub

    def store(self) -> SpannerStore:
        return SpannerStore(self.database, explicit_begin=self.explicit_begin)


@pytest.fixture(params=SETUPS)
def setup(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Setup:
    if request.param == "pstest+handy-spanner":
        host, backend = request.getfixturevalue("pstest"), "spanner-handy"
    else:
        host, backend = request.getfixturevalue("google_pubsub"), "spanner-google"
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", host)
    path = spanner_database(backend, request.getfixturevalue("spanner_hosts"), monkeypatch)
    return Setup(request.param, path, backend == "spanner-handy", PubSub())


def final_states(store: Store, names: list[str]) -> dict[str, bytes]:
    out = {}
    for name in names:
        stored = store.get(name)
        if stored is None:
            continue
        state = stored.state
        state.ClearField("update_time")
        out[name] = state.SerializeToString(deterministic=True)
    return out


def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.3)


def scale_stream(operations: int, hot_progress: int) -> list[Event]:
    """created -> progress x2 -> succeeded per operation, and one hot operation with
    `hot_progress` progress events and a failure; producers' order, interleaved."""
    per_op: list[list[Event]] = []
    for o in range(operations):
        name = f"operations/scale-{o}"
        kinds = [Kind.CREATED, Kind.PROGRESS, Kind.PROGRESS, Kind.SUCCEEDED]
        per_op.append(
            [
                make_event(
                    kind,
                    name,
                    id=f"{o}-{i}",
                    seq=i + 1,
                    time=T0 + timedelta(seconds=i),
                    data={"percent": 10.0 * i, "message": f"m{i}"}
                    if kind is Kind.PROGRESS
                    else {"operation_type": "scale"}
                    if kind is Kind.CREATED
                    else None,
                )
                for i, kind in enumerate(kinds)
            ]
        )
    hot = "operations/scale-hot"
    hot_events = [make_event(Kind.CREATED, hot, id="hot-0", seq=1, time=T0)]
    for i in range(1, hot_progress + 1):
        hot_events.append(
            make_event(
                Kind.PROGRESS,
                hot,
                id=f"hot-{i}",
                seq=i + 1,
                time=T0 + timedelta(milliseconds=i),
                data={"percent": i * 100 / (hot_progress + 1), "message": f"step {i}"},
            )
        )
    error = {"error": {"code": code_pb2.INTERNAL, "message": "gave up"}}
    hot_events.append(
        make_event(
            Kind.FAILED,
            hot,
            id="hot-end",
            seq=hot_progress + 2,
            time=T0 + timedelta(seconds=1),
            data=error,
        )
    )
    per_op.append(hot_events)
    rng = random.Random(14)
    out: list[Event] = []
    queues = [list(q) for q in per_op]
    while queues:
        q = rng.choice(queues)
        out.append(q.pop(0))
        if not q:
            queues.remove(q)
    return out


def publish_all(pubsub: PubSub, topic: str, events: list[Event], *, ordered: bool) -> None:
    futures = []
    for event in events:
        headers, body = to_binary(event)
        key = event.operation if ordered else ""
        futures.append(pubsub.publisher.publish(topic, body, ordering_key=key, **headers))
    for future in futures:
        future.result(60)


def pull_notifications(pubsub: PubSub, subscription: str) -> list[dict[str, str]]:
    """Attributes of every message there is now (acked)."""
    return [dict(m.attributes) for m in pubsub.pull_all(subscription)]


def ids_by(notes: list[dict[str, str]], *keys: str) -> dict[tuple[str, ...], set[str]]:
    out: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for attributes in notes:
        out[tuple(attributes[k] for k in keys)].add(attributes["ce-id"])
    return out


def total(group: list[Instance], name: str, **labels: str) -> float:
    return sum(i.metric(name, **labels) for i in group)


def applied_event_rows(store: SpannerStore) -> int:
    with store.database.snapshot() as snapshot:
        (row,) = list(snapshot.execute_sql("SELECT COUNT(*) FROM AppliedEvents"))
    return int(row[0])


def test_three_instances_share_one_subscription_and_the_push_route(
    setup: Setup, tmp_path: Path
) -> None:
    events = scale_stream(operations=30, hot_progress=200)
    names = sorted({e.operation for e in events})
    expected_store = SqliteStore(":memory:")
    for event in events:
        expected_store.apply([event])
    expected = final_states(expected_store, names)
    expected_store.close()

    pubsub = setup.pubsub
    topic, done = pubsub.topic(), pubsub.topic()
    subscription = pubsub.subscription(topic, ordered=True)
    done_sub = pubsub.subscription(done, ordered=False)
    rng = random.Random(5)
    # The hot operation's events and a quarter of the others also come by push, each to
    # a random instance, while the pull subscribers take the same events.
    pushed = [e for e in events if e.operation.endswith("hot") or rng.random() < 0.25]
    store = setup.store()
    with instances(
        3,
        setup.database,
        tmp_path,
        explicit_begin=setup.explicit_begin,
        subscription=subscription,
        done_topic=done,
    ) as group:

        def push_some(batch: list[Event]) -> None:
            with httpx.Client(timeout=60) as http:
                for event in batch:
                    post_push(http, rng.choice(group).url, event, subscription)

        with ThreadPoolExecutor(6) as pool:
            pushes = [pool.submit(push_some, pushed[i::6]) for i in range(6)]
            publish_all(pubsub, topic, events, ordered=True)
            second = list(events)
            rng.shuffle(second)
            publish_all(pubsub, topic, second, ordered=False)  # the duplicate deliveries
            for push in pushes:
                push.result(120)

        eventually(lambda: final_states(store, names) == expected, 90, "final states")
        eventually(lambda: store.outbox_pending() == [], 60, "outbox drained")
        notes: list[dict[str, str]] = []

        def all_notified() -> bool:
            notes.extend(pull_notifications(pubsub, done_sub))
            return {n["operation"] for n in notes} == set(names)

        eventually(all_notified, 60, "every done operation notified")
        time.sleep(2)  # anything sent twice would be here by now
        notes += pull_notifications(pubsub, done_sub)

        # Stale events change no state: the final states can match before the last of
        # them is recorded (and counted).
        eventually(lambda: applied_event_rows(store) >= len(events), 60, "every id recorded")

        def firsts() -> float:
            every = total(group, "tracker_events_total")
            return every - total(group, "tracker_events_total", outcome="duplicate")

        eventually(lambda: firsts() >= len(events), 30, "every first application counted")
        time.sleep(1)
        first = firsts()
        retries = total(group, "tracker_store_transaction_retries_total")
        per_instance = [i.metric("tracker_events_total") for i in group]
        print(
            f"\n{setup.name}: {len(events)} events, {len(pushed)} also pushed;"
            f" deliveries per instance {per_instance}; aborted-transaction retries {retries:g}"
        )
        assert not tracebacks(group), tracebacks(group)

    # No lost update: each operation as the stream applied once, in order.
    assert final_states(store, names) == expected
    # No double effect: every event id recorded once, and counted as a first application
    # by exactly one instance; each done operation notified under one id.
    assert applied_event_rows(store) == len(events)
    assert first == len(events)
    assert sum(per_instance) >= 2 * len(events) + len(pushed)
    by_op = ids_by(notes, "operation")
    assert {k[0]: len(v) for k, v in by_op.items()} == {n: 1 for n in names}
    store.close()


def seconds(value: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(timedelta(seconds=value))
    return d


def post_event(http: httpx.Client, url: str, event: Event) -> None:
    headers, body = to_binary(event)
    answer = http.post(f"{url}/v1/events", headers=headers, content=body)
    assert answer.status_code == 200, answer.text


def test_three_instances_sweep_without_double_expiry_or_resume(
    setup: Setup, tmp_path: Path
) -> None:
    pubsub = setup.pubsub
    done, control = pubsub.topic(), pubsub.topic()
    done_sub = pubsub.subscription(done, ordered=False)
    control_sub = pubsub.subscription(control, ordered=False)
    now = datetime.now(UTC)
    deadline = timestamp_pb2.Timestamp()
    deadline.FromDatetime(now + timedelta(seconds=2))
    by_deadline = [f"operations/deadline-{i}" for i in range(12)]
    stalling = [f"operations/stall-{i}" for i in range(12)]
    policy = events_pb2.RetryPolicy(max_attempts=3, initial_backoff=seconds(0.001))
    created = [
        make_event(
            Kind.CREATED,
            n,
            time=now,
            data=events_pb2.Created(operation_type="d", deadline=deadline),
        )
        for n in by_deadline
    ] + [
        make_event(
            Kind.CREATED,
            n,
            time=now,
            data=events_pb2.Created(
                operation_type="s", heartbeat_timeout=seconds(0.6), retry=policy
            ),
        )
        for n in stalling
    ]
    names = sorted(by_deadline + stalling)
    store = setup.store()
    rng = random.Random(3)
    with instances(
        3,
        setup.database,
        tmp_path,
        explicit_begin=setup.explicit_begin,
        done_topic=done,
        control_topic=control,
        sweep_seconds=0.2,
    ) as group:
        with httpx.Client(timeout=60) as http:
            for event in created:
                post_event(http, rng.choice(group).url, event)

        def all_done() -> bool:
            return all((s := store.get(n)) is not None and s.state.done for n in names)

        eventually(all_done, 60, "every operation expired")
        eventually(lambda: store.outbox_pending() == [], 60, "outbox drained")
        done_notes: list[dict[str, str]] = []
        resume_notes: list[dict[str, str]] = []

        def all_notified() -> bool:
            done_notes.extend(pull_notifications(pubsub, done_sub))
            resume_notes.extend(pull_notifications(pubsub, control_sub))
            return {n["operation"] for n in done_notes} == set(names) and len(
                {(n["operation"], n["attempt"]) for n in resume_notes}
            ) == 2 * len(stalling)

        eventually(all_notified, 60, "every notification")
        time.sleep(2)
        done_notes += pull_notifications(pubsub, done_sub)
        resume_notes += pull_notifications(pubsub, control_sub)
        retries = total(group, "tracker_store_transaction_retries_total")
        print(f"\n{setup.name}: sweeps on 3 instances; aborted-transaction retries {retries:g}")
        assert not tracebacks(group), tracebacks(group)

    for name in names:
        state = store.get(name)
        assert state is not None and state.state.error.code == code_pb2.DEADLINE_EXCEEDED, name
        _, entries = store.read_history(name)
        ends = [(e.type, e.outcome) for e in entries if e.type == "tracker.end"]
        resumes = [(e.outcome, e.attempt) for e in entries if e.type == "tracker.resume"]
        assert ends == [("tracker.end", "expired")], (name, ends)
        expected_resumes = [("stalled", 2), ("stalled", 3)] if name in stalling else []
        assert resumes == expected_resumes, (name, resumes)
        assert attempt_of(state.state) == (3 if name in stalling else 1), name
    # One notification id per operation, one notice id per resumed attempt.
    assert {k[0]: len(v) for k, v in ids_by(done_notes, "operation").items()} == {
        n: 1 for n in names
    }
    resumed = ids_by([n for n in resume_notes if n["kind"] == "resume"], "operation", "attempt")
    assert {k: len(v) for k, v in resumed.items()} == {
        (n, a): 1 for n in stalling for a in ("2", "3")
    }
    store.close()


def test_three_instances_apply_dead_letter_retention_at_once(setup: Setup, tmp_path: Path) -> None:
    store = setup.store()
    old = datetime.now(UTC) - timedelta(days=3)
    for i in range(40):
        store.add_dead_letter(
            DeadLetter(
                id=f"dl-{i}",
                received_at=old + timedelta(seconds=i),
                route="push",
                reason="invalid_event",
                detail="test",
                attributes={"a": "b"},
                body=b"x",
            )
        )
    fresh = DeadLetter(
        id="dl-fresh",
        received_at=datetime.now(UTC),
        route="push",
        reason="invalid_event",
        detail="test",
        attributes={},
        body=b"y",
    )
    store.add_dead_letter(fresh)
    with instances(
        3,
        setup.database,
        tmp_path,
        explicit_begin=setup.explicit_begin,
        sweep_seconds=0.1,
        dead_letter_retention_days=1,
    ) as group:
        eventually(lambda: [d.id for d in store.dead_letters()] == ["dl-fresh"], 30, "purged")
        time.sleep(1)  # more sweeps on all three, with nothing left to remove
        assert all(i.proc.poll() is None for i in group)
        assert not tracebacks(group), tracebacks(group)
        text = "".join(i.log.read_text() for i in group)
        assert "store unavailable" not in text, text[-3000:]
    assert [d.id for d in store.dead_letters()] == ["dl-fresh"]
    store.close()
