"""Done-notification -> OperationFuture resolved, against the emulator's own latency.

    .venv/bin/python bench/notify_future.py [--server pstest|google] [--quick] [--runs 200]

One topic, two subscriptions. Each sample publishes one done-notification (the tracker's
own attributes and data) with a raw PublisherClient sending it at once; a raw streaming-
pull subscriber that only acks records its arrival (the baseline), and a
`tracker.completions.Completions` on the other subscription resolves the future waiting
on that operation (its done-callback records the time). Run with 1 waiter (the measured
future alone) and with 500 (499 more futures pending on other operations on the same
Completions). Prints p50/p99 of each and the ratio to the raw arrival of the same
messages. Samples are spaced by a random pause of up to 20 ms.

`--quick` (20 samples, 50 waiters) is what tests/test_bench.py runs; its figures mean
nothing. Two cores shared with other work: run it 2-3 times and read the medians.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
from google.longrunning import operations_pb2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pubsub import AT_ONCE, BenchPubSub, emulator, latency_line  # noqa: E402
from tracker.bindings import done_attributes  # noqa: E402
from tracker.client import Completions, OperationFuture, TrackerClient  # noqa: E402
from tracker.config import Config  # noqa: E402
from tracker.server import running  # noqa: E402


def measure(
    ps: BenchPubSub, client: TrackerClient, runs: int, waiters: int, seed: int
) -> tuple[list[float], list[float]]:
    """(raw arrival, future resolved) seconds after publish, per sample."""
    topic = ps.topic()
    raw_sub = ps.subscription(topic, ordered=False)
    future_sub = ps.subscription(topic, ordered=False)
    sent: dict[str, float] = {}
    raw: dict[str, float] = {}
    lock = threading.Lock()
    arrived = threading.Condition(lock)

    def on_raw(message: Any) -> None:
        now = time.perf_counter()
        message.ack()
        with arrived:
            raw[message.attributes["operation"]] = now
            arrived.notify_all()

    subscriber = pubsub_v1.SubscriberClient()
    stream = subscriber.subscribe(raw_sub, on_raw)
    publisher = pubsub_v1.PublisherClient(batch_settings=AT_ONCE)
    rng = random.Random(seed)
    resolved: dict[str, float] = {}
    with Completions(future_sub) as completions:
        idle = [
            client.operation(f"operations/idle-{uuid.uuid4().hex[:8]}", completions=completions)
            for _ in range(waiters - 1)
        ]

        def on_done(future: OperationFuture[Any]) -> None:
            now = time.perf_counter()
            with arrived:
                resolved[future.name] = now
                arrived.notify_all()

        for index in range(runs + 3):  # three warm-up samples, dropped
            name = f"operations/bench-{uuid.uuid4().hex[:10]}"
            future: OperationFuture[Any] = client.operation(name, completions=completions)
            future.add_done_callback(on_done)
            assert completions.waiting() == waiters
            operation = operations_pb2.Operation(name=name, done=True)
            attributes = done_attributes(f"n-{index}", operation)
            time.sleep(rng.uniform(0, 0.02))
            with lock:
                sent[name] = time.perf_counter()
            publisher.publish(topic, operation.SerializeToString(), **attributes).result()
            with arrived:
                ok = arrived.wait_for(lambda n=name: n in raw and n in resolved, timeout=60)
            assert ok, f"no notification for {name} within 60 s"
        assert all(not f.done() for f in idle)
    stream.cancel()
    subscriber.close()
    names = list(sent)[3:]
    return (
        [raw[n] - sent[n] for n in names],
        [resolved[n] - sent[n] for n in names],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", choices=["pstest", "google"], default="pstest")
    parser.add_argument("--quick", action="store_true", help="20 samples, 50 waiters")
    parser.add_argument("--runs", type=int, help="samples per figure (200)")
    parser.add_argument("--waiters", type=int, help="waiters of the second figure (500)")
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()
    runs = args.runs or (20 if args.quick else 200)
    many = args.waiters or (50 if args.quick else 500)
    with tempfile.TemporaryDirectory() as name, emulator(args.server, Path(name)) as host:
        print(f"bench/notify_future.py on {args.server} ({host})", flush=True)
        ps = BenchPubSub()
        config = Config(db=":memory:", http_port=0, grpc_port=-1)
        with running(config) as server, TrackerClient(server.http_url) as client:
            for waiters in (1, many):
                base, got = measure(ps, client, runs, waiters, args.seed)
                print(latency_line(f"raw publish -> subscriber ({waiters} waiters run)", base))
                label = f"notification -> future resolved, {waiters} waiters"
                print(latency_line(label, got, base))


if __name__ == "__main__":
    main()
