"""A real webhook receiver for tests: an HTTP(S) server on 127.0.0.1 in a thread.

It records every request (headers, body) in a queue and answers as told: a status per
request (then 200), hanging until it is closed, or an answer that never ends.
"""

from __future__ import annotations

import base64
import json
import queue
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import standardwebhooks

# Fixed secrets (32 bytes each), as an operator would generate them.
SECRET = "whsec_" + base64.b64encode(b"tracker-webhook-test-secret-0001").decode()
NEXT_SECRET = "whsec_" + base64.b64encode(b"tracker-webhook-test-secret-0002").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"someone-else-entirely-secret-003").decode()


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    def verify(self, secret: str = SECRET) -> Any:
        """The payload, as a receiver checks it with the standardwebhooks library."""
        return standardwebhooks.Webhook(secret).verify(self.body, self.headers)

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    def __init__(self, server: ThreadingHTTPServer, scheme: str) -> None:
        self.server = server
        self.scheme = scheme
        self.port = server.server_address[1]
        self.received: queue.Queue[Delivery] = queue.Queue()
        self.statuses: list[int] = []  # answered in turn, then 200
        self.location = ""  # with a 3xx status
        self.hang = False
        self.endless = False
        self.released = threading.Event()

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def next(self, timeout: float = 15) -> Delivery:
        return self.received.get(timeout=timeout)

    def all(self) -> list[Delivery]:
        found = []
        while not self.received.empty():
            found.append(self.received.get_nowait())
        return found

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(d.body) for d in self.all()]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            receiver.received.put(Delivery(self.path, headers, body))
            if receiver.hang:
                receiver.released.wait(30)
                return
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            if receiver.location:
                self.send_header("location", receiver.location)
            if receiver.endless:
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                chunk = b"x" * 65536
                try:
                    for _ in range(2000):  # 128 MiB at most, if nothing stops reading
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except OSError:  # the sender stopped reading and closed
                    pass
                self.close_connection = True
                return
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    return Handler


@contextmanager
def receiver(tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    """A receiver on 127.0.0.1; with `tls`, an HTTPS one using that server context."""
    holder: list[Receiver] = []

    class Server(ThreadingHTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), _handler_proxy(holder))
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    recv = Receiver(server, "https" if tls is not None else "http")
    holder.append(recv)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield recv
    finally:
        recv.released.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


def _handler_proxy(holder: list[Receiver]) -> Any:
    def make(*args: Any, **kwargs: Any) -> BaseHTTPRequestHandler:
        return _handler(holder[0])(*args, **kwargs)

    return make
