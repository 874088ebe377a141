"""Probe what the Python Google clients can do against the loopback test servers.

Not a test: a script that runs each feature the tracker may use, records OK or the exact
error, and prints one table per server (Markdown), the source of README.md's tables.

    .venv/bin/python tests/emulators/probe_compat.py                  # pstest + every Spanner
    .venv/bin/python tests/emulators/probe_compat.py --spanner handy-spanner --no-pubsub
    .venv/bin/python tests/emulators/probe_compat.py --json out.json

With PUBSUB_EMULATOR_HOST / SPANNER_EMULATOR_HOST set, those servers are probed instead of
starting new ones (then give a single --spanner to label the results).
"""

# The Google client libraries are untyped; this script is checked with that allowance.
# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `tests.emulators` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.emulators import harness

PROJECT = "test-project"
INSTANCE = "test-instance"
CHECK_TIMEOUT_S = 60.0
OP_TIMEOUT_S = 60.0


@dataclass
class Result:
    server: str
    feature: str
    ok: bool
    detail: str
    seconds: float


class Probe:
    """Runs named checks, each bounded by a timeout, and keeps their results."""

    skip: tuple[str, ...] = ()

    def __init__(self, server: str, alive: Callable[[], bool] = lambda: True) -> None:
        self.server = server
        self.alive = alive
        self.results: list[Result] = []

    def check(
        self, feature: str, fn: Callable[[], object], timeout_s: float = CHECK_TIMEOUT_S
    ) -> bool:
        if any(word.lower() in feature.lower() for word in self.skip):
            print(f"  [SKIP] {feature}", flush=True)
            return False
        if not self.alive():
            self.results.append(Result(self.server, feature, False, "server process exited", 0))
            print(f"  [FAIL] {feature}: server process exited", flush=True)
            return False
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:
                box["error"] = exc

        started = time.monotonic()
        t = threading.Thread(target=run, daemon=True, name=f"probe:{feature}")
        t.start()
        t.join(timeout_s)
        took = time.monotonic() - started
        if t.is_alive():
            ok, detail = False, f"TIMEOUT after {timeout_s:.0f}s"
            frame = sys._current_frames().get(t.ident or -1)
            if frame is not None and os.environ.get("PROBE_DUMP_STUCK"):
                print("".join(traceback.format_stack(frame)), file=sys.stderr)
        elif "error" in box:
            ok, detail = False, describe(box["error"])
        else:
            ok, detail = True, "" if box.get("value") is None else str(box["value"])
        self.results.append(Result(self.server, feature, ok, detail, round(took, 2)))
        mark = "OK  " if ok else "FAIL"
        print(f"  [{mark}] {feature}{': ' + detail if detail else ''}", flush=True)
        return ok


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, AssertionError) and not str(exc):
        text = "AssertionError at " + traceback.format_tb(exc.__traceback__)[-1].strip()
    text = " ".join(text.split())
    return text[:400] + ("..." if len(text) > 400 else "")


@contextmanager
def env(**values: str | None) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# =========================================================================== Pub/Sub


