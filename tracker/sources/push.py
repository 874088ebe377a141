"""Pub/Sub push: POST /v1/pubsub/push with the JSON envelope Pub/Sub posts.

Pub/Sub redelivers anything not answered 102/200/201/202/204, so the answers are:
- applied (or a duplicate): 204;
- poison (bad envelope, bad base64, invalid event, unknown operation in strict
  mode): recorded as a dead letter with the reason, then 200 so it is not redelivered;
- store unavailable (also while recording a dead letter): 503, so Pub/Sub retries.
Push has no exactly-once delivery; de-duplication by event id makes it safe.

Both push formats are read. Wrapped (the default): the JSON envelope, the message's
attributes inside it. Unwrapped (a subscription with `no_wrapper`): the body is the
message data as it was published, and with `write_metadata` the attributes arrive as HTTP
headers beside `x-goog-pubsub-message-id` and `x-goog-pubsub-publish-time`, so an event
published in binary mode is a binary-mode CloudEvent over HTTP. A request is unwrapped
when it carries `x-goog-pubsub-message-id` or a `ce-` header; unwrapped without metadata
has no attributes, so no event can be read from it: recorded and acknowledged as poison.
The caller must hold `pubsub.push` (tracker.auth): with --push-audience and
--push-service-account, the OIDC token Pub/Sub signs for that account (401/403 otherwise).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from google.rpc import code_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tracker.api import status
from tracker.api.guard import require, scope
from tracker.api.web import error_response, header_dict, read_body
from tracker.auth import Permission
from tracker.bindings import parse_pubsub
from tracker.errors import InvalidEvent, PermissionDenied, Unauthenticated, Unavailable, echo
from tracker.events import load_json, parse_time, text_bytes
from tracker.service import Tracker

ROUTE = "push"
ENVELOPE_OVERHEAD = 64 * 1024  # attributes and envelope fields beside the data


# What Pub/Sub itself delivers at most; an envelope claiming more was not made by it, and
# the message id is kept in DeadLetters.MessageId STRING(256).
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_KEY_BYTES = 256
MAX_ATTRIBUTE_VALUE_BYTES = 1024
MAX_MESSAGE_ID_CHARS = 256


def _parse_time(value: Any) -> datetime | None:
    """The publish time, a fallback event time only: one that does not parse is ignored."""
    try:
        return parse_time(value, "publishTime")
    except InvalidEvent:
        return None


def _attributes(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidEvent("bad_envelope", "message.attributes must map strings to strings")
    if len(value) > MAX_ATTRIBUTES:
        raise InvalidEvent("bad_envelope", f"more than {MAX_ATTRIBUTES} message.attributes")
    for key, text in value.items():
        if text_bytes(key, "bad_envelope", "an attribute name") > MAX_ATTRIBUTE_KEY_BYTES:
            raise InvalidEvent(
                "bad_envelope", f"attribute name {echo(key, 40)} longer than 256 bytes"
            )
        if text_bytes(text, "bad_envelope", "an attribute value") > MAX_ATTRIBUTE_VALUE_BYTES:
            raise InvalidEvent(
                "bad_envelope", f"value of attribute {echo(key, 40)} longer than 1024 bytes"
            )
    return value


def _message_id(message: dict[str, Any]) -> str:
    value = message.get("messageId") or message.get("message_id") or ""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise InvalidEvent("bad_envelope", "message.messageId must be a string")
    text = str(value)
    if len(text) > MAX_MESSAGE_ID_CHARS:
        raise InvalidEvent("bad_envelope", f"message.messageId longer than {MAX_MESSAGE_ID_CHARS}")
    text_bytes(text, "bad_envelope", "message.messageId")
    return text


def decode_envelope(body: bytes) -> tuple[dict[str, str], bytes, str, datetime | None]:
    """(attributes, data, message id, publish time) of a push envelope, or InvalidEvent."""
    envelope = load_json(body, "bad_envelope", "push body")
    message = envelope.get("message") if isinstance(envelope, dict) else None
    if not isinstance(message, dict):
        raise InvalidEvent(
            "bad_envelope",
            "push body has no message object (an unwrapped push, no_wrapper, carries no"
            " attributes without write_metadata: turn it on, or use the wrapped form)",
        )
    attributes = _attributes(message.get("attributes"))
    raw = message.get("data") or ""
    if not isinstance(raw, str):
        raise InvalidEvent("bad_envelope", "message.data must be a base64 string")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidEvent("bad_base64", "message.data is not valid base64") from None
    message_id = _message_id(message)
    publish_time = _parse_time(message.get("publishTime") or message.get("publish_time"))
    return attributes, data, message_id, publish_time


# Pub/Sub's own headers of an unwrapped push; every other header it adds is HTTP's.
MESSAGE_ID_HEADER = "x-goog-pubsub-message-id"
PUBLISH_TIME_HEADER = "x-goog-pubsub-publish-time"


def unwrapped(headers: Mapping[str, str]) -> tuple[dict[str, str], str, datetime | None] | None:
    """(attributes, message id, publish time) of an unwrapped push, or None when the
    request is a wrapped one. `headers` by lower-case name, the first value of a repeated
    one (`header_dict`, as /v1/events reads them). The attributes are the `ce-` headers
    and the content type."""
    ce = [k for k in headers if k.startswith("ce-")]
    if MESSAGE_ID_HEADER not in headers and not ce:
        return None
    attributes = {k: headers[k] for k in ce}
    if "content-type" in headers:
        attributes["content-type"] = headers["content-type"]
    message_id = headers.get(MESSAGE_ID_HEADER, "")[:MAX_MESSAGE_ID_CHARS]
    return attributes, message_id, _parse_time(headers.get(PUBLISH_TIME_HEADER))


def _too_large(limit: int) -> InvalidEvent:
    return InvalidEvent("too_large", f"push body exceeds the limit of {limit} bytes")


def routes(tracker: Tracker) -> list[BaseRoute]:
    async def push(request: Request) -> Response:
        try:
            await require(request, Permission.PUBSUB_PUSH)
        except (Unauthenticated, PermissionDenied) as exc:
            # Not acked: a misconfigured subscription should not lose messages.
            tracker.metrics.rejected.labels(route=ROUTE, reason="auth").inc()
            return error_response(exc)
        except Exception as exc:  # certificates unreachable: 503, Pub/Sub retries
            return error_response(exc)
        body = b""
        data: bytes | None = None  # the message data once the envelope decoded
        attributes: dict[str, str] = {}
        message_id = ""
        try:
            try:
                body = await read_body(
                    request, tracker.rules.max_event_bytes * 2 + ENVELOPE_OVERHEAD, _too_large
                )
                bare = unwrapped(header_dict(request))
                if bare is None:
                    attributes, data, message_id, published = decode_envelope(body)
                else:
                    (attributes, message_id, published), data = bare, body
                # Without a CloudEvents time, the publish time is the best event time.
                event = parse_pubsub(attributes, data, tracker.rules, received=published)
                if not scope().allows(event.operation):
                    # The push identity may not write there: the same every redelivery.
                    raise InvalidEvent(
                        "out_of_scope",
                        f"the push identity may not write {echo(event.operation)}",
                        event_id=event.id,
                    )
                await tracker.ingest([event], route=ROUTE)
            except Unavailable:
                raise
            except Exception as exc:
                # Poison, or a failure nobody named: either way a redelivery would fail
                # the same way forever. Record it (an operator can replay it) and ack.
                exc = tracker.as_poison(ROUTE, exc)
                if exc.reason == "too_large":
                    body = body[:1024]
                letter = await tracker.dead_letter(
                    route=ROUTE,
                    exc=exc,
                    attributes=attributes,
                    body=data if data is not None else body,
                    message_id=message_id,
                )
                return JSONResponse(
                    {"deadLetter": letter.id, "reason": exc.reason, "message": exc.message},
                    status_code=200,
                )
        except Exception as exc:  # the store is unavailable, even for the dead letter
            tracker.metrics.transient.labels(route=ROUTE).inc()
            error = status.from_exception(exc)
            if error.code != code_pb2.UNAVAILABLE:  # a 5xx other than 503 is never sent
                error = status.ApiError(
                    code_pb2.UNAVAILABLE,
                    "could not record the message; retry",
                    headers={"Retry-After": "1"},
                )
            return error_response(error)
        return Response(status_code=204)

    return [Route("/v1/pubsub/push", push, methods=["POST"])]
