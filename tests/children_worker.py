"""A separate tracker process for the children race: ends its children at a signal.

    python -m tests.children_worker STORE EVENTS_JSON
    STORE: sqlite:PATH | spanner:DATABASE_PATH[:explicit-begin]

Opens the store, prints `ready`, waits for a line on stdin (the test's barrier: it
answers once every process is ready), then applies each event of EVENTS_JSON (structured
CloudEvents) in a transaction of its own and prints how many outbox rows it wrote.
"""

from __future__ import annotations

import sys

from tests.apply_worker import open_store
from tracker.bindings import parse_batch


def main() -> None:
    store = open_store(sys.argv[1])
    with open(sys.argv[2], "rb") as f:
        events = parse_batch(f.read())
    store.get_operation(events[0].operation)  # sessions and connections up before the go
    print("ready", flush=True)
    sys.stdin.readline()
    written = sum(store.apply([event]).notices for event in events)
    store.close()
    print(written, flush=True)


if __name__ == "__main__":
    main()
