"""Fuzz: generated and mutated requests to every route and gRPC method of a real server.

Whatever a caller sends, the answer is never an HTTP 5xx or a gRPC INTERNAL/UNKNOWN;
every HTTP error has the Google JSON shape; a rejected request leaves the store as it was
(on the push route: one dead letter more, nothing else); the server still answers
/healthz at the end. Each test also checks that its requests reached both sides, the
accepted and the rejected, so that the generators really exercise the code.

Profiles (`TRACKER_FUZZ`): `ci` (default) is derandomized, the same examples on every
run, under a minute for the file; `long` draws fresh random examples, 25 times as many.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import grpc
import httpx
import pytest
from google.longrunning import operations_pb2
from google.protobuf import json_format
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import T0, google_error, ingest, make_event
from tracker.bindings import to_batch, to_binary, to_structured
from tracker.config import Config
from tracker.events import DATA_MESSAGES, Kind
from tracker.server import Server, running
from tracker.stores.sqlite import SqliteStore

_COMMON: dict[str, Any] = {
    "deadline": None,  # every example talks to a server
    "database": None,  # no example database: a CI run is the same every time
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
}
settings.register_profile("tracker-fuzz-ci", derandomize=True, **_COMMON)
settings.register_profile("tracker-fuzz-long", derandomize=False, **_COMMON)
PROFILE = os.environ.get("TRACKER_FUZZ", "ci")
if PROFILE not in ("ci", "long"):
    raise RuntimeError(f"TRACKER_FUZZ={PROFILE!r}: use ci (the default) or long")
SCALE = 25 if PROFILE == "long" else 1
BASE = settings.get_profile(f"tracker-fuzz-{PROFILE}")


def fuzz(examples: int) -> settings:
    return settings(BASE, max_examples=examples * SCALE)


RUNNING = "operations/fuzz/running"
DONE = "operations/fuzz/done"
EMOJI = "\U0001f600"


# ---- the server and its store ----------------------------------------------------------


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "tracker.db"


@pytest.fixture(scope="module")
def server(db: Path) -> Iterator[Server]:
    # Short waits, so :wait and :watch of a running operation end fast; no sweeps during
    # the run, so that nothing but a request changes the store.
    config = Config(db=str(db), http_port=0, grpc_port=0, max_wait_seconds=0.05, sweep_seconds=3600)
    with running(config) as s:
        yield s
        with httpx.Client(base_url=s.http_url, timeout=10) as http:
            assert http.get("/healthz").json()["status"] == "ok"  # still answering


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def channel(server: Server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_target) as ch:
        yield ch


def _forget(server: Server, name: str) -> None:
    """Clear a deleted operation's tombstone (its de-duplication records) so that the
    seed can create it again: a fixture reset on the test's own database file."""
    store = server.store
    assert isinstance(store, SqliteStore)
    with sqlite3.connect(store.path) as conn:
        conn.execute("DELETE FROM applied_events WHERE operation = ?", (name,))


def seed(server: Server) -> None:
    """A running operation with a checkpoint and a done one, for the reads to find."""
    for name in (RUNNING, DONE):
        if server.store.get(name) is None:
            _forget(server, name)
    if server.store.get(RUNNING) is None:
        ingest(
            server,
            [
                make_event(Kind.CREATED, RUNNING, data={"operation_type": "export"}),
                make_event(Kind.CHECKPOINT, RUNNING, data={"data": b"\x00\xff"}),
            ],
        )
    if server.store.get(DONE) is None:
        ingest(server, [make_event(Kind.SUCCEEDED, DONE)])


Snapshot = tuple[tuple[int, ...], str]
TABLES = ("operations", "applied_events", "outbox", "dead_letters")


