"""HTTP ingest against its own server stack and the store alone. Prints figures; asserts nothing.

    .venv/bin/python bench/http_ingest.py [--operations 400] [--events 10] [--connections 8]
                                   [--rounds 5] [--quick] [--no-profile]

Three processes, so that each one's CPU is its own on a 2-core machine: this one
(orchestrates, runs the store alone), a server (`--serve tracker`: the tracker through
`tracker.server.running` on a SQLite file; `--serve empty`: an empty handler on the very
same uvicorn + Starlette stack, `tracker.server.http_server`), and a load generator
(`--drive`): N keep-alive connections, each sending its share of pre-rendered requests
one after the other over raw asyncio streams (a client costing as little CPU as it can,
the same for both servers, so the ratio compares the servers).

Figures, each with its baseline measured in the same run: `--rounds` rounds (1 with
--quick), each figure measured beside its baseline in every round (the servers stay up;
every round sends fresh events), printed as medians with each run's range, as a shared
machine moves single runs by +-30%:

- the parser alone, CPU per event, its fast path against the SDK/json_format path;
- one event per request (binary mode): empty-handler requests/s, tracker events/s, ratio,
  and the server process's CPU time per request;
- batches of 100 (structured batch mode, `tracker.bindings.to_batch`): tracker events/s
  against `SqliteStore.apply` on the same event stream in the same batches, ratio;
- "for the record", where the server's CPU goes for single events: py-spy samples of the
  server process (every thread, the store's worker threads included), or cProfile of
  the event loop's thread when py-spy cannot run.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import collections
import contextlib
import json
import os
import pickle
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

from tests.helpers import make_event
from tracker.bindings import to_batch, to_binary
from tracker.events import Event, Kind

HERE = Path(__file__).resolve()
TICKS = os.sysconf("SC_CLK_TCK")


# ---- the event stream and its requests ------------------------------------------------------


def stream(operations: int, per_op: int, prefix: str) -> list[list[Event]]:
    """Per operation: created, progress..., succeeded (in order, with sequences)."""
    out = []
    for o in range(operations):
        name = f"operations/{prefix}-{o}"
        events = [make_event(Kind.CREATED, name, seq=0, data={"operation_type": "bench"})]
        for i in range(1, per_op - 1):
            events.append(make_event(Kind.PROGRESS, name, seq=i, data={"percent": i}))
        events.append(make_event(Kind.SUCCEEDED, name, seq=per_op))
        out.append(events)
    return out


def render(headers: dict[str, str], body: bytes) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"POST /v1/events HTTP/1.1\r\nhost: bench\r\ncontent-length: {len(body)}\r\n{head}\r\n"
    ).encode() + body


def single_requests(ops: list[list[Event]], connections: int) -> list[list[bytes]]:
    """One request per event; an operation's events all on one connection, in order."""
    lanes: list[list[bytes]] = [[] for _ in range(connections)]
    for n, events in enumerate(ops):
        lanes[n % connections].extend(render(*to_binary(e)) for e in events)
    return lanes


def batches(ops: list[list[Event]], size: int) -> list[list[Event]]:
    """Events in order of their operations, cut into batches of `size`."""
    flat = [e for events in ops for e in events]
    return [flat[i : i + size] for i in range(0, len(flat), size)]


def batch_requests(groups: list[list[Event]], connections: int) -> list[list[bytes]]:
    lanes: list[list[bytes]] = [[] for _ in range(connections)]
    for n, group in enumerate(groups):
        lanes[n % connections].append(render(*to_batch(group)))
    return lanes


# ---- the load generator (--drive) -------------------------------------------------------------


