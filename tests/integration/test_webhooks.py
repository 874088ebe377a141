"""Webhooks: signed deliveries a real receiver verifies, retries, SSRF refusals, bounds.

Every receiver is a real HTTP(S) server on 127.0.0.1 (tests/webhook_kit.py) that checks
each delivery with the standardwebhooks library. The dispatcher-level tests drive
`Dispatcher.drain` with an injected clock (no waiting for backoff); the end-to-end ones
run a real server (`tracker.server.running`).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks
import trustme

from tests.helpers import ROOT, envelope, google_error, ingest, make_event
from tests.webhook_kit import NEXT_SECRET, OTHER_SECRET, SECRET, Receiver, receiver
from tracker import filtering
from tracker.bindings import to_binary
from tracker.config import Config
from tracker.events import Kind
from tracker.metrics import Metrics
from tracker.notices import CANCEL, Subscription
from tracker.notify.outbox import Dispatcher, RetryPolicy, wanted_by
from tracker.notify.ssrf import TargetPolicy
from tracker.notify.webhooks import WebhookSink
from tracker.server import running
from tracker.stores.sqlite import SqliteStore
from tracker.v1 import events_pb2

LOOPBACK = TargetPolicy(allow_http=True, allow_private=True)


class Clock:
    """The dispatcher's idea of now: real time plus what the test skipped."""

    def __init__(self) -> None:
        self.skipped = timedelta()

    def __call__(self) -> Any:
        from datetime import UTC, datetime

        return datetime.now(UTC) + self.skipped


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "t.db")
    yield s
    s.close()


def created(url: str, *notices: str, **fields: Any) -> events_pb2.Created:
    return events_pb2.Created(
        operation_type=fields.pop("operation_type", "export"),
        webhooks=[events_pb2.Webhook(url=url, notices=list(notices))],
        **fields,
    )


def finish(store: SqliteStore, sink: WebhookSink, name: str, url: str) -> None:
    """`name` created with a done webhook to `url`, then succeeded."""
    store.apply(
        [
            make_event(Kind.CREATED, name, data=created(url, "done")),
            make_event(Kind.SUCCEEDED, name),
        ],
        notify=wanted_by([sink]),
    )


def dispatcher(store: SqliteStore, sink: WebhookSink, **kwargs: Any) -> Dispatcher:
    return Dispatcher(store, [sink], metrics=Metrics(), **kwargs)


def drain(d: Dispatcher) -> int:
    return asyncio.run(d.drain())


# ---- signed deliveries ---------------------------------------------------------------


def test_a_done_notice_arrives_signed_and_the_library_verifies_it(
    store: SqliteStore, hook: Receiver
) -> None:
    sink = WebhookSink([SECRET], policy=LOOPBACK)
    finish(store, sink, "operations/a", hook.url())
    (item,) = store.outbox_pending()
    assert drain(dispatcher(store, sink)) == 1

    delivery = hook.next()
    payload = delivery.verify(SECRET)
    assert delivery.path == "/hook" and delivery.id == item.id
    assert delivery.headers["content-type"] == "application/json"
    assert payload["type"] == "tracker.notice.v1.done"
    assert payload["timestamp"].endswith("Z")
    notice, operation = payload["data"]["notice"], payload["data"]["operation"]
    assert notice["kind"] == "DONE" and notice["operation"] == "operations/a"
    assert "target" not in notice
    assert operation["name"] == "operations/a" and operation["done"] is True
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        delivery.verify(OTHER_SECRET)  # a receiver with another secret refuses it
    tampered = dict(delivery.headers, **{"webhook-id": "forged"})
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET).verify(delivery.body, tampered)
    assert store.outbox_pending() == [] and store.failed_notifications() == []


def test_two_secrets_sign_twice_so_a_receiver_knowing_either_verifies(
    store: SqliteStore, hook: Receiver
) -> None:
    sink = WebhookSink([SECRET, NEXT_SECRET], policy=LOOPBACK)
    finish(store, sink, "operations/rot", hook.url())
    assert drain(dispatcher(store, sink)) == 1
    delivery = hook.next()
    assert len(delivery.headers["webhook-signature"].split(" ")) == 2
    assert delivery.verify(NEXT_SECRET)["data"]["operation"]["name"] == "operations/rot"
    assert delivery.verify(SECRET)["type"] == "tracker.notice.v1.done"
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        delivery.verify(OTHER_SECRET)


