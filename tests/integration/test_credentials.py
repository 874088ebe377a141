"""Clients send credentials: the SDK, the worker and Google's Operations clients against a
real tracker that checks its callers (static tokens and ID tokens, `tests/tokens.py`).

ID tokens from Application Default Credentials come from `tests.tokens.MetadataServer`,
a loopback GCE metadata server, to a client process of its own (`tests/id_token_client.py`:
google-auth reads where the metadata server is once, at import).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import grpc
import pytest
from google.api_core import exceptions
from google.api_core import operations_v1 as gapic_operations
from google.auth.exceptions import RefreshError
from google.oauth2.credentials import Credentials as OAuthCredentials
from google.rpc import code_pb2

from tests.helpers import ROOT, rest_client
from tests.tokens import (
    ACCOUNT,
    AUDIENCE,
    READER_TOKEN,
    TOKEN,
    MetadataServer,
    id_token,
)
from tracker import errors
from tracker.client import AsyncTrackerClient, TrackerClient, credentials, metadata
from tracker.server import Server
from tracker.worker import Worker


@pytest.fixture(scope="module")
def server(secured_server: Server) -> Server:
    return secured_server


@pytest.fixture(autouse=True)
def no_credentials_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from the developer's shell: each test says what the client sends."""
    monkeypatch.delenv(credentials.ENV_TOKEN, raising=False)
    monkeypatch.delenv(credentials.ENV_ID_TOKEN_AUDIENCE, raising=False)


@pytest.fixture
def name() -> str:
    return f"operations/cred-{uuid.uuid4().hex[:12]}"


def reason(exc: pytest.ExceptionInfo[errors.TrackerError]) -> str:
    return exc.value.error_reason


# ---- the SDK ---------------------------------------------------------------------------


def test_without_credentials_every_call_is_unauthenticated(server: Server, name: str) -> None:
    with TrackerClient(server.http_url) as client:
        with pytest.raises(errors.Unauthenticated) as publishing:
            client.created(name)
        with pytest.raises(errors.Unauthenticated) as reading:
            client.get(name)
        with pytest.raises(errors.Unauthenticated):
            list(client.watch(name, timeout=5))
    assert reason(publishing) == reason(reading) == "CREDENTIALS_MISSING"
    assert "events.publish needs credentials" in publishing.value.message


def test_a_static_token_publishes_reads_waits_cancels_and_deletes(
    server: Server, name: str
) -> None:
    other = name + "-other"
    with TrackerClient(server.http_url, token=TOKEN) as client:
        assert client.created(name, operation_type="export").applied
        client.checkpoint(name, b"offset=7")
        client.progress(name, 60, "copying")
        client.succeeded(name, {"rows": 1})
        assert client.wait(name, timeout=10).done
        assert [op.done for op in client.watch(name, timeout=10)] == [True]
        assert [op.name for op in client.list(f'name = "{name}"')] == [name]
        assert client.get_checkpoint(name) == b"offset=7"
        client.created(other)
        client.cancel(other)
        assert client.get(other).error.code == code_pb2.CANCELLED
        client.delete(other)
        with pytest.raises(errors.NotFound):
            client.get(other)


def test_a_token_without_the_permission_is_denied(server: Server, name: str) -> None:
    with TrackerClient(server.http_url, token=TOKEN) as writer:
        writer.created(name)
    with TrackerClient(server.http_url, token=READER_TOKEN) as reader:
        assert reader.get(name).name == name
        with pytest.raises(errors.PermissionDenied) as cancelling:
            reader.cancel(name)
        with pytest.raises(errors.PermissionDenied) as publishing:
            reader.progress(name, 5)
    assert reason(cancelling) == "PERMISSION_MISSING"
    assert cancelling.value.metadata["permission"] == "operations.write"
    assert "token:reader lacks operations.write" in cancelling.value.message
    assert publishing.value.metadata["permission"] == "events.publish"


def test_an_unknown_token_is_unauthenticated(server: Server, name: str) -> None:
    with (
        TrackerClient(server.http_url, token="not-" + TOKEN) as client,
        pytest.raises(errors.Unauthenticated) as exc,
    ):
        client.get(name)
    assert reason(exc) == "INVALID_TOKEN"


