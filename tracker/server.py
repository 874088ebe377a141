"""Assembly: one process serves HTTP (events, push, Operations HTTP/JSON) and gRPC.

Both servers and the outbox dispatcher share one asyncio loop and one `Tracker`.
`running(config)` starts the whole thing in a background thread (tests, tools).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Final

import grpc
import uvicorn
from grpc_health.v1.health import aio as health_aio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tracker import __version__, tracing
from tracker.api import status
from tracker.api.guard import GrpcGuard, require
from tracker.api.web import error_response
from tracker.auth import (
    OPEN,
    Authenticator,
    CertificateCache,
    GoogleIdTokens,
    Guard,
    Permission,
    Policy,
    StaticTokens,
)
from tracker.bulk import bulk_of
from tracker.config import Config
from tracker.errors import MethodNotAllowed, clip
from tracker.notify.outbox import Sink
from tracker.service import Tracker

if TYPE_CHECKING:
    from tracker.sources.pubsub_pull import PullSubscriber
from tracker.stores.base import Store
from tracker.stores.sqlite import SqliteStore

log = logging.getLogger("tracker")


def open_store(config: Config) -> Store:
    ttl = timedelta(days=config.done_ttl_days)
    if config.store == "spanner":
        from tracker.stores.spanner import SpannerStore

        return SpannerStore(
            config.spanner_database,
            strict=config.strict,
            explicit_begin=config.spanner_explicit_begin,
            done_ttl=ttl,
            table_prefix=config.table_prefix,
        )
    return SqliteStore(
        config.db, strict=config.strict, done_ttl=ttl, table_prefix=config.table_prefix
    )


def config_sinks(config: Config) -> list[Sink]:
    """Outbox sinks the configuration asks for (besides in-process waiters)."""
    sinks: list[Sink] = []
    if config.done_topic:
        from tracker.notify.pubsub import PubSubSink

        sinks.append(PubSubSink(config.done_topic))
    if config.webhooks:
        from tracker.notify import webhooks

        policy = config.webhook_policy
        sinks.append(
            webhooks.WebhookSink(
                webhooks.read_secrets(config.webhook_secret_file, config.webhook_secrets),
                policy=policy,
                subscriptions=(
                    webhooks.read_subscriptions(config.webhook_subscriptions, policy)
                    if config.webhook_subscriptions
                    else ()
                ),
                timeout=config.webhook_timeout_seconds,
            )
        )
    if config.control_topic:
        from tracker.notify.control import ControlTopicSink

        sinks.append(ControlTopicSink(config.control_topic))
    return sinks


def load_producer_types(config: Config) -> list[str]:
    """Register the producers' message types: --proto-descriptors, then the schemas'
    `types/` folder (`tracker.producer_types`). Returns the message types added."""
    from tracker import producer_types

    folder = producer_types.schema_types_folder()
    added = producer_types.load([*config.proto_descriptors, *([folder] if folder else [])])
    if added:
        log.info("producer message types: %s", ", ".join(added))
    return added


def build_guard(config: Config) -> Guard:
    """Who may do what, from the settings (docs/auth.md).

    Without any authentication configured (which `Config.validate` allows on loopback
    only, or with --allow-unauthenticated), every caller may do everything.
    """
    if not config.authenticated:
        return OPEN
    audiences = [*config.auth_audience, *([config.push_audience] if config.push_audience else [])]
    authenticators: list[Authenticator] = []
    if audiences:
        certs = CertificateCache(config.auth_certs_url, config.auth_certs_refetch_seconds)
        authenticators.append(GoogleIdTokens(audiences, certs))
    if config.auth_tokens_file:
        authenticators.append(StaticTokens.from_file(config.auth_tokens_file))
    pairs = [Policy.parse_grant(g) for g in config.grant]
    scopes = [Policy.parse_scope(s) for s in config.grant_scope]
    if config.auth_policy:
        pairs += Policy.from_file(config.auth_policy)
        scopes += Policy.scopes_from_file(config.auth_policy)
    if config.push_service_account:
        pairs.append((Permission.PUBSUB_PUSH, f"serviceAccount:{config.push_service_account}"))
    return Guard(Policy.build(pairs, scopes), authenticators)


def build_app(tracker: Tracker, config: Config, guard: Guard = OPEN) -> Starlette:
    from tracker import console
    from tracker.api import bulk as api_bulk
    from tracker.api import dead_letters as dead_letters_http
    from tracker.api import history as api_history
    from tracker.api import http as api_http
    from tracker.api import stream as api_stream
    from tracker.sources import http as ingest_http
    from tracker.sources import push

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def metrics(request: Request) -> Response:
        try:
            await require(request, Permission.OPERATIONS_READ)
        except Exception as exc:
            return error_response(exc)
        registry = tracker.metrics.registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = [
        Route("/healthz", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *ingest_http.routes(tracker),
        *push.routes(tracker),
        *api_history.routes(tracker, config.watch_keepalive_seconds),
        *api_http.routes(tracker, config.watch_keepalive_seconds),
        *api_stream.routes(tracker, config.watch_keepalive_seconds),
        *console.routes(),
        *dead_letters_http.routes(tracker),
        *api_bulk.routes(tracker),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_exception, Exception: _unexpected},
    )
    app.state.guard = guard
    return app


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own answers (unknown route, wrong method) as Google-style JSON."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allowed = tuple(m.strip() for m in (exc.headers or {}).get("Allow", "").split(",") if m)
        return error_response(MethodNotAllowed(request.method, allowed))
    if exc.status_code == 404:
        message = f"no route for {request.method} {clip(request.url.path)}"
    else:
        message = str(exc.detail)
    return error_response(status.for_http_status(exc.status_code, message))


async def _unexpected(request: Request, exc: Exception) -> Response:
    return error_response(exc)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: `Server` owns shutdown for both servers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# uvicorn[standard]'s C parts, when installed: uvloop's event loop and the httptools parser
# cost a fraction of asyncio's loop and the pure-Python h11 per request (README Performance).
UVLOOP: Final = _has("uvloop")
HTTPTOOLS: Final = _has("httptools")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop every server of this process runs on: uvloop's when installed."""
    if UVLOOP:
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def http_socket(host: str, port: int) -> socket.socket:
    """A bound listening socket for uvicorn (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only
    # for sockets created with it; without, keep-alive answers stall ~40 ms (delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


# h11 refuses a request whose head (request line and headers) is still incomplete after
# 16 KiB; httptools buffers any amount. The same bound, for httptools (README "Bad input").
MAX_INCOMPLETE_HEAD: Final = 16 * 1024
# How long a refused connection is read and drained before it is closed (`_refuse`).
LINGER_SECONDS: Final = 2.0


def _bounded_httptools() -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol that answers a request head still incomplete after
    MAX_INCOMPLETE_HEAD bytes as h11 does: a plain-text 400, and the connection closed."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class BoundedHttpTools(HttpToolsProtocol):
        _in_body = False  # between the end of a request's head and the end of its body
        _heads = 0  # heads completed so far
        _head_bytes = 0  # bytes of the current head fed so far

        def on_headers_complete(self) -> None:
            self._in_body = True
            self._heads += 1
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_body = False
            super().on_message_complete()

        _refused = False

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # read and dropped until the client closes (see _refuse)
            in_head, heads = not self._in_body, self._heads
            super().data_received(data)
            if self._in_body or self.transport.is_closing():
                return
            if not in_head or heads != self._heads:
                # A head began within this chunk: its part is not known, the next counts.
                self._head_bytes = 0
                return
            self._head_bytes += len(data)  # the whole chunk was (the start of) one head
            if self._head_bytes > MAX_INCOMPLETE_HEAD:
                self._refuse()

        def _refuse(self) -> None:
            """h11's answer, then a lingering close: closing with the client's bytes
            still unread would send a reset that can destroy the 400 before the client
            reads it. So: the answer and a FIN, the rest read and dropped, the
            connection closed when the client closes or after LINGER_SECONDS."""
            self._refused = True
            msg = b"Invalid HTTP request received."
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(msg), msg)
            )
            if self.transport.can_write_eof():
                self.transport.write_eof()
            asyncio.get_running_loop().call_later(LINGER_SECONDS, self.transport.close)

    return BoundedHttpTools


def http_server(app: Starlette, log_level: str) -> uvicorn.Server:
    """The uvicorn server for `app`, as the tracker runs it (bench/http_ingest.py measures the
    same stack with an empty handler)."""
    level = log_level.lower()
    return _Uvicorn(
        uvicorn.Config(
            app,
            log_level=level,
            lifespan="off",
            access_log=level == "debug",
            http=_bounded_httptools() if HTTPTOOLS else "h11",
        )
    )


class Server:
    """The HTTP and gRPC servers over one Tracker."""

    def __init__(
        self, config: Config, store: Store | None = None, sinks: Sequence[Sink] = ()
    ) -> None:
        self.config = config
        # Before the store: a bad descriptor set stops start-up with nothing opened.
        self.producer_types = load_producer_types(config)
        self.store = store or open_store(config)
        self.store.history_limit = config.history_per_operation
        self.store.dead_letter_ttl = timedelta(days=config.dead_letter_retention_days)
        self.tracker = Tracker(
            self.store,
            rules=config.rules,
            max_wait_seconds=config.max_wait_seconds,
            wake_poll_seconds=config.wake_poll_seconds,
            sinks=[*config_sinks(config), *sinks],
            retry=config.retry,
        )
        self.store.count_retry = self.tracker.metrics.transaction_retries.inc
        self.guard = build_guard(config)
        self.subscriber: PullSubscriber | None = None
        self.http_port = 0
        self.grpc_port = 0
        self._uvicorn: uvicorn.Server | None = None
        self._grpc: grpc.aio.Server | None = None
        self._health: health_aio.HealthServicer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._dispatcher: asyncio.Task[None] | None = None
        self.started = asyncio.Event()

    @property
    def http_url(self) -> str:
        return f"http://{self.config.http_host}:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"{self.config.grpc_host}:{self.grpc_port}"

    async def start(self) -> None:
        from tracker.api import grpc as api_grpc

        self._dispatcher = await self.tracker.start()
        await bulk_of(self.tracker).resume()  # bulk actions a stopped process left running
        sock = http_socket(self.config.http_host, self.config.http_port)
        self.http_port = sock.getsockname()[1]
        app = build_app(self.tracker, self.config, self.guard)
        self._uvicorn = http_server(app, self.config.log_level)
        if self.config.grpc_port >= 0:
            # Bound before the HTTP server starts, so a taken port fails start-up cleanly.
            self._grpc = grpc.aio.server(interceptors=[GrpcGuard(self.guard)])
            self._health = await api_grpc.add_to_server(self._grpc, self.tracker)
            self.grpc_port = self._grpc.add_insecure_port(
                f"{self.config.grpc_host}:{self.config.grpc_port}"
            )
            await self._grpc.start()
        self._tasks.append(asyncio.create_task(self._uvicorn.serve(sockets=[sock])))
        while not self._uvicorn.started:
            if self._tasks[0].done():
                self._tasks[0].result()  # raises the start-up error
            await asyncio.sleep(0.01)
        self._tasks.append(
            asyncio.create_task(self.tracker.sweep_forever(self.config.sweep_seconds), name="sweep")
        )
        if self.config.subscription:
            from tracker.sources.pubsub_pull import PullSubscriber

            self.subscriber = PullSubscriber(
                self.tracker,
                self.config.subscription,
                dead_letter_topic=self.config.dead_letter_topic,
                max_outstanding=self.config.max_outstanding_messages,
            )
            self._tasks.append(asyncio.create_task(self.subscriber.run(), name="pull"))
        self.started.set()
        log.info("%s", self.describe())

    @property
    def store_name(self) -> str:
        if self.config.store == "spanner":
            return f"spanner {self.config.spanner_database}"
        return f"sqlite {self.config.db}"

    def describe(self) -> str:
        return (
            f"tracker {__version__}: HTTP on {self.http_url},"
            f" gRPC on {self.grpc_target if self._grpc else 'off'}, store {self.store_name}"
        )

    async def stop(self) -> None:
        if self.subscriber is not None:
            self.subscriber.stop()
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._grpc is not None:
            if self._health is not None:
                await self._health.enter_graceful_shutdown()  # NOT_SERVING from now on
            await self._grpc.stop(grace=1.0)
        for task in self._tasks:
            if task.get_name() in ("pull", "sweep"):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                if not (task.done() and not task.cancelled() and task.exception()):
                    await task  # a failed task's error was taken by serve_forever
        await bulk_of(self.tracker).stop()
        await self.tracker.stop(self._dispatcher)
        self.store.close()

    async def serve_forever(self) -> None:
        await self.start()
        if not log.isEnabledFor(logging.INFO):  # the address is needed whatever the level
            print(self.describe(), file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        # A part that ended on its own (the pull stream, the HTTP server) ends the process.
        failure = next(
            (
                t.exception()
                for t in done
                if t is not waiter and not t.cancelled() and t.exception()
            ),
            None,
        )
        await self.stop()
        if failure is not None:
            raise failure


def serve(config: Config) -> None:
    """Run until SIGINT/SIGTERM."""
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    tracing.configure(config.otel_exporter)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(Server(config).serve_forever())


@contextlib.contextmanager
def running(
    config: Config | None = None,
    *,
    store: Store | None = None,
    sinks: Sequence[Sink] = (),
    drain_executor: bool = False,
) -> Iterator[Server]:
    """Run a server on free loopback ports in a background thread, for tests and tools."""
    config = config or Config(db=":memory:", http_port=0, grpc_port=0)
    loop = new_event_loop()
    server: Server | None = None
    ready = threading.Event()
    failure: list[BaseException] = []
    stop_requested: asyncio.Event | None = None

    async def main() -> None:
        nonlocal server, stop_requested
        stop_requested = asyncio.Event()
        try:
            server = Server(config, store, sinks)
            await server.start()
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            return
        ready.set()
        await stop_requested.wait()
        await server.stop()

    def run() -> None:
        loop.run_until_complete(main())
        # What libraries left running (sse-starlette's shutdown watcher) ends with the loop.
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.wait(leftovers))
        if drain_executor:
            # Store calls already in the executor finish before the caller goes on (as
            # asyncio.run does): `tracker dev` stops the emulators right after, and a call
            # left running would retry against a dead one for ever. Off for tests, whose
            # servers would each wait out their blocking pulls and polls.
            loop.run_until_complete(loop.shutdown_default_executor())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(30)
    if failure:
        thread.join(5)
        raise failure[0]
    assert server is not None and stop_requested is not None
    server.loop = loop  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(stop_requested.set)
        thread.join(30)
        loop.close()
