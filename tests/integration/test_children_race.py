"""Children ending at the same moment on two processes fire their parent's policy once.

Two real tracker processes (`tests/children_worker.py`) share one store (an SQLite file,
or a database on each Spanner server), wait at a barrier (each says `ready` and blocks
until the test answers both), then each ends half of a parent's children, one
transaction per child. Whatever the interleaving, the parent's counts are exact and its
policy fires exactly once: one resume row (RESUME), and one resume notice on the control
topic once a tracker delivers the outbox; or one end of the parent (COMPLETE).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import spanner_database
from tests.helpers import ROOT, make_event
from tests.pubsub_kit import PubSub
from tracker import notices
from tracker.bindings import parse_notice, to_structured_dict
from tracker.config import Config
from tracker.events import Event, Kind
from tracker.server import running
from tracker.stores.base import Store
from tracker.stores.sqlite import SqliteStore
from tracker.v1 import events_pb2, operation_pb2

CHILDREN = 12
OnDone = events_pb2.ChildrenPolicy


def _shared_store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, mp: pytest.MonkeyPatch
) -> tuple[str, Store]:
    """The spec the processes open (tests/apply_worker.py), and the test's own handle."""
    if backend == "sqlite":
        path = tmp_path / "shared.db"
        return f"sqlite:{path}", SqliteStore(path)
    from tracker.stores.spanner import SpannerStore

    database = spanner_database(backend, request.getfixturevalue("spanner_hosts"), mp)
    handy = backend == "spanner-handy"
    spec = f"spanner:{database}" + (":explicit-begin" if handy else "")
    return spec, SpannerStore(database, explicit_begin=handy)


def _race(spec: str, tmp_path: Path, halves: list[list[Event]]) -> list[int]:
    """Both processes apply their half at once; returns the outbox rows each wrote."""
    procs = []
    for i, half in enumerate(halves):
        f = tmp_path / f"half-{i}.json"
        f.write_text(json.dumps([to_structured_dict(e) for e in half]))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.children_worker", spec, str(f)],
                cwd=ROOT,
                env=dict(os.environ),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        for proc in procs:  # the barrier: both are ready before either starts
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", (
                proc.stderr.read() if proc.stderr else ""
            )
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        written = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-2000:]
            written.append(int(out.strip()))
        return written
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def _family(parent: str, on_done: int) -> tuple[list[Event], list[list[Event]]]:
    now = datetime.now(UTC)
    policy = events_pb2.ChildrenPolicy(on_done=on_done)  # type: ignore[arg-type]
    setup = [
        make_event(Kind.CREATED, parent, time=now, data=events_pb2.Created(children=policy)),
        *(
            make_event(Kind.CREATED, f"{parent}-c{i}", time=now, data={"parent": parent})
            for i in range(CHILDREN)
        ),
    ]
    ends = [make_event(Kind.SUCCEEDED, f"{parent}-c{i}", time=now) for i in range(CHILDREN)]
    return setup, [ends[0::2], ends[1::2]]  # interleaved halves: both hit the parent


def _summary(store: Store, name: str) -> operation_pb2.ChildrenSummary:
    stored = store.get(name)
    assert stored is not None
    return stored.state.children


@pytest.mark.parametrize("backend", ["sqlite", "spanner-handy", "spanner-google"])
def test_children_ending_on_two_processes_resume_the_parent_exactly_once(
    backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    pubsub_env: str,
) -> None:
    parent = "operations/race-parent"
    spec, store = _shared_store(backend, tmp_path, request, monkeypatch)
    setup, halves = _family(parent, OnDone.RESUME)
    store.apply(setup)
    written = _race(spec, tmp_path, halves)
    summary = _summary(store, parent)
    assert (summary.total, summary.done, summary.succeeded, summary.percent) == (
        CHILDREN,
        CHILDREN,
        CHILDREN,
        100.0,
    )
    pending = store.outbox_pending(1000)
    resumes = [i for i in pending if i.notice.kind == notices.RESUME]
    assert [i.notice.operation for i in resumes] == [parent]
    assert sum(written) == len(pending) == CHILDREN + 1  # each child's done, one resume
    stored = store.get(parent)
    assert stored is not None and stored.state.attempt == 2 and not stored.operation.done

    # A tracker over the same store delivers it: one notice on the control topic.
    pubsub = PubSub()
    control = pubsub.topic()
    sub = pubsub.subscription(control)
    config = Config(db=":memory:", http_port=0, grpc_port=-1, control_topic=control)
    with running(config, store=store) as server:
        loop: asyncio.AbstractEventLoop = server.loop  # type: ignore[attr-defined]
        asyncio.run_coroutine_threadsafe(server.tracker.dispatcher.drain(), loop).result(60)
        assert store.outbox_pending() == []
    messages = pubsub.pull_all(sub)
    notes = [parse_notice(dict(m.attributes), m.data) for m in messages]
    assert [(n.id, n.operation, n.reason, n.attempt) for n in notes] == [
        (resumes[0].id, parent, "children_done", 2)
    ]
    assert notes[0].notice.children.done == CHILDREN


@pytest.mark.parametrize("backend", ["sqlite", "spanner-handy", "spanner-google"])
def test_children_ending_on_two_processes_complete_the_parent_exactly_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = "operations/race-complete"
    spec, store = _shared_store(backend, tmp_path, request, monkeypatch)
    setup, halves = _family(parent, OnDone.COMPLETE)
    store.apply(setup)
    _race(spec, tmp_path, halves)
    stored = store.get(parent)
    assert stored is not None and stored.operation.done
    response = operation_pb2.ChildrenSummary()
    assert stored.operation.response.Unpack(response)
    assert (response.total, response.done, response.succeeded) == (CHILDREN, CHILDREN, CHILDREN)
    done_rows = [
        i
        for i in store.outbox_pending(1000)
        if i.notice.operation == parent and (i.notice.kind or notices.DONE) == notices.DONE
    ]
    assert len(done_rows) == 1  # ended once, by whichever process saw the last end
    store.close()
