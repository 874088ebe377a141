"""Where the versioned DDL lives: `schemas/` in a checkout, or TRACKER_SCHEMAS_DIR."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tracker.errors import ConfigError


def schemas_dir() -> Path:
    env = os.environ.get("TRACKER_SCHEMAS_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parent.parent / "schemas")
    for candidate in candidates:
        if (candidate / "sqlite").is_dir():
            return candidate
    raise ConfigError("schemas/ not found: set TRACKER_SCHEMAS_DIR to the tracker's schemas folder")


def sqlite_migrations() -> list[tuple[int, str]]:
    """(version, sql) for each schemas/sqlite/NNNN_name.sql, in version order."""
    out = []
    for path in sorted((schemas_dir() / "sqlite").glob("*.sql")):
        m = re.match(r"(\d+)_", path.name)
        if m:
            out.append((int(m.group(1)), path.read_text()))
    return out
