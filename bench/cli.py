"""CLI start-up: whole `tracker` processes, timed from outside. Prints figures; asserts nothing.

    .venv/bin/python bench/cli.py [--runs 7] [--quick]

Starts a tracker on loopback (`tracker.server.running`, SQLite in memory, no gRPC) and
times, as child processes of the console script: `tracker --help`, `tracker get NAME`,
`tracker list` (a table of 20 operations) and `tracker publish heartbeat NAME`, each the
real work against that tracker. The baseline, measured in the same rounds, is the floor
of any Python command: `python -c pass` with the same interpreter. A round runs the
floor and then each command once, so that a ratio is taken within one round (the
machine's speed drifts); the ratio printed is the median of the rounds' ratios.

Two modes, each with its own floor:

- "bytecode cached": what an installed CLI does from its second run on; the .pyc files go
  to a temporary PYTHONPYCACHEPREFIX (written by one warm-up run per command, not counted);
- "no bytecode written": PYTHONDONTWRITEBYTECODE=1 and no prefix: the .pyc files the
  install already has are read (the standard library's), every other module is compiled
  from source on every run, as in an environment that sets the variable over an install
  made without .pyc files (uv's default). The first line says whether the install has
  them (httpx's, for one). It shows how much the number of imported modules weighs.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence

from tracker.client import TrackerClient
from tracker.config import Config
from tracker.server import running

TRACKER = str(Path(sys.executable).parent / "tracker")
TARGET_SECONDS = 0.5  # issue #15: get, list and publish well under this
OPERATIONS = 20


def timed(argv: Sequence[str], env: Mapping[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one child process, start to exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        argv, env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


BYTECODE_VARIABLES = ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")


def environment(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRACKER_") and k not in BYTECODE_VARIABLES
    }
    env.update(extra)
    return env


def measure(
    commands: Mapping[str, list[str]], env: Mapping[str, str], runs: int, warmup: bool
) -> dict[str, list[tuple[float, float]]]:
    """{label: [(wall, cpu), ...]}, the floor ("python -c pass") first in every round."""
    floor = [sys.executable, "-c", "pass"]
    if warmup:  # writes the bytecode caches; not counted
        for argv in (floor, *commands.values()):
            timed(argv, env)
    samples: dict[str, list[tuple[float, float]]] = {"python -c pass": []}
    samples.update({label: [] for label in commands})
    for _ in range(runs):
        samples["python -c pass"].append(timed(floor, env))
        for label, argv in commands.items():
            samples[label].append(timed(argv, env))
    return samples


def report(title: str, samples: Mapping[str, list[tuple[float, float]]]) -> None:
    floor = samples["python -c pass"]
    print(f"{title} ({len(floor)} runs each; seconds of wall time; x = ratio to the floor)")
    width = max(len(label) for label in samples)
    for label, values in samples.items():
        walls = [w for w, _ in values]
        cpus = [c for _, c in values]
        ratios = [w / f for (w, _), (f, _) in zip(values, floor, strict=True)]
        under = ""
        if label != "python -c pass" and "--help" not in label:
            under = "  under 0.5 s" if statistics.median(walls) < TARGET_SECONDS else "  OVER 0.5 s"
        print(
            f"  {label:<{width}}  median {statistics.median(walls):6.3f}"
            f"  min {min(walls):6.3f}  max {max(walls):6.3f}"
            f"  cpu {statistics.median(cpus):6.3f}  x{statistics.median(ratios):5.1f}{under}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each command")
    parser.add_argument("--quick", action="store_true", help="1 run of each (tests)")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average {load}, {os.cpu_count()} cores", flush=True)
    import httpx

    has = "has" if (Path(httpx.__file__).parent / "__pycache__").is_dir() else "has no"
    print(f"the install {has} .pyc files (httpx/__pycache__)")
    config = Config(db=":memory:", http_port=0, grpc_port=-1)
    with running(config) as server, tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        url = server.http_url
        name = "operations/bench-cli-0"
        with TrackerClient(url) as client:
            for i in range(OPERATIONS):
                client.created(f"operations/bench-cli-{i}", labels={"bench": "cli"})
        commands = {
            "tracker --help": [TRACKER, "--help"],
            "tracker get NAME": [TRACKER, "get", name, "--url", url],
            f"tracker list ({OPERATIONS})": [TRACKER, "list", "--url", url],
            "tracker publish heartbeat": [TRACKER, "publish", "heartbeat", name, "--url", url],
        }
        cached = environment(PYTHONPYCACHEPREFIX=str(Path(tmp) / "cached"))
        report("bytecode cached", measure(commands, cached, runs, warmup=True))
        cold = environment(PYTHONDONTWRITEBYTECODE="1")
        report("no bytecode written", measure(commands, cold, runs, warmup=False))


if __name__ == "__main__":
    main()
