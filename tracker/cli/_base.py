"""The `tracker` group, its exit codes, and the one place errors become a line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, NoReturn, TypeVar

import click

from tracker import __version__
from tracker.cli.auth import refusal
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
