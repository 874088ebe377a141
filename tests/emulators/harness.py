"""Build, start and stop the loopback protocol servers that the Google Cloud tests talk to.

Servers (see README.md beside this file for versions and the feature tables):

* Pub/Sub: ``pstest`` -- Google's in-memory fake from ``cloud.google.com/go/pubsub/v2``,
  wrapped by the small Go program in ``pstest/``.
* Spanner, one of (``TRACKER_SPANNER_SERVER`` chooses, default ``cloud-spanner-emulator``):

  - ``cloud-spanner-emulator``: Google's Cloud Spanner Emulator (``emulator_main``) from
    the ``google-cloud-cli-spanner-emulator`` Debian package, preinstalled on this
    project's machine image. Not built here; found on disk (``CLOUD_SPANNER_EMULATOR_BIN``
    overrides the path).
  - ``handy-spanner``: ``github.com/gcpug/handy-spanner`` (SQLite-backed), Go program in
    ``handy-spanner/``; needs cgo.
  - ``spannertest``: ``cloud.google.com/go/spanner/spannertest`` (in memory), Go program
    in ``spannertest/``.

``grpcurl`` (``github.com/fullstorydev/grpcurl``, pinned as a Go tool in ``grpcurl/go.mod``)
is no server but a client the gRPC reflection tests run; it is built the same way.

Every Go server is built once into ``<tools>/bin/<name>-<key>``, where ``<key>`` hashes
its pinned ``go.mod``/``go.sum``/sources, the build flags and the Go version: a second call
finds the binary and returns at once; a change of pin builds a new one. ``<tools>`` is the
user's cache, ``${XDG_CACHE_HOME:-~/.cache}/tracker/tools`` (or ``$TRACKER_TOOLS_DIR``),
shared by every clone on the machine: a second clone finds what the first one built.
Binaries of other pins stay for the clones that use them; those unused for 30 days go.

If ``PUBSUB_EMULATOR_HOST`` / ``SPANNER_EMULATOR_HOST`` is already set, that server is used
as it is and nothing is started for it.

Python API::

    with running_emulators() as hosts:
        os.environ["PUBSUB_EMULATOR_HOST"] = hosts.pubsub
        os.environ["SPANNER_EMULATOR_HOST"] = hosts.spanner

    with running_server("pstest") as host: ...
    server = start_server("handy-spanner"); ...; server.stop()

    os.environ.update(SPANNER_CLIENT_ENV)  # settings the Python Spanner client needs here
    create_spanner_database(host, "db", ddl)  # instance (if the server has one) + database
    client = spanner_client(host)             # a Client for host, env untouched

CLI (run from the repository root)::

    python -m tests.emulators.harness build            # build every Go server, print paths
    python -m tests.emulators.harness run [--spanner X] # start both, print env, serve until ^C
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final, Literal

from tracker.dev import EMULATOR_SPANNER_ENV, tools_bin

HERE: Final = Path(__file__).resolve().parent
REPO_ROOT: Final = HERE.parent.parent


# Built tools are shared by every clone of this machine's user, keyed by pin.
TOOLS_BIN: Final = tools_bin()
# Builds of other pins nobody used for this long are removed when a new one is built.
UNUSED_FOR_S: Final = 30 * 24 * 3600


def prune(pattern: str, keep: Path) -> None:
    """Remove the other builds matching `pattern` (a glob in TOOLS_BIN) that no clone has
    used for UNUSED_FOR_S; another clone at another pin may still run the recent ones."""
    now = time.time()
    for old in TOOLS_BIN.glob(pattern):
        if old == keep or not old.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):
            if now - old.stat().st_mtime > UNUSED_FOR_S:
                old.unlink()


def found(target: Path) -> bool:
    """Whether a build exists; marks it used (its mtime) so that pruning keeps it."""
    if not target.is_file():
        return False
    with contextlib.suppress(OSError):
        os.utime(target)
    return True


PUBSUB_ENV: Final = "PUBSUB_EMULATOR_HOST"
SPANNER_ENV: Final = "SPANNER_EMULATOR_HOST"
SPANNER_SERVER_ENV: Final = "TRACKER_SPANNER_SERVER"

BUILD_TIMEOUT_S: Final = 900.0
START_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 10.0

SpannerServer = Literal["cloud-spanner-emulator", "handy-spanner", "spannertest"]
SPANNER_SERVERS: Final[tuple[SpannerServer, ...]] = (
    "cloud-spanner-emulator",
    "handy-spanner",
    "spannertest",
)
DEFAULT_SPANNER_SERVER: Final[SpannerServer] = "cloud-spanner-emulator"

# Environment for the Python Spanner client (google-cloud-spanner 3.x) against any of
# these servers. Test-harness only: production code must not set these.
# The Spanner client's settings for an emulator, as `tracker dev` sets them (one source).
SPANNER_CLIENT_ENV: Final[Mapping[str, str]] = EMULATOR_SPANNER_ENV

DEFAULT_EMULATOR_PATHS: Final = (
    Path("/usr/lib/google-cloud-sdk/bin/cloud_spanner_emulator/emulator_main"),
    Path("/usr/share/google-cloud-sdk/bin/cloud_spanner_emulator/emulator_main"),
    Path("/google-cloud-sdk/bin/cloud_spanner_emulator/emulator_main"),
)


class HarnessError(RuntimeError):
    """A server could not be built, found, started or reached."""


@dataclasses.dataclass(frozen=True)
class GoServer:
    """A Go program kept in this directory (a test server, or the grpcurl client), built
    from pinned modules; `package` is the main package to build, "." or a module's."""

    name: str
    module_dir: Path
    package: str = "."
    tags: tuple[str, ...] = ()
    cgo: bool = False

    def sources(self) -> list[Path]:
        return sorted(
            p
            for p in self.module_dir.iterdir()
            if p.suffix == ".go" or p.name in ("go.mod", "go.sum")
        )


