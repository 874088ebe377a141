"""Pub/Sub push, wrapped and unwrapped (`no_wrapper`), on /v1/pubsub/push (issue #15.2).

First by hand on loopback (each form's answers, exactly), then as Google's Pub/Sub
emulator delivers it to a running tracker: wrapped, unwrapped with write_metadata (the
attributes as headers: applied), unwrapped without (no attributes, no event: recorded as a
dead letter and acknowledged, so never redelivered).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.cloud import pubsub_v1

from tests.helpers import make_event
from tests.pubsub_kit import PROJECT, PubSub, google_emulator
from tracker.bindings import to_binary
from tracker.config import Config
from tracker.events import Kind
from tracker.server import Server, running
from tracker.stores.sqlite import SqliteStore


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running(Config(db=str(tmp_path / "t.db"), http_port=0, grpc_port=-1)) as s:
        yield s


def unwrapped_headers(event: Any, message_id: str = "4711") -> tuple[dict[str, str], bytes]:
    """What Pub/Sub sends for a no_wrapper subscription with write_metadata: the message's
    attributes as headers, its id and publish time, the data as the body."""
    attributes, body = to_binary(event)
    headers = {
        **attributes,
        "x-goog-pubsub-message-id": message_id,
        "x-goog-pubsub-publish-time": "2026-01-01T00:00:00Z",
        "x-goog-pubsub-subscription-name": "projects/p/subscriptions/unwrapped",
    }
    return headers, body


def test_unwrapped_push_with_metadata_applies_and_redelivery_is_harmless(server: Server) -> None:
    name = "operations/unwrapped-1"
    with httpx.Client(base_url=server.http_url) as http:
        for event in (make_event(Kind.CREATED, name), make_event(Kind.SUCCEEDED, name)):
            headers, body = unwrapped_headers(event)
            assert http.post("/v1/pubsub/push", headers=headers, content=body).status_code == 204
            # Redelivered: the same answer, no second effect.
            assert http.post("/v1/pubsub/push", headers=headers, content=body).status_code == 204
    stored = server.store.get(name)
    assert stored is not None and stored.operation.done
    assert isinstance(server.store, SqliteStore)
    assert server.store.count("applied_events") == 2
    assert server.store.dead_letters() == []


def test_a_repeated_header_of_an_unwrapped_push_counts_by_its_first_value(
    server: Server,
) -> None:
    """As on /v1/events: a header sent twice is read by its first value, whatever the
    case of its name."""
    name = "operations/unwrapped-twice"
    headers, body = unwrapped_headers(make_event(Kind.CREATED, name))
    raw = [(k, v) for k, v in headers.items() if k != "ce-id"]
    raw += [("Ce-Id", "first-id"), ("ce-id", "second-id")]
    with httpx.Client(base_url=server.http_url) as http:
        assert http.post("/v1/pubsub/push", headers=raw, content=body).status_code == 204
    _, entries = server.store.read_history(name)
    assert [e.id for e in entries] == ["first-id"]


def test_unwrapped_poison_is_recorded_with_its_message_id_and_acked(server: Server) -> None:
    headers, body = unwrapped_headers(make_event(Kind.PROGRESS, "operations/u2"), "m-99")
    headers["ce-type"] = "com.example.unknown"
    with httpx.Client(base_url=server.http_url) as http:
        response = http.post("/v1/pubsub/push", headers=headers, content=body)
    assert response.status_code == 200, response.text  # 2xx: Pub/Sub must not redeliver
    assert response.json()["reason"] == "unknown_type"
    (letter,) = server.store.dead_letters()
    assert (letter.route, letter.reason, letter.message_id) == ("push", "unknown_type", "m-99")
    assert letter.attributes["ce-type"] == "com.example.unknown"
    assert letter.body == body  # the data as delivered: what a replay needs


def test_unwrapped_without_metadata_is_recorded_and_acked(server: Server) -> None:
    """No attributes arrive (write_metadata off): the body alone is no event."""
    _, body = to_binary(make_event(Kind.PROGRESS, "operations/u3", data={"percent": 4}))
    with httpx.Client(base_url=server.http_url) as http:
        response = http.post(
            "/v1/pubsub/push", headers={"content-type": "application/json"}, content=body
        )
    assert response.status_code == 200, response.text
    assert response.json()["reason"] == "bad_envelope"
    assert "write_metadata" in response.json()["message"]
    (letter,) = server.store.dead_letters()
    assert letter.reason == "bad_envelope" and letter.body == body


# ---- delivered by Google's emulator ------------------------------------------------------


@pytest.fixture(scope="module")
def google_pubsub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with google_emulator(tmp_path_factory.mktemp("unwrapped") / "emulator.log") as host:
        yield host


def until(check: Callable[[], bool], seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_the_emulator_pushes_every_form_end_to_end(
    google_pubsub: str, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", google_pubsub)
    ps = PubSub()
    endpoint = f"{server.http_url}/v1/pubsub/push"
    forms: dict[str, dict[str, Any]] = {
        "wrapped": {"push_endpoint": endpoint},
        "metadata": {"push_endpoint": endpoint, "no_wrapper": {"write_metadata": True}},
        "bare": {"push_endpoint": endpoint, "no_wrapper": {"write_metadata": False}},
    }
    publisher = pubsub_v1.PublisherClient()
    topics: dict[str, str] = {}
    for form, push in forms.items():
        topics[form] = ps.topic()
        ps.subscriber.create_subscription(
            request={
                "name": f"projects/{PROJECT}/subscriptions/unwrapped-{form}-{os.getpid()}",
                "topic": topics[form],
                "push_config": push,
                "ack_deadline_seconds": 10,
            }
        )
    for form in ("wrapped", "metadata", "bare"):
        name = f"operations/pushed-{form}"
        for event in (make_event(Kind.CREATED, name), make_event(Kind.SUCCEEDED, name)):
            attributes, body = to_binary(event)
            publisher.publish(topics[form], body, **attributes).result(30)

    def done(name: str) -> bool:
        stored = server.store.get(name)
        return stored is not None and stored.operation.done

    assert until(lambda: done("operations/pushed-wrapped")), "wrapped push not applied"
    assert until(lambda: done("operations/pushed-metadata")), "unwrapped push not applied"
    assert until(lambda: len(server.store.dead_letters()) == 2), server.store.dead_letters()
    # Without metadata nothing names the operation: both messages are dead letters.
    assert server.store.get("operations/pushed-bare") is None
    letters = server.store.dead_letters()
    assert {d.reason for d in letters} == {"bad_envelope"}
    assert all(d.route == "push" for d in letters)
    # Acknowledged: the emulator does not push them again (it retries within seconds
    # whatever is not answered 2xx).
    time.sleep(3)
    assert len(server.store.dead_letters()) == 2
