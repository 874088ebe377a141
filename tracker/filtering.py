"""ListOperations filters: the AIP-160 subset the tracker supports, parsed once.

Supported, combined with AND, OR (binds tighter than AND, as in AIP-160), NOT or a
leading `-`, and parentheses:

    done = true | done = false
    name = "operations/batch-*"          (trailing * is a prefix match)
    operation_type = "export"            parent = "projects/p"
    labels.env = "prod"   labels.env != "dev"   labels.env:*   labels:env   parent:*
    create_time > "2026-01-01T00:00:00Z" (also update_time, end_time; <, <=, >, >=; the
    time may go unquoted)
    result = "failed"  (or state; running | succeeded | failed | cancelled)
    error.code = 5     error.code = "NOT_FOUND"      percent >= 50     attempt > 1

Anything else is an `InvalidArgument` whose message points at the problem.
`matches` evaluates it in Python: every store checks each row it reads with it, after
reading with what its SQL can say of the filter (`tracker.stores.query`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from tracker.errors import InvalidArgument, echo
from tracker.v1.operation_pb2 import OperationState

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<lparen>\() | (?P<rparen>\)) |
        (?P<op><=|>=|!=|=|<|>|:) |
        (?P<string>"(?:[^"\\]|\\.)*") |
        (?P<time>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})) |
        (?P<minus>-(?=[A-Za-z(])) |
        (?P<word>[A-Za-z0-9_.*/@+-]+)
    )""",
    re.VERBOSE,
)

STRING_FIELDS: Final = ("name", "operation_type", "parent")
TIME_FIELDS: Final = ("create_time", "update_time")
# Fields of issue #12: evaluated by `tracker.filter_fields` (end_time is absent while
# an operation runs: every comparison with it is then false).
RESULTS: Final = ("running", "succeeded", "failed", "cancelled")
NUMBER_FIELDS: Final = ("error.code", "percent", "attempt")
MAX_FILTER_LENGTH: Final = 2048
# Nesting of NOT and parentheses; deeper input would overflow Python's stack or the SQL parser's.
MAX_FILTER_DEPTH: Final = 32


@dataclass(frozen=True)
class Cmp:
    # done, name, operation_type, parent, create_time, update_time, end_time, labels.<k>,
    # labels, result, error.code, percent, attempt
    field: str
    op: str  # = != : < <= > >=
    value: str | bool | datetime | float | None  # None: ":*" (has)


@dataclass(frozen=True)
class Not:
    expr: Expr


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND | OR
    exprs: tuple[Expr, ...]


Expr = Cmp | Not | BoolOp


