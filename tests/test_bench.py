"""Each bench still runs and prints its lines (small sizes); figures are never asserted."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.helpers import ROOT


def test_pubsub_bench_runs(pubsub_env: str) -> None:
    """bench/pubsub.py --quick on the session's emulator: every figure line is there,
    in its shape (p50/p99 with a ratio to raw, rates with a ratio, the memory series)."""
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
    for pattern in [
        rf"latency: raw publish -> subscriber \(client\) +{ms}",
        rf"latency: raw publish -> subscriber \(rpc\) +{ms}",
        rf"latency: succeeded -> done-notification +{ms}{ratio}",
        rf"latency: commit -> done-notification +{ms}{ratio}",
        rf"pull: raw subscriber, ack only{rate}",
        rf"pull: tracker PullSubscriber \(applied\){rate} +[\d.]+x raw",
        rf"push: 8 keep-alive connections, ack-only handler{rate} +\{{'204': 200\}}",
        rf"push: 8 keep-alive connections, /v1/pubsub/push{rate} +[\d.]+x raw +\{{'204': 200\}}",
        rf"wait: succeeded -> :wait answered +{ms}",
        r"memory: RSS MiB of `tracker serve` under push load: \d+ events in 3 s,"
        r" \d+ done-notifications published, \d+ received by a subscriber",
        r"memory: series( [\d.]+s:[\d.]+){3,}",
        r"memory: first [\d.]+ MiB \(load starting\) +last [\d.]+ MiB +max [\d.]+ MiB"
        r" +last/midway [\d.]+x",
    ]:
        assert re.search(pattern, out), f"no line like {pattern!r} in:\n{out}"
