"""Running the `tracker` command in tests: a clean environment, one-line errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from click.testing import CliRunner, Result

from tracker.cli import cli

TRACKER = str(Path(sys.executable).parent / "tracker")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def invoke(
    args: Sequence[str], url: str | None = None, env: Mapping[str, str | None] | None = None
) -> Result:
    runner = CliRunner()
    full = [*args, "--url", url] if url else [*args]
    # No TRACKER_* from the developer's shell may leak into a test.
    base: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TRACKER_")}
    base.update(env or {})
    return runner.invoke(cli, full, env=base, terminal_width=200, catch_exceptions=False)


def assert_one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert "Traceback" not in text
    assert len(lines) == 1, text
    assert lines[0].startswith("tracker: error: "), text
    return lines[0]