def probe_pubsub(host: str, label: str) -> list[Result]:
    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1
    from google.cloud.pubsub_v1.types import DeadLetterPolicy, PublisherOptions

    print(f"== Pub/Sub: {label} at {host}", flush=True)
    p = Probe(label)
    os.environ[harness.PUBSUB_ENV] = host
    publisher = pubsub_v1.PublisherClient(
        publisher_options=PublisherOptions(enable_message_ordering=True)
    )
    subscriber = pubsub_v1.SubscriberClient()
    run = uuid.uuid4().hex[:8]
    topic = publisher.topic_path(PROJECT, f"events-{run}")
    sub_filtered = subscriber.subscription_path(PROJECT, f"ingest-{run}")
    dl_topic = publisher.topic_path(PROJECT, f"dead-{run}")
    dl_sub = subscriber.subscription_path(PROJECT, f"dead-sub-{run}")
    sub_dl = subscriber.subscription_path(PROJECT, f"with-dl-{run}")

    p.check("create topic", lambda: publisher.create_topic(request={"name": topic}).name)
    p.check(
        "get topic / list topics",
        lambda: (
            publisher.get_topic(request={"topic": topic}).name,
            topic
            in [t.name for t in publisher.list_topics(request={"project": f"projects/{PROJECT}"})],
        ),
    )

    def create_filtered() -> str:
        s = subscriber.create_subscription(
            request={
                "name": sub_filtered,
                "topic": topic,
                "filter": 'attributes.kind = "match"',
                "enable_message_ordering": True,
                "ack_deadline_seconds": 10,
            }
        )
        assert s.filter == 'attributes.kind = "match"', s.filter
        assert s.enable_message_ordering
        return f"filter={s.filter!r} ordering={s.enable_message_ordering}"

    p.check("subscription with filter + message ordering", create_filtered)
    p.check(
        "invalid filter rejected",
        lambda: expect_error(
            lambda: subscriber.create_subscription(
                request={
                    "name": subscriber.subscription_path(PROJECT, f"bad-{run}"),
                    "topic": topic,
                    "filter": "attributes.kind === nope",
                }
            ),
            gexc.InvalidArgument,
        ),
    )

    def publish() -> str:
        futures = []
        for i in range(6):
            kind = "match" if i % 2 == 0 else "other"
            futures.append(
                publisher.publish(
                    topic,
                    f"msg-{i}".encode(),
                    ordering_key="operations/op-1",
                    kind=kind,
                    seq=str(i),
                    **{"ce-type": "com.example.operation.v1.progress"},
                )
            )
        ids = [f.result(timeout=OP_TIMEOUT_S) for f in futures]
        return f"{len(ids)} ids"

    p.check("publish with ordering key + attributes", publish)

    def streaming_pull() -> str:
        got: list[tuple[bytes, dict[str, str], str]] = []
        lock = threading.Lock()

        def cb(msg: Any) -> None:
            with lock:
                got.append((msg.data, dict(msg.attributes), msg.ordering_key))
            msg.ack()

        fut = subscriber.subscribe(sub_filtered, cb)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with lock:
                if len(got) >= 3:
                    break
            time.sleep(0.1)
        time.sleep(1.5)  # would a non-matching one still arrive?
        fut.cancel()
        with contextlib.suppress(Exception):
            fut.result(timeout=10)
        datas = [g[0] for g in got]
        assert datas == [b"msg-0", b"msg-2", b"msg-4"], f"got {datas}"
        assert all(g[1]["kind"] == "match" for g in got)
        assert all(g[2] == "operations/op-1" for g in got), [g[2] for g in got]
        assert got[0][1]["ce-type"] == "com.example.operation.v1.progress"
        return "only matching, in order, with ordering_key + attributes"

    p.check("streaming pull receives only matching messages, in order; ack", streaming_pull)

    def acked_gone() -> str:
        r = subscriber.pull(request={"subscription": sub_filtered, "max_messages": 10}, timeout=5)
        assert len(r.received_messages) == 0, [m.message.data for m in r.received_messages]
        return "no redelivery after ack"

    p.check("acked messages not redelivered", acked_gone)

    def dead_letter() -> str:
        publisher.create_topic(request={"name": dl_topic})
        subscriber.create_subscription(request={"name": dl_sub, "topic": dl_topic})
        s = subscriber.create_subscription(
            request={
                "name": sub_dl,
                "topic": topic,
                "ack_deadline_seconds": 10,
                "dead_letter_policy": DeadLetterPolicy(
                    dead_letter_topic=dl_topic, max_delivery_attempts=5
                ),
            }
        )
        assert s.dead_letter_policy.max_delivery_attempts == 5
        publisher.publish(topic, b"poison", ordering_key="operations/op-2", kind="x").result(
            timeout=OP_TIMEOUT_S
        )
        attempts: list[int] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(attempts) < 10:
            r = subscriber.pull(request={"subscription": sub_dl, "max_messages": 10}, timeout=5)
            for m in r.received_messages:
                if m.message.data == b"poison":
                    attempts.append(m.delivery_attempt)
                    subscriber.modify_ack_deadline(
                        request={
                            "subscription": sub_dl,
                            "ack_ids": [m.ack_id],
                            "ack_deadline_seconds": 0,
                        }
                    )
                else:
                    subscriber.acknowledge(request={"subscription": sub_dl, "ack_ids": [m.ack_id]})
            if not r.received_messages:
                dl = subscriber.pull(
                    request={"subscription": dl_sub, "max_messages": 10}, timeout=5
                )
                if dl.received_messages:
                    m = dl.received_messages[0].message
                    subscriber.acknowledge(
                        request={
                            "subscription": dl_sub,
                            "ack_ids": [x.ack_id for x in dl.received_messages],
                        }
                    )
                    assert m.data == b"poison", m.data
                    return (
                        f"nacked {len(attempts)}x (delivery_attempt={attempts}), then "
                        f"on dead-letter topic with attributes {dict(m.attributes)}"
                    )
        raise AssertionError(f"never dead-lettered; delivery attempts seen: {attempts}")

    p.check("dead-letter policy: nacked message lands on dead-letter topic", dead_letter)

    def seek_and_modify() -> str:
        subscriber.modify_ack_deadline  # noqa: B018 - exercised above; here: update + delete
        upd = subscriber.update_subscription(
            request={
                "subscription": {"name": sub_filtered, "ack_deadline_seconds": 30},
                "update_mask": {"paths": ["ack_deadline_seconds"]},
            }
        )
        assert upd.ack_deadline_seconds == 30
        subscriber.delete_subscription(request={"subscription": sub_filtered})
        return "update_subscription + delete_subscription"

    p.check("update / delete subscription", seek_and_modify)

    def exactly_once() -> str:
        name = subscriber.subscription_path(PROJECT, f"eod-{run}")
        s = subscriber.create_subscription(
            request={"name": name, "topic": topic, "enable_exactly_once_delivery": True}
        )
        assert s.enable_exactly_once_delivery
        publisher.publish(topic, b"eod", ordering_key="operations/op-3").result(timeout=30)
        r = subscriber.pull(request={"subscription": name, "max_messages": 10}, timeout=5)
        assert r.received_messages, "nothing pulled"
        subscriber.acknowledge(
            request={"subscription": name, "ack_ids": [m.ack_id for m in r.received_messages]}
        )
        return "created, pulled, acked"

    p.check("exactly-once delivery subscription", exactly_once)

    subscriber.close()
    publisher.stop()
    return p.results


