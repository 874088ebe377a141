"""Pub/Sub paths against baselines measured on the same emulator in the same run.

    .venv/bin/python bench/pubsub.py [--server pstest|google] [--quick] [--seconds 60]
        [--parts latency,pull,push,push-emulator,wait,memory]

Prints, each figure beside its baseline and the ratio:

- latency: the emulator's own publish -> streaming-pull arrival, by two raw publishers
  (google-cloud-pubsub's PublisherClient sending each message at once, and the bare
  Publish RPC on an asyncio loop), then a `succeeded` event handed to a running tracker
  (`Tracker.ingest`, what every route calls) -> its done-notification arriving at a
  subscriber of the completion topic (the same subscriber code), from the event and from
  its commit (an after-commit hook); p50/p99 and the ratios to the faster raw figure.
  The samples are interleaved, each after a random pause of up to 20 ms;
- pull: the tracker's `PullSubscriber` applying N preloaded events against a raw
  streaming-pull subscriber that only acks the same N messages (two subscriptions of one
  topic). pstest hands a streaming pull one message per 10 ms tick: there both reach
  ~100 msg/s, so use --server google for this one;
- push (same stack): wrapped push envelopes POSTed to /v1/pubsub/push over several
  keep-alive connections by our own client (a process of its own) against the same
  Starlette + uvicorn stack answering 204 from an ack-only handler: the server's CPU per
  request against an empty handler, not issue #13's baseline;
- push-emulator (issue #13's baseline): Google's Pub/Sub emulator itself pushing N
  published CloudEvents through a push subscription to a raw endpoint that only answers
  204 and to a running tracker (all N applied), from the first publish; wrapped (the
  JSON envelope, /v1/pubsub/push) and unwrapped (no_wrapper with write_metadata: the
  attributes as headers, a binary-mode CloudEvent for /v1/events); runs interleaved raw,
  tracker, raw, tracker; medians. With --server pstest (which never delivers pushes) the
  bench starts a Google emulator for this part. That emulator keeps at most 2 pushes in
  flight per subscription, so the figure is bound by each request's latency;
- wait: from a `succeeded` event to a waiting `:wait` caller's answer, p50/p99;
- memory: the RSS of a `tracker serve` process (completion topic on) sampled every few
  seconds while a client posts push envelopes for --seconds; the series, first/last/max.

`--quick` (small sizes, ~3 s of load) is what tests/test_bench.py runs; its figures mean
nothing. Two cores shared with other work: run it 2-3 times and read the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
import httpx
import uvicorn
from google.longrunning import operations_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.emulators import harness  # noqa: E402
from tests.helpers import make_event  # noqa: E402
from tests.pubsub_kit import PROJECT, PubSub, google_emulator  # noqa: E402
from tracker.bindings import to_binary  # noqa: E402
from tracker.config import Config  # noqa: E402
from tracker.events import Kind  # noqa: E402
from tracker.hooks import Committed  # noqa: E402
from tracker.server import Server, running  # noqa: E402
from tracker.sources.pubsub_pull import PullSubscriber  # noqa: E402

PUSH_PATH = "/v1/pubsub/push"
# Sends each message at once (unordered publishing commits a full batch at once).
AT_ONCE = pubsub_v1.types.BatchSettings(max_messages=1)


# ---- figures -----------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency_line(label: str, seconds: list[float], base: list[float] | None = None) -> str:
    ms = [s * 1000 for s in seconds]
    p50, p99 = statistics.median(ms), pct(ms, 0.99)
    line = f"{label:44} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  (n={len(ms)})"
    if base:
        b = [s * 1000 for s in base]
        line += f"  {p50 / statistics.median(b):5.2f}x / {p99 / pct(b, 0.99):5.2f}x raw"
    return line


def rate_line(label: str, n: int, seconds: float, base: float | None = None) -> str:
    line = f"{label:44} {n / seconds:9.0f} msg/s  ({n} in {seconds:.2f} s)"
    if base:
        line += f"  {base / seconds:5.2f}x raw"
    return line


# ---- the emulator ------------------------------------------------------------------------


@contextlib.contextmanager
def emulator(kind: str, tmp: Path) -> Iterator[str]:
    if os.environ.get(harness.PUBSUB_ENV):
        yield os.environ[harness.PUBSUB_ENV]
        return
    runner = (
        google_emulator(tmp / "emulator.log")
        if kind == "google"
        else harness.running_server("pstest")
    )
    with runner as host:
        os.environ[harness.PUBSUB_ENV] = host
        try:
            yield host
        finally:
            del os.environ[harness.PUBSUB_ENV]


class BenchPubSub(PubSub):
    """Topics and subscriptions named after this process: an emulator shared with a test
    session (tests/test_bench.py) already holds the kit's `topic-0`..."""

    def __init__(self) -> None:
        super().__init__()
        self.prefix = f"bench{os.getpid()}-"


