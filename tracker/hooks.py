"""What happens after a commit, as hooks registered on the service (dramatiq's middleware).

The code that decides state (apply, the stores) knows nothing of waiters, metrics or
notifiers. After each commit the `Tracker` hands a `Committed` to every registered hook
in order; a hook that raises is logged and the next one still runs, since the commit has
happened and the caller's answer must not depend on a side effect.

    tracker.add_hook(lambda c: print(c.route, list(c.done)))
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from google.longrunning import operations_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Committed:
    """One commit: which route made it, what each event did, what changed."""

    route: str
    # Outcome of each event (applied, duplicate, stale, late), in the order sent.
    outcomes: Sequence[str] = ()
    # The served Operation of every operation the commit changed, by name.
    changed: Mapping[str, operations_pb2.Operation] = field(default_factory=dict)
    # Names of the operations this commit made done.
    done: Sequence[str] = ()
    # Whether it wrote outbox rows (notices for a durable sink, or the cancel cascade).
    notices: bool = False


AfterCommit = Callable[[Committed], None]


def run_hooks(hooks: Sequence[AfterCommit], committed: Committed) -> None:
    for hook in hooks:
        try:
            hook(committed)
        except Exception:
            log.exception("after-commit hook %r failed (the commit stands)", hook)


__all__ = ["AfterCommit", "Committed", "run_hooks"]
