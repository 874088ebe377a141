"""Tracing: one W3C trace from a producer's span through the tracker to a consumer's.

The producer sends its trace context in the CloudEvents distributed-tracing extension
(`ce-traceparent`); a real server (`tracker.server.running`, in this process, so the SDK's
in-memory exporter sees its spans) applies the events and publishes the done-notification
to pstest (or POSTs a webhook to a real receiver); the consumer starts its span from what
it received. The spans are read back from the exporter and their parents checked.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.helpers import envelope, make_event
from tests.pubsub_kit import PubSub, drain
from tests.webhook_kit import SECRET, Receiver, receiver
from tracker import tracing
from tracker.bindings import DoneNotification, parse_done, to_binary, to_structured
from tracker.config import Config
from tracker.events import Event, Kind
from tracker.server import Server, running
from tracker.v1 import events_pb2


@dataclasses.dataclass
class Traces:
    exporter: InMemorySpanExporter
    provider: TracerProvider

    def tracer(self, name: str) -> Any:
        return self.provider.get_tracer(name)

    def spans(self, trace_id: int) -> list[ReadableSpan]:
        return [
            s
            for s in self.exporter.get_finished_spans()
            if s.context is not None and s.context.trace_id == trace_id
        ]

    def named(self, name: str, wait: float = 10) -> list[ReadableSpan]:
        """Finished spans called `name`, waiting for at least one (a delivery's span ends
        after the message is already out)."""
        deadline = time.monotonic() + wait
        while True:
            found = [s for s in self.exporter.get_finished_spans() if s.name == name]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.02)


@pytest.fixture
def traces() -> Iterator[Traces]:
    """The SDK with an in-memory exporter, as the tracker's provider for this test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        yield Traces(exporter, provider)
    finally:
        tracing.use(None)
        provider.shutdown()


@pytest.fixture
def pubsub(pubsub_env: str) -> PubSub:
    return PubSub()


def traced(event: Event, traceparent: str | None) -> Event:
    return dataclasses.replace(event, traceparent=traceparent)


def post(server: Server, event: Event, mode: str = "binary") -> httpx.Response:
    headers, body = (to_binary if mode == "binary" else to_structured)(event)
    return httpx.post(f"{server.http_url}/v1/events", headers=headers, content=body)


def one_notification(pubsub: PubSub, sub: str, wait: float = 15) -> DoneNotification:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        messages = pubsub.pull_all(sub)
        if messages:
            assert len(messages) == 1
            return parse_done(dict(messages[0].attributes), messages[0].data)
    raise AssertionError("no done-notification")


def ids(traceparent: str) -> tuple[int, int]:
    """(trace id, span id) of a traceparent."""
    _, trace_id, span_id, _ = traceparent.split("-")
    return int(trace_id, 16), int(span_id, 16)


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def of_type(spans: list[ReadableSpan], kind: Kind) -> ReadableSpan:
    (found,) = [
        s for s in spans if s.attributes and s.attributes.get("cloudevents.event_type") == kind.type
    ]
    return found


def check_chain(
    traces: Traces, producer: ReadableSpan, ingest_parent: int, route: str
) -> tuple[ReadableSpan, ReadableSpan]:
    """producer -> tracker.ingest -> tracker.apply, and tracker.ingest of the event that
    ended the operation -> tracker.notify; all in the producer's trace. Returns the
    (ingest span of the succeeded event, notify span)."""
    assert producer.context is not None
    trace_id = producer.context.trace_id
    spans = traces.spans(trace_id)
    ingests = [s for s in spans if s.name == "tracker.ingest"]
    assert ingests and all(s.attributes and s.attributes["tracker.route"] == route for s in ingests)
    assert all(parent_of(s) == ingest_parent for s in ingests)
    assert all(s.kind is SpanKind.CONSUMER for s in ingests)
    applies = [s for s in spans if s.name == "tracker.apply"]
    assert {a.attributes["cloudevents.event_type"] for a in applies if a.attributes} == {
        Kind.CREATED.type,
        Kind.SUCCEEDED.type,
    }
    ingest_ids = {s.context.span_id for s in ingests if s.context}
    assert all(parent_of(a) in ingest_ids for a in applies)
    assert all(a.attributes and a.attributes["tracker.outcome"] == "applied" for a in applies)
    # The transaction span is a root of its own, linked to each event's context.
    commits = [
        s
        for s in traces.exporter.get_finished_spans()
        if s.name == "tracker.commit" and any(link.context.trace_id == trace_id for link in s.links)
    ]
    assert commits and all(s.parent is None for s in commits)
    (notify,) = traces.named("tracker.notify")
    assert notify.context is not None and notify.context.trace_id == trace_id
    assert notify.kind is SpanKind.PRODUCER
    if len(ingests) == 2:  # one ingest per event: the notify continues the succeeded's
        ended = of_type(ingests, Kind.SUCCEEDED)
    else:
        (ended,) = ingests
    assert ended.context is not None and parent_of(notify) == ended.context.span_id
    return ended, notify