class Arrivals:
    """Arrival time (perf_counter) of each key, and a wait for one."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.cond = threading.Condition()

    def arrived(self, key: str) -> None:
        now = time.perf_counter()
        with self.cond:
            self.times.setdefault(key, now)
            self.cond.notify_all()

    def wait(self, key: str, timeout: float = 30) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: key in self.times, timeout):
                raise TimeoutError(f"nothing for {key} within {timeout} s")
            return self.times[key]


def subscribe(subscription: str, on_message: Callable[[Any], None]) -> Any:
    subscriber = pubsub_v1.SubscriberClient()

    def callback(message: Any) -> None:
        message.ack()
        on_message(message)

    return subscriber.subscribe(subscription, callback)


def in_loop(server: Server, coro: Any, timeout: float = 60) -> Any:
    loop: asyncio.AbstractEventLoop = server.loop  # type: ignore[attr-defined]
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


# ---- a: latency --------------------------------------------------------------------------


class RawPath:
    """publish -> arrival on the emulator alone, two ways (the figure is the faster):

    - "client": google-cloud-pubsub's PublisherClient sending each message at once (no
      batching wait; ordered publishing cannot do that, it always waits its batch
      latency, so unordered);
    - "rpc": the Publish RPC awaited on an asyncio loop of its own (grpc.aio), as the
      tracker publishes, with an ordering key.

    Both to a subscription like the tracker's (ordering on), the same subscriber."""

    def __init__(self, ps: PubSub) -> None:
        from google.pubsub_v1.services.publisher import PublisherAsyncClient

        self.topic = ps.topic()
        self.arrivals = Arrivals()
        self.future = subscribe(
            ps.subscription(self.topic), lambda m: self.arrivals.arrived(m.attributes["n"])
        )
        self.publisher = pubsub_v1.PublisherClient(batch_settings=AT_ONCE)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def make() -> Any:
            return PublisherAsyncClient()

        self.rpc = asyncio.run_coroutine_threadsafe(make(), self.loop).result(10)

    def sample(self, n: int, how: str) -> float:
        from google.pubsub_v1 import PubsubMessage

        key = f"{how}-{n}"
        data = operations_pb2.Operation(name=f"operations/{key}", done=True).SerializeToString()
        sent = time.perf_counter()
        if how == "client":
            self.publisher.publish(self.topic, data, n=key).result(10)
        else:
            message = PubsubMessage(data=data, attributes={"n": key}, ordering_key=key)
            call = self.rpc.publish(topic=self.topic, messages=[message], timeout=10)
            asyncio.run_coroutine_threadsafe(call, self.loop).result(10)
        return self.arrivals.wait(key) - sent

    def close(self) -> None:
        self.future.cancel()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class DonePath:
    """A `succeeded` event handed to a running tracker -> its done-notification arriving
    at a subscriber of the completion topic (the same subscriber code as `RawPath`)."""

    def __init__(self, server: Server, subscription: str) -> None:
        self.server = server
        self.arrivals = Arrivals()
        self.future = subscribe(
            subscription, lambda m: self.arrivals.arrived(m.attributes["operation"])
        )
        self.committed: dict[str, float] = {}
        server.tracker.add_hook(self._hook)

    def _hook(self, c: Committed) -> None:
        for name in c.done:
            self.committed[name] = time.perf_counter()

    def sample(self, n: int) -> tuple[float, float]:
        """(from the event, from its commit)."""
        name = f"operations/done-{n}"
        ingest = self.server.tracker.ingest
        in_loop(self.server, ingest([make_event(Kind.CREATED, name)], route="bench"))
        event = make_event(Kind.SUCCEEDED, name)
        sent = time.perf_counter()
        in_loop(self.server, ingest([event], route="bench"))
        got = self.arrivals.wait(name)
        return got - sent, got - self.committed[name]


