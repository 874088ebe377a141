"""Dead letters: the store primitives on every backend, then the API over HTTP and gRPC and
the CLI against a real server, and replay from the dead-letter topic's subscription.

Poison arrives the ways it does in production: through the push route (HTTP), through
the pull route's handler (`PullSubscriber.handle`, with messages built here), and through
a real pull from pstest to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import empty_pb2
from google.protobuf.message import Message

from tests.cli_kit import assert_one_error_line, invoke
from tests.helpers import T0, envelope, google_error, make_event
from tests.pubsub_kit import PubSub, drain
from tracker.bindings import to_binary
from tracker.config import Config
from tracker.events import Event, Kind
from tracker.server import Server, running
from tracker.sources.pubsub_pull import Incoming, PullSubscriber
from tracker.stores.base import DeadLetter, Store
from tracker.stores.dead_letters import DEAD_LETTER_BATCH, DeadLetterQuery
from tracker.stores.sqlite import SqliteStore
from tracker.stores.sqlite_dead_letters import _COLUMNS as COLUMNS
from tracker.v1 import admin_pb2

# ---- the store primitives, on every backend -----------------------------------------------


def letter(
    received_at: datetime,
    *,
    reason: str = "bad_data",
    route: str = "push",
    id: str | None = None,
    body: bytes = b"{}",
) -> DeadLetter:
    return DeadLetter(
        id=id or uuid.uuid4().hex,
        received_at=received_at,
        route=route,
        reason=reason,
        detail=f"{reason} detail",
        attributes={"ce-id": "e1", "content-type": "application/json"},
        body=body,
        message_id="m-1",
    )


def test_get_dead_letter_is_one_key_read_of_every_field(store: Store) -> None:
    stored = letter(T0, body=b"\xff\x00not utf-8")
    store.add_dead_letter(stored)
    store.add_dead_letter(letter(T0 + timedelta(seconds=1)))
    assert store.get_dead_letter(stored.id) == stored
    assert store.get_dead_letter("no-such-id") is None


def test_list_filters_by_reason_route_and_time_and_pages_both_ways(store: Store) -> None:
    letters = [
        letter(T0 + timedelta(minutes=i), reason=("bad_data", "too_large")[i % 2], route=route)
        for i, route in enumerate(["push", "pull", "push", "pull", "push", "pull"])
    ]
    for item in reversed(letters):
        store.add_dead_letter(item)
    newest = [d.id for d in reversed(letters)]
    assert [d.id for d in store.list_dead_letters(DeadLetterQuery(limit=10))] == newest

    def ids(**kwargs: Any) -> list[str]:
        return [d.id for d in store.list_dead_letters(DeadLetterQuery(limit=10, **kwargs))]

    assert ids(reason="bad_data") == [letters[4].id, letters[2].id, letters[0].id]
    assert ids(route="pull", reason="too_large") == [letters[5].id, letters[3].id, letters[1].id]
    assert ids(route="pull", reason="bad_data") == []
    assert ids(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4)) == [
        letters[3].id,
        letters[2].id,
    ]
    # Pages of two, newest first and oldest first, with a cursor (received_at, id).
    for oldest_first, expected in ((False, newest), (True, [d.id for d in letters])):
        seen: list[str] = []
        after: tuple[datetime, str] | None = None
        while True:
            page = store.list_dead_letters(
                DeadLetterQuery(limit=2, after=after, oldest_first=oldest_first)
            )
            seen += [d.id for d in page[:2]]
            if len(page) <= 2:
                break
            after = (page[1].received_at, page[1].id)
        assert seen == expected


def test_letters_received_at_the_same_time_page_by_id(store: Store) -> None:
    same = [letter(T0, id=f"d{i}") for i in range(5)]
    for item in same:
        store.add_dead_letter(item)
    first = store.list_dead_letters(DeadLetterQuery(limit=3))
    assert [d.id for d in first] == ["d4", "d3", "d2", "d1"]
    rest = store.list_dead_letters(DeadLetterQuery(limit=3, after=(T0, "d2")))
    assert [d.id for d in rest] == ["d1", "d0"]


def test_remove_and_purge_by_filter_and_dry_run_counts_only(store: Store) -> None:
    for i in range(6):
        store.add_dead_letter(letter(T0 + timedelta(seconds=i), reason=("a", "b")[i % 2]))
    query = DeadLetterQuery(reason="a")
    assert store.purge_dead_letters(query, dry_run=True) == 3
    assert len(store.dead_letters()) == 6
    assert store.purge_dead_letters(query) == 3
    assert {d.reason for d in store.dead_letters()} == {"b"}
    ids = [d.id for d in store.dead_letters()]
    assert store.remove_dead_letters([ids[0], ids[1], "unknown"]) == 2
    assert [d.id for d in store.dead_letters()] == ids[2:]


def test_retention_removes_only_letters_older_than_the_ttl(store: Store) -> None:
    now = T0 + timedelta(days=100)
    store.dead_letter_ttl = timedelta(days=30)
    old = letter(now - timedelta(days=30, seconds=1))
    edge = letter(now - timedelta(days=30))
    young = letter(now - timedelta(days=1))
    for item in (old, edge, young):
        store.add_dead_letter(item)
    assert store.expire_dead_letters(now) == 1
    assert {d.id for d in store.dead_letters()} == {edge.id, young.id}
    assert store.expire_dead_letters(now + timedelta(days=29)) == 1
    assert [d.id for d in store.dead_letters()] == [young.id]


def test_retention_works_in_bounded_rounds(tmp_path: Any) -> None:
    """SQLite: a backlog larger than a round goes in several rounds, found by the index."""
    from tracker.stores.sqlite_dead_letters import purge_statement

    store = SqliteStore(tmp_path / "t.db")
    try:
        total = DEAD_LETTER_BATCH * 2 + 5
        for i in range(total):
            store.add_dead_letter(letter(T0 + timedelta(microseconds=i)))
        sql, params = purge_statement(DeadLetterQuery(until=T0 + timedelta(days=1)))
        plan = " ".join(store.explain(sql, params))
        assert "dead_letters_received" in plan, plan
        assert store.expire_dead_letters(T0 + timedelta(days=31), max_rounds=1) == DEAD_LETTER_BATCH
        assert store.count("dead_letters") == total - DEAD_LETTER_BATCH
        assert store.expire_dead_letters(T0 + timedelta(days=31)) == total - DEAD_LETTER_BATCH
        assert store.count("dead_letters") == 0
    finally:
        store.close()


# ---- a real server, poison through the push route ------------------------------------------

OP = "operations/dl-1"
NOT_JSON = b"\xff\xfe not json"


@pytest.fixture
def server(tmp_path: Any) -> Iterator[Server]:
    """Strict: an event for an operation not created yet is poison, until it is created."""
    with running(Config(db=str(tmp_path / "t.db"), http_port=0, grpc_port=0, strict=True)) as s:
        yield s


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=10) as client:
        yield client


def push(http: httpx.Client, event: Event, message_id: str = "m1") -> str:
    """Push `event`; the id of the dead letter it became."""
    headers, body = to_binary(event)
    answer = http.post("/v1/pubsub/push", json=envelope(headers, body, message_id))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["deadLetter"])


def push_raw(http: httpx.Client, data: bytes, **attributes: str) -> str:
    answer = http.post("/v1/pubsub/push", json=envelope(attributes, data))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["deadLetter"])


def progress(percent: float, op: str = OP) -> Event:
    return make_event(Kind.PROGRESS, op, data={"percent": percent})


def create(http: httpx.Client, op: str = OP) -> None:
    headers, body = to_binary(make_event(Kind.CREATED, op))
    assert http.post("/v1/events", headers=headers, content=body).status_code == 200


def listed(http: httpx.Client, **params: Any) -> dict[str, Any]:
    answer = http.get("/v1/deadLetters", params=params)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def error_of(answer: httpx.Response, status: int) -> tuple[str, str, dict[str, str]]:
    assert answer.status_code == status, answer.text
    return google_error(answer)


def test_list_and_get_show_every_field_newest_first(server: Server, http: httpx.Client) -> None:
    first = push(http, progress(10), "m-first")
    binary = push_raw(http, NOT_JSON, **{"ce-id": "x", "content-type": "application/json"})
    page = listed(http)
    assert [d["id"] for d in page["deadLetters"]] == [binary, first]
    assert page["nextPageToken"] == ""
    item = page["deadLetters"][1]
    stored = server.store.get_dead_letter(first)
    assert stored is not None
    assert set(item) == {
        "name",
        "id",
        "receivedTime",
        "route",
        "reason",
        "detail",
        "messageId",
        "attributes",
        "body",
        "bodyText",
    }
    assert item["name"] == f"deadLetters/{first}" and item["route"] == "push"
    assert item["reason"] == "unknown_operation" and OP in item["detail"]
    assert item["messageId"] == "m-first" and item["attributes"] == stored.attributes
    assert base64.b64decode(item["body"]) == stored.body
    assert json.loads(item["bodyText"]) == {"percent": 10}
    assert datetime.fromisoformat(item["receivedTime"]) == stored.received_at
    one = http.get(f"/v1/deadLetters/{first}")
    assert one.status_code == 200 and one.json() == item
    other = http.get(f"/v1/deadLetters/{binary}").json()
    assert "bodyText" not in other and base64.b64decode(other["body"]) == NOT_JSON
    name, _, _ = error_of(http.get("/v1/deadLetters/nope"), 404)
    assert name == "NOT_FOUND"


def test_filters_and_pages(server: Server, http: httpx.Client) -> None:
    ids = [push(http, progress(i)) for i in range(5)]
    bad = push_raw(http, NOT_JSON, **{"ce-id": "x"})
    page = listed(http, filter='reason = "unknown_operation"')
    assert [d["id"] for d in page["deadLetters"]] == ids[::-1]
    assert listed(http, filter='route = "pull"')["deadLetters"] == []
    when = server.store.get_dead_letter(ids[2])
    assert when is not None
    stamp = when.received_at.isoformat()
    page = listed(http, filter=f'received_time >= "{stamp}" AND reason = unknown_operation')
    assert [d["id"] for d in page["deadLetters"]] == [ids[4], ids[3], ids[2]]
    page = listed(http, filter=f'received_time < "{stamp}"')
    assert [d["id"] for d in page["deadLetters"]] == [ids[1], ids[0]]
    seen: list[str] = []
    token = ""
    while True:
        page = listed(http, pageSize=2, **({"pageToken": token} if token else {}))
        assert len(page["deadLetters"]) <= 2
        seen += [d["id"] for d in page["deadLetters"]]
        token = page["nextPageToken"]
        if not token:
            break
    assert seen == [bad, *ids[::-1]]
    first = listed(http, pageSize=2)["nextPageToken"]
    for params in (
        {"filter": "reason = 1 OR route = push"},
        {"filter": "reason > x"},
        {"filter": "colour = red"},
        {"filter": 'received_time >= "yesterday"'},
        {"filter": 'reason = "a" AND reason = "b"'},
        {"filter": "reason ="},
        {"pageSize": "-1"},
        {"pageToken": "garbage"},
        {"pageToken": first, "filter": 'route = "push"'},
        {"pagesize": "2"},
    ):
        name, _, _ = error_of(http.get("/v1/deadLetters", params=params), 400)
        assert name == "INVALID_ARGUMENT", params


def test_replay_one_fails_with_the_reason_then_applies_after_the_fix(
    server: Server, http: httpx.Client
) -> None:
    letter_id = push(http, progress(60))
    again = http.post(f"/v1/deadLetters/{letter_id}:replay", json={})
    name, reason, metadata = error_of(again, 400)
    assert (name, reason, metadata) == (
        "INVALID_ARGUMENT",
        "UNKNOWN_OPERATION",
        {"deadLetter": letter_id},
    )
    assert "unknown_operation" in again.json()["error"]["message"]
    assert server.store.get_dead_letter(letter_id) is not None  # it stays
    create(http)
    answer = http.post(f"/v1/deadLetters/{letter_id}:replay")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "id": letter_id,
        "operation": OP,
        "outcome": "applied",
        "state": "running",
    }
    assert server.store.get_dead_letter(letter_id) is None
    stored = server.store.get(OP)
    assert stored is not None and stored.state.percent == 60
    error_of(http.post(f"/v1/deadLetters/{letter_id}:replay"), 404)


def test_replay_by_filter_dry_run_bounded_and_continued(server: Server, http: httpx.Client) -> None:
    ids = [push(http, progress(10 * (i + 1))) for i in range(5)]
    bad = push_raw(http, NOT_JSON, **{"ce-id": "x"})
    create(http)
    before = [d.id for d in server.store.dead_letters()]
    dry = http.post("/v1/deadLetters:replay", json={"filter": "", "dryRun": True})
    assert dry.status_code == 200, dry.text
    assert dry.json()["matched"] == 6 and dry.json()["replayed"] == 0
    assert [f["id"] for f in dry.json()["failed"]] == [bad]  # does not even parse
    assert [d.id for d in server.store.dead_letters()] == before
    assert server.store.get(OP).state.percent == 0  # type: ignore[union-attr]
    body: dict[str, Any] = {"filter": 'reason = "unknown_operation"', "limit": 2}
    rounds = []
    while True:
        answer = http.post("/v1/deadLetters:replay", json=body).json()
        rounds.append((answer["matched"], answer["replayed"], answer["failed"]))
        if not answer["nextPageToken"]:
            break
        body["pageToken"] = answer["nextPageToken"]
    assert rounds == [(2, 2, []), (2, 2, []), (1, 1, [])]
    assert [d.id for d in server.store.dead_letters()] == [bad]
    assert server.store.get(OP).state.percent == 50  # type: ignore[union-attr]
    answer = http.post("/v1/deadLetters:replay", json={}).json()
    assert answer["matched"] == 1 and answer["replayed"] == 0
    (failure,) = answer["failed"]
    assert failure["id"] == bad and failure["reason"] and failure["message"]
    assert [d.id for d in server.store.dead_letters()] == [bad]
    _ = ids
    for wrong in ({"limit": -1}, {"dryrun": True}, {"filter": "x"}, [1]):
        error_of(http.post("/v1/deadLetters:replay", json=wrong), 400)


def test_purge_dry_run_counts_then_purges_only_the_match(
    server: Server, http: httpx.Client
) -> None:
    keep = push_raw(http, NOT_JSON, **{"ce-id": "x"})
    for i in range(3):
        push(http, progress(i))
    body = {"filter": 'reason = "unknown_operation"', "dryRun": True}
    assert http.post("/v1/deadLetters:purge", json=body).json() == {"matched": 3, "purged": 0}
    assert len(server.store.dead_letters()) == 4
    body["dryRun"] = False
    assert http.post("/v1/deadLetters:purge", json=body).json() == {"matched": 3, "purged": 3}
    assert [d.id for d in server.store.dead_letters()] == [keep]
    error_of(http.post("/v1/deadLetters:purge", json={"filter": "reason"}), 400)


def test_delete_and_wrong_methods(server: Server, http: httpx.Client) -> None:
    letter_id = push(http, progress(1))
    assert http.delete(f"/v1/deadLetters/{letter_id}").json() == {}
    assert server.store.dead_letters() == []
    error_of(http.delete(f"/v1/deadLetters/{letter_id}"), 404)
    for method, path in (
        ("POST", "/v1/deadLetters"),
        ("GET", "/v1/deadLetters:replay"),
        ("PUT", f"/v1/deadLetters/{letter_id}"),
        ("GET", f"/v1/deadLetters/{letter_id}:replay"),
    ):
        name, _, _ = error_of(http.request(method, path), 405)
        assert name == "UNIMPLEMENTED"
    error_of(http.get("/v1/deadLetters/" + "x" * 65), 400)


def test_pull_route_poison_is_listed_and_replayed(
    server: Server, http: httpx.Client, pubsub_env: str
) -> None:
    """The pull route's own handler (no Pub/Sub in between) dead-letters to the table."""
    headers, body = to_binary(progress(70))
    acked: list[str] = []
    message = Incoming(
        attributes=headers,
        data=body,
        message_id="pulled-1",
        publish_time=None,
        ack=lambda: acked.append("pulled-1"),
        nack=lambda: None,
    )
    puller = PullSubscriber(server.tracker, "projects/p/subscriptions/unused")
    loop = server.loop  # type: ignore[attr-defined]
    asyncio.run_coroutine_threadsafe(puller.handle([message]), loop).result(30)
    assert acked == ["pulled-1"]
    (item,) = listed(http, filter='route = "pull"')["deadLetters"]
    assert item["messageId"] == "pulled-1" and item["reason"] == "unknown_operation"
    create(http)
    assert http.post(f"/v1/deadLetters/{item['id']}:replay").json()["outcome"] == "applied"
    assert server.store.get(OP).state.percent == 70  # type: ignore[union-attr]


