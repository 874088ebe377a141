"""tracker.worker across restarts (attempts) and cancels it hears of without asking,
against a real tracker over HTTP and pstest."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google.longrunning import operations_pb2
from google.rpc import code_pb2

from tests.pubsub_kit import PubSub, drain
from tests.tokens import TOKEN
from tracker.auth import token_digest
from tracker.client import Producer, PublishResult, TrackerClient, metadata
from tracker.config import Config
from tracker.ends import OnEnd
from tracker.errors import TrackerUnavailable
from tracker.events import Event
from tracker.server import Server, running
from tracker.v1 import operation_pb2
from tracker.worker import Cancelled, OperationEnded, Run, Worker


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running(Config(db=str(tmp_path / "a.db"), http_port=0, grpc_port=-1)) as s:
        yield s


@pytest.fixture
def client(server: Server) -> Iterator[TrackerClient]:
    with TrackerClient(server.http_url) as c:
        yield c


class Answers(TrackerClient):
    """A real HTTP client that keeps each event it publishes with the tracker's answer."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.sent: list[tuple[Event, PublishResult]] = []

    def _emit(self, event: Event) -> PublishResult:
        result = super()._emit(event)
        self.sent.append((event, result))
        return result


class Unreadable(Answers):
    """Publishes for real, but once `readable` is off every read of an operation fails
    as if the tracker were out of reach: what the run knows then comes from the answers
    alone."""

    readable = True

    def get(self, name: str) -> operations_pb2.Operation:
        if not self.readable:
            raise TrackerUnavailable(f"{self.url} is not reachable (on purpose)")
        return super().get(name)


def meta_of(client: TrackerClient, name: str) -> operation_pb2.OperationMetadata:
    meta = metadata(client.get(name))
    assert meta is not None
    return meta


def crashed_run(worker: Worker, name: str, events: int, **created: object) -> Run:
    """A run entered and left without its exit: a process that died mid-work, after
    `created` and `events` - 1 progress events."""
    run = worker.operation(name, **created)  # type: ignore[arg-type]
    run.__enter__()
    for i in range(1, events):
        run.progress(i, f"first run {i}")
    run.checkpoint(b"from-the-first-run")
    return run


# ---- attempts --------------------------------------------------------------------------


def test_a_restarted_worker_is_the_next_attempt_and_its_events_apply(
    server: Server, client: TrackerClient
) -> None:
    name = "operations/restart-1"
    with Answers(server.http_url) as first:
        crashed_run(Worker(first), name, 50, operation_type="export")
        assert [e.attempt for e, _ in first.sent] == [1] * 51
        assert first.sent[-2][0].sequence == 50
    before = meta_of(client, name)
    assert (before.attempt, before.last_sequence, before.percent) == (1, 51, 49)

    with Answers(server.http_url) as second, Worker(second).operation(name) as op:
        assert (op.attempt, op.checkpoint_data) == (2, b"from-the-first-run")
        assert op.start is not None and not op.start.done
        op.progress(3, "second run")
        kinds = [(e.kind.value, e.attempt, e.sequence, r.outcome) for e, r in second.sent]
        assert kinds == [("created", 2, 1, "applied"), ("progress", 2, 2, "applied")]
        assert second.sent[-1][1].attempt == 2
        during = meta_of(client, name)
        assert (during.attempt, during.attempt_reason) == (2, "restarted")
        assert (during.percent, during.message, during.last_sequence) == (3, "second run", 2)
    after = client.get(name)
    assert after.done and not after.HasField("error")
    assert meta_of(client, name).create_time == before.create_time  # a 2nd created: no move


def test_attempt_2_sequence_1_applies_after_attempt_1_sequence_50_over_http(
    client: TrackerClient,
) -> None:
    name = "operations/restart-raw"
    assert client.progress(name, 70, "run one", seq=50, attempt=1).applied
    newer = client.progress(name, 5, "run two", seq=1, attempt=2)
    assert (newer.outcome, newer.attempt, newer.state) == ("applied", 2, "running")
    assert client.progress(name, 80, "run one, late", seq=51, attempt=1).outcome == "stale"
    meta = meta_of(client, name)
    assert (meta.percent, meta.message, meta.attempt) == (5, "run two", 2)


