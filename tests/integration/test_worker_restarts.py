"""A worker process killed with SIGKILL again and again ends as if it had never been.

`tests/restart_worker.py` (tracker.worker over HTTP, against a real tracker) works
through chunks in lock step with the test: before each step it says which, and waits.
The test kills it at seeded random points, either at a step (nothing of it done) or
right after letting it go (somewhere inside the step: mid-request, between the work
and its report), and starts it again each time. At the end the operation must hold
what an uninterrupted run leaves: the response, the checkpoint, the progress; its
attempt is the number of runs, its createTime that of the first; and the chunks
processed, in order, never skip one (a chunk is done again after a kill before its
checkpoint, never left out).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from google.protobuf import struct_pb2

from tests.helpers import ROOT
from tracker.client import TrackerClient, metadata
from tracker.config import Config
from tracker.server import Server, running

CHUNKS = 10
KILLS = 5
# A killed run goes at most this many steps: with 3 steps per chunk it checkpoints at
# most 2 chunks, so all KILLS kills land before the last chunk is done.
MAX_STEPS_BEFORE_KILL = 6
SEED = int(os.environ.get("TRACKER_RESTART_SEED", "11"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running(Config(db=str(tmp_path / "r.db"), http_port=0, grpc_port=-1)) as s:
        yield s


@dataclass
class Outcome:
    runs: int = 0
    kills: list[str] = field(default_factory=list)  # where each kill landed
    starts: list[tuple[int, int]] = field(default_factory=list)  # (attempt, from) per run


class WorkerProcess:
    """One run of tests/restart_worker.py, driven line by line."""

    def __init__(self, url: str, name: str, processed: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.restart_worker", url, name, str(CHUNKS), processed],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def line(self) -> str:
        assert self.proc.stdout is not None
        text = self.proc.stdout.readline()
        if not text:
            assert self.proc.stderr is not None
            raise AssertionError(
                f"the worker exited with {self.proc.wait()}: {self.proc.stderr.read()[-2000:]}"
            )
        return text.strip()

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(60) == -signal.SIGKILL
        self.close()

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def work(
    server: Server, client: TrackerClient, name: str, processed: Path, rng: random.Random | None
) -> Outcome:
    """Run the worker to the end; with `rng`, kill it KILLS times on the way."""
    outcome = Outcome()
    while True:
        held = client.get_checkpoint(name) if outcome.runs else None
        worker = WorkerProcess(server.http_url, name, processed)
        outcome.runs += 1
        started = worker.line()
        attempt, start = (int(part.split("=")[1]) for part in started.split()[1:])
        outcome.starts.append((attempt, start))
        assert start == int(held or b"0")  # it resumes from what the tracker holds
        steps = 0
        limit = rng.randint(1, MAX_STEPS_BEFORE_KILL) if rng and len(outcome.kills) < KILLS else 0
        while (text := worker.line()) != "done":
            assert text.startswith("gate ")
            steps += 1
            if steps == limit and not text.startswith("gate succeed"):
                assert rng is not None
                if rng.random() < 0.5:
                    outcome.kills.append(f"at {text}")
                else:
                    worker.go()  # let it start the step, and kill it somewhere inside
                    outcome.kills.append(f"inside {text}")
                worker.kill()
                break
            worker.go()
        else:
            assert worker.proc.wait(60) == 0
            worker.close()
            return outcome


def chunks_done(processed: Path) -> list[int]:
    return [int(line) for line in processed.read_text(encoding="ascii").split()]


def test_a_worker_killed_and_restarted_ends_as_an_uninterrupted_one(
    server: Server, tmp_path: Path
) -> None:
    with TrackerClient(server.http_url) as client:
        calm = work(server, client, "operations/chunks-calm", tmp_path / "calm.txt", None)
        assert calm.runs == 1 and calm.starts == [(1, 0)]
        assert chunks_done(tmp_path / "calm.txt") == list(range(CHUNKS))

        name = "operations/chunks-killed"
        rng = random.Random(SEED)
        # createTime as the first run's `created` set it: read once the run is entered.
        first = WorkerProcess(server.http_url, name, tmp_path / "unused.txt")
        assert first.line() == "run attempt=1 from=0"
        created = metadata(client.get(name)).create_time  # type: ignore[union-attr]
        first.kill()
        killed = work(server, client, name, tmp_path / "killed.txt", rng)
        runs = killed.runs + 1
        print(f"seed {SEED}: {runs} runs, kills {killed.kills}")
        assert len(killed.kills) == KILLS  # every planned kill happened before the end

        expected, got = client.get("operations/chunks-calm"), client.get(name)
        assert got.done and not got.HasField("error")
        calm_response, response = struct_pb2.Struct(), struct_pb2.Struct()
        assert expected.response.Unpack(calm_response) and got.response.Unpack(response)
        assert response == calm_response == struct_pb2.Struct(fields={"chunks": _n(CHUNKS)})
        assert client.get_checkpoint(name) == client.get_checkpoint("operations/chunks-calm")
        assert client.get_checkpoint(name) == str(CHUNKS).encode()
        meta, calm_meta = metadata(got), metadata(expected)
        assert meta is not None and calm_meta is not None
        assert (meta.percent, meta.message) == (calm_meta.percent, calm_meta.message)
        assert (meta.percent, meta.message) == (100, f"chunk {CHUNKS}/{CHUNKS}")
        assert meta.attempt == runs  # every run started the next attempt
        assert [a for a, _ in killed.starts] == list(range(2, runs + 1))
        assert meta.create_time == created  # no restart's `created` moved it

        order = chunks_done(tmp_path / "killed.txt")
        assert set(order) == set(range(CHUNKS))
        furthest = -1
        for chunk in order:  # a chunk again after a kill, never one past the next
            assert chunk <= furthest + 1, order
            furthest = max(furthest, chunk)
        assert order[-1] == CHUNKS - 1


def _n(value: float) -> struct_pb2.Value:
    return struct_pb2.Value(number_value=value)
