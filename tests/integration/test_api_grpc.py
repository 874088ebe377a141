"""The gRPC Operations service, driven by Google's own clients against a real server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.api_core import exceptions, operation, operations_v1
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import duration_pb2, struct_pb2
from google.rpc import code_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.faulty_serve import EXPLODE, SECRET, FaultyStore
from tests.helpers import ingest, make_event, running_op, succeed
from tracker import service
from tracker.config import Config
from tracker.events import Kind
from tracker.server import Server, running
from tracker.v1 import operation_pb2


@pytest.fixture(scope="module")
def channel(server: Server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_target) as ch:
        yield ch


@pytest.fixture(scope="module")
def client(channel: grpc.Channel) -> operations_v1.OperationsClient:
    return operations_v1.OperationsClient(channel)


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> operations_pb2_grpc.OperationsStub:
    """The raw stub, for what OperationsClient does not expose (page_size, WaitOperation)."""
    return operations_pb2_grpc.OperationsStub(channel)


@pytest.fixture
def prefix() -> str:
    """A fresh name prefix, so tests sharing the module's server do not see each other."""
    return f"operations/t{uuid.uuid4().hex[:12]}"


def struct(**fields: Any) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(fields)
    return s


def fail(server: Server, name: str, code: int, message: str = "it broke") -> None:
    error = status_pb2.Status(code=code, message=message)
    ingest(server, [make_event(Kind.FAILED, name, data={"error": error})])


def names(ops: object) -> list[str]:
    return [op.name for op in ops]  # type: ignore[attr-defined]


def wait(
    stub: operations_pb2_grpc.OperationsStub,
    name: str,
    timeout: float | None,
    *,
    deadline: float | None = 60.0,
) -> operations_pb2.Operation:
    request = operations_pb2.WaitOperationRequest(name=name)
    if timeout is not None:
        duration = duration_pb2.Duration()
        duration.FromNanoseconds(int(timeout * 1e9))
        request = operations_pb2.WaitOperationRequest(name=name, timeout=duration)
    result: operations_pb2.Operation = stub.WaitOperation(request, timeout=deadline)
    return result


# ---- get, list -------------------------------------------------------------------------


def test_list_pages_with_the_default_page_size(
    server: Server, client: operations_v1.OperationsClient, prefix: str
) -> None:
    count = 2 * service.DEFAULT_PAGE_SIZE + 3
    expected = sorted(f"{prefix}/{i:04d}" for i in range(count))
    ingest(server, [make_event(Kind.CREATED, n) for n in expected])

    pages = list(client.list_operations("operations", f'name = "{prefix}/*"').pages)

    assert [len(list(p)) for p in pages] == [service.DEFAULT_PAGE_SIZE] * 2 + [3]
    assert names(client.list_operations("operations", f'name = "{prefix}/*"')) == expected


def test_list_pages_with_page_size(
    server: Server, stub: operations_pb2_grpc.OperationsStub, prefix: str
) -> None:
    expected = sorted(f"{prefix}/{i}" for i in range(10))
    ingest(server, [make_event(Kind.CREATED, n) for n in expected])
    request = operations_pb2.ListOperationsRequest(
        name="operations", filter=f'name = "{prefix}/*"', page_size=4
    )
    seen: list[list[str]] = []
    while True:
        response = stub.ListOperations(request, timeout=30)
        seen.append(names(response.operations))
        if not response.next_page_token:
            break
        request.page_token = response.next_page_token

    assert [len(page) for page in seen] == [4, 4, 2]
    assert [n for page in seen for n in page] == expected


# ---- cancel, delete --------------------------------------------------------------------


# ---- wait ------------------------------------------------------------------------------


def test_wait_without_timeout_answers_before_the_grpc_deadline(
    server: Server, stub: operations_pb2_grpc.OperationsStub, prefix: str
) -> None:
    name = f"{prefix}/job"
    running_op(server, name)

    # No request timeout (the server's max is minutes) but a 2 s deadline: the caller
    # gets the current state, not DEADLINE_EXCEEDED.
    op = wait(stub, name, timeout=None, deadline=2.0)

    assert op.name == name and not op.done


