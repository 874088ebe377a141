"""How the CLI shows operations: a summary, a table row, a live progress view."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from google.longrunning import operations_proto_pb2 as operations_pb2  # without grpc
from google.protobuf import empty_pb2
from google.rpc import code_pb2

from tracker.wire import metadata, operation_to_dict

if TYPE_CHECKING:  # rich is imported where a table or a live view is drawn (not by `get`)
    from rich.console import Console
    from rich.progress import TaskID

# ---- rendering -------------------------------------------------------------------------


def _stdout_console() -> Console:
    from rich.console import Console

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
        if meta.attempt > 1:
            why = f" ({meta.attempt_reason})" if meta.attempt_reason else ""
            lines.append(f"attempt:   {meta.attempt}{why}")
        if meta.children.total:
            c = meta.children
            lines.append(
                f"children:  {c.done}/{c.total} ended: {c.succeeded} succeeded,"
                f" {c.failed} failed, {c.cancelled} cancelled"
            )
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
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

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
