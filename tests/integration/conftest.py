"""Fixtures the integration tests share: one in-memory tracker per test module.

`server` serves HTTP and gRPC on free loopback ports; `http` is a client of its HTTP
side. A module that needs another configuration defines its own `server` (a module's
fixture overrides this one), and `http` then talks to that one.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tracker.config import Config
from tracker.server import Server, running


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running(Config(db=":memory:", http_port=0, grpc_port=0)) as s:
        yield s


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        yield client
