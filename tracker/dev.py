"""`tracker dev`: the Google Cloud path (Pub/Sub + Spanner) on one laptop, in one command.

It starts Google's Pub/Sub and Spanner emulators (from the gcloud CLI; pstest and
handy-spanner from the tools cache otherwise), creates the topics, subscriptions and the
database with the schema, serves the tracker on them and
prints what a worker and a consumer need. SIGINT or SIGTERM stops everything it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from tracker.errors import ConfigError

Emulators = Literal["auto", "google", "go"]
START_TIMEOUT_S: Final = 90.0
INSTANCE: Final = "dev"
DATABASE: Final = "tracker"
# The Spanner client's session settings for an emulator: the Go fake has no multiplexed
# sessions and Google's emulator only part of them. Set only here, where every address
# is an emulator's.
EMULATOR_SPANNER_ENV: Final = {
    "GOOGLE_CLOUD_SPANNER_MULTIPLEXED_SESSIONS": "false",
    "GOOGLE_CLOUD_SPANNER_MULTIPLEXED_SESSIONS_FOR_RW": "false",
    "GOOGLE_CLOUD_SPANNER_MULTIPLEXED_SESSIONS_PARTITIONED_OPS": "false",
    "SPANNER_DISABLE_BUILTIN_METRICS": "true",
}


@dataclass(frozen=True)
class Names:
    """What `tracker dev` creates, in one project."""

    project: str

    def topic(self, short: str) -> str:
        return f"projects/{self.project}/topics/{short}"

    def subscription(self, short: str) -> str:
        return f"projects/{self.project}/subscriptions/{short}"

    @property
    def events(self) -> str:
        return self.topic("tracker-events")

    @property
    def events_push(self) -> str:
        return self.topic("tracker-events-push")

    @property
    def done(self) -> str:
        return self.topic("tracker-done")

    @property
    def dead_letter(self) -> str:
        return self.topic("tracker-dead-letter")

    @property
    def control(self) -> str:
        return self.topic("tracker-control")

    @property
    def database(self) -> str:
        return f"projects/{self.project}/instances/{INSTANCE}/databases/{DATABASE}"


@dataclass
class Emulator:
    kind: str  # "google-pubsub", "pstest", "google-spanner", "handy-spanner"
    host: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)  # the Java emulator runs under a script
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)


# ---- finding the emulators ---------------------------------------------------------------


def _gcloud_sdk() -> Path | None:
    gcloud = shutil.which("gcloud")
    return Path(gcloud).resolve().parent.parent if gcloud else None


def google_pubsub_emulator() -> Path | None:
    sdk = _gcloud_sdk()
    path = sdk / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator" if sdk else None
    return path if path and path.is_file() and shutil.which("java") else None


def google_spanner_emulator() -> Path | None:
    sdk = _gcloud_sdk()
    path = sdk / "bin" / "cloud_spanner_emulator" / "emulator_main" if sdk else None
    return path if path and path.is_file() else None


def tools_dir() -> Path:
    """Where a checkout's `./scripts/test` keeps the tools it builds, shared by every
    clone of this machine's user: `$TRACKER_TOOLS_DIR`, else
    `${XDG_CACHE_HOME:-~/.cache}/tracker/tools`."""
    if os.environ.get("TRACKER_TOOLS_DIR"):
        return Path(os.environ["TRACKER_TOOLS_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tracker" / "tools"


def tools_bin() -> Path:
    """The built binaries' folder (`$TRACKER_TOOLS_BIN`, else `tools_dir()/bin`)."""
    return Path(os.environ.get("TRACKER_TOOLS_BIN") or tools_dir() / "bin")


def go_server(name: str) -> Path | None:
    """pstest or handy-spanner as a checkout's `./scripts/test` builds them (`pstest-server`,
    `handy-spanner-server` in the user's tools cache, or on PATH)."""
    found = shutil.which(name)
    if found:
        return Path(found)
    path = tools_bin() / name
    return path if path.is_file() and os.access(path, os.X_OK) else None


GO_SERVERS: Final = {"pstest": "pstest-server", "handy-spanner": "handy-spanner-server"}