def consume(traces: Traces, note: DoneNotification, notify: ReadableSpan) -> None:
    """The consumer's span, started from the notification, is the notify span's child."""
    assert notify.context is not None
    assert note.traceparent is not None
    assert ids(note.traceparent) == (notify.context.trace_id, notify.context.span_id)
    with traces.tracer("consumer").start_as_current_span("consumer", context=note.trace_context()):
        pass
    (consumer,) = traces.named("consumer")
    assert consumer.context is not None
    assert consumer.context.trace_id == notify.context.trace_id
    assert parent_of(consumer) == notify.context.span_id


def test_http_events_and_their_done_notification_are_one_trace(
    traces: Traces, pubsub: PubSub, tmp_path: Path
) -> None:
    topic = pubsub.topic()
    sub = pubsub.subscription(topic)
    name = "operations/traced-http"
    config = Config(db=str(tmp_path / "t.db"), http_port=0, grpc_port=-1, done_topic=topic)
    with running(config) as server:
        with traces.tracer("producer").start_as_current_span("producer") as span:
            traceparent = tracing.carrier(span)["traceparent"]
            assert post(server, traced(make_event(Kind.CREATED, name), traceparent)).is_success
            # Structured mode carries it as the `traceparent` attribute.
            done = traced(make_event(Kind.SUCCEEDED, name), traceparent)
            assert post(server, done, mode="structured").is_success
        note = one_notification(pubsub, sub)
        (producer,) = traces.named("producer")
        _, notify = check_chain(traces, producer, ids(traceparent)[1], route="http")
    assert note.operation.name == name
    consume(traces, note, notify)


def test_pulled_events_and_their_done_notification_are_one_trace(
    traces: Traces, pubsub: PubSub, tmp_path: Path
) -> None:
    """Events published to Pub/Sub with ce-traceparent, pulled in one batch."""
    events_topic, done_topic = pubsub.topic(), pubsub.topic()
    events_sub, done_sub = pubsub.subscription(events_topic), pubsub.subscription(done_topic)
    name = "operations/traced-pull"
    config = Config(db=str(tmp_path / "t.db"), http_port=0, grpc_port=-1, done_topic=done_topic)
    with running(config) as server:
        with traces.tracer("producer").start_as_current_span("producer") as span:
            traceparent = tracing.carrier(span)["traceparent"]
            for kind in (Kind.CREATED, Kind.SUCCEEDED):
                pubsub.publish(events_topic, traced(make_event(kind, name), traceparent))
        assert drain(server, events_sub) == 2
        note = one_notification(pubsub, done_sub)
        (producer,) = traces.named("producer")
        _, notify = check_chain(traces, producer, ids(traceparent)[1], route="pull")
    assert note.attributes["ce-traceparent"] == note.traceparent
    consume(traces, note, notify)


def test_a_pushed_event_is_ingested_in_its_producer_s_trace(traces: Traces, tmp_path: Path) -> None:
    with running(Config(db=str(tmp_path / "t.db"), http_port=0, grpc_port=-1)) as server:
        with traces.tracer("producer").start_as_current_span("producer") as span:
            traceparent = tracing.carrier(span)["traceparent"]
        event = traced(make_event(Kind.CREATED, "operations/traced-push"), traceparent)
        headers, body = to_binary(event)
        attributes = {k: v for k, v in headers.items() if k != "content-type"}
        response = httpx.post(f"{server.http_url}/v1/pubsub/push", json=envelope(attributes, body))
        assert response.status_code == 204
    (ingest,) = traces.named("tracker.ingest")
    assert ingest.attributes and ingest.attributes["tracker.route"] == "push"
    assert ingest.context is not None and ingest.context.trace_id == ids(traceparent)[0]
    assert parent_of(ingest) == ids(traceparent)[1]


def webhook_config(tmp_path: Path) -> Config:
    return Config(
        db=str(tmp_path / "t.db"),
        http_port=0,
        grpc_port=-1,
        webhook_secrets=(SECRET,),
        webhook_allow_http=True,
        webhook_allow_private=True,
    )


