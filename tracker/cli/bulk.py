"""`tracker cancel --filter F` and `tracker delete --filter F`: bulk actions by filter.

The options are added to the `cancel` and `delete` commands (tracker.cli.operations),
which take either a NAME or --filter. A bulk action prints the bulk operation (or, with
--dry-run, how many operations it would act on) and with --wait follows its progress
until it is done.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from tracker.cli._base import EXIT_FAILED, fail
from tracker.cli.auth import Connection
from tracker.cli.render import _ProgressView, describe
from tracker.client import operation_to_dict

F = TypeVar("F", bound=Callable[..., Any])


def bulk_options(func: F) -> F:
    """--filter, --dry-run, --rate, --wait and --json of a bulk action."""
    options = [
        click.option(
            "--filter",
            "filter_text",
            default=None,
            help="Act on every operation matching this filter instead of NAME.",
        ),
        click.option("--dry-run", is_flag=True, help="--filter: only print how many match."),
        click.option(
            "--rate",
            type=click.FloatRange(min=0, min_open=True, max=1000),
            default=None,
            help="--filter: operations per second at most (server default 100).",
        ),
        click.option("--wait", "wait_done", is_flag=True, help="--filter: wait until done."),
        click.option("--json", "as_json", is_flag=True, help="--filter: print JSON."),
    ]
    wrapped: Any = func
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[no-any-return]


def check(name: str | None, options: dict[str, Any]) -> bool:
    """Whether the command is a bulk action (usage errors exit 2)."""
    if options["filter_text"] is None:
        if options["dry_run"] or options["rate"] is not None or options["wait_done"]:
            fail("--dry-run, --rate and --wait go with --filter")
        if name is None:
            fail("give an operation NAME or --filter")
        return False
    if name is not None:
        fail("give an operation NAME or --filter, not both")
    return True


def run(connect: Connection, action: str, options: dict[str, Any]) -> None:
    filter_text, as_json = str(options["filter_text"]), bool(options["as_json"])
    with connect.client() as client:
        if options["dry_run"]:
            matched = client.bulk_dry_run(action, filter_text)
            text = f"{matched} would be {_verb(action)}"
            click.echo(json.dumps({"matched": matched}) if as_json else text)
            return
        operation = client.bulk(action, filter_text, rate=options["rate"])
        if options["wait_done"]:
            with _ProgressView(operation.name) as view:
                for state in client.watch(operation.name):
                    view.update(state)
                    operation = state
    if as_json:
        click.echo(json.dumps(operation_to_dict(operation), indent=2))
    else:
        click.echo(describe(operation))
    if operation.done and operation.HasField("error"):
        fail(f"{operation.name} did not finish: {operation.error.message}", EXIT_FAILED)


def _verb(action: str) -> str:
    return "cancelled" if action == "cancel" else "deleted"


__all__ = ["bulk_options", "check", "run"]
