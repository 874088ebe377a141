"""A real tracker process over a store adapter that fails on purpose.

    python -m tests.faulty_serve --db PATH --subscription SUB [--busy-until-file F]

`FaultyStore` is a SqliteStore that fails inside the store for chosen operations:
a batch holding an operation whose name contains "explode" raises an error nobody
named (as a store bug or an unexpected vendor error would); while the file given by
--busy-until-file exists, every write is StoreUnavailable (an outage). Everything else
is the real server: `Server.serve_forever`, the pull subscriber, the HTTP routes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from google.longrunning import operations_pb2

from tracker.config import Config
from tracker.errors import StoreUnavailable
from tracker.events import Event
from tracker.notices import Wanted
from tracker.server import Server
from tracker.stores.base import BatchResult
from tracker.stores.sqlite import SqliteStore

EXPLODE = "explode"
SECRET = "faulty store: secret connection string"


class FaultyStore(SqliteStore):
    def __init__(self, path: str, busy_flag: Path | None = None) -> None:
        super().__init__(path)
        self.busy_flag = busy_flag

    def apply(
        self, events: Sequence[Event], now: datetime | None = None, *, notify: Wanted | bool = True
    ) -> BatchResult:
        if self.busy_flag is not None and self.busy_flag.exists():
            raise StoreUnavailable("faulty store: unavailable while the flag file exists")
        if any(EXPLODE in e.operation for e in events):
            raise RuntimeError("faulty store: disk on fire")
        return super().apply(events, now, notify=notify)

    def get_operation(self, name: str) -> operations_pb2.Operation | None:
        if EXPLODE in name:  # a failure whose text must never reach the caller
            raise RuntimeError(SECRET)
        return super().get_operation(name)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--subscription", required=True)
    parser.add_argument("--busy-until-file", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO")
    config = Config(db=args.db, http_port=0, grpc_port=-1, subscription=args.subscription)
    store = FaultyStore(args.db, args.busy_until_file)
    asyncio.run(Server(config, store=store).serve_forever())


if __name__ == "__main__":
    main()
