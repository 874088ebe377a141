"""The HTTP server stack: uvloop and httptools (uvicorn[standard]) with h11's bound on heads.

httptools buffers a request head of any size; `tracker.server` refuses one still incomplete
after 16 KiB, as h11 does (the raw-socket tests in test_fuzz.py pin the answer: a plain-text
400, the connection closed, the server alive). These tests pin what that bound must not
break, keep-alive and pipelining, and that it holds for a head sent in small pieces.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from tracker import server as server_module
from tracker.config import Config
from tracker.server import MAX_INCOMPLETE_HEAD, Server, running


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running(Config(db=":memory:", http_port=0, grpc_port=-1, log_level="warning")) as s:
        yield s


def _connect(server: Server) -> socket.socket:
    host, port = server.http_url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def _read_all(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def test_the_server_runs_on_uvloop_and_httptools(server: Server) -> None:
    # uvicorn[standard] is a dependency: both are installed, so both are used.
    import uvloop

    assert server_module.UVLOOP and server_module.HTTPTOOLS
    assert isinstance(server.loop, uvloop.Loop)  # type: ignore[attr-defined]


def test_pipelined_requests_whose_heads_add_up_past_the_bound_are_all_answered(
    server: Server,
) -> None:
    # 40 requests of ~1 KiB heads in one write: 40 KiB of heads, each one complete.
    padding = "p" * 1000
    request = f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {padding}\r\n\r\n".encode()
    assert 40 * len(request) > 2 * MAX_INCOMPLETE_HEAD
    last = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with _connect(server) as sock:
        sock.sendall(request * 40 + last)
        answer = _read_all(sock)
    assert answer.count(b"HTTP/1.1 200 ") == 41, answer[:300]
    assert b"HTTP/1.1 400" not in answer


def test_keep_alive_connection_serves_many_requests(server: Server) -> None:
    # Far more head bytes over one connection than the bound: counted per request only.
    with httpx.Client(base_url=server.http_url, headers={"x-pad": "p" * 2000}) as http:
        for _ in range(30):
            assert http.get("/healthz").status_code == 200


def test_a_head_sent_in_small_pieces_is_refused_past_the_bound(server: Server) -> None:
    # Exactly one byte past the bound, so that no byte arrives after the server closes
    # (which would reset the connection and lose the answer).
    head = b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Long: "
    head += b"a" * (MAX_INCOMPLETE_HEAD + 1 - len(head))
    with _connect(server) as sock:
        for start in range(0, len(head), 1024):
            sock.sendall(head[start : start + 1024])
        answer = _read_all(sock)
    assert answer.split(b"\r\n", 1)[0].startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"text/plain" in answer.split(b"\r\n\r\n", 1)[0]
    with httpx.Client(base_url=server.http_url) as http:
        assert http.get("/healthz").status_code == 200