def expect_error(fn: Callable[[], object], kind: type[BaseException]) -> str:
    try:
        fn()
    except kind as exc:
        return describe(exc)[:120]
    raise AssertionError(f"expected {kind.__name__}, got success")


# =========================================================================== Spanner

BASE_DDL = [
    """CREATE TABLE Operations (
        Name STRING(MAX) NOT NULL,
        State INT64 NOT NULL,
        Done BOOL NOT NULL,
        Payload BYTES(MAX),
        UpdateTime TIMESTAMP
    ) PRIMARY KEY (Name)""",
]

# (feature, statements): each applied on its own, so one unsupported feature does not
# hide the others.
FEATURE_DDL: list[tuple[str, list[str]]] = [
    (
        "DDL: secondary index (+ STORING)",
        ["CREATE INDEX OperationsByState ON Operations(State) STORING (Done)"],
    ),
    (
        "DDL: INTERLEAVE IN PARENT ... ON DELETE CASCADE",
        [
            """CREATE TABLE Events (
            Name STRING(MAX) NOT NULL,
            EventId STRING(MAX) NOT NULL,
            Seq INT64
        ) PRIMARY KEY (Name, EventId),
        INTERLEAVE IN PARENT Operations ON DELETE CASCADE"""
        ],
    ),
    (
        "DDL: allow_commit_timestamp=true",
        [
            """CREATE TABLE Stamps (
            Id INT64 NOT NULL,
            Ts TIMESTAMP OPTIONS (allow_commit_timestamp=true)
        ) PRIMARY KEY (Id)"""
        ],
    ),
    ("DDL: JSON column", ["CREATE TABLE Docs (Id INT64 NOT NULL, Doc JSON) PRIMARY KEY (Id)"]),
    (
        "DDL: ARRAY columns",
        [
            """CREATE TABLE Arrays (
            Id INT64 NOT NULL, Tags ARRAY<STRING(MAX)>, Nums ARRAY<INT64>
        ) PRIMARY KEY (Id)"""
        ],
    ),
    (
        "DDL: STORED generated column",
        [
            """CREATE TABLE Gen (
            Id INT64 NOT NULL, A INT64, B INT64, S INT64 AS (A + B) STORED
        ) PRIMARY KEY (Id)"""
        ],
    ),
    (
        "DDL: ROW DELETION POLICY (OLDER_THAN)",
        [
            """CREATE TABLE Expiring (
            Id INT64 NOT NULL, CreatedAt TIMESTAMP NOT NULL
        ) PRIMARY KEY (Id), ROW DELETION POLICY (OLDER_THAN(CreatedAt, INTERVAL 30 DAY))"""
        ],
    ),
    (
        "DDL: DEFAULT column value",
        [
            """CREATE TABLE Defaults (
            Id INT64 NOT NULL, Note STRING(MAX) DEFAULT ('none'),
            Created TIMESTAMP DEFAULT (CURRENT_TIMESTAMP())
        ) PRIMARY KEY (Id)"""
        ],
    ),
    ("DDL: ALTER TABLE ADD COLUMN", ["ALTER TABLE Operations ADD COLUMN Etag STRING(64)"]),
    (
        "DDL: CHECK constraint",
        [
            "CREATE TABLE Checked (Id INT64 NOT NULL, P INT64, CHECK (P BETWEEN 0 AND 100)) "
            "PRIMARY KEY (Id)"
        ],
    ),
    (
        "DDL: DROP TABLE",
        ["CREATE TABLE Tmp (Id INT64 NOT NULL) PRIMARY KEY (Id)", "DROP TABLE Tmp"],
    ),
]


def status_descriptor_set() -> bytes:
    """FileDescriptorSet with google/rpc/status.proto and its import any.proto."""
    from google.protobuf import any_pb2, descriptor_pb2
    from google.rpc import status_pb2

    fds = descriptor_pb2.FileDescriptorSet()
    for mod in (any_pb2, status_pb2):
        fdp = descriptor_pb2.FileDescriptorProto()
        mod.DESCRIPTOR.CopyToProto(fdp)
        fds.file.append(fdp)
    return fds.SerializeToString()


