"""`tracker dead-letters`: see, replay, delete and purge dead letters over the tracker's
HTTP API (/v1/deadLetters, docs/dead-letters.md), and replay the dead-letter topic.

`replay-topic SUBSCRIPTION` pulls from the dead-letter topic's subscription (Pub/Sub)
and posts the messages to the tracker (`POST /v1/deadLetters:replayMessages`), which
applies each or, when it fails again, records it in its dead-letter table. Only the
messages the tracker answered for are acked; when the tracker cannot be reached or
answers an error, the batch is nacked and stays on the subscription. `--dry-run` asks
the tracker to parse only, then nacks every message it pulled.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Final

import click
from rich.table import Table

from tracker.cli._base import CONTEXT, EXIT_FAILED, cli
from tracker.cli.auth import Connection, client_options
from tracker.cli.render import _stdout_console
from tracker.client import TrackerClient
from tracker.client._core import Request, json_of
from tracker.errors import ConfigError

COLLECTION: Final = "/v1/deadLetters"
PULL_BATCH: Final = 100


def call(client: TrackerClient, method: str, path: str, **kwargs: Any) -> Any:
    """One request to the tracker; its answer as JSON (errors raise the project's)."""
    return json_of(client._send(Request(method, path, **kwargs)))


def _path(letter_id: str, verb: str = "") -> str:
    if not letter_id or "/" in letter_id or ":" in letter_id:
        raise ConfigError(f"{letter_id!r} is not a dead-letter id")
    return f"{COLLECTION}/{letter_id}" + (f":{verb}" if verb else "")


@cli.group("dead-letters", context_settings=CONTEXT)
def dead_letters() -> None:
    """Events the tracker could never apply: list, show, replay, delete, purge.

    FILTER: reason = "bad_data", route = "push", received_time >= "2026-01-01T00:00:00Z",
    received_time < "...", combined with AND.
    """


@dead_letters.command("list", context_settings=CONTEXT)
@click.option("--filter", "filter_text", default="", help="Which dead letters (see above).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of dead letters.")
@client_options
def list_(filter_text: str, as_json: bool, connect: Connection) -> None:
    """List dead letters, newest first (every page)."""
    letters: list[dict[str, Any]] = []
    token = ""
    with connect.client() as client:
        while True:
            params: dict[str, str | int] = {"filter": filter_text} if filter_text else {}
            if token:
                params["pageToken"] = token
            page = call(client, "GET", COLLECTION, params=params)
            letters += page.get("deadLetters") or []
            token = page.get("nextPageToken") or ""
            if not token:
                break
    if as_json:
        click.echo(json.dumps(letters, indent=2))
        return
    table = Table(box=None, pad_edge=False)
    for column in ("ID", "RECEIVED", "ROUTE", "REASON", "DETAIL"):
        table.add_column(column, no_wrap=column != "DETAIL")
    for item in letters:
        table.add_row(
            item["id"], item["receivedTime"], item["route"], item["reason"], item["detail"]
        )
    _stdout_console().print(table)


@dead_letters.command(context_settings=CONTEXT)
@click.argument("letter_id", metavar="ID")
@client_options
def show(letter_id: str, connect: Connection) -> None:
    """Show dead letter ID as JSON: attributes, body (base64, and as text if UTF-8), reason."""
    with connect.client() as client:
        click.echo(json.dumps(call(client, "GET", _path(letter_id)), indent=2))


@dead_letters.command(context_settings=CONTEXT)
@click.argument("letter_id", metavar="ID")
@client_options
def delete(letter_id: str, connect: Connection) -> None:
    """Delete dead letter ID."""
    with connect.client() as client:
        call(client, "DELETE", _path(letter_id))
    click.echo(f"deleted {letter_id}")


@dead_letters.command(context_settings=CONTEXT)
@click.argument("letter_id", metavar="ID", required=False)
@click.option("--filter", "filter_text", help="Replay the dead letters this filter matches.")
@click.option("--all", "every", is_flag=True, help="Replay every dead letter.")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; change nothing.")
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="Per request."
)
@client_options
def replay(
    letter_id: str | None,
    filter_text: str | None,
    every: bool,
    dry_run: bool,
    limit: int,
    connect: Connection,
) -> None:
    """Apply dead letters again (after a fix): ID, --filter F or --all.

    A replayed dead letter is removed; one that fails again stays, and is listed with
    why. Exits 1 if any failed again.
    """
    if sum((letter_id is not None, filter_text is not None, every)) != 1:
        raise click.UsageError("give exactly one of ID, --filter or --all")
    with connect.client() as client:
        if letter_id is not None:
            if dry_run:
                letter = call(client, "GET", _path(letter_id))
                click.echo(f"would replay {letter_id} ({letter['reason']})")
                return
            answer = call(client, "POST", _path(letter_id, "replay"), json={})
            click.echo(f"replayed {letter_id}: {answer['outcome']} for {answer['operation']}")
            return
        matched = replayed = 0
        failed: list[dict[str, str]] = []
        token = ""
        while True:
            body: dict[str, Any] = {"filter": filter_text or "", "dryRun": dry_run, "limit": limit}
            if token:
                body["pageToken"] = token
            answer = call(client, "POST", f"{COLLECTION}:replay", json=body)
            matched += answer["matched"]
            replayed += answer["replayed"]
            failed += answer["failed"]
            token = answer["nextPageToken"]
            if not token:
                break
    verb = "would replay" if dry_run else "replayed"
    click.echo(f"matched {matched}, {verb} {matched - len(failed) if dry_run else replayed}")
    for item in failed:
        click.echo(f"failed {item['id']}: {item['reason']}: {item['message']}")
    if failed:
        raise click.exceptions.Exit(EXIT_FAILED)