def test_a_failing_receiver_is_retried_and_gets_the_same_webhook_id(
    store: SqliteStore, hook: Receiver
) -> None:
    sink = WebhookSink([SECRET], policy=LOOPBACK)
    finish(store, sink, "operations/flaky", hook.url())
    hook.statuses = [500]
    clock = Clock()
    d = dispatcher(store, sink, clock=clock)
    assert drain(d) == 0
    first = hook.next()
    (pending,) = store.outbox_pending(now=clock() + timedelta(days=1))
    assert pending.attempts == 1 and "HTTP 500" in (pending.last_error or "")
    assert pending.id == first.id

    clock.skipped = timedelta(hours=1)  # past the backoff
    assert drain(d) == 1
    second = hook.next()
    assert second.id == first.id  # receivers de-duplicate by it
    assert second.verify()["data"]["operation"]["name"] == "operations/flaky"
    assert store.outbox_pending(now=clock() + timedelta(days=1)) == []
    assert store.failed_notifications() == []


def test_a_receiver_that_keeps_failing_ends_as_a_failed_notification(
    store: SqliteStore, hook: Receiver
) -> None:
    sink = WebhookSink([SECRET], policy=LOOPBACK)
    finish(store, sink, "operations/down", hook.url())
    hook.statuses = [503, 503, 503]
    clock = Clock()
    d = dispatcher(store, sink, clock=clock, retry=RetryPolicy(max_attempts=3))
    for _ in range(3):
        assert drain(d) == 0
        clock.skipped += timedelta(hours=1)
    assert len(hook.all()) == 3
    (failed,) = store.failed_notifications()
    assert failed.attempts == 3 and "HTTP 503" in (failed.last_error or "")


def test_a_redirect_is_not_followed(store: SqliteStore, hook: Receiver) -> None:
    with receiver() as elsewhere:
        sink = WebhookSink([SECRET], policy=LOOPBACK)
        finish(store, sink, "operations/redir", hook.url())
        hook.statuses, hook.location = [307], elsewhere.url()
        assert drain(dispatcher(store, sink)) == 0
        assert len(hook.all()) == 1
        assert elsewhere.all() == []
        (pending,) = store.outbox_pending(now=Clock()() + timedelta(days=1))
        assert "HTTP 307" in (pending.last_error or "")


# ---- bounds ---------------------------------------------------------------------------


def test_a_receiver_that_never_answers_is_cut_off_by_the_timeout(
    store: SqliteStore, hook: Receiver
) -> None:
    sink = WebhookSink([SECRET], policy=LOOPBACK, timeout=0.2)
    finish(store, sink, "operations/slow", hook.url())
    hook.hang = True
    assert drain(dispatcher(store, sink)) == 0
    assert hook.next().verify()  # it got the request, it just never answered
    (pending,) = store.outbox_pending(now=Clock()() + timedelta(days=1))
    assert pending.attempts == 1 and "no answer in 0.2 s" in (pending.last_error or "")


def test_an_endless_answer_is_read_only_up_to_the_bound(store: SqliteStore, hook: Receiver) -> None:
    sink = WebhookSink([SECRET], policy=LOOPBACK, max_response_bytes=1024)
    finish(store, sink, "operations/huge", hook.url())
    hook.endless = True
    assert drain(dispatcher(store, sink)) == 0
    (pending,) = store.outbox_pending(now=Clock()() + timedelta(days=1))
    assert "answer larger than 1024 bytes" in (pending.last_error or "")


# ---- forbidden targets ------------------------------------------------------------------

FORBIDDEN = [
    # (url template, policy, what the error says)
    ("http://127.0.0.1:{port}/hook", TargetPolicy(allow_private=True), "only https"),
    ("http://127.0.0.1:{port}/hook", TargetPolicy(allow_http=True), "loopback"),
    ("http://localhost:{port}/hook", TargetPolicy(allow_http=True), "loopback"),
    ("http://[::ffff:127.0.0.1]:{port}/hook", TargetPolicy(allow_http=True), "loopback"),
    ("http://169.254.169.254/latest/meta-data/", TargetPolicy(allow_http=True), "link-local"),
    ("http://10.1.2.3/hook", TargetPolicy(allow_http=True), "private"),
    ("http://192.168.0.10/hook", TargetPolicy(allow_http=True), "private"),
    ("http://0.0.0.0:{port}/hook", TargetPolicy(allow_http=True), "unspecified"),
    (
        "http://localhost:{port}/hook",
        TargetPolicy(allow_http=True, allow_private=True, allow_hosts=("hooks.example.com",)),
        "not on --webhook-allow-host",
    ),
    ("http://user:pw@127.0.0.1:{port}/hook", LOOPBACK, "credentials"),
]


