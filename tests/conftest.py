"""Shared fixtures. `store` is parametrized over every backend the contract suite covers:

- sqlite: the embedded default;
- spanner-handy: handy-spanner (the issue's Spanner server) with the emulator DDL variant;
- spanner-google: Google's Cloud Spanner Emulator with the canonical DDL (PROTO BUNDLE,
  generated key, JSON, row deletion policy).

The servers start once per session (tests/emulators/harness.py); an existing
SPANNER_EMULATOR_HOST / PUBSUB_EMULATOR_HOST is used instead. A server that cannot start
fails the tests that need it; nothing is skipped.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud.spanner_v1.keyset import KeySet

from tests.emulators import harness
from tests.tokens import CERT, Certs, secured_config
from tracker.server import Server, running
from tracker.stores.base import Store
from tracker.stores.sqlite import SqliteStore

# sqlite-tenant: a SQLite store under a table prefix, in a file whose plain tables and
# another tenant's hold operations of their own (`tracker.stores.tenants`).
BACKENDS = ["sqlite", "sqlite-tenant", "spanner-handy", "spanner-google"]
PUBSUB_SERVERS = ["pstest", "google"]
SPANNER_SERVER = {"spanner-handy": "handy-spanner", "spanner-google": "cloud-spanner-emulator"}
VARIANT = {"spanner-handy": "emulator", "spanner-google": "canonical"}
PROJECT, INSTANCE = "tracker-test", "test-instance"
_db_ids = itertools.count()


@pytest.fixture(scope="session")
def spanner_hosts() -> Iterator[dict[str, str]]:
    """Host of each Spanner server, started lazily on first use."""
    started: dict[str, harness.RunningServer] = {}
    hosts: dict[str, str] = _LazyHosts(started)
    yield hosts
    for server in started.values():
        server.stop()


class _LazyHosts(dict[str, str]):
    def __init__(self, started: dict[str, harness.RunningServer]) -> None:
        super().__init__()
        self.started = started

    def __missing__(self, kind: str) -> str:
        server = harness.start_server(kind)
        self.started[kind] = server
        self[kind] = server.host
        return server.host


def pubsub_servers() -> list[str]:
    """The Pub/Sub servers of this session: both, or the one TRACKER_PUBSUB_SERVER names.
    A PUBSUB_EMULATOR_HOST already set is one server (TRACKER_PUBSUB_SERVER says which
    kind, pstest by default), used as it is."""
    chosen = os.environ.get("TRACKER_PUBSUB_SERVER", "")
    if chosen and chosen not in PUBSUB_SERVERS:
        raise pytest.UsageError(
            f"TRACKER_PUBSUB_SERVER={chosen!r}: expected one of {', '.join(PUBSUB_SERVERS)}"
        )
    if chosen:
        return [chosen]
    return ["pstest"] if _EXTERNAL_PUBSUB else PUBSUB_SERVERS


_EXTERNAL_PUBSUB = os.environ.get(harness.PUBSUB_ENV, "")


# Session scope and a parameter: pytest runs every test of one server, then stops it and
# runs them all on the next, so each server starts once.
@pytest.fixture(scope="session", params=pubsub_servers(), ids=lambda kind: f"pubsub-{kind}")
def pubsub_host(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """pstest, then Google's Pub/Sub emulator (tests/README.md lists what differs)."""
    if _EXTERNAL_PUBSUB:
        yield _EXTERNAL_PUBSUB
        return
    if request.param == "google":
        from tests.pubsub_kit import google_emulator

        with google_emulator(tmp_path_factory.mktemp("pubsub") / "emulator.log") as host:
            yield host
        return
    with harness.running_server("pstest") as host:
        yield host


@pytest.fixture
def pubsub_server(pubsub_host: str, request: pytest.FixtureRequest) -> str:
    """Which server `pubsub_host` is: "pstest" or "google"."""
    return str(request.node.callspec.params["pubsub_host"])


@pytest.fixture
def pubsub_env(pubsub_host: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_host)
    return pubsub_host


