"""The event history in the SDK, without I/O: the plan of one page and what an entry is.

`TrackerClient.history` and `AsyncTrackerClient.history` drive `history_page` page after
page (`GET /v1/{name}/events`, docs/api.md).
"""

from __future__ import annotations

import base64
import binascii
import builtins
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2

from tracker import errors
from tracker.client._core import Plan, Request, json_of, operation_path


@dataclass(frozen=True)
class HistoryEntry:
    """One event that reached an operation, or one action of the tracker's own on it.

    `outcome` is applied, duplicate, stale or late for an event; for the tracker's entries
    (source "tracker", type tracker.cancel / tracker.resume / tracker.end) the reason.
    `data` is the data as JSON, or None when the tracker served raw bytes instead
    (`data_bytes`: cut at the size bound, `truncated`, or not renderable).
    """

    type: str
    id: str
    source: str
    time: datetime | None
    attempt: int
    outcome: str
    received_time: datetime | None
    sequence: int | None = None
    data: Any = None
    data_bytes: bytes | None = None
    truncated: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def kind(self) -> str:
        """The short type: `progress` for tracker.operation.v1.progress, `cancel` for
        tracker.cancel."""
        return self.type.rsplit(".", 1)[-1]

    def to_dict(self) -> dict[str, Any]:
        """The entry as the tracker sent it."""
        return dict(self.raw)


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    stamp = timestamp_pb2.Timestamp()
    try:
        stamp.FromJsonString(value)
    except ValueError:
        return None
    return stamp.ToDatetime(tzinfo=UTC)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_entry(item: dict[str, Any]) -> HistoryEntry:
    raw = item.get("dataBase64")
    data_bytes = None
    if isinstance(raw, str):
        try:
            data_bytes = base64.b64decode(raw)
        except (binascii.Error, ValueError):
            data_bytes = None
    return HistoryEntry(
        type=str(item.get("type", "")),
        id=str(item.get("id", "")),
        source=str(item.get("source", "")),
        time=_time(item.get("time")),
        sequence=_int(item.get("sequence")),
        attempt=_int(item.get("attempt")) or 1,
        outcome=str(item.get("outcome", "")),
        received_time=_time(item.get("receivedTime")),
        data=item.get("data"),
        data_bytes=data_bytes,
        truncated=item.get("truncated") is True,
        raw=item,
    )


def history_page(
    name: str, page_size: int, page_token: str
) -> Plan[tuple[builtins.list[HistoryEntry], str]]:
    """One page of the history, oldest first, and the next page token ("" on the last)."""
    params: dict[str, str | int] = {}
    if page_size:
        params["pageSize"] = page_size
    if page_token:
        params["pageToken"] = page_token
    path = operation_path(name) + "/events"
    answer = json_of((yield Request("GET", path, params=params)))
    items = answer.get("events") if isinstance(answer, dict) else None
    if not isinstance(items, builtins.list):
        raise errors.TrackerError(f"unexpected answer to GET {path}: {str(answer)[:200]}")
    entries = [parse_entry(i) for i in items if isinstance(i, dict)]
    return entries, str(answer.get("nextPageToken") or "")


__all__ = ["HistoryEntry", "history_page", "parse_entry"]