def test_the_token_comes_from_the_environment_unless_one_is_given(
    server: Server, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKER_TOKEN", TOKEN)
    with TrackerClient(server.http_url) as client:
        assert client.created(name).applied
    with TrackerClient(server.http_url, token=READER_TOKEN) as client:  # the argument wins
        assert client.get(name).name == name
        with pytest.raises(errors.PermissionDenied):
            client.cancel(name)


def test_an_id_token_minted_elsewhere_goes_as_a_bearer_token(server: Server, name: str) -> None:
    with TrackerClient(server.http_url, token=id_token()) as client:
        assert client.created(name).applied
        assert client.get(name).name == name
        with pytest.raises(errors.PermissionDenied) as exc:
            client.cancel(name)  # the service account may publish and read, not cancel
    assert f"serviceAccount:{ACCOUNT} lacks operations.write" in exc.value.message
    with (
        TrackerClient(server.http_url, token=id_token(audience="https://else")) as client,
        pytest.raises(errors.Unauthenticated),
    ):
        client.get(name)


def test_the_async_client_sends_the_same_credentials(server: Server, name: str) -> None:
    async def run() -> tuple[list[str], bool, list[bool], list[str]]:
        async with AsyncTrackerClient(server.http_url) as anonymous:
            try:
                await anonymous.get(name)
            except errors.Unauthenticated as exc:
                refused = [exc.error_reason]
        async with AsyncTrackerClient(server.http_url, token=TOKEN) as client:
            await client.created(name)
            await client.progress(name, 40)
            await client.succeeded(name)
            done = (await client.wait(name, timeout=10)).done
            watched = [op.done async for op in client.watch(name, timeout=10)]
            listed = [op.name async for op in client.list(f'name = "{name}"')]
            await client.delete(name)
        return refused, done, watched, listed

    assert asyncio.run(run()) == (["CREDENTIALS_MISSING"], True, [True], [name])


def test_credentials_that_cannot_be_sent_are_refused_before_any_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(errors.ConfigError, match="not two"):
        TrackerClient(token=TOKEN, id_token_audience=AUDIENCE)
    secret = "my secret"
    with pytest.raises(errors.ConfigError, match="printable ASCII") as bad:
        TrackerClient(token=secret)
    assert secret not in str(bad.value)
    assert TOKEN not in repr(credentials.BearerToken(TOKEN))
    monkeypatch.setenv("TRACKER_TOKEN", TOKEN)
    monkeypatch.setenv("TRACKER_ID_TOKEN_AUDIENCE", AUDIENCE)
    with pytest.raises(errors.ConfigError, match="both set"):
        TrackerClient()
    # An explicit choice settles it.
    assert isinstance(credentials.resolve(token=TOKEN), credentials.BearerToken)


# ---- the worker ------------------------------------------------------------------------


def test_a_worker_over_http_sends_its_token(server: Server, name: str) -> None:
    with (
        Worker.http(server.http_url, token=TOKEN) as worker,
        worker.operation(name, operation_type="export") as op,
    ):
        op.progress(50, "half")
        op.checkpoint(b"c1")
        assert op.last_checkpoint() == b"c1"
    with TrackerClient(server.http_url, token=TOKEN) as client:
        operation = client.get(name)
    assert operation.done and not operation.HasField("error")
    meta = metadata(operation)
    assert meta is not None and meta.operation_type == "export"


def test_a_worker_without_credentials_stops_at_created(server: Server, name: str) -> None:
    ran = False
    with (
        Worker.http(server.http_url) as worker,
        pytest.raises(errors.Unauthenticated),
        worker.operation(name),
    ):
        ran = True
    assert not ran


def test_a_pubsub_worker_reads_back_with_its_token(
    server: Server, name: str, pubsub_env: str
) -> None:
    with TrackerClient(server.http_url, token=TOKEN) as client:
        client.created(name)
    topic = "projects/tracker-test/topics/unused"
    with Worker.pubsub(topic, tracker_url=server.http_url, token=TOKEN) as worker:
        assert worker.reader().get(name).name == name
    with (
        Worker.pubsub(topic, tracker_url=server.http_url) as anonymous,
        pytest.raises(errors.Unauthenticated),
    ):
        anonymous.reader().get(name)


# ---- Google's Operations clients -------------------------------------------------------


def test_operations_client_with_per_call_metadata(server: Server, name: str) -> None:
    with TrackerClient(server.http_url, token=TOKEN) as sdk:
        sdk.created(name)
    bearer = [("authorization", f"Bearer {TOKEN}")]
    reader = [("authorization", f"Bearer {READER_TOKEN}")]
    with grpc.insecure_channel(server.grpc_target) as channel:
        client = gapic_operations.OperationsClient(channel)
        assert client.get_operation(name, metadata=bearer).name == name
        listed = client.list_operations("operations", f'name = "{name}"', metadata=bearer)
        assert [op.name for op in listed] == [name]
        with pytest.raises(exceptions.Unauthenticated, match="needs credentials"):
            client.get_operation(name)
        with pytest.raises(exceptions.PermissionDenied, match=r"lacks operations\.write"):
            client.cancel_operation(name, metadata=reader)
        client.cancel_operation(name, metadata=bearer)
        assert client.get_operation(name, metadata=reader).error.code == code_pb2.CANCELLED


def test_operations_client_over_a_channel_with_call_credentials(server: Server, name: str) -> None:
    with TrackerClient(server.http_url, token=TOKEN) as sdk:
        sdk.created(name)
    channel_credentials = grpc.composite_channel_credentials(
        grpc.local_channel_credentials(), grpc.access_token_call_credentials(TOKEN)
    )
    with grpc.secure_channel(server.grpc_target, channel_credentials) as channel:
        client = gapic_operations.OperationsClient(channel)
        assert client.get_operation(name).name == name
        client.cancel_operation(name)
        client.delete_operation(name)
        with pytest.raises(exceptions.NotFound):
            client.get_operation(name)


def test_rest_operations_client_with_a_bearer_token(server: Server, name: str) -> None:
    with TrackerClient(server.http_url, token=TOKEN) as sdk:
        sdk.created(name)
    client = rest_client(server.http_url, OAuthCredentials(TOKEN))
    assert client.get_operation(name).name == name
    assert [op.name for op in client.list_operations("operations", f'name = "{name}"')] == [name]
    client.cancel_operation(name)
    client.delete_operation(name)
    with pytest.raises(exceptions.NotFound):
        client.get_operation(name)
    # A refused token: google-auth's session answers a 401 by refreshing the credentials,
    # which a bare token cannot do.
    with pytest.raises(RefreshError):
        rest_client(server.http_url, OAuthCredentials("not-" + TOKEN)).get_operation(name)


# ---- ID tokens from Application Default Credentials -------------------------------------


@pytest.fixture
def metadata_server() -> Iterator[MetadataServer]:
    m = MetadataServer()
    yield m
    m.close()


def client_process(
    mode: str, server: Server, name: str, metadata: MetadataServer, **env: str
) -> dict[str, object]:
    """Run tests/id_token_client.py with google-auth pointed at `metadata` only."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.id_token_client",
            mode,
            server.http_url,
            AUDIENCE,
            name,
            metadata.host,
        ],
        cwd=ROOT,
        env={**metadata.env(base), **env},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_sdk_mints_one_id_token_and_reuses_it(
    server: Server, name: str, metadata_server: MetadataServer, mode: str
) -> None:
    seen = client_process(mode, server, name, metadata_server)

    assert seen == {"outcomes": ["applied", "applied"], "percent": 50.0, "listed": [name]}
    # Four requests, one token: the credentials are cached while the token is valid.
    assert metadata_server.identities == [AUDIENCE]


def test_the_sdk_mints_again_when_the_token_is_about_to_expire(server: Server, name: str) -> None:
    # google-auth treats a token as expired 3 min 45 s before its exp; a 2-minute token
    # is never fresh, so each of the four requests mints a new one.
    short_lived = MetadataServer(lifetime=120)
    try:
        seen = client_process("sync", server, name, short_lived)
    finally:
        short_lived.close()
    assert seen["outcomes"] == ["applied", "applied"]
    assert short_lived.identities == [AUDIENCE] * 4


def test_async_minting_leaves_the_event_loop_free(
    server: Server, name: str, metadata_server: MetadataServer
) -> None:
    """The mint waits until the event loop itself releases it; a mint on the loop thread
    would hold the loop, the release would come only after the server gave up."""
    metadata_server.hold = True

    seen = client_process("async-hold", server, name, metadata_server, GCE_METADATA_TIMEOUT="30")

    assert seen == {"outcomes": ["applied"]}
    assert metadata_server.held == [True]