def snapshot(db: Path) -> Snapshot:
    """Row counts of every table, and a digest of every operation row (as served)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        counts = tuple(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES)
        digest = hashlib.sha256()
        for row in conn.execute("SELECT * FROM operations ORDER BY name"):
            digest.update(repr(row).encode())
    return counts, digest.hexdigest()


def check_http(
    response: httpx.Response, before: Snapshot, after: Snapshot, *, method: str = "POST"
) -> int:
    """The rules every HTTP answer keeps; returns the status."""
    status = response.status_code
    assert status < 500, (status, response.text[:500])
    if status >= 400:
        if method != "HEAD":  # a HEAD answer has no body
            google_error(response)
        assert after == before, "a rejected request changed the store"
    return status


# ---- values ------------------------------------------------------------------------------

TIMES = [
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59.999999999Z",
    "2024-06-01T12:00:00",
    "2024-06-01T12:00:00Z",
]
WEIRD: list[Any] = [
    "",
    " ",
    "\x00",
    "\t",
    "\ud800",
    "\udfff",
    "\u00e9",
    EMOJI,
    "\ufeff",
    "%00",
    "%ff",
    "%2F",
    "%3A",
    "a" * 5000,
    EMOJI * 300,
    "9" * 400,
    "-1",
    "1e309",
    "NaN",
    "null",
    "true",
    "{}",
    "[]",
    "operations/x",
    "operations/../x",
    "operations/./x",
    "operations//x",
    "operations/" + "n" * 1100,
    *TIMES,
    "315576000000s",
    "315576000001s",
    "-5s",
    "1e10s",
    "0.000000001s",
    "application/protobuf",
    "application/json; charset=utf-8",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
    "text/plain",
    "tracker.operation.v1.created",
    "tracker.operation.v1.nope",
    "1.0",
    "0.3",
]
TEXT = st.one_of(
    st.sampled_from(WEIRD),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="latin-1"), max_size=30),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)


def deep(levels: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(levels):
        value = [value] if i % 2 else {"a": value}
    return value


# Past the JSON parser's stack: kept as a marker string, spliced into the text by dumps()
# (this process could not serialize it either).
TOO_DEEP = "<<nested 100000 levels>>"
REPLACEMENTS = st.one_of(
    JSON_VALUES,
    st.sampled_from([deep(31), deep(33), deep(200), TOO_DEEP]),
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key in value:
            yield from paths(value[key], (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


def mutate_json(data: st.DataObject, value: Any) -> Any:
    """`value` with one subtree replaced, removed, or given a new sibling."""
    where = data.draw(st.sampled_from(list(paths(value))))
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    replacement = data.draw(REPLACEMENTS)
    if not where:
        return replacement
    value = json.loads(json.dumps(value))
    parent = value
    for step in where[:-1]:
        parent = parent[step]
    last = where[-1]
    if action == "replace":
        parent[last] = replacement
    elif action == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        parent[data.draw(TEXT)] = replacement
    else:
        parent.insert(last, replacement)
    return value


def dumps(data: st.DataObject, value: Any) -> bytes:
    """JSON text, with non-ASCII escaped or as UTF-8 (lone surrogates kept as written)."""
    ascii_only = data.draw(st.booleans())
    text = json.dumps(value, ensure_ascii=ascii_only)
    text = text.replace(json.dumps(TOO_DEEP), "[" * 100_000 + "]" * 100_000)
    return text.encode("utf-8", "surrogatepass")


def mutate_bytes(data: st.DataObject, body: bytes) -> bytes:
    if not body:
        return data.draw(st.binary(max_size=20))
    action = data.draw(st.sampled_from(["truncate", "flip", "insert"]))
    at = data.draw(st.integers(0, len(body) - 1))
    if action == "truncate":
        return body[:at]
    if action == "flip":
        return body[:at] + bytes([body[at] ^ data.draw(st.integers(1, 255))]) + body[at + 1 :]
    return body[:at] + data.draw(st.binary(min_size=1, max_size=8)) + body[at:]


def header_bytes(text: str) -> bytes:
    """What a client can put in a header: UTF-8 (possibly invalid), no control bytes."""
    raw = text.encode("utf-8", "surrogatepass")[:2000]
    return bytes(b for b in raw if b >= 0x20 and b != 0x7F).strip()


# ---- valid starting points ---------------------------------------------------------------

NAMES = st.sampled_from([RUNNING, DONE, "operations/fuzz/new", "operations/fuzz/a.b~c-d_e"])
# proto3 JSON of valid data per kind (all accepted: the mutations make them bad).
DATA: dict[Kind, list[dict[str, Any]]] = {
    Kind.CREATED: [
        {"operationType": "export", "labels": {"env": "dev"}, "parent": "projects/p"},
        {"heartbeatTimeout": "315576000000s", "deadline": "9999-12-31T23:59:59.999999999Z"},
        {"metadata": {"@type": "type.googleapis.com/google.protobuf.Struct", "value": {"a": 1}}},
    ],
    Kind.PROGRESS: [{"percent": 42.5, "message": "copying"}, {"percent": 100}],
    Kind.CHECKPOINT: [{"data": "AAFyZXN1bWU="}],
    Kind.HEARTBEAT: [{}, {"message": EMOJI}],
    Kind.SUCCEEDED: [{}],
    Kind.FAILED: [{"error": {"code": 9, "message": "no bucket"}}],
    Kind.CANCELLED: [{"reason": "user"}],
}


@st.composite
def valid_events(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(list(Kind)))
    data = json_format.ParseDict(draw(st.sampled_from(DATA[kind])), DATA_MESSAGES[kind]())
    # Everything drawn, nothing from clocks or uuid4: hypothesis replays what it draws.
    return make_event(
        kind,
        draw(NAMES),
        id=f"{draw(st.integers(0, 2**64)):x}",
        seq=draw(st.none() | st.integers(0, 2**63 - 1)),
        time=T0 + timedelta(microseconds=draw(st.integers(0, 10**12))),
        data=data,
    )


CONTENT_TYPES = st.sampled_from(["application/json", "application/protobuf"])


@st.composite
def event_requests(
    draw: st.DrawFn, modes: tuple[str, ...] = ("binary", "structured", "batch")
) -> tuple[dict[str, str], bytes]:
    """A valid request to POST /v1/events in one of the three modes."""
    mode = draw(st.sampled_from(modes))
    content_type = draw(CONTENT_TYPES)
    if mode == "batch":
        return to_batch(draw(st.lists(valid_events(), min_size=1, max_size=3)), content_type)
    encode = to_binary if mode == "binary" else to_structured
    return encode(draw(valid_events()), content_type)


def mutate_request(
    data: st.DataObject, headers: dict[str, str], body: bytes
) -> tuple[dict[str, str], bytes]:
    """Zero or more mutations of the headers, and of the body (as JSON or as bytes)."""
    headers = dict(headers)
    for _ in range(data.draw(st.integers(0, 3))):
        action = data.draw(st.sampled_from(["drop", "set", "add"]))
        if action == "drop" and headers:
            del headers[data.draw(st.sampled_from(sorted(headers)))]
        elif action == "set" and headers:
            headers[data.draw(st.sampled_from(sorted(headers)))] = data.draw(TEXT)
        else:
            name = data.draw(
                st.sampled_from(["ce-time", "ce-sequence", "ce-dataschema", "ce-x", "ce-"])
                | st.from_regex(r"ce-[a-z0-9]{1,8}", fullmatch=True)
            )
            headers[name] = data.draw(TEXT)
    how = data.draw(st.sampled_from(["keep", "json", "bytes"]))
    if how == "json":
        try:
            parsed = json.loads(body) if body else {}
        except ValueError:
            parsed = None
        if parsed is not None:
            body = dumps(data, mutate_json(data, parsed))
    elif how == "bytes":
        body = mutate_bytes(data, body)
    return headers, body


def send_raw(
    http: httpx.Client,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> httpx.Response:
    """A request with exactly this target (httpx would remove "." and ".." segments)."""
    safe = "/:%?=&@!$'()*+,;~-._"
    raw_target = quote(target, safe=safe, encoding="utf-8", errors="surrogatepass").encode()
    raw_headers = [(k.encode(), header_bytes(v)) for k, v in (headers or {}).items()]
    return http.request(
        method,
        "/",
        headers=raw_headers,
        content=body,
        extensions={"target": raw_target},
    )


# ---- POST /v1/events ----------------------------------------------------------------------


def test_events_route(server: Server, http: httpx.Client, db: Path) -> None:
    seen: Counter[int] = Counter()

    @fuzz(400)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        headers, body = mutate_request(data, *data.draw(event_requests()))
        before = snapshot(db)
        response = send_raw(http, "POST", "/v1/events", headers, body)
        seen[check_http(response, before, snapshot(db)) // 100] += 1

    run()
    assert seen[2] and seen[4], seen


# ---- POST /v1/pubsub/push ------------------------------------------------------------------


@st.composite
def envelopes(draw: st.DrawFn) -> Any:
    headers, body = draw(event_requests(("binary", "structured")))
    message = {
        "attributes": headers,
        "data": base64.b64encode(body).decode(),
        "messageId": draw(st.sampled_from(["1", "17", "", "x" * 300]) | TEXT),
        "publishTime": draw(st.sampled_from(TIMES)),
    }
    return {"message": message, "subscription": "projects/p/subscriptions/s"}


def test_push_route(server: Server, http: httpx.Client, db: Path) -> None:
    seen: Counter[str] = Counter()

    @fuzz(300)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        envelope = data.draw(envelopes())
        how = data.draw(st.sampled_from(["envelope", "attributes", "data", "bytes"]))
        if how == "attributes":
            message = envelope["message"]
            attrs, body = mutate_request(
                data, message["attributes"], base64.b64decode(message["data"])
            )
            message["attributes"], message["data"] = attrs, base64.b64encode(body).decode()
            raw = dumps(data, envelope)
        elif how == "envelope":
            raw = dumps(data, mutate_json(data, envelope))
        elif how == "data":
            envelope["message"]["data"] = data.draw(TEXT)
            raw = dumps(data, envelope)
        else:
            raw = mutate_bytes(data, dumps(data, envelope))
        before = snapshot(db)
        response = send_raw(http, "POST", "/v1/pubsub/push", {"content-type": "x"}, raw)
        after = snapshot(db)
        status = response.status_code
        assert status in (200, 204), (status, response.text[:500])
        if status == 200:  # poison: recorded, acked, nothing else changed
            reason = response.json()["reason"]
            assert reason != "internal", response.text
            assert after[1] == before[1] and after[0][:3] == before[0][:3]
            assert after[0][3] == before[0][3] + 1
            seen[reason] += 1
        else:
            seen["applied"] += 1

    run()
    assert seen["applied"] and len(seen) > 3, seen


# ---- the Operations API over HTTP ------------------------------------------------------------

NAME_PARTS = st.one_of(
    st.sampled_from([RUNNING, DONE]),
    st.sampled_from(
        [
            "operations/unknown",
            "operations/a/../b",
            "operations/./x",
            "operations/",
            "operations",
            "operations/x%2Fy",
            "operations/x%3Await",
            "operations/%ff%fe",
            "operations/%00",
            "operations/%",
            "operations/" + "n" * 1100,
            f"operations/{EMOJI}",
        ]
    ),
    TEXT.map(lambda t: "operations/" + t),
)
# What each resource answers to; and any method with any verb.
VALID_CALLS = [
    ("GET", ""),
    ("HEAD", ""),
    ("DELETE", ""),
    ("POST", ":cancel"),
    ("POST", ":wait"),
    ("GET", ":watch"),
    ("GET", ":checkpoint"),
    ("HEAD", ":checkpoint"),
]
CALLS = st.tuples(
    st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"]),
    st.sampled_from(["", ":cancel", ":wait", ":watch", ":checkpoint", ":bogus", ":", "::x"]),
)
TIMEOUTS = st.sampled_from(["0s", "0.01s", "5s", "315576000000s", "-1s", "1e3s", "5"]) | TEXT
PARAMS = st.one_of(
    st.just([]),
    st.lists(st.tuples(st.just("timeout"), TIMEOUTS), min_size=1, max_size=1),
    st.lists(
        st.tuples(
            st.sampled_from(["timeout", "filter", "pageSize", "alt", "$.xgafv", "x"]) | TEXT,
            TEXT,
        ),
        max_size=3,
    ),
)


@st.composite
def request_bodies(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.sampled_from(["none", "json", "json", "bytes"]))
    if kind == "none":
        return None
    value = draw(
        st.one_of(
            st.fixed_dictionaries({}, optional={"name": NAME_PARTS, "timeout": TIMEOUTS}),
            JSON_VALUES,
        )
    )
    text = json.dumps(value).encode("utf-8", "surrogatepass")
    return text if kind == "json" else mutate_bytes_plain(draw, text)


def mutate_bytes_plain(draw: st.DrawFn, body: bytes) -> bytes:
    at = draw(st.integers(0, len(body)))
    return body[:at] + draw(st.binary(max_size=8)) + body[at + 1 :]


@st.composite
def well_formed_calls(
    draw: st.DrawFn,
) -> tuple[str, str, str, list[tuple[str, str]], bytes | None]:
    """A call as a client would make it, to a seeded, unknown or odd name."""
    method, verb = draw(st.sampled_from(VALID_CALLS))
    name = draw(st.sampled_from([RUNNING, DONE, RUNNING, DONE, "operations/unknown"]))
    params: list[tuple[str, str]] = []
    body: bytes | None = None
    good_timeouts = st.sampled_from(["0s", "0.01s", "5s", "315576000000s"])
    if verb in (":wait", ":watch") and draw(st.booleans()):
        params = [("timeout", draw(good_timeouts))]
    if method == "POST":
        fields = draw(
            st.fixed_dictionaries({}, optional={"name": st.just(name), "timeout": good_timeouts})
        )
        if verb == ":cancel":
            fields.pop("timeout", None)
        body = None if not fields and draw(st.booleans()) else json.dumps(fields).encode()
    return method, name, verb, params, body


@st.composite
def any_calls(draw: st.DrawFn) -> tuple[str, str, str, list[tuple[str, str]], bytes | None]:
    method, verb = draw(CALLS)
    return method, draw(NAME_PARTS), verb, draw(PARAMS), draw(request_bodies())


def test_operations_routes(server: Server, http: httpx.Client, db: Path) -> None:
    seen: Counter[int] = Counter()

    @fuzz(400)
    @given(well_formed_calls() | any_calls(), st.data())
    def run(
        call: tuple[str, str, str, list[tuple[str, str]], bytes | None], data: st.DataObject
    ) -> None:
        seed(server)
        method, name, verb, params, body = call
        target = f"/v1/{name}{verb}"
        if params:
            target += "?" + urlencode(params, encoding="utf-8", errors="surrogatepass")
        headers = {"content-type": data.draw(st.sampled_from(["application/json", "x/y"]))}
        before = snapshot(db)
        response = send_raw(http, method, target, headers, body)
        seen[check_http(response, before, snapshot(db), method=method) // 100] += 1

    run()
    assert seen[2] > 40 and seen[4] > 40, seen


# ---- ListOperations over HTTP: filters, page sizes and tokens ----------------------------------

QUOTED = st.one_of(
    st.sampled_from(['"x"', '"operations/fuzz/*"', '"a*b"', '"*"', '"a\\"b"', '"\\\\"', '""']),
    TEXT.map(json.dumps),
)
TIME_LITERALS = st.sampled_from([*TIMES, "yesterday", "2024-06-01", "2024-06-01T00:00:00+25:00"])


@st.composite
def terms(draw: st.DrawFn, well_typed: bool = False) -> str:
    """A comparison, most often (or, `well_typed`, always) of the right type for its field."""
    kinds = ["done", "string", "time", "label", "labels"]
    kind = draw(st.sampled_from(kinds if well_typed else [*kinds, "any"]))
    if kind == "done":
        return (
            f"done {draw(st.sampled_from(['=', '!=']))} {draw(st.sampled_from(['true', 'false']))}"
        )
    if kind == "string":
        field = draw(st.sampled_from(["name", "operation_type", "parent"]))
        return f"{field} {draw(st.sampled_from(['=', '!=', ':']))} {draw(QUOTED)}"
    if kind == "time":
        field = draw(st.sampled_from(["create_time", "update_time"]))
        op = draw(st.sampled_from(["<", "<=", ">", ">=", "=", "!="]))
        return f'{field} {op} "{draw(TIME_LITERALS)}"'
    if kind == "label":
        key = draw(st.sampled_from(["env", "a.b", "*", "x-y", "@"]) | st.from_regex(r"[a-z]{1,5}"))
        value = draw(QUOTED | st.just("*"))
        return f"labels.{key} {draw(st.sampled_from(['=', '!=', ':']))} {value}"
    if kind == "labels":
        return f"labels:{draw(QUOTED)}"
    field = draw(st.sampled_from(["done", "name", "labels.", "colour", "create_time"]) | TEXT)
    op = draw(st.sampled_from(["=", "!=", ":", "<", "==", ""]))
    return f"{field} {op} {draw(QUOTED | TEXT)}"


def combined(term: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.recursive(
        term,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from([" AND ", " OR ", " "]), inner).map("".join),
            inner.map(lambda e: f"NOT {e}"),
            inner.map(lambda e: f"-{e}"),
            inner.map(lambda e: f"({e})"),
        ),
        max_leaves=4,
    )


WELL_FORMED_FILTERS = combined(terms(well_typed=True))
FILTERS = (
    combined(terms())
    | st.sampled_from(["(" * 40, "NOT " * 40 + "done = true", "", " ", "x" * 3000])
    | TEXT
)


def token_of(value: Any) -> str:
    """A page token as the server encodes one (base64url of JSON), holding anything."""
    text = json.dumps(value).replace(json.dumps(TOO_DEEP), "[" * 5000 + "]" * 5000)
    raw = text.encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_list_operations(server: Server, http: httpx.Client, db: Path) -> None:
    seen: Counter[int] = Counter()
    seed(server)
    token = http.get("/v1/operations", params={"pageSize": 1}).json()["nextPageToken"]
    empty = hashlib.sha256(b"").hexdigest()[:16]  # the filter hash a token for "" holds
    tokens = st.one_of(
        st.sampled_from([token, token[:-1], token + "A", token.upper()]),
        st.builds(lambda a: token_of({"a": a, "f": empty}), JSON_VALUES | st.just(TOO_DEEP)),
        REPLACEMENTS.map(token_of),
        TEXT,
    )
    sizes = st.sampled_from(["1", "2", "0", "1000", "1001", str(2**70)])
    well_formed = st.tuples(
        st.just("") | WELL_FORMED_FILTERS,
        st.none() | sizes,
        st.just(None),
    ) | st.tuples(st.just(""), sizes, st.just(token))
    anything = st.tuples(
        st.just("") | FILTERS,
        st.none() | sizes | TEXT,
        st.none() | tokens,
    )

    @fuzz(300)
    @given(well_formed | anything)
    def run(params_drawn: tuple[str, str | None, str | None]) -> None:
        filter_text, page_size, page_token = params_drawn
        seed(server)
        params = [("filter", filter_text)]
        if page_size is not None:
            params.append(("pageSize", page_size))
        if page_token is not None:
            params.append(("pageToken", page_token))
        target = "/v1/operations?" + urlencode(params, encoding="utf-8", errors="surrogatepass")
        before = snapshot(db)
        response = send_raw(http, "GET", target)
        seen[check_http(response, before, snapshot(db), method="GET") // 100] += 1

    run()
    assert seen[2] > 40 and seen[4] > 40, seen


def test_other_paths_and_methods(server: Server, http: httpx.Client, db: Path) -> None:
    seen: Counter[int] = Counter()

    @fuzz(100)
    @given(
        st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"]),
        st.sampled_from(
            ["/healthz", "/metrics", "/", "/v1", "/v1/events", "/v1/pubsub/push", "/v2/x"]
        )
        | TEXT.map(lambda t: "/" + t),
        request_bodies(),
    )
    def run(method: str, path: str, body: bytes | None) -> None:
        before = snapshot(db)
        response = send_raw(http, method, path, {"content-type": "text/plain"}, body)
        seen[check_http(response, before, snapshot(db), method=method) // 100] += 1

    run()
    assert seen[2] and seen[4], seen


# ---- the Operations API over gRPC ---------------------------------------------------------------

GRPC_METHODS: dict[str, type[Message]] = {
    "GetOperation": operations_pb2.GetOperationRequest,
    "ListOperations": operations_pb2.ListOperationsRequest,
    "DeleteOperation": operations_pb2.DeleteOperationRequest,
    "CancelOperation": operations_pb2.CancelOperationRequest,
    "WaitOperation": operations_pb2.WaitOperationRequest,
}


def unicode(text: str) -> bool:
    """Whether `text` has a UTF-8 form (a protobuf string field takes nothing else)."""
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


PROTO_TEXT = st.one_of(
    st.sampled_from([w for w in WEIRD if unicode(w)]),
    st.text(max_size=40),
    NAME_PARTS.filter(unicode),
)


@st.composite
def grpc_requests(draw: st.DrawFn) -> tuple[str, bytes]:
    method = draw(st.sampled_from(sorted(GRPC_METHODS)))
    request = GRPC_METHODS[method]()
    if hasattr(request, "name"):
        request.name = draw(PROTO_TEXT)
    if isinstance(request, operations_pb2.ListOperationsRequest):
        request.filter = draw(FILTERS.filter(unicode))
        request.page_size = draw(st.integers(-(2**31), 2**31 - 1))
        request.page_token = draw(PROTO_TEXT)
        request.return_partial_success = draw(st.booleans())
    if isinstance(request, operations_pb2.WaitOperationRequest) and draw(st.booleans()):
        request.timeout.seconds = draw(
            st.integers(-(2**63), 2**63 - 1) | st.sampled_from([0, 1, 315576000000])
        )
        request.timeout.nanos = draw(st.integers(-(2**31), 2**31 - 1) | st.just(0))
    raw = request.SerializeToString()
    how = draw(st.sampled_from(["message", "message", "bytes", "garbage"]))
    if how == "bytes":  # cut short, with a few bytes after
        raw = raw[: draw(st.integers(0, len(raw)))] + draw(st.binary(max_size=6))
    elif how == "garbage":
        raw = draw(st.binary(max_size=60) | st.sampled_from([b"\x0a\x02\xff\xfe", b"\xff" * 9]))
    path = f"/google.longrunning.Operations/{method}"
    return draw(st.sampled_from([path] * 8 + ["/google.longrunning.Operations/Nope"])), raw


def test_grpc_methods(server: Server, channel: grpc.Channel, db: Path) -> None:
    seen: Counter[str] = Counter()
    calls: dict[str, Callable[..., Any]] = {}

    @fuzz(400)
    @given(grpc_requests())
    def run(call: tuple[str, bytes]) -> None:
        seed(server)
        path, raw = call
        method = calls.setdefault(path, channel.unary_unary(path))
        before = snapshot(db)
        try:
            method(raw, timeout=30)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
            assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (
                code,
                exc.details(),
            )
            assert exc.details()
            assert snapshot(db) == before, "a rejected call changed the store"
        seen[code.name] += 1

    run()
    assert seen["OK"] and seen["INVALID_ARGUMENT"] and seen["NOT_FOUND"], seen


# ---- below the application: what the HTTP server itself refuses ----------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nBad\x01Header: 1\r\n\r\n",
        # still no end of the headers after h11's 16 KiB (a whole one that size is parsed)
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 70000,
    ],
    ids=["request-line", "control-character", "endless-headers"],
)
def test_what_h11_refuses_is_a_plain_400_and_the_server_lives(
    server: Server, http: httpx.Client, db: Path, raw: bytes
) -> None:
    # README "Bad input": bytes that are not an HTTP request are answered by uvicorn/h11
    # before the tracker sees them: a plain-text 400 (not the Google JSON body), and the
    # connection closed. Still no 5xx, and nothing stored.
    before = snapshot(db)
    host, port = server.http_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"application/json" not in answer.split(b"\r\n\r\n", 1)[0].lower()
    assert snapshot(db) == before
    assert http.get("/healthz").status_code == 200