def test_retention_sweep_of_a_running_server(tmp_path: Any) -> None:
    """The server's own sweep removes dead letters older than --dead-letter-retention-days."""
    config = Config(
        db=str(tmp_path / "t.db"),
        http_port=0,
        grpc_port=-1,
        dead_letter_retention_days=2,
        sweep_seconds=0.05,
    )
    now = datetime.now(UTC)
    with running(config) as server:
        old = letter(now - timedelta(days=3))
        young = letter(now - timedelta(days=1))
        server.store.add_dead_letter(old)
        server.store.add_dead_letter(young)
        deadline = time.monotonic() + 30
        while server.store.get_dead_letter(old.id) is not None:  # poll the observable rows
            assert time.monotonic() < deadline, "the sweep did not remove the old dead letter"
            time.sleep(0.05)
        assert server.store.get_dead_letter(young.id) == young


# ---- gRPC ------------------------------------------------------------------------------------


def rpc(server: Server, method: str, request: Message, response: type[Message]) -> Any:
    with grpc.insecure_channel(server.grpc_target) as channel:
        call: Any = channel.unary_unary(
            f"/tracker.v1.DeadLetters/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString,
        )
        return call(request, timeout=10)


def rpc_error(server: Server, method: str, request: Message) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        rpc(server, method, request, empty_pb2.Empty)
    return info.value.code()


