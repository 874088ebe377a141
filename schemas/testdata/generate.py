"""Write the canonical tracker.operation.v1 test vectors: vectors.json and .bin bodies.

Usage, from the repository root: python schemas/testdata/generate.py [--out DIR]

The output is deterministic: rerunning rewrites identical files (tests/unit/test_schema_vectors.py
checks it). Protobuf bodies come from the generated code in tracker/v1, serialized
deterministically. See schemas/README.md for what each field of a case means.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # run as a script from a checkout

from google.protobuf import (  # noqa: E402
    any_pb2,
    duration_pb2,
    json_format,
    struct_pb2,
    timestamp_pb2,
)
from google.protobuf.message import Message  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402

from tracker.v1 import events_pb2  # noqa: E402

PREFIX = "tracker.operation.v1."
STRUCTURED = "application/cloudevents+json"
MAX_SEQUENCE = 2**63 - 1
MAX_ATTEMPT = 2**31 - 1
MAX_ATTEMPTS = 100
MAX_WEBHOOKS = 8
# The limits of schemas/README.md ("Limits"); bytes are UTF-8.
MAX_NAME_BYTES = 1024
MAX_ID_CHARS = 256
MAX_SOURCE_BYTES = 4096
MAX_OPERATION_TYPE_CHARS = 256
MAX_PARENT_BYTES = 1024
MAX_LABELS = 64
MAX_LABEL_KEY_CHARS = 250
MAX_LABEL_VALUE_BYTES = 1024

MODES = ("structured", "binary-http", "pubsub-binary", "pubsub-structured")


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


def pack(message: Message) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(message, deterministic=True)
    return a


def to_bytes(message: Message) -> bytes:
    return message.SerializeToString(deterministic=True)


def tidy(value: Any) -> Any:
    """Sorted keys, integral doubles as integers (as the Go and Java proto3 JSON printers emit)."""
    if isinstance(value, dict):
        return {k: tidy(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [tidy(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def to_json(message: Message) -> dict[str, Any]:
    return tidy(json_format.MessageToDict(message))


def ts(text: str) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromJsonString(text)
    return t


def dur(text: str) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromJsonString(text)
    return d


def attrs(
    kind: str,
    event_id: str,
    source: str,
    subject: str | None,
    *,
    time: str | None = None,
    sequence: str | int | None = None,
    attempt: str | int | None = None,
) -> dict[str, Any]:
    """CloudEvents attributes in structured-JSON form (sequence and attempt may be
    integers there)."""
    out: dict[str, Any] = {
        "specversion": "1.0",
        "type": kind if "." in kind else PREFIX + kind,
        "source": source,
        "id": event_id,
    }
    if subject is not None:
        out["subject"] = subject
    if time is not None:
        out["time"] = time
    if sequence is not None:
        out["sequence"] = sequence
    if attempt is not None:
        out["attempt"] = attempt
    return out


class Vectors:
    def __init__(self) -> None:
        self.cases: list[dict[str, Any]] = []
        self.files: dict[str, bytes] = {}

    def _add(
        self,
        name: str,
        description: str,
        mode: str,
        meta: dict[str, str],
        body: bytes | str,
        outcome: dict[str, Any],
    ) -> None:
        assert mode in MODES and all(c["name"] != name for c in self.cases), name
        case: dict[str, Any] = {"name": name, "description": description, "mode": mode}
        case["attributes" if mode.startswith("pubsub") else "headers"] = meta
        if isinstance(body, bytes):
            case["body_base64"] = base64.b64encode(body).decode()
            case["body_file"] = f"{name}.bin"
            self.files[case["body_file"]] = body
        else:
            case["body"] = body
        case.update(outcome)
        self.cases.append(case)

    def structured(
        self,
        name: str,
        description: str,
        event: dict[str, Any] | str,
        outcome: dict[str, Any],
        *,
        pubsub: bool = False,
    ) -> None:
        """Structured mode; `event` is the CloudEvent object, or the exact body text."""
        body = event if isinstance(event, str) else json.dumps(event, ensure_ascii=False)
        mode = "pubsub-structured" if pubsub else "structured"
        self._add(name, description, mode, {"content-type": STRUCTURED}, body, outcome)

    def binary(
        self,
        name: str,
        description: str,
        attributes: dict[str, Any],
        content_type: str | None,
        body: bytes | str,
        outcome: dict[str, Any],
        *,
        pubsub: bool = False,
        content_type_key: str = "content-type",
        extra: dict[str, str] | None = None,
    ) -> None:
        """Binary mode: attributes as ce-* headers (or Pub/Sub attributes), data as the body."""
        meta = {f"ce-{k}": str(v) for k, v in attributes.items()}
        if content_type is not None:
            meta[content_type_key] = content_type
        meta.update(extra or {})
        mode = "pubsub-binary" if pubsub else "binary-http"
        self._add(name, description, mode, meta, body, outcome)


def valid(event: dict[str, Any], data: Message) -> dict[str, Any]:
    """What a correct reader decodes: attributes, sequence and attempt as integers (null
    when absent), data in proto3 JSON."""
    sequence = event.get("sequence")
    attempt = event.get("attempt")
    expected = {
        "id": event["id"],
        "source": event["source"],
        "type": event["type"],
        "subject": event["subject"],
        "time": event.get("time"),
        "sequence": None if sequence is None else int(sequence),
        "attempt": None if attempt is None else int(attempt),
        "data": to_json(data),
    }
    return {"valid": True, "expected": expected}


def invalid(reason: str, *, schema_rejects: bool = True) -> dict[str, Any]:
    return {"valid": False, "reason": reason, "schema_rejects": schema_rejects}


def with_data(event: dict[str, Any], data: Any, content_type: str | None = None) -> dict[str, Any]:
    out = dict(event)
    if content_type is not None:
        out["datacontenttype"] = content_type
    out["data"] = data
    return out


def build() -> Vectors:
    v = Vectors()
    op = "operations/export-20240601-a1b2"
    src = "https://workers.example.com/export"

    # ---- valid: at least one per kind, every mode, every accepted content-type spelling ----

    created = events_pb2.Created(
        operation_type="export",
        labels={"team": "data", "env": "prod"},
        parent="projects/acme/datasets/sales",
        metadata=pack(struct({"stage": "queued"})),
        deadline=ts("2024-06-01T13:00:00Z"),
        heartbeat_timeout=dur("300s"),
    )
    e = attrs("created", "evt-0001", src, op, time="2024-06-01T12:00:00Z", sequence="1")
    v.structured(
        "created_structured_json",
        "HTTP structured mode, JSON data with every Created field; metadata is an Any with @type.",
        with_data(e, to_json(created), "application/json"),
        valid(e, created),
    )

    op2 = "operations/transcode.7f3c~part-2"
    e = attrs(
        "created",
        "0b9e2c1d-4f6a-4c8e-9a51-2d7f3e8b1c60",
        "urn:example:transcoder",
        op2,
        time="2024-06-01T12:00:00.125+02:00",
        sequence="0",
    )
    created2 = events_pb2.Created(
        operation_type="video.transcode",
        labels={"codec": "av1"},
        heartbeat_timeout=dur("30.5s"),
    )
    v.binary(
        "created_pubsub_binary_protobuf",
        "Pub/Sub binary mode, application/protobuf body; sequence 0 and a time with an offset.",
        e,
        "application/protobuf",
        to_bytes(created2),
        valid(e, created2),
        pubsub=True,
    )

    e = attrs("created", "evt-0002", src, "operations/export-20240601-c3d4")
    created3 = events_pb2.Created(operation_type="export", heartbeat_timeout=dur("60s"))
    v.structured(
        "created_structured_snake_case",
        "Proto3 JSON readers accept the original field names too.",
        with_data(e, {"operation_type": "export", "heartbeat_timeout": "60s"}),
        valid(e, created3),
    )

    progress = events_pb2.Progress(percent=42.5, message="exporting rows")
    e = attrs("progress", "evt-0003", src, op, time="2024-06-01T12:00:05.250Z", sequence="2")
    v.binary(
        "progress_binary_http_json",
        "HTTP binary mode, JSON body; an unknown extension attribute (ce-tenant) is ignored.",
        e,
        "application/json",
        json.dumps(to_json(progress)),
        valid(e, progress),
        extra={"ce-tenant": "acme"},
    )

    progress = events_pb2.Progress(percent=50, message="Überprüfung läuft… 50 %")
    e = attrs("progress", "evt-0004", src, op, sequence="3")
    v.binary(
        "progress_binary_http_charset",
        "Content-type parameters are ignored; the body is UTF-8 with non-ASCII text.",
        e,
        "application/json; charset=utf-8",
        json.dumps(to_json(progress), ensure_ascii=False),
        valid(e, progress),
    )

    plain = {"rowsDone": 1200, "table": "sales", "shards": [1, 2]}
    progress = events_pb2.Progress(percent=60, metadata=pack(struct(plain)))
    e = attrs("progress", "evt-0005", src, op, sequence="4")
    v.binary(
        "progress_pubsub_binary_plain_metadata",
        "metadata as a plain JSON object without @type: stored as google.protobuf.Struct.",
        e,
        "application/json",
        json.dumps({"percent": 60, "metadata": plain}),
        valid(e, progress),
        pubsub=True,
    )

    progress = events_pb2.Progress(percent=100, message="all rows exported")
    e = attrs("progress", "evt-0006", src, op, time="2024-06-01T12:09:59Z", sequence=5)
    v.structured(
        "progress_pubsub_structured_integer_sequence",
        "Pub/Sub structured mode; sequence as a JSON integer; percent at its upper bound.",
        with_data(e, to_json(progress), "application/json"),
        valid(e, progress),
        pubsub=True,
    )

    progress = events_pb2.Progress(percent=10)
    e = attrs("progress", "evt-0007", src, op, sequence="1")
    v.binary(
        "progress_pubsub_binary_ce_datacontenttype",
        "The content type in the ce-datacontenttype attribute instead of content-type.",
        e,
        "application/json",
        json.dumps(to_json(progress)),
        valid(e, progress),
        pubsub=True,
        content_type_key="ce-datacontenttype",
    )

    progress = events_pb2.Progress(percent=99.9)
    nested = "operations/projects/acme/exports/e~42_x.y-z"
    e = attrs("progress", "evt-0008", "/workers/export", nested, sequence=str(MAX_SEQUENCE))
    v.structured(
        "progress_structured_nested_name_max_sequence",
        "A multi-segment operation name, a relative source and the largest sequence number.",
        with_data(e, to_json(progress)),
        valid(e, progress),
    )

    token = b"\x00\x01\x02\xfe\xffresume-token:offset=1200"
    checkpoint = events_pb2.Checkpoint(data=token)
    e = attrs("checkpoint", "evt-0009", src, op, time="2024-06-01T12:06:00Z", sequence="6")
    v.binary(
        "checkpoint_pubsub_binary_protobuf",
        "Pub/Sub binary mode, application/x-protobuf; checkpoint bytes that are not UTF-8.",
        e,
        "application/x-protobuf",
        to_bytes(checkpoint),
        valid(e, checkpoint),
        pubsub=True,
    )

    e = attrs("checkpoint", "evt-0010", src, op, sequence="7")
    v.structured(
        "checkpoint_structured_json",
        "bytes in JSON are base64.",
        with_data(e, to_json(checkpoint)),
        valid(e, checkpoint),
    )

    e = attrs("checkpoint", "evt-0011", src, op, sequence="8")
    ev = dict(e, datacontenttype="application/protobuf")
    ev["data_base64"] = base64.b64encode(to_bytes(checkpoint)).decode()
    v.structured(
        "checkpoint_structured_data_base64",
        "Structured mode with protobuf data: data_base64 holds the binary message.",
        ev,
        valid(e, checkpoint),
    )

    e = attrs("heartbeat", "evt-0012", src, op, time="2024-06-01T12:07:00Z")
    v.binary(
        "heartbeat_pubsub_binary_empty_body",
        "No content type and an empty body: data absent means the empty message.",
        e,
        None,
        "",
        valid(e, events_pb2.Heartbeat()),
        pubsub=True,
    )

    e = attrs("heartbeat", "evt-0013", src, op)
    v.structured(
        "heartbeat_structured_no_data",
        "Structured mode without data.",
        e,
        valid(e, events_pb2.Heartbeat()),
    )

    long_name = "operations/" + "a" * (MAX_NAME_BYTES - len("operations/"))
    heartbeat = events_pb2.Heartbeat(message="still here")
    e = attrs("heartbeat", "evt-0014", src, long_name)
    v.binary(
        "heartbeat_binary_http_max_length_name",
        "An operation name of exactly 1024 bytes, the limit.",
        e,
        "application/json",
        json.dumps(to_json(heartbeat)),
        valid(e, heartbeat),
    )

    e = attrs("heartbeat", "evt-0022", src, op, time="2024-06-01T12:08:00Z")
    ev = dict(e, sequence=None)
    v.structured(
        "heartbeat_structured_null_sequence",
        "An attribute that is JSON null is unset (CloudEvents JSON format): no sequence.",
        ev,
        valid(e, events_pb2.Heartbeat()),
    )

    at_limits = events_pb2.Created(
        operation_type="t" * MAX_OPERATION_TYPE_CHARS,
        parent="projects/" + "p" * (MAX_PARENT_BYTES - len("projects/")),
        labels={f"l{i:02d}": "v" for i in range(MAX_LABELS - 2)}
        | {"k" * MAX_LABEL_KEY_CHARS: "long key", "long-value": "v" * MAX_LABEL_VALUE_BYTES},
    )
    e = attrs(
        "created",
        "i" * MAX_ID_CHARS,
        "urn:" + "s" * (MAX_SOURCE_BYTES - len("urn:")),
        "operations/export-20240601-limits",
        sequence="1",
    )
    v.structured(
        "created_structured_at_limits",
        "Every limit met exactly: id, source, operationType, parent, label count, key and value.",
        with_data(e, to_json(at_limits)),
        valid(e, at_limits),
    )

    result = {"uri": "gs://acme-exports/sales-20240601.csv", "rows": 1200}
    succeeded = events_pb2.Succeeded(response=pack(struct(result)))
    e = attrs("succeeded", "evt-0015", src, op, time="2024-06-01T12:10:00Z", sequence="9")
    v.structured(
        "succeeded_structured_json",
        'response as an Any with @type (a well-known type: {"@type", "value"}).',
        with_data(e, to_json(succeeded), "application/json"),
        valid(e, succeeded),
    )

    e = attrs("succeeded", "evt-0016", "urn:example:transcoder", op2, sequence="3")
    v.binary(
        "succeeded_pubsub_binary_protobuf",
        "Pub/Sub binary mode, protobuf body with an Any response.",
        e,
        "application/protobuf",
        to_bytes(succeeded),
        valid(e, succeeded),
        pubsub=True,
    )

    e = attrs("succeeded", "evt-0017", src, "operations/export-20240601-c3d4", sequence="2")
    v.structured(
        "succeeded_pubsub_structured_plain_response",
        "response as a plain JSON object: stored as google.protobuf.Struct.",
        with_data(e, {"response": result}),
        valid(e, succeeded),
        pubsub=True,
    )

    info = error_details_pb2.ErrorInfo(
        reason="BUCKET_NOT_FOUND", domain="export.example.com", metadata={"bucket": "acme-exports"}
    )
    failed = events_pb2.Failed(
        error=status_pb2.Status(
            code=9, message="bucket acme-exports does not exist", details=[pack(info)]
        )
    )
    e = attrs("failed", "evt-0018", src, op, time="2024-06-01T12:10:00Z", sequence="9")
    v.binary(
        "failed_binary_http_json",
        "google.rpc.Status with a google.rpc.ErrorInfo detail.",
        e,
        "application/json",
        json.dumps(to_json(failed)),
        valid(e, failed),
    )

    failed = events_pb2.Failed(error=status_pb2.Status(code=13, message="encoder crashed"))
    e = attrs("failed", "evt-0019", "urn:example:transcoder", op2, sequence="4")
    v.binary(
        "failed_pubsub_binary_protobuf",
        "Pub/Sub binary mode, protobuf body.",
        e,
        "application/protobuf",
        to_bytes(failed),
        valid(e, failed),
        pubsub=True,
    )

    cancelled = events_pb2.Cancelled(reason="cancelled by user alice@example.com")
    e = attrs("cancelled", "evt-0020", src, op, sequence="10")
    v.binary(
        "cancelled_pubsub_binary_content_type_capitalised",
        "The content type in a Content-Type attribute (Pub/Sub attributes are case-sensitive).",
        e,
        "application/json",
        json.dumps(to_json(cancelled)),
        valid(e, cancelled),
        pubsub=True,
        content_type_key="Content-Type",
    )

    e = attrs("cancelled", "evt-0021", src, op, time="2024-06-01T12:11:00Z")
    v.binary(
        "cancelled_binary_http_protobuf",
        "HTTP binary mode, protobuf body.",
        e,
        "application/protobuf",
        to_bytes(cancelled),
        valid(e, cancelled),
    )

    # ---- attempts: a restarted worker's events, and a created with a retry policy ----

    resumable = events_pb2.Created(
        operation_type="export",
        heartbeat_timeout=dur("120s"),
        retry=events_pb2.RetryPolicy(
            max_attempts=5,
            initial_backoff=dur("2s"),
            max_backoff=dur("600s"),
            backoff_multiplier=3,
            retryable_status_codes=[14, 10],
        ),
        children=events_pb2.ChildrenPolicy(
            on_done=events_pb2.ChildrenPolicy.RESUME, expected=12, fail_fast=True
        ),
        webhooks=[
            events_pb2.Webhook(url="https://hooks.example.com/tracker", notices=["resume"]),
            events_pb2.Webhook(url="https://audit.example.com/ops"),
        ],
    )
    e = attrs(
        "created",
        "evt-0101",
        src,
        "operations/export-20240602-e5f6",
        time="2024-06-02T08:00:00Z",
        sequence="1",
        attempt="2",
    )
    v.binary(
        "created_binary_http_retry_policy_attempt_2",
        "A restarted worker's created: attempt 2, its sequence from 1 again; a retry policy,"
        " a children policy and two webhooks.",
        e,
        "application/json",
        json.dumps(to_json(resumable)),
        valid(e, resumable),
    )

    progress = events_pb2.Progress(percent=5, message="again from the checkpoint")
    e = attrs("progress", "evt-0102", src, op, sequence=1, attempt=3)
    v.structured(
        "progress_structured_integer_attempt",
        "Structured mode: the attempt as a JSON integer, like the sequence.",
        with_data(e, to_json(progress)),
        valid(e, progress),
    )

    heartbeat = events_pb2.Heartbeat(message="still here")
    e = attrs("heartbeat", "evt-0103", src, op, sequence="7", attempt=str(MAX_ATTEMPT))
    v.binary(
        "heartbeat_pubsub_binary_max_attempt",
        "Pub/Sub binary mode with the largest attempt, 2^31-1.",
        e,
        "application/json",
        json.dumps(to_json(heartbeat)),
        valid(e, heartbeat),
        pubsub=True,
    )

    # ---- invalid: each case has exactly one defect ----

    pj = {"percent": 10}
    e = attrs("progress", "bad-0001", src, None)
    v.structured(
        "missing_subject", "No subject attribute.", with_data(e, pj), invalid("missing_subject")
    )

    e = attrs("progress", "", src, op)
    del e["id"]
    v.binary(
        "missing_id",
        "No ce-id attribute.",
        e,
        "application/json",
        json.dumps(pj),
        invalid("missing_id"),
        pubsub=True,
    )

    e = attrs("progress", "bad-0003", src, op)
    del e["source"]
    v.binary(
        "missing_source",
        "No ce-source header.",
        e,
        "application/json",
        json.dumps(pj),
        invalid("missing_source"),
    )

    e = attrs("tracker.operation.v1.paused", "bad-0004", src, op)
    v.structured(
        "unknown_type",
        "A type that is not one of the seven kinds.",
        with_data(e, {}),
        invalid("unknown_type"),
    )

    e = attrs("tracker.operation.v2.progress", "bad-0005", src, op)
    v.binary(
        "unknown_type_other_version",
        "A v2 type sent to a v1 tracker.",
        e,
        "application/json",
        json.dumps(pj),
        invalid("unknown_type"),
    )

    e = attrs("progress", "bad-0006", src, "jobs/export-1")
    v.structured(
        "bad_name_prefix",
        "The name does not start with operations/.",
        with_data(e, pj),
        invalid("bad_name"),
    )

    e = attrs("progress", "bad-0007", src, "operations/export 1")
    v.binary(
        "bad_name_space",
        "A space in the operation name.",
        e,
        "application/json",
        json.dumps(pj),
        invalid("bad_name"),
        pubsub=True,
    )

    e = attrs("progress", "bad-0008", src, "operations/export-1\n")
    v.binary(
        "bad_name_trailing_newline",
        "A trailing newline (slips through a pattern matched with re.match or re.search).",
        e,
        "application/json",
        json.dumps(pj),
        invalid("bad_name"),
        pubsub=True,
    )

    e = attrs("progress", "bad-0009", src, "operations//export-1")
    v.structured(
        "bad_name_empty_segment", "An empty path segment.", with_data(e, pj), invalid("bad_name")
    )

    e = attrs("heartbeat", "bad-0010", src, long_name + "b")
    v.structured("bad_name_too_long", "An operation name of 1025 bytes.", e, invalid("bad_name"))

    e = attrs("progress", "x" * 257, src, op)
    v.structured("bad_id_too_long", "An id of 257 characters.", with_data(e, pj), invalid("bad_id"))

    e = attrs("progress", "bad-0012", src, op)
    v.binary(
        "progress_percent_120",
        "percent above 100.",
        e,
        "application/json",
        json.dumps({"percent": 120, "message": "over"}),
        invalid("invalid_data"),
    )

    e = attrs("progress", "bad-0013", src, op)
    v.structured(
        "progress_percent_negative",
        "percent below 0.",
        with_data(e, {"percent": -1}),
        invalid("invalid_data"),
    )

    e = attrs("failed", "bad-0014", src, op)
    v.structured(
        "failed_code_zero",
        "error.code 0 is OK, not a failure.",
        with_data(e, {"error": {"code": 0, "message": "fine?"}}),
        invalid("invalid_data"),
    )

    e = attrs("failed", "bad-0015", src, op)
    v.structured(
        "failed_without_error",
        "A failed event without error (code 0).",
        with_data(e, {}),
        invalid("invalid_data"),
    )

    zero = events_pb2.Failed(error=status_pb2.Status(code=0, message="fine?"))
    e = attrs("failed", "bad-0016", src, op)
    v.binary(
        "failed_code_zero_protobuf",
        "error.code 0 in a protobuf body.",
        e,
        "application/protobuf",
        to_bytes(zero),
        invalid("invalid_data", schema_rejects=False),
        pubsub=True,
    )

    e = attrs("progress", "bad-0017", src, op)
    v.structured(
        "unknown_data_field",
        "A field Progress does not have.",
        with_data(e, {"percent": 10, "percentage": 10}),
        invalid("invalid_data"),
    )

    e = attrs("succeeded", "bad-0018", src, op)
    v.structured(
        "data_of_another_kind",
        "Progress data sent as a succeeded event.",
        with_data(e, {"percent": 100, "message": "done"}),
        invalid("invalid_data"),
    )

    e = attrs("progress", "bad-0019", src, op)
    v.structured(
        "metadata_not_an_object",
        "An Any field holding a JSON string.",
        with_data(e, {"percent": 10, "metadata": "fast"}),
        invalid("invalid_data"),
    )

    e = attrs("succeeded", "bad-0020", src, op)
    unknown_any = {"@type": "type.googleapis.com/acme.export.v1.ExportResponse", "rows": 1}
    v.structured(
        "any_unknown_type_url",
        "JSON Any whose @type the tracker has no descriptor for (register it with"
        " --proto-descriptors, or send protobuf).",
        with_data(e, {"response": unknown_any}),
        invalid("invalid_data", schema_rejects=False),
    )

    e = attrs("progress", "bad-0021", src, op, sequence="abc")
    v.binary(
        "bad_sequence_abc",
        "A sequence that is not a number.",
        e,
        "application/json",
        json.dumps(pj),
        invalid("bad_sequence"),
        pubsub=True,
    )

    e = attrs("progress", "bad-0022", src, op, sequence=str(MAX_SEQUENCE + 1))
    v.structured(
        "bad_sequence_overflow", "A sequence of 2^63.", with_data(e, pj), invalid("bad_sequence")
    )

    e = attrs("progress", "bad-0023", src, op, sequence=-1)
    v.structured(
        "bad_sequence_negative",
        "A negative JSON integer sequence.",
        with_data(e, pj),
        invalid("bad_sequence"),
    )

    e = attrs("progress", "bad-0024", src, op, time="yesterday")
    v.structured("bad_time", "A time that is not RFC 3339.", with_data(e, pj), invalid("bad_time"))

    e = attrs("progress", "bad-0025", src, op)
    e["specversion"] = "0.3"
    v.structured(
        "bad_specversion", "CloudEvents 0.3.", with_data(e, pj), invalid("invalid_attributes")
    )

    e = attrs("progress", "bad-0026", src, op)
    v.binary(
        "bad_content_type",
        "A data content type that is neither JSON nor protobuf.",
        e,
        "text/plain",
        "percent=10",
        invalid("bad_content_type"),
    )

    e = attrs("progress", "bad-0027", src, op)
    text = json.dumps(with_data(e, pj))
    v.structured(
        "malformed_json_structured",
        "A structured body cut short.",
        text[:-7],
        invalid("malformed_json", schema_rejects=False),
    )

    e = attrs("progress", "bad-0028", src, op)
    v.binary(
        "malformed_json_data",
        "A JSON body cut short.",
        e,
        "application/json",
        '{"percent": 50,',
        invalid("malformed_json", schema_rejects=False),
        pubsub=True,
    )

    e = attrs("checkpoint", "bad-0029", src, op)
    v.binary(
        "protobuf_body_does_not_parse",
        "Field 1 claims 5 bytes but only 2 follow.",
        e,
        "application/protobuf",
        b"\x0a\x05ab",
        invalid("invalid_data", schema_rejects=False),
        pubsub=True,
    )

    e = attrs("checkpoint", "bad-0030", src, op)
    both = with_data(e, {"data": "AAE="})
    both["data_base64"] = "CgIAAQ=="
    v.structured(
        "data_and_data_base64", "Both data and data_base64.", both, invalid("invalid_data")
    )

    for number, (name, bad) in enumerate(
        [("dot", "operations/exports/./e-1"), ("dot_dot", "operations/exports/../e-1")], 31
    ):
        e = attrs("progress", f"bad-00{number}", src, bad)
        v.structured(
            f"bad_name_{name}_segment",
            f"A {bad.split('/')[2]!r} path segment.",
            with_data(e, pj),
            invalid("bad_name"),
        )

    e = attrs("progress", "bad-0033", src, op, sequence="")
    v.binary(
        "bad_sequence_empty",
        "An empty ce-sequence: absent means no sequence, empty is not a number.",
        e,
        "application/json",
        json.dumps(pj),
        invalid("bad_sequence"),
    )

    e = attrs("progress", "bad-0034", src, op, time="9999-12-31T23:59:59-23:59")
    v.binary(
        "bad_time_out_of_range",
        "Valid RFC 3339, but after 9999-12-31T23:59:59Z once in UTC.",
        e,
        "application/json",
        json.dumps(pj),
        invalid("bad_time", schema_rejects=False),
        pubsub=True,
    )

    e = attrs("heartbeat", "bad-0035", "urn:" + "s" * (MAX_SOURCE_BYTES + 1 - len("urn:")), op)
    v.structured("bad_source_too_long", "A source of 4097 bytes.", e, invalid("bad_source"))

    one_over = [
        ("bad_operation_type", {"operationType": "t" * (MAX_OPERATION_TYPE_CHARS + 1)}),
        ("bad_parent", {"parent": "p" * (MAX_PARENT_BYTES + 1)}),
        ("too_many_labels", {"labels": {f"l{i:02d}": "v" for i in range(MAX_LABELS + 1)}}),
        ("bad_label_key", {"labels": {"k" * (MAX_LABEL_KEY_CHARS + 1): "v"}}),
        ("bad_label_value", {"labels": {"k": "v" * (MAX_LABEL_VALUE_BYTES + 1)}}),
    ]
    for number, (reason, data) in enumerate(one_over, 36):
        e = attrs("created", f"bad-00{number}", src, op)
        v.structured(
            f"{reason}_over_limit",
            f"created data one over the limit of its {reason.removeprefix('bad_')}.",
            with_data(e, data),
            invalid(reason),
        )

    e = attrs("created", "bad-0041", src, op)
    v.structured(
        "created_negative_heartbeat_timeout",
        "A negative heartbeatTimeout would expire the operation at once.",
        with_data(e, {"heartbeatTimeout": "-5s"}),
        invalid("invalid_data"),
    )

    far = events_pb2.Created(deadline=timestamp_pb2.Timestamp(seconds=253402300800))
    e = attrs("created", "bad-0042", src, op)
    v.binary(
        "created_deadline_out_of_range_protobuf",
        "A deadline after 9999-12-31T23:59:59Z (the protobuf encoding does not check it).",
        e,
        "application/protobuf",
        to_bytes(far),
        invalid("invalid_data", schema_rejects=False),
    )

    e = attrs("progress", "bad-0043", src, op)
    deep: Any = {"a": 1}
    for _ in range(40):
        deep = {"a": deep}
    v.structured(
        "data_too_deep",
        "JSON data nested 42 levels deep (at most 32 are accepted).",
        with_data(e, {"percent": 1, "metadata": deep}),
        invalid("too_deep", schema_rejects=False),
    )

    e = attrs("succeeded", "bad-0044", src, op)
    v.structured(
        "any_type_not_a_string",
        'An Any whose "@type" is not a string.',
        with_data(e, {"response": {"@type": None, "value": {"rows": 1}}}),
        invalid("invalid_data"),
    )

    for number, (label, attempt, why) in enumerate(
        [
            ("zero", "0", "An attempt of 0: attempts count from 1."),
            ("overflow", str(MAX_ATTEMPT + 1), "An attempt of 2^31."),
            ("empty", "", "An empty ce-attempt: absent means attempt 1, empty is not a number."),
        ],
        101,
    ):
        e = attrs("progress", f"bad-0{number}", src, op, sequence="1", attempt=attempt)
        v.binary(
            f"bad_attempt_{label}",
            why,
            e,
            "application/json",
            json.dumps(pj),
            invalid("bad_attempt"),
        )

    resumable_over = [
        ("retry_max_attempts", {"retry": {"maxAttempts": MAX_ATTEMPTS + 1}}, "invalid_data"),
        ("retry_no_max_attempts", {"retry": {"initialBackoff": "1s"}}, "invalid_data"),
        (
            "retry_zero_backoff",
            {"retry": {"maxAttempts": 3, "initialBackoff": "0s"}},
            "invalid_data",
        ),
        (
            "retry_code_ok",
            {"retry": {"maxAttempts": 3, "retryableStatusCodes": ["OK"]}},
            "invalid_data",
        ),
        ("children_expected", {"children": {"expected": "1000000001"}}, "invalid_data"),
        ("webhook_scheme", {"webhooks": [{"url": "ftp://hooks.example.com/x"}]}, "bad_webhook"),
        (
            "webhook_notice",
            {"webhooks": [{"url": "https://h.example.com", "notices": ["all"]}]},
            "bad_webhook",
        ),
        (
            "webhooks_too_many",
            {"webhooks": [{"url": f"https://h{i}.example.com"} for i in range(MAX_WEBHOOKS + 1)]},
            "invalid_data",
        ),
    ]
    for number, (label, data, reason) in enumerate(resumable_over, 111):
        e = attrs("created", f"bad-0{number}", src, op)
        v.structured(
            f"created_{label}",
            f"created with a bad {label.replace('_', ' ')}.",
            with_data(e, data),
            invalid(reason),
        )
    return v


def render(v: Vectors) -> dict[str, bytes]:
    manifest = {
        "$comment": "Written by schemas/testdata/generate.py; do not edit. See schemas/README.md.",
        "cases": v.cases,
    }
    files = dict(v.files)
    files["vectors.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
    return files


def write(out: Path) -> list[Path]:
    files = render(build())
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.bin"):
        if stale.name not in files:
            stale.unlink()
    written = []
    for name in sorted(files):
        path = out / name
        path.write_bytes(files[name])
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: here)")
    args = parser.parse_args(argv)
    written = write(args.out)
    print(f"wrote {len(written)} files to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
