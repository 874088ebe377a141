"""Spanner-only behaviour, beyond the shared contract suite."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.conftest import open_backend


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
