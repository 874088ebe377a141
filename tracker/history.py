"""Reading an operation's event history: pages, their tokens, and the JSON of an entry.

What is recorded, and how it is bounded, is `tracker.stores.history`. Here: what every
route serves (the HTTP API, and through it the SDK and the CLI), once.

An entry's `data` is the proto3 JSON of the event's data message (of the `Notice` for the
tracker's own entries), rendered from the stored bytes; bytes that cannot be rendered
(cut at the size bound, or holding an `Any` of a type this process does not know) are
served as `dataBase64` instead, so that one odd entry never fails the page.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import DecodeError, Message

from tracker.errors import InvalidArgument, InvalidEvent, NotFound, echo
from tracker.events import DATA_MESSAGES, Kind
from tracker.notices import Notice
from tracker.stores.history import TRACKER_SOURCE, Entry

if TYPE_CHECKING:
    from tracker.service import Tracker

DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000
MAX_TOKEN_CHARS: Final = 200


@dataclass(frozen=True)
class HistoryPage:
    entries: list[Entry]
    next_page_token: str


async def page(
    tracker: Tracker, name: str, page_size: int = 0, page_token: str = ""
) -> HistoryPage:
    """One page of `name`'s history, oldest first; NotFound without the operation."""
    from tracker.service import check_name

    if page_size < 0:
        raise InvalidArgument("pageSize must not be negative")
    check_name(name)
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    after = decode_token(page_token, name) if page_token else 0
    exists, found = await asyncio.to_thread(tracker.store.read_history, name, after, size + 1)
    if not exists:
        raise NotFound(f"operation {echo(name)} not found")
    more = len(found) > size
    found = found[:size]
    return HistoryPage(found, encode_token(found[-1].ordinal, name) if more else "")


def _name_hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def encode_token(after: int, name: str) -> str:
    raw = json.dumps({"a": after, "n": _name_hash(name)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, name: str) -> int:
    not_ours = InvalidArgument("pageToken is not a token this server issued")
    if len(token) > MAX_TOKEN_CHARS:
        raise not_ours
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after, nhash = data["a"], data["n"]
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError):
        raise not_ours from None
    if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after < 2**63:
        raise not_ours
    if nhash != _name_hash(name):
        raise InvalidArgument("pageToken was issued for the history of another operation")
    return after


def _timestamp(entry_time: Any) -> str:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(entry_time)
    return stamp.ToJsonString()


def _message_type(entry: Entry) -> type[Message] | None:
    if entry.source == TRACKER_SOURCE and entry.type.startswith("tracker."):
        return Notice
    try:
        return DATA_MESSAGES[Kind.from_type(entry.type)]
    except InvalidEvent:
        return None


def render_data(entry: Entry) -> dict[str, Any] | None:
    """The data as proto3 JSON; None when it cannot be rendered (then: base64)."""
    message_type = _message_type(entry)
    if entry.truncated or message_type is None:
        return None
    try:
        result: dict[str, Any] = json_format.MessageToDict(message_type.FromString(entry.data))
    except (TypeError, ValueError, KeyError, json_format.Error, DecodeError, RecursionError):
        return None
    return result


def entry_to_dict(entry: Entry) -> dict[str, Any]:
    """One entry as the HTTP API serves it."""
    out: dict[str, Any] = {
        "type": entry.type,
        "id": entry.id,
        "source": entry.source,
        "time": _timestamp(entry.time),
    }
    if entry.sequence is not None:
        out["sequence"] = entry.sequence
    out["attempt"] = entry.attempt
    out["outcome"] = entry.outcome
    out["receivedTime"] = _timestamp(entry.received)
    data = render_data(entry)
    if data is not None:
        out["data"] = data
    else:
        out["dataBase64"] = base64.b64encode(entry.data).decode()
    out["truncated"] = entry.truncated
    return out


def page_to_dict(history: HistoryPage) -> dict[str, Any]:
    out: dict[str, Any] = {"events": [entry_to_dict(e) for e in history.entries]}
    if history.next_page_token:
        out["nextPageToken"] = history.next_page_token
    return out


__all__ = ["HistoryPage", "entry_to_dict", "page", "page_to_dict"]
