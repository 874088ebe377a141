"""Every error answer looks like a Google API error, over HTTP and gRPC alike (AIP-193)."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2

from tests.helpers import google_error
from tracker.api import status
from tracker.server import Server


def agrees(http_status: int, name: str) -> bool:
    """The HTTP status and the status name are the pair code.proto (or HTTP_ONLY) gives."""
    code = code_pb2.Code.Value(name)
    return status.HTTP_ONLY.get(http_status) == code or status.HTTP_STATUS[code] == http_status


@pytest.mark.parametrize(
    ("method", "path", "http_status", "reason"),
    [
        ("GET", "/", 404, "NOT_FOUND"),
        ("GET", "/v2/operations", 404, "NOT_FOUND"),
        ("POST", "/nope/" + "x" * 5000, 404, "NOT_FOUND"),
        ("GET", "/v1/events", 405, "METHOD_NOT_ALLOWED"),
        ("DELETE", "/v1/pubsub/push", 405, "METHOD_NOT_ALLOWED"),
        ("POST", "/healthz", 405, "METHOD_NOT_ALLOWED"),
        ("PUT", "/metrics", 405, "METHOD_NOT_ALLOWED"),
        ("PATCH", "/v1/operations", 405, "METHOD_NOT_ALLOWED"),
        ("GET", "/v1/operations/missing", 404, "NOT_FOUND"),
        ("POST", "/v1/events", 415, "BAD_CONTENT_TYPE"),
    ],
)
def test_http_errors_are_google_json_with_error_info(
    http: httpx.Client, method: str, path: str, http_status: int, reason: str
) -> None:
    response = http.request(method, path)
    assert response.status_code == http_status, response.text
    assert response.headers["content-type"].startswith("application/json")
    name, info_reason, _ = google_error(response)
    assert info_reason == reason
    assert agrees(http_status, name), (http_status, name)
    # Messages never echo unbounded input.
    assert len(response.json()["error"]["message"]) < 400
    if http_status == 405:
        assert response.headers["allow"]


def test_too_large_event_is_413_resource_exhausted(http: httpx.Client) -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "big",
        "ce-source": "t",
        "ce-type": "tracker.operation.v1.progress",
        "ce-subject": "operations/big",
        "content-type": "application/json",
    }
    response = http.post("/v1/events", headers=headers, content=b" " * (17 * 1024 * 1024))
    assert response.status_code == 413
    assert google_error(response)[:2] == ("RESOURCE_EXHAUSTED", "TOO_LARGE")


def test_event_rejection_names_the_event_in_error_info(http: httpx.Client) -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "e-77",
        "ce-source": "t",
        "ce-type": "tracker.operation.v1.progress",
        "ce-subject": "operations/x",
        "content-type": "application/json",
    }
    response = http.post("/v1/events", headers=headers, content=b'{"percent": 101}')
    assert response.status_code == 400
    name, reason, metadata = google_error(response)
    assert (name, reason, metadata) == ("INVALID_ARGUMENT", "INVALID_DATA", {"eventId": "e-77"})


def test_long_names_are_not_echoed_whole(http: httpx.Client) -> None:
    for name, status_code in (("n" * 1000, 404), ("n" * 20000, 400)):  # 400: over 1024 bytes
        response = http.get("/v1/operations/" + name)
        assert response.status_code == status_code
        assert len(response.json()["error"]["message"]) < 400


def test_grpc_errors_carry_the_status_with_error_info(server: Server) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = operations_pb2_grpc.OperationsStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.GetOperation(
                operations_pb2.GetOperationRequest(name="operations/nope"), timeout=10
            )
    error = info.value
    assert error.code() == grpc.StatusCode.NOT_FOUND
    trailers: dict[str, Any] = dict(error.trailing_metadata())  # type: ignore[arg-type]
    rpc = status_pb2.Status.FromString(trailers[status.DETAILS_KEY])
    assert rpc.code == code_pb2.NOT_FOUND and "operations/nope" in rpc.message
    detail = error_details_pb2.ErrorInfo()
    assert rpc.details[0].Unpack(detail)
    assert (detail.reason, detail.domain) == ("NOT_FOUND", "tracker")


def test_google_api_core_reads_the_error_info(server: Server) -> None:
    from google.api_core import exceptions, operations_v1

    client = operations_v1.OperationsClient(grpc.insecure_channel(server.grpc_target))
    with pytest.raises(exceptions.InvalidArgument) as info:
        list(client.list_operations("operations", "colour = red"))
    assert info.value.reason == "INVALID_ARGUMENT"
    assert info.value.domain == "tracker"


def test_caller_text_without_a_utf8_form_is_escaped_in_messages(http: httpx.Client) -> None:
    """Found by tests/integration/test_fuzz.py: a structured event with the attribute name "\\ud800"
    (a JSON escape) was quoted into the message, and encoding the answer failed (a 500)."""
    from tracker.errors import InvalidEvent, clip

    assert clip("a\ud800b") == "a\\ud800b"
    error = InvalidEvent("invalid_attributes", "attribute \udfff", event_id="\ud800")
    assert error.message.encode() and error.event_id == "\\ud800"
    body = (
        b'{"specversion": "1.0", "id": "1", "source": "s", "subject": "operations/x",'
        b' "type": "tracker.operation.v1.heartbeat", "\\ud800": true}'
    )
    response = http.post(
        "/v1/events", content=body, headers={"content-type": "application/cloudevents+json"}
    )
    assert response.status_code == 400
    assert google_error(response)[1] == "INVALID_ATTRIBUTES"
    assert "\\ud800" in response.json()["error"]["message"]
