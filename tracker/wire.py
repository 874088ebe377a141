"""Operations on the wire as JSON: one module for the server, the SDK and the CLI.

The proto3 JSON mapping with lowerCamelCase names, as Google APIs send it. `metadata`,
`response` and `error.details` are `Any`: a type this process has not imported (or bytes
that do not read as their type) cannot be rendered as JSON, so it is written as
`{"@type": "<type url>", "value": "<base64 of the serialized message>"}` instead of
failing the whole document, and read back the same way into an `Any` that keeps its
bytes. Import the module generated for a producer's type to get its content.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from google.longrunning import operations_proto_pb2 as operations_pb2  # without grpc
from google.protobuf import any_pb2, descriptor_pool, json_format
from google.protobuf.message import DecodeError
from google.rpc import (
    error_details_pb2,  # noqa: F401  (standard Status details by name)
    status_pb2,
)

from tracker.errors import TrackerError
from tracker.v1 import operation_pb2

RAW_KEYS = frozenset({"@type", "value"})


def _raw(value: any_pb2.Any) -> dict[str, Any]:
    return {"@type": value.type_url, "value": base64.b64encode(value.value).decode()}


def any_to_dict(value: any_pb2.Any) -> dict[str, Any]:
    """proto3 JSON of an Any, or its raw form when this process cannot render it."""
    try:
        result: dict[str, Any] = json_format.MessageToDict(value)
    except (TypeError, ValueError, KeyError, json_format.Error, DecodeError, RecursionError):
        return _raw(value)
    return result


def status_to_dict(error: status_pb2.Status) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if error.code:
        out["code"] = error.code
    if error.message:
        out["message"] = error.message
    if error.details:
        out["details"] = [any_to_dict(d) for d in error.details]
    return out


def operation_to_dict(operation: operations_pb2.Operation) -> dict[str, Any]:
    """The proto3 JSON mapping of an Operation, tolerant of unresolvable Any types."""
    out: dict[str, Any] = {}
    if operation.name:
        out["name"] = operation.name
    if operation.HasField("metadata"):
        out["metadata"] = any_to_dict(operation.metadata)
    if operation.done:
        out["done"] = True
    result = operation.WhichOneof("result")
    if result == "error":
        out["error"] = status_to_dict(operation.error)
    elif result == "response":
        out["response"] = any_to_dict(operation.response)
    return out


def page_to_dict(
    operations: Sequence[operations_pb2.Operation], next_page_token: str
) -> dict[str, Any]:
    """ListOperationsResponse as JSON (empty fields omitted, as the mapping says)."""
    out: dict[str, Any] = {}
    if operations:
        out["operations"] = [operation_to_dict(op) for op in operations]
    if next_page_token:
        out["nextPageToken"] = next_page_token
    return out


# ---- reading ---------------------------------------------------------------------------


def _known(type_url: str, pool: descriptor_pool.DescriptorPool) -> bool:
    try:
        pool.FindMessageTypeByName(type_url.rsplit("/", 1)[-1])
    except KeyError:
        return False
    return True


def _opaque(value: Any, pool: descriptor_pool.DescriptorPool) -> any_pb2.Any | None:
    """An Any this process cannot read as JSON: its type is unknown here, or it is the raw
    form the server writes for bytes it cannot render. Keeps the type_url, and the bytes
    when they were sent. None: an ordinary Any for json_format."""
    if not isinstance(value, dict) or not isinstance(value.get("@type"), str):
        return None
    raw = value.get("value")
    if _known(value["@type"], pool):
        # A well-known type's JSON is also {"@type", "value"}: only what does not parse
        # as that type is the raw form.
        try:
            json_format.ParseDict(value, any_pb2.Any(), descriptor_pool=pool)
        except (json_format.ParseError, TypeError, ValueError, RecursionError):
            pass
        else:
            return None
    packed = any_pb2.Any(type_url=value["@type"])
    if set(value) == RAW_KEYS and isinstance(raw, str):
        with contextlib.suppress(binascii.Error, ValueError):
            packed.value = base64.b64decode(raw, validate=True)
    return packed


def parse_operation(
    obj: Mapping[str, Any], pool: descriptor_pool.DescriptorPool | None = None
) -> operations_pb2.Operation:
    """An Operation from its JSON form; unknown fields are ignored (a newer server)."""
    pool = pool or descriptor_pool.Default()
    obj = dict(obj)
    opaque: dict[str, any_pb2.Any] = {}
    for name in ("metadata", "response"):
        packed = _opaque(obj.get(name), pool)
        if packed is not None:
            opaque[name] = packed
            del obj[name]
    details: dict[int, any_pb2.Any] = {}
    error = obj.get("error")
    if isinstance(error, dict) and isinstance(error.get("details"), list):
        error = dict(error)
        kept = []
        for index, detail in enumerate(error["details"]):
            packed = _opaque(detail, pool)
            if packed is None:
                kept.append(detail)
            else:
                details[index] = packed
                kept.append({"@type": "type.googleapis.com/google.protobuf.Empty", "value": {}})
        error["details"] = kept
        obj["error"] = error
    operation = operations_pb2.Operation()
    try:
        json_format.ParseDict(obj, operation, ignore_unknown_fields=True, descriptor_pool=pool)
    except (json_format.ParseError, TypeError, ValueError, RecursionError) as exc:
        raise TrackerError(f"cannot read the Operation the tracker sent: {exc}") from None
    for name, packed in opaque.items():
        getattr(operation, name).CopyFrom(packed)
    for index, packed in details.items():
        operation.error.details[index].CopyFrom(packed)
    return operation


def metadata(operation: operations_pb2.Operation) -> operation_pb2.OperationMetadata | None:
    """The tracker's metadata of an operation, or None when a producer supplied its own type."""
    if not operation.metadata.Is(operation_pb2.OperationMetadata.DESCRIPTOR):
        return None
    meta = operation_pb2.OperationMetadata()
    operation.metadata.Unpack(meta)
    return meta


__all__ = [
    "any_to_dict",
    "metadata",
    "operation_to_dict",
    "page_to_dict",
    "parse_operation",
    "status_to_dict",
]
