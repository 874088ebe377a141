"""Many `tracker serve` processes on one Spanner database: start, scrape, feed, stop.

Shared by tests/integration/test_scale_out.py and bench/scale.py. Each instance is a
real process (`python -m tracker.cli serve`), its log a file; its address is read from
the line it prints once it listens.
"""

from __future__ import annotations

import base64
import contextlib
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.cli_kit import clean_env
from tests.helpers import ROOT
from tracker.bindings import to_binary
from tracker.events import Event

START_TIMEOUT_S = 60.0


@dataclass
class Instance:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text

    def metric(self, name: str, **labels: str) -> float:
        return metric(self.metrics(), name, **labels)


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (Prometheus text)."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if not match:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def serve_args(
    spanner_database: str, *, explicit_begin: bool, **flags: str | float | int
) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "tracker.cli",
        "serve",
        "--store",
        "spanner",
        "--spanner-database",
        spanner_database,
        "--http-port",
        "0",
        "--grpc-port",
        "-1",
        "--log-level",
        "warning",
    ]
    if explicit_begin:
        args.append("--spanner-explicit-begin")
    for key, value in flags.items():
        if value not in ("", None):
            args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def _address(log: Path, proc: subprocess.Popen[bytes], deadline: float) -> str:
    while time.monotonic() < deadline:
        match = re.search(r"HTTP on (http://\S+),", log.read_text(errors="replace"))
        if match:
            return match.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(
        f"tracker serve did not listen (exit {proc.poll()}):\n{log.read_text()[-3000:]}"
    )


@contextlib.contextmanager
def instances(
    count: int,
    spanner_database: str,
    log_dir: Path,
    *,
    explicit_begin: bool,
    **flags: str | float | int,
) -> Iterator[list[Instance]]:
    """`count` tracker processes on one database; stopped by SIGTERM on exit. The
    environment (emulator hosts, Spanner client settings) is this process's."""
    args = serve_args(spanner_database, explicit_begin=explicit_begin, **flags)
    env = clean_env()
    started: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for i in range(count):
            log = log_dir / f"instance-{i}-{uuid.uuid4().hex[:6]}.log"
            with log.open("wb") as out:
                started.append(
                    (
                        subprocess.Popen(
                            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
                        ),
                        log,
                    )
                )
        deadline = time.monotonic() + START_TIMEOUT_S
        yield [Instance(proc, _address(log, proc, deadline), log) for proc, log in started]
    finally:
        for proc, _ in started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in started:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def tracebacks(group: Sequence[Instance]) -> list[str]:
    """Logs of instances that printed a traceback (none should)."""
    return [
        f"{i.log.name}:\n{text[-3000:]}"
        for i in group
        if "Traceback" in (text := i.log.read_text(errors="replace"))
    ]


def push_envelope(event: Event, subscription: str) -> dict[str, Any]:
    """The JSON a Pub/Sub push subscription posts for `event` (binary mode)."""
    headers, body = to_binary(event)
    return {
        "message": {
            "attributes": headers,
            "data": base64.b64encode(body).decode(),
            "messageId": uuid.uuid4().hex,
            "publishTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "orderingKey": event.operation,
        },
        "subscription": subscription,
        "deliveryAttempt": 1,
    }


def post_push(http: httpx.Client, url: str, event: Event, subscription: str) -> int:
    """POST `event` to an instance's push route until it answers 2xx, as Pub/Sub retries;
    returns the status of the accepted answer."""
    envelope = push_envelope(event, subscription)
    for _ in range(50):
        answer = http.post(f"{url}/v1/pubsub/push", json=envelope)
        if answer.status_code in (102, 200, 201, 202, 204):
            return answer.status_code
        assert answer.status_code == 503, (answer.status_code, answer.text)
        time.sleep(0.2)
    raise AssertionError(f"push of {event.id} refused 50 times")