@dead_letters.command(context_settings=CONTEXT)
@click.option("--filter", "filter_text", required=True, help='Which ones ("" for all).')
@click.option("--dry-run", is_flag=True, help="Count them; delete nothing.")
@client_options
def purge(filter_text: str, dry_run: bool, connect: Connection) -> None:
    """Delete every dead letter the filter matches."""
    with connect.client() as client:
        answer = call(
            client, "POST", f"{COLLECTION}:purge", json={"filter": filter_text, "dryRun": dry_run}
        )
    if dry_run:
        click.echo(f"matched {answer['matched']}, would purge {answer['matched']}")
    else:
        click.echo(f"matched {answer['matched']}, purged {answer['purged']}")


@dead_letters.command("replay-topic", context_settings=CONTEXT)
@click.argument("subscription")
@click.option(
    "--max",
    "max_messages",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="Stop after this many messages.",
)
@click.option("--dry-run", is_flag=True, help="Parse only; nack every message (they stay).")
@client_options
def replay_topic(subscription: str, max_messages: int, dry_run: bool, connect: Connection) -> None:
    """Pull from the dead-letter topic's SUBSCRIPTION (projects/P/subscriptions/S) and
    apply each message again; one that fails again goes to the dead-letter table."""
    from tracker.cli.replay_topic import replay_subscription

    with connect.client() as client:
        counts, lines = replay_subscription(
            lambda messages: call(
                client,
                "POST",
                f"{COLLECTION}:replayMessages",
                json={"messages": messages, "dryRun": dry_run},
            )["results"],
            subscription,
            max_messages=max_messages,
            dry_run=dry_run,
        )
    for line in lines:
        click.echo(line)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no messages"
    click.echo(f"{'dry run: ' if dry_run else ''}{summary}")


def encode_message(message: Any) -> dict[str, Any]:
    """A pulled Pub/Sub message as the JSON of tracker.v1.PubsubMessage."""
    return {
        "messageId": message.message_id,
        "attributes": dict(message.attributes),
        "data": base64.b64encode(bytes(message.data)).decode(),
    }


__all__ = ["dead_letters", "encode_message"]