def tokens(text: str, pattern: re.Pattern[str] | None = None) -> list[tuple[str, str]]:
    """(group name, text) of each token of `pattern` (default: this grammar's) in
    `text`, whitespace between them skipped; a character no token matches is a 400."""
    token = pattern or _TOKEN
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = token.match(text, pos)
        if not m or m.end() == pos:
            raise InvalidArgument(
                f"filter: unexpected character at {pos}: {echo(text[pos : pos + 20])}"
            )
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = tokens(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise InvalidArgument("filter: unexpected end")
        self.i += 1
        return tok

    def parse(self) -> Expr:
        expr = self.conjunction()
        if self.peek() is not None:
            raise InvalidArgument(f"filter: unexpected {echo(self.peek()[1])}")  # type: ignore[index]
        return expr

    def conjunction(self) -> Expr:
        parts = [self.disjunction()]
        while True:
            tok = self.peek()
            if tok == ("word", "AND"):
                self.take()
            elif tok is None or tok[0] == "rparen":
                break
            # AIP-160: adjacent terms are an implicit AND.
            parts.append(self.disjunction())
        return parts[0] if len(parts) == 1 else BoolOp("AND", tuple(parts))

    def disjunction(self) -> Expr:
        parts = [self.unary()]
        while self.peek() == ("word", "OR"):
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else BoolOp("OR", tuple(parts))

    def unary(self) -> Expr:
        tok = self.peek()
        if tok == ("word", "NOT") or (tok is not None and tok[0] in ("minus", "lparen")):
            self.depth += 1
            if self.depth > MAX_FILTER_DEPTH:
                raise InvalidArgument(f"filter: NOT and ( nested deeper than {MAX_FILTER_DEPTH}")
            try:
                return self.nested()
            finally:
                self.depth -= 1
        return self.comparison()

    def nested(self) -> Expr:
        if self.take()[0] != "lparen":  # NOT or -
            return Not(self.unary())
        expr = self.conjunction()
        if self.take()[0] != "rparen":
            raise InvalidArgument("filter: missing )")
        return expr

    def comparison(self) -> Cmp:
        kind, field = self.take()
        if kind != "word":
            raise InvalidArgument(f"filter: expected a field name, got {echo(field)}")
        kind, op = self.take()
        if kind != "op":
            raise InvalidArgument(
                f"filter: expected an operator after {echo(field)}, got {echo(op)}"
            )
        kind, raw = self.take()
        if kind == "time":  # AIP-160: a timestamp may go unquoted (RFC 3339)
            kind = "word"
        if kind not in ("word", "string"):
            raise InvalidArgument(f"filter: expected a value after {field} {op}")
        literal = kind == "string"
        value = _unquote(raw) if literal else raw
        return _typed(field, op, value, literal)


def _unquote(raw: str) -> str:
    return re.sub(r"\\(.)", r"\1", raw[1:-1])


def _typed(field: str, op: str, value: str, literal: bool) -> Cmp:
    if field == "done":
        if op not in ("=", "!=") or value not in ("true", "false"):
            raise InvalidArgument("filter: done takes = or != with true or false")
        return Cmp(field, op, value == "true")
    if field == "labels":
        if op != ":":
            raise InvalidArgument('filter: use labels:"key" or labels.key = "value"')
        return Cmp("labels", ":", value)
    if field.startswith("labels."):
        key = field[len("labels.") :]
        if not key:
            raise InvalidArgument("filter: labels. needs a key")
        if op == ":" and value == "*" and not literal:
            return Cmp(field, ":", None)
        if op not in ("=", "!=", ":"):
            raise InvalidArgument(f"filter: {field} takes =, != or :")
        return Cmp(field, "=" if op == ":" else op, _check_wildcard(value))
    if field in STRING_FIELDS:
        if op == ":":
            # AIP-160's has on a singular field is presence: `field:*`. Anything after the
            # `:` other than `*` has no AIP-160 meaning on a string; refused, not guessed.
            if value == "*" and not literal:
                return Cmp(field, "!=", "")
            raise InvalidArgument(
                f"filter: {field}:{echo(value)} is not an AIP-160 test of a string field:"
                f' use {field} = "{value}" (equal; a trailing * is a prefix match)'
                f" or {field}:* (is set)"
            )
        if op not in ("=", "!="):
            raise InvalidArgument(f"filter: {field} takes =, != or :*")
        return Cmp(field, op, _check_wildcard(value))
    if field in ("result", "state", *NUMBER_FIELDS):
        from tracker.filter_fields import typed

        return typed(field, op, value)
    if field in (*TIME_FIELDS, "end_time"):
        if op not in ("<", "<=", ">", ">=", "=", "!="):
            raise InvalidArgument(f"filter: {field} takes a comparison")
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
            # In UTC here, once: an offset can carry a time past year 9999 or before year 1.
            when = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
        except ValueError:
            raise InvalidArgument(
                f"filter: {field} needs an RFC 3339 time, got {echo(value)}"
            ) from None
        except OverflowError:
            raise InvalidArgument(
                f"filter: {field} time {echo(value)} is not between 0001-01-01T00:00:00Z"
                " and 9999-12-31T23:59:59Z"
            ) from None
        return Cmp(field, op, when)
    plain = ("done", *STRING_FIELDS, *TIME_FIELDS, "end_time", "labels.<key>")
    known = ", ".join((*plain, "result", "state", *NUMBER_FIELDS))
    raise InvalidArgument(f"filter: unknown field {echo(field)}; known: {known}")


def _check_wildcard(value: str) -> str:
    if "*" in value[:-1]:
        raise InvalidArgument("filter: only a trailing * wildcard (prefix match) is supported")
    return value


def parse(text: str | None) -> Expr | None:
    """Parse a filter; empty means everything."""
    if not text or not text.strip():
        return None
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidArgument(f"filter longer than {MAX_FILTER_LENGTH} characters")
    return _Parser(text).parse()


# ---- evaluation -------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """The filterable view of an operation."""

    name: str
    done: bool
    operation_type: str
    parent: str
    labels: Mapping[str, str]
    create_time: datetime
    update_time: datetime
    result: str = "running"  # RESULTS
    error_code: int = 0  # 0 unless it ended with an error
    end_time: datetime | None = None  # None while running
    percent: float = 0.0  # as OperationMetadata.percent serves it
    attempt: int = 1


def row_of(state: OperationState) -> Row:
    """The filterable view of a stored state (what `matches` reads)."""
    from tracker.filter_fields import facts

    return Row(
        **facts(state),
        name=state.name,
        done=state.done,
        operation_type=state.operation_type,
        parent=state.parent,
        labels=dict(state.labels),
        create_time=state.create_time.ToDatetime(UTC),
        update_time=state.update_time.ToDatetime(UTC),
    )


def _str_match(actual: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return actual.startswith(pattern[:-1])
    return actual == pattern


def matches(expr: Expr | None, row: Row) -> bool:
    if expr is None:
        return True
    if isinstance(expr, Not):
        return not matches(expr.expr, row)
    if isinstance(expr, BoolOp):
        results = (matches(e, row) for e in expr.exprs)
        return all(results) if expr.op == "AND" else any(results)
    f, op, v = expr.field, expr.op, expr.value
    if f in ("result", "end_time", *NUMBER_FIELDS):
        from tracker.filter_fields import evaluate

        return evaluate(expr, row)
    if f == "done":
        return (row.done == v) == (op == "=")
    if f == "labels":
        return str(v) in row.labels
    if f.startswith("labels."):
        key = f[len("labels.") :]
        if v is None:
            return key in row.labels
        hit = key in row.labels and _str_match(row.labels[key], str(v))
        return hit if op == "=" else not hit
    if f in STRING_FIELDS:
        hit = _str_match(getattr(row, f), str(v))
        return hit if op == "=" else not hit
    actual: datetime = getattr(row, f)
    assert isinstance(v, datetime)
    compare: dict[str, Callable[[datetime, datetime], bool]] = {
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
    }
    return compare[op](actual, v)