def choose(emulators: Emulators) -> tuple[str, str]:
    """(Pub/Sub kind, Spanner kind) to start, or a ConfigError saying what to install:
    Google's emulators when the gcloud CLI has them, else pstest and handy-spanner."""
    google = google_pubsub_emulator(), google_spanner_emulator()
    go = tuple(go_server(binary) for binary in GO_SERVERS.values())
    if emulators != "go" and all(google):
        return "google-pubsub", "google-spanner"
    if emulators != "google" and all(go):
        return "pstest", "handy-spanner"
    missing = [n for n, p in zip(("Pub/Sub", "Spanner"), google, strict=True) if p is None]
    install_google = (
        f"Google's {' and '.join(missing)} emulator not found: install the gcloud CLI, then "
        "`gcloud components install pubsub-emulator cloud-spanner-emulator` (Pub/Sub's "
        "also needs `java` on PATH)"
    )
    install_go = (
        "pstest and handy-spanner not found: in a checkout, "
        "`.venv/bin/python -m tests.emulators.harness build` builds them (needs Go)"
    )
    if emulators == "google":
        raise ConfigError(install_google)
    if emulators == "go":
        raise ConfigError(install_go)
    raise ConfigError(f"{install_google}; or {install_go}")


# ---- starting them -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_port(port: int, flag: str) -> int:
    """`port`, or a free one for 0; a port in use is a ConfigError naming the flag."""
    if port == 0:
        return free_port()
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise ConfigError(
                f"port {port} is in use (another tracker dev or emulator?): stop it, or pass "
                f"{flag} N (0 picks a free port)"
            ) from None
    return port


def wait_for_grpc(host: str, proc: subprocess.Popen[bytes], log: Path, kind: str) -> None:
    import grpc

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with grpc.insecure_channel(host) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=1)
                return
            except grpc.FutureTimeoutError:
                continue
    tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
    raise ConfigError(f"{kind} did not start on {host} (exit {proc.poll()}); its log:\n{tail}")


