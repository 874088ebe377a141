"""`tracker history NAME`: the events that reached an operation, and the tracker's own
actions on it, oldest first (GET /v1/{name}/events)."""

from __future__ import annotations

import itertools
import json
from typing import Final

import click
from rich.table import Table

from tracker.cli._base import CONTEXT, cli
from tracker.cli.auth import Connection, client_options
from tracker.cli.render import _stdout_console
from tracker.client import HistoryEntry

SUMMARY_CHARS: Final = 60


def summary(entry: HistoryEntry) -> str:
    """The data in a few words: compact JSON cut to SUMMARY_CHARS, or a byte count."""
    if entry.data is not None:
        text = json.dumps(entry.data, separators=(",", ":"), ensure_ascii=False)
        if text == "{}":
            return ""
        text = text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"
    else:
        text = f"<{len(entry.data_bytes or b'')} bytes>"
    return text + " (truncated)" if entry.truncated else text


@cli.command(context_settings=CONTEXT)
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of the entries.")
@click.option(
    "--limit",
    type=click.IntRange(1),
    metavar="N",
    help="Show at most the N oldest entries kept (default: all).",
)
@client_options
def history(name: str, as_json: bool, limit: int | None, connect: Connection) -> None:
    """Show the event history of operation NAME, oldest first.

    One row per event that reached it (applied, duplicate, stale or late) and per action
    of the tracker's own (source "tracker": a cancel, a retry start, an expiry, a
    children policy), as far as the tracker keeps them (--history-per-operation).
    """
    page_size = min(limit, 1000) if limit else 0
    with connect.client() as client:
        entries = list(itertools.islice(client.history(name, page_size), limit))
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    table = Table(box=None, pad_edge=False)
    for column in ("TIME", "TYPE", "OUTCOME", "ID", "SOURCE", "SEQ", "ATTEMPT", "DATA"):
        table.add_column(column, no_wrap=column != "DATA")
    for e in entries:
        table.add_row(
            e.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z" if e.time else "",
            e.kind,
            e.outcome,
            e.id,
            e.source,
            "" if e.sequence is None else str(e.sequence),
            str(e.attempt),
            summary(e),
        )
    _stdout_console().print(table)