def latency_figures(ps: PubSub, runs: int, tmp: Path, seed: int) -> list[str]:
    """Raw and tracker samples interleaved (one noise for both), each after a random pause:
    pstest hands messages to streaming pulls on a 10 ms tick, and a loop that sends at a
    fixed offset after the previous arrival would phase-lock to it."""
    rng = random.Random(seed)
    raw_path = RawPath(ps)
    topic = ps.topic()
    subscription = ps.subscription(topic)
    config = Config(
        db=str(tmp / "latency.db"), done_topic=topic, http_port=0, grpc_port=-1, log_level="warning"
    )
    raw: dict[str, list[float]] = {"client": [], "rpc": []}
    from_event: list[float] = []
    from_commit: list[float] = []
    try:
        with running(config) as server:
            done_path = DonePath(server, subscription)
            try:
                for n in range(-3, runs):  # three to warm up the streams
                    got = {}
                    for how in ("client", "rpc"):
                        time.sleep(rng.uniform(0, 0.02))
                        got[how] = raw_path.sample(n, how)
                    time.sleep(rng.uniform(0, 0.02))
                    e, c = done_path.sample(n)
                    if n >= 0:
                        for how, value in got.items():
                            raw[how].append(value)
                        from_event.append(e)
                        from_commit.append(c)
            finally:
                done_path.future.cancel()
    finally:
        raw_path.close()
    base = min(raw.values(), key=statistics.median)
    return [
        latency_line("latency: raw publish -> subscriber (client)", raw["client"]),
        latency_line("latency: raw publish -> subscriber (rpc)", raw["rpc"]),
        latency_line("latency: succeeded -> done-notification", from_event, base),
        latency_line("latency: commit -> done-notification", from_commit, base),
    ]


# ---- b: pull and push throughput -----------------------------------------------------------


def created_events(prefix: str, n: int) -> list[tuple[dict[str, str], bytes]]:
    return [to_binary(make_event(Kind.CREATED, f"operations/{prefix}-{i}")) for i in range(n)]


def raw_pull(subscription: str, n: int) -> float:
    """Seconds for a streaming-pull subscriber that only acks to see n messages."""
    seen: set[str] = set()
    all_in = threading.Event()
    lock = threading.Lock()

    def callback(message: Any) -> None:
        message.ack()
        with lock:
            seen.add(message.message_id)
            if len(seen) >= n:
                all_in.set()

    subscriber = pubsub_v1.SubscriberClient()
    start = time.perf_counter()
    future = subscriber.subscribe(
        subscription, callback, flow_control=pubsub_v1.types.FlowControl(max_messages=1000)
    )
    try:
        if not all_in.wait(300):
            raise TimeoutError(f"raw subscriber saw {len(seen)} of {n}")
        return time.perf_counter() - start
    finally:
        future.cancel()


