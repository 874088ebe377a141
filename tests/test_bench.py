"""Each benchmark still runs and prints its lines (its figures are never asserted: no
test times anything)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_ingest_bench_runs() -> None:
    out = _run("bench/ingest.py", "--quick")
    for line in (
        "raw sqlite3, one event per transaction",
        "raw sqlite3, batches of 100",
        "raw sqlite3, batches of 100, interleaved",
        "store, history on (default)",
        "store, history off",
        "Tracker.ingest, 8 producers, group commit",
        "profile, store, one event per transaction",
    ):
        assert line in out, out
    ratios = [ln for ln in out.splitlines() if ln.startswith("  store, ")]
    assert len(ratios) == 6 and all(float(ln.split()[-1]) > 0 for ln in ratios), out
    assert "events per transaction)" in out and "ncalls" in out, out


def test_spanner_bench_runs() -> None:
    out = _run("bench/spanner.py", "--operations", "4", "--events", "4")
    for line in ("1 event/transaction", "100 events/batch", "8 producers, grouped"):
        assert line in out, out
    assert "events/transaction" in out.splitlines()[-1], out
