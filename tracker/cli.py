"""The `tracker` command: run the server, publish events, read and wait on operations.

Exit codes, the same for every command (docs/cli.md):
    0  success
    1  the tracker refused the request (not found, invalid event, ...) or, for
       `wait`, the operation ended failed or cancelled
    2  usage, configuration or connection error
    3  `wait` timed out before the operation was done
"""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

import click
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, empty_pb2, json_format
from google.protobuf.message import Message
from google.rpc import code_pb2
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from tracker import __version__
from tracker.cli_auth import Connection, auth, client_options, refusal
from tracker.client import TrackerClient, metadata, operation_to_dict, to_any
from tracker.config import SETTINGS, Config, Setting
from tracker.errors import ConfigError, PermissionDenied, TrackerError, Unauthenticated, Unavailable
from tracker.events import DATA_MESSAGES, PROTOBUF_CONTENT_TYPE, Kind, decode_data
from tracker.v1 import events_pb2

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_TIMEOUT: Final = 3

CONTEXT: Final = {"help_option_names": ["-h", "--help"], "max_content_width": 120}


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """One line on stderr, no traceback, then exit."""
    click.echo(f"tracker: error: {message}", err=True)
    raise click.exceptions.Exit(code)


class _Group(click.Group):
    """Turns the project's errors into one line and an exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Unavailable as exc:  # the tracker, or the ID-token issuer, out of reach
            fail(exc.message, EXIT_USAGE)
        except ConfigError as exc:
            fail(str(exc), EXIT_USAGE)
        except (Unauthenticated, PermissionDenied) as exc:
            fail(refusal(exc), EXIT_FAILED)
        except TrackerError as exc:
            fail(exc.message, EXIT_FAILED)


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="tracker")
def cli() -> None:
    """Track google.longrunning Operations driven by CloudEvents."""


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="tracker")


# ---- serve ---------------------------------------------------------------------------

_CLICK_TYPES: Final[dict[type, click.ParamType[Any]]] = {
    str: click.STRING,
    int: click.INT,
    float: click.FLOAT,
}


def setting_option(setting: Setting) -> Callable[[F], F]:
    """A click option for one `tracker.config` setting, with its TRACKER_* twin."""
    common: dict[str, Any] = {
        "default": setting.default,
        "envvar": setting.envvar,
        "show_envvar": True,
        "show_default": True,
        "help": setting.help,
    }
    if setting.type is bool:
        negative = "--no-" + setting.flag.removeprefix("--")
        return click.option(f"{setting.flag}/{negative}", setting.name, **common)
    if setting.type is tuple:  # repeatable; the environment twin splits on whitespace
        return click.option(setting.flag, setting.name, multiple=True, **common)
    return click.option(setting.flag, setting.name, type=_CLICK_TYPES[setting.type], **common)


def setting_options(func: F) -> F:
    for setting in reversed(SETTINGS):
        func = setting_option(setting)(func)
    return func


@cli.command(context_settings=CONTEXT)
@setting_options
def serve(**values: Any) -> None:
    """Run the tracker: HTTP (events, Pub/Sub push, Operations API) and gRPC.

    Every setting can also come from its TRACKER_* environment variable; a flag wins.
    Stops cleanly on SIGINT or SIGTERM.
    """
    config = Config(**values).validate()
    from tracker import server  # late: client commands need none of the server's imports

    try:
        server.serve(config)
    except KeyboardInterrupt:  # before the signal handlers are in place
        raise click.exceptions.Exit(130) from None
    except TrackerError as exc:  # the store cannot be opened, ...
        fail(exc.message)
    except OSError as exc:
        fail(_os_error(exc, config))
    except RuntimeError as exc:
        if "bind" in str(exc).lower() or "port" in str(exc).lower():  # grpc's way to say it
            reason = str(exc).split(";", 1)[0]
            fail(f"cannot listen on gRPC {config.grpc_host}:{config.grpc_port}: {reason}")
        raise


def _os_error(exc: OSError, config: Config) -> str:
    if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
        where = f"{config.http_host}:{config.http_port}"
        return f"cannot listen on HTTP {where}: {exc.strerror or exc}"
    return f"cannot start: {exc}"


# ---- client commands -------------------------------------------------------------------


_CODE_NAMES: Final = frozenset(code_pb2.Code.keys())


if TYPE_CHECKING:
    _IntParam = click.ParamType[int]
else:  # click < 8.2 has no generic ParamType at run time
    _IntParam = click.ParamType


class _CodeType(_IntParam):
    """A google.rpc.Code as a number (5) or a name (NOT_FOUND, not_found)."""

    name = "code"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            code = value
        elif str(value).isdigit():
            code = int(value)
        elif str(value).upper() in _CODE_NAMES:
            code = int(code_pb2.Code.Value(str(value).upper()))
        else:
            self.fail(f"{value!r} is not a google.rpc.Code number or name", param, ctx)
        if not 1 <= code <= 16:
            self.fail(f"{value!r}: a failed event needs a code in 1..16 (not OK)", param, ctx)
        return code


def _labels(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value", ctx, param)
        labels[key] = value
    return labels


def _json_arg(text: str, option: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.UsageError(f"{option}: not valid JSON: {exc}") from None


def _any_from_json(text: str, option: str) -> any_pb2.Any:
    value = _json_arg(text, option)
    if not isinstance(value, dict):
        raise click.UsageError(f"{option} must be a JSON object")
    if "@type" in value:
        packed = any_pb2.Any()
        try:
            json_format.ParseDict(value, packed)
        except json_format.ParseError as exc:
            raise click.UsageError(f"{option}: {exc}") from None
        return packed
    return to_any(value)


# Which options apply to which kinds (beyond --data, which any kind takes).
_APPLIES: Final[dict[str, frozenset[Kind]]] = {
    "--percent": frozenset({Kind.PROGRESS}),
    "--message": frozenset({Kind.PROGRESS, Kind.HEARTBEAT, Kind.FAILED, Kind.CANCELLED}),
    "--label": frozenset({Kind.CREATED}),
    "--type": frozenset({Kind.CREATED}),
    "--parent": frozenset({Kind.CREATED}),
    "--code": frozenset({Kind.FAILED}),
    "--response": frozenset({Kind.SUCCEEDED}),
    "--file": frozenset({Kind.CHECKPOINT}),
}


def build_data(kind: Kind, data_json: str | None, options: dict[str, Any]) -> Message:
    """The event data: --data (proto3 JSON of the kind's message), then the shortcuts."""
    for option, value in options.items():
        if value not in (None, (), {}) and kind not in _APPLIES[option]:
            kinds = ", ".join(sorted(k.value for k in _APPLIES[option]))
            raise click.UsageError(f"{option} applies to {kinds} events, not {kind.value}")
    if data_json is not None:
        try:
            data = decode_data(kind, "application/json", data_json)
        except TrackerError as exc:
            raise click.UsageError(f"--data: {exc.message}") from None
    else:
        data = DATA_MESSAGES[kind]()
    message = options.get("--message")
    if isinstance(data, events_pb2.Progress):
        if options["--percent"] is not None:
            data.percent = options["--percent"]
        if message is not None:
            data.message = message
    elif isinstance(data, events_pb2.Created):
        data.labels.update(options["--label"])
        if options["--type"] is not None:
            data.operation_type = options["--type"]
        if options["--parent"] is not None:
            data.parent = options["--parent"]
    elif isinstance(data, events_pb2.Heartbeat):
        if message is not None:
            data.message = message
    elif isinstance(data, events_pb2.Failed):
        if options["--code"] is not None:
            data.error.code = options["--code"]
        if message is not None:
            data.error.message = message
        if not data.error.code:
            raise click.UsageError("a failed event needs --code (a google.rpc.Code, e.g. INTERNAL)")
    elif isinstance(data, events_pb2.Cancelled):
        if message is not None:
            data.reason = message
    elif isinstance(data, events_pb2.Succeeded):
        if options["--response"] is not None:
            data.response.CopyFrom(_any_from_json(options["--response"], "--response"))
    elif isinstance(data, events_pb2.Checkpoint) and options["--file"] is not None:
        data.data = options["--file"].read()
    return data


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
    "--seq", type=click.IntRange(0, 2**63 - 1), metavar="N", help="Per-operation sequence number."
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


@cli.command("list", context_settings=CONTEXT)
@click.option(
    "--filter",
    "filter_text",
    default="",
    help='AIP-160 filter, e.g. done = false AND labels.team = "a".',
)
@click.option(
    "--page-size",
    type=click.IntRange(0),
    default=0,
    help="Operations per request (0: the server's default).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of Operations.")
@client_options
def list_(filter_text: str, page_size: int, as_json: bool, connect: Connection) -> None:
    """List operations (every page)."""
    with connect.client() as client:
        operations = list(client.list(filter_text, page_size))
    if as_json:
        click.echo(json.dumps([operation_to_dict(o) for o in operations], indent=2))
        return
    table = Table(box=None, pad_edge=False)
    for column in ("NAME", "DONE", "PERCENT", "MESSAGE", "TYPE", "LABELS"):
        table.add_column(column, no_wrap=column in ("NAME", "DONE", "PERCENT"))
    for operation in operations:
        meta = metadata(operation)
        table.add_row(
            operation.name,
            _done_text(operation),
            f"{meta.percent:.0f}%" if meta else "",
            meta.message if meta else "",
            meta.operation_type if meta else "",
            ",".join(f"{k}={v}" for k, v in sorted(meta.labels.items())) if meta else "",
        )
    _stdout_console().print(table)


@cli.command(context_settings=CONTEXT)
@click.argument("name")
@client_options
def cancel(name: str, connect: Connection) -> None:
    """Cancel operation NAME (it ends as CANCELLED unless already done)."""
    with connect.client() as client:
        client.cancel(name)
    click.echo(f"cancelled {name}")


@cli.command(context_settings=CONTEXT)
@click.argument("name")
@client_options
def delete(name: str, connect: Connection) -> None:
    """Delete operation NAME."""
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


# ---- rendering -------------------------------------------------------------------------


def _stdout_console() -> Console:
    console = Console()
    if not console.is_terminal:  # a file or a pipe: do not cut names at 80 columns
        console = Console(width=max(console.width, 200))
    return console


def _done_text(operation: operations_pb2.Operation) -> str:
    """no | succeeded | cancelled | failed (the table's DONE column)."""
    if not operation.done:
        return "no"
    if operation.HasField("error"):
        return "cancelled" if operation.error.code == code_pb2.CANCELLED else "failed"
    return "succeeded"


def _outcome(operation: operations_pb2.Operation) -> str:
    """How a done operation ended, with the error code name and message."""
    if not operation.HasField("error"):
        return _done_text(operation)
    error = operation.error
    text = f"{_done_text(operation)}: {_code_name(error.code)} ({error.code})"
    return f"{text}: {error.message}" if error.message else text


def _code_name(code: int) -> str:
    try:
        return str(code_pb2.Code.Name(code))
    except ValueError:
        return f"CODE_{code}"


def _when(value: Any) -> str:
    moment: datetime = value.ToDatetime()
    return moment.isoformat(timespec="seconds") + "Z"


def describe(operation: operations_pb2.Operation) -> str:
    """A short human summary of an operation."""
    lines = [f"name:      {operation.name}"]
    if not operation.done:
        lines.append("done:      no")
    else:
        lines.append(f"done:      yes, {_outcome(operation)}")
    meta = metadata(operation)
    if meta is not None:
        lines.append(f"percent:   {meta.percent:g}%")
        if meta.message:
            lines.append(f"message:   {meta.message}")
        if meta.operation_type:
            lines.append(f"type:      {meta.operation_type}")
        if meta.labels:
            lines.append(
                "labels:    " + ", ".join(f"{k}={v}" for k, v in sorted(meta.labels.items()))
            )
        if meta.parent:
            lines.append(f"parent:    {meta.parent}")
        if meta.cancel_requested:
            lines.append("cancel:    requested")
        for label, field_name in (
            ("created", "create_time"),
            ("updated", "update_time"),
            ("ended", "end_time"),
        ):
            if meta.HasField(field_name):
                lines.append(f"{label + ':':<10} {_when(getattr(meta, field_name))}")
    elif operation.HasField("metadata"):
        lines.append(f"metadata:  {json.dumps(operation_to_dict(operation)['metadata'])}")
    if operation.HasField("response") and not operation.response.Is(empty_pb2.Empty.DESCRIPTOR):
        lines.append(f"response:  {json.dumps(operation_to_dict(operation)['response'])}")
    return "\n".join(lines)


class _ProgressView:
    """The live view of `wait`: a rich bar on a terminal, one line per change otherwise."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.console = Console(stderr=True)
        self.live = self.console.is_terminal
        self.last: tuple[float, str] | None = None
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[message]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> _ProgressView:
        if self.live:
            self.progress.start()
            self.task = self.progress.add_task(self.name, total=100.0, message="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.progress.stop()

    def update(self, operation: operations_pb2.Operation) -> None:
        meta = metadata(operation)
        percent = meta.percent if meta else 0.0
        message = meta.message if meta else ""
        if operation.done:
            message = _outcome(operation)
        if (percent, message) == self.last:
            return
        self.last = (percent, message)
        if self.task is not None:
            self.progress.update(self.task, completed=percent, message=message, refresh=True)
        else:
            self.console.print(f"{self.name}: {percent:5.1f}% {message}".rstrip(), highlight=False)


def _watch(client: TrackerClient, name: str, timeout: float | None) -> operations_pb2.Operation:
    last: operations_pb2.Operation | None = None
    with _ProgressView(name) as view:
        for operation in client.watch(name, timeout):
            view.update(operation)
            last = operation
    if last is None:  # the stream gave nothing (deadline passed before it opened)
        last = client.get(name)
    return last


# ---- schema ----------------------------------------------------------------------------


@cli.group(context_settings=CONTEXT)
def schema() -> None:
    """Apply or show the versioned DDL in schemas/ (never apply it by hand)."""


def _schema_options(func: F) -> F:
    func = click.option(
        "--variant",
        type=click.Choice(["canonical", "emulator"]),
        default="canonical",
        show_default=True,
        help="Spanner DDL variant: canonical for Cloud Spanner and Google's emulator,"
        " emulator for handy-spanner (see docs/spanner.md).",
    )(func)
    for name in ("spanner_database", "db", "store"):
        setting = next(s for s in SETTINGS if s.name == name)
        func = setting_option(setting)(func)
    return func


@schema.command("apply", context_settings=CONTEXT)
@_schema_options
@click.option(
    "--create-database/--no-create-database",
    default=False,
    help="Spanner: create the database first if it does not exist.",
)
def schema_apply(
    store: str, db: str, spanner_database: str, variant: str, create_database: bool
) -> None:
    """Bring the store's schema up to the newest version in schemas/."""
    config = Config(store=store, db=db, spanner_database=spanner_database).validate()
    if config.store == "sqlite":
        from tracker.stores.sqlite import SqliteStore

        sqlite_store = SqliteStore(config.db)
        click.echo(f"sqlite {config.db}: schema version {sqlite_store.schema_version()}")
        sqlite_store.close()
        return
    from tracker.stores import spanner_schema

    database = spanner_schema.open_database(config.spanner_database)
    if create_database and spanner_schema.create_database(database):
        click.echo(f"created {config.spanner_database}")
    applied = spanner_schema.apply(database, variant)  # type: ignore[arg-type]
    done = ", ".join(map(str, applied)) or "nothing new"
    click.echo(f"spanner {config.spanner_database} ({variant}): applied {done}")


@schema.command("show", context_settings=CONTEXT)
@click.option("--variant", type=click.Choice(["canonical", "emulator"]), default="canonical")
def schema_show(variant: str) -> None:
    """Print the Spanner DDL statements of every version, in the chosen variant."""
    from tracker.stores import spanner_schema

    for version, statements in spanner_schema.migrations():
        click.echo(f"-- version {version} ({variant})")
        for statement in spanner_schema.statements_for(statements, variant):  # type: ignore[arg-type]
            click.echo(statement + ";")


cli.add_command(auth)

if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
