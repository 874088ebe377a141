"""The `tracker` command: in-process through click's CliRunner, and as real subprocesses.

Client commands run against a real tracker (`tracker.server.running`); `tracker serve`
runs as a child process on free ports and is stopped with SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import httpx
import pytest
from google.rpc import code_pb2

from tests.cli_kit import TRACKER, assert_one_error_line, clean_env, invoke
from tests.helpers import ROOT
from tracker.client import TrackerClient, metadata
from tracker.config import SETTINGS, Config
from tracker.server import Server, running

LINE_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running(Config(db=":memory:", http_port=0, grpc_port=-1, max_wait_seconds=60)) as srv:
        yield srv


@pytest.fixture
def sdk(server: Server) -> Iterator[TrackerClient]:
    with TrackerClient(server.http_url) as client:
        yield client


@pytest.fixture
def name() -> str:
    return f"operations/cli-{uuid.uuid4().hex[:12]}"


class Lines:
    """Lines of a child's stream, read by a thread, so a test can wait with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def until(self, pattern: str) -> re.Match[str]:
        """The first line from now on matching `pattern` (fails on EOF or timeout)."""
        while True:
            try:
                line = self.queue.get(timeout=LINE_TIMEOUT)
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r} within {LINE_TIMEOUT}s: {self.seen}")
            if line is None:
                pytest.fail(f"stream ended before a line matching {pattern!r}: {self.seen}")
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def rest(self) -> list[str]:
        self.thread.join(LINE_TIMEOUT)
        while (line := self.queue.get_nowait()) is not None:
            self.seen.append(line)
        return self.seen


