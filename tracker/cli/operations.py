"""The client commands: publish, get, cancel, delete, wait, checkpoint (list: listing.py)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click
from google.longrunning import operations_proto_pb2 as operations_pb2  # without grpc

from tracker.cli import bulk
from tracker.cli._base import CONTEXT, EXIT_FAILED, EXIT_TIMEOUT, cli, fail
from tracker.cli.auth import Connection, client_options
from tracker.cli.event_data import _CodeType, _labels, build_data
from tracker.cli.render import _outcome, _ProgressView, describe
from tracker.constants import MAX_SEQUENCE
from tracker.events import PROTOBUF_CONTENT_TYPE, Kind
from tracker.wire import operation_to_dict

if TYPE_CHECKING:
    from tracker.client import TrackerClient


@cli.command(context_settings=CONTEXT)
@click.argument("kind", type=click.Choice([k.value for k in Kind]), metavar="KIND")
@click.argument("name")
@click.option("--percent", type=click.FloatRange(0, 100), help="progress: percent done.")
@click.option(
    "--message", "-m", help="progress/heartbeat: message; failed: error message; cancelled: reason."
)
@click.option("--data", "data_json", metavar="JSON", help="Event data as proto3 JSON.")
@click.option(
    "--file", type=click.File("rb"), help="checkpoint: read the bytes from FILE (- is stdin)."
)
@click.option(
    "--seq",
    type=click.IntRange(0, MAX_SEQUENCE),
    metavar="N",
    help="Per-operation sequence number.",
)
@click.option(
    "--id", "event_id", help="Event id (default: a fresh uuid); repeat it to retry safely."
)
@click.option("--source", help="Event source (default: tracker-client/<hostname>).")
@click.option(
    "--label",
    multiple=True,
    callback=_labels,
    metavar="KEY=VALUE",
    help="created: a label; repeatable.",
)
@click.option("--type", "operation_type", help="created: operation type.")
@click.option("--parent", help="created: parent resource or operation.")
@click.option("--code", type=_CodeType(), help="failed: google.rpc.Code, number or name.")
@click.option(
    "--response",
    metavar="JSON",
    help='succeeded: response; an object without "@type" is sent as a Struct.',
)
@click.option(
    "--mode",
    type=click.Choice(["binary", "structured"]),
    default="binary",
    show_default=True,
    help="CloudEvents HTTP content mode.",
)
@click.option(
    "--protobuf", is_flag=True, help="Send the data as application/protobuf instead of JSON."
)
@client_options
def publish(
    kind: str,
    name: str,
    percent: float | None,
    message: str | None,
    data_json: str | None,
    file: Any,
    seq: int | None,
    event_id: str | None,
    source: str | None,
    label: dict[str, str],
    operation_type: str | None,
    parent: str | None,
    code: int | None,
    response: str | None,
    mode: str,
    protobuf: bool,
    connect: Connection,
) -> None:
    """Publish one event of KIND for operation NAME and print what the tracker did.

    KIND is created, progress, checkpoint, heartbeat, succeeded, failed or cancelled.
    The outcome is applied, duplicate (that event id was applied before), stale (older
    than the state) or late (after the operation was done); each exits 0.
    """
    event_kind = Kind(kind)
    options = {
        "--percent": percent,
        "--message": message,
        "--label": label,
        "--type": operation_type,
        "--parent": parent,
        "--code": code,
        "--response": response,
        "--file": file,
    }
    data = build_data(event_kind, data_json, options)
    with connect.client() as client:
        if source:
            client.source = source
        event = client.event(event_kind, name, data, seq=seq, event_id=event_id)
        content_type = PROTOBUF_CONTENT_TYPE if protobuf else "application/json"
        result = client.publish(
            event,
            mode="structured" if mode == "structured" else "binary",
            content_type=content_type,
        )[0]
    done = " (the operation is now done)" if result.done else ""
    click.echo(f"{result.outcome}: {event_kind.value} {result.id} for {result.operation}{done}")


@cli.command(context_settings=CONTEXT)
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the Operation as JSON.")
@client_options
def get(name: str, as_json: bool, connect: Connection) -> None:
    """Show operation NAME."""
    with connect.client() as client:
        operation = client.get(name)
    if as_json:
        click.echo(json.dumps(operation_to_dict(operation), indent=2))
    else:
        click.echo(describe(operation))


@cli.command(context_settings=CONTEXT)
@click.argument("name", required=False)
@bulk.bulk_options
@client_options
def cancel(name: str | None, connect: Connection, **options: Any) -> None:
    """Cancel operation NAME (it ends as CANCELLED unless already done), or with --filter
    every running operation that matches, as a bulk operation (docs/cli.md)."""
    if bulk.check(name, options):
        return bulk.run(connect, "cancel", options)
    assert name is not None
    with connect.client() as client:
        client.cancel(name)
    click.echo(f"cancelled {name}")


@cli.command(context_settings=CONTEXT)
@click.argument("name", required=False)
@bulk.bulk_options
@client_options
def delete(name: str | None, connect: Connection, **options: Any) -> None:
    """Delete operation NAME, or with --filter every operation that matches, as a bulk
    operation (docs/cli.md)."""
    if bulk.check(name, options):
        return bulk.run(connect, "delete", options)
    assert name is not None
    with connect.client() as client:
        client.delete(name)
    click.echo(f"deleted {name}")


@cli.command(context_settings=CONTEXT)
@click.argument("name")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to wait (default: until done).",
)
@click.option(
    "--no-progress", is_flag=True, help="No progress display; one WaitOperation call at a time."
)
@click.option("--json", "as_json", is_flag=True, help="Print the final Operation as JSON.")
@client_options
def wait(
    name: str, timeout: float | None, no_progress: bool, as_json: bool, connect: Connection
) -> None:
    """Wait for operation NAME to be done, showing its progress.

    Exits 0 when it succeeded, 1 when it failed or was cancelled, 3 when --timeout
    passed first.
    """
    with connect.client() as client:
        operation = client.wait(name, timeout) if no_progress else _watch(client, name, timeout)
    if as_json:
        click.echo(json.dumps(operation_to_dict(operation), indent=2))
    else:
        click.echo(describe(operation))
    if not operation.done:
        waited = f" after {timeout:g}s" if timeout is not None else ""
        fail(f"timed out{waited}: {name} is not done", EXIT_TIMEOUT)
    if operation.HasField("error"):
        fail(f"{name} {_outcome(operation)}", EXIT_FAILED)


@cli.command(context_settings=CONTEXT)
@click.argument("name")
@click.option(
    "-o",
    "--output",
    type=click.File("wb"),
    default="-",
    help="Write the bytes to FILE (default: stdout).",
)
@client_options
def checkpoint(name: str, output: Any, connect: Connection) -> None:
    """Write the latest checkpoint bytes of operation NAME."""
    with connect.client() as client:
        data = client.get_checkpoint(name)
    if data is None:
        fail(f"{name} has no checkpoint", EXIT_FAILED)
    output.write(data)
    output.flush()


def _watch(client: TrackerClient, name: str, timeout: float | None) -> operations_pb2.Operation:
    last: operations_pb2.Operation | None = None
    with _ProgressView(name) as view:
        for operation in client.watch(name, timeout):
            view.update(operation)
            last = operation
    if last is None:  # the stream gave nothing (deadline passed before it opened)
        last = client.get(name)
    return last
