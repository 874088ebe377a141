"""The SQLite store's times as text: fixed-width UTC, so that string order is time order.

A module of its own so that every SQLite module imports it at the top (the store imports
them all)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime


@functools.lru_cache(maxsize=256)
def ts(when: datetime) -> str:
    """Fixed-width UTC text, so that string order is time order. Formatted by hand (the
    years before 1000 zero-padded, which glibc's %Y does not do); it runs several times
    per event, and strftime costs several times more (%-formatting ~1.1 us, an f-string
    with format specs ~2 us)."""
    if when.tzinfo is not UTC:
        when = when.astimezone(UTC)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031  (faster than f"")
        when.year,
        when.month,
        when.day,
        when.hour,
        when.minute,
        when.second,
        when.microsecond,
    )


def ts_or_none(when: datetime | None) -> str | None:
    return None if when is None else ts(when)


def from_ts(text: str) -> datetime:
    """The aware UTC time of a `ts` text; fromisoformat reads it ~30x faster than
    strptime, which matters at 1,000 rows a page."""
    return datetime.fromisoformat(text)


__all__ = ["from_ts", "ts", "ts_or_none"]