@contextlib.contextmanager
def child(args: Sequence[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """A real `tracker` process with piped output; killed if still running at the end."""
    with subprocess.Popen(
        [TRACKER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@contextlib.contextmanager
def refused_url() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


# ---- serve -------------------------------------------------------------------------------


def test_serve_help_shows_every_setting_with_its_env_var() -> None:
    result = invoke(["serve", "--help"])

    assert result.exit_code == 0
    help_text = " ".join(result.output.split())
    for setting in SETTINGS:
        assert setting.flag in help_text
        assert f"env var: {setting.envvar}" in help_text
        first_words = " ".join(setting.help.split()[:3])
        assert first_words in help_text


@pytest.mark.parametrize(
    ("args", "env", "mentions"),
    [
        (["--http-port", "99999"], {}, "--http-port"),
        (["--grpc-port=-7"], {}, "--grpc-port"),
        (["--name-pattern", "("], {}, "--name-pattern"),
        (["--max-event-bytes", "10"], {}, "--max-event-bytes"),
        # Above 2 MiB a state could outgrow a Spanner cell (tracker/events.py).
        (["--max-event-bytes", str(2 * 1024 * 1024 + 1)], {}, "--max-event-bytes"),
        (["--max-wait-seconds", "0"], {}, "--max-wait-seconds"),
        (["--log-level", "loud"], {}, "--log-level"),
        (["--db", "/no/such/folder/tracker.db"], {}, "--db"),
        ([], {"TRACKER_HTTP_PORT": "99999"}, "--http-port"),
        ([], {"TRACKER_NAME_PATTERN": "[a-"}, "--name-pattern"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(
    args: list[str], env: dict[str, str], mentions: str
) -> None:
    result = invoke(["serve", *args], env=env)

    assert result.exit_code == 2
    assert mentions in assert_one_error_line(result.output)


def test_a_bad_setting_in_a_real_process_is_one_line_on_stderr() -> None:
    proc = subprocess.run(
        [TRACKER, "serve", "--name-pattern", "("],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )

    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "--name-pattern" in assert_one_error_line(proc.stderr)


def test_a_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [TRACKER, "serve", "--db", ":memory:", "--http-port", str(port), "--grpc-port=-1"],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )

    assert proc.returncode == 2
    line = assert_one_error_line(proc.stderr)
    assert f"127.0.0.1:{port}" in line and "in use" in line


def test_a_grpc_port_in_use_ends_with_one_error_line_and_exit_2() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [TRACKER, "serve", "--db", ":memory:", "--http-port", "0", "--grpc-port", str(port)],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )

    assert proc.returncode == 2
    # gRPC's C core logs its own line first; ours is the last, and no traceback.
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(
        f"tracker: error: cannot listen on gRPC 127.0.0.1:{port}"
    )


def test_a_store_that_cannot_open_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [TRACKER, "serve", "--db", str(tmp_path), "--http-port", "0", "--grpc-port=-1"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )

    assert proc.returncode == 2
    assert "SQLite" in assert_one_error_line(proc.stderr)


def test_serve_runs_answers_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    serve = ["serve", "--http-port", "0", "--grpc-port", "0"]
    # The store setting comes from the environment.
    with child(serve, clean_env(TRACKER_DB=str(tmp_path / "t.db"))) as proc:
        assert proc.stderr is not None
        stderr = Lines(proc.stderr)
        started = stderr.until(r"INFO tracker: (tracker .*HTTP on (http://127\.0\.0\.1:\d+).*)$")
        url = started.group(2)
        # The start-up line docs/cli.md shows is the one printed (addresses and file aside).
        shown = re.search(
            r"INFO tracker: (tracker .*)$", (ROOT / "docs" / "cli.md").read_text(), re.M
        )
        assert shown is not None
        ports = re.compile(r"127\.0\.0\.1:\d+")
        printed = ports.sub("ADDR", started.group(1)).replace(str(tmp_path / "t.db"), "tracker.db")
        assert printed == ports.sub("ADDR", shown.group(1))

        health = httpx.get(f"{url}/healthz", timeout=10)
        published = subprocess.run(
            [TRACKER, "publish", "progress", "operations/sub", "--percent", "12"],
            capture_output=True,
            text=True,
            env=clean_env(TRACKER_URL=url),
            timeout=60,
        )
        got = subprocess.run(
            [TRACKER, "get", "operations/sub", "--json"],
            capture_output=True,
            text=True,
            env=clean_env(TRACKER_URL=url),
            timeout=60,
        )

        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert published.returncode == 0 and published.stdout.startswith("applied: progress")
        assert got.returncode == 0 and json.loads(got.stdout)["metadata"]["percent"] == 12
        assert (tmp_path / "t.db").exists()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "Traceback" not in "\n".join(stderr.rest())


# ---- publish -----------------------------------------------------------------------------


def test_publish_created_then_get_shows_it(server: Server, name: str) -> None:
    published = invoke(
        ["publish", "created", name, "--type", "export", "--label", "team=a", "--label", "x=1"],
        server.http_url,
    )
    shown = invoke(["get", name], server.http_url)
    as_json = invoke(["get", name, "--json"], server.http_url)

    assert published.exit_code == 0, published.output
    assert published.output.startswith("applied: created ") and name in published.output
    assert shown.exit_code == 0
    assert "type:      export" in shown.output and "labels:    team=a, x=1" in shown.output
    op = json.loads(as_json.stdout)
    assert op["name"] == name and op["metadata"]["labels"] == {"team": "a", "x": "1"}


@pytest.mark.parametrize("extra", [[], ["--mode", "structured"], ["--protobuf"]])
def test_publish_progress_in_each_mode(
    server: Server, sdk: TrackerClient, name: str, extra: list[str]
) -> None:
    result = invoke(
        ["publish", "progress", name, "--percent", "33", "-m", "a third", "--seq", "5", *extra],
        server.http_url,
    )

    assert result.exit_code == 0, result.output
    m = metadata(sdk.get(name))
    assert m is not None and (m.percent, m.message, m.last_sequence) == (33, "a third", 5)


def test_publish_with_the_same_id_twice_is_a_duplicate(server: Server, name: str) -> None:
    args = ["publish", "heartbeat", name, "--id", "evt-1", "--source", "me"]

    first = invoke(args, server.http_url)
    second = invoke(args, server.http_url)

    assert first.exit_code == 0 and first.output.startswith("applied: heartbeat evt-1")
    assert second.exit_code == 0 and second.output.startswith("duplicate: heartbeat evt-1")


def test_publish_data_json_and_response(server: Server, sdk: TrackerClient, name: str) -> None:
    created = invoke(
        ["publish", "created", name, "--data", '{"operationType": "t", "parent": "p"}'],
        server.http_url,
    )
    done = invoke(["publish", "succeeded", name, "--response", '{"rows": 3}'], server.http_url)

    assert created.exit_code == 0 and done.exit_code == 0
    assert "now done" in done.output
    op = sdk.get(name)
    assert op.done and op.response.type_url.endswith("google.protobuf.Struct")


def test_publish_failed_takes_a_code_name(server: Server, sdk: TrackerClient, name: str) -> None:
    result = invoke(
        ["publish", "failed", name, "--code", "not_found", "-m", "gone"], server.http_url
    )

    assert result.exit_code == 0, result.output
    op = sdk.get(name)
    assert (op.error.code, op.error.message) == (code_pb2.NOT_FOUND, "gone")


@pytest.mark.parametrize(
    "args",
    [
        ["publish", "failed", "operations/x"],  # no --code
        ["publish", "failed", "operations/x", "--code", "OK"],
        ["publish", "progress", "operations/x", "--percent", "101"],
        ["publish", "progress", "operations/x", "--code", "5"],  # option of another kind
        ["publish", "created", "operations/x", "--label", "novalue"],
        ["publish", "created", "operations/x", "--data", "{not json"],
        ["publish", "created", "operations/x", "--data", '{"labels": 3}'],
        ["publish", "exploded", "operations/x"],
    ],
)
def test_publish_usage_errors_exit_2(server: Server, args: list[str]) -> None:
    result = invoke(args, server.http_url)

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_publish_rejected_by_the_tracker_exits_1(server: Server) -> None:
    result = invoke(["publish", "progress", "no-slash-name", "--percent", "1"], server.http_url)

    assert result.exit_code == 1
    assert "does not match" in assert_one_error_line(result.output)


# ---- get, list, cancel, delete -------------------------------------------------------------


def test_get_of_a_missing_operation_exits_1(server: Server) -> None:
    result = invoke(["get", "operations/never-was"], server.http_url)

    assert result.exit_code == 1
    assert "not found" in assert_one_error_line(result.output)


def test_list_shows_a_table_and_json_over_pages(server: Server, sdk: TrackerClient) -> None:
    team = uuid.uuid4().hex[:8]
    names = [f"operations/ls-{team}-{i}" for i in range(5)]
    for i, n in enumerate(names):
        sdk.created(n, operation_type="copy", labels={"team": team})
        sdk.progress(n, i * 10, f"step {i}")
    flt = f'labels.team = "{team}"'

    table = invoke(["list", "--filter", flt, "--page-size", "2"], server.http_url)
    as_json = invoke(["list", "--filter", flt, "--page-size", "2", "--json"], server.http_url)

    assert table.exit_code == 0, table.output
    header, *rows = table.output.strip().splitlines()
    assert header.split() == ["NAME", "DONE", "PERCENT", "MESSAGE", "TYPE", "LABELS"]
    assert [r.split()[0] for r in rows] == names
    assert rows[3].split() == [names[3], "no", "30%", "step", "3", "copy", f"team={team}"]
    assert [op["name"] for op in json.loads(as_json.stdout)] == names


def test_list_with_a_bad_filter_exits_1(server: Server) -> None:
    result = invoke(["list", "--filter", "colour = = red"], server.http_url)

    assert result.exit_code == 1
    assert_one_error_line(result.output)


def test_cancel_and_delete(server: Server, sdk: TrackerClient, name: str) -> None:
    sdk.created(name)

    cancelled = invoke(["cancel", name], server.http_url)
    shown = invoke(["get", name], server.http_url)
    deleted = invoke(["delete", name], server.http_url)
    again = invoke(["delete", name], server.http_url)
    cancel_missing = invoke(["cancel", name], server.http_url)

    assert cancelled.exit_code == 0 and cancelled.output == f"cancelled {name}\n"
    assert "done:      yes, cancelled: CANCELLED (1)" in shown.output
    assert deleted.exit_code == 0 and deleted.output == f"deleted {name}\n"
    assert again.exit_code == 1 and cancel_missing.exit_code == 1


def test_connection_refused_is_one_line_and_exit_2() -> None:
    with refused_url() as url:
        for args in (["get", "operations/x"], ["list"], ["wait", "operations/x"]):
            result = invoke(args, env={"TRACKER_URL": url})  # the URL from the environment

            assert result.exit_code == 2, result.output
            line = assert_one_error_line(result.output)
            assert url in line and "cannot connect" in line


# ---- wait ----------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["--no-progress"]])
def test_wait_exits_0_when_the_operation_succeeded(
    server: Server, sdk: TrackerClient, name: str, extra: list[str]
) -> None:
    sdk.progress(name, 50)
    sdk.succeeded(name, {"n": 1})

    result = invoke(["wait", name, *extra], server.http_url)

    assert result.exit_code == 0, result.output
    assert "done:      yes, succeeded" in result.stdout
    assert "response:  " in result.stdout


@pytest.mark.parametrize("extra", [[], ["--no-progress"]])
def test_wait_exits_1_with_the_code_when_the_operation_failed(
    server: Server, sdk: TrackerClient, name: str, extra: list[str]
) -> None:
    sdk.progress(name, 20, "copying")
    sdk.failed(name, code_pb2.PERMISSION_DENIED, "no access to bucket")

    result = invoke(["wait", name, *extra], server.http_url)

    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"tracker: error: {name} failed: PERMISSION_DENIED (7): no access to bucket"
    )
    if not extra:  # the progress view showed how it ended
        assert "PERMISSION_DENIED" in result.stderr.splitlines()[0]


def test_wait_exits_1_when_the_operation_was_cancelled(
    server: Server, sdk: TrackerClient, name: str
) -> None:
    sdk.created(name)
    sdk.cancel(name)

    result = invoke(["wait", name, "--json"], server.http_url)

    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == code_pb2.CANCELLED
    assert "cancelled: CANCELLED (1)" in result.stderr


@pytest.mark.parametrize("extra", [[], ["--no-progress"]])
def test_wait_exits_3_on_timeout(
    server: Server, sdk: TrackerClient, name: str, extra: list[str]
) -> None:
    sdk.progress(name, 40, "slow")

    result = invoke(["wait", name, "--timeout", "0.3", *extra], server.http_url)

    assert result.exit_code == 3
    assert "done:      no" in result.stdout and "percent:   40%" in result.stdout
    assert result.stderr.splitlines()[-1].startswith("tracker: error: timed out after 0.3s")


def test_wait_of_a_missing_operation_exits_1(server: Server) -> None:
    result = invoke(["wait", "operations/nope"], server.http_url)

    assert result.exit_code == 1
    assert "not found" in assert_one_error_line(result.output)


def test_wait_shows_progress_as_events_arrive(
    server: Server, sdk: TrackerClient, name: str
) -> None:
    """A real `tracker wait` process: each event is published only after the previous
    state was printed, so every line proves the display moved on that event."""
    sdk.created(name, operation_type="render")
    with child(["wait", name], clean_env(TRACKER_URL=server.http_url)) as proc:
        assert proc.stderr is not None and proc.stdout is not None
        progress = Lines(proc.stderr)
        progress.until(rf"^{name}:\s+0\.0%$")
        sdk.progress(name, 40, "frames 1-40")
        progress.until(rf"^{name}:\s+40\.0% frames 1-40$")
        sdk.progress(name, 90, "encoding")
        progress.until(rf"^{name}:\s+90\.0% encoding$")
        sdk.succeeded(name)
        progress.until(rf"^{name}:\s+100\.0% succeeded$")

        assert proc.wait(timeout=30) == 0
        assert "done:      yes, succeeded" in proc.stdout.read()


def test_wait_draws_a_bar_on_a_terminal(server: Server, sdk: TrackerClient, name: str) -> None:
    sdk.progress(name, 60, "most")
    sdk.failed(name, code_pb2.ABORTED, "conflict")

    proc = subprocess.run(
        [TRACKER, "wait", name],
        capture_output=True,
        text=True,
        env=clean_env(TRACKER_URL=server.http_url, TTY_COMPATIBLE="1", TTY_INTERACTIVE="1"),
        timeout=60,
    )

    assert proc.returncode == 1
    assert "━" in proc.stderr and "60%" in proc.stderr and "ABORTED" in proc.stderr


# ---- checkpoint ----------------------------------------------------------------------------


def test_checkpoint_round_trips_bytes(server: Server, name: str, tmp_path: Path) -> None:
    blob = os.urandom(2048)
    source = tmp_path / "in.bin"
    source.write_bytes(blob)
    target = tmp_path / "out.bin"

    none_yet = invoke(["checkpoint", name], server.http_url)
    published = invoke(["publish", "checkpoint", name, "--file", str(source)], server.http_url)
    written = invoke(["checkpoint", name, "-o", str(target)], server.http_url)

    assert published.exit_code == 0, published.output
    assert none_yet.exit_code == 1
    assert written.exit_code == 0, written.output
    assert target.read_bytes() == blob


def test_checkpoint_of_an_operation_without_one_exits_1(
    server: Server, sdk: TrackerClient, name: str
) -> None:
    sdk.created(name)

    result = invoke(["checkpoint", name], server.http_url)

    assert result.exit_code == 1
    assert "no checkpoint" in assert_one_error_line(result.output)


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--store", "spanner", "--spanner-database", "projects/p/instances/i/databases/d"],
        ["serve", "--db", ":memory:", "--done-topic", "projects/p/topics/t"],
        ["serve", "--db", ":memory:", "--subscription", "projects/p/subscriptions/s"],
        [
            "schema",
            "apply",
            "--store",
            "spanner",
            "--spanner-database",
            "projects/p/instances/i/databases/d",
        ],
    ],
    ids=["spanner", "done-topic", "subscription", "schema-apply"],
)
def test_missing_google_credentials_is_one_line(args: list[str], tmp_path: Path) -> None:
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}
    # A credentials file that does not exist fails at once, before any metadata-server
    # probe (no traffic beyond loopback); NO_GCE_CHECK turns that probe off as well.
    env.update(GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "none.json"), NO_GCE_CHECK="True")
    result = subprocess.run(
        [sys.executable, "-m", "tracker.cli", *args, "--http-port", "0", "--grpc-port", "-1"]
        if args[0] == "serve"
        else [sys.executable, "-m", "tracker.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("tracker: error:")]
    assert "credentials" in line


def test_get_shows_the_attempt_and_the_children(server: Server, name: str) -> None:
    # A restarted worker (attempt 2) and a child counted in its parent are what an
    # operator looks for first in `tracker get`.
    ingest_json(server, name, "created", {"operationType": "export"}, attempt=1)
    ingest_json(server, name, "progress", {"percent": 5}, attempt=2)
    child = f"{name}/part-1"
    ingest_json(server, child, "created", {"parent": name})
    ingest_json(server, child, "failed", {"error": {"code": 13, "message": "boom"}})
    shown = invoke(["get", name], server.http_url)
    assert shown.exit_code == 0, shown.output
    assert "attempt:   2 (restarted)" in shown.output
    assert "children:  1/1 ended: 0 succeeded, 1 failed, 0 cancelled" in shown.output


def ingest_json(
    server: Server, name: str, kind: str, data: dict[str, object], *, attempt: int | None = None
) -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-source": "cli-test",
        "ce-type": f"tracker.operation.v1.{kind}",
        "ce-id": uuid.uuid4().hex,
        "ce-subject": name,
    }
    if attempt is not None:
        headers["ce-attempt"] = str(attempt)
    answer = httpx.post(f"{server.http_url}/v1/events", headers=headers, json=data)
    assert answer.status_code == 200, answer.text