def _die_with_parent() -> None:
    """In the emulator's child process: SIGTERM when `tracker dev` dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start(kind: str, port: int, logs: Path) -> Emulator:
    log = logs / f"{kind}.log"
    host = f"127.0.0.1:{port}"
    command: list[str]
    if kind == "google-pubsub":
        command = [str(google_pubsub_emulator()), "--host=127.0.0.1", f"--port={port}"]
    elif kind == "google-spanner":
        command = [str(google_spanner_emulator()), f"--host_port={host}"]
    elif kind in GO_SERVERS:
        command = [str(go_server(GO_SERVERS[kind])), "-addr", host]
    else:
        raise ConfigError(f"unknown emulator {kind!r}")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,  # ^C reaches `tracker dev`, which stops them in order
            preexec_fn=_die_with_parent,
        )
    emulator = Emulator(kind, host, proc, log)
    try:
        wait_for_grpc(emulator.host, proc, log, kind)
    except BaseException:
        emulator.stop()
        raise
    return emulator


# ---- provisioning ------------------------------------------------------------------------


def create_pubsub(names: Names, push_endpoint: str | None) -> list[str]:
    """Topics and subscriptions; returns notes on what the emulator could not do."""
    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    notes = []
    for topic in (names.events, names.events_push, names.done, names.dead_letter, names.control):
        with contextlib.suppress(gexc.AlreadyExists):
            publisher.create_topic(name=topic)

    def subscription(short: str, topic: str, **extra: Any) -> None:
        request = {"name": names.subscription(short), "topic": topic, **extra}
        with contextlib.suppress(gexc.AlreadyExists):
            subscriber.create_subscription(request=request)

    # The tracker dead-letters what it can never apply (--dead-letter-topic); a policy on
    # the subscription as well is for the Cloud (deploy/), not needed here.
    subscription("tracker-events", names.events, enable_message_ordering=True)
    if push_endpoint:
        subscription(
            "tracker-events-push",
            names.events_push,
            enable_message_ordering=True,
            push_config={"push_endpoint": push_endpoint},
        )
    else:
        notes.append("pstest delivers no push subscriptions: tracker-events-push has none")
    subscription("tracker-done", names.done)
    subscription("tracker-dead-letter", names.dead_letter)
    subscription("tracker-control", names.control, enable_message_ordering=True)
    subscriber.close()
    return notes


def create_spanner(names: Names, variant: Literal["canonical", "emulator"]) -> None:
    from google.api_core import exceptions as gexc
    from google.cloud import spanner

    from tracker.stores import spanner_schema

    client: Any = spanner.Client(project=names.project)
    instance = client.instance(
        INSTANCE,
        configuration_name=f"projects/{names.project}/instanceConfigs/emulator-config",
        display_name="tracker dev",
        node_count=1,
    )
    with contextlib.suppress(gexc.AlreadyExists, gexc.MethodNotImplemented):
        instance.create().result(120)
    database = spanner_schema.open_database(names.database, client)
    spanner_schema.create_database(database)
    spanner_schema.apply(database, variant)


# ---- the whole ---------------------------------------------------------------------------


@dataclass
class Dev:
    names: Names
    env: dict[str, str]
    url: str
    grpc_target: str
    emulators: list[Emulator] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        n = self.names
        lines = [f"export {k}={v}" for k, v in self.env.items()]
        lines += [
            "",
            f"events topic (pull):      {n.events}",
            f"events topic (push):      {n.events_push}",
            f"done-notifications:       {n.done}",
            f"  a subscription on it:   {n.subscription('tracker-done')}",
            f"dead letters:             {n.dead_letter} (subscription tracker-dead-letter)",
            f"control notices:          {n.control} (subscription tracker-control)",
            f"Spanner database:         {n.database}",
            f"tracker:                  {self.url} (gRPC {self.grpc_target})",
            *(f"note: {note}" for note in self.notes),
            "ready; Ctrl-C stops the tracker and the emulators",
        ]
        return "\n".join(lines)


@contextlib.contextmanager
def running(
    *,
    emulators: Emulators = "auto",
    project: str = "tracker-dev",
    http_port: int = 8080,
    grpc_port: int = 8081,
    pubsub_port: int = 8085,
    spanner_port: int = 9010,
    log_level: str = "info",
) -> Iterator[Dev]:
    """Everything `tracker dev` starts, stopped in reverse order on exit."""
    from tracker import server
    from tracker.config import Config

    pubsub_kind, spanner_kind = choose(emulators)
    http_port = check_port(http_port, "--http-port")
    grpc_port = check_port(grpc_port, "--grpc-port")
    pubsub_port = check_port(pubsub_port, "--pubsub-port")
    spanner_port = check_port(spanner_port, "--spanner-port")
    names = Names(project)
    logs = Path(tempfile.mkdtemp(prefix="tracker-dev-"))
    started: list[Emulator] = []
    saved = {
        k: os.environ.get(k)
        for k in ("PUBSUB_EMULATOR_HOST", "SPANNER_EMULATOR_HOST", *EMULATOR_SPANNER_ENV)
    }
    try:
        started.append(start(pubsub_kind, pubsub_port, logs))
        started.append(start(spanner_kind, spanner_port, logs))
        pubsub, spanner_emulator = started
        os.environ["PUBSUB_EMULATOR_HOST"] = pubsub.host
        os.environ["SPANNER_EMULATOR_HOST"] = spanner_emulator.host
        os.environ.update(EMULATOR_SPANNER_ENV)
        url = f"http://127.0.0.1:{http_port}"
        push = f"{url}/v1/pubsub/push" if pubsub_kind == "google-pubsub" else None
        notes = create_pubsub(names, push)
        google_spanner = spanner_kind == "google-spanner"
        create_spanner(names, "canonical" if google_spanner else "emulator")
        config = Config(
            store="spanner",
            spanner_database=names.database,
            subscription=names.subscription("tracker-events"),
            dead_letter_topic=names.dead_letter,
            done_topic=names.done,
            control_topic=names.control,
            # handy-spanner returns no transaction id from an inline begin (docs/gcp.md).
            spanner_explicit_begin=not google_spanner,
            http_port=http_port,
            grpc_port=grpc_port,
            log_level=log_level,
        ).validate()
        with server.running(config, drain_executor=True) as tracker:
            env = {
                "PUBSUB_EMULATOR_HOST": pubsub.host,
                "SPANNER_EMULATOR_HOST": spanner_emulator.host,
                "TRACKER_URL": tracker.http_url,
            }
            notes.append(f"emulators: {pubsub_kind} and {spanner_kind}; their logs in {logs}")
            yield Dev(names, env, tracker.http_url, tracker.grpc_target, started, notes)
    finally:
        for emulator in reversed(started):
            emulator.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main(echo: Callable[[str], None] = print, **options: Any) -> None:
    """Run until SIGINT or SIGTERM (the CLI's entry)."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with running(**options) as dev:
            echo(dev.describe())
            sys.stdout.flush()
            while not stop.wait(0.5):
                pass
            echo("stopping")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