@pytest.mark.parametrize(("template", "policy", "why"), FORBIDDEN)
def test_a_forbidden_target_gets_nothing_and_is_given_up_at_once(
    store: SqliteStore, hook: Receiver, template: str, policy: TargetPolicy, why: str
) -> None:
    sink = WebhookSink([SECRET], policy=policy)
    finish(store, sink, "operations/ssrf", template.format(port=hook.port))
    metrics = Metrics()
    d = Dispatcher(store, [sink], metrics=metrics)
    assert drain(d) == 0
    assert hook.all() == []
    assert store.outbox_pending(now=Clock()() + timedelta(days=1)) == []  # not retried
    (failed,) = store.failed_notifications()
    assert failed.attempts == 1
    assert "Forbidden" in (failed.last_error or "") and why in (failed.last_error or "")
    assert metrics.value(metrics.notifications, result="gave_up") == 1


def test_the_allow_list_lets_the_listed_host_through(store: SqliteStore, hook: Receiver) -> None:
    policy = TargetPolicy(allow_http=True, allow_private=True, allow_hosts=("LOCALHOST",))
    sink = WebhookSink([SECRET], policy=policy)
    finish(store, sink, "operations/listed", hook.url(host="localhost"))
    assert drain(dispatcher(store, sink)) == 1
    delivery = hook.next()
    assert delivery.headers["host"] == f"localhost:{hook.port}"  # the name, not the address
    assert delivery.verify()


# ---- TLS: connect to the checked address, verify the certificate for the name ----------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _tls_receiver(ca: trustme.CA, name: str) -> Any:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return receiver(context)


def _trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def test_https_to_a_name_verifies_its_certificate_while_connecting_to_the_address(
    store: SqliteStore, ca: trustme.CA
) -> None:
    # The certificate names only "localhost": the request goes to 127.0.0.1 (the checked
    # address) and TLS still checks the name, so it verifies.
    with _tls_receiver(ca, "localhost") as tls:
        policy = TargetPolicy(allow_private=True)  # https only
        sink = WebhookSink([SECRET], policy=policy, verify=_trusting(ca))
        finish(store, sink, "operations/tls", tls.url(host="localhost"))
        assert drain(dispatcher(store, sink)) == 1
        delivery = tls.next()
        assert delivery.verify()["data"]["operation"]["name"] == "operations/tls"
        assert delivery.headers["host"] == f"localhost:{tls.port}"


def test_https_to_a_server_with_another_name_s_certificate_fails(
    store: SqliteStore, ca: trustme.CA
) -> None:
    with _tls_receiver(ca, "other.example") as tls:
        sink = WebhookSink([SECRET], policy=TargetPolicy(allow_private=True), verify=_trusting(ca))
        finish(store, sink, "operations/mitm", tls.url(host="localhost"))
        assert drain(dispatcher(store, sink)) == 0
        assert tls.all() == []
        (pending,) = store.outbox_pending(now=Clock()() + timedelta(days=1))
        assert "ConnectError" in (pending.last_error or "")


# ---- subscriptions: one row each, filtered in the transaction ---------------------------


def test_each_matching_subscription_gets_its_own_row(store: SqliteStore, hook: Receiver) -> None:
    subs = [
        Subscription("all", hook.url("/all")),
        Subscription("billing", hook.url("/billing"), filtering.parse('labels.team = "billing"')),
        Subscription("cancels", hook.url("/cancels"), None, frozenset({CANCEL})),
    ]
    sink = WebhookSink([SECRET], policy=LOOPBACK, subscriptions=subs)
    want = wanted_by([sink])
    store.apply(
        [
            make_event(Kind.CREATED, "operations/b", data={"labels": {"team": "billing"}}),
            make_event(Kind.CREATED, "operations/o", data={"labels": {"team": "ops"}}),
            make_event(Kind.SUCCEEDED, "operations/b"),
            make_event(Kind.SUCCEEDED, "operations/o"),
        ],
        notify=want,
    )
    rows = sorted((i.operation.name, i.notice.target) for i in store.outbox_pending())
    assert rows == [
        ("operations/b", "subscription:all"),
        ("operations/b", "subscription:billing"),
        ("operations/o", "subscription:all"),
    ]
    hook.statuses = [500]  # the first delivery fails: only that row is retried
    assert drain(dispatcher(store, sink)) == 2
    paths = sorted(d.path for d in hook.all())
    assert paths == ["/all", "/all", "/billing"]
    (left,) = store.outbox_pending(now=Clock()() + timedelta(days=1))
    assert left.attempts == 1


