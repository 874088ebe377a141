"""The dead-letter filter and page tokens: small and strict, parsed once.

    reason = "bad_data"        route = "push"
    received_time >= "2026-01-01T00:00:00Z"     received_time < "2026-02-01T00:00:00Z"

Terms are combined with AND only (each field at most once per operator); values are
double-quoted strings (bare words work for reason and route). Anything else is an
InvalidArgument that points at the problem: the Operations filter (tracker/filtering.py)
has fields, OR and NOT that mean nothing here, and every term here goes into the store's
SQL as an indexed column.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import replace
from datetime import datetime
from typing import Final

from tracker import filtering
from tracker.errors import InvalidArgument, echo
from tracker.stores.dead_letters import DeadLetterQuery

MAX_FILTER_CHARS: Final = 1024
MAX_TOKEN_CHARS: Final = 512
MAX_ID_CHARS: Final = 64  # DeadLetters.Id STRING(64)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<op>>=|<=|!=|=|<|>|:) |
        (?P<string>"(?:[^"\\]|\\.)*") |
        (?P<word>[A-Za-z0-9_.:+-]+)
    )""",
    re.VERBOSE,
)
# field -> operators it takes
FIELDS: Final = {"reason": ("=",), "route": ("=",), "received_time": (">=", "<")}


def _tokens(text: str) -> list[tuple[str, str]]:
    return filtering.tokens(text, _TOKEN)


def _value(kind: str, text: str) -> str:
    if kind == "string":
        try:
            value = json.loads(text)
        except ValueError:
            raise InvalidArgument(f"filter: bad string {echo(text)}") from None
        assert isinstance(value, str)
        return value
    if kind == "word":
        return text
    raise InvalidArgument(f"filter: expected a value, got {echo(text)}")


def parse_time(text: str) -> datetime:
    """An RFC 3339 time with its offset ("2026-01-01T00:00:00Z")."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None or "T" not in text.upper():
        raise InvalidArgument(
            f"filter: received_time needs an RFC 3339 time with an offset, like"
            f' "2026-01-01T00:00:00Z"; got {echo(text)}'
        )
    return when


def parse_filter(text: str) -> DeadLetterQuery:
    """The query a filter means; "" is every dead letter."""
    if len(text) > MAX_FILTER_CHARS:
        raise InvalidArgument(f"filter longer than {MAX_FILTER_CHARS} characters")
    tokens = _tokens(text)
    query = DeadLetterQuery()
    seen: set[tuple[str, str]] = set()
    i = 0
    while i < len(tokens):
        if i:
            if tokens[i] != ("word", "AND"):
                raise InvalidArgument(
                    f"filter: expected AND, got {echo(tokens[i][1])} (terms are combined"
                    " with AND only)"
                )
            i += 1
        term = tokens[i : i + 3]
        if len(term) < 3:
            raise InvalidArgument("filter: unexpected end (a term is FIELD OP VALUE)")
        (field_kind, field), (op_kind, op), (value_kind, raw) = term
        if field_kind != "word" or field not in FIELDS:
            raise InvalidArgument(
                f"filter: unknown field {echo(field)}; known: {', '.join(FIELDS)}"
            )
        if op_kind != "op" or op not in FIELDS[field]:
            raise InvalidArgument(
                f"filter: {field} takes {' or '.join(FIELDS[field])}, not {echo(op)}"
            )
        if (field, op) in seen:
            raise InvalidArgument(f"filter: {field} {op} given more than once")
        seen.add((field, op))
        value = _value(value_kind, raw)
        if field == "reason":
            query = replace(query, reason=value)
        elif field == "route":
            query = replace(query, route=value)
        elif op == ">=":
            query = replace(query, since=parse_time(value))
        else:
            query = replace(query, until=parse_time(value))
        i += 3
    return query


# ---- page tokens ---------------------------------------------------------------------------


def _hash(filter_text: str, order: str) -> str:
    return hashlib.sha256(f"{order}\n{filter_text}".encode()).hexdigest()[:16]


def encode_token(after: tuple[datetime, str], filter_text: str, order: str) -> str:
    """A token for the page after `after` (received_at, id), bound to its filter and order."""
    raw = json.dumps({"t": after[0].isoformat(), "i": after[1], "f": _hash(filter_text, order)})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, filter_text: str, order: str) -> tuple[datetime, str]:
    not_ours = InvalidArgument("page_token is not a token this server issued")
    if len(token) > MAX_TOKEN_CHARS:
        raise not_ours
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        when, letter_id, fhash = data["t"], data["i"], data["f"]
        if not all(isinstance(v, str) for v in (when, letter_id, fhash)):
            raise not_ours
        after = datetime.fromisoformat(when)
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError):
        raise not_ours from None
    if after.tzinfo is None or not valid_id(letter_id):
        raise not_ours
    if fhash != _hash(filter_text, order):
        raise InvalidArgument("page_token was issued for a different filter")
    return after, letter_id


def valid_id(letter_id: str) -> bool:
    """Whether `letter_id` could be a stored id (what a lookup may send to the store)."""
    if not letter_id or len(letter_id) > MAX_ID_CHARS:
        return False
    try:
        letter_id.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


__all__ = ["decode_token", "encode_token", "parse_filter", "parse_time", "valid_id"]