GO_SERVERS: Final[dict[str, GoServer]] = {
    "pstest": GoServer("pstest-server", HERE / "pstest"),
    "handy-spanner": GoServer(
        "handy-spanner-server", HERE / "handy-spanner", tags=("json1",), cgo=True
    ),
    "spannertest": GoServer("spannertest-server", HERE / "spannertest"),
    # A client, not a server: `go.mod` pins it with a `tool` line; never started here.
    "grpcurl": GoServer(
        "grpcurl", HERE / "grpcurl", package="github.com/fullstorydev/grpcurl/cmd/grpcurl"
    ),
}


# --------------------------------------------------------------------------- building


GO_INSTALL = (
    "install Go 1.22 or newer (`sudo apt-get install golang-go` on Debian/Ubuntu, or"
    " https://go.dev/dl/), put `go` on PATH or set $GO to it, then run ./scripts/test again"
)


def go_binary() -> str:
    """The ``go`` command: ``$GO`` when set (only it), else ``go`` on PATH, else
    /usr/local/go/bin/go."""
    chosen = os.environ.get("GO")
    candidates = [chosen] if chosen else [shutil.which("go"), "/usr/local/go/bin/go"]
    for cand in candidates:
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    where = f"$GO={chosen} is not an executable" if chosen else "no `go` on PATH"
    raise HarnessError(
        f"the tests build pstest, handy-spanner and the Go examples with Go, and {where}:"
        f" {GO_INSTALL}"
    )