def test_grpc_service(server: Server, http: httpx.Client) -> None:
    a = push(http, progress(20))
    b = push_raw(http, NOT_JSON, **{"ce-id": "x"})
    page = rpc(
        server,
        "ListDeadLetters",
        admin_pb2.ListDeadLettersRequest(page_size=1),
        admin_pb2.ListDeadLettersResponse,
    )
    assert [d.id for d in page.dead_letters] == [b] and page.next_page_token
    got = rpc(
        server,
        "GetDeadLetter",
        admin_pb2.GetDeadLetterRequest(name=f"deadLetters/{a}"),
        admin_pb2.DeadLetter,
    )
    assert got.reason == "unknown_operation" and got.route == "push"
    assert json.loads(got.body_text) == {"percent": 20}
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    assert (
        rpc_error(server, "ReplayDeadLetter", admin_pb2.ReplayDeadLetterRequest(name=a)) == invalid
    )
    assert (
        rpc_error(server, "ListDeadLetters", admin_pb2.ListDeadLettersRequest(filter="nope"))
        == invalid
    )
    assert (
        rpc_error(server, "GetDeadLetter", admin_pb2.GetDeadLetterRequest(name="deadLetters/none"))
        == grpc.StatusCode.NOT_FOUND
    )
    assert rpc_error(server, "GetDeadLetter", admin_pb2.GetDeadLetterRequest()) == invalid
    create(http)
    dry = rpc(
        server,
        "ReplayDeadLetters",
        admin_pb2.ReplayDeadLettersRequest(dry_run=True),
        admin_pb2.ReplayDeadLettersResponse,
    )
    assert (dry.matched, dry.replayed, [f.id for f in dry.failed]) == (2, 0, [b])
    replayed = rpc(
        server,
        "ReplayDeadLetter",
        admin_pb2.ReplayDeadLetterRequest(name=f"deadLetters/{a}"),
        admin_pb2.ReplayDeadLetterResponse,
    )
    assert (replayed.id, replayed.outcome) == (a, "applied")
    purge = rpc(
        server,
        "PurgeDeadLetters",
        admin_pb2.PurgeDeadLettersRequest(dry_run=True),
        admin_pb2.PurgeDeadLettersResponse,
    )
    assert (purge.matched, purge.purged) == (1, 0)
    rpc(server, "DeleteDeadLetter", admin_pb2.DeleteDeadLetterRequest(name=b), empty_pb2.Empty)
    assert server.store.dead_letters() == []
    with grpc.insecure_channel(server.grpc_target) as channel:
        garbage: Any = channel.unary_unary("/tracker.v1.DeadLetters/GetDeadLetter")
        with pytest.raises(grpc.RpcError) as info:
            garbage(b"\xff\xff\xff", timeout=10)
        assert info.value.code() == invalid


