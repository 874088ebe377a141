"""tracker.once: the seen-stores' transitions, leases, restarts and a race of processes."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path

import pytest

from tracker.done import Redeliver
from tracker.once import Claim, MemorySeen, SeenStore, SqliteSeen, once


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Factory = Callable[[Clock], SeenStore]


@pytest.fixture(params=["memory", "sqlite"])
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    if request.param == "memory":
        return lambda clock: MemorySeen(clock=clock)
    return lambda clock: SqliteSeen(tmp_path / "seen.db", clock=clock)


def test_claim_finish_abandon_and_lease_expiry(factory: Factory) -> None:
    clock = Clock()
    seen = factory(clock)
    assert seen.claim("a", 60) is Claim.MINE
    assert seen.claim("a", 60) is Claim.BUSY  # running: not twice at once
    seen.abandon("a")  # the effect raised
    assert seen.claim("a", 60) is Claim.MINE  # the redelivery retries it
    clock.now += 61  # that run crashed: its lease expired
    assert seen.claim("a", 60) is Claim.MINE
    seen.finish("a")
    assert seen.claim("a", 60) is Claim.SEEN
    clock.now += 10_000
    assert seen.claim("a", 60) is Claim.SEEN  # finished is for good, until pruned
    assert seen.claim("b", 60) is Claim.MINE
    seen.finish("b")
    clock.now += 5
    assert seen.prune(older_than_seconds=100) == 1  # "a" only
    assert seen.claim("a", 60) is Claim.MINE and seen.claim("b", 60) is Claim.SEEN


def test_sqlite_remembers_across_a_restart(tmp_path: Path) -> None:
    first = SqliteSeen(tmp_path / "s.db")
    assert first.claim("n-1", 60) is Claim.MINE
    first.finish("n-1")
    assert first.claim("n-2", 60) is Claim.MINE  # claimed, then the process dies
    first.close()
    again = SqliteSeen(tmp_path / "s.db")
    assert again.claim("n-1", 60) is Claim.SEEN
    assert again.claim("n-2", 60) is Claim.BUSY  # until its lease expires


def _race(path: str, key: str, start: object, out: object) -> None:
    seen = SqliteSeen(path)
    start.wait()  # type: ignore[attr-defined]
    out.put(seen.claim(key, 60).value)  # type: ignore[attr-defined]


def test_processes_racing_on_one_file_get_one_claim(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    path = str(tmp_path / "race.db")
    SqliteSeen(path).close()  # the table exists before they race
    workers = [ctx.Process(target=_race, args=(path, "k", start, out)) for _ in range(6)]
    for worker in workers:
        worker.start()
    start.set()
    results = sorted(out.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(30)
    assert results == ["busy"] * 5 + ["mine"]


class Note:
    def __init__(self, id: str) -> None:
        self.id = id


def test_once_runs_the_effect_once_and_retries_a_failure() -> None:
    seen = MemorySeen()
    ran: list[str] = []
    failures = iter([True, False])

    def effect(note: Note) -> None:
        if note.id == "flaky" and next(failures):
            raise RuntimeError("down")
        ran.append(note.id)

    callback = once(effect, seen)
    callback(Note("n1"))
    callback(Note("n1"))  # a redelivery
    with pytest.raises(RuntimeError):
        callback(Note("flaky"))
    callback(Note("flaky"))  # redelivered after the nack: runs again, succeeds
    callback(Note("flaky"))
    callback(Note(""))  # no id: every time
    callback(Note(""))
    assert ran == ["n1", "flaky", "", ""]
    assert seen.claim("other", 60) is Claim.MINE
    with pytest.raises(Redeliver):
        callback(Note("other"))  # "running" elsewhere: left for redelivery