def test_an_explicit_attempt_is_used_as_given(server: Server, client: TrackerClient) -> None:
    name = "operations/restart-explicit"
    with Answers(server.http_url) as producer:
        with Worker(producer).operation(name, attempt=7) as op:
            assert op.attempt == 7
            op.heartbeat()
        assert [e.attempt for e, _ in producer.sent] == [7, 7, 7]
        assert [e.sequence for e, _ in producer.sent] == [1, 2, 3]
        # Given again (a resume notice naming it), it is not bumped though the
        # operation exists: the run is that attempt.
        with Worker(producer).operation("operations/restart-explicit-2", attempt=3):
            pass
        with pytest.raises(ValueError), Worker(producer).operation(name, attempt=0):
            pass
    assert meta_of(client, name).attempt == 7
    assert meta_of(client, "operations/restart-explicit-2").attempt == 3


class Kept(Producer[None]):
    """A producer that keeps its events: no tracker to read from."""

    source = "tests/kept"

    def __init__(self) -> None:
        self.events: list[Event] = []

    def _emit(self, event: Event) -> None:
        self.events.append(event)


def test_a_run_without_a_reader_starts_at_attempt_1() -> None:
    producer = Kept()
    with Worker(producer).operation("operations/nowhere") as op:
        assert (op.attempt, op.checkpoint_data, op.start) == (1, None, None)
    assert [(e.attempt, e.sequence) for e in producer.events] == [(1, 1), (1, 2)]


def test_the_decorator_takes_an_attempt(server: Server, client: TrackerClient) -> None:
    worker = Worker(TrackerClient(server.http_url))

    @worker.track("operations/deco-{job}", attempt=4)
    def work(job: str, op: Run | None = None) -> dict[str, int]:
        assert op is not None and op.attempt == 4
        return {"job": int(job)}

    assert work("9") == {"job": 9}
    worker.close()
    assert meta_of(client, "operations/deco-9").attempt == 4


def test_a_restart_of_an_operation_with_its_own_metadata_learns_the_attempt_from_the_answer(
    server: Server, client: TrackerClient
) -> None:
    name = "operations/restart-own-meta"
    with Answers(server.http_url) as first:
        crashed_run(Worker(first), name, 3, metadata={"stage": "copy"})
    assert metadata(client.get(name)) is None  # served metadata: the producer's own
    with Answers(server.http_url) as second, Worker(second).operation(name) as op:
        assert op.attempt == 2
        op.progress(50, "second")
        assert [(e.attempt, e.sequence) for e, _ in second.sent] == [(1, 1), (2, 1), (2, 2)]
        assert second.sent[-1][1].attempt == 2 and second.sent[-1][1].outcome == "applied"


def test_a_restart_after_the_end_raises_at_the_first_call(
    server: Server, client: TrackerClient
) -> None:
    name = "operations/restart-after-end"
    client.created(name, seq=1)
    client.succeeded(name, {"rows": 1}, seq=2)
    with (
        Answers(server.http_url) as producer,
        pytest.raises(OperationEnded) as raised,
        Worker(producer).operation(name) as op,
    ):
        assert op.checkpoint_data is None and op.attempt == 2
        op.progress(1)
    assert not raised.value.cancelled
    assert [r.outcome for _, r in producer.sent] == ["late"]


# ---- cancels ---------------------------------------------------------------------------


def test_the_answer_alone_says_cancelled(server: Server, client: TrackerClient) -> None:
    name = "operations/cancel-answer"
    with Unreadable(server.http_url) as producer:
        with pytest.raises(Cancelled) as raised, Worker(producer).operation(name) as op:
            op.progress(10)
            producer.readable = False
            client.cancel(name)
            op.checkpoint(b"x")
        assert raised.value.final is None  # not read back: the answer said cancelled
        answers = [(e.kind.value, r.outcome, r.state) for e, r in producer.sent]
        assert answers == [
            ("created", "applied", "running"),
            ("progress", "applied", "running"),
            ("checkpoint", "late", "cancelled"),
        ]
        assert producer.sent[-1][1].cancel_requested


