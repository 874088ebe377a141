"""After-commit hooks: what runs after a commit, and the outbox only for durable sinks."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.helpers import make_event
from tracker import notices
from tracker.bindings import to_binary
from tracker.config import Config
from tracker.events import Kind
from tracker.hooks import Committed
from tracker.server import running
from tracker.stores.sqlite import SqliteStore

OP = "operations/hooked"


def test_hooks_see_each_commit_and_a_failing_hook_changes_no_answer(tmp_path: Path) -> None:
    seen: list[Committed] = []
    config = Config(db=str(tmp_path / "t.db"), http_port=0, grpc_port=-1)
    with running(config) as server:

        def broken(committed: Committed) -> None:
            raise RuntimeError("a notifier that is down")

        server.tracker.add_hook(broken)
        server.tracker.add_hook(seen.append)
        headers, body = to_binary(make_event(Kind.SUCCEEDED, OP))
        answer = httpx.post(f"{server.http_url}/v1/events", headers=headers, content=body)
        assert answer.status_code == 200 and answer.json()["results"][0]["outcome"] == "applied"
        cancel = httpx.post(f"{server.http_url}/v1/{OP}:cancel", json={})
        assert cancel.status_code == 200
    first, second = seen
    assert (first.route, list(first.outcomes), list(first.done)) == ("http", ["applied"], [OP])
    assert first.changed[OP].done
    assert (second.route, list(second.done)) == ("cancel", [])  # already done


def test_without_a_durable_sink_no_outbox_row_is_written_and_waiters_still_wake(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.db"
    config = Config(db=str(db), http_port=0, grpc_port=-1)
    with running(config) as server:
        # Only the cancel cascade takes notices: done-notices are not written.
        assert notices.DONE not in server.tracker.notify.kinds
        assert not server.tracker.notify.webhooks
        base = server.http_url
        headers, body = to_binary(make_event(Kind.CREATED, OP))
        httpx.post(f"{base}/v1/events", headers=headers, content=body)
        result: list[httpx.Response] = []
        waiter = threading.Thread(
            target=lambda: result.append(
                httpx.post(f"{base}/v1/{OP}:wait", json={"timeout": "30s"}, timeout=40)
            )
        )
        waiter.start()
        deadline = time.monotonic() + 30
        while not server.tracker.hub.watching(OP):  # the waiter has subscribed
            assert time.monotonic() < deadline
            time.sleep(0.01)
        headers, body = to_binary(make_event(Kind.SUCCEEDED, OP))
        # The waiter's answer comes from the after-commit hook, not from an outbox row.
        assert httpx.post(f"{base}/v1/events", headers=headers, content=body).status_code == 200
        waiter.join(40)
        assert result and result[0].json().get("done") is True
    store = SqliteStore(db)
    assert store.count("outbox") == 0
    store.close()
