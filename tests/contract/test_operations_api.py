"""The Operations API contract, proved once for every way a client reaches it.

Each behaviour runs through Google's gRPC `OperationsClient`, Google's REST operations
client over HTTP/JSON, and the project's SDK (sync and async), against one real server.
Google's REST client has no WaitOperation: the wait behaviours run on the other three.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import grpc
import pytest
from google.api_core import exceptions, operations_v1
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, status_pb2

from tests.helpers import ingest, make_event, rest_client, running_op, succeed
from tracker import AsyncTrackerClient, TrackerClient, errors
from tracker.config import Config
from tracker.events import Kind
from tracker.server import Server, running
from tracker.wire import metadata


class NotFoundError(Exception):
    """What each client raises for NOT_FOUND, in one name for the contract."""


class InvalidError(Exception):
    """... and for INVALID_ARGUMENT."""


class Api(Protocol):
    name: str
    waits: bool

    def get(self, name: str) -> operations_pb2.Operation: ...
    def page(
        self, filter: str, page_size: int, token: str
    ) -> tuple[list[operations_pb2.Operation], str]: ...
    def cancel(self, name: str) -> None: ...
    def delete(self, name: str) -> None: ...
    def wait(self, name: str, timeout: float) -> operations_pb2.Operation: ...
    def close(self) -> None: ...


def _mapped(call: Callable[[], Any]) -> Any:
    """Run `call`, turning each client's NOT_FOUND / INVALID_ARGUMENT into ours."""
    try:
        return call()
    except (exceptions.NotFound, errors.NotFound) as exc:
        raise NotFoundError(str(exc)) from exc
    except (exceptions.BadRequest, errors.InvalidArgument) as exc:  # REST: 400 is BadRequest
        raise InvalidError(str(exc)) from exc
    except grpc.RpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.NOT_FOUND:
            raise NotFoundError(exc.details()) from exc
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            raise InvalidError(exc.details()) from exc
        raise


class GrpcApi:
    name, waits = "grpc", True

    def __init__(self, server: Server) -> None:
        self.channel = grpc.insecure_channel(server.grpc_target)
        self.client = operations_v1.OperationsClient(self.channel)
        self.stub = operations_pb2_grpc.OperationsStub(self.channel)

    def get(self, name: str) -> operations_pb2.Operation:
        return _mapped(lambda: self.client.get_operation(name, retry=None))

    def page(
        self, filter: str, page_size: int, token: str
    ) -> tuple[list[operations_pb2.Operation], str]:
        request = operations_pb2.ListOperationsRequest(
            name="operations", filter=filter, page_size=page_size, page_token=token
        )
        answer = _mapped(lambda: self.stub.ListOperations(request, timeout=10))
        return list(answer.operations), answer.next_page_token

    def cancel(self, name: str) -> None:
        _mapped(lambda: self.client.cancel_operation(name, retry=None))

    def delete(self, name: str) -> None:
        _mapped(lambda: self.client.delete_operation(name, retry=None))

    def wait(self, name: str, timeout: float) -> operations_pb2.Operation:
        duration = duration_pb2.Duration()
        duration.FromNanoseconds(int(timeout * 1e9))
        request = operations_pb2.WaitOperationRequest(name=name, timeout=duration)
        return _mapped(lambda: self.stub.WaitOperation(request, timeout=timeout + 30))

    def close(self) -> None:
        self.channel.close()


class RestApi:
    name, waits = "rest", False

    def __init__(self, server: Server) -> None:
        self.client = rest_client(server.http_url)

    def get(self, name: str) -> operations_pb2.Operation:
        return _mapped(lambda: self.client.get_operation(name, retry=None))

    def page(
        self, filter: str, page_size: int, token: str
    ) -> tuple[list[operations_pb2.Operation], str]:
        pager = _mapped(
            lambda: self.client.list_operations(
                "operations", filter, page_size=page_size, page_token=token, retry=None
            )
        )
        first = next(iter(pager.pages))
        return list(first.operations), first.next_page_token

    def cancel(self, name: str) -> None:
        _mapped(lambda: self.client.cancel_operation(name, retry=None))

    def delete(self, name: str) -> None:
        _mapped(lambda: self.client.delete_operation(name, retry=None))

    def wait(self, name: str, timeout: float) -> operations_pb2.Operation:
        raise AssertionError("Google's REST operations client has no WaitOperation")

    def close(self) -> None:
        pass