def test_a_webhook_receives_the_trace_of_the_event_that_ended_the_operation(
    traces: Traces, tmp_path: Path
) -> None:
    name = "operations/traced-hook"
    hook: Receiver
    with receiver() as hook, running(webhook_config(tmp_path)) as server:
        with traces.tracer("producer").start_as_current_span("producer") as span:
            traceparent = tracing.carrier(span)["traceparent"]
            created = events_pb2.Created(webhooks=[events_pb2.Webhook(url=hook.url())])
            first = make_event(Kind.CREATED, name, data=created)
            assert post(server, traced(first, traceparent)).is_success
            done = dataclasses.replace(
                make_event(Kind.SUCCEEDED, name), traceparent=traceparent, tracestate="tv=1"
            )
            assert post(server, done).is_success
        delivery = hook.next()
        (notify,) = traces.named("tracker.notify")
        ingest = of_type(traces.named("tracker.ingest"), Kind.SUCCEEDED)
    assert delivery.verify()["data"]["notice"].get("traceparent") is None  # a header only
    assert notify.context is not None and ingest.context is not None
    assert ids(delivery.headers["traceparent"]) == (
        ids(traceparent)[0],
        notify.context.span_id,
    )
    assert delivery.headers["tracestate"] == "tv=1"  # the producer's, carried along
    assert parent_of(notify) == ingest.context.span_id
    assert parent_of(ingest) == ids(traceparent)[1]


def test_an_event_without_trace_context_starts_the_tracker_s_own_trace(
    traces: Traces, pubsub: PubSub, tmp_path: Path
) -> None:
    topic = pubsub.topic()
    sub = pubsub.subscription(topic)
    name = "operations/untraced"
    config = Config(db=str(tmp_path / "t.db"), http_port=0, grpc_port=-1, done_topic=topic)
    with running(config) as server:
        assert post(server, make_event(Kind.CREATED, name)).is_success
        assert post(server, make_event(Kind.SUCCEEDED, name)).is_success
        note = one_notification(pubsub, sub)
        (notify,) = traces.named("tracker.notify")
        ended = of_type(traces.named("tracker.ingest"), Kind.SUCCEEDED)
    assert ended.parent is None and ended.context is not None
    assert notify.context is not None and parent_of(notify) == ended.context.span_id
    assert note.traceparent is not None
    assert ids(note.traceparent) == (ended.context.trace_id, notify.context.span_id)


@pytest.mark.parametrize(
    "bad",
    [
        "not-a-traceparent",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # upper case
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # 00 is exact
    ],
)
def test_an_invalid_traceparent_is_ignored_counted_and_the_event_applied(
    traces: Traces, tmp_path: Path, bad: str
) -> None:
    with running(Config(db=str(tmp_path / "t.db"), http_port=0, grpc_port=-1)) as server:
        event = traced(make_event(Kind.CREATED, "operations/badly-traced"), bad)
        assert post(server, event).status_code == 200
        metrics = httpx.get(f"{server.http_url}/metrics").text
        assert server.store.get("operations/badly-traced") is not None
    assert 'tracker_traceparent_ignored_total{route="http"} 1.0' in metrics
    (ingest,) = traces.named("tracker.ingest")
    assert ingest.parent is None  # a trace of the tracker's own


def test_a_later_version_traceparent_is_continued() -> None:
    """W3C: a version above 00 may append fields; its first four are read."""
    from tracker.events import valid_traceparent

    assert valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
    assert not valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x")


def test_without_the_sdk_the_producer_s_trace_context_passes_through(
    pubsub: PubSub, tmp_path: Path
) -> None:
    """Only the API, no provider (the default): no spans are made, nothing fails, and the
    done-notification carries the producer's own traceparent and tracestate."""
    assert not tracing.active()
    topic = pubsub.topic()
    sub = pubsub.subscription(topic)
    name = "operations/no-sdk"
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    config = Config(db=str(tmp_path / "t.db"), http_port=0, grpc_port=-1, done_topic=topic)
    with running(config) as server:
        assert post(server, traced(make_event(Kind.CREATED, name), traceparent)).is_success
        done = dataclasses.replace(
            make_event(Kind.SUCCEEDED, name), traceparent=traceparent, tracestate="a=1"
        )
        assert post(server, done).is_success
        note = one_notification(pubsub, sub)
        # An untraced event: its notification carries none.
        assert post(server, make_event(Kind.CREATED, "operations/no-sdk-2")).is_success
        assert post(server, make_event(Kind.SUCCEEDED, "operations/no-sdk-2")).is_success
        plain = one_notification(pubsub, sub)
    assert note.traceparent == traceparent and note.tracestate == "a=1"
    assert "ce-traceparent" not in plain.attributes and plain.trace_context() is None


PARENT_TRACE = "00-11111111111111111111111111111111-1111111111111111-01"
CHILD_TRACE = "00-22222222222222222222222222222222-2222222222222222-01"
RETRY_TRACE = "00-33333333333333333333333333333333-3333333333333333-01"