def probe_spanner(
    host: str,
    label: str,
    alive: Callable[[], bool] = lambda: True,
    create_database: bool = True,
) -> list[Result]:
    from google.api_core import exceptions as gexc
    from google.cloud import spanner
    from google.cloud.spanner_v1 import param_types
    from google.cloud.spanner_v1.data_types import JsonObject
    from google.rpc import status_pb2

    print(f"== Spanner: {label} at {host}", flush=True)
    p = Probe(label, alive)
    os.environ[harness.SPANNER_ENV] = host
    os.environ.update(harness.SPANNER_CLIENT_ENV)
    client = spanner.Client(project=PROJECT)
    instance = client.instance(
        INSTANCE,
        configuration_name=f"projects/{PROJECT}/instanceConfigs/emulator-config",
        display_name="test",
        node_count=1,
    )

    def create_instance() -> str:
        try:
            instance.create().result(timeout=OP_TIMEOUT_S)
        except gexc.AlreadyExists:
            return "already exists"
        return "created"

    p.check("instance admin: create instance", create_instance)

    db_id = f"db{uuid.uuid4().hex[:8]}"
    database = instance.database(db_id, ddl_statements=BASE_DDL)

    def create_db() -> None:
        database.create().result(timeout=OP_TIMEOUT_S)

    created = create_database and p.check(
        "database admin: create database (+ CREATE TABLE)", create_db
    )
    if not created:
        # handy-spanner creates a database on first session; apply the DDL another way.
        def base_ddl() -> None:
            database.update_ddl(BASE_DDL).result(timeout=OP_TIMEOUT_S)

        p.check("database admin: update_ddl on implicitly created database", base_ddl)

    ddl_ok: dict[str, bool] = {}
    for feature, stmts in FEATURE_DDL:

        def apply(stmts: list[str] = stmts) -> None:
            database.update_ddl(stmts).result(timeout=OP_TIMEOUT_S)

        ddl_ok[feature] = p.check(feature, apply)

    def proto_bundle() -> None:
        database.update_ddl(
            [
                "CREATE PROTO BUNDLE (google.rpc.Status)",
                "CREATE TABLE Protos (Id INT64 NOT NULL, St google.rpc.Status) PRIMARY KEY (Id)",
            ],
            proto_descriptors=status_descriptor_set(),
        ).result(timeout=OP_TIMEOUT_S)

    ddl_ok["proto"] = p.check("DDL: CREATE PROTO BUNDLE + PROTO column", proto_bundle)

    def get_ddl() -> str:
        database.reload()
        stmts = list(database.ddl_statements)
        assert any("Operations" in s for s in stmts), stmts
        return f"{len(stmts)} statements"

    p.check("database admin: get DDL (database.reload)", get_ddl)

    # ---- data
    def batch_insert() -> str:
        with database.batch() as batch:
            batch.insert(
                "Operations",
                columns=("Name", "State", "Done", "Payload", "UpdateTime"),
                values=[
                    (
                        f"operations/op-{i}",
                        i % 3,
                        False,
                        base64.b64encode(b"\x00\x01"),
                        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                    )
                    for i in range(10)
                ],
            )
        with database.snapshot() as snap:
            rows = list(
                snap.read("Operations", ("Payload",), spanner.KeySet(keys=[["operations/op-0"]]))
            )
        # The Python client takes BYTES as base64 (raw non-UTF-8 bytes raise ValueError)
        # and returns BYTES columns base64-encoded too.
        assert rows == [[base64.b64encode(b"\x00\x01")]], rows
        return "BYTES are base64 both ways in the Python client"

    p.check("mutations: batch insert", batch_insert)

    def rw_txn() -> str:
        def work(txn: Any) -> int:
            rows = list(
                txn.read(
                    "Operations", ("Name", "State"), spanner.KeySet(keys=[["operations/op-1"]])
                )
            )
            assert rows == [["operations/op-1", 1]], rows
            txn.update("Operations", ("Name", "State", "Done"), [("operations/op-1", 9, True)])
            txn.insert("Operations", ("Name", "State", "Done"), [("operations/new", 0, False)])
            n = txn.execute_update(
                "UPDATE Operations SET State = @s WHERE Name = @n",
                params={"s": 7, "n": "operations/op-2"},
                param_types={"s": param_types.INT64, "n": param_types.STRING},
            )
            assert n == 1, n
            return int(n)

        database.run_in_transaction(work, timeout_secs=30)
        with database.snapshot() as snap:
            rows = dict(
                snap.execute_sql(
                    "SELECT Name, State FROM Operations WHERE Name IN "
                    "('operations/op-1', 'operations/op-2', 'operations/new')"
                )
            )
        assert rows == {"operations/op-1": 9, "operations/op-2": 7, "operations/new": 0}, rows
        return "read + update + insert + DML in one txn"

    p.check("run_in_transaction: read, mutations, DML", rw_txn)

    def rw_txn_retry_on_abort() -> str:
        calls = {"n": 0}

        def work(txn: Any) -> None:
            calls["n"] += 1
            list(txn.execute_sql("SELECT State FROM Operations WHERE Name = 'operations/op-3'"))
            if calls["n"] == 1:
                # A second transaction writes the same row before this one commits.
                def other(t2: Any) -> None:
                    t2.update("Operations", ("Name", "State"), [("operations/op-3", 42)])

                threading.Thread(
                    target=lambda: database.run_in_transaction(other, timeout_secs=20), daemon=True
                ).start()
                time.sleep(2)
            txn.update("Operations", ("Name", "State"), [("operations/op-3", 43)])

        database.run_in_transaction(work, timeout_secs=40)
        return f"work ran {calls['n']}x"

    p.check("run_in_transaction: conflicting writers (abort/retry or lock)", rw_txn_retry_on_abort)

    def rollback() -> str:
        def work(txn: Any) -> None:
            txn.insert("Operations", ("Name", "State", "Done"), [("operations/rb", 0, False)])
            raise KeyError("boom")

        with contextlib.suppress(KeyError):
            database.run_in_transaction(work, timeout_secs=30)
        with database.snapshot() as snap:
            rows = list(
                snap.read("Operations", ("Name",), spanner.KeySet(keys=[["operations/rb"]]))
            )
        assert rows == [], rows
        return "exception in txn function rolls back"

    p.check("run_in_transaction: rollback on exception", rollback)

    def reads() -> str:
        with database.snapshot(multi_use=True) as snap:
            by_key = list(
                snap.read(
                    "Operations",
                    ("Name", "State"),
                    spanner.KeySet(keys=[["operations/op-4"], ["operations/op-5"]]),
                )
            )
            assert [r[0] for r in by_key] == ["operations/op-4", "operations/op-5"], by_key
            rng = list(
                snap.read(
                    "Operations",
                    ("Name",),
                    spanner.KeySet(
                        ranges=[
                            spanner.KeyRange(
                                start_closed=["operations/op-6"], end_open=["operations/op-8"]
                            )
                        ]
                    ),
                )
            )
            assert [r[0] for r in rng] == ["operations/op-6", "operations/op-7"], rng
            everything = list(
                snap.read("Operations", ("Name",), spanner.KeySet(all_=True), limit=3)
            )
            assert len(everything) == 3, everything
        return "keys, key range, all+limit"

    p.check("snapshot reads (KeySet keys / range / all, limit)", reads)

    def index_read() -> str:
        with database.snapshot() as snap:
            rows = list(
                snap.read(
                    "Operations",
                    ("Name", "State", "Done"),
                    spanner.KeySet(keys=[[0]]),
                    index="OperationsByState",
                )
            )
        assert rows and all(r[1] == 0 for r in rows), rows
        return f"{len(rows)} rows via index"

    if ddl_ok["DDL: secondary index (+ STORING)"]:
        p.check("read via secondary index", index_read)

    def query_params() -> str:
        with database.snapshot() as snap:
            rows = list(
                snap.execute_sql(
                    "SELECT Name, State FROM Operations "
                    "WHERE State = @state AND Name IN UNNEST(@names) AND Done = @done "
                    "AND UpdateTime < @t ORDER BY Name LIMIT @lim",
                    params={
                        "state": 0,
                        "names": ["operations/op-0", "operations/op-6", "nope"],
                        "done": False,
                        "t": dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
                        "lim": 10,
                    },
                    param_types={
                        "state": param_types.INT64,
                        "names": param_types.Array(param_types.STRING),
                        "done": param_types.BOOL,
                        "t": param_types.TIMESTAMP,
                        "lim": param_types.INT64,
                    },
                )
            )
        assert rows == [["operations/op-0", 0], ["operations/op-6", 0]], rows
        return "INT64, ARRAY<STRING> (IN UNNEST), BOOL, TIMESTAMP params"

    p.check("query with parameters", query_params)

    def aggregate() -> str:
        with database.snapshot() as snap:
            rows = list(
                snap.execute_sql(
                    "SELECT State, COUNT(*) AS n FROM Operations GROUP BY State ORDER BY State"
                )
            )
        assert rows and all(len(r) == 2 for r in rows), rows
        return str(rows)

    p.check("query: GROUP BY / COUNT", aggregate)

    def stale_read() -> str:
        with database.snapshot(exact_staleness=dt.timedelta(seconds=0)) as snap:
            rows = list(snap.execute_sql("SELECT COUNT(*) FROM Operations"))
        return str(rows)

    p.check("snapshot with timestamp bound (exact_staleness)", stale_read)

    def commit_ts_mutation() -> str:
        with database.batch() as batch:
            batch.insert("Stamps", ("Id", "Ts"), [(1, spanner.COMMIT_TIMESTAMP)])
        with database.snapshot() as snap:
            rows = list(snap.execute_sql("SELECT Ts FROM Stamps WHERE Id = 1"))
        assert rows == [[batch.committed]], (rows, batch.committed)
        return "stored value == batch.committed"

    def commit_ts_dml() -> str:
        def dml(txn: Any) -> None:
            txn.execute_update("INSERT INTO Stamps (Id, Ts) VALUES (2, PENDING_COMMIT_TIMESTAMP())")

        database.run_in_transaction(dml, timeout_secs=30)
        with database.snapshot() as snap:
            rows = list(snap.execute_sql("SELECT Ts FROM Stamps WHERE Id = 2"))
        assert rows and isinstance(rows[0][0], dt.datetime), rows
        return f"stored {rows[0][0]}"

    if ddl_ok["DDL: allow_commit_timestamp=true"]:
        p.check("commit timestamp via mutation (spanner.COMMIT_TIMESTAMP)", commit_ts_mutation)

    def json_col() -> str:
        with database.batch() as batch:
            batch.insert(
                "Docs", ("Id", "Doc"), [(1, JsonObject({"percent": 50, "msg": "half"})), (2, None)]
            )
        with database.snapshot(multi_use=True) as snap:
            rows = dict(snap.execute_sql("SELECT Id, Doc FROM Docs ORDER BY Id"))
            assert rows[1] == {"msg": "half", "percent": 50}, rows
            vals = list(snap.execute_sql("SELECT JSON_VALUE(Doc, '$.msg') FROM Docs WHERE Id = 1"))
            assert vals == [["half"]], vals
        return "write JsonObject, read back, JSON_VALUE"

    if ddl_ok["DDL: JSON column"]:
        p.check("JSON column: write/read/JSON_VALUE", json_col)

    def arrays() -> str:
        with database.batch() as batch:
            batch.insert(
                "Arrays", ("Id", "Tags", "Nums"), [(1, ["a", "b"], [1, 2, 3]), (2, [], None)]
            )
        with database.snapshot() as snap:
            rows = {
                r[0]: (r[1], r[2])
                for r in snap.execute_sql("SELECT Id, Tags, Nums FROM Arrays ORDER BY Id")
            }
        assert rows == {1: (["a", "b"], [1, 2, 3]), 2: ([], None)}, rows
        return "write/read ARRAY<STRING>, ARRAY<INT64>, empty, NULL"

    def array_unnest() -> str:
        with database.snapshot() as snap:
            hit = list(
                snap.execute_sql(
                    "SELECT Id FROM Arrays WHERE @t IN UNNEST(Tags)",
                    params={"t": "b"},
                    param_types={"t": param_types.STRING},
                )
            )
        assert hit == [[1]], hit
        return "@t IN UNNEST(column)"

    def array_length() -> str:
        with database.snapshot() as snap:
            ln = list(snap.execute_sql("SELECT ARRAY_LENGTH(Nums) FROM Arrays WHERE Id = 1"))
        assert ln == [[3]], ln
        return "ARRAY_LENGTH(column)"

    if ddl_ok["DDL: ARRAY columns"]:
        p.check("ARRAY columns: write/read", arrays)
        p.check("ARRAY columns: IN UNNEST(column) in WHERE", array_unnest)
        p.check("ARRAY columns: ARRAY_LENGTH", array_length)

    def generated() -> str:
        with database.batch() as batch:
            batch.insert("Gen", ("Id", "A", "B"), [(1, 2, 3)])
        with database.snapshot() as snap:
            rows = list(snap.execute_sql("SELECT S FROM Gen WHERE Id = 1"))
        assert rows == [[5]], rows
        return "S = A + B computed on write"

    if ddl_ok["DDL: STORED generated column"]:
        p.check("STORED generated column: computed value", generated)

    def defaults() -> str:
        with database.batch() as batch:
            batch.insert("Defaults", ("Id",), [(1,)])
        with database.snapshot() as snap:
            rows = list(snap.execute_sql("SELECT Note, Created FROM Defaults WHERE Id = 1"))
        assert rows[0][0] == "none" and rows[0][1] is not None, rows
        return "defaults filled"

    if ddl_ok["DDL: DEFAULT column value"]:
        p.check("DEFAULT values filled on insert", defaults)

    def protos() -> str:
        st = status_pb2.Status(code=5, message="not found")
        with database.batch() as batch:
            batch.insert("Protos", ("Id", "St"), [(1, st)])
        with database.snapshot(multi_use=True) as snap:
            rows = list(
                snap.execute_sql(
                    "SELECT St FROM Protos WHERE Id = 1", column_info={"St": status_pb2.Status()}
                )
            )
            assert rows[0][0] == st, rows
            raw = list(snap.read("Protos", ("St",), spanner.KeySet(all_=True)))
            assert status_pb2.Status.FromString(raw[0][0]) == st, raw
        return "write message, read with column_info (or raw bytes without)"

    def proto_string_field() -> str:
        with database.snapshot() as snap:
            msg = list(snap.execute_sql("SELECT St.message FROM Protos WHERE Id = 1"))
        assert msg == [["not found"]], msg
        return "St.message (string field)"

    def proto_int32_field() -> str:
        with database.snapshot() as snap:
            code = list(snap.execute_sql("SELECT St.code FROM Protos WHERE Id = 1"))
        assert code == [[5]], code
        return "St.code (int32 field)"

    def proto_int32_cast() -> str:
        with database.snapshot() as snap:
            code = list(snap.execute_sql("SELECT Id FROM Protos WHERE CAST(St.code AS INT64) = 5"))
        assert code == [[1]], code
        return "CAST(St.code AS INT64) in WHERE"

    if ddl_ok["proto"]:
        p.check("PROTO column: write/read", protos)
        p.check("PROTO column: string field access in SQL", proto_string_field)
        p.check("PROTO column: int32 field access in SQL", proto_int32_field)
        p.check("PROTO column: CAST(int32 field AS INT64)", proto_int32_cast)

    def ttl_rows() -> str:
        with database.batch() as batch:
            batch.insert("Expiring", ("Id", "CreatedAt"), [(1, dt.datetime.now(dt.UTC))])
        return "table with policy accepts rows (deletion itself is not observable in tests)"

    if ddl_ok["DDL: ROW DELETION POLICY (OLDER_THAN)"]:
        p.check("ROW DELETION POLICY table: insert", ttl_rows)

    def interleave() -> str:
        with database.batch() as batch:
            batch.insert(
                "Events",
                ("Name", "EventId", "Seq"),
                [("operations/op-9", "e1", 1), ("operations/op-9", "e2", 2)],
            )
        with database.batch() as batch:
            batch.delete("Operations", spanner.KeySet(keys=[["operations/op-9"]]))
        with database.snapshot() as snap:
            rows = list(
                snap.execute_sql("SELECT COUNT(*) FROM Events WHERE Name = 'operations/op-9'")
            )
        assert rows == [[0]], rows
        return "child rows deleted with parent"

    if ddl_ok["DDL: INTERLEAVE IN PARENT ... ON DELETE CASCADE"]:
        p.check("interleaved child rows + ON DELETE CASCADE", interleave)

    def deletes() -> str:
        with database.batch() as batch:
            batch.delete("Operations", spanner.KeySet(keys=[["operations/new"]]))

        def dml(txn: Any) -> int:
            return int(txn.execute_update("DELETE FROM Operations WHERE Name = 'operations/op-8'"))

        n = database.run_in_transaction(dml, timeout_secs=30)
        with database.snapshot() as snap:
            rows = list(
                snap.read(
                    "Operations",
                    ("Name",),
                    spanner.KeySet(keys=[["operations/new"], ["operations/op-8"]]),
                )
            )
        assert rows == [] and n == 1, (rows, n)
        return "mutation delete + DML DELETE"

    p.check("row deletion (mutation + DML)", deletes)

    def batch_dml() -> str:
        def work(txn: Any) -> list[int]:
            status, counts = txn.batch_update(
                [
                    "UPDATE Operations SET State = 1 WHERE Name = 'operations/op-4'",
                    "UPDATE Operations SET State = 1 WHERE Name = 'operations/op-5'",
                ]
            )
            assert status.code == 0, status
            return list(counts)

        return str(database.run_in_transaction(work, timeout_secs=30))

    p.check("batch DML (transaction.batch_update)", batch_dml)

    def pdml() -> str:
        n = database.execute_partitioned_dml("UPDATE Operations SET Done = TRUE WHERE State = 0")
        assert n > 0, n
        return f"{n} rows"

    p.check("partitioned DML", pdml)

    def upsert() -> str:
        with database.batch() as batch:
            batch.insert_or_update(
                "Operations",
                ("Name", "State", "Done"),
                [("operations/op-0", 2, True), ("operations/up", 1, False)],
            )
            batch.replace("Operations", ("Name", "State", "Done"), [("operations/op-7", 2, True)])
        return "insert_or_update + replace"

    p.check("mutations: insert_or_update / replace", upsert)

    def dup_insert() -> str:
        def work(txn: Any) -> None:
            txn.insert("Operations", ("Name", "State", "Done"), [("operations/op-0", 0, False)])

        return expect_error(
            lambda: database.run_in_transaction(work, timeout_secs=30), gexc.AlreadyExists
        )

    p.check("duplicate insert -> AlreadyExists", dup_insert)

    # Checks that may leave a server wedged (seen: handy-spanner) come last.
    if ddl_ok["DDL: allow_commit_timestamp=true"]:
        p.check("commit timestamp via DML (PENDING_COMMIT_TIMESTAMP())", commit_ts_dml)

    def write_after_failed_dml() -> str:
        def bad(txn: Any) -> None:
            txn.execute_update("UPDATE Operations SET State = NO_SUCH_FUNCTION() WHERE TRUE")

        with contextlib.suppress(Exception):
            database.run_in_transaction(bad, timeout_secs=10)

        def good(txn: Any) -> None:
            txn.update("Operations", ("Name", "State"), [("operations/op-1", 11)])

        database.run_in_transaction(good, timeout_secs=20)
        return "a failed DML statement does not block later writes"

    p.check("write transaction after a failed DML statement", write_after_failed_dml, timeout_s=40)

    mux_db: list[Any] = []

    def multiplexed_default() -> str:
        unset: dict[str, str | None] = dict.fromkeys(harness.SPANNER_CLIENT_ENV)
        unset["SPANNER_DISABLE_BUILTIN_METRICS"] = "true"
        with env(**unset):
            c2 = spanner.Client(project=PROJECT)
            db2 = c2.instance(INSTANCE).database(db_id)
            mux_db.append(db2)

            def work(txn: Any) -> None:
                list(txn.execute_sql("SELECT 1"))
                txn.update("Operations", ("Name", "State"), [("operations/op-1", 3)])

            db2.run_in_transaction(work, timeout_secs=30)
            with db2.snapshot() as snap:
                rows = list(
                    snap.execute_sql("SELECT State FROM Operations WHERE Name = 'operations/op-1'")
                )
            assert rows == [[3]], rows
        return "snapshot + read-write transaction with the client's defaults"

    p.check("client defaults (multiplexed sessions): read + read-write txn", multiplexed_default)
    if mux_db:
        # Database.close() joins the multiplexed-session maintenance thread, which sleeps
        # in 10-minute steps (google-cloud-spanner 3.71): close() can block that long.
        p.check(
            "client defaults: Database.close() returns within 15s", mux_db[0].close, timeout_s=15
        )

    def drop_db() -> None:
        database.drop()

    p.check("database admin: drop database", drop_db)
    return p.results


