"""`tracker list`: filter, order, limit, count, JSON or a table, and a live table.

`--watch` polls: it lists again every `--interval` seconds (the Operations API has no
stream of a whole collection's changes) and redraws the table when it changed. On a
terminal the table is redrawn in place (rich.live); into a file or a pipe each changed
table is printed after the last, so that a script reads every state it saw.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import TYPE_CHECKING

import click
from google.longrunning import operations_proto_pb2 as operations_pb2  # without grpc

from tracker.cli._base import CONTEXT, cli, fail
from tracker.cli.auth import Connection, client_options
from tracker.cli.render import _done_text, _stdout_console
from tracker.wire import metadata, operation_to_dict

if TYPE_CHECKING:
    from rich.table import Table

    from tracker.client import TrackerClient

COLUMNS = ("NAME", "DONE", "PERCENT", "MESSAGE", "TYPE", "LABELS")


def fetch(
    client: TrackerClient,
    filter_text: str,
    page_size: int,
    order_by: str,
    limit: int | None,
    parent: str = "",
) -> list[operations_pb2.Operation]:
    """Every matching operation in order, or the first `limit` of them (no more pages
    fetched than needed)."""
    size = page_size or (min(limit, 1000) if limit else 0)
    operations = client.list(filter_text, size, order_by, parent=parent)
    return list(itertools.islice(operations, limit) if limit is not None else operations)


def table(operations: list[operations_pb2.Operation]) -> Table:
    from rich.table import Table

    out = Table(box=None, pad_edge=False)
    for column in COLUMNS:
        out.add_column(column, no_wrap=column in ("NAME", "DONE", "PERCENT"))
    for operation in operations:
        meta = metadata(operation)
        out.add_row(
            operation.name,
            _done_text(operation),
            f"{meta.percent:.0f}%" if meta else "",
            meta.message if meta else "",
            meta.operation_type if meta else "",
            ",".join(f"{k}={v}" for k, v in sorted(meta.labels.items())) if meta else "",
        )
    return out


@cli.command("list", context_settings=CONTEXT)
@click.option(
    "--filter",
    "filter_text",
    default="",
    help='AIP-160 filter, e.g. done = false AND labels.team = "a" or result = failed.',
)
@click.option(
    "--parent",
    default="",
    help="Only the operations of projects/P or projects/P/locations/L (default: all).",
)
@click.option(
    "--order-by",
    default="",
    help='AIP-132 order: create_time, update_time, end_time, name; e.g. "create_time desc".',
)
@click.option(
    "--limit", type=click.IntRange(1), default=None, help="At most N operations (default: all)."
)
@click.option(
    "--page-size",
    type=click.IntRange(0),
    default=0,
    help="Operations per request (0: the server's default, or --limit up to 1000).",
)
@click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table, or a JSON array of Operations.",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --output json.")
@click.option("--count", is_flag=True, help="Print only how many operations match.")
@click.option("--watch", is_flag=True, help="Keep the table up to date (polls; Ctrl-C ends).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=2.0,
    show_default=True,
    help="--watch: seconds between two lists.",
)
@click.option(
    "--watch-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="--watch: stop after this many seconds (default: until Ctrl-C).",
)
@client_options
def list_(
    filter_text: str,
    parent: str,
    order_by: str,
    limit: int | None,
    page_size: int,
    output: str,
    as_json: bool,
    count: bool,
    watch: bool,
    interval: float,
    watch_timeout: float | None,
    connect: Connection,
) -> None:
    """List operations (every page, or the first --limit)."""
    as_json = as_json or output == "json"
    if watch and (as_json or count):
        fail("--watch shows a table: it does not go with --output json or --count")
    with connect.client() as client:
        if count:
            click.echo(client.count(filter_text, parent=parent))
            return
        if watch:
            _watch(client, filter_text, page_size, order_by, limit, interval, watch_timeout, parent)
            return
        operations = fetch(client, filter_text, page_size, order_by, limit, parent)
    if as_json:
        click.echo(json.dumps([operation_to_dict(o) for o in operations], indent=2))
        return
    _stdout_console().print(table(operations))


def _watch(
    client: TrackerClient,
    filter_text: str,
    page_size: int,
    order_by: str,
    limit: int | None,
    interval: float,
    timeout: float | None,
    parent: str = "",
) -> None:
    from rich.live import Live

    console = _stdout_console()
    deadline = None if timeout is None else time.monotonic() + timeout
    stop = threading.Event()
    last: list[operations_pb2.Operation] | None = None
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    try:
        if live is not None:
            live.start()
        while True:
            operations = fetch(client, filter_text, page_size, order_by, limit, parent)
            if operations != last:
                last = operations
                if live is not None:
                    live.update(table(operations), refresh=True)
                else:
                    console.print(table(operations))
                    console.print()
                    console.file.flush()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            stop.wait(interval if remaining is None else min(interval, remaining))
    except KeyboardInterrupt:
        return
    finally:
        if live is not None:
            live.stop()
