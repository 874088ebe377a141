"""The CLI's start-up: what `tracker get`, `list` and `publish` import (never timed here;
bench/cli.py times them).

Each command runs as a real process against a real tracker and reports the modules it
had loaded when it exited; the server, Pub/Sub, gRPC, the CloudEvents SDK, asyncio and
httpx's own command line must not be among them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from tests.cli_kit import clean_env
from tracker.cli import cli
from tracker.cli._base import LAZY
from tracker.config import Config
from tracker.server import Server, running

# Prefixes of modules no client command loads (what made `tracker get` take a second).
HEAVY = (
    "grpc",
    "grpc_reflection",
    "grpc_health",
    "google.longrunning.operations_grpc_pb2",
    "google.longrunning.operations_pb2_grpc",
    "google.cloud",
    "google.api_core",
    "cloudevents",
    "dateutil",
    "asyncio",
    "pygments",
    "rich.progress",
    "rich.syntax",
    "starlette",
    "uvicorn",
    "prometheus_client",
    "tracker.server",
    "tracker.service",
    "tracker.stores",
    "tracker.notify",
    "tracker.config",
    "tracker.api",
    "tracker.client._async",
    "tracker.cli.serve",
    "tracker.cli.schema",
    "tracker.cli.dead_letters",
)

# Runs the `tracker` entry point as the console script does, then writes the names of
# the modules loaded at exit (a None entry, a blocked import, is not loaded) to argv[1].
RUN = """
import atexit, json, sys
out = sys.argv.pop(1)
def report():
    with open(out, "w") as f:
        json.dump(sorted(m for m, v in sys.modules.items() if v is not None), f)
atexit.register(report)
from tracker.cli import main
main(sys.argv[1:])
"""


def heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if m == "httpx._main" or m.startswith(HEAVY)]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running(Config(db=":memory:", http_port=0, grpc_port=-1)) as srv:
        yield srv


def run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    report = tmp_path / f"modules-{uuid.uuid4().hex}.json"
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(report), *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    modules: list[str] = json.loads(report.read_text())
    return done, modules


def test_importing_the_entry_point_loads_no_command_and_nothing_heavy() -> None:
    code = (
        "import sys, tracker.cli; "
        "print(sorted(m for m, v in sys.modules.items() if v is not None"
        " and m.startswith(('grpc', 'cloudevents', 'httpx', 'rich', 'tracker.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=clean_env()
    )
    loaded = out.stdout.strip()
    # The group and its errors only; no command's module, no HTTP client, no gRPC.
    assert loaded == "['tracker.cli', 'tracker.cli._base', 'tracker.errors']", loaded


def test_publish_get_and_list_load_none_of_the_heavy_modules(
    server: Server, tmp_path: Path
) -> None:
    url = ["--url", server.http_url]
    name = f"operations/startup-{uuid.uuid4().hex[:8]}"
    published, modules = run(tmp_path, "publish", "created", name, "--label", "a=b", *url)
    assert published.returncode == 0, published.stderr
    assert published.stdout.startswith("applied: created "), published.stdout
    assert heavy(modules) == [], heavy(modules)
    assert "httpx" in modules and "tracker.client._sync" in modules  # it did the work

    got, modules = run(tmp_path, "get", name, *url)
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines()[:2] == [f"name:      {name}", "done:      no"]
    assert heavy(modules) == [], heavy(modules)
    assert "rich" not in modules  # `get` prints plain lines

    listed, modules = run(tmp_path, "list", "--filter", 'labels.a = "b"', *url)
    assert listed.returncode == 0, listed.stderr
    assert name in listed.stdout and "NAME" in listed.stdout
    assert heavy(modules) == [], heavy(modules)
    assert "rich.table" in modules  # the table is drawn with rich


def test_a_command_that_needs_the_server_still_loads_it(tmp_path: Path) -> None:
    # The guard above can fail: `serve --help` loads the settings (tracker.config).
    done, modules = run(tmp_path, "serve", "--help")
    assert done.returncode == 0, done.stderr
    assert "tracker.config" in modules


def test_the_lazy_table_names_exactly_the_commands_the_modules_define() -> None:
    ctx = click.Context(cli)
    for name in LAZY:
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name, name
    # Loading every module registered nothing the table does not name.
    assert sorted(cli.commands) == sorted(LAZY) == cli.list_commands(ctx)


def test_help_lists_every_command(tmp_path: Path) -> None:
    done, _ = run(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    section = done.stdout.split("Commands:", 1)[1]
    listed = [line.split()[0] for line in section.splitlines() if line.strip()]
    assert listed == sorted(LAZY), listed


def test_an_unknown_command_suggests_from_every_command(tmp_path: Path) -> None:
    done, _ = run(tmp_path, "histroy")
    assert done.returncode == 2
    assert "No such command 'histroy'. Did you mean 'history'?" in done.stderr


def test_the_embedded_default_server_loads_no_spanner_client() -> None:
    """`tracker serve` on SQLite imports the server and the SQLite store, but not the
    Spanner client library (~0.5 s of start-up): the shared labels module imports it only
    where a Spanner store calls it."""
    code = (
        "import sys, tracker.server, tracker.stores.sqlite; "
        "print(sorted(m for m in sys.modules if m.startswith('google.cloud.spanner')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=clean_env()
    )
    assert out.stdout.strip() == "[]", out.stdout
