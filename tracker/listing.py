"""ListOperations' order_by (AIP-132) and page tokens: parsed and checked once.

    order_by = "create_time desc, name"

Keys: create_time, update_time, end_time, name; each ascending unless followed by `desc`
(`asc` is accepted too), comma-separated, each at most once. The name is always the last
key: when the order does not end with it, it is added in the direction of the last key
given (so that one index, read forwards or backwards, serves the whole order). An
operation still running has no end time: it sorts before every ended one ascending,
after them descending.

A page token carries the position of the last row (its sort values as the store holds
them, and its name) and a hash of the filter and the order it was issued for: a token
from another filter or order is an `InvalidArgument`, as is one this server did not issue.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Final

from tracker.errors import InvalidArgument, echo
from tracker.events import MAX_NAME_BYTES
from tracker.stores.base import SortKey, Stored

ORDER_FIELDS: Final = ("create_time", "update_time", "end_time", "name")
MAX_ORDER_BY_LENGTH: Final = 256
# A sort value in a token: a timestamp's text (RFC 3339 with nanoseconds at most).
MAX_SORT_VALUE_CHARS: Final = 64
# A token holds one name (at most MAX_NAME_BYTES), a few sort values and a hash.
MAX_TOKEN_CHARS: Final = 8 * MAX_NAME_BYTES + 4 * MAX_SORT_VALUE_CHARS * len(ORDER_FIELDS)


def parse_order_by(text: str | None) -> tuple[SortKey, ...]:
    """The keys of an order_by; empty (or blank) is by name."""
    if not text or not text.strip():
        return ()
    if len(text) > MAX_ORDER_BY_LENGTH:
        raise InvalidArgument(f"order_by longer than {MAX_ORDER_BY_LENGTH} characters")
    keys: list[SortKey] = []
    for part in text.split(","):
        words = part.split()
        if not words:
            raise InvalidArgument("order_by: an empty key (two commas, or one at an end)")
        field = words[0]
        if field not in ORDER_FIELDS:
            raise InvalidArgument(
                f"order_by: unknown field {echo(field)}; known: {', '.join(ORDER_FIELDS)}"
            )
        if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise InvalidArgument(
                f"order_by: {echo(part.strip())} is not a field followed by nothing or desc"
            )
        if any(k.field == field for k in keys):
            raise InvalidArgument(f"order_by: {field} given more than once")
        if keys and keys[-1].field == "name":
            raise InvalidArgument("order_by: name is the last key (it is unique)")
        keys.append(SortKey(field, len(words) == 2 and words[1].lower() == "desc"))
    if keys == [SortKey("name")]:
        return ()  # the default
    return tuple(keys)


def canonical(order: tuple[SortKey, ...]) -> str:
    return ", ".join(k.field + (" desc" if k.desc else "") for k in order)


def _hash(filter_text: str, order: tuple[SortKey, ...]) -> str:
    # Without an order the hash is the filter's alone, as tokens were before order_by.
    bound = filter_text + ("\0" + canonical(order) if order else "")
    return hashlib.sha256(bound.encode()).hexdigest()[:16]


def sort_count(order: tuple[SortKey, ...]) -> int:
    """How many sort values a position holds besides the name."""
    return sum(1 for k in order if k.field != "name")


def encode_token(last: Stored, filter_text: str, order: tuple[SortKey, ...]) -> str:
    data: dict[str, object] = {"a": last.state.name, "f": _hash(filter_text, order)}
    if order:
        data["k"] = list(last.sort)
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(
    token: str, filter_text: str, order: tuple[SortKey, ...]
) -> tuple[str, tuple[str | None, ...]]:
    """(name, sort values) of the row a token continues after."""
    not_ours = InvalidArgument("page_token is not a token this server issued")
    if len(token) > MAX_TOKEN_CHARS:
        raise not_ours
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        after, fhash, values = data["a"], data["f"], data.get("k", [])
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise not_ours from None
    # What the token holds goes into a store query: only what this server could issue.
    if not isinstance(after, str) or not isinstance(fhash, str) or not _storable(after):
        raise not_ours
    if not isinstance(values, list) or not all(_sort_value(v) for v in values):
        raise not_ours
    if fhash != _hash(filter_text, order):
        raise InvalidArgument("page_token was issued for a different filter or order_by")
    if len(values) != sort_count(order):
        raise not_ours
    return after, tuple(values)


def _sort_value(value: object) -> bool:
    return value is None or (isinstance(value, str) and len(value) <= MAX_SORT_VALUE_CHARS)


def _storable(name: str) -> bool:
    try:
        return len(name.encode("utf-8")) <= MAX_NAME_BYTES
    except UnicodeEncodeError:
        return False


__all__ = [
    "ORDER_FIELDS",
    "canonical",
    "decode_token",
    "encode_token",
    "parse_order_by",
]
