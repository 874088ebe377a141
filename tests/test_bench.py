"""The benchmarks still run and print their lines (never their figures: no test times
anything). Each bench has its own function here."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

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
    assert len(ratios) == 9 and all(float(ln.split()[-1]) > 0 for ln in ratios), out
    assert sum("SQLite's checkpoints in commits" in ln for ln in ratios) == 3, out
    # Each COMMIT timed with either checkpointing, every one of the stream's commits.
    commits = re.findall(r"^  checkpoints .* over 5 ms: (\d+) of (\d+)$", out, re.MULTILINE)
    assert len(commits) == 2 and all(int(n) == 200 for _, n in commits), out
    # Each store figure has its SQL alone beside it, with the Python share of its time.
    alone = re.findall(
        r"^    its SQL alone, replayed by raw sqlite3 +\d+ +([\d.]+) +\(Python: (-?\d+)% of",
        out,
        re.MULTILINE,
    )
    assert len(alone) == 6 and all(float(r) > 0 for r, _ in alone), out
    assert "events per transaction)" in out and "ncalls" in out, out


@pytest.mark.timeout(600)  # four Python processes under valgrind, ~30 s each
def test_ingest_bench_counts_instructions() -> None:
    """bench/ingest.py --instructions --quick under valgrind: raw sqlite3's and the
    store's instructions per event on one shape, and their ratio."""
    out = _run("bench/ingest.py", "--instructions", "--quick", "--operations", "2", "--events", "3")
    raw = re.search(r"^raw sqlite3, one event per transaction +(\d+) +1\.00$", out, re.M)
    store = re.search(r"^  store, history on \(default\) +(\d+) +([\d.]+)$", out, re.M)
    assert raw and store, out
    assert int(raw.group(1)) > 0 and int(store.group(1)) > 0, out
    assert float(store.group(2)) == pytest.approx(int(raw.group(1)) / int(store.group(1)), abs=0.01)


def test_spanner_bench_runs() -> None:
    out = _run("bench/spanner.py", "--operations", "4", "--events", "4")
    for line in ("1 event/transaction", "100 events/batch", "8 producers, grouped"):
        assert line in out, out
    assert re.search(r"8 producers, grouped .* [\d.]+ events/transaction", out), out
    # The anatomy of a one-event transaction: every read once per transaction (the
    # removed check only for new names), and the shares of its time adding up.
    assert "a one-event transaction" in out, out
    shares = [int(m) for m in re.findall(r" ms +(\d+)%", out)]
    assert len(shares) == 6 and 97 <= sum(shares) <= 103, out
    for read in ("load", "seen", "history_heads"):
        assert re.search(rf"read: {read} .* 1\.00 per transaction", out), out
    assert re.search(r"read: removed .* 0\.\d\d per transaction", out), out


def test_wake_bench_runs() -> None:
    """bench/wake.py --quick on SQLite and handy-spanner: each backend's own-commit and
    cross-instance lines."""
    out = _run("bench/wake.py", "--quick", "--servers", "sqlite,handy-spanner")
    for server in ("sqlite", "handy-spanner"):
        assert f"{server}: A wakes for its own commit" in out, out
        assert f"{server}: A wakes for B's commit (poll 0.1 s)" in out, out
    assert out.count(" p99 ") == 4, out


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
    assert re.search(r"2000 per transaction in \d+ s and \d+ s, \d+ rows/s", out), out
    # What each Spanner scaling line reads, as the store says (explain_list).
    for said in (
        "FROM Operations@{FORCE_INDEX=OperationsByDone} WHERE Done = FALSE",
        "FROM Operations@{FORCE_INDEX=OperationsByDoneCreateTimeDesc}",
        "FROM Operations@{FORCE_INDEX=OperationsByCreateTimeDesc}",
        "READ INDEX OperationLabelsByValue (LabelKey, Value) = ('pick', 'yes')",
        "READ BY KEY, SORT",
        "PLAN: <none>",
    ):
        assert said in out, (said, out)
    assert re.search(r"^  filter labels \(1 in 10\), by name \(label index\) +p50 .+x", out, re.M)
    assert re.search(r"^  count labels \(one COUNT\(\*\) on the label index\) +p50 .+x", out, re.M)


