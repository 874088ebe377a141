"""Event ingest over HTTP (POST /v1/events) and Pub/Sub push, against a real server."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import envelope, google_error, make_event
from tracker.bindings import to_batch, to_binary, to_structured
from tracker.config import Config
from tracker.events import Kind
from tracker.notices import DONE
from tracker.notify.outbox import Dispatcher
from tracker.server import Server, running
from tracker.stores.base import OutboxItem
from tracker.stores.sqlite import SqliteStore

OP = "operations/ingest-1"


def rejected(server: Server, route: str, reason: str) -> float:
    """The server's own counter: each server has its metrics."""
    metrics = server.tracker.metrics
    return metrics.value(metrics.rejected, route=route, reason=reason)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "t.db"


@pytest.fixture
def server(db: Path) -> Iterator[Server]:
    with running(Config(db=str(db), http_port=0, grpc_port=-1)) as s:
        yield s


@pytest.fixture
def strict_server(db: Path) -> Iterator[Server]:
    with running(Config(db=str(db), http_port=0, grpc_port=-1, strict=True)) as s:
        yield s


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=10) as c:
        yield c


def counts(server: Server) -> tuple[int, int]:
    store = server.store
    assert isinstance(store, SqliteStore)
    return store.count("operations"), store.count("applied_events")


# ---- direct HTTP ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["binary", "structured", "batch"])
@pytest.mark.parametrize("content_type", ["application/json", "application/protobuf"])
def test_http_modes_apply(server: Server, http: httpx.Client, mode: str, content_type: str) -> None:
    event = make_event(Kind.PROGRESS, OP, data={"percent": 30, "message": "copying"})
    encode = {"binary": to_binary, "structured": to_structured}.get(mode)
    headers, body = encode(event, content_type) if encode else to_batch([event], content_type)
    response = http.post("/v1/events", headers=headers, content=body)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["outcome"] == "applied"
    stored = server.store.get(OP)
    assert stored is not None and not stored.operation.done


def test_http_batch_applies_in_one_go_and_reports_each(server: Server, http: httpx.Client) -> None:
    events = [
        make_event(Kind.CREATED, OP, id="c"),
        make_event(Kind.PROGRESS, OP, id="p", data={"percent": 50}),
        make_event(Kind.SUCCEEDED, OP, id="s"),
        make_event(Kind.SUCCEEDED, OP, id="s"),
    ]
    response = http.post("/v1/events", headers=to_batch(events)[0], content=to_batch(events)[1])
    assert [r["outcome"] for r in response.json()["results"]] == [
        "applied",
        "applied",
        "applied",
        "duplicate",
    ]
    assert response.json()["results"][2]["done"] is True
    assert server.store.get(OP).operation.done  # type: ignore[union-attr]


def test_every_answer_says_where_the_operation_stands(server: Server, http: httpx.Client) -> None:
    # A worker publishing over HTTP learns of a cancel, an end and its attempt from the
    # answer to its next event, without asking.
    def send(event: Any) -> dict[str, Any]:
        headers, body = to_binary(event)
        (result,) = http.post("/v1/events", headers=headers, content=body).json()["results"]
        return dict(result)

    first = send(make_event(Kind.CREATED, OP, id="c"))
    assert (first["state"], first["attempt"], first["cancelRequested"]) == ("running", 1, False)
    restarted = send(make_event(Kind.PROGRESS, OP, id="p", data={"percent": 5}, attempt=2))
    assert (restarted["outcome"], restarted["attempt"]) == ("applied", 2)
    assert http.post(f"/v1/{OP}:cancel", json={}).status_code == 200
    late = send(make_event(Kind.PROGRESS, OP, id="p2", data={"percent": 9}, attempt=2))
    assert (late["outcome"], late["state"], late["cancelRequested"]) == ("late", "cancelled", True)
    other = "operations/ended"
    send(make_event(Kind.FAILED, other, id="f", data={"error": {"code": 13}}))
    after = send(make_event(Kind.HEARTBEAT, other, id="h"))
    assert (after["outcome"], after["state"], after["cancelRequested"]) == ("late", "failed", False)


