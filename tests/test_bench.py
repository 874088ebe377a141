"""Each benchmark still runs and prints its lines (never its figures: no test times anything)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.helpers import ROOT


def test_http_bench_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench/http.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    for line in (
        r"empty handler, 1 request at a time x8 +\d+ requests/s",
        r"tracker, binary single events x8 +\d+ events/s",
        r"ratio tracker/empty handler +[\d.]+",
        r"ratio of server CPU per request, empty/tracker +[\d.]+",
        r"parse, binary mode: [\d.]+ us CPU per event; SDK/json_format path [\d.]+ us",
        r"parse, batches of 100: [\d.]+ us CPU per event",
        r"tracker, batches of 100 x8 +\d+ events/s",
        r"store alone, batches of 100 \(SqliteStore.apply\) +\d+ events/s",
        r"ratio HTTP batches/store alone +[\d.]+",
        r"ratio of CPU per event, store alone/HTTP +[\d.]+",
        r"profile, server side, binary single events",
    ):
        assert re.search(line, out), (line, out)
    # The profile lists functions: py-spy's rows or cProfile's.
    assert re.search(r"(\d+ samples of the server process|cProfile of the event loop)", out), out