def _go_version(go: str) -> str:
    out = subprocess.run(
        [go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout.strip()


def _cache_key(server: GoServer, go_version: str) -> str:
    h = hashlib.sha256()
    h.update(f"{go_version}\0{server.package}\0{','.join(server.tags)}\0{server.cgo}\0".encode())
    for path in server.sources():
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


@contextlib.contextmanager
def build_lock(timeout_s: float, name: str = "build") -> Iterator[None]:
    """Serialise builds of one kind across processes (pytest workers, scripts/test)."""
    TOOLS_BIN.mkdir(parents=True, exist_ok=True)
    with open(TOOLS_BIN / f".{name}.lock", "w") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise HarnessError(
                        f"waited {timeout_s:.0f}s for another {name} build"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_go_server(key: str, *, timeout_s: float = BUILD_TIMEOUT_S, verbose: bool = False) -> Path:
    """Return the binary for ``GO_SERVERS[key]``, building it first if missing or stale."""
    server = GO_SERVERS[key]
    go = go_binary()
    target = TOOLS_BIN / f"{server.name}-{_cache_key(server, _go_version(go))}"
    if found(target):
        return target
    with build_lock(timeout_s):
        if target.is_file():  # built by another process meanwhile
            return target
        env = dict(os.environ)
        # Never edit go.mod/go.sum (the pins are the pins); no VCS stamping of the binary.
        env["GOFLAGS"] = f"{env.get('GOFLAGS', '')} -mod=readonly -buildvcs=false".strip()
        env["CGO_ENABLED"] = "1" if server.cgo else "0"
        if server.cgo:
            # go-sqlite3's amalgamation warns under gcc 12; the warning is harmless.
            env.setdefault("CGO_CFLAGS", "-O2 -g -Wno-return-local-addr")
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        cmd = [go, "build", "-trimpath", "-o", str(tmp)]
        if server.tags:
            cmd += ["-tags", ",".join(server.tags)]
        cmd.append(server.package)
        started = time.monotonic()
        try:
            proc = subprocess.run(
                cmd,
                cwd=server.module_dir,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            tmp.unlink(missing_ok=True)
            raise HarnessError(f"building {server.name} took over {timeout_s:.0f}s") from exc
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise HarnessError(
                f"building {server.name} failed ({' '.join(cmd)} in {server.module_dir}):\n"
                f"{proc.stderr[-4000:]}"
            )
        tmp.replace(target)
        # Drop binaries of pins long unused, and point a stable name at the current one.
        prune(f"{server.name}-*", target)
        link = TOOLS_BIN / server.name
        link.unlink(missing_ok=True)
        link.symlink_to(target.name)
        if verbose:
            print(
                f"built {target} in {time.monotonic() - started:.1f}s",
                file=sys.stderr,
            )
    return target


def build_all(*, verbose: bool = False) -> dict[str, Path]:
    """Build every Go server (no-op for those already built); return their paths."""
    return {key: build_go_server(key, verbose=verbose) for key in GO_SERVERS}


def find_cloud_spanner_emulator() -> Path:
    """Path of Google's ``emulator_main`` (Cloud Spanner Emulator)."""
    override = os.environ.get("CLOUD_SPANNER_EMULATOR_BIN")
    candidates: list[Path] = [Path(override)] if override else []
    gcloud = shutil.which("gcloud")
    if gcloud:
        sdk = Path(gcloud).resolve().parent.parent
        candidates.append(sdk / "bin" / "cloud_spanner_emulator" / "emulator_main")
    candidates.extend(DEFAULT_EMULATOR_PATHS)
    for cand in candidates:
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    raise HarnessError(
        "Cloud Spanner Emulator not found (Debian package google-cloud-cli-spanner-emulator; "
        "or set CLOUD_SPANNER_EMULATOR_BIN, or TRACKER_SPANNER_SERVER=handy-spanner)"
    )


# --------------------------------------------------------------------------- running


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_grpc(host: str, timeout_s: float = START_TIMEOUT_S) -> None:
    """Block until an HTTP/2 (gRPC) connection to ``host`` is up, or raise HarnessError."""
    import grpc  # local import: building servers should not need grpcio

    channel = grpc.insecure_channel(host)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError as exc:
        raise HarnessError(f"no gRPC connection to {host} within {timeout_s:.0f}s") from exc
    finally:
        channel.close()


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


@dataclasses.dataclass
class RunningServer:
    """A server this harness started (``process`` set) or found in the environment."""

    kind: str
    host: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    files: list[IO[bytes]] = dataclasses.field(default_factory=list)

    @property
    def started_here(self) -> bool:
        return self.process is not None

    def alive(self) -> bool:
        """False once a server started here has exited (True for one found in the env)."""
        return self.process is None or self.process.poll() is None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; a no-op for servers not started here."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout_s)
        for file in self.files:  # the log and the pipe live as long as the process
            with contextlib.suppress(OSError, ValueError):
                file.close()
        self.files.clear()

    def log(self) -> str:
        """The server's output so far (stderr and any stdout after the address line)."""
        return _tail(self.log_path, 100_000) if self.log_path else ""


def _read_first_line(stream: IO[bytes], timeout_s: float) -> str | None:
    box: list[bytes] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return box[0].decode(errors="replace").strip() if box else None


def _drain(stream: IO[bytes], sink: IO[bytes]) -> None:
    def pump() -> None:
        with contextlib.suppress(ValueError, OSError):
            for chunk in iter(lambda: stream.read1(65536), b""):  # type: ignore[attr-defined]
                sink.write(chunk)
                sink.flush()

    threading.Thread(target=pump, daemon=True).start()


def _log_file(kind: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=f"{kind}-", suffix=".log")
    os.close(fd)
    return Path(name)


def _start_go_server(kind: str, timeout_s: float) -> RunningServer:
    binary = build_go_server(kind)
    log_path = _log_file(kind)
    log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process's pipes
    proc = subprocess.Popen(
        [str(binary), "-addr", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
        start_new_session=True,  # a ^C to the test runner is not sent to the server
    )
    assert proc.stdout is not None
    server = RunningServer(kind, "", proc, log_path, [proc.stdout, log])
    line = _read_first_line(proc.stdout, timeout_s)
    if not line or ":" not in line:
        server.stop()
        raise HarnessError(
            f"{kind} did not print its address within {timeout_s:.0f}s "
            f"(exit={proc.poll()}):\n{_tail(log_path)}"
        )
    _drain(proc.stdout, log)
    server.host = line
    try:
        wait_for_grpc(line, timeout_s)
    except HarnessError:
        server.stop()
        raise
    return server


def _start_cloud_spanner_emulator(timeout_s: float) -> RunningServer:
    binary = find_cloud_spanner_emulator()
    last_error = ""
    for _attempt in range(3):  # the port is picked before the emulator binds it: retry a race
        port = _free_loopback_port()
        host = f"127.0.0.1:{port}"
        log_path = _log_file("cloud-spanner-emulator")
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [str(binary), f"--host_port={host}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = RunningServer("cloud-spanner-emulator", host, proc, log_path)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                wait_for_grpc(host, min(1.0, max(0.1, deadline - time.monotonic())))
                return server
            except HarnessError:
                continue
        server.stop()
        last_error = f"exit={proc.poll()}:\n{_tail(log_path)}"
    raise HarnessError(f"cloud-spanner-emulator did not start: {last_error}")


def start_server(
    kind: str, *, timeout_s: float = START_TIMEOUT_S, reuse_env: bool = True
) -> RunningServer:
    """Start one server on a free loopback port and wait until it accepts gRPC.

    ``kind`` is ``pstest`` or one of SPANNER_SERVERS. If the matching ``*_EMULATOR_HOST``
    variable is set (and ``reuse_env``), nothing is started and that host is returned.
    Careful: code that itself sets ``SPANNER_EMULATOR_HOST`` to a server it started and
    then asks for another kind gets the first one back unless it passes reuse_env=False.
    """
    env_var = PUBSUB_ENV if kind == "pstest" else SPANNER_ENV
    if kind != "pstest" and kind not in SPANNER_SERVERS:
        raise ValueError(f"unknown server {kind!r}")
    existing = os.environ.get(env_var) if reuse_env else None
    if existing:
        return RunningServer(kind, existing)
    if kind == "cloud-spanner-emulator":
        return _start_cloud_spanner_emulator(timeout_s)
    return _start_go_server(kind, timeout_s)


@contextlib.contextmanager
def running_server(
    kind: str, *, timeout_s: float = START_TIMEOUT_S, reuse_env: bool = True
) -> Iterator[str]:
    """``with running_server("pstest") as host:`` -- started, then stopped on exit."""
    server = start_server(kind, timeout_s=timeout_s, reuse_env=reuse_env)
    try:
        yield server.host
    finally:
        server.stop()


@dataclasses.dataclass(frozen=True)
class EmulatorHosts:
    pubsub: str
    spanner: str
    spanner_server: str

    def env(self) -> dict[str, str]:
        """Variables that point the Google client libraries at these servers."""
        return {PUBSUB_ENV: self.pubsub, SPANNER_ENV: self.spanner, **SPANNER_CLIENT_ENV}


def spanner_server_from_env() -> SpannerServer:
    value = os.environ.get(SPANNER_SERVER_ENV, DEFAULT_SPANNER_SERVER)
    for known in SPANNER_SERVERS:
        if value == known:
            return known
    raise HarnessError(f"{SPANNER_SERVER_ENV}={value!r}: expected one of {SPANNER_SERVERS}")


@contextlib.contextmanager
def running_emulators(
    spanner_server: SpannerServer | None = None, *, timeout_s: float = START_TIMEOUT_S
) -> Iterator[EmulatorHosts]:
    """Start (or reuse, per ``*_EMULATOR_HOST``) Pub/Sub and Spanner; stop both on exit."""
    kind = spanner_server or spanner_server_from_env()
    with contextlib.ExitStack() as stack:
        pubsub = start_server("pstest", timeout_s=timeout_s)
        stack.callback(pubsub.stop)
        spanner = start_server(kind, timeout_s=timeout_s)
        stack.callback(spanner.stop)
        label = kind if spanner.started_here else f"external ({SPANNER_ENV})"
        yield EmulatorHosts(pubsub.host, spanner.host, label)


# --------------------------------------------------------------------------- Spanner setup


def spanner_client(host: str, project: str = "test-project") -> object:
    """A ``google.cloud.spanner.Client`` for ``host``, without touching ``os.environ``.

    AnonymousCredentials + ``api_endpoint`` make the 3.x client use a plaintext channel,
    exactly as ``SPANNER_EMULATOR_HOST`` would. Session settings still come from the
    environment: apply SPANNER_CLIENT_ENV (e.g. with pytest's monkeypatch) as well.
    """
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import spanner

    return spanner.Client(
        project=project,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": host},
        disable_builtin_metrics=True,
    )


def create_spanner_database(
    host: str,
    database_id: str,
    ddl: Sequence[str],
    *,
    project: str = "test-project",
    instance_id: str = "test-instance",
    proto_descriptors: bytes | None = None,
    timeout_s: float = 120.0,
) -> None:
    """Create instance (where the server has an instance admin) and database with ``ddl``.

    Works on every server here: the Cloud Spanner Emulator needs the instance first;
    handy-spanner has no instance admin (UNIMPLEMENTED is ignored) but implements
    CreateDatabase. spannertest crashes on CreateDatabase and is not supported here.
    """
    from google.api_core import exceptions as gexc

    client: Any = spanner_client(host, project)
    instance = client.instance(
        instance_id,
        configuration_name=f"projects/{project}/instanceConfigs/emulator-config",
        display_name=instance_id,
        node_count=1,
    )
    with contextlib.suppress(gexc.AlreadyExists, gexc.MethodNotImplemented):
        instance.create().result(timeout=timeout_s)
    database = instance.database(
        database_id, ddl_statements=list(ddl), proto_descriptors=proto_descriptors
    )
    database.create().result(timeout=timeout_s)


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.emulators.harness")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build every Go server into .tools/bin; print their paths")
    run = sub.add_parser("run", help="start Pub/Sub and Spanner; print env; serve until ^C")
    run.add_argument("--spanner", choices=SPANNER_SERVERS, default=None)
    args = parser.parse_args(argv)

    if args.cmd == "build":
        try:
            built = build_all(verbose=True)
        except HarnessError as exc:
            print(f"tracker: error: {exc}", file=sys.stderr)
            return 2
        for key, path in built.items():
            print(f"{key}\t{path}")
        with contextlib.suppress(HarnessError):
            print(f"cloud-spanner-emulator\t{find_cloud_spanner_emulator()}")
        return 0

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with running_emulators(args.spanner) as hosts:
        for name, value in hosts.env().items():
            print(f"export {name}={value}")
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            while not stop.wait(1.0):
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