def tracker_pull(subscription: str, n: int, tmp: Path) -> float:
    """Seconds for the tracker's PullSubscriber to apply n events (commit counted)."""
    config = Config(db=str(tmp / "pull.db"), http_port=0, grpc_port=-1, log_level="warning")
    applied = 0
    all_in = threading.Event()

    def hook(c: Committed) -> None:
        nonlocal applied
        if c.route == "pull":
            applied += sum(o == "applied" for o in c.outcomes)
            if applied >= n:
                all_in.set()

    with running(config) as server:
        server.tracker.add_hook(hook)
        puller = PullSubscriber(server.tracker, subscription)
        loop: asyncio.AbstractEventLoop = server.loop  # type: ignore[attr-defined]
        start = time.perf_counter()
        task = asyncio.run_coroutine_threadsafe(puller.run(), loop)
        try:
            if not all_in.wait(300):
                raise TimeoutError(f"tracker applied {applied} of {n}")
            return time.perf_counter() - start
        finally:
            loop.call_soon_threadsafe(puller.stop)
            task.cancel()


def pull_figures(ps: PubSub, n: int, tmp: Path, server: str) -> list[str]:
    topic = ps.topic()
    raw_sub, tracker_sub = (ps.subscription(topic, ordered=False) for _ in range(2))
    publisher = pubsub_v1.PublisherClient()
    futures = [publisher.publish(topic, body, **attrs) for attrs, body in created_events("pull", n)]
    for f in futures:
        f.result(60)
    raw = raw_pull(raw_sub, n)
    ours = tracker_pull(tracker_sub, n, tmp)
    lines = [
        rate_line("pull: raw subscriber, ack only", n, raw),
        rate_line("pull: tracker PullSubscriber (applied)", n, ours, raw),
    ]
    if server == "pstest":
        # pstest hands a streaming pull one message per stream per 10 ms tick.
        lines.append("pull: (pstest streams ~100 msg/s whoever pulls: --server google)")
    return lines


def envelope(attrs: dict[str, str], body: bytes, n: int) -> bytes:
    message = {
        "attributes": attrs,
        "data": base64.b64encode(body).decode(),
        "messageId": str(n),
        "publishTime": "2026-01-01T00:00:00Z",
    }
    return json.dumps({"message": message, "subscription": "projects/p/subscriptions/s"}).encode()


def ack_only_app() -> Starlette:
    async def ack(request: Request) -> Response:
        await request.body()
        return Response(status_code=204)

    return Starlette(routes=[Route(PUSH_PATH, ack, methods=["POST"])])


@contextlib.contextmanager
def serving(app: Starlette) -> Iterator[int]:
    """`app` on uvicorn in a thread, bound the way tracker.server binds (TCP_NODELAY)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def load(port: int, args: list[str]) -> dict[str, Any]:
    """Run the push client in a process of its own; its JSON summary."""
    out = subprocess.run(
        [sys.executable, __file__, "client", str(port), *args],
        capture_output=True,
        check=True,
        text=True,
        timeout=600,
    )
    return dict(json.loads(out.stdout.splitlines()[-1]))


def push_figures(n: int, connections: int, tmp: Path) -> list[str]:
    with serving(ack_only_app()) as port:
        raw = load(port, ["--count", str(n), "--connections", str(connections), "--prefix", "r"])
    config = Config(db=str(tmp / "push.db"), http_port=0, grpc_port=-1, log_level="warning")
    with running(config) as server:
        ours = load(
            server.http_port,
            ["--count", str(n), "--connections", str(connections), "--prefix", "t"],
        )
    label = f"push, same stack, {connections} connections"
    return [
        "push, same stack: our client against the server, not issue #13's baseline"
        " (server CPU per request against an ack-only handler)",
        rate_line(f"{label}, ack-only handler", n, raw["seconds"]) + f"  {raw['status']}",
        rate_line(f"{label}, /v1/pubsub/push", n, ours["seconds"], raw["seconds"])
        + f"  {ours['status']}",
    ]


# ---- b2: push delivered by Google's emulator -----------------------------------------------


class Counter:
    """Requests seen by the raw endpoint: a count to wait for, and the most in flight."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.all_in = threading.Event()

    def expect(self, n: int) -> None:
        self.count, self.target = 0, n
        self.all_in.clear()


