"""Pull throughput of 1, 2 and 3 `tracker serve` processes on one Spanner database,
sharing one Pub/Sub subscription. Prints figures only.

    .venv/bin/python bench/scale.py [--servers handy|google|both] [--quick]

handy: pstest + handy-spanner; google: Google's Pub/Sub emulator + Google's Cloud
Spanner emulator. For each count, a fresh database and subscription; the instances
start and listen, then the stream (created, progress..., succeeded per operation,
ordering key = operation) is published at once; the figure is events / seconds from the
first publish until every event id is recorded in the database. The aborted-transaction
retries (tracker_store_transaction_retries_total) of all instances are printed beside.

Emulators are not Cloud Spanner (Google's runs one read-write transaction at a time,
handy-spanner is SQLite behind a lock), and every process shares this machine's cores:
the ratio to one instance says what more processes do on the same emulator, not what
they do on Cloud Spanner.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import stream
from tests.emulators import harness
from tests.pubsub_kit import PubSub, google_emulator
from tests.scale_kit import instances
from tracker.bindings import to_binary
from tracker.events import Event
from tracker.stores import spanner_schema

PROJECT, INSTANCE = "bench-scale", "bench"
_ids = itertools.count()


@contextlib.contextmanager
def servers(kind: str, logs: Path) -> Iterator[None]:
    """Point this process's environment (and the instances') at both servers."""
    os.environ.update(harness.SPANNER_CLIENT_ENV)
    with contextlib.ExitStack() as stack:
        if kind == "handy":
            pubsub = stack.enter_context(harness.running_server("pstest", reuse_env=False))
        else:
            pubsub = stack.enter_context(google_emulator(logs / "pubsub.log"))
        spanner = "handy-spanner" if kind == "handy" else "cloud-spanner-emulator"
        host = stack.enter_context(harness.running_server(spanner, reuse_env=False))
        os.environ["PUBSUB_EMULATOR_HOST"] = pubsub
        os.environ["SPANNER_EMULATOR_HOST"] = host
        yield


def database(kind: str) -> str:
    from google.cloud import spanner

    client = spanner.Client(project=PROJECT)
    instance = client.instance(
        INSTANCE, configuration_name=f"projects/{PROJECT}/instanceConfigs/emulator-config"
    )
    if kind == "google":
        with contextlib.suppress(Exception):  # exists after the first round
            instance.create().result(60)
    db = instance.database(f"scale{os.getpid()}x{next(_ids)}")
    db.create().result(60)
    spanner_schema.apply(db, "emulator" if kind == "handy" else "canonical")
    return db.name  # type: ignore[no-any-return]


def recorded(path: str) -> int:
    db = spanner_schema.open_database(path)
    with db.snapshot() as snapshot:
        (row,) = list(snapshot.execute_sql("SELECT COUNT(*) FROM AppliedEvents"))
    return int(row[0])


def publish(pubsub: PubSub, topic: str, events: list[Event]) -> None:
    futures = []
    for event in events:
        headers, body = to_binary(event)
        futures.append(
            pubsub.publisher.publish(topic, body, ordering_key=event.operation, **headers)
        )
    for future in futures:
        future.result(120)


def measure(kind: str, count: int, events: list[Event], logs: Path) -> tuple[float, float]:
    """(events/s, aborted-transaction retries) for `count` instances."""
    path = database(kind)
    pubsub = PubSub()
    PubSub.prefix = f"scale{os.getpid()}-"
    topic = pubsub.topic()
    subscription = pubsub.subscription(topic, ordered=True)
    with instances(
        count,
        path,
        logs,
        explicit_begin=kind == "handy",
        subscription=subscription,
        max_outstanding_messages=1000,
    ) as group:
        start = time.perf_counter()
        sender = threading.Thread(target=publish, args=(pubsub, topic, events))
        sender.start()
        deadline = time.monotonic() + 600
        while recorded(path) < len(events):
            if time.monotonic() > deadline:
                raise SystemExit(f"{count} instances: not all events applied in 600 s")
            time.sleep(0.1)
        took = time.perf_counter() - start
        sender.join()
        retries = sum(i.metric("tracker_store_transaction_retries_total") for i in group)
    return len(events) / took, retries


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", default="both", choices=["handy", "google", "both"])
    parser.add_argument("--operations", type=int, default=100)
    parser.add_argument("--events", type=int, default=6, help="events per operation")
    parser.add_argument("--max-instances", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small, handy only (for tests)")
    args = parser.parse_args()
    if args.quick:
        args.servers, args.operations, args.events, args.max_instances = "handy", 10, 4, 2
    kinds = ["handy", "google"] if args.servers == "both" else [args.servers]
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            label = "pstest + handy-spanner" if kind == "handy" else "Google's emulators"
            with servers(kind, Path(tmp)):
                print(f"{label}: {args.operations} operations x {args.events} events, pull")
                base = 0.0
                for count in range(1, args.max_instances + 1):
                    events = stream(args.operations, args.events, f"s{count}", interleaved=True)
                    rate, retries = measure(kind, count, events, Path(tmp))
                    base = base or rate
                    print(
                        f"  {count} instance{'s' if count > 1 else ' '}  {rate:8.0f} events/s"
                        f"  x{rate / base:.2f} of 1 instance  aborted retries {retries:g}",
                        flush=True,
                    )
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


if __name__ == "__main__":
    main()