def test_a_subscription_removed_since_its_row_was_written_is_given_up(
    store: SqliteStore, hook: Receiver
) -> None:
    before = WebhookSink([SECRET], policy=LOOPBACK, subscriptions=[Subscription("x", hook.url())])
    store.apply([make_event(Kind.SUCCEEDED, "operations/gone")], notify=wanted_by([before]))
    after = WebhookSink([SECRET], policy=LOOPBACK)  # restarted with the subscription gone
    assert drain(dispatcher(store, after)) == 0
    (failed,) = store.failed_notifications()
    assert failed.attempts == 1 and "no subscription x" in (failed.last_error or "")
    assert hook.all() == []


# ---- end to end through a real server -------------------------------------------------


def webhook_config(tmp_path: Path, **kwargs: Any) -> Config:
    return Config(
        db=str(tmp_path / "t.db"),
        http_port=0,
        grpc_port=-1,
        webhook_secrets=(SECRET,),
        webhook_allow_http=True,
        webhook_allow_private=True,
        notify_retry_initial_seconds=0.01,
        notify_retry_max_seconds=0.02,
        **kwargs,
    )


def post(url: str, event: Any) -> httpx.Response:
    headers, body = to_binary(event)
    return httpx.post(f"{url}/v1/events", headers=headers, content=body)


def test_serve_delivers_a_signed_done_notice_for_posted_events(
    tmp_path: Path, hook: Receiver
) -> None:
    with running(webhook_config(tmp_path)) as server:
        name = "operations/e2e"
        hook.statuses = [500]  # fails once; the server's dispatcher retries on its own
        event = make_event(Kind.CREATED, name, data=created(hook.url(), "done"))
        assert post(server.http_url, event).status_code == 200
        assert post(server.http_url, make_event(Kind.SUCCEEDED, name)).status_code == 200
        first, second = hook.next(), hook.next()
    assert first.id == second.id
    payload = second.verify()
    assert payload["type"] == "tracker.notice.v1.done"
    assert payload["data"]["operation"]["name"] == name
    assert payload["data"]["operation"]["done"] is True


def test_cancel_operation_sends_a_cancel_notice(tmp_path: Path, hook: Receiver) -> None:
    with running(webhook_config(tmp_path)) as server:
        name = "operations/cancel-me"
        event = make_event(Kind.CREATED, name, data=created(hook.url(), "cancel"))
        assert post(server.http_url, event).status_code == 200
        answer = httpx.post(f"{server.http_url}/v1/{name}:cancel")
        assert answer.status_code == 200, answer.text
        payload = hook.next().verify()
    assert payload["type"] == "tracker.notice.v1.cancel"
    assert payload["data"]["notice"]["kind"] == "CANCEL"
    assert payload["data"]["notice"]["reason"] == "CANCEL_REQUESTED"
    assert payload["data"]["operation"]["name"] == name


def test_a_subscription_filter_selects_the_operations_it_receives(
    tmp_path: Path, hook: Receiver
) -> None:
    subscriptions = tmp_path / "subscriptions.toml"
    subscriptions.write_text(
        "[[subscription]]\n"
        'name = "billing"\n'
        f'url = "{hook.url("/billing")}"\n'
        """filter = 'labels.team = "billing" AND operation_type = "export"'\n"""
        'notices = ["done"]\n'
    )
    config = webhook_config(tmp_path, webhook_subscriptions=str(subscriptions))
    config.validate()
    with running(config) as server:
        result = ingest(
            server,
            [
                make_event(Kind.CREATED, "operations/ops", data=created_labels("ops")),
                make_event(Kind.CREATED, "operations/bill", data=created_labels("billing")),
                make_event(Kind.SUCCEEDED, "operations/ops"),
                make_event(Kind.SUCCEEDED, "operations/bill"),
            ],
        )
        assert result.notices == 1  # one row: the matching operation's done notice
        delivery = hook.next()
    payload = delivery.verify()
    assert delivery.path == "/billing"
    assert payload["data"]["operation"]["name"] == "operations/bill"
    assert payload["data"]["notice"]["kind"] == "DONE"
    assert hook.all() == []