class SdkApi:
    name, waits = "sdk", True

    def __init__(self, server: Server) -> None:
        self.client = TrackerClient(server.http_url)

    def get(self, name: str) -> operations_pb2.Operation:
        return _mapped(lambda: self.client.get(name))

    def page(
        self, filter: str, page_size: int, token: str
    ) -> tuple[list[operations_pb2.Operation], str]:
        return _mapped(lambda: self.client.list_page(filter, page_size, token))

    def cancel(self, name: str) -> None:
        _mapped(lambda: self.client.cancel(name))

    def delete(self, name: str) -> None:
        _mapped(lambda: self.client.delete(name))

    def wait(self, name: str, timeout: float) -> operations_pb2.Operation:
        return _mapped(lambda: self.client.wait(name, timeout))

    def close(self) -> None:
        self.client.close()


class AsyncSdkApi:
    """The asyncio client, on a loop of its own in a thread."""

    name, waits = "sdk-async", True

    def __init__(self, server: Server) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client = self._run(self._make(server.http_url))

    @staticmethod
    async def _make(url: str) -> AsyncTrackerClient:
        return AsyncTrackerClient(url)

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def get(self, name: str) -> operations_pb2.Operation:
        return _mapped(lambda: self._run(self.client.get(name)))

    def page(
        self, filter: str, page_size: int, token: str
    ) -> tuple[list[operations_pb2.Operation], str]:
        return _mapped(lambda: self._run(self.client.list_page(filter, page_size, token)))

    def cancel(self, name: str) -> None:
        _mapped(lambda: self._run(self.client.cancel(name)))

    def delete(self, name: str) -> None:
        _mapped(lambda: self._run(self.client.delete(name)))

    def wait(self, name: str, timeout: float) -> operations_pb2.Operation:
        return _mapped(lambda: self._run(self.client.wait(name, timeout)))

    def close(self) -> None:
        self._run(self.client.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


KINDS: dict[str, Callable[[Server], Api]] = {
    "grpc": GrpcApi,
    "rest": RestApi,
    "sdk": SdkApi,
    "sdk-async": AsyncSdkApi,
}
WAITING = [name for name in KINDS if name != "rest"]  # REST has no WaitOperation


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running(Config(db=":memory:", http_port=0, grpc_port=0)) as s:
        yield s


@pytest.fixture(scope="module", params=list(KINDS))
def api(request: pytest.FixtureRequest, server: Server) -> Iterator[Api]:
    client = KINDS[request.param](server)
    yield client
    client.close()


@pytest.fixture(scope="module", params=WAITING)
def waiting_api(request: pytest.FixtureRequest, server: Server) -> Iterator[Api]:
    client = KINDS[request.param](server)
    yield client
    client.close()


@pytest.fixture
def prefix() -> str:
    return f"operations/c{uuid.uuid4().hex[:12]}"


# ---- get ---------------------------------------------------------------------------------


def test_get_serves_the_operation_with_tracker_metadata(
    server: Server, api: Api, prefix: str
) -> None:
    name = f"{prefix}/job"
    running_op(server, name, percent=42.0, env="dev")
    operation = api.get(name)
    meta = metadata(operation)
    assert operation.name == name and not operation.done
    assert meta is not None and meta.percent == 42.0 and dict(meta.labels) == {"env": "dev"}
    assert meta.operation_type == "export"


def test_get_of_a_done_operation_has_its_response_or_error(
    server: Server, api: Api, prefix: str
) -> None:
    ok, bad = f"{prefix}/ok", f"{prefix}/bad"
    succeed(server, ok, rows=3)
    error = status_pb2.Status(code=code_pb2.NOT_FOUND, message="no table")
    ingest(server, [make_event(Kind.FAILED, bad, data={"error": error})])
    assert api.get(ok).done and api.get(ok).response.type_url.endswith("Struct")
    failed = api.get(bad)
    assert failed.done and (failed.error.code, failed.error.message) == (5, "no table")


def test_get_of_an_unknown_operation_is_not_found(api: Api, prefix: str) -> None:
    with pytest.raises(NotFoundError, match="not found"):
        api.get(f"{prefix}/missing")


# ---- list --------------------------------------------------------------------------------


def test_list_filters_by_done_name_prefix_and_label(server: Server, api: Api, prefix: str) -> None:
    running_op(server, f"{prefix}/a", team="x")
    running_op(server, f"{prefix}/b", team="y")
    succeed(server, f"{prefix}/c")
    assert _names(api, f'name = "{prefix}/*" AND done = false') == [f"{prefix}/a", f"{prefix}/b"]
    assert _names(api, f'name = "{prefix}/*" AND labels.team = "y"') == [f"{prefix}/b"]
    assert _names(api, f'name = "{prefix}/*" AND done = true') == [f"{prefix}/c"]


def test_list_pages_through_everything_once(server: Server, api: Api, prefix: str) -> None:
    expected = [f"{prefix}/{i:02d}" for i in range(7)]
    for name in expected:
        running_op(server, name)
    seen: list[str] = []
    token = ""
    while True:
        operations, token = api.page(f'name = "{prefix}/*"', 3, token)
        assert len(operations) <= 3
        seen += [op.name for op in operations]
        if not token:
            break
    assert seen == expected


@pytest.mark.parametrize(
    "bad",
    ["colour = red", "done = maybe", "(done = true", 'name = "a*b"', "NOT " * 500 + "done = true"],
)
def test_a_bad_filter_is_invalid_argument(api: Api, bad: str) -> None:
    with pytest.raises(InvalidError, match="filter"):
        api.page(bad, 0, "")


@pytest.mark.parametrize("token", ["not-a-token", "eyJhIjogMX0"])  # garbage; JSON, no fields
def test_a_foreign_page_token_is_invalid_argument(api: Api, token: str) -> None:
    with pytest.raises(InvalidError, match="page_token"):
        api.page("", 0, token)


# ---- cancel, delete ------------------------------------------------------------------------


def test_cancel_ends_the_operation_cancelled_and_keeps_a_done_result(
    server: Server, api: Api, prefix: str
) -> None:
    running, done = f"{prefix}/run", f"{prefix}/done"
    running_op(server, running)
    succeed(server, done)
    api.cancel(running)
    api.cancel(done)
    cancelled = api.get(running)
    assert cancelled.done and cancelled.error.code == code_pb2.CANCELLED
    meta = metadata(cancelled)
    assert meta is not None and meta.cancel_requested
    assert api.get(done).HasField("response")
    with pytest.raises(NotFoundError):
        api.cancel(f"{prefix}/missing")


def test_delete_then_get_is_not_found(server: Server, api: Api, prefix: str) -> None:
    name = f"{prefix}/gone"
    succeed(server, name)
    api.delete(name)
    with pytest.raises(NotFoundError):
        api.get(name)
    with pytest.raises(NotFoundError):
        api.delete(name)


# ---- wait ---------------------------------------------------------------------------------


def test_wait_returns_a_done_operation_at_once(
    server: Server, waiting_api: Api, prefix: str
) -> None:
    name = f"{prefix}/done"
    succeed(server, name)
    assert waiting_api.wait(name, 30).done


def test_wait_returns_the_latest_state_when_the_timeout_passes(
    server: Server, waiting_api: Api, prefix: str
) -> None:
    name = f"{prefix}/slow"
    running_op(server, name, percent=10.0)
    operation = waiting_api.wait(name, 0.2)
    meta = metadata(operation)
    assert not operation.done and meta is not None and meta.percent == 10.0


def test_wait_wakes_when_the_operation_completes(
    server: Server, waiting_api: Api, prefix: str
) -> None:
    name = f"{prefix}/wake"
    running_op(server, name)
    got: list[operations_pb2.Operation] = []
    waiter = threading.Thread(target=lambda: got.append(waiting_api.wait(name, 60)))
    waiter.start()
    deadline = time.monotonic() + 30
    while not server.tracker.hub.watching(name):  # the server holds the wait
        assert time.monotonic() < deadline, "the wait never reached the server"
        time.sleep(0.01)
    succeed(server, name)
    waiter.join(60)
    assert got and got[0].done


def test_wait_for_an_unknown_operation_is_not_found(waiting_api: Api, prefix: str) -> None:
    with pytest.raises(NotFoundError):
        waiting_api.wait(f"{prefix}/missing", 1)


def _names(api: Api, filter: str) -> list[str]:
    operations, _ = api.page(filter, 0, "")
    return [op.name for op in operations]