async def _lane(
    host: str, port: int, requests: list[bytes], statuses: collections.Counter[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for request in requests:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            statuses[int(head[9:12])] += 1
            match = re.search(rb"(?i)\r\ncontent-length: *([0-9]+)", head)
            await reader.readexactly(int(match.group(1)) if match else 0)
    finally:
        writer.close()


async def _drive(url: str, lanes: list[list[bytes]]) -> dict[str, Any]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    statuses: collections.Counter[int] = collections.Counter()
    start = time.perf_counter()
    await asyncio.gather(*(_lane(host, int(port), lane, statuses) for lane in lanes))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "statuses": dict(statuses)}


def drive_main(url: str, requests_file: str) -> None:
    lanes = pickle.loads(Path(requests_file).read_bytes())
    try:
        import uvloop

        result = uvloop.run(_drive(url, lanes))
    except ImportError:
        result = asyncio.run(_drive(url, lanes))
    print(json.dumps(result), flush=True)


# ---- the servers (--serve) --------------------------------------------------------------------


Stats = Callable[[], dict[str, int]]


def serve_empty() -> Iterator[tuple[str, asyncio.AbstractEventLoop, Stats]]:
    """An empty handler (reads the body, answers a small JSON) on the tracker's stack."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from tracker.server import http_server, http_socket, new_event_loop

    async def empty(request: Request) -> Response:
        await request.body()
        return JSONResponse({"results": []})

    app = Starlette(routes=[Route("/v1/events", empty, methods=["POST"])])
    server = http_server(app, "warning")
    sock = http_socket("127.0.0.1", 0)
    loop = new_event_loop()
    thread = threading.Thread(
        target=lambda: loop.run_until_complete(server.serve(sockets=[sock])), daemon=True
    )
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", loop, dict
    loop.call_soon_threadsafe(setattr, server, "should_exit", True)
    thread.join(10)


def serve_tracker(db: str) -> Iterator[tuple[str, asyncio.AbstractEventLoop, Stats]]:
    from tracker.config import Config
    from tracker.server import running

    config = Config(db=db, http_port=0, grpc_port=0, log_level="warning")
    with running(config) as server:
        stats = server.tracker.group.stats
        yield (
            server.http_url,
            server.loop,  # type: ignore[attr-defined]
            lambda: {"transactions": stats.transactions, "events": stats.events},
        )


def serve_main(kind: str, db: str, profile: str) -> None:
    """Print the URL, serve until stdin closes; a `stats` line on stdin is answered with
    the group commit's counters (JSON; empty for the empty handler)."""
    servers = serve_tracker(db) if kind == "tracker" else serve_empty()
    url, loop, stats = next(servers)
    profiler = None
    if profile:  # cProfile of the event loop's thread (when py-spy cannot run)
        import cProfile

        profiler = cProfile.Profile()
        enabled = threading.Event()
        loop.call_soon_threadsafe(lambda: (profiler.enable(), enabled.set()))
        enabled.wait(10)
    print(url, flush=True)
    for line in sys.stdin:
        if line.strip() == "stats":
            print(json.dumps(stats()), flush=True)
    if profiler is not None:
        loop.call_soon_threadsafe(profiler.disable)
        time.sleep(0.5)
        profiler.dump_stats(profile)
    for _ in servers:
        pass


# ---- the orchestrator ---------------------------------------------------------------------------


class Served:
    """A server subprocess (optionally under py-spy); its CPU time from /proc."""

    def __init__(self, kind: str, db: str, profile: str = "") -> None:
        cmd = [sys.executable, str(HERE), "--serve", kind, "--db", db]
        if profile:
            cmd += ["--profile", profile]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            raise RuntimeError(f"{kind} server did not start: {self._stderr()}")
        self.pid = self.proc.pid

    def _stderr(self) -> str:
        assert self.proc.stderr is not None
        self.proc.kill()
        self.proc.wait()
        return self.proc.stderr.read()[-2000:]

    def stats(self) -> dict[str, int]:
        """The server's group-commit counters so far (empty for the empty handler)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        answer: dict[str, int] = json.loads(self.proc.stdout.readline())
        return answer

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(60)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _py_spy() -> str:
    return shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"


@contextlib.contextmanager
def spying(pid: int, out: Path) -> Iterator[None]:
    """py-spy sampling process `pid` (every thread) while the block runs."""
    cmd = [_py_spy(), "record", "--nonblocking", "-r", "200", "-f", "raw", "-o", str(out),
           "--pid", str(pid)]  # fmt: skip
    spy = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert spy.stdout is not None
    while (line := spy.stdout.readline()) and "Sampling" not in line:
        pass
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled on Ctrl-C
        spy.communicate(timeout=60)


def drive(url: str, lanes: list[list[bytes]], tmp: Path) -> dict[str, Any]:
    path = tmp / "requests.pickle"
    path.write_bytes(pickle.dumps(lanes))
    out = subprocess.run(
        [sys.executable, str(HERE), "--drive", url, "--requests", str(path)],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout)
    result["requests"] = sum(len(lane) for lane in lanes)
    bad = {k: v for k, v in result["statuses"].items() if k != "200"}
    if bad:
        raise RuntimeError(f"answers other than 200: {bad}")
    return result


def measure(
    served: Served, lanes: list[list[bytes]], tmp: Path
) -> tuple[float, float, float | None]:
    """(requests/s, server CPU ms per request, events per store transaction: None for the
    empty handler)."""
    before, counted = served.cpu(), served.stats()
    result = drive(served.url, lanes, tmp)
    cpu = served.cpu() - before
    after = served.stats()
    per_tx = None
    if after:
        txs = after["transactions"] - counted["transactions"]
        per_tx = (after["events"] - counted["events"]) / max(1, txs)
    return result["requests"] / result["seconds"], cpu * 1000 / result["requests"], per_tx


def summarize_spy(path: Path, top: int) -> list[str]:
    """py-spy's raw (collapsed) stacks: the functions with most samples, self and total."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        samples += n
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    lines = [f"  {samples} samples of the server process (py-spy, all threads)"]
    lines.append("  self%  total%  function (file)")
    for frame, n in own.most_common(top):
        lines.append(
            f"  {100 * n / samples:5.1f}  {100 * total[frame] / samples:6.1f}  {_short(frame)}"
        )
    lines.append("  by total (inclusive):")
    for frame, n in total.most_common(top + 10)[-top:]:
        lines.append(
            f"  {100 * own[frame] / samples:5.1f}  {100 * n / samples:6.1f}  {_short(frame)}"
        )
    return lines


_OUTER = r"\((threading|asyncio/(base_events|events|runners)|concurrent/futures/thread)\.py|uvloop"


def _short(frame: str) -> str:
    return re.sub(r"\(/.*?(site-packages|work/wt/[^/]+|lib/python3\.\d+)/", "(", frame)


def summarize_cprofile(path: Path, top: int) -> list[str]:
    import io
    import pstats

    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    rows = ["  " + line for line in out.getvalue().splitlines() if line.strip()]
    return [
        "  cProfile of the event loop thread (py-spy unavailable), by tottime:",
        *rows[-top - 1 :],
    ]


def parse_cost(singles: list[list[Event]], groups: list[list[Event]]) -> list[str]:
    """CPU µs per event of the parser, fast path against the SDK/json_format path."""
    from datetime import UTC, datetime

    from tracker.bindings import _parse
    from tracker.events import DEFAULT_RULES

    now = datetime.now(UTC)
    binary = [to_binary(e) for events in singles for e in events]
    batch = [to_batch(g) for g in groups]
    lines = []
    for name, messages, n in (
        ("binary mode", binary, len(binary)),
        ("batches of 100", batch, sum(len(g) for g in groups)),
    ):
        cost = {}
        for fast in (True, False):
            start = time.process_time()
            for headers, body in messages:
                _parse(headers, body, DEFAULT_RULES, now, fast=fast)
            cost[fast] = (time.process_time() - start) * 1e6 / n
        lines.append(
            f"parse, {name}: {cost[True]:.1f} us CPU per event; SDK/json_format path"
            f" {cost[False]:.1f} us; ratio {cost[False] / cost[True]:.2f}"
        )
    return lines


def store_alone(groups: list[list[Event]], db: Path) -> tuple[float, float]:
    """(events/s, CPU ms per event) of SqliteStore.apply, batch after batch."""
    from tracker.stores.sqlite import SqliteStore

    store = SqliteStore(db)
    n = sum(len(g) for g in groups)
    try:
        start, cpu = time.perf_counter(), time.process_time()
        for group in groups:
            store.apply(group)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        return n / seconds, cpu * 1000 / n
    finally:
        store.close()


def _can_spy(tmp: Path) -> bool:
    try:
        out = subprocess.run(
            [_py_spy(), "record", "-d", "1", "-f", "raw", "-o", str(tmp / "probe.txt"), "--",
             sys.executable, "-c", "sum(range(10**7))"],
            capture_output=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and (tmp / "probe.txt").exists()


def _spread(values: list[float], fmt: str = "{:.0f}") -> str:
    """`  runs LOW-HIGH (N)` after a median, when there was more than one round."""
    if len(values) < 2:
        return ""
    return f"  runs {fmt.format(min(values))}-{fmt.format(max(values))} ({len(values)})"


def main(args: argparse.Namespace, out: IO[str]) -> None:
    ops, per_op, conns = args.operations, args.events, args.connections
    rounds = 1 if args.quick else args.rounds
    if args.quick:
        ops, per_op = 16, 5
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        from tracker.server import HTTPTOOLS, UVLOOP

        print(
            f"stack: uvicorn {'httptools' if HTTPTOOLS else 'h11'},"
            f" {'uvloop' if UVLOOP else 'asyncio'} loop; client: {conns} keep-alive"
            f" connections, raw asyncio, own process; {rounds} round(s), each figure's"
            " baseline measured beside it in every round; medians",
            file=out,
        )
        singles = stream(ops, per_op, "single")
        empty_runs: list[tuple[float, float]] = []
        single_runs: list[tuple[float, float, float]] = []
        with Served("empty", "") as empty, Served("tracker", str(tmp / "single.db")) as served:
            empty_lanes = single_requests(singles, conns)
            drive(empty.url, empty_lanes[:1], tmp)  # warm-up
            drive(served.url, single_requests(stream(conns, 2, "warm"), conns), tmp)
            for r in range(rounds):  # fresh events each round: none is a duplicate
                lanes = single_requests(stream(ops, per_op, f"single{r}"), conns)
                rate, cpu, _ = measure(empty, empty_lanes, tmp)
                empty_runs.append((rate, cpu))
                rate, cpu, per_tx = measure(served, lanes, tmp)
                single_runs.append((rate, cpu, per_tx or 0.0))
        empty_rate = statistics.median(r for r, _ in empty_runs)
        empty_cpu = statistics.median(c for _, c in empty_runs)
        rate = statistics.median(r for r, _, _ in single_runs)
        cpu = statistics.median(c for _, c, _ in single_runs)
        per_tx = statistics.median(t for _, _, t in single_runs)
        ratios = [t[0] / e[0] for t, e in zip(single_runs, empty_runs, strict=True)]
        print(
            f"empty handler, 1 request at a time x{conns}   {empty_rate:9.0f} requests/s"
            f"  ({empty_cpu:.3f} ms server CPU per request)" + _spread([r for r, _ in empty_runs]),
            file=out,
        )
        print(
            f"tracker, binary single events x{conns}        {rate:9.0f} events/s"
            f"  ({cpu:.3f} ms server CPU per event, {per_tx:.1f} events per transaction)"
            + _spread([r for r, _, _ in single_runs]),
            file=out,
        )
        print(
            f"ratio tracker/empty handler                 {statistics.median(ratios):9.2f}"
            + _spread(ratios, "{:.2f}"),
            file=out,
        )
        print(f"ratio of server CPU per request, empty/tracker {empty_cpu / cpu:6.2f}", file=out)

        for line in parse_cost(singles, batches(stream(ops * 5, per_op, "parse"), 100)):
            print(line, file=out)
        store_runs: list[tuple[float, float]] = []
        batch_runs: list[tuple[float, float]] = []
        with Served("tracker", str(tmp / "batch.db")) as served:
            for r in range(rounds):
                groups = batches(stream(ops * 5, per_op, f"batch{r}"), 100)
                # The same number of events in the same batches, on a file of its own
                # that grows round by round as the server's does.
                store_runs.append(store_alone(groups, tmp / "store.db"))
                n = sum(len(g) for g in groups)
                req_rate, req_cpu, _ = measure(served, batch_requests(groups, conns), tmp)
                batch_runs.append((req_rate * n / len(groups), req_cpu * len(groups) / n))
        store_rate = statistics.median(r for r, _ in store_runs)
        store_cpu = statistics.median(c for _, c in store_runs)
        batch_rate = statistics.median(r for r, _ in batch_runs)
        batch_cpu = statistics.median(c for _, c in batch_runs)
        batch_ratios = [b[0] / s[0] for b, s in zip(batch_runs, store_runs, strict=True)]
        print(
            f"tracker, batches of 100 x{conns}             {batch_rate:9.0f} events/s"
            f"  ({batch_cpu:.3f} ms server CPU per event)" + _spread([r for r, _ in batch_runs]),
            file=out,
        )
        print(
            f"store alone, batches of 100 (SqliteStore.apply) {store_rate:5.0f} events/s"
            f"  ({store_cpu:.3f} ms CPU per event)" + _spread([r for r, _ in store_runs]),
            file=out,
        )
        print(
            f"ratio HTTP batches/store alone              {statistics.median(batch_ratios):9.2f}"
            + _spread(batch_ratios, "{:.2f}"),
            file=out,
        )
        print(f"ratio of CPU per event, store alone/HTTP    {store_cpu / batch_cpu:9.2f}", file=out)

        if args.no_profile:
            return
        print("profile, server side, binary single events (for the record):", file=out)
        profile_lanes = single_requests(stream(ops, per_op, "profile"), conns)
        if _can_spy(tmp):
            spy = tmp / "spy.txt"
            with Served("tracker", str(tmp / "profile.db")) as served:
                drive(served.url, lanes[:1], tmp)  # warm-up
                with spying(served.pid, spy):
                    drive(served.url, profile_lanes, tmp)
            lines = summarize_spy(spy, 15)
        else:
            prof = tmp / "profile.pstats"
            with Served("tracker", str(tmp / "profile.db"), profile=str(prof)) as served:
                drive(served.url, profile_lanes, tmp)
            lines = summarize_cprofile(prof, 15)
        for line in lines:
            print(line, file=out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--operations", type=int, default=400)
    parser.add_argument("--events", type=int, default=10, help="events per operation")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds of each figure with its baseline"
    )
    parser.add_argument("--quick", action="store_true", help="a few events: proves it runs")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--serve", choices=["tracker", "empty"], help=argparse.SUPPRESS)
    parser.add_argument("--db", default="", help=argparse.SUPPRESS)
    parser.add_argument("--profile", default="", help=argparse.SUPPRESS)
    parser.add_argument("--drive", default="", help=argparse.SUPPRESS)
    parser.add_argument("--requests", default="", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.serve:
        serve_main(parsed.serve, parsed.db, parsed.profile)
    elif parsed.drive:
        drive_main(parsed.drive, parsed.requests)
    else:
        main(parsed, sys.stdout)