def test_wait_with_zero_timeout_is_a_get(
    server: Server, stub: operations_pb2_grpc.OperationsStub, prefix: str
) -> None:
    name = f"{prefix}/job"
    running_op(server, name)

    op = wait(stub, name, timeout=0.0, deadline=5.0)

    assert op.name == name and not op.done


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (operations_pb2.WaitOperationRequest(name="operations/nope-x"), grpc.StatusCode.NOT_FOUND),
        (
            operations_pb2.WaitOperationRequest(
                name="operations/x", timeout=duration_pb2.Duration(seconds=-1)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (operations_pb2.WaitOperationRequest(name=""), grpc.StatusCode.INVALID_ARGUMENT),
        (  # beyond Duration's range (and timedelta's): cut to the server's max, no overflow
            operations_pb2.WaitOperationRequest(
                name="operations/nope-y", timeout=duration_pb2.Duration(seconds=2**62)
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
    ],
    ids=["unknown", "negative-timeout", "no-name", "huge-timeout"],
)
def test_wait_errors(
    stub: operations_pb2_grpc.OperationsStub,
    request_: operations_pb2.WaitOperationRequest,
    code: grpc.StatusCode,
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.WaitOperation(request_, timeout=10)
    assert info.value.code() == code
    assert info.value.details()


# ---- operation futures (google.api_core.operation.from_gapic) ---------------------------


def future(client: operations_v1.OperationsClient, name: str) -> operation.Operation:
    return operation.from_gapic(
        client.get_operation(name),
        client,
        struct_pb2.Struct,
        metadata_type=operation_pb2.OperationMetadata,
    )


def test_future_of_a_succeeded_operation_unpacks_the_response(
    server: Server, client: operations_v1.OperationsClient, prefix: str
) -> None:
    name = f"{prefix}/job"
    running_op(server, name)
    succeed(server, name, rows=12, table="t")

    result = future(client, name).result(timeout=30)

    assert isinstance(result, struct_pb2.Struct)
    assert dict(result) == {"rows": 12, "table": "t"}


def test_future_polls_until_the_operation_completes(
    server: Server, client: operations_v1.OperationsClient, prefix: str
) -> None:
    name = f"{prefix}/job"
    running_op(server, name)
    fut = future(client, name)
    assert not fut.done()  # polled once: running
    succeed(server, name, rows=1)

    result = fut.result(timeout=30)  # polls again until done

    assert dict(result) == {"rows": 1}


def test_future_metadata_unpacks_tracker_metadata(
    server: Server, client: operations_v1.OperationsClient, prefix: str
) -> None:
    name = f"{prefix}/job"
    running_op(server, name, percent=37.5)

    fut = future(client, name)

    assert not fut.done()
    assert isinstance(fut.metadata, operation_pb2.OperationMetadata)
    assert fut.metadata.percent == 37.5
    assert fut.metadata.operation_type == "export"


@pytest.mark.parametrize(
    ("code", "exception"),
    [
        (code_pb2.NOT_FOUND, exceptions.NotFound),
        (code_pb2.INVALID_ARGUMENT, exceptions.InvalidArgument),
        (code_pb2.FAILED_PRECONDITION, exceptions.FailedPrecondition),
        (code_pb2.PERMISSION_DENIED, exceptions.PermissionDenied),
        (code_pb2.RESOURCE_EXHAUSTED, exceptions.ResourceExhausted),
        (code_pb2.INTERNAL, exceptions.InternalServerError),
    ],
)
def test_future_of_a_failed_operation_raises_the_matching_exception(
    server: Server,
    client: operations_v1.OperationsClient,
    prefix: str,
    code: int,
    exception: type[exceptions.GoogleAPICallError],
) -> None:
    name = f"{prefix}/job"
    running_op(server, name)
    fail(server, name, code, "the table is gone")

    with pytest.raises(exception) as info:
        future(client, name).result(timeout=30)

    assert type(info.value) is exception
    assert "the table is gone" in str(info.value)


def test_future_cancel(server: Server, client: operations_v1.OperationsClient, prefix: str) -> None:
    name = f"{prefix}/job"
    running_op(server, name)
    fut = future(client, name)

    assert fut.cancel() is True
    assert fut.cancelled()
    assert fut.done()
    assert fut.cancel() is False  # already done
    with pytest.raises(exceptions.Cancelled):
        fut.result(timeout=30)


# ---- errors ----------------------------------------------------------------------------


def test_calls_without_a_name_are_invalid(client: operations_v1.OperationsClient) -> None:
    for call in (client.get_operation, client.delete_operation, client.cancel_operation):
        with pytest.raises(exceptions.InvalidArgument, match="name is required"):
            call("")


def test_page_token_of_another_filter_is_invalid_argument(
    server: Server, stub: operations_pb2_grpc.OperationsStub, prefix: str
) -> None:
    ingest(server, [make_event(Kind.CREATED, f"{prefix}/{i}") for i in range(3)])
    first = stub.ListOperations(
        operations_pb2.ListOperationsRequest(
            name="operations", filter=f'name = "{prefix}/*"', page_size=1
        ),
        timeout=10,
    )
    assert first.next_page_token
    request = operations_pb2.ListOperationsRequest(
        name="operations", filter="done = true", page_token=first.next_page_token
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.ListOperations(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_negative_page_size_and_foreign_collection_are_invalid(
    stub: operations_pb2_grpc.OperationsStub,
) -> None:
    for request in (
        operations_pb2.ListOperationsRequest(name="operations", page_size=-1),
        operations_pb2.ListOperationsRequest(name="folders/f/operations"),
    ):
        with pytest.raises(grpc.RpcError) as info:
            stub.ListOperations(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


METHODS = ["GetOperation", "ListOperations", "DeleteOperation", "CancelOperation", "WaitOperation"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "raw",
    [b"\xff\xff\xff", b"\x0a\x05ab", b"\x0a\x02\xff\xfe"],  # corrupt; cut short; not UTF-8
    ids=["corrupt", "truncated", "invalid-utf8"],
)
def test_a_request_that_does_not_parse_is_invalid_argument(
    channel: grpc.Channel, method: str, raw: bytes
) -> None:
    """Was UNKNOWN ("Exception deserializing request") from grpc's own deserializer."""
    call: Any = channel.unary_unary(f"/google.longrunning.Operations/{method}")
    with pytest.raises(grpc.RpcError) as info:
        call(raw, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "google.longrunning." in str(info.value.details())
    # The answer carries the google.rpc.Status with its ErrorInfo, like every other error.
    trailers: dict[str, Any] = dict(info.value.trailing_metadata())  # type: ignore[arg-type]
    detail = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert detail.code == code_pb2.INVALID_ARGUMENT


def test_a_name_longer_than_any_stored_is_invalid_argument(
    client: operations_v1.OperationsClient,
) -> None:
    name = "operations/" + "a" * 1100
    for call in (client.get_operation, client.delete_operation, client.cancel_operation):
        with pytest.raises(exceptions.InvalidArgument, match="longer than 1024 bytes"):
            call(name, retry=None)


def test_unexpected_error_is_internal_without_details(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FaultyStore(str(tmp_path / "f.db"))
    config = Config(db=str(tmp_path / "f.db"), http_port=0, grpc_port=0)
    with running(config, store=store) as server, grpc.insecure_channel(server.grpc_target) as ch:
        client = operations_v1.OperationsClient(ch)
        with pytest.raises(exceptions.InternalServerError) as info:
            client.get_operation(f"operations/{EXPLODE}", retry=None)

    assert "internal error" in str(info.value)
    assert "secret" not in str(info.value)
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info and r.exc_info[1]]
    assert any(str(exc) == SECRET for exc in logged)


# ---- health and reflection -------------------------------------------------------------


@pytest.mark.parametrize("service_name", ["", "google.longrunning.Operations"])
def test_health_is_serving(channel: grpc.Channel, service_name: str) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    response = health.Check(health_pb2.HealthCheckRequest(service=service_name), timeout=10)  # type: ignore[attr-defined]  # stubs lack the method
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_operations_service(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(  # type: ignore[operator]  # stubs: Incomplete
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    services = {s.name for r in responses for s in r.list_services_response.service}
    assert "google.longrunning.Operations" in services
    assert "grpc.health.v1.Health" in services
