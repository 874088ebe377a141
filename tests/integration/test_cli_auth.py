"""The CLI with credentials: --token, TRACKER_TOKEN, --id-token-audience (ADC from a
loopback metadata server, in real `tracker` processes), the one-line refusals, and
`tracker auth hash-token` making tokens a real tracker then accepts."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.cli_kit import TRACKER, assert_one_error_line, clean_env, invoke
from tests.tokens import AUDIENCE, READER_TOKEN, TOKEN, MetadataServer
from tracker.auth import StaticTokens, token_digest
from tracker.cli import cli
from tracker.client import TrackerClient
from tracker.config import Config
from tracker.errors import Unauthenticated
from tracker.server import Server, running


@pytest.fixture(scope="module")
def server(secured_server: Server) -> Server:
    return secured_server


@pytest.fixture
def name() -> str:
    return f"operations/cliauth-{uuid.uuid4().hex[:12]}"


def sdk(server: Server) -> TrackerClient:
    return TrackerClient(server.http_url, token=TOKEN)


# ---- --token and TRACKER_TOKEN ---------------------------------------------------------


def test_every_client_command_sends_the_token_flag(
    server: Server, name: str, tmp_path: Path
) -> None:
    auth = ["--token", TOKEN]
    resume = tmp_path / "resume.bin"
    resume.write_bytes(b"\x00offset=3")
    other = name + "-other"

    results = {
        "created": invoke(["publish", "created", name, "--type", "export", *auth], server.http_url),
        "checkpoint-in": invoke(
            ["publish", "checkpoint", name, "--file", str(resume), *auth], server.http_url
        ),
        "succeeded": invoke(["publish", "succeeded", name, *auth], server.http_url),
        "get": invoke(["get", name, *auth], server.http_url),
        "list": invoke(["list", "--filter", f'name = "{name}"', *auth], server.http_url),
        "wait": invoke(["wait", name, "--timeout", "10", *auth], server.http_url),
        "checkpoint": invoke(["checkpoint", name, *auth], server.http_url),
        "other": invoke(["publish", "created", other, *auth], server.http_url),
        "cancel": invoke(["cancel", other, *auth], server.http_url),
        "delete": invoke(["delete", other, *auth], server.http_url),
    }

    assert {k: r.exit_code for k, r in results.items()} == dict.fromkeys(results, 0), {
        k: r.output for k, r in results.items()
    }
    assert results["created"].output.startswith("applied: created ")
    assert "done:      yes, succeeded" in results["get"].output
    assert name in results["list"].output
    assert results["checkpoint"].stdout_bytes == b"\x00offset=3"
    assert results["cancel"].output == f"cancelled {other}\n"


def test_the_token_comes_from_TRACKER_TOKEN(server: Server, name: str) -> None:
    env = {"TRACKER_TOKEN": TOKEN}
    published = invoke(["publish", "created", name], server.http_url, env=env)
    shown = invoke(["get", name], server.http_url, env=env)

    assert published.exit_code == 0, published.output
    assert shown.exit_code == 0 and f"name:      {name}" in shown.output


def test_a_flag_wins_over_the_environment(server: Server, name: str) -> None:
    with sdk(server) as client:
        client.created(name)
    # An audience in the environment is not even looked at when --token is given.
    env = {"TRACKER_ID_TOKEN_AUDIENCE": AUDIENCE, "TRACKER_TOKEN": TOKEN}
    result = invoke(["get", name, "--token", READER_TOKEN], server.http_url, env=env)
    cancel = invoke(["cancel", name, "--token", READER_TOKEN], server.http_url, env=env)

    assert result.exit_code == 0, result.output
    assert cancel.exit_code == 1  # the reader's token, not TRACKER_TOKEN's, was sent


@pytest.mark.parametrize(
    "args",
    [
        ["publish", "progress", "operations/x", "--percent", "5"],
        ["get", "operations/x"],
        ["list"],
        ["wait", "operations/x", "--timeout", "5"],
        ["wait", "operations/x", "--no-progress"],
        ["cancel", "operations/x"],
        ["delete", "operations/x"],
        ["checkpoint", "operations/x"],
    ],
    ids=lambda a: "-".join(a[:2]),
)
def test_without_credentials_one_line_says_what_to_set(server: Server, args: list[str]) -> None:
    result = invoke(args, server.http_url)

    assert result.exit_code == 1, result.output
    line = assert_one_error_line(result.output)
    assert "needs credentials" in line
    assert "set --token or TRACKER_TOKEN" in line


def test_a_wrong_token_says_what_to_check(server: Server) -> None:
    result = invoke(["get", "operations/x", "--token", "not-" + TOKEN], server.http_url)

    assert result.exit_code == 1
    line = assert_one_error_line(result.output)
    assert "unknown bearer token" in line and "--auth-tokens-file" in line
    assert TOKEN not in line


def test_a_missing_permission_says_who_lacks_what(server: Server, name: str) -> None:
    with sdk(server) as client:
        client.created(name)
    result = invoke(["cancel", name, "--token", READER_TOKEN], server.http_url)

    assert result.exit_code == 1
    line = assert_one_error_line(result.output)
    assert "token:reader lacks operations.write" in line
    assert "must grant operations.write" in line


def test_two_kinds_of_credentials_at_once_is_a_usage_error(server: Server) -> None:
    both = ["get", "operations/x", "--token", TOKEN, "--id-token-audience", AUDIENCE]
    result = invoke(both, server.http_url)
    bad = invoke(["get", "operations/x", "--token", "two words"], server.http_url)

    assert result.exit_code == 2 and "not two" in assert_one_error_line(result.output)
    assert bad.exit_code == 2 and "printable ASCII" in assert_one_error_line(bad.output)
    assert "two words" not in bad.output


# ---- ID tokens from Application Default Credentials (real processes) --------------------


def tracker(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TRACKER, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_id_token_audience_mints_from_the_metadata_server(server: Server, name: str) -> None:
    metadata = MetadataServer()
    try:
        env = metadata.env(clean_env(TRACKER_URL=server.http_url))
        published = tracker(["publish", "created", name, "--id-token-audience", AUDIENCE], env)
        shown = tracker(["get", name], {**env, "TRACKER_ID_TOKEN_AUDIENCE": AUDIENCE})
        denied = tracker(["delete", name, "--id-token-audience", AUDIENCE], env)
    finally:
        metadata.close()

    assert published.returncode == 0, published.stderr
    assert shown.returncode == 0 and f"name:      {name}" in shown.stdout, shown.stderr
    assert metadata.identities == [AUDIENCE, AUDIENCE, AUDIENCE]  # one per process
    # The token names the metadata server's account, which may not delete.
    assert denied.returncode == 1
    assert "serviceAccount:push@proj.iam.gserviceaccount.com lacks operations.write" in (
        assert_one_error_line(denied.stderr)
    )


def test_no_application_default_credentials_is_one_line_and_exit_2(server: Server) -> None:
    not_gce = MetadataServer(on_gce=False)  # answers, but is no metadata server
    try:
        env = not_gce.env(clean_env(TRACKER_URL=server.http_url))
        result = tracker(["get", "operations/x", "--id-token-audience", AUDIENCE], env)
    finally:
        not_gce.close()

    assert result.returncode == 2, result.stderr
    line = assert_one_error_line(result.stderr)
    assert f"cannot get an ID token for {AUDIENCE}" in line
    assert "GOOGLE_APPLICATION_CREDENTIALS" in line
    assert not_gce.identities == []


# ---- tracker auth hash-token -----------------------------------------------------------


def hash_token(stdin: str, *args: str) -> Result:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TRACKER_")}
    return CliRunner().invoke(cli, ["auth", "hash-token", *args], input=stdin, env=env)


def test_hash_token_prints_the_digest_of_the_token_on_stdin() -> None:
    token = "t0123456789" * 4
    plain = hash_token(token + "\n")
    named = hash_token(token, "--name", "ci")

    assert plain.exit_code == 0 and plain.stderr == ""
    assert plain.stdout == token_digest(token) + "\n"
    assert named.stdout == f'ci = "{token_digest(token)}"\n'


def test_a_new_token_works_against_a_tracker_using_its_line(tmp_path: Path) -> None:
    first, second = hash_token("", "--new", "--name", "ci"), hash_token("", "--new")
    token, line = first.stdout.splitlines()
    other, _ = second.stdout.splitlines()
    tokens_file = tmp_path / "tokens.toml"
    tokens_file.write_text(line + "\n")

    assert first.exit_code == 0 and "keep it secret" in first.stderr
    assert len(token) >= 43 and token != other  # 32 random bytes, base64url
    assert token not in tokens_file.read_text()
    assert StaticTokens.from_file(tokens_file).digests == {"ci": token_digest(token)[7:]}
    config = Config(
        db=":memory:",
        http_port=0,
        grpc_port=-1,
        auth_tokens_file=str(tokens_file),
        grant=("events.publish=token:ci",),
    )
    with running(config) as srv:
        with TrackerClient(srv.http_url, token=token) as client:
            assert client.created("operations/new-token").applied
        with TrackerClient(srv.http_url, token=other) as client, pytest.raises(Unauthenticated):
            client.created("operations/new-token")


def test_a_short_token_is_hashed_with_a_warning() -> None:
    result = hash_token("hunter2")

    assert result.exit_code == 0
    assert result.stdout == token_digest("hunter2") + "\n"
    assert "7-character token may be guessed" in result.stderr
    assert "--new" in result.stderr


@pytest.mark.parametrize(
    ("stdin", "args", "expected"),
    [
        ("", [], "no token on stdin"),
        ("  \n", [], "no token on stdin"),
        ("two words here", [], "printable ASCII"),
        ("t" * 40, ["--name", "bad name"], "is not a token name"),
    ],
    ids=["empty", "blank", "spaces", "bad-name"],
)
def test_hash_token_bad_input_is_one_line_and_exit_2(
    stdin: str, args: list[str], expected: str
) -> None:
    result = hash_token(stdin, *args)

    assert result.exit_code == 2
    assert expected in assert_one_error_line(result.output)
    assert "two words" not in result.output  # a token is never echoed


def test_hash_token_prompts_without_echo_on_a_terminal() -> None:
    token = "typed-at-the-prompt-0123456789abcdef"
    env = clean_env()  # made before the fork: the child only execs
    pid, terminal = pty.fork()
    if pid == 0:  # the child: stdin, stdout and stderr are the terminal
        try:
            os.execve(TRACKER, [TRACKER, "auth", "hash-token"], env)
        finally:
            os._exit(127)
    try:
        seen = _read_until(terminal, b"Token:")
        os.write(terminal, token.encode() + b"\n")
        seen += _read_until(terminal, b"sha256:" + token_digest(token)[7:].encode())
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 0
    assert token.encode() not in seen  # not echoed
    assert b"warning" not in seen


def _read_until(fd: int, wanted: bytes) -> bytes:
    seen = b""
    while wanted not in seen:
        ready, _, _ = select.select([fd], [], [], 30)
        assert ready, f"no {wanted!r} on the terminal within 30 s: {seen!r}"
        chunk = os.read(fd, 4096)
        assert chunk, f"the terminal closed before {wanted!r}: {seen!r}"
        seen += chunk
    return seen
