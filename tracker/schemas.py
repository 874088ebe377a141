"""Where the versioned DDL lives: package data, read with importlib.resources.

The files are `schemas/` of the repository; the package reaches them as
`tracker/_schemas` (a link in a checkout, real files in a wheel), so an installed
tracker needs no checkout and no environment variable. TRACKER_SCHEMAS_DIR points
elsewhere (an operator's own copy, or a test's older version).
"""

from __future__ import annotations

import os
import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from tracker.errors import ConfigError

ENV = "TRACKER_SCHEMAS_DIR"


def schemas_root() -> Traversable:
    """The schemas folder: TRACKER_SCHEMAS_DIR if set, else the package's own."""
    env = os.environ.get(ENV)
    root: Traversable = Path(env) if env else resources.files("tracker") / "_schemas"
    if not (root / "sqlite").is_dir():
        where = f"{ENV}={env}" if env else "the installed package"
        raise ConfigError(f"no schemas/sqlite in {where}: reinstall tracker or fix {ENV}")
    return root


def migrations(kind: str) -> list[tuple[int, str]]:
    """(version, text) of each `<kind>/NNNN_name.sql`, in version order."""
    out = []
    for entry in (schemas_root() / kind).iterdir():
        m = re.fullmatch(r"(\d+)_[A-Za-z0-9_]+\.sql", entry.name)
        if m:
            out.append((int(m.group(1)), entry.read_text()))
    return sorted(out)


def sqlite_migrations() -> list[tuple[int, str]]:
    return migrations("sqlite")