def test_the_watch_tells_a_pubsub_worker_of_a_cancel_without_a_heartbeat(
    pubsub_env: str, server: Server, client: TrackerClient
) -> None:
    pubsub = PubSub()
    topic = pubsub.topic()
    subscription = pubsub.subscription(topic)
    name = "operations/cancel-watch"
    with Worker.pubsub(topic, tracker_url=server.http_url, watch=True) as worker:
        with pytest.raises(Cancelled) as raised, worker.operation(name) as op:
            op.progress(10)
            assert drain(server, subscription) == 2
            assert op.ended is None
            client.cancel(name)
            end = op.wait_for_end(timeout=60)  # the watch's news, no call of the work
            assert isinstance(end, Cancelled) and end.final is not None
            assert end.final.error.code == code_pb2.CANCELLED
            op.progress(20)  # raises: nothing is published
        assert raised.value.operation == name
    assert drain(server, subscription) == 0
    assert meta_of(client, name).percent == 10


def test_the_watch_over_http_ends_with_the_run(server: Server, client: TrackerClient) -> None:
    name = "operations/watch-http"
    with Worker.http(server.http_url, watch=True) as worker, worker.operation(name) as op:
        op.progress(50)
        (watcher,) = [t for t in threading.enumerate() if t.name == f"watch {name}"]
    watcher.join(60)  # the stream ends with the operation's own `succeeded`
    assert not watcher.is_alive()
    assert op.ended is None and client.get(name).done


class Hand:
    """An end listener the test drives: what a listener on a topic of cancel notices
    would do, minus the topic."""

    def __init__(self) -> None:
        self.on_end: dict[str, OnEnd] = {}
        self.stopped: list[str] = []

    def listen(self, name: str, on_end: OnEnd) -> Callable[[], None]:
        self.on_end[name] = on_end
        return lambda: self.stopped.append(name)


def test_an_end_listener_is_pluggable(server: Server, client: TrackerClient) -> None:
    name = "operations/cancel-notice"
    hand = Hand()
    with Answers(server.http_url) as producer:
        worker = Worker(producer, end_listener=hand)
        with pytest.raises(Cancelled), worker.operation(name) as op:
            op.progress(10)
            notice = threading.Thread(target=hand.on_end[name], args=(Cancelled(name),))
            notice.start()
            notice.join()
            assert isinstance(op.wait_for_end(0), Cancelled)
            op.heartbeat()
        assert [e.kind.value for e, _ in producer.sent] == ["created", "progress"]
    assert hand.stopped == [name]
    assert not client.get(name).done  # a notice says stop; the tracker has the final word


def test_a_worker_allowed_to_publish_but_not_to_read_still_reports(tmp_path: Path) -> None:
    """Without operations.read a restart cannot be told from a first run: the run says so
    in a warning and reports as attempt 1 (or the one given), rather than not at all."""
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'ci = "{token_digest(TOKEN)}"\n')
    config = Config(
        db=str(tmp_path / "s.db"),
        http_port=0,
        grpc_port=-1,
        auth_tokens_file=str(tokens),
        grant=("events.publish=token:ci",),
    )
    name = "operations/publish-only"
    with running(config) as secured, Worker.http(secured.http_url, token=TOKEN) as worker:
        first = crashed_run(worker, name, 2)
        assert (first.attempt, first.start) == (1, None)
        with worker.operation(name, attempt=2) as again:  # the restart, told its attempt
            assert (again.attempt, again.start, again.checkpoint_data) == (2, None, None)
        stored = secured.store.get(name)
        assert stored is not None and stored.operation.done
        meta = operation_pb2.OperationMetadata()
        assert stored.operation.metadata.Unpack(meta) and meta.attempt == 2