# ---- the CLI ---------------------------------------------------------------------------------


def test_cli(server: Server, http: httpx.Client) -> None:
    url = server.http_url
    a = push(http, progress(30))
    b = push_raw(http, NOT_JSON, **{"ce-id": "x"})
    listed_json = invoke(["dead-letters", "list", "--json"], url)
    assert listed_json.exit_code == 0, listed_json.output
    assert [d["id"] for d in json.loads(listed_json.output)] == [b, a]
    table = invoke(["dead-letters", "list", "--filter", 'reason = "unknown_operation"'], url)
    assert a in table.output and b not in table.output
    shown = invoke(["dead-letters", "show", a], url)
    assert json.loads(shown.output)["reason"] == "unknown_operation"
    failing = invoke(["dead-letters", "replay", a], url)
    assert failing.exit_code == 1 and "unknown_operation" in assert_one_error_line(failing.output)
    bad_filter = invoke(["dead-letters", "list", "--filter", "colour = red"], url)
    assert bad_filter.exit_code == 1 and "unknown field" in assert_one_error_line(bad_filter.output)
    create(http)
    dry = invoke(["dead-letters", "replay", "--all", "--dry-run"], url)
    assert dry.exit_code == 1 and "matched 2, would replay 1" in dry.output, dry.output
    assert f"failed {b}" in dry.output and len(server.store.dead_letters()) == 2
    one = invoke(["dead-letters", "replay", a], url)
    assert one.exit_code == 0 and f"replayed {a}: applied for {OP}" in one.output
    c = push(http, progress(40, "operations/dl-2"))
    by_filter = invoke(["dead-letters", "replay", "--filter", 'route = "push"'], url)
    assert by_filter.exit_code == 1 and "matched 2, replayed 0" in by_filter.output
    assert {d.id for d in server.store.dead_letters()} == {b, c}
    usage = invoke(["dead-letters", "replay", a, "--all"], url)
    assert usage.exit_code == 2
    purge_dry = invoke(["dead-letters", "purge", "--filter", "", "--dry-run"], url)
    assert "matched 2, would purge 2" in purge_dry.output and len(server.store.dead_letters()) == 2
    deleted = invoke(["dead-letters", "delete", c], url)
    assert deleted.exit_code == 0 and server.store.get_dead_letter(c) is None
    purged = invoke(["dead-letters", "purge", "--filter", 'reason != "x"'], url)
    assert purged.exit_code == 1
    purged = invoke(["dead-letters", "purge", "--filter", ""], url)
    assert "matched 1, purged 1" in purged.output and server.store.dead_letters() == []