def test_curl_style_binary_request(server: Server, http: httpx.Client) -> None:
    # Exactly what docs/README show for curl.
    response = http.post(
        "/v1/events",
        headers={
            "ce-specversion": "1.0",
            "ce-id": "42",
            "ce-source": "curl",
            "ce-type": "tracker.operation.v1.succeeded",
            "ce-subject": OP,
            "content-type": "application/json",
        },
        content=b'{"response": {"rows": 3}}',
    )
    assert response.status_code == 200, response.text
    assert server.store.get(OP).operation.response.type_url.endswith("Struct")  # type: ignore[union-attr]


BINARY_OK = {
    "ce-specversion": "1.0",
    "ce-id": "1",
    "ce-source": "t",
    "ce-type": "tracker.operation.v1.progress",
    "ce-subject": OP,
    "content-type": "application/json",
}


def _without(key: str) -> dict[str, str]:
    return {k: v for k, v in BINARY_OK.items() if k != key}


DEEP = b"[" * 100_000 + b"]" * 100_000  # far past the JSON parser's stack

BAD_HTTP = [
    ("malformed_json", 400, {"content-type": "application/cloudevents+json"}, b"{not json"),
    ("malformed_json", 400, BINARY_OK, b"{not json"),
    ("bad_content_type", 415, {"content-type": "text/plain"}, b"hello"),
    ("bad_content_type", 415, dict(BINARY_OK, **{"content-type": "text/csv"}), b"a,b"),
    ("missing_subject", 400, _without("ce-subject"), b"{}"),
    ("missing_id", 400, _without("ce-id"), b"{}"),
    ("unknown_type", 400, dict(BINARY_OK, **{"ce-type": "tracker.operation.v1.exploded"}), b"{}"),
    ("bad_name", 400, dict(BINARY_OK, **{"ce-subject": "jobs/1"}), b"{}"),
    ("invalid_data", 400, BINARY_OK, b'{"percent": 120}'),
    ("too_large", 413, BINARY_OK, b'{"message": "' + b"x" * 2_000_000 + b'"}'),
    # Regressions: each of these was a 500.
    ("too_deep", 400, {"content-type": "application/cloudevents+json"}, DEEP),
    ("too_deep", 400, {"content-type": "application/cloudevents-batch+json"}, DEEP),
    ("too_deep", 400, BINARY_OK, b'{"metadata": ' + DEEP + b"}"),
    ("bad_time", 400, dict(BINARY_OK, **{"ce-time": "9999-12-31T23:59:59-23:59"}), b"{}"),
    ("bad_time", 400, dict(BINARY_OK, **{"ce-time": "0001-01-01T00:00:00+01:00"}), b"{}"),
    (
        "bad_source",
        400,
        {"content-type": "application/cloudevents+json"},
        json.dumps(
            {"specversion": "1.0", "id": "1", "source": "\ud800", "type": Kind.HEARTBEAT.type}
            | {"subject": OP}
        ).encode(),
    ),
]


@pytest.mark.parametrize(
    ("reason", "status", "headers", "body"),
    BAD_HTTP,
    ids=[f"{r}-{i}" for i, (r, *_) in enumerate(BAD_HTTP)],
)
def test_http_bad_input_is_4xx_counted_and_stores_nothing(
    server: Server,
    http: httpx.Client,
    reason: str,
    status: int,
    headers: dict[str, str],
    body: bytes,
) -> None:
    before = rejected(server, "http", reason)
    response = http.post("/v1/events", headers=headers, content=body)
    assert response.status_code == status, response.text
    code, info_reason, _ = google_error(response)
    expected = "RESOURCE_EXHAUSTED" if status == 413 else "INVALID_ARGUMENT"
    assert info_reason == reason.upper() and code == expected
    assert counts(server) == (0, 0)
    assert rejected(server, "http", reason) == before + 1