def counting_app(counter: Counter) -> Starlette:
    """A raw push endpoint: reads the body, answers 204, counts. Every path (wrapped
    deliveries go to PUSH_PATH, unwrapped ones to /v1/events)."""

    async def ack(request: Request) -> Response:
        counter.in_flight += 1
        counter.max_in_flight = max(counter.max_in_flight, counter.in_flight)
        await request.body()
        counter.in_flight -= 1
        counter.count += 1
        if counter.count >= counter.target:
            counter.all_in.set()
        return Response(status_code=204)

    return Starlette(routes=[Route("/{path:path}", ack, methods=["POST"])])


class Applied:
    """Events the tracker applied, by an after-commit hook; a count to wait for."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.lock = threading.Lock()
        self.all_in = threading.Event()

    def expect(self, n: int) -> None:
        with self.lock:
            self.count, self.target = 0, n
            self.all_in.clear()

    def hook(self, c: Committed) -> None:
        with self.lock:
            self.count += sum(o == "applied" for o in c.outcomes)
            if self.target and self.count >= self.target:
                self.all_in.set()


_pushed = itertools.count()


class Endpoint:
    """A push endpoint in a process of its own (`bench/pubsub.py endpoint raw|tracker`),
    as a Cloud Run service is: the bench's publisher, a Python gRPC client, then never
    takes the endpoint's GIL. It counts what arrived (raw: requests answered 204; tracker:
    events applied, by an after-commit hook) and says when a count it was told to expect
    is in."""

    def __init__(self, kind: str, db: Path | None = None) -> None:
        database = ["--db", str(db)] if db is not None else []
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "endpoint", kind, *database],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in, self._out = self.proc.stdin, self.proc.stdout
        first = self._out.readline().split()
        if first[:1] != ["port"]:
            self.close()
            raise RuntimeError(f"endpoint {kind} did not start: {first}")
        self.url = f"http://127.0.0.1:{first[1]}"
        self.count = 0
        self.max_in_flight = 0

    def expect(self, n: int, timeout: float) -> None:
        self._in.write(f"expect {n} {timeout}\n")
        self._in.flush()

    def wait(self) -> bool:
        """Block until the endpoint reports (all in, or its timeout passed)."""
        word, count, most = self._out.readline().split()
        self.count, self.max_in_flight = int(count), max(self.max_in_flight, int(most))
        return word == "done"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def endpoint_main(kind: str, db: str) -> None:
    """The endpoint process: `port N`, then for each `expect N TIMEOUT` line on stdin one
    line, `done|timeout COUNT MAX_IN_FLIGHT`, once N arrived or the timeout passed."""
    target: Counter | Applied
    with contextlib.ExitStack() as stack:
        if kind == "raw":
            target = Counter()
            port = stack.enter_context(serving(counting_app(target)))
        else:
            target = Applied()
            config = Config(db=db, http_port=0, grpc_port=-1, log_level="warning")
            server = stack.enter_context(running(config))
            server.tracker.add_hook(target.hook)
            port = server.http_port
        print(f"port {port}", flush=True)
        for line in sys.stdin:
            _, n, timeout = line.split()
            target.expect(int(n))
            word = "done" if target.all_in.wait(float(timeout)) else "timeout"
            most = target.max_in_flight if isinstance(target, Counter) else 0
            print(f"{word} {target.count} {most}", flush=True)


def delivered(
    ps: PubSub, endpoint: Endpoint, path: str, events: list[tuple[dict[str, str], bytes]]
) -> float:
    """Seconds from the first publish until `endpoint` has them all: the emulator pushing
    each message of a fresh topic to `path` through a push subscription made before the
    clock starts (wrapped to PUSH_PATH; else no_wrapper with write_metadata)."""
    topic = ps.topic()
    name = f"projects/{PROJECT}/subscriptions/{ps.prefix}sub-{next(_pushed)}"
    push: dict[str, Any] = {"push_endpoint": endpoint.url + path}
    if path != PUSH_PATH:
        push["no_wrapper"] = {"write_metadata": True}  # the attributes as headers too
    ps.subscriber.create_subscription(
        request={"name": name, "topic": topic, "push_config": push, "ack_deadline_seconds": 60}
    )
    publisher = pubsub_v1.PublisherClient()
    try:
        endpoint.expect(len(events), max(60, len(events) / 20))
        start = time.perf_counter()
        futures = [publisher.publish(topic, body, **attrs) for attrs, body in events]
        for f in futures:
            f.result(60)
        if not endpoint.wait():
            raise TimeoutError(f"{endpoint.url}{path} got {endpoint.count} of {len(events)}")
        return time.perf_counter() - start
    finally:
        ps.subscriber.delete_subscription(subscription=name)
        publisher.delete_topic(topic=topic)


@contextlib.contextmanager
def google_pubsub(server: str, host: str, tmp: Path) -> Iterator[str]:
    """Google's emulator: the bench's own with --server google, else one for this part
    (pstest records push configs but never delivers them)."""
    if server == "google":
        yield host
        return
    with google_emulator(tmp / "push-emulator.log") as google:
        os.environ[harness.PUBSUB_ENV] = google
        try:
            yield google
        finally:
            os.environ[harness.PUBSUB_ENV] = host


def emulator_push_figures(server: str, host: str, n: int, runs: int, tmp: Path) -> list[str]:
    """Google's emulator pushing n messages to (a) a raw endpoint that only answers 204
    and (b) the tracker (all n applied), wrapped (/v1/pubsub/push) and unwrapped
    (no_wrapper: the attributes as headers, a binary-mode CloudEvent for /v1/events);
    runs interleaved raw, tracker, raw, tracker; medians."""
    seconds: dict[str, list[float]] = {}
    with (
        google_pubsub(server, host, tmp) as google,
        contextlib.closing(Endpoint("raw")) as raw,
        contextlib.closing(Endpoint("tracker", tmp / "pushed.db")) as tracker,
    ):
        ps = BenchPubSub()
        ps.prefix += "pushed-"
        targets = {"wrapped": PUSH_PATH, "unwrapped": "/v1/events"}
        for run in range(runs):
            for how, path in targets.items():
                events = created_events(f"pushed-{how}-{run}", n)
                for label, endpoint in ((f"raw {how}", raw), (f"tracker {how}", tracker)):
                    seconds.setdefault(label, []).append(delivered(ps, endpoint, path, events))
    lines = [
        f"push delivered by Google's emulator ({google}): {n} messages a run, {runs} runs"
        f" interleaved, medians; each endpoint a process of its own; the raw endpoint saw at"
        f" most {raw.max_in_flight} pushes in flight"
    ]
    for how, path in targets.items():
        base, ours = seconds[f"raw {how}"], seconds[f"tracker {how}"]
        ratios = sorted(r / o for r, o in zip(base, ours, strict=True))
        spread = f"  runs {ratios[0]:.2f}-{ratios[-1]:.2f}x"
        lines.append(
            rate_line(f"push emulator, {how}: raw endpoint, 204 only", n, statistics.median(base))
        )
        lines.append(
            rate_line(
                f"push emulator, {how}: tracker {path} (applied)",
                n,
                statistics.median(ours),
                statistics.median(base),
            )
            + spread
        )
    return lines


# ---- c: wait and memory --------------------------------------------------------------------


def wait_latency(runs: int, tmp: Path) -> list[float]:
    """`succeeded` handed to the tracker -> a `:wait` caller answered over HTTP."""
    config = Config(db=str(tmp / "wait.db"), http_port=0, grpc_port=-1, log_level="warning")
    out: list[float] = []
    with running(config) as server, httpx.Client(base_url=server.http_url, timeout=30) as http:
        for n in range(-3, runs):
            name = f"operations/wait-{n}"
            in_loop(server, server.tracker.ingest([make_event(Kind.CREATED, name)], route="b"))
            woke: list[float] = []

            def waiter(name: str = name, woke: list[float] = woke) -> None:
                http.post(f"/v1/{name}:wait", json={"timeout": "20s"}).raise_for_status()
                woke.append(time.perf_counter())

            thread = threading.Thread(target=waiter)
            thread.start()
            while not server.tracker.hub.watching(name):  # the waiter is subscribed
                time.sleep(0.0005)
            event = make_event(Kind.SUCCEEDED, name)
            sent = time.perf_counter()
            in_loop(server, server.tracker.ingest([event], route="bench"))
            thread.join(30)
            if n >= 0:
                out.append(woke[0] - sent)
    return out


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memory_figures(ps: PubSub, seconds: float, every: float, tmp: Path) -> list[str]:
    """RSS of a `tracker serve` process under push load with the completion topic on."""
    topic = ps.topic()
    notified = [0]
    future = subscribe(
        ps.subscription(topic, ordered=False), lambda m: notified.__setitem__(0, notified[0] + 1)
    )
    port = free_port()
    env = {**os.environ, "TRACKER_LOG_LEVEL": "warning"}
    serve = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "tracker"),
            "serve",
            "--db",
            str(tmp / "memory.db"),
            "--http-port",
            str(port),
            "--grpc-port",
            "-1",
            "--done-topic",
            topic,
        ],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    samples: list[tuple[float, int]] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(600):
                with contextlib.suppress(httpx.TransportError):
                    if http.get("/healthz").status_code == 200:
                        break
                time.sleep(0.05)
        client = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "client",
                str(port),
                "--seconds",
                str(seconds),
                "--connections",
                "4",
                "--prefix",
                "m",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None
        client.stdout.readline()  # "ready": imported, about to send
        start = time.perf_counter()
        samples.append((0.0, rss_kib(serve.pid)))
        while client.poll() is None:
            time.sleep(every)
            samples.append((time.perf_counter() - start, rss_kib(serve.pid)))
        sent = json.loads(client.stdout.read())
        published = metric(port, 'tracker_notifications_total{result="sent"}')
    finally:
        serve.terminate()
        serve.wait(30)
        future.cancel()
    digits = 0 if every >= 1 else 1
    series = " ".join(f"{t:.{digits}f}s:{kib / 1024:.1f}" for t, kib in samples)
    values = [kib / 1024 for _, kib in samples]
    half = values[len(values) // 2]
    return [
        f"memory: RSS MiB of `tracker serve` under push load: {sent.get('count', 0)} events"
        f" in {seconds:g} s, {published:.0f} done-notifications published,"
        f" {notified[0]} received by a subscriber",
        f"memory: series {series}",
        f"memory: first {values[0]:.1f} MiB (load starting)  last {values[-1]:.1f} MiB"
        f"  max {max(values):.1f} MiB  last/midway {values[-1] / half:.3f}x",
    ]


def metric(port: int, line_start: str) -> float:
    """One sample of the tracker's /metrics (0 when absent)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    return 0.0


