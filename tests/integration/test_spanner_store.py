"""Spanner-only behaviour, beyond the shared contract suite."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.conftest import open_backend
from tests.helpers import make_event
from tracker.errors import InvalidEvent
from tracker.events import Kind


def test_close_does_not_wait_for_a_hanging_session_shutdown(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = request.getfixturevalue("spanner_hosts")
    store = open_backend("spanner-handy", tmp_path, hosts=hosts, monkeypatch=monkeypatch)
    real_close = store.database.close  # type: ignore[attr-defined]
    release = threading.Event()

    def hanging_close() -> None:  # what multiplexed sessions can do for minutes
        release.wait(60)
        real_close()

    monkeypatch.setattr(store.database, "close", hanging_close)  # type: ignore[attr-defined]
    store.close(timeout=0.2)  # type: ignore[call-arg]
    assert not release.is_set()  # returned while the vendor close was still blocked
    release.set()


def test_a_write_spanner_can_never_take_is_store_rejected_poison(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Google's emulator enforces column sizes (EventId STRING(256)) and the 8 KiB key;
    the adapter turns its FailedPrecondition / InvalidArgument into the project's poison.
    (The parser's limits keep such events out; this is the store's own line of defence.)"""
    hosts = request.getfixturevalue("spanner_hosts")
    store = open_backend("spanner-google", tmp_path, hosts=hosts, monkeypatch=monkeypatch)
    try:
        for event in (
            make_event(Kind.PROGRESS, "operations/too-long-id", id="e" * 300),
            make_event(Kind.PROGRESS, "operations/too-long-key", source="s" * 9000),
        ):
            with pytest.raises(InvalidEvent) as info:
                store.apply([event])
            assert info.value.reason == "store_rejected"
            assert "Spanner rejected" in info.value.message
            assert store.get(event.operation) is None
        # The store still works for everything else.
        store.apply([make_event(Kind.PROGRESS, "operations/fine")])
        assert store.get("operations/fine") is not None
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["spanner-handy", "spanner-google"])
def test_two_table_prefixes_in_one_database_do_not_see_each_other(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = request.getfixturevalue("spanner_hosts")
    a = open_backend(backend, tmp_path, hosts=hosts, monkeypatch=monkeypatch)
    b = open_backend(backend, tmp_path, hosts=hosts, monkeypatch=monkeypatch)
    try:
        assert a.database.name == b.database.name  # type: ignore[attr-defined]
        assert a.n.prefix != b.n.prefix  # type: ignore[attr-defined]
        a.apply([make_event(Kind.SUCCEEDED, "operations/shared-name")])
        assert a.get("operations/shared-name") is not None
        assert b.get("operations/shared-name") is None
        assert b.outbox_pending() == [] and len(a.outbox_pending()) == 1
        b.apply([make_event(Kind.PROGRESS, "operations/shared-name", data={"percent": 5})])
        assert not b.get("operations/shared-name").operation.done  # type: ignore[union-attr]
        assert a.get("operations/shared-name").operation.done  # type: ignore[union-attr]
    finally:
        a.close()
        b.close()
