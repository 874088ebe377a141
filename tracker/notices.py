"""Notices: what the tracker tells the work and its clients, decided where state changes.

Three kinds (`tracker.v1.Notice.Kind`): DONE (the operation ended), CANCEL (stop the
work: CancelOperation, or a parent's cancel), RESUME (start the given attempt: a retry
after a stall or a retryable failure, or the children's end). The pure state machine
returns the notices a transition causes; the store writes them to the outbox in the
same transaction, so a crash never loses one, and their ids stay the same on every redelivery.

Each notice is written once for the topics (target "") and once per webhook of the
operation that asked for its kind (target = the URL), and once per server-level
subscription whose kinds and filter it matches (target = "subscription:<name>"), so
that one failing receiver is retried on its own and never delays the others. Which of
these rows are written at all is `Wanted`: only what some configured sink will deliver.
Row ids are random, drawn when the row is written: the transaction that decides a
notice writes it once (stores serialize writers, so two processes never both decide the
same notice), and a redelivery reads the same row, so the same id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeAlias

from google.protobuf import timestamp_pb2
from google.rpc import status_pb2

from tracker import filtering
from tracker.v1 import events_pb2, operation_pb2

Notice = operation_pb2.Notice
Kind = Notice.Kind
Reason = Notice.Reason
KindValue: TypeAlias = operation_pb2.Notice.Kind
ReasonValue: TypeAlias = operation_pb2.Notice.Reason
DONE: Final = Notice.DONE
CANCEL: Final = Notice.CANCEL
RESUME: Final = Notice.RESUME

# The lower-case names used in webhooks' `notices`, in attributes and in docs.
KIND_NAMES: Final[dict[int, str]] = {DONE: "done", CANCEL: "cancel", RESUME: "resume"}
KINDS_BY_NAME: Final = {v: k for k, v in KIND_NAMES.items()}
REASON_NAMES: Final[dict[int, str]] = {
    Notice.STALLED: "stalled",
    Notice.FAILED: "failed",
    Notice.CHILDREN_DONE: "children_done",
    Notice.CANCEL_REQUESTED: "cancel_requested",
    Notice.PARENT_CANCELLED: "parent_cancelled",
    Notice.CHILD_FAILED: "child_failed",
}


def kind_name(kind: int) -> str:
    return KIND_NAMES.get(kind, "done")


SUBSCRIPTION_PREFIX: Final = "subscription:"  # target of a subscription's rows


@dataclass(frozen=True)
class Subscription:
    """A server-level webhook: every notice of `kinds` for an operation matching `filter`
    (the ListOperations filter language, parsed; None matches every operation)."""

    name: str
    url: str
    filter: filtering.Expr | None = None
    kinds: frozenset[int] = frozenset(KIND_NAMES)

    @property
    def target(self) -> str:
        return SUBSCRIPTION_PREFIX + self.name

    def wants(self, notice: Notice, operation: filtering.Row) -> bool:
        return notice.kind in self.kinds and filtering.matches(self.filter, operation)


@dataclass(frozen=True)
class Wanted:
    """Which notice rows to write: kinds some topic sink takes, whether per-operation
    webhook targets are delivered (a webhook sink is configured), and the server-level
    subscriptions."""

    kinds: frozenset[int] = frozenset()
    webhooks: bool = False
    subscriptions: tuple[Subscription, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.kinds) or self.webhooks or bool(self.subscriptions)


ALL: Final = Wanted(frozenset(KIND_NAMES), webhooks=True)
NOTHING: Final = Wanted()


def wanted(value: Wanted | bool) -> Wanted:
    """`True`/`False` (the older boolean `notify`) as a `Wanted`."""
    if isinstance(value, Wanted):
        return value
    return ALL if value else NOTHING


def make(
    kind: KindValue,
    operation: str,
    *,
    attempt: int,
    reason: ReasonValue = Notice.REASON_UNSPECIFIED,
    has_checkpoint: bool = False,
    operation_type: str = "",
    error: status_pb2.Status | None = None,
    children: operation_pb2.ChildrenSummary | None = None,
    not_before: datetime | None = None,
) -> Notice:
    notice = Notice(
        kind=kind,
        operation=operation,
        attempt=attempt,
        reason=reason,
        has_checkpoint=has_checkpoint,
        operation_type=operation_type,
    )
    if error is not None and error.code:
        notice.error.CopyFrom(error)
    if children is not None:
        notice.children.CopyFrom(children)
    if not_before is not None:
        ts = timestamp_pb2.Timestamp()
        ts.FromDatetime(not_before)
        notice.not_before.CopyFrom(ts)
    return notice


def targets(notice: Notice, webhooks: Iterable[events_pb2.Webhook]) -> list[Notice]:
    """The rows for one notice: the topics' (target "") and one per webhook that asked for
    its kind (a webhook with no `notices` asks for every kind)."""
    rows = [notice]
    name = kind_name(notice.kind)
    seen: set[str] = set()
    for hook in webhooks:
        url, kinds = hook.url, list(hook.notices)
        if not url or url in seen or (kinds and name not in kinds):
            continue
        seen.add(url)
        row = Notice()
        row.CopyFrom(notice)
        row.target = url
        rows.append(row)
    return rows


def keep(rows: Iterable[Notice], want: Wanted) -> list[Notice]:
    """The rows some configured sink delivers."""
    return [r for r in rows if (want.webhooks if r.target else r.kind in want.kinds)]


def subscribed(notice: Notice, operation: filtering.Row, want: Wanted) -> list[Notice]:
    """One row per subscription that wants this notice for this operation (pure: the
    filter is evaluated on the operation as the transaction leaves it)."""
    rows = []
    for subscription in want.subscriptions:
        if subscription.wants(notice, operation):
            row = Notice()
            row.CopyFrom(notice)
            row.target = subscription.target
            rows.append(row)
    return rows


__all__ = [
    "ALL",
    "CANCEL",
    "DONE",
    "KIND_NAMES",
    "NOTHING",
    "REASON_NAMES",
    "RESUME",
    "SUBSCRIPTION_PREFIX",
    "Notice",
    "Subscription",
    "Wanted",
    "keep",
    "kind_name",
    "make",
    "subscribed",
    "targets",
    "wanted",
]
