"""The filter fields of issue #12: how an operation ended, its error code, end time,
percent and attempt. Parsed and evaluated here; `tracker.filtering` hands them over.

    result = "failed"       (also `state`; running | succeeded | failed | cancelled; = !=)
    error.code = 5          error.code = "NOT_FOUND"   (a google.rpc.Code; 0 without error)
    end_time > "2026-01-01T00:00:00Z"                  (false for every operation still running)
    percent >= 50           attempt > 1                (<, <=, >, >=, =, !=)

The values are those the served Operation shows: `percent` is OperationMetadata.percent
(100 once succeeded), `attempt` OperationMetadata.attempt, `error.code` Operation.error.code
(a cancelled operation's is 1, CANCELLED).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from google.rpc import code_pb2

from tracker.errors import InvalidArgument, echo
from tracker.v1.operation_pb2 import OperationState

if TYPE_CHECKING:
    from tracker.filtering import Cmp, Row

COMPARE: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "=": operator.eq,
    "!=": operator.ne,
}
# The row attribute of each field.
ATTRIBUTE: Final = {
    "result": "result",
    "error.code": "error_code",
    "percent": "percent",
    "attempt": "attempt",
    "end_time": "end_time",
}
MAX_ATTEMPT: Final = 2**31 - 1


def typed(field: str, op: str, value: str) -> Cmp:
    """The comparison of one of this module's fields, or an InvalidArgument."""
    from tracker.filtering import RESULTS, Cmp

    if field in ("result", "state"):
        if op not in ("=", "!=") or value not in RESULTS:
            raise InvalidArgument(f"filter: {field} takes = or != with one of {', '.join(RESULTS)}")
        return Cmp("result", op, value)
    if op not in COMPARE:
        raise InvalidArgument(f"filter: {field} takes a comparison (<, <=, >, >=, =, !=)")
    if field == "error.code":
        if value in code_pb2.Code.keys():  # noqa: SIM118  (an enum wrapper, not a dict)
            return Cmp(field, op, float(code_pb2.Code.Value(value)))
        number = _number(field, value, integer=True)
        return Cmp(field, op, number)
    return Cmp(field, op, _number(field, value, integer=field == "attempt"))


def _number(field: str, value: str, *, integer: bool) -> float:
    try:
        number = float(int(value)) if integer else float(value)
    except ValueError:
        what = "an integer" if integer else "a number"
        extra = " or a google.rpc.Code name" if field == "error.code" else ""
        raise InvalidArgument(f"filter: {field} needs {what}{extra}, got {echo(value)}") from None
    if not math.isfinite(number) or abs(number) > MAX_ATTEMPT:
        raise InvalidArgument(f"filter: {field} value {echo(value)} is out of range")
    return number


def result_of(state: OperationState) -> str:
    """running | succeeded | failed | cancelled: the `result` filter field, and the word
    an ingest answer says (`tracker.stores.base.status_of`)."""
    return columns(state)[0]


def columns(state: OperationState) -> tuple[str, int, float, int]:
    """(result, error_code, percent, attempt) of a state: what a store writes beside its
    blobs on every save, so without `facts`' end time (a slow conversion, and the stores
    keep the end time from the state themselves)."""
    attempt = state.attempt or 1
    if not state.done:
        return "running", state.error.code, state.percent, attempt  # 0: no error set
    if state.HasField("response"):
        return "succeeded", 0, 100.0, attempt
    code = state.error.code
    return ("cancelled" if code == code_pb2.CANCELLED else "failed"), code, state.percent, attempt


def facts(state: OperationState) -> dict[str, Any]:
    """The Row fields of this module for a stored state."""
    result, error_code, percent, attempt = columns(state)
    return {
        "result": result,
        "error_code": error_code,
        "end_time": state.end_time.ToDatetime(UTC) if state.done else None,
        "percent": percent,
        "attempt": attempt,
    }


def evaluate(expr: Cmp, row: Row) -> bool:
    actual = getattr(row, ATTRIBUTE[expr.field])
    if actual is None:  # end_time of a running operation
        return False
    value = expr.value
    if isinstance(value, datetime) != isinstance(actual, datetime):
        return False
    return COMPARE[expr.op](actual, value)


__all__ = ["ATTRIBUTE", "COMPARE", "columns", "evaluate", "facts", "result_of", "typed"]