# =========================================================================== main

# Servers whose CreateDatabase takes the process down: probed on a throwaway server,
# then the main probe creates its database implicitly (first session) + UpdateDatabaseDdl.
CREATE_DATABASE_CRASHES = {"spannertest"}


def probe_create_database_alone(kind: str) -> list[Result]:
    from google.cloud import spanner

    server = harness.start_server(kind)
    try:
        print(f"== Spanner: {kind} (throwaway server for CreateDatabase)", flush=True)
        os.environ[harness.SPANNER_ENV] = server.host
        os.environ.update(harness.SPANNER_CLIENT_ENV)
        db = spanner.Client(project=PROJECT).instance(INSTANCE).database("crashdb", BASE_DDL)
        p = Probe(kind)

        def create_db() -> None:
            db.create().result(timeout=OP_TIMEOUT_S)

        p.check("database admin: create database (+ CREATE TABLE)", create_db, timeout_s=20)
        time.sleep(0.5)
        code = server.process.poll() if server.process else None
        if code is not None:
            p.results[-1].detail += f" -- server exited with code {code}: " + " ".join(
                line.strip() for line in server.log().splitlines()[:4]
            )
        return p.results
    finally:
        server.stop()


def table(results: list[Result]) -> str:
    lines = ["| feature | result | detail |", "| --- | --- | --- |"]
    for r in results:
        detail = r.detail.replace("|", "\\|")
        lines.append(f"| {r.feature} | {'OK' if r.ok else 'FAIL'} | {detail} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--spanner",
        action="append",
        choices=harness.SPANNER_SERVERS,
        help="Spanner server(s) to probe (default: all)",
    )
    parser.add_argument("--no-pubsub", action="store_true")
    parser.add_argument("--no-spanner", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="WORDS",
        help="skip checks whose name contains WORDS (case-insensitive)",
    )
    args = parser.parse_args()
    Probe.skip = tuple(args.skip)
    # The probes point the clients at each server through these variables; only values
    # set before we started mean "use that server".
    preset = {k: os.environ.get(k) for k in (harness.PUBSUB_ENV, harness.SPANNER_ENV)}

    results: list[Result] = []
    if not args.no_pubsub:
        with (
            env(**{harness.PUBSUB_ENV: preset[harness.PUBSUB_ENV]}),
            harness.running_server("pstest") as host,
        ):
            results += probe_pubsub(host, "pstest")
    if not args.no_spanner:
        for kind in args.spanner or list(harness.SPANNER_SERVERS):
            os.environ.pop(harness.SPANNER_ENV, None)
            create_database = kind not in CREATE_DATABASE_CRASHES
            if not create_database and not preset[harness.SPANNER_ENV]:
                results += probe_create_database_alone(kind)
            with env(**{harness.SPANNER_ENV: preset[harness.SPANNER_ENV]}):
                server = harness.start_server(kind)
            try:
                results += probe_spanner(
                    server.host,
                    kind,
                    alive=server.alive,
                    create_database=create_database,
                )
            finally:
                server.stop()
                if server.log_path:
                    print(f"   (server log: {server.log_path})")

    by_server: dict[str, list[Result]] = {}
    for r in results:
        by_server.setdefault(r.server, []).append(r)
    for server_name, rs in by_server.items():
        ok = sum(r.ok for r in rs)
        print(f"\n### {server_name}: {ok}/{len(rs)} OK\n\n{table(rs)}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    # Quiet the client's background threads on exit; every wait above is bounded.
    code = main()
    sys.stdout.flush()
    os._exit(code)