def test_outbox_rows_keep_the_trace_of_the_event_that_caused_them(tmp_path: Path) -> None:
    """A done row keeps the context of the event that ended the operation; a parent that
    ends because of its child keeps the child's; a resume row that of the failure."""
    from google.rpc import status_pb2

    from tracker.notices import ALL, DONE, RESUME
    from tracker.stores.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "o.db")
    try:
        policy = events_pb2.ChildrenPolicy(on_done=events_pb2.ChildrenPolicy.COMPLETE, expected=1)
        retry = events_pb2.RetryPolicy(max_attempts=3)
        child = events_pb2.Created(parent="operations/p")
        unavailable = events_pb2.Failed(error=status_pb2.Status(code=14))
        events = [
            traced(
                make_event(Kind.CREATED, "operations/p", data=events_pb2.Created(children=policy)),
                PARENT_TRACE,
            ),
            make_event(Kind.CREATED, "operations/c", data=child),
            traced(make_event(Kind.SUCCEEDED, "operations/c"), CHILD_TRACE),
            make_event(Kind.CREATED, "operations/r", data=events_pb2.Created(retry=retry)),
            traced(make_event(Kind.FAILED, "operations/r", data=unavailable), RETRY_TRACE),
        ]
        store.apply(events, notify=ALL)
        rows = {(r.notice.operation, r.notice.kind): r.notice for r in store.outbox_pending(100)}
    finally:
        store.close()
    assert rows[("operations/c", DONE)].traceparent == CHILD_TRACE
    assert rows[("operations/p", DONE)].traceparent == CHILD_TRACE
    assert rows[("operations/r", RESUME)].traceparent == RETRY_TRACE


def test_a_control_notice_carries_the_trace_of_its_row(pubsub: PubSub, traces: Traces) -> None:
    import asyncio
    from datetime import UTC, datetime

    from google.longrunning import operations_pb2

    from tracker.bindings import parse_notice
    from tracker.notices import RESUME, Notice
    from tracker.notify.control import ControlTopicSink
    from tracker.stores.base import OutboxItem

    topic = pubsub.topic()
    sub = pubsub.subscription(topic)
    notice = Notice(kind=RESUME, operation="operations/r", attempt=2, traceparent=RETRY_TRACE)
    item = OutboxItem(
        id="row-1",
        operation=operations_pb2.Operation(name="operations/r"),
        created_at=datetime.now(UTC),
        notice=notice,
    )
    asyncio.run(ControlTopicSink(topic).deliver(item))
    (message,) = pubsub.pull_all(sub)
    received = parse_notice(dict(message.attributes), message.data)
    (notify,) = traces.named("tracker.notify")
    assert notify.context is not None and parent_of(notify) == ids(RETRY_TRACE)[1]
    assert received.traceparent is not None
    assert ids(received.traceparent) == (ids(RETRY_TRACE)[0], notify.context.span_id)
    assert received.notice.traceparent == ""  # in the attributes only, not the data


def test_trace_attributes_are_kept_before_labels_within_pubsub_limits() -> None:
    from google.longrunning import operations_pb2

    from tracker.bindings import MAX_ATTRIBUTES, done_attributes
    from tracker.v1 import operation_pb2

    operation = operations_pb2.Operation(name="operations/many", done=True)
    operation.metadata.Pack(
        operation_pb2.OperationMetadata(labels={f"k{i:03}": "v" for i in range(200)})
    )
    trace = {"traceparent": PARENT_TRACE, "tracestate": "a=1"}
    attributes = done_attributes("id", operation, trace=trace)
    assert len(attributes) == MAX_ATTRIBUTES
    assert attributes["ce-traceparent"] == PARENT_TRACE and attributes["ce-tracestate"] == "a=1"
    assert attributes["attributes_truncated"] == "true"


CONSOLE_SCRIPT = """
import httpx
from opentelemetry import trace
from tests.helpers import make_event
from tracker import tracing
from tracker.bindings import to_binary
from tracker.config import Config
from tracker.events import Kind
from tracker.server import running

assert not tracing.active()
tracing.configure(Config(otel_exporter="console").validate().otel_exporter)
assert tracing.active()  # the global provider, as `tracker serve` sets it
with running() as server:
    headers, body = to_binary(make_event(Kind.CREATED, "operations/console"))
    assert httpx.post(f"{server.http_url}/v1/events", headers=headers, content=body).is_success
trace.get_tracer_provider().force_flush()
"""


def test_otel_exporter_console_sets_up_the_global_sdk_and_prints_spans() -> None:
    """What `tracker serve --otel-exporter console` does, in a process of its own (the
    global provider can be set once per process)."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    done = subprocess.run(
        [sys.executable, "-c", CONSOLE_SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"name": "tracker.ingest"' in done.stdout
    assert '"service.name": "tracker"' in done.stdout


def test_an_unknown_otel_exporter_stops_start_up_with_one_line() -> None:
    from tracker.errors import ConfigError

    with pytest.raises(ConfigError, match="--otel-exporter: 'jaeger' is not none, console or otlp"):
        Config(otel_exporter="jaeger").validate()
