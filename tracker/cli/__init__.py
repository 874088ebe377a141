"""The `tracker` command: run the server, publish events, read and wait on operations.

Exit codes, the same for every command (docs/cli.md):
    0  success
    1  the tracker refused the request (not found, invalid event, ...) or, for
       `wait`, the operation ended failed or cancelled
    2  usage, configuration or connection error
    3  `wait` timed out before the operation was done

One module per concern: `serve`, the client commands (`operations`), how operations are
shown (`render`), event data from options (`event_data`), `schema`, and `auth`
(credentials and `tracker auth hash-token`).
"""

from __future__ import annotations

from collections.abc import Sequence

from tracker.cli import (  # noqa: F401  (they register commands)
    dead_letters,
    history,
    listing,
    operations,
    schema,
    serve,
)
from tracker.cli._base import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE, cli, fail
from tracker.cli.auth import auth

cli.add_command(auth)

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_TIMEOUT", "EXIT_USAGE", "cli", "fail", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="tracker")