def test_pubsub_bench_runs(pubsub_env: str) -> None:
    """bench/pubsub.py --quick on the session's emulator (and Google's, started by the
    bench for the pushes it delivers when the session's is pstest): every figure line is
    there, in its shape (p50/p99 with a ratio to raw, rates with a ratio, the memory series)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pubsub.py"), "--quick"],
        env={**os.environ, "PUBSUB_EMULATOR_HOST": pubsub_env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    ms = r"p50 +[\d.]+ ms +p99 +[\d.]+ ms +\(n=20\)"
    ratio = r" +[\d.]+x / +[\d.]+x raw"
    rate = r" +\d+ msg/s +\(200 in [\d.]+ s\)"
    pushed = r" +\d+ msg/s +\(100 in [\d.]+ s\)"
    runs = r" +[\d.]+x raw +runs [\d.]+-[\d.]+x"
    for pattern in [
        rf"latency: raw publish -> subscriber \(client\) +{ms}",
        rf"latency: raw publish -> subscriber \(rpc\) +{ms}",
        rf"latency: succeeded -> done-notification +{ms}{ratio}",
        rf"latency: commit -> done-notification +{ms}{ratio}",
        rf"pull: raw subscriber, ack only{rate}",
        rf"pull: tracker PullSubscriber \(applied\){rate} +[\d.]+x raw",
        r"push, same stack: our client against the server, not issue #13's baseline",
        rf"push, same stack, 8 connections, ack-only handler{rate} +\{{'204': 200\}}",
        rf"push, same stack, 8 connections, /v1/pubsub/push{rate} +[\d.]+x raw +\{{'204': 200\}}",
        r"push delivered by Google's emulator \(127\.0\.0\.1:\d+\): 100 messages a run, 2 runs"
        r" interleaved, medians; each endpoint a process of its own; the raw endpoint saw at"
        r" most \d+ pushes in flight",
        rf"push emulator, wrapped: raw endpoint, 204 only{pushed}",
        rf"push emulator, wrapped: tracker /v1/pubsub/push \(applied\){pushed}{runs}",
        rf"push emulator, unwrapped: raw endpoint, 204 only{pushed}",
        rf"push emulator, unwrapped: tracker /v1/events \(applied\){pushed}{runs}",
        rf"wait: succeeded -> :wait answered +{ms}",
        r"memory: RSS MiB of `tracker serve` under push load: \d+ events in 3 s,"
        r" \d+ done-notifications published, \d+ received by a subscriber",
        r"memory: series( [\d.]+s:[\d.]+){3,}",
        r"memory: first [\d.]+ MiB \(load starting\) +last [\d.]+ MiB +max [\d.]+ MiB"
        r" +last/midway [\d.]+x",
    ]:
        assert re.search(pattern, out), f"no line like {pattern!r} in:\n{out}"


def test_http_bench_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench/http_ingest.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    for line in (
        r"empty handler, 1 request at a time x8 +\d+ requests/s",
        r"tracker, binary single events x8 +\d+ events/s +\([\d.]+ ms server CPU per event,"
        r" [\d.]+ events per transaction\)",
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


def test_scale_bench_runs() -> None:
    """bench/scale.py --quick: 1 and 2 tracker processes on one handy-spanner database,
    pulling from one pstest subscription; a rate, a ratio and the retries per line."""
    out = _run("bench/scale.py", "--quick")
    assert "pstest + handy-spanner" in out, out
    lines = [ln for ln in out.splitlines() if "events/s" in ln]
    assert [ln.split()[0] for ln in lines] == ["1", "2"], out
    assert all("of 1 instance" in ln and "aborted retries" in ln for ln in lines), out


def test_cli_bench_runs() -> None:
    """bench/cli.py --quick: each command's line with its ratio, in both bytecode modes."""
    out = _run("bench/cli.py", "--quick")
    for mode in ("bytecode cached (1 runs each", "no bytecode written (1 runs each"):
        assert mode in out, out
    for label in (
        "python -c pass",
        "tracker --help",
        "tracker get NAME",
        "tracker list (20)",
        "tracker publish heartbeat",
    ):
        lines = [ln for ln in out.splitlines() if ln.startswith(f"  {label} ")]
        assert len(lines) == 2, out
        assert all(
            re.search(r"median +[\d.]+ +min +[\d.]+ +max +[\d.]+ +cpu +[\d.]+ +x *[\d.]+", ln)
            for ln in lines
        ), out


def test_notify_future_bench_runs(pubsub_env: str) -> None:
    """bench/notify_future.py --quick on the session's emulator: both waiter counts, each
    figure beside the raw arrival of the same messages."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "notify_future.py"), "--quick"],
        env={**os.environ, "PUBSUB_EMULATOR_HOST": pubsub_env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ms = r"p50 +[\d.]+ ms +p99 +[\d.]+ ms +\(n=20\)"
    for waiters in (1, 50):
        for pattern in [
            rf"raw publish -> subscriber \({waiters} waiters run\) +{ms}",
            rf"notification -> future resolved, {waiters} waiters +{ms} +[\d.]+x / +[\d.]+x raw",
        ]:
            assert re.search(pattern, result.stdout), f"no {pattern!r} in:\n{result.stdout}"
