"""Tenants of one database: every table and index of the schema under a prefix.

One database may serve several services, each a deployment of its own with its own
`--table-prefix` (the seed's `<project>_Operations`): `billing_Operations`,
`search_Operations`, ... Each deployment's store prefixes every name its SQL says, so no
query of one tenant reads another's rows. `tracker schema apply --table-prefix P` makes
the tables. The empty prefix is the plain schema.

Spanner spells its names in `tracker.stores.spanner_schema`; SQLite's come from its DDL
files (`sqlite_identifiers`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Final

from tracker.errors import ConfigError

_PREFIX: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def check_prefix(prefix: str) -> str:
    """`prefix` if it is one (a letter, then letters, digits and _; at most 64)."""
    if prefix and not _PREFIX.fullmatch(prefix):
        raise ConfigError(
            f"--table-prefix: {prefix!r} must start with a letter and hold only"
            " letters, digits and _ (at most 64)"
        )
    return prefix


class Rewriter:
    """SQL text with every name of `identifiers` prefixed, whole words only (so that
    `operations` does not touch `operations_done`, and a longer name wins)."""

    def __init__(self, prefix: str, identifiers: Iterable[str]) -> None:
        self.prefix = check_prefix(prefix)
        names = sorted(set(identifiers), key=len, reverse=True)
        self._pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
        # The store says a few hundred distinct statements: each is rewritten once.
        self.sql = functools.lru_cache(maxsize=4096)(self._rewrite)

    def _rewrite(self, text: str) -> str:
        if not self.prefix:
            return text
        return self._pattern.sub(lambda m: self.prefix + m.group(0), text)


_DDL_NAME: Final = re.compile(
    r"\bCREATE\s+(?:UNIQUE\s+)?(?:TABLE|INDEX)\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.I
)


def ddl_names(ddl: Iterable[str]) -> tuple[str, ...]:
    """The tables and indexes the DDL texts create."""
    return tuple(dict.fromkeys(m.group(1) for text in ddl for m in _DDL_NAME.finditer(text)))


__all__ = ["Rewriter", "check_prefix", "ddl_names"]