# ---- replay from the dead-letter topic's subscription (pstest) ------------------------------


def test_replay_topic_dry_run_then_replay_acks_what_the_tracker_answered_for(
    server: Server, http: httpx.Client, pubsub_env: str
) -> None:
    pubsub = PubSub()
    events, dlq = pubsub.topic(), pubsub.topic()
    source, dead = pubsub.subscription(events), pubsub.subscription(dlq, ordered=False)
    pubsub.publish(events, progress(80))
    pubsub.publish_raw(events, NOT_JSON, **{"ce-id": "x"})
    assert drain(server, source, dead_letter_topic=dlq) == 2
    assert server.store.dead_letters() == []  # both went to the topic
    url = server.http_url
    dry = invoke(["dead-letters", "replay-topic", dead, "--dry-run"], url)
    assert dry.exit_code == 0, dry.output
    assert "dry run: invalid 1, valid 1" in dry.output
    assert server.store.dead_letters() == [] and server.store.get(OP) is None
    create(http)
    done = invoke(["dead-letters", "replay-topic", dead], url)
    assert done.exit_code == 0, done.output
    assert "applied 1, dead_lettered 1" in done.output  # the dry run left both there
    assert server.store.get(OP).state.percent == 80  # type: ignore[union-attr]
    (letter_row,) = server.store.dead_letters()
    assert letter_row.route == "replay" and letter_row.body == NOT_JSON
    assert "tracker-reason" not in letter_row.attributes
    again = invoke(["dead-letters", "replay-topic", dead], url)
    assert "no messages" in again.output  # both acked