# ---- the push client (a process of its own) ----------------------------------------------


def request_bytes(port: int, body: bytes) -> bytes:
    head = (
        f"POST {PUSH_PATH} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> int:
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def client(port: int, count: int, seconds: float, connections: int, prefix: str) -> None:
    """Minimal HTTP/1.1 keep-alive client: cheap enough that the server is what is timed.

    With --count: that many created events, built before the clock starts. With
    --seconds: created + succeeded pairs of new operations until the time is up.
    """
    statuses: dict[int, int] = {}
    print("ready", flush=True)
    requests = [
        request_bytes(port, envelope(a, b, i))
        for i, (a, b) in enumerate(created_events(f"{prefix}{os.getpid()}", count))
    ]
    start = time.perf_counter()
    deadline = start + seconds

    async def one_connection(lane: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def send(req: bytes) -> None:
            status = await exchange(reader, writer, req)
            statuses[status] = statuses.get(status, 0) + 1

        if count:
            for i in range(lane, count, connections):
                await send(requests[i])
        k = 0
        while seconds and time.perf_counter() < deadline:
            name = f"operations/{prefix}{os.getpid()}-{lane}-{k}"
            for kind in (Kind.CREATED, Kind.SUCCEEDED):
                attrs, body = to_binary(make_event(kind, name))
                await send(request_bytes(port, envelope(attrs, body, k)))
            k += 1
        writer.close()

    await asyncio.gather(*(one_connection(c) for c in range(connections)))
    elapsed = time.perf_counter() - start
    print(json.dumps({"seconds": elapsed, "count": sum(statuses.values()), "status": statuses}))


# ---- main --------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "endpoint":
        parser = argparse.ArgumentParser()
        parser.add_argument("mode")
        parser.add_argument("kind", choices=["raw", "tracker"])
        parser.add_argument("--db", default="", help="the tracker's SQLite file")
        a = parser.parse_args()
        endpoint_main(a.kind, a.db)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        parser = argparse.ArgumentParser()
        parser.add_argument("mode")
        parser.add_argument("port", type=int)
        parser.add_argument("--count", type=int, default=0)
        parser.add_argument("--seconds", type=float, default=0)
        parser.add_argument("--connections", type=int, default=8)
        parser.add_argument("--prefix", default="c")
        a = parser.parse_args()
        asyncio.run(client(a.port, a.count, a.seconds, a.connections, a.prefix))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", choices=["pstest", "google"], default="pstest")
    parser.add_argument("--quick", action="store_true", help="small sizes, ~3 s of load")
    parser.add_argument("--seconds", type=float, help="memory load duration (60)")
    parser.add_argument("--runs", type=int, help="latency samples (200)")
    parser.add_argument("--messages", type=int, help="push messages (5000)")
    parser.add_argument(
        "--pull-messages", type=int, help="pull messages (5000; 1000 on pstest, ~100 msg/s)"
    )
    parser.add_argument(
        "--pushed-messages", type=int, help="messages Google's emulator pushes a run (3000)"
    )
    parser.add_argument("--push-runs", type=int, help="runs of each emulator push figure (3)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seed", type=int, default=13, help="of the pauses between samples")
    parser.add_argument("--parts", default="latency,pull,push,push-emulator,wait,memory")
    args = parser.parse_args()
    pull = 1000 if args.server == "pstest" else 5000
    sizes = (3.0, 20, 200, 200, 100, 2) if args.quick else (60.0, 200, 5000, pull, 3000, 3)
    fields = ("seconds", "runs", "messages", "pull_messages", "pushed_messages", "push_runs")
    for field, size in zip(fields, sizes, strict=True):
        if getattr(args, field) is None:
            setattr(args, field, size)
    every = 5.0 if args.seconds >= 30 else max(args.seconds / 6, 0.5)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        with emulator(args.server, tmp) as host:
            print(f"bench/pubsub.py on {args.server} ({host}), SQLite file, {os.cpu_count()} cores")
            ps = BenchPubSub()
            parts: dict[str, Callable[[], list[str]]] = {
                "latency": lambda: latency_figures(ps, args.runs, tmp, args.seed),
                "pull": lambda: pull_figures(ps, args.pull_messages, tmp, args.server),
                "push": lambda: push_figures(args.messages, args.connections, tmp),
                "push-emulator": lambda: emulator_push_figures(
                    args.server, host, args.pushed_messages, args.push_runs, tmp
                ),
                "wait": lambda: [
                    latency_line("wait: succeeded -> :wait answered", wait_latency(args.runs, tmp))
                ],
                "memory": lambda: memory_figures(ps, args.seconds, every, tmp),
            }
            for part in args.parts.split(","):
                for line in parts[part]():
                    print(line, flush=True)


if __name__ == "__main__":
    main()
