"""The `tracker` command: run the server, publish events, read and wait on operations.

Exit codes, the same for every command (docs/cli.md):
    0  success
    1  the tracker refused the request (not found, invalid event, ...) or, for
       `wait`, the operation ended failed or cancelled
    2  usage, configuration or connection error
    3  `wait` timed out before the operation was done

One module per concern: `serve`, the client commands (`operations`), how operations are
shown (`render`), event data from options (`event_data`), `schema`, and `auth`
(credentials and `tracker auth hash-token`). A command's module is imported when the
command is used (`_base.LAZY`), and each imports what it needs when it runs: `tracker get`
starts without the server, Pub/Sub, gRPC or the CloudEvents SDK (docs/cli.md).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

# httpx imports its own command line (httpx._main: rich.progress, rich.syntax, pygments)
# when it is imported, unless that fails; the tracker never runs it, and it is about a
# third of a client command's start-up. A None entry makes that import fail, and httpx
# then defines a stand-in `httpx.main` (its own fallback for a missing `httpx[cli]`).
# Only in this process, and only if nothing imported httpx before.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

from tracker.cli._base import (  # after the line above
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    cli,
    fail,
)

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_TIMEOUT", "EXIT_USAGE", "cli", "fail", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="tracker")
