"""A separate tracker process for the concurrency test: applies events, one per transaction.

    python -m tests.apply_worker STORE EVENTS_JSON
    STORE: sqlite:PATH | spanner:DATABASE_PATH[:explicit-begin]

EVENTS_JSON holds a list of structured CloudEvents (tracker.bindings.to_structured_dict).
"""

from __future__ import annotations

import sys

from tracker.bindings import parse_batch
from tracker.stores.base import Store


def open_store(spec: str) -> Store:
    kind, _, rest = spec.partition(":")
    if kind == "sqlite":
        from tracker.stores.sqlite import SqliteStore

        return SqliteStore(rest, busy_timeout_ms=30000)
    from tracker.stores.spanner import SpannerStore

    path, _, flag = rest.partition(":")
    return SpannerStore(path, explicit_begin=flag == "explicit-begin")


def main() -> None:
    store = open_store(sys.argv[1])
    with open(sys.argv[2], "rb") as f:
        events = parse_batch(f.read())
    for event in events:
        store.apply([event])
    store.close()
    print(len(events))


if __name__ == "__main__":
    main()
