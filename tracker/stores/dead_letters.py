"""The dead-letter primitives every store offers, beside `Store` (tracker/stores/base.py).

Dead letters are few and an operator reads them by time, so every primitive is either a
key read (`get_dead_letter`: replay by id reads one row) or an indexed, bounded query:
the filter (`DeadLetterQuery`) names only columns (reason, route, received time) that
go into the SQL as they are, and the page cursor is the last row's (received_at, id).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from tracker.stores.base import DeadLetter

# Rows the retention sweep and a purge remove per round (each round its own transaction).
DEAD_LETTER_BATCH: Final = 1000
DEFAULT_DEAD_LETTER_TTL: Final = timedelta(days=30)


@dataclass(frozen=True)
class DeadLetterQuery:
    """Which dead letters, in which order, from where.

    `since`/`until`: received at or after / strictly before. `after`: the (received_at,
    id) of the last row of the previous page; the next page holds the rows strictly past
    it in the chosen order (newest first unless `oldest_first`).
    """

    reason: str | None = None
    route: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: tuple[datetime, str] | None = None
    oldest_first: bool = False
    limit: int = 50


class DeadLetterStore(abc.ABC):
    """Dead-letter primitives; `Store` inherits them, each backend fills them in."""

    # Dead letters older than this are removed by the sweep (--dead-letter-retention-days).
    dead_letter_ttl: timedelta = DEFAULT_DEAD_LETTER_TTL

    @abc.abstractmethod
    def add_dead_letter(self, letter: DeadLetter) -> None: ...

    @abc.abstractmethod
    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest `limit` dead letters, oldest first (tests and operators)."""

    @abc.abstractmethod
    def remove_dead_letter(self, letter_id: str) -> bool: ...

    @abc.abstractmethod
    def get_dead_letter(self, letter_id: str) -> DeadLetter | None:
        """One dead letter by id: one key read, never a scan."""

    @abc.abstractmethod
    def list_dead_letters(self, query: DeadLetterQuery) -> list[DeadLetter]:
        """Up to `query.limit` + 1 matching rows in the query's order (the extra row says
        there is another page)."""

    @abc.abstractmethod
    def remove_dead_letters(self, letter_ids: Sequence[str]) -> int:
        """Remove these ids in one transaction; returns how many were there."""

    @abc.abstractmethod
    def purge_dead_letters(
        self, query: DeadLetterQuery, *, dry_run: bool = False, max_rounds: int = 1000
    ) -> int:
        """Remove every matching dead letter (its `after`, order and limit are ignored) in
        rounds of at most DEAD_LETTER_BATCH rows, each its own transaction; returns how
        many went. `dry_run` counts them and removes nothing."""

    def expire_dead_letters(self, now: datetime, *, max_rounds: int = 10) -> int:
        """Retention: remove dead letters received more than `dead_letter_ttl` before
        `now`, in bounded rounds by the received-time index; what is left waits for the
        next sweep."""
        return self.purge_dead_letters(
            DeadLetterQuery(until=now - self.dead_letter_ttl), max_rounds=max_rounds
        )


__all__ = ["DEAD_LETTER_BATCH", "DEFAULT_DEAD_LETTER_TTL", "DeadLetterQuery", "DeadLetterStore"]
