"""`tracker dev`: the emulators, topics, subscriptions and database in one command.

A real `tracker dev` process, with Google's emulators (and once with pstest and
handy-spanner): one operation
goes through Pub/Sub (and, on Google's emulator, through the push subscription to the
tracker itself) and its done-notification reaches a consumer of the printed subscription;
SIGINT stops the tracker and every emulator it started.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.cli_kit import TRACKER, clean_env
from tests.doc_blocks import doc_block
from tracker.client import TrackerClient, wait_done
from tracker.errors import NotFound
from tracker.worker import PubSubProducer

pytestmark = pytest.mark.timeout(300)


@dataclass
class Running:
    proc: subprocess.Popen[str]
    env: dict[str, str]
    names: dict[str, str]
    output: list[str]


def _pump(proc: subprocess.Popen[str], lines: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))


@contextlib.contextmanager
def tracker_dev(*args: str, env: dict[str, str] | None = None) -> Iterator[Running]:
    ports = ["--http-port", "0", "--grpc-port", "0", "--pubsub-port", "0", "--spanner-port", "0"]
    full = clean_env(**(env or {}))
    for key in ("PUBSUB_EMULATOR_HOST", "SPANNER_EMULATOR_HOST"):
        full.pop(key, None)
    with subprocess.Popen(
        [TRACKER, "dev", *ports, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=full,
    ) as proc:
        lines: list[str] = []
        threading.Thread(target=_pump, args=(proc, lines), daemon=True).start()
        try:
            deadline = time.monotonic() + 180
            while not any(line.startswith("ready;") for line in lines):
                assert proc.poll() is None, "\n".join(lines)
                assert time.monotonic() < deadline, "\n".join(lines)
                time.sleep(0.2)
            text = "\n".join(lines)
            exported = dict(re.findall(r"^export (\w+)=(\S+)$", text, re.M))
            names = dict(re.findall(r"^ *([^:\n]+?):\s+(projects/\S+)", text, re.M))
            yield Running(proc, exported, names, lines)
        finally:
            if proc.poll() is None:
                proc.kill()  # no clean stop: the emulators must still go (PR_SET_PDEATHSIG)
                proc.wait(30)


def _accepts(host: str) -> bool:
    address, port = host.rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((address, int(port))) == 0


def _send(topic: str, name: str) -> None:
    producer = PubSubProducer(topic, source="test-dev")
    producer.created(name, operation_type="export", labels={"via": "dev"})
    producer.progress(name, 50, "halfway")
    producer.succeeded(name, {"rows": 7})


def test_one_command_serves_the_pubsub_path_and_ctrl_c_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    command = doc_block("docs/gcp.md", "dev").split("#", 1)[0].split()
    assert command == ["tracker", "dev"]
    with tracker_dev() as dev:
        env = dev.env
        assert set(env) == {"PUBSUB_EMULATOR_HOST", "SPANNER_EMULATOR_HOST", "TRACKER_URL"}
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", env["PUBSUB_EMULATOR_HOST"])
        name = "operations/dev-pull"
        _send(dev.names["events topic (pull)"], name)
        done = wait_done(dev.names["a subscription on it"], name, timeout=120)
        assert done.name == name and done.done and not done.HasField("error")
        with TrackerClient(env["TRACKER_URL"]) as client:
            stored = client.get(name)
        assert stored.done
        assert httpx.get(f"{env['TRACKER_URL']}/healthz", timeout=10).status_code == 200

        # The push subscription posts to the tracker's own /v1/pubsub/push.
        pushed = "operations/dev-push"
        _send(dev.names["events topic (push)"], pushed)
        deadline = time.monotonic() + 120
        with TrackerClient(env["TRACKER_URL"]) as client:
            while True:
                with contextlib.suppress(NotFound):
                    if client.get(pushed).done:
                        break
                assert time.monotonic() < deadline, "\n".join(dev.output)
                time.sleep(0.5)
        assert "google-pubsub and google-spanner" in "\n".join(dev.output)

        hosts = [env["PUBSUB_EMULATOR_HOST"], env["SPANNER_EMULATOR_HOST"]]
        assert all(_accepts(h) for h in hosts)
        dev.proc.send_signal(signal.SIGINT)
        assert dev.proc.wait(60) == 0, "\n".join(dev.output)
    # The emulators it started, and the tracker, are gone.
    assert not any(_accepts(h) for h in [*hosts, env["TRACKER_URL"].removeprefix("http://")])


def test_emulators_stop_when_tracker_dev_is_killed() -> None:
    with tracker_dev() as dev:
        hosts = [dev.env["PUBSUB_EMULATOR_HOST"], dev.env["SPANNER_EMULATOR_HOST"]]
        assert all(_accepts(h) for h in hosts)
        dev.proc.kill()
        dev.proc.wait(30)
        deadline = time.monotonic() + 30
        while any(_accepts(h) for h in hosts):
            assert time.monotonic() < deadline, "an emulator outlived a killed tracker dev"
            time.sleep(0.5)


def test_a_port_in_use_names_the_flag_to_change() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [TRACKER, "dev", "--pubsub-port", str(port), "--http-port", "0", "--grpc-port", "0"],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )
    assert done.returncode == 2
    assert f"port {port} is in use" in done.stderr and "--pubsub-port N" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_emulators_say_what_to_install(tmp_path: Path) -> None:
    # No gcloud on PATH (only the interpreter's bin and the basics), no Go servers built.
    path = f"{Path(sys.executable).parent}{os.pathsep}/usr/bin{os.pathsep}/bin"
    empty = tmp_path / "bin"
    empty.mkdir()
    env = clean_env(PATH=path, TRACKER_TOOLS_BIN=str(empty))
    if any(Path(p, "gcloud").exists() for p in path.split(os.pathsep)):
        # Debian's gcloud lives in /usr/bin here: hide it behind a PATH of our own.
        shim = tmp_path / "shim"
        shim.mkdir()
        for tool in ("bash", "sh", "env"):
            (shim / tool).symlink_to(f"/bin/{tool}")
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{shim}"
    google = subprocess.run(
        [TRACKER, "dev", "--emulators", "google"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert google.returncode == 2, google.stderr
    assert "gcloud components install pubsub-emulator cloud-spanner-emulator" in google.stderr

    go = subprocess.run(
        [TRACKER, "dev", "--emulators", "go"], capture_output=True, text=True, env=env, timeout=60
    )
    assert go.returncode == 2, go.stderr
    assert "pstest and handy-spanner not found" in go.stderr
    assert "`.venv/bin/python -m tests.emulators.harness build`" in go.stderr
    auto = subprocess.run([TRACKER, "dev"], capture_output=True, text=True, env=env, timeout=60)
    assert auto.returncode == 2 and "gcloud components install" in auto.stderr
    assert "tests.emulators.harness build" in auto.stderr  # both ways named
    assert "Traceback" not in google.stderr + go.stderr + auto.stderr


def test_pstest_and_handy_spanner_when_asked_or_without_gcloud(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.emulators import harness

    for kind in ("pstest", "handy-spanner"):
        harness.build_go_server(kind)  # what ./scripts/test builds before pytest
    with tracker_dev("--emulators", "go", env={"TRACKER_TOOLS_BIN": str(harness.TOOLS_BIN)}) as dev:
        assert "pstest and handy-spanner" in "\n".join(dev.output)
        assert "pstest delivers no push subscriptions" in "\n".join(dev.output)
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", dev.env["PUBSUB_EMULATOR_HOST"])
        name = "operations/dev-go"
        _send(dev.names["events topic (pull)"], name)
        done = wait_done(dev.names["a subscription on it"], name, timeout=120)
        assert done.name == name and done.done and not done.HasField("error")
        dev.proc.send_signal(signal.SIGINT)
        assert dev.proc.wait(60) == 0, "\n".join(dev.output)
