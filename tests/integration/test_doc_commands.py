"""The commands the docs show, run as a reader would run them, against a real tracker.

Each block is read by its `<!-- doc-test: ID -->` marker (tests/doc_blocks.py) and run in
bash with the project's `tracker` and `python` first on PATH; the only changes are the
ports (the docs' 8080/8081 become free ones) and, where a doc names a placeholder
(`projects/P/...`), a topic this test made. The outputs are checked for what the doc says.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import grpc
import httpx
import pytest
from click.core import Command, Group

from tests import doc_blocks
from tests.doc_blocks import doc_block, on_ports, run_sh
from tests.helpers import ROOT
from tests.pubsub_kit import PubSub
from tracker.cli import cli
from tracker.client import TrackerClient
from tracker.config import Config
from tracker.dev import free_port
from tracker.errors import NotFound
from tracker.server import running

pytestmark = pytest.mark.timeout(600)


@dataclass
class Site:
    """A tracker a doc block started, on free ports."""

    http: int
    grpc: int
    proc: subprocess.Popen[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def sh(self, block: str, **env: str) -> subprocess.CompletedProcess[str]:
        return run_sh(on_ports(block, self.http, self.grpc), env={"TRACKER_URL": self.url, **env})


@contextlib.contextmanager
def started(command: str, cwd: Path, **env: str) -> Iterator[Site]:
    """Run a doc's `tracker serve` (or `./scripts/run`) line until /healthz answers."""
    http, grpc_port = free_port(), free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    full.update(PATH=doc_blocks.venv_path(), PYTHONUNBUFFERED="1", **env)
    line = on_ports(command, http, grpc_port).split("#", 1)[0].strip()
    if "--http-port" not in line:
        line += f" --http-port {http} --grpc-port {grpc_port}"
    with subprocess.Popen(
        ["bash", "-c", f"exec {line}"],
        cwd=cwd,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        site = Site(http, grpc_port, proc)
        try:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, (
                    f"{line} exited:\n{proc.stdout.read() if proc.stdout else ''}"
                )
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{site.url}/healthz", timeout=2).status_code == 200:
                        break
                assert time.monotonic() < deadline, f"{line} did not answer /healthz"
                time.sleep(0.2)
            yield site
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def json_values(text: str) -> list[Any]:
    """The JSON values a run of curl calls printed back to back (an SSE stream's data too)."""
    text = re.sub(r"^(event|id|retry|):.*$", "", text.replace("data: {", "{"), flags=re.M)
    decoder, out, at = json.JSONDecoder(), [], 0
    while (at := len(text) - len(text[at:].lstrip())) < len(text):
        value, at = decoder.raw_decode(text, at)
        out.append(value)
    return out


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (
        f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def laptop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """docs/auth.md's laptop: `./scripts/run`, the README's first command, in a fresh folder."""
    command = doc_block("docs/auth.md", "laptop")
    assert command.startswith("./scripts/run ")
    folder = tmp_path_factory.mktemp("laptop")
    with started(command.replace("./scripts/run", str(ROOT / "scripts" / "run")), folder) as site:
        yield site
    assert (folder / "tracker.db").exists()  # the default store is ./tracker.db


# ---- the README's "Try it in a minute" ---------------------------------------------------


def test_try_it_in_a_minute_runs_as_shown(laptop: Site) -> None:
    # The laptop serves both ports the README names.
    with grpc.insecure_channel(f"127.0.0.1:{laptop.grpc}") as channel:
        grpc.channel_ready_future(channel).result(timeout=30)

    answers = ok(laptop.sh(doc_block("README.md", "try-curl"))).strip().splitlines()
    *events, operation = (json.loads(line) for line in answers)
    assert [e["results"][0]["outcome"] for e in events] == ["applied"] * 3
    assert operation["name"] == "operations/demo-1" and operation["done"] is True
    assert operation["response"]["value"] == {"rows": 1200}  # a Struct, in its Any form
    assert operation["metadata"]["labels"] == {"env": "dev"}

    cli_block = doc_block("README.md", "try-cli")
    shown = ok(laptop.sh(cli_block))
    assert "applied: progress" in shown and "applied: succeeded" in shown
    # The list the README says shows demo-1 shows it (and nothing else: only demo-1 has env=dev).
    listed = ok(laptop.sh(cli_block.splitlines()[-1]))
    assert "operations/demo-1" in listed and "operations/demo-2" not in listed
    with TrackerClient(laptop.url) as client:
        assert client.get("operations/demo-2").done

    sdk = on_ports(doc_block("README.md", "try-sdk"), laptop.http, laptop.grpc)
    namespace: dict[str, Any] = {}
    exec(compile(sdk, "README.md", "exec"), namespace)
    op = namespace["op"]
    namespace["client"].close()  # the README's snippet leaves it open, as a script may
    assert op.name == "operations/demo-3" and op.done and not op.HasField("error")

    google = on_ports(doc_block("README.md", "try-google-client"), laptop.http, laptop.grpc)
    *setup, last = google.strip().splitlines()
    namespace = {}
    exec(compile("\n".join(setup), "README.md", "exec"), namespace)
    got = eval(last, namespace)  # the block's last line, an expression
    assert got.name == "operations/demo-3" and got.done


# ---- docs/cli.md, docs/api.md, schemas/README.md ------------------------------------------


def test_the_cli_tour_runs_as_shown(tmp_path: Path) -> None:
    serve, *rest = doc_block("docs/cli.md", "tour").splitlines()
    with started(serve, tmp_path) as site:
        before = ok(site.sh("\n".join(rest[:3])))  # created, progress, list
        after = ok(site.sh("\n".join(rest[3:])))  # succeeded, wait
    assert (tmp_path / "tracker.db").exists()
    listed = before.splitlines()[-1]
    assert "operations/export-42" in listed and "40" in listed, before
    assert before.count("applied:") == 2 and after.count("applied:") == 1  # wait exited 0


def test_the_api_curl_examples_run_as_shown(laptop: Site, tmp_path: Path) -> None:
    name = "operations/exports/2026-01-07"
    with TrackerClient(laptop.url) as client:
        client.created(name, operation_type="export", labels={"env": "prod"})
        client.progress(name, 30, "copying")
        client.checkpoint(name, b"resume-here")
    block = doc_block("docs/api.md", "curl")
    # Fail on any HTTP error, as a reader would notice one; the work ends 2 s in, while
    # the block's `:watch` follows it.
    strict = 'curl() { command curl --fail-with-body "$@"; }\n'
    finish = (
        f"(sleep 2; tracker publish succeeded {name} --response '{{\"rows\": 3}}' >/dev/null) &\n"
    )
    done = run_sh(
        strict + finish + on_ports(block, laptop.http),
        env={"TRACKER_URL": laptop.url, "TOKEN": ""},
        cwd=tmp_path,
    )
    answers = json_values(ok(done))
    assert (tmp_path / "resume.bin").read_bytes() == b"resume-here"
    got, page, next_page, *watched = answers[:-4]
    assert got["name"] == name and got["metadata"]["percent"] == 30
    assert (
        [op["name"] for op in page["operations"]]
        == [name]
        == [op["name"] for op in next_page["operations"]]
    )
    assert watched and watched[-1]["done"] is True
    waited_body, waited_query, cancelled, deleted = answers[-4:]
    assert waited_body["done"] and waited_query["response"]["value"] == {"rows": 3}
    assert cancelled == {} and deleted == {}
    with TrackerClient(laptop.url) as client, pytest.raises(NotFound):
        client.get(name)  # the block ends with DELETE


def test_the_schema_readme_progress_event_is_applied(laptop: Site) -> None:
    out = ok(laptop.sh(doc_block("schemas/README.md", "progress-curl"), TRACKER=laptop.url))
    assert json.loads(out)["results"][0]["outcome"] in {"applied", "duplicate"}
    with TrackerClient(laptop.url) as client:
        meta = client.get("operations/export-20240601-a1b2")
    assert meta.name == "operations/export-20240601-a1b2"


def _options(command: Command) -> set[str]:
    return {opt for p in command.params for opt in p.opts if opt.startswith("--")}


def test_the_dead_letters_synopsis_names_real_subcommands_and_flags() -> None:
    group = cli.get_command(click.Context(cli), "dead-letters")
    assert isinstance(group, Group)
    lines = doc_block("docs/dead-letters.md", "synopsis").splitlines()
    assert {line.split()[2] for line in lines} == set(group.list_commands(click.Context(group)))
    for line in lines:
        sub = group.get_command(click.Context(group), line.split()[2])
        assert sub is not None, line
        flags = set(re.findall(r"--[a-z-]+", line.split("#", 1)[0]))
        assert flags <= _options(sub), (line, flags - _options(sub))


# ---- docs/auth.md and docs/webhooks.md ----------------------------------------------------


def test_hash_token_prints_the_digest_of_the_token() -> None:
    block = doc_block("docs/auth.md", "hash-token")
    out = ok(run_sh(block + '\necho "$CI_TOKEN"')).split()
    digest, token = out[0], out[-1]
    assert len(token) >= 40
    assert digest == "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def test_a_new_webhook_secret_starts_the_laptop_receiver(tmp_path: Path) -> None:
    secret = ok(run_sh(doc_block("docs/webhooks.md", "new-secret"))).strip()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret), secret
    export, serve = doc_block("docs/webhooks.md", "local-receiver").strip().splitlines()
    assert export == 'export TRACKER_WEBHOOK_SECRETS="whsec_..."'
    with started(serve, tmp_path, TRACKER_WEBHOOK_SECRETS=secret) as site:
        assert httpx.get(f"{site.url}/healthz", timeout=10).status_code == 200
    # And the same command with a secret that is not one stops at start-up.
    bad = run_sh(f"{serve} --http-port 0 --grpc-port -1", env={"TRACKER_WEBHOOK_SECRETS": "x"})
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


# ---- docs/publishing.md: the examples' command lines --------------------------------------


def test_the_tenants_block_runs_as_shown(tmp_path: Path) -> None:
    lines = doc_block("docs/gcp.md", "tenants").splitlines()
    applies = [line for line in lines if line.startswith("tracker schema apply")]
    serves = [line.removesuffix("&").strip() for line in lines if line.startswith("tracker serve")]
    assert len(applies) == 2 and len(serves) == 2
    done = run_sh("\n".join(applies), env={"PATH": doc_blocks.venv_path()}, cwd=tmp_path)
    assert ok(done).count("schema version") == 2
    # `started` puts its own free port where a block says 8080.
    billing_line = serves[0].replace("8091", "8080")
    search_line = serves[1].replace("8092", "8080")
    with (
        started(billing_line, tmp_path) as billing,
        started(search_line, tmp_path) as search,
        TrackerClient(billing.url) as b,
        TrackerClient(search.url) as s,
    ):
        b.create("operations/shared", operation_type="billing")
        s.create("operations/shared", operation_type="search")
        b.cancel("operations/shared")
        assert b.get("operations/shared").done and not s.get("operations/shared").done
        assert [o.name for o in s.list()] == ["operations/shared"]


def test_the_proto_descriptors_block_runs_as_shown(tmp_path: Path) -> None:
    from grpc_tools import protoc  # type: ignore[import-untyped]

    from tests.integration.test_producer_types import META, PROTO

    compile_line, serve_line = doc_block("docs/publishing.md", "proto-descriptors").splitlines()
    source = tmp_path / "protos" / "acme" / "export" / "v1" / "export.proto"
    source.parent.mkdir(parents=True)
    source.write_text(PROTO)
    # protoc as the grpcio-tools package ships it, with the well-known types it bundles.
    include = Path(protoc.__file__).parent / "_proto"
    shim = f'protoc() {{ python -m grpc_tools.protoc -I{include} "$@"; }}\n'
    ok(run_sh(shim + compile_line, cwd=tmp_path))
    assert (tmp_path / "acme.binpb").stat().st_size > 0
    with started(serve_line, tmp_path) as site:
        answer = httpx.post(
            f"{site.url}/v1/events",
            json={"metadata": {"@type": META, "table": "orders"}},
            headers={
                "ce-specversion": "1.0",
                "ce-id": "1",
                "ce-source": "doc",
                "ce-type": "tracker.operation.v1.created",
                "ce-subject": "operations/typed",
                "content-type": "application/json",
            },
        )
        assert answer.status_code == 200, answer.text
        with TrackerClient(site.url) as client:
            assert client.get("operations/typed").metadata.type_url == META


def test_the_create_curl_example_runs_as_shown(laptop: Site, tmp_path: Path) -> None:
    block = doc_block("docs/api.md", "create-curl")
    done = run_sh(on_ports(block, laptop.http), env={"TOKEN": ""}, cwd=tmp_path)
    created, again = json_values(ok(done))
    assert created["name"].startswith("projects/demo/locations/eu/operations/")
    assert created["metadata"]["labels"] == {"env": "prod"}
    assert again["name"] == created["name"]
    with TrackerClient(laptop.url) as client:
        assert client.get(created["name"]).name == created["name"]


def test_the_curl_example_lines_run_as_shown(laptop: Site) -> None:
    first, *rest = doc_block("docs/publishing.md", "curl-run").splitlines()
    assert first.startswith("./scripts/run &")  # the laptop fixture runs that
    out = ok(laptop.sh("\n".join(rest)))
    operation = json.loads(out.strip().splitlines()[-1])
    assert operation["name"] == "operations/demo-5" and operation["done"] is True
    with TrackerClient(laptop.url) as client:
        assert client.get("operations/demo-6").error.code != 0


def _example_lines(block: str, directory: str, program: str, binary: list[str]) -> str:
    lines = block.splitlines()
    assert lines[0] == f"cd {directory}"
    out = []
    for line in lines[1:]:
        if line.startswith("npm ci"):
            continue  # tests/integration/test_examples.install_node ran exactly that
        out.append(line.replace(program, " ".join(binary)))
    return "\n".join(out)


@pytest.mark.parametrize("language", ["go", "node"])
def test_the_example_command_lines_run_as_shown(
    language: str, pubsub_env: str, tmp_path: Path
) -> None:
    from tests.integration.test_examples import build_go, install_node

    if language == "go":
        block, program, binary = (
            doc_block("docs/publishing.md", "go-run"),
            "go run .",
            [str(build_go())],
        )
    else:
        block = doc_block("docs/publishing.md", "node-run")
        program, binary = "node main.mjs", [install_node(), str(ROOT / "examples/node/main.mjs")]
    pubsub = PubSub()
    topic = pubsub.topic()
    subscription = pubsub.subscription(topic)
    script = _example_lines(block, f"examples/{language}", program, binary).replace(
        "projects/P/topics/tracker-events", topic
    )
    config = Config(db=str(tmp_path / "t.db"), http_port=0, grpc_port=-1)
    with running(config) as server:
        port = int(server.http_url.rsplit(":", 1)[1])
        out = ok(run_sh(on_ports(script, port), env={"PUBSUB_EMULATOR_HOST": pubsub_env}))
        with TrackerClient(server.http_url) as client:
            over_http = {
                "go": ["operations/demo-7", "operations/demo-7b"],
                "node": ["operations/demo-8"],
            }
            for name in over_http[language]:
                assert client.get(name).done, name
    assert "published" in out
    if language == "go":
        assert "(attempt 2, sequence 1)" in out  # the restart the doc's comment names
    pulled = pubsub.pull_all(subscription)
    subjects = {m.attributes["ce-subject"] for m in pulled}
    expected = {
        "go": {"operations/demo-1", "operations/demo-2"},
        "node": {"operations/demo-3", "operations/demo-4"},
    }
    assert subjects == expected[language]