def spanner_database(backend: str, hosts: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database with the tracker schema applied; returns its path."""
    from google.api_core import exceptions as gexc
    from google.cloud import spanner

    from tracker.stores import spanner_schema

    monkeypatch.setenv("SPANNER_EMULATOR_HOST", hosts[SPANNER_SERVER[backend]])
    for key, value in harness.SPANNER_CLIENT_ENV.items():
        monkeypatch.setenv(key, value)
    client = spanner.Client(project=PROJECT)
    instance = client.instance(
        INSTANCE, configuration_name=f"projects/{PROJECT}/instanceConfigs/emulator-config"
    )
    if backend == "spanner-google":
        with contextlib.suppress(gexc.AlreadyExists):
            instance.create().result(60)
    database_id = f"t{os.getpid()}x{next(_db_ids)}"
    database = instance.database(database_id)
    database.create().result(60)
    spanner_schema.apply(database, VARIANT[backend])  # type: ignore[arg-type]
    return f"projects/{PROJECT}/instances/{INSTANCE}/databases/{database_id}"


# One database per Spanner server and session; each test gets tables of its own under a
# prefix (`tracker schema apply --table-prefix`), as tenants of one database would. A
# prefix whose test is over is emptied and used again: DDL on a schema that keeps growing
# gets slower with every table, deleting rows does not.
_session_databases: dict[tuple[str, str], str] = {}
_free_prefixes: dict[str, list[str]] = {}
_prefixes = itertools.count()


def session_database(backend: str, hosts: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """The session's database on `backend`'s server (created, empty, on first use)."""
    from google.cloud import spanner

    host = hosts[SPANNER_SERVER[backend]]
    monkeypatch.setenv("SPANNER_EMULATOR_HOST", host)
    for key, value in harness.SPANNER_CLIENT_ENV.items():
        monkeypatch.setenv(key, value)
    if (backend, host) not in _session_databases:
        client = spanner.Client(project=PROJECT)
        instance = client.instance(
            INSTANCE, configuration_name=f"projects/{PROJECT}/instanceConfigs/emulator-config"
        )
        if backend == "spanner-google":
            with contextlib.suppress(Exception):
                instance.create().result(60)
        database_id = f"s{os.getpid()}x{next(_db_ids)}"
        instance.database(database_id).create().result(60)
        _session_databases[backend, host] = (
            f"projects/{PROJECT}/instances/{INSTANCE}/databases/{database_id}"
        )
    return _session_databases[backend, host]


TENANT_PREFIX = "tenant_"
# What the other tenants of a sqlite-tenant file hold: the same names as tests use, so
# that any query reading across tenants finds them.
NEIGHBOUR_NAMES = ("operations/a", "operations/b", "operations/x/1", "operations/op")


def neighbours(path: Path) -> None:
    """The plain schema and tenant `other_` in `path`, each with a few operations (one of
    them done) and a dead letter."""
    from datetime import UTC, datetime

    from tracker.events import Event, Kind
    from tracker.stores.base import DeadLetter
    from tracker.v1 import events_pb2

    for prefix in ("", "other_"):
        other = SqliteStore(path, table_prefix=prefix)
        now = datetime.now(UTC)
        events = [
            Event(
                id=f"n-{i}",
                source="neighbour",
                kind=Kind.CREATED,
                operation=name,
                time=now,
                data=events_pb2.Created(operation_type="neighbour", labels={"team": "a"}),
            )
            for i, name in enumerate(NEIGHBOUR_NAMES)
        ]
        events.append(
            Event(
                id="n-end",
                source="neighbour",
                kind=Kind.CANCELLED,
                operation=NEIGHBOUR_NAMES[0],
                time=now,
                data=events_pb2.Cancelled(reason="neighbour"),
            )
        )
        other.apply(events)
        other.add_dead_letter(
            DeadLetter(
                id=f"neighbour-{prefix or 'plain'}",
                received_at=now,
                route="push",
                reason="bad_data",
                detail="a neighbour's",
                attributes={},
                body=b"",
            )
        )
        other.close()


def is_sqlite(backend: str) -> bool:
    return backend.startswith("sqlite")


def open_backend(
    kind: str,
    tmp_path: Path,
    *,
    strict: bool = False,
    hosts: dict[str, str] | None = None,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> Store:
    if kind == "sqlite":
        return SqliteStore(tmp_path / "tracker.db", strict=strict)
    if kind == "sqlite-tenant":
        file = tmp_path / "tracker.db"
        neighbours(file)
        return SqliteStore(file, strict=strict, table_prefix=TENANT_PREFIX)
    assert hosts is not None and monkeypatch is not None
    from tracker.stores import spanner_schema
    from tracker.stores.spanner import SpannerStore

    path = session_database(kind, hosts, monkeypatch)
    database = spanner_schema.open_database(path)
    free = _free_prefixes.setdefault(path, [])
    if free:
        names = spanner_schema.Names(free.pop())
    else:
        names = spanner_schema.Names(f"t{next(_prefixes)}_")
        spanner_schema.apply(database, VARIANT[kind], names=names)  # type: ignore[arg-type]
    return SpannerStore(
        database,
        strict=strict,
        table_prefix=names.prefix,
        # handy-spanner returns no transaction id from an inline begin (tests/README.md).
        explicit_begin=kind == "spanner-handy",
    )


def release(store: Store) -> None:
    """Close `store`; a Spanner tenant's tables are emptied for the next test to use."""
    from tracker.stores import spanner_schema
    from tracker.stores.spanner import SpannerStore

    if isinstance(store, SpannerStore):
        names = store.n

        def wipe(transaction: Any) -> None:
            for table in spanner_schema.TABLES:
                if table != spanner_schema.SCHEMA_TABLE:
                    transaction.delete(names(table), KeySet(all_=True))

        store.database.run_in_transaction(wipe)
        _free_prefixes.setdefault(store.database.name, []).append(names.prefix)
    store.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Store]:
    hosts = request.getfixturevalue("spanner_hosts") if not is_sqlite(backend) else None
    s = open_backend(backend, tmp_path, hosts=hosts, monkeypatch=monkeypatch)
    yield s
    release(s)


@pytest.fixture
def strict_store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Store]:
    hosts = request.getfixturevalue("spanner_hosts") if not is_sqlite(backend) else None
    s = open_backend(backend, tmp_path, strict=True, hosts=hosts, monkeypatch=monkeypatch)
    yield s
    release(s)


@pytest.fixture(scope="module")
def certs() -> Iterator[Certs]:
    """A loopback endpoint publishing the test signing certificate (tests/tokens.py)."""
    c = Certs({"k1": CERT})
    yield c
    c.close()


@pytest.fixture(scope="module")
def secured_server(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A tracker that checks every caller: the tokens file, grants and ID tokens of
    tests/tokens.py `secured_config`."""
    with running(secured_config(tmp_path_factory.mktemp("auth"), certs.url)) as s:
        yield s


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The deploy/ tests last: ./scripts/test builds their tools (OpenTofu, the provider,
    checkov) in the background while everything else runs."""
    deploy = Path(__file__).resolve().parent / "deploy"
    items.sort(key=lambda item: Path(str(item.path)).is_relative_to(deploy))
