"""The limits of tracker/events.py, through the real HTTP route, on every store backend.

Each limit is sent at its value and one over it. The answer must be the same on every
backend (the parser decides, before any store sees the event), and what was accepted at
the limit must be stored and read back intact: that is what shows a limit is not looser
than the Spanner columns (schemas/spanner/0001_init.sql) or its 8 KiB key limit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import is_sqlite, open_backend
from tests.helpers import google_error, make_event
from tracker import events
from tracker.apply import apply_event, render
from tracker.bindings import done_attributes
from tracker.config import Config
from tracker.events import Kind
from tracker.server import Server, running
from tracker.v1 import events_pb2

LIMIT = events.MAX_EVENT_BYTES_LIMIT  # the servers here run with the largest allowed event
EMOJI = "\U0001f600"  # four UTF-8 bytes, one character


@pytest.fixture
def server(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Server]:
    hosts = request.getfixturevalue("spanner_hosts") if not is_sqlite(backend) else None
    store = open_backend(backend, tmp_path, hosts=hosts, monkeypatch=monkeypatch)
    config = Config(
        db=str(tmp_path / "unused.db"), http_port=0, grpc_port=-1, max_event_bytes=LIMIT
    )
    with running(config, store=store) as s:  # the server closes the store
        yield s


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=120) as client:
        yield client


def fresh() -> str:
    return f"operations/limits-{uuid.uuid4().hex[:12]}"


def send(
    http: httpx.Client,
    kind: Kind,
    name: str,
    body: bytes = b"",
    *,
    event_id: str | None = None,
    source: str = "limits",
    content_type: str = "application/json",
) -> httpx.Response:
    """One binary-mode event; header values percent-encoded (UTF-8), as the binding says."""
    headers = {
        "ce-specversion": "1.0",
        "ce-type": kind.type,
        "ce-source": _encode(source),
        "ce-id": _encode(event_id or uuid.uuid4().hex),
        "ce-subject": name,
        "content-type": content_type,
    }
    return http.post("/v1/events", headers=headers, content=body)


def _encode(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def outcome(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["results"][0]["outcome"])


def rejected(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert google_error(response)[1] == reason.upper()


def metadata(http: httpx.Client, name: str) -> dict[str, Any]:
    response = http.get(f"/v1/{name}")
    assert response.status_code == 200, response.text
    assert response.json()["name"] == name
    return dict(response.json()["metadata"])


def not_stored(http: httpx.Client, name: str) -> None:
    assert http.get(f"/v1/{name}").status_code == 404


# ---- attributes: name, source, id, and the key they make together -----------------------


def test_name_at_the_limit_is_stored_and_one_over_is_refused(http: httpx.Client) -> None:
    at = "operations/" + "n" * (events.MAX_NAME_BYTES - len("operations/"))
    assert outcome(send(http, Kind.HEARTBEAT, at)) == "applied"
    metadata(http, at)  # read back by the name itself: the key column held all of it
    over = at + "n"
    rejected(send(http, Kind.HEARTBEAT, over), 400, "bad_name")
    # Reads say the same on every backend, without asking the store.
    rejected(http.get(f"/v1/{over}"), 400, "INVALID_ARGUMENT")


def test_id_and_source_at_their_limits_make_a_key_every_backend_holds(
    http: httpx.Client,
) -> None:
    """Name, source and id all at their limits: 1024 + 4096 + 1024 bytes of primary key."""
    name = "operations/" + "k" * (events.MAX_NAME_BYTES - len("operations/"))
    source = "urn:" + "s" * (events.MAX_SOURCE_BYTES - len("urn:"))
    event_id = EMOJI * events.MAX_ID_CHARS  # 256 characters (STRING(256)), 1024 bytes
    first = send(http, Kind.HEARTBEAT, name, event_id=event_id, source=source)
    assert outcome(first) == "applied"
    # The stored identity reads back exactly: the same event is a duplicate, and one that
    # differs only in the last character of its source or id is not.
    assert outcome(send(http, Kind.HEARTBEAT, name, event_id=event_id, source=source)) == (
        "duplicate"
    )
    other_source = source[:-1] + "t"
    assert outcome(send(http, Kind.HEARTBEAT, name, event_id=event_id, source=other_source)) == (
        "applied"
    )
    other_id = event_id[:-1] + "\U0001f601"
    assert outcome(send(http, Kind.HEARTBEAT, name, event_id=other_id, source=source)) == (
        "applied"
    )


def test_source_and_id_one_over_are_refused(http: httpx.Client) -> None:
    name = fresh()
    source = "urn:" + "s" * (events.MAX_SOURCE_BYTES + 1 - len("urn:"))
    rejected(send(http, Kind.HEARTBEAT, name, source=source), 400, "bad_source")
    # Bytes, not characters: 1366 two-byte characters are 2732 bytes, within the limit.
    multibyte = "\u00e9" * (events.MAX_SOURCE_BYTES // 2 + 1)
    rejected(send(http, Kind.HEARTBEAT, name, source=multibyte), 400, "bad_source")
    rejected(
        send(http, Kind.HEARTBEAT, name, event_id=EMOJI * (events.MAX_ID_CHARS + 1)), 400, "bad_id"
    )
    not_stored(http, name)


# ---- created data: operation type, parent, labels ----------------------------------------


def created(**fields: Any) -> bytes:
    from google.protobuf import json_format

    message = events_pb2.Created(**fields)
    return json_format.MessageToJson(message, indent=None).encode()


AT_LIMITS: dict[str, Any] = {
    # Characters where the Spanner column counts characters: 256 four-byte ones.
    "operation_type": EMOJI * events.MAX_OPERATION_TYPE_CHARS,
    "parent": "projects/" + "p" * (events.MAX_PARENT_BYTES - len("projects/")),
    "labels": {f"l{i:02d}": "v" for i in range(events.MAX_LABELS - 2)}
    | {
        "k" * events.MAX_LABEL_KEY_CHARS: "long key",
        "long-value": "\u00fc" * (events.MAX_LABEL_VALUE_BYTES // 2),  # 1024 bytes
    },
}
ONE_OVER: list[tuple[str, dict[str, Any]]] = [
    ("bad_operation_type", {"operation_type": "t" * (events.MAX_OPERATION_TYPE_CHARS + 1)}),
    ("bad_parent", {"parent": "p" * (events.MAX_PARENT_BYTES + 1)}),
    ("bad_parent", {"parent": "\u00e9" * (events.MAX_PARENT_BYTES // 2 + 1)}),  # bytes count
    ("too_many_labels", {"labels": {f"l{i:02d}": "v" for i in range(events.MAX_LABELS + 1)}}),
    ("bad_label_key", {"labels": {"k" * (events.MAX_LABEL_KEY_CHARS + 1): "v"}}),
    ("bad_label_value", {"labels": {"k": "v" * (events.MAX_LABEL_VALUE_BYTES + 1)}}),
    ("bad_label_value", {"labels": {"k": "\u00fc" * (events.MAX_LABEL_VALUE_BYTES // 2 + 1)}}),
]


def test_created_fields_at_their_limits_are_stored_intact(http: httpx.Client) -> None:
    name = fresh()
    assert outcome(send(http, Kind.CREATED, name, created(**AT_LIMITS))) == "applied"
    meta = metadata(http, name)
    assert meta["operationType"] == AT_LIMITS["operation_type"]
    assert meta["parent"] == AT_LIMITS["parent"]
    assert meta["labels"] == AT_LIMITS["labels"]
    # And what List filters on (the OperationType and Parent columns) holds it all.
    listed = http.get(
        "/v1/operations",
        params={"filter": f'operation_type = "{AT_LIMITS["operation_type"]}"'},
    )
    assert [op["name"] for op in listed.json()["operations"]] == [name]


@pytest.mark.parametrize(("reason", "fields"), ONE_OVER, ids=[r for r, _ in ONE_OVER])
def test_created_fields_one_over_are_refused(
    http: httpx.Client, reason: str, fields: dict[str, Any]
) -> None:
    name = fresh()
    rejected(send(http, Kind.CREATED, name, created(**fields)), 400, reason)
    not_stored(http, name)


# ---- data sizes ---------------------------------------------------------------------------


def checkpoint_body(size: int) -> bytes:
    """A protobuf Checkpoint message of exactly `size` bytes."""
    for payload in range(size - 2, size - 12, -1):
        body = events_pb2.Checkpoint(data=b"\xab" * payload).SerializeToString()
        if len(body) == size:
            return body
    raise AssertionError(size)


def test_an_event_of_the_largest_size_is_stored_and_one_byte_more_is_413(
    http: httpx.Client,
) -> None:
    name = fresh()
    body = checkpoint_body(LIMIT)
    assert outcome(send(http, Kind.CHECKPOINT, name, body, content_type="application/protobuf"))
    stored = http.get(f"/v1/{name}:checkpoint")
    assert stored.status_code == 200
    assert stored.content == events_pb2.Checkpoint.FromString(body).data  # every byte
    over = checkpoint_body(LIMIT + 1)
    response = send(http, Kind.CHECKPOINT, fresh(), over, content_type="application/protobuf")
    rejected(response, 413, "too_large")


# handy-spanner takes requests of at most 4 MiB (gRPC's default; Cloud Spanner's commit
# limit is 100 MB) and a larger commit hangs its client: this one runs on the other two.
@pytest.mark.parametrize("backend", ["sqlite", "spanner-google"])
def test_an_operation_holding_the_most_data_its_events_can_bring(
    server: Server, http: httpx.Client
) -> None:
    """metadata, message and response each as large as an event allows: the state row, the
    served Operation and the outbox row of the done transition hold all of it."""
    name = fresh()
    filler = LIMIT - 200

    def text(n: int) -> str:
        return "m" * n

    meta = f'{{"metadata": {{"blob": "{text(filler)}"}}, "operationType": "big"}}'
    assert outcome(send(http, Kind.CREATED, name, meta.encode())) == "applied"
    progress = f'{{"percent": 50, "message": "{text(filler)}"}}'
    assert outcome(send(http, Kind.PROGRESS, name, progress.encode())) == "applied"
    response = f'{{"response": {{"rows": "{text(filler)}"}}}}'
    assert outcome(send(http, Kind.SUCCEEDED, name, response.encode())) == "applied"
    got = http.get(f"/v1/{name}")
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["done"] is True
    assert body["metadata"]["value"]["blob"] == text(filler)
    assert body["response"]["value"]["rows"] == text(filler)
    stored = server.store.get(name)  # the message is in the state (custom metadata is served)
    assert stored is not None and stored.state.message == text(filler)


def test_a_done_notification_at_every_limit_fits_a_pubsub_message() -> None:
    """Names, type, parent and labels become attributes of the done-notification: Pub/Sub
    takes at most 100 attributes, names of 256 bytes and values of 1024 bytes."""
    name = "operations/" + "n" * (events.MAX_NAME_BYTES - len("operations/"))
    fields = dict(AT_LIMITS)
    fields["labels"] = {
        f"{i:02d}" + EMOJI * (events.MAX_LABEL_KEY_CHARS - 2): "\u00fc" * 512
        for i in range(events.MAX_LABELS)
    }
    state = apply_event(None, make_event(Kind.CREATED, name, data=fields), datetime.now(UTC)).state
    state = apply_event(state, make_event(Kind.SUCCEEDED, name), datetime.now(UTC)).state
    attributes = done_attributes("0" * 32, render(state))
    assert len(attributes) <= 100
    assert sum(k.startswith("label_") for k in attributes) == events.MAX_LABELS
    for key, value in attributes.items():
        assert len(key.encode()) <= 256, key
        assert len(value.encode()) <= 1024, key


def test_max_event_bytes_is_configurable_up_to_what_the_stores_hold(tmp_path: Path) -> None:
    from tracker.errors import ConfigError

    base = Config(db=str(tmp_path / "t.db"))
    assert replace(base, max_event_bytes=LIMIT).validate().rules.max_event_bytes == LIMIT
    assert replace(base, max_event_bytes=LIMIT).rules.max_batch_bytes == events.MAX_BATCH_BYTES
    with pytest.raises(ConfigError, match="--max-event-bytes"):
        replace(base, max_event_bytes=LIMIT + 1).validate()


@pytest.mark.parametrize("backend", ["sqlite"])  # the route decides, before any store
def test_a_batch_is_at_most_16_mib_whatever_the_event_limit(http: httpx.Client) -> None:
    """16 events' worth of 2 MiB would be a 32 MiB transaction; Spanner commits 100 MB, and
    the four copies a batch's data is written in must fit."""
    headers = {"content-type": "application/cloudevents-batch+json"}
    body = b"[" + b" " * (events.MAX_BATCH_BYTES - 1) + b"]"
    rejected(http.post("/v1/events", headers=headers, content=body), 413, "too_large")
    at = b"[" + b" " * (events.MAX_BATCH_BYTES - 2) + b"]"
    rejected(http.post("/v1/events", headers=headers, content=at), 400, "empty_batch")  # read


ODD_TEXT = "nul\x00 tab\t nl\n del\x7f bidi\u202e bom\ufeff astral\U0001f600 cjk\u4e2d"


def test_any_unicode_text_is_stored_intact_on_every_backend(http: httpx.Client) -> None:
    """Control characters, NUL and astral characters in every free-text field."""
    name = fresh()
    fields = {
        "operation_type": ODD_TEXT,
        "parent": ODD_TEXT,
        "labels": {ODD_TEXT: ODD_TEXT, "": "empty key"},
    }
    first = send(http, Kind.CREATED, name, created(**fields), event_id=ODD_TEXT, source=ODD_TEXT)
    assert outcome(first) == "applied"
    meta = metadata(http, name)
    assert (meta["operationType"], meta["parent"]) == (ODD_TEXT, ODD_TEXT)
    assert meta["labels"] == fields["labels"]
    again = send(http, Kind.CREATED, name, created(**fields), event_id=ODD_TEXT, source=ODD_TEXT)
    assert outcome(again) == "duplicate"  # the identity read back exactly