def created_labels(team: str) -> events_pb2.Created:
    return events_pb2.Created(operation_type="export", labels={"team": team})


def test_webhooks_in_created_are_refused_when_no_webhook_sink_is_configured(
    tmp_path: Path, hook: Receiver
) -> None:
    config = Config(db=str(tmp_path / "t.db"), http_port=0, grpc_port=-1)
    with running(config) as server:
        event = make_event(Kind.CREATED, "operations/nohooks", data=created(hook.url()))
        answer = post(server.http_url, event)
        assert answer.status_code == 400
        status, reason, _ = google_error(answer)
        assert status == "INVALID_ARGUMENT" and reason == "WEBHOOKS_DISABLED"
        assert "--webhook-secret-file" in answer.json()["error"]["message"]
        plain = make_event(Kind.CREATED, "operations/plain")
        assert post(server.http_url, plain).status_code == 200
    assert hook.all() == []


def test_webhooks_refused_on_the_push_route_become_a_dead_letter(
    tmp_path: Path, hook: Receiver
) -> None:
    # The push route goes through the same check: poison, recorded and acknowledged.
    config = Config(db=str(tmp_path / "t.db"), http_port=0, grpc_port=-1)
    with running(config) as server:
        event = make_event(Kind.CREATED, "operations/nohooks", data=created(hook.url()))
        headers, body = to_binary(event)
        answer = httpx.post(f"{server.http_url}/v1/pubsub/push", json=envelope(headers, body))
        assert answer.status_code == 200, answer.text
        (letter,) = server.store.dead_letters()
        assert letter.reason == "webhooks_disabled"
        assert server.store.get("operations/nohooks") is None
    assert hook.all() == []


def test_a_webhook_gets_only_the_kinds_it_asked_for(store: SqliteStore, hook: Receiver) -> None:
    sink = WebhookSink([SECRET], policy=LOOPBACK)
    want = wanted_by([sink])
    store.apply(
        [make_event(Kind.CREATED, "operations/k", data=created(hook.url(), "cancel"))],
        notify=want,
    )
    store.apply([make_event(Kind.SUCCEEDED, "operations/k")], notify=want)
    assert store.outbox_pending() == []  # done: not asked for
    store.apply(
        [make_event(Kind.CREATED, "operations/k2", data=created(hook.url(), "cancel"))],
        notify=want,
    )
    store.cancel("operations/k2", notify=want)
    assert [i.notice.kind for i in store.outbox_pending()] == [CANCEL]


def test_pending_subscription_rows_follow_the_subscription_s_new_url(store: SqliteStore) -> None:
    with receiver() as old, receiver() as new:
        before = WebhookSink(
            [SECRET], policy=LOOPBACK, subscriptions=[Subscription("x", old.url())]
        )
        store.apply([make_event(Kind.SUCCEEDED, "operations/moved")], notify=wanted_by([before]))
        after = WebhookSink([SECRET], policy=LOOPBACK, subscriptions=[Subscription("x", new.url())])
        assert drain(dispatcher(store, after)) == 1
        assert new.next().verify()["data"]["operation"]["name"] == "operations/moved"
        assert old.all() == []


def test_proxies_from_the_environment_are_ignored(
    store: SqliteStore, hook: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    with receiver() as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.url("/"))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        sink = WebhookSink([SECRET], policy=LOOPBACK)
        finish(store, sink, "operations/direct", hook.url())
        assert drain(dispatcher(store, sink)) == 1
        assert hook.next().verify()
        assert proxy.all() == []


def test_the_receiver_example_in_the_docs_verifies_a_real_delivery(
    store: SqliteStore, hook: Receiver
) -> None:
    doc = (ROOT / "docs" / "webhooks.md").read_text()
    example = doc.split("## Verifying, in a receiver", 1)[1].split("```python", 1)[1]
    namespace: dict[str, Any] = {}
    exec(example.split("```", 1)[0].replace('"whsec_..."', repr(SECRET)), namespace)
    sink = WebhookSink([SECRET], policy=LOOPBACK)
    finish(store, sink, "operations/doc", hook.url())
    assert drain(dispatcher(store, sink)) == 1
    delivery = hook.next()
    assert namespace["receive"](delivery.body, delivery.headers)["type"] == "tracker.notice.v1.done"
    forged = dict(delivery.headers, **{"webhook-signature": "v1,AAAA"})
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        namespace["receive"](delivery.body, forged)