def test_http_strict_unknown_operation_is_400(strict_server: Server) -> None:
    headers, body = to_binary(make_event(Kind.PROGRESS, OP))
    response = httpx.post(f"{strict_server.http_url}/v1/events", headers=headers, content=body)
    assert response.status_code == 400
    assert google_error(response)[1] == "UNKNOWN_OPERATION"
    assert counts(strict_server) == (0, 0)


# ---- Pub/Sub push -----------------------------------------------------------------------


def push_event(
    http: httpx.Client, event: Any, content_type: str = "application/json"
) -> httpx.Response:
    headers, body = to_binary(event, content_type)
    return http.post("/v1/pubsub/push", json=envelope(headers, body))


def test_push_applies_and_redelivery_is_harmless(server: Server, http: httpx.Client) -> None:
    event = make_event(Kind.SUCCEEDED, OP)
    assert push_event(http, event).status_code == 204
    assert push_event(http, event).status_code == 204  # Pub/Sub redelivered it
    assert counts(server) == (1, 1)
    assert server.store.get(OP).operation.done  # type: ignore[union-attr]


def test_push_accepts_structured_and_ce_datacontenttype(server: Server, http: httpx.Client) -> None:
    headers, body = to_structured(make_event(Kind.PROGRESS, OP, data={"percent": 5}))
    assert http.post("/v1/pubsub/push", json=envelope(headers, body)).status_code == 204
    headers, body = to_binary(make_event(Kind.PROGRESS, "operations/two"), "application/protobuf")
    attrs = {k: v for k, v in headers.items() if k != "content-type"}
    attrs["ce-datacontenttype"] = "application/protobuf"
    assert http.post("/v1/pubsub/push", json=envelope(attrs, body)).status_code == 204
    assert counts(server) == (2, 2)


BAD_PUSH = [
    ("bad_envelope", b"{not json"),
    ("bad_envelope", json.dumps({"nomessage": 1}).encode()),
    ("bad_base64", json.dumps(envelope(BINARY_OK, "!!!not base64!!!")).encode()),
    ("unknown_type", json.dumps(envelope(dict(BINARY_OK, **{"ce-type": "x.y"}), b"{}")).encode()),
    ("missing_subject", json.dumps(envelope(_without("ce-subject"), b"{}")).encode()),
    ("invalid_data", json.dumps(envelope(BINARY_OK, b'{"percent": -1}')).encode()),
    ("bad_name", json.dumps(envelope(dict(BINARY_OK, **{"ce-subject": "x"}), b"{}")).encode()),
    # Regressions: a 500 dead-lettered as "internal", or a 503 that Pub/Sub retries forever.
    ("too_deep", b'{"message": ' + DEEP + b"}"),
    ("bad_envelope", json.dumps(envelope(BINARY_OK, b"{}", message_id="\ud800")).encode()),
    ("bad_envelope", json.dumps(envelope(BINARY_OK, b"{}", message_id="9" * 257)).encode()),
    ("bad_envelope", json.dumps(envelope({f"a{i}": "" for i in range(101)}, b"{}")).encode()),
    ("bad_envelope", json.dumps(envelope({"a" * 257: ""}, b"{}")).encode()),
    ("bad_envelope", json.dumps(envelope({"a": "\udc00"}, b"{}")).encode()),
    (
        "bad_time",
        json.dumps(
            envelope(dict(BINARY_OK, **{"ce-time": "9999-12-31T23:59:59-23:59"}), b"{}")
        ).encode(),
    ),
]


