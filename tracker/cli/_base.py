"""The `tracker` group, its exit codes, and the one place errors become a line."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Final, NoReturn, TypeVar

import click

from tracker import __version__
from tracker.errors import ConfigError, PermissionDenied, TrackerError, Unauthenticated, Unavailable

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


# Each command's module, imported when the command is looked up (run, or listed by
# --help), so that `tracker get` loads the HTTP client and not the server, Pub/Sub or
# gRPC. A module registers its commands on `cli` (`@cli.command`) when imported; an
# entry "module:attr" is a command the group adds itself.
LAZY: Final[dict[str, str]] = {
    "auth": "tracker.cli.auth:auth",
    "cancel": "tracker.cli.operations",
    "checkpoint": "tracker.cli.operations",
    "dead-letters": "tracker.cli.dead_letters",
    "delete": "tracker.cli.operations",
    "dev": "tracker.cli.dev",
    "get": "tracker.cli.operations",
    "history": "tracker.cli.history",
    "list": "tracker.cli.listing",
    "publish": "tracker.cli.operations",
    "schema": "tracker.cli.schema",
    "serve": "tracker.cli.serve",
    "wait": "tracker.cli.operations",
}


class _Group(click.Group):
    """Loads commands on first use (LAZY); turns the project's errors into one line and an
    exit code, never a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY:
            module, _, attr = LAZY[cmd_name].partition(":")
            loaded = importlib.import_module(module)
            if attr:
                self.add_command(getattr(loaded, attr), cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in LAZY:  # an unknown name: suggest from every command
            for name in LAZY:
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Unavailable as exc:  # the tracker, or the ID-token issuer, out of reach
            fail(exc.message, EXIT_USAGE)
        except ConfigError as exc:
            fail(str(exc), EXIT_USAGE)
        except (Unauthenticated, PermissionDenied) as exc:
            from tracker.cli.auth import refusal

            fail(refusal(exc), EXIT_FAILED)
        except TrackerError as exc:
            fail(exc.message, EXIT_FAILED)


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="tracker")
def cli() -> None:
    """Track google.longrunning Operations driven by CloudEvents."""
