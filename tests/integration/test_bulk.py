"""Bulk cancel and delete by filter (issue #12 item 4), against real servers.

A bulk action is an operation of its own; these tests follow it with GetOperation, :watch
and WaitOperation like any other, and read its checkpoint (the plan and cursor).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.rpc import code_pb2

from tests.helpers import ROOT, google_error, make_event
from tests.tokens import READER_TOKEN, TOKEN
from tracker.client import TrackerClient, metadata
from tracker.events import Kind
from tracker.server import Server


def make_ops(url: str, n: int, done: int = 0) -> str:
    """n operations labelled with a fresh batch id (the first `done` of them succeeded);
    returns the filter that selects them."""
    batch = uuid.uuid4().hex[:10]
    events = [
        make_event(Kind.CREATED, f"operations/bk-{batch}-{i:04d}", data={"labels": {"b": batch}})
        for i in range(n)
    ]
    events += [make_event(Kind.SUCCEEDED, f"operations/bk-{batch}-{i:04d}") for i in range(done)]
    with TrackerClient(url) as client:
        for i in range(0, len(events), 100):
            client.publish(events[i : i + 100], mode="batch")
    return f'labels.b = "{batch}"'


def states(url: str, flt: str) -> dict[str, str]:
    with TrackerClient(url) as client:
        return {o.name: json.dumps(o.metadata.value.hex()) + str(o.done) for o in client.list(flt)}


def bulk(url: str, verb: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/operations:{verb}", json=body, timeout=30)


def count(url: str, flt: str) -> int:
    with TrackerClient(url) as client:
        return client.count(flt)


def plan_of(url: str, name: str) -> dict[str, Any]:
    with TrackerClient(url) as client:
        data = client.get_checkpoint(name)
    assert data is not None
    return dict(json.loads(data))


def test_a_dry_run_counts_and_changes_nothing(server: Server) -> None:
    flt = make_ops(server.http_url, 12, done=5)
    before = states(server.http_url, flt)
    cancel = bulk(server.http_url, "batchCancel", filter=flt, dryRun=True)
    delete = bulk(server.http_url, "batchDelete", filter=flt, dryRun=True)
    assert cancel.json() == {"matched": 7}  # a cancel takes the running ones only
    assert delete.json() == {"matched": 12}
    assert states(server.http_url, flt) == before
    with TrackerClient(server.http_url) as client:
        assert not list(client.list('operation_type = "tracker.bulk" AND ' + flt))


def test_bulk_cancel_at_a_low_rate_cancels_all_and_reports_progress(server: Server) -> None:
    flt = make_ops(server.http_url, 200, done=20)
    answer = bulk(server.http_url, "batchCancel", filter=flt, ratePerSecond=50)
    assert answer.status_code == 200, answer.text
    name = answer.json()["name"]
    assert name.startswith("operations/tracker-bulk/") and not answer.json().get("done")
    with TrackerClient(server.http_url) as client:
        percents = []
        for operation in client.watch(name, timeout=120):
            meta = metadata(operation)
            assert meta is not None and meta.operation_type == "tracker.bulk"
            percents.append(meta.percent)
        final = client.wait(name, timeout=30)
        got = client.get(name)
    assert final.done and final.HasField("response") and got == final
    assert any(0 < p < 100 for p in percents), percents  # progress was visible midway
    assert percents == sorted(percents)
    summary = json.loads(json.dumps(_struct(final)))
    assert summary == {
        "action": "cancel",
        "filter": flt,
        "matched": 180.0,
        "acted": 180.0,
        "skipped": 0.0,
    }
    assert count(server.http_url, flt + " AND result = cancelled") == 180
    assert count(server.http_url, flt + " AND result = succeeded") == 20


def _struct(operation: Any) -> dict[str, Any]:
    from google.protobuf import json_format, struct_pb2

    value = struct_pb2.Struct()
    assert operation.response.Unpack(value)
    return dict(json_format.MessageToDict(value))


def test_bulk_delete_removes_every_match(server: Server) -> None:
    flt = make_ops(server.http_url, 30, done=10)
    first = sorted(states(server.http_url, flt))[0]
    answer = bulk(server.http_url, "batchDelete", filter=flt)
    with TrackerClient(server.http_url) as client:
        final = client.wait(answer.json()["name"], timeout=60)
    assert final.done and _struct(final)["acted"] == 30
    assert count(server.http_url, flt) == 0
    gone = httpx.get(f"{server.http_url}/v1/{first}")
    assert gone.status_code == 404


def test_cancelling_the_bulk_operation_stops_it(server: Server) -> None:
    flt = make_ops(server.http_url, 100)
    name = bulk(server.http_url, "batchCancel", filter=flt, ratePerSecond=5).json()["name"]
    with TrackerClient(server.http_url) as client:
        for operation in client.watch(name, timeout=60):
            meta = metadata(operation)
            if meta is not None and meta.percent > 0:
                break
        client.cancel(name)
        final = client.wait(name, timeout=30)
    assert final.done and final.error.code == code_pb2.CANCELLED
    acted = plan_of(server.http_url, name)["acted"]
    cancelled = count(server.http_url, flt + " AND result = cancelled")
    assert 0 < cancelled == acted < 100
    # Nothing moves after the cancel: the runner's next step saw it and stopped.
    assert plan_of(server.http_url, name)["acted"] == acted


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "filter is required"),
        ({"filter": "  "}, "filter is required"),
        ({"filter": "colour = red"}, "unknown field 'colour'"),
        ({"filter": "done = true", "ratePerSecond": 0}, "ratePerSecond must be more than 0"),
        ({"filter": "done = true", "ratePerSecond": 5000}, "at most 1000"),
        ({"filter": "done = true", "ratePerSecond": "fast"}, "ratePerSecond must be a number"),
        ({"filter": "done = true", "dryRun": "yes"}, "dryRun must be true or false"),
        ({"filter": "done = true", "dry_run": True}, "unknown field 'dry_run'"),
    ],
)
def test_bad_bulk_requests_are_a_400(server: Server, body: dict[str, Any], message: str) -> None:
    for verb in ("batchCancel", "batchDelete"):
        answer = bulk(server.http_url, verb, **body)
        assert answer.status_code == 400, answer.text
        assert google_error(answer)[0] == "INVALID_ARGUMENT"
        assert message in answer.json()["error"]["message"]
    wrong = httpx.get(f"{server.http_url}/v1/operations:batchCancel")
    assert wrong.status_code == 405


def test_bulk_actions_need_operations_write(secured_server: Server) -> None:
    url = f"{secured_server.http_url}/v1/operations:batchDelete"
    body = {"filter": "done = true", "dryRun": True}
    reader = httpx.post(url, json=body, headers={"authorization": f"Bearer {READER_TOKEN}"})
    assert reader.status_code == 403 and google_error(reader)[0] == "PERMISSION_DENIED"
    writer = httpx.post(url, json=body, headers={"authorization": f"Bearer {TOKEN}"})
    assert writer.status_code == 200 and writer.json() == {"matched": 0}


# ---- a real process killed mid-run -------------------------------------------------------


def start(db: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tracker.cli",
            "serve",
            "--db",
            str(db),
            "--http-port",
            "0",
            "--grpc-port",
            "-1",
        ],
        cwd=ROOT,
        env=dict(os.environ),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        match = re.search(r"HTTP on (http://\S+),", line)
        if match:
            return proc, match.group(1)
    raise AssertionError(f"tracker serve exited with {proc.wait()}")


def stop(proc: subprocess.Popen[str], sig: int) -> None:
    proc.send_signal(sig)
    proc.wait(30)
    assert proc.stderr is not None
    proc.stderr.close()


def test_a_bulk_cancel_killed_midway_resumes_after_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "bulk.db"
    proc, url = start(db)
    try:
        flt = make_ops(url, 200)
        name = bulk(url, "batchCancel", filter=flt, ratePerSecond=20).json()["name"]
        with TrackerClient(url) as client:
            for operation in client.watch(name, timeout=120):
                meta = metadata(operation)
                if meta is not None and 20 <= meta.percent < 100:
                    break
    finally:
        stop(proc, signal.SIGKILL)  # mid-run: no shutdown
    before = plan_of_file(db, name)
    assert 0 < before["acted"] < 200

    proc, url = start(db)
    try:
        with TrackerClient(url) as client:
            final = client.wait(name, timeout=120)
            cancelled = client.count(flt + " AND result = cancelled")
            running_left = client.count(flt + " AND done = false")
    finally:
        stop(proc, signal.SIGTERM)
    assert final.done and final.HasField("response"), final
    summary = _struct(final)
    # Resumed from the cursor with its counts: every operation acted on exactly once.
    assert summary["matched"] == summary["acted"] == 200 and summary["skipped"] == 0
    assert cancelled == 200 and running_left == 0


def plan_of_file(db: Path, name: str) -> dict[str, Any]:
    from tracker.stores.sqlite import SqliteStore

    store = SqliteStore(db)
    try:
        data = store.checkpoint(name)
    finally:
        store.close()
    assert data is not None
    return dict(json.loads(data))


# ---- SDK and CLI -----------------------------------------------------------------------


def test_sdk_bulk_and_dry_run(server: Server) -> None:
    import asyncio

    from tracker.client import AsyncTrackerClient

    flt = make_ops(server.http_url, 8, done=3)
    with TrackerClient(server.http_url) as client:
        assert client.bulk_dry_run("cancel", flt) == 5
        operation = client.bulk("cancel", flt, rate=100)
        assert operation.name.startswith("operations/tracker-bulk/")
        assert _struct(client.wait(operation.name, timeout=60))["acted"] == 5

    async def run() -> tuple[int, float]:
        async with AsyncTrackerClient(server.http_url) as client:
            matched = await client.bulk_dry_run("delete", flt)
            started = await client.bulk("delete", flt)
            final = await client.wait(started.name, timeout=60)
            return matched, _struct(final)["acted"]

    assert asyncio.run(run()) == (8, 8)
    assert count(server.http_url, flt) == 0


def test_cli_cancel_and_delete_by_filter(server: Server) -> None:
    from tests.cli_kit import invoke

    flt = make_ops(server.http_url, 6, done=2)
    dry = invoke(["cancel", "--filter", flt, "--dry-run"], server.http_url)
    assert dry.exit_code == 0 and dry.stdout.strip() == "4 would be cancelled"
    assert count(server.http_url, flt + " AND done = false") == 4
    cancelled = invoke(["cancel", "--filter", flt, "--wait", "--rate", "50"], server.http_url)
    assert cancelled.exit_code == 0, cancelled.output
    assert "operations/tracker-bulk/" in cancelled.stdout and "succeeded" in cancelled.stdout
    assert count(server.http_url, flt + " AND result = cancelled") == 4
    as_json = invoke(["delete", "--filter", flt, "--dry-run", "--json"], server.http_url)
    assert json.loads(as_json.stdout) == {"matched": 6}
    started = invoke(["delete", "--filter", flt, "--json"], server.http_url)
    name = json.loads(started.stdout)["name"]
    with TrackerClient(server.http_url) as client:
        assert _struct(client.wait(name, timeout=60))["acted"] == 6
    assert count(server.http_url, flt) == 0


@pytest.mark.parametrize(
    "args",
    [
        ["cancel"],
        ["delete", "operations/x", "--filter", "done = true"],
        ["cancel", "operations/x", "--dry-run"],
        ["delete", "operations/x", "--rate", "5"],
        ["cancel", "--filter", "colour = red"],
    ],
)
def test_cli_bulk_usage_errors_are_one_line(server: Server, args: list[str]) -> None:
    from tests.cli_kit import assert_one_error_line, invoke

    result = invoke(args, server.http_url)
    assert result.exit_code in (1, 2), result.output
    assert_one_error_line(result.output)
