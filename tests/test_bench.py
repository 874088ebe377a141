"""The benchmarks still run and print their lines (never their figures: no test times
anything). Each bench has its own function here."""

from __future__ import annotations

import re
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


def test_list_query_bench_runs() -> None:
    """bench/list_query.py --quick on SQLite and handy-spanner: every scaling line at
    both sizes with its ratio, and the ratio-to-baseline lines."""
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "list_query.py"),
            "--quick",
            "--spanner",
            "handy-spanner",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        cwd=ROOT,
    ).stdout
    scaling = re.compile(
        r"^  (.+?) +p50 +[\d.]+ ms at +200, +[\d.]+ ms at +(\d+) +ratio +[\d.]+x", re.M
    )
    lines = scaling.findall(out)
    labels = [label for label, _ in lines]
    for label in (
        "selective label (100 operations), by name",
        "done = false, by name",
        "no filter, order create_time desc",
        "done = false, order create_time desc",
    ):
        assert labels.count(label) == 2, (label, out)  # SQLite and Spanner
    assert {size for _, size in lines} == {"2000", "1000"}, out
    assert "Spanner (handy-spanner, emulator schema; large size 1000" in out
    assert re.search(r"^  filter labels \(1 in 10\), by name \(label index\) +p50 .+x", out, re.M)
    assert re.search(r"^  count labels \(one COUNT\(\*\) on the label index\) +p50 .+x", out, re.M)
