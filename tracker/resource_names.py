"""Operation names the way Google APIs spell them, and the collections they live in.

An operation lives in a collection `operations` under an optional parent resource:

    operations/ID                                   the tracker's own collection
    projects/P/operations/ID                        a project's
    projects/P/locations/L/operations/ID            a location's (most Google APIs)

The ID may itself hold slashes (`operations/batch-7/item-3`). The default name pattern
(`tracker.events.DEFAULT_NAME_PATTERN`) accepts all three shapes; a deployment may narrow
or widen it with --name-pattern. ListOperations names the collection by its parent, as
Google services annotate it (`GET /v1/{name=projects/*/locations/*}/operations`); the
collection itself (`.../operations`) is accepted too, and `""` or `operations` is the
whole store.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Final

from tracker import filtering
from tracker.errors import InvalidArgument, echo

# An ID segment of a parent resource (project, location): no leading dot, no quote, no
# star, so that it can stand in a filter's quoted prefix as it is.
_ID: Final = r"[A-Za-z0-9_~-][A-Za-z0-9._~-]*"
# Written without alternation or lookahead (RE2 and ECMA-262 read it alike): see
# tracker.events.DEFAULT_NAME_PATTERN, which starts with it.
PARENT_PATTERN: Final = rf"(projects/{_ID}/(locations/{_ID}/)?)?"
_PARENT: Final = re.compile(rf"projects/{_ID}(/locations/{_ID})?")
COLLECTION: Final = "operations"
# Names derived from a request id (AIP-155) are the same on every retry.
_REQUEST_NAMESPACE: Final = uuid.UUID("6f1d2c0e-7c43-4b8e-9a55-3c1f2b8d9e10")


def parse_parent(text: str) -> str:
    """The parent of a ListOperations or create request: `""` (every operation),
    `projects/P` or `projects/P/locations/L`; a trailing `/operations` (the collection
    itself) and `operations` alone are accepted too."""
    text = text.strip("/")
    if text in ("", COLLECTION):
        return ""
    parent = text.removesuffix("/" + COLLECTION)
    if not _PARENT.fullmatch(parent):
        raise InvalidArgument(
            f"{echo(text)} is not a collection of operations: use '' or 'operations',"
            " 'projects/P' or 'projects/P/locations/L' (optionally ending in /operations)"
        )
    return parent


def collection_of(parent: str) -> str:
    """`projects/p/locations/l` -> `projects/p/locations/l/operations`."""
    return f"{parent}/{COLLECTION}" if parent else COLLECTION


def in_collection(filter_text: str, parent: str) -> str:
    """`filter_text` narrowed to the operations of `parent`'s collection (a name prefix,
    which every store pushes down into its key order)."""
    if not parent:
        return filter_text
    filtering.parse(filter_text)  # its errors in its own words, before it is combined
    prefix = f"name = {json.dumps(collection_of(parent) + '/*')}"
    return f"{prefix} AND ({filter_text})" if filter_text.strip() else prefix


_NAME: Final = re.compile(rf"(?:(projects/{_ID}(?:/locations/{_ID})?)/)?operations/(.+)")


def split_name(name: str) -> tuple[str, str]:
    """`projects/p/locations/l/operations/a/b` -> (`projects/p/locations/l`, `a/b`)."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise InvalidArgument(
            f"{echo(name)} is not an operation name (operations/ID,"
            " projects/P/operations/ID or projects/P/locations/L/operations/ID)"
        )
    return match.group(1) or "", match.group(2)


def new_name(parent: str, operation_id: str = "", request_id: str = "") -> str:
    """The name of an operation being created: `operation_id` in `parent`'s collection;
    without one, a UUID, derived from `request_id` when there is one, so that a retried
    create names the same operation."""
    if not operation_id:
        if request_id:
            operation_id = str(uuid.uuid5(_REQUEST_NAMESPACE, f"{parent}\n{request_id}"))
        else:
            operation_id = str(uuid.uuid4())
    return f"{collection_of(parent)}/{operation_id}"


__all__ = [
    "COLLECTION",
    "PARENT_PATTERN",
    "collection_of",
    "in_collection",
    "new_name",
    "parse_parent",
    "split_name",
]
