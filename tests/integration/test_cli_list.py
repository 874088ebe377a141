"""`tracker list`: --order-by, --limit, --output json, --count and --watch, on a real server."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.cli_kit import TRACKER, assert_one_error_line, clean_env, invoke
from tracker.client import TrackerClient
from tracker.server import Server


@pytest.fixture
def team(server: Server) -> Iterator[str]:
    """Four operations labelled with a fresh team: 0 and 2 succeeded, 1 and 3 running."""
    team = uuid.uuid4().hex[:8]
    with TrackerClient(server.http_url) as sdk:
        for i in range(4):
            sdk.created(f"operations/cl-{team}-{i}", labels={"team": team})
            sdk.progress(f"operations/cl-{team}-{i}", 10, "working")
        for i in (2, 0):  # 2 ends before 0
            sdk.succeeded(f"operations/cl-{team}-{i}")
    yield team


def names(output: str) -> list[str]:
    return [line.split()[0] for line in output.strip().splitlines()[1:]]


def test_order_by_limit_and_json(server: Server, team: str) -> None:
    flt = f'labels.team = "{team}"'
    ordered = invoke(["list", "--filter", flt, "--order-by", "end_time desc"], server.http_url)
    assert ordered.exit_code == 0, ordered.output
    assert [n[-1] for n in names(ordered.output)] == ["0", "2", "3", "1"]
    limited = invoke(
        ["list", "--filter", flt, "--order-by", "name desc", "--limit", "3", "-o", "json"],
        server.http_url,
    )
    assert [o["name"][-1] for o in json.loads(limited.stdout)] == ["3", "2", "1"]
    alias = invoke(["list", "--filter", flt, "--limit", "1", "--json"], server.http_url)
    assert [o["name"][-1] for o in json.loads(alias.stdout)] == ["0"]
    failed = invoke(["list", "--filter", flt + " AND result = succeeded"], server.http_url)
    assert [n[-1] for n in names(failed.output)] == ["0", "2"]


def test_count_prints_the_number(server: Server, team: str) -> None:
    result = invoke(
        ["list", "--filter", f'labels.team = "{team}" AND done = false', "--count"], server.http_url
    )
    assert result.exit_code == 0 and result.stdout.strip() == "2"


@pytest.mark.parametrize(
    "args",
    [
        ["--order-by", "colour"],
        ["--watch", "--count"],
        ["--watch", "--output", "json"],
        ["--filter", "result = maybe"],
    ],
)
def test_bad_list_options_are_one_line(server: Server, args: list[str]) -> None:
    result = invoke(["list", *args], server.http_url)
    assert result.exit_code in (1, 2)
    assert_one_error_line(result.output)


def test_watch_redraws_when_an_operation_changes(server: Server, team: str) -> None:
    """Into a pipe, --watch prints the table again each time it changed."""
    flt = f'labels.team = "{team}" AND done = false'
    args = [
        TRACKER,
        "list",
        "--filter",
        flt,
        "--watch",
        "--interval",
        "0.1",
        "--watch-timeout",
        "60",
        "--url",
        server.http_url,
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=clean_env())
    assert proc.stdout is not None
    try:
        first = []
        for line in proc.stdout:
            first.append(line)
            if line.startswith(f"operations/cl-{team}-3"):
                break
        assert "10%" in first[-1]
        with TrackerClient(server.http_url) as sdk:
            sdk.progress(f"operations/cl-{team}-3", 90, "nearly")
        changed = ""
        for line in proc.stdout:
            if line.startswith(f"operations/cl-{team}-3") and "90%" in line:
                changed = line
                break
        assert "nearly" in changed
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
