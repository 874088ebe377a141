"""Errors a newcomer meets say what to do next, with the command (issue #17.3): `tracker
serve` on a Spanner instance, database or schema that is not there, on Google's Cloud
Spanner Emulator, through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import PROJECT
from tests.emulators import harness

TRACKER = str(Path(sys.executable).parent / "tracker")


def _serve(database: str, host: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPANNER_EMULATOR_HOST": host, **harness.SPANNER_CLIENT_ENV}
    return subprocess.run(
        [
            TRACKER,
            "serve",
            "--store",
            "spanner",
            "--spanner-database",
            database,
            "--http-port",
            "0",
            "--grpc-port",
            "-1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_names_the_missing_instance_database_or_schema_and_the_fix(
    spanner_hosts: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.cloud import spanner

    host = spanner_hosts["cloud-spanner-emulator"]
    short = f"n{uuid.uuid4().hex[:8]}"
    database = f"projects/{PROJECT}/instances/{short}/databases/db1"
    apply = f"tracker schema apply --store spanner --spanner-database {database}"

    def one_line_error(expected: str) -> None:
        result = _serve(database, host)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.strip() == f"tracker: error: {expected}", result.stderr

    one_line_error(
        f"Spanner instance projects/{PROJECT}/instances/{short} does not exist: create it"
        f" (`gcloud spanner instances create {short} --config=regional-us-central1"
        " --nodes=1`; on a laptop `tracker dev` starts an emulator with one), then run"
        f" `{apply} --create-database`"
    )
    monkeypatch.setenv("SPANNER_EMULATOR_HOST", host)
    client = spanner.Client(project=PROJECT)
    config = f"projects/{PROJECT}/instanceConfigs/emulator-config"
    client.instance(short, configuration_name=config, node_count=1).create().result(60)
    one_line_error(
        f"Spanner database {database} does not exist: create it with the tracker's"
        f" schema by `{apply} --create-database`"
    )
    client.instance(short).database("db1").create().result(60)
    one_line_error(f"Spanner database {database} has no tracker schema: run `{apply}`")
    # The command it names does fix it: serve then gets past the store.
    env = {**os.environ, "SPANNER_EMULATOR_HOST": host, **harness.SPANNER_CLIENT_ENV}
    fixed = subprocess.run(
        [TRACKER, *apply.split()[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fixed.returncode == 0, fixed.stderr
    assert "applied" in fixed.stdout


def test_serve_warns_about_a_subscription_without_ordering_and_names_the_fix(
    pubsub_env: str, pubsub_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import time

    from tests.pubsub_kit import PubSub
    from tracker.config import Config
    from tracker.server import running

    pubsub = PubSub()
    topic = pubsub.topic()
    unordered = pubsub.subscription(topic, ordered=False)
    ordered = pubsub.subscription(topic, ordered=True)
    caplog.set_level(logging.WARNING, logger="tracker.sources.pubsub_pull")
    seen: dict[str, bool | None] = {}
    for sub in (unordered, ordered):
        config = Config(db=":memory:", http_port=0, grpc_port=-1, subscription=sub)
        with running(config) as server:
            pulling = server.subscriber
            assert pulling is not None
            deadline = time.monotonic() + 30
            while pulling.ordered is None and time.monotonic() < deadline:
                time.sleep(0.02)  # read by the subscriber's start, on the server's loop
            seen[sub] = pulling.ordered
    assert seen == {unordered: False, ordered: True}  # both emulators keep the setting
    warnings = [r.getMessage() for r in caplog.records if "message ordering" in r.getMessage()]
    short, topic_id = unordered.rsplit("/", 1)[1], topic.rsplit("/", 1)[1]
    assert len(warnings) == 1 and unordered in warnings[0]
    assert (
        f"`gcloud pubsub subscriptions create {short}-ordered --topic {topic_id}"
        " --enable-message-ordering`" in warnings[0]
    )


def _path_without(tmp_path: Path, *missing: str) -> str:
    """A PATH with every command of /usr/bin and /bin but `missing`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        for entry in Path(folder).iterdir():
            link = bin_dir / entry.name
            if entry.name not in missing and not link.exists():
                link.symlink_to(entry)
    return str(bin_dir)


def test_the_test_builds_name_a_missing_go_or_node_and_how_to_install_it(
    tmp_path: Path,
) -> None:
    from tests.helpers import ROOT

    go = harness.go_binary()
    path = _path_without(tmp_path, "go", "node", "npm", "nodejs")
    base = {**os.environ, "PATH": path}
    no_go = subprocess.run(
        [sys.executable, "-m", "tests.emulators.harness", "build"],
        cwd=ROOT,
        env={**base, "GO": str(tmp_path / "no-go")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert no_go.returncode == 2 and "Traceback" not in no_go.stderr, no_go.stderr
    line = no_go.stderr.strip().splitlines()[-1]
    assert (
        line.startswith("tracker: error: the tests build pstest") and "is not an executable" in line
    )
    assert "`sudo apt-get install golang-go`" in line and "https://go.dev/dl/" in line

    no_node = subprocess.run(  # Go there (the cached builds), Node not
        [sys.executable, "-m", "tests.integration.test_examples"],
        cwd=ROOT,
        env={**base, "GO": go},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert no_node.returncode == 2 and "Traceback" not in no_node.stderr, no_node.stderr
    line = no_node.stderr.strip().splitlines()[-1]
    assert line.startswith("tracker: error: node not found on PATH")
    assert "`sudo apt-get install nodejs npm`" in line
