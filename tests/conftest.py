"""Shared fixtures. `store` is parametrized over every backend the contract suite covers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tracker.stores.base import Store
from tracker.stores.sqlite import SqliteStore

BACKENDS = ["sqlite"]


def open_backend(kind: str, tmp_path: Path, *, strict: bool = False) -> Store:
    if kind == "sqlite":
        return SqliteStore(tmp_path / "tracker.db", strict=strict)
    raise ValueError(kind)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(backend: str, tmp_path: Path) -> Iterator[Store]:
    s = open_backend(backend, tmp_path)
    yield s
    s.close()


@pytest.fixture
def strict_store(backend: str, tmp_path: Path) -> Iterator[Store]:
    s = open_backend(backend, tmp_path, strict=True)
    yield s
    s.close()