class NoListingStore(SqliteStore):
    """A store whose listings fail: a replay by id that scans cannot succeed on it."""

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        raise AssertionError("replay by id listed the dead letters")

    def list_dead_letters(self, query: DeadLetterQuery) -> list[DeadLetter]:
        raise AssertionError("replay by id listed the dead letters")


def test_replay_by_id_reads_one_row_and_lists_nothing(tmp_path: Any) -> None:
    store = NoListingStore(tmp_path / "t.db", strict=True)
    # get_dead_letter's statement: a search of the primary key, one row.
    plan = " ".join(store.explain(f"SELECT {COLUMNS} FROM dead_letters WHERE id = ?", ["x"]))
    assert plan == "SEARCH dead_letters USING INDEX sqlite_autoindex_dead_letters_1 (id=?)", plan
    config = Config(db=str(tmp_path / "t.db"), http_port=0, grpc_port=-1, strict=True)
    with running(config, store=store) as server, httpx.Client(base_url=server.http_url) as http:
        letter_id = push(http, progress(90))
        create(http)
        answer = http.post(f"/v1/deadLetters/{letter_id}:replay")
        assert answer.status_code == 200, answer.text
        assert http.get(f"/v1/deadLetters/{letter_id}").status_code == 404
        second = push(http, progress(95, "operations/dl-3"))
        create(http, "operations/dl-3")
        old = asyncio.run_coroutine_threadsafe(
            server.tracker.replay_dead_letter(second),
            server.loop,  # type: ignore[attr-defined]
        )
        old.result(30)  # Tracker.replay_dead_letter reads one row too
        assert store.get(OP).state.percent == 90  # type: ignore[union-attr]
        assert store.get("operations/dl-3").state.percent == 95  # type: ignore[union-attr]