@pytest.mark.parametrize(
    ("reason", "body"), BAD_PUSH, ids=[f"{r}-{i}" for i, (r, _) in enumerate(BAD_PUSH)]
)
def test_push_poison_is_dead_lettered_and_acked(
    server: Server, http: httpx.Client, reason: str, body: bytes
) -> None:
    before = rejected(server, "push", reason)
    response = http.post(
        "/v1/pubsub/push", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200  # 2xx: Pub/Sub must not redeliver poison
    assert response.json()["reason"] == reason
    letters = server.store.dead_letters()
    assert [(d.reason, d.route) for d in letters] == [(reason, "push")]
    assert letters[0].detail
    assert counts(server) == (0, 0)
    assert rejected(server, "push", reason) == before + 1


def test_push_publish_time_that_does_not_parse_is_ignored(
    server: Server, http: httpx.Client
) -> None:
    """The publish time is only the fallback event time; out of range, the receive time is."""
    headers, body = to_binary(make_event(Kind.HEARTBEAT, OP))
    del headers["ce-time"]
    message = envelope(headers, body)
    message["message"]["publishTime"] = "9999-12-31T23:59:59-23:59"  # was a 500, dead-lettered
    before = datetime.now(UTC)
    assert http.post("/v1/pubsub/push", json=message).status_code == 204
    stored = server.store.get(OP)
    assert stored is not None and stored.state.create_time.ToDatetime(UTC) >= before


def test_push_strict_unknown_then_replay_after_created(strict_server: Server) -> None:
    with httpx.Client(base_url=strict_server.http_url) as http:
        response = push_event(http, make_event(Kind.PROGRESS, OP, data={"percent": 60}))
        assert response.status_code == 200 and response.json()["reason"] == "unknown_operation"
        assert push_event(http, make_event(Kind.CREATED, OP)).status_code == 204
    (letter,) = strict_server.store.dead_letters()
    import asyncio

    future = asyncio.run_coroutine_threadsafe(
        strict_server.tracker.replay_dead_letter(letter.id),
        strict_server.loop,  # type: ignore[attr-defined]
    )
    future.result(10)
    assert strict_server.store.dead_letters() == []
    stored = strict_server.store.get(OP)
    assert stored is not None and stored.state.percent == 60


# ---- transient failures -----------------------------------------------------------------


def test_store_unavailable_is_503_on_both_routes_and_nothing_is_lost(db: Path) -> None:
    store = SqliteStore(db, busy_timeout_ms=50)
    with running(Config(db=str(db), http_port=0, grpc_port=-1), store=store) as server:
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        event = make_event(Kind.SUCCEEDED, OP)
        headers, body = to_binary(event)
        with httpx.Client(base_url=server.http_url) as http:
            direct = http.post("/v1/events", headers=headers, content=body)
            assert direct.status_code == 503 and direct.headers["retry-after"]
            assert push_event(http, event).status_code == 503  # Pub/Sub will retry
            blocker.execute("ROLLBACK")
            blocker.close()
            assert push_event(http, event).status_code == 204  # the retry applies it
        assert store.get(OP).operation.done  # type: ignore[union-attr]
        assert store.dead_letters() == []


# ---- outbox across a crash ----------------------------------------------------------------


class RecordingSink:
    name = "recording"
    kinds: frozenset[int] = frozenset({DONE})
    targets = False

    def __init__(self) -> None:
        self.delivered: list[tuple[str, str]] = []
        self.event = threading.Event()

    async def deliver(self, item: OutboxItem) -> None:
        item_id, operation = item.id, item.operation
        self.delivered.append((item_id, operation.name))
        self.event.set()


def test_notification_committed_before_a_crash_is_delivered_after_restart(db: Path) -> None:
    # A process committed the done transition and died before dispatching it.
    crashed = SqliteStore(db)
    crashed.apply([make_event(Kind.SUCCEEDED, OP)])
    (pending,) = crashed.outbox_pending()
    crashed.close()
    sink = RecordingSink()
    with running(Config(db=str(db), http_port=0, grpc_port=-1), sinks=[sink]) as server:
        assert sink.event.wait(10), "the restarted dispatcher did not deliver the notification"
        assert sink.delivered == [(pending.id, OP)]  # same id: consumers can de-duplicate
        # marked sent only after delivery; wait for the mark on the server's own loop
        import asyncio

        asyncio.run_coroutine_threadsafe(
            _dispatcher(server).drain(),
            server.loop,  # type: ignore[attr-defined]
        ).result(10)
        assert server.store.outbox_pending() == []


def test_metrics_endpoint_exposes_counters(server: Server, http: httpx.Client) -> None:
    http.post("/v1/events", headers={"content-type": "text/plain"}, content=b"x")
    text = http.get("/metrics").text
    assert 'tracker_events_rejected_total{reason="bad_content_type",route="http"}' in text
    assert http.get("/healthz").json()["status"] == "ok"


def test_a_quiet_operation_expires_and_its_waiter_wakes(tmp_path: Path) -> None:
    import asyncio

    from google.protobuf import duration_pb2
    from google.rpc import code_pb2

    config = Config(db=str(tmp_path / "e.db"), http_port=0, grpc_port=-1, sweep_seconds=0.05)
    with running(config) as server:
        timeout = duration_pb2.Duration(nanos=200_000_000)  # 0.2 s without an event
        name = "operations/goes-quiet"
        from tests.helpers import ingest

        now = datetime.now(UTC)  # a real clock: the sweeper compares with wall time
        ingest(
            server, [make_event(Kind.CREATED, name, time=now, data={"heartbeat_timeout": timeout})]
        )
        assert not server.store.get(name).operation.done  # type: ignore[union-attr]
        operation = asyncio.run_coroutine_threadsafe(
            server.tracker.wait(name, 30),
            server.loop,  # type: ignore[attr-defined]
        ).result(40)
        assert operation.done and operation.error.code == code_pb2.DEADLINE_EXCEEDED


def test_retention_deletes_done_operations_after_the_ttl(tmp_path: Path) -> None:
    from datetime import timedelta

    from tests.helpers import T0

    store = SqliteStore(tmp_path / "r.db", done_ttl=timedelta(days=1))
    old_events = [
        make_event(Kind.SUCCEEDED, "operations/old", time=T0 - timedelta(days=365)),
        make_event(Kind.PROGRESS, "operations/running", time=T0),
    ]
    store.apply(old_events, now=T0)  # recorded at T0: the event's own old time does not count
    assert store.purge_expired(T0 + timedelta(hours=23)) == 0
    assert store.purge_expired(T0 + timedelta(hours=25)) == 1
    assert store.get("operations/old") is None
    assert store.get("operations/running") is not None  # not done: kept
    store.close()


def _dispatcher(server: Server) -> Dispatcher:
    assert server.tracker.dispatcher is not None, "a durable sink is configured"
    return server.tracker.dispatcher


def test_events_counter_counts_each_outcome_per_route(server: Server, http: httpx.Client) -> None:
    """The per-(route, outcome) counters the after-commit hook keeps looked up: every
    event still counts once, under its own outcome."""
    headers, body = to_binary(make_event(Kind.PROGRESS, "operations/counted", data={}))

    def counted(outcome: str) -> float:
        value = server.tracker.metrics.registry.get_sample_value(
            "tracker_events_total", {"route": "http", "outcome": outcome}
        )
        return value or 0.0

    for _ in range(3):
        assert http.post("/v1/events", headers=headers, content=body).status_code == 200
    assert (counted("applied"), counted("duplicate")) == (1.0, 2.0)
    text = http.get("/metrics").text
    assert 'tracker_events_total{outcome="duplicate",route="http"} 2.0' in text


def test_a_repeated_ce_header_counts_by_its_first_value(http: httpx.Client) -> None:
    """Headers reach the parser as `dict(request.headers)` gave them: the first value of a
    name sent twice."""
    headers, body = to_binary(make_event(Kind.PROGRESS, "operations/twice", data={}))
    raw = [(k, v) for k, v in headers.items() if k != "ce-id"]
    raw += [("ce-id", "first-id"), ("ce-id", "second-id")]
    response = http.post("/v1/events", headers=raw, content=body)
    assert response.status_code == 200, response.text
    assert [r["id"] for r in response.json()["results"]] == ["first-id"]
