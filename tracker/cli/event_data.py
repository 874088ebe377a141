"""Event data from `tracker publish`'s options: --data and the per-kind shortcuts."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

import click
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message
from google.rpc import code_pb2

from tracker.client import to_any
from tracker.errors import TrackerError
from tracker.events import DATA_MESSAGES, Kind, decode_data
from tracker.v1 import events_pb2

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
