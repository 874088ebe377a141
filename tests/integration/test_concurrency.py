"""Two tracker processes applying events to the same operations at once lose no update.

Each backend's own concurrency control (SQLite's write lock, Spanner's aborts and
retries) must leave every operation exactly as the stream applied once, in order.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import spanner_database
from tests.helpers import ROOT, T0, make_event
from tracker.bindings import to_structured_dict
from tracker.events import Event, Kind
from tracker.stores.base import Store
from tracker.stores.sqlite import SqliteStore


def stream(operations: int, per_op: int) -> list[Event]:
    events = []
    for o in range(operations):
        name = f"operations/race-{o}"
        for i in range(per_op):
            kind = Kind.CREATED if i == 0 else Kind.SUCCEEDED if i == per_op - 1 else Kind.PROGRESS
            data = {"percent": float(i), "message": f"m{i}"} if kind is Kind.PROGRESS else None
            events.append(
                make_event(
                    kind, name, id=f"{o}-{i}", seq=i + 1, time=T0 + timedelta(seconds=i), data=data
                )
            )
    return events


def final_states(store: Store, names: list[str]) -> dict[str, bytes]:
    out = {}
    for name in names:
        stored = store.get(name)
        assert stored is not None, name
        state = stored.state
        state.ClearField("update_time")
        out[name] = state.SerializeToString(deterministic=True)
    return out


@pytest.mark.parametrize("backend", ["sqlite", "spanner-handy", "spanner-google"])
def test_two_processes_lose_no_update(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = stream(operations=4, per_op=12)
    names = sorted({e.operation for e in events})
    expected_store = SqliteStore(":memory:")
    for event in events:
        expected_store.apply([event])
    expected = final_states(expected_store, names)

    if backend == "sqlite":
        spec = f"sqlite:{tmp_path / 'shared.db'}"
        SqliteStore(tmp_path / "shared.db").close()  # schema first
    else:
        path = spanner_database(backend, request.getfixturevalue("spanner_hosts"), monkeypatch)
        spec = f"spanner:{path}" + (":explicit-begin" if backend == "spanner-handy" else "")

    shuffled = list(events)
    random.Random(7).shuffle(shuffled)
    # Both processes get every event, in different orders: every operation is contended,
    # and each event's second delivery must be a no-op.
    halves = [shuffled, list(reversed(shuffled))]
    files = []
    for i, half in enumerate(halves):
        f = tmp_path / f"events-{i}.json"
        f.write_text(json.dumps([to_structured_dict(e) for e in half]))
        files.append(f)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.apply_worker", spec, str(f)],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for f in files
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]

    if backend == "sqlite":
        store: Store = SqliteStore(tmp_path / "shared.db")
    else:
        from tracker.stores.spanner import SpannerStore

        store = SpannerStore(path, explicit_begin=backend == "spanner-handy")
    assert final_states(store, names) == expected
    # Each done transition notified exactly once, though both processes delivered it.
    assert sorted(item.operation.name for item in store.outbox_pending()) == names
    store.close()
