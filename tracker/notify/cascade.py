"""Cancelling a parent cancels its children: an outbox sink, so that a crash between the
parent's cancel and its children's is resumed from the outbox, never lost.

The parent's cancel notice (written in the transaction that cancelled it, or that failed
it fast) carries its children's counts; when it has children, this sink cancels every one
not yet done, page by page, each in its own transaction with reason PARENT_CANCELLED, so
each child's worker gets its own cancel notice and grandchildren follow the same way.
Children started later under the cancelled parent are cancelled as they are counted
(`tracker.stores.changes`). Cancelling a child that ended meanwhile changes nothing, so a
redelivered notice is harmless.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Final

from tracker.errors import NotFound
from tracker.notices import CANCEL
from tracker.stores.base import OutboxItem

PAGE: Final = 200


class ChildrenCascade:
    """`children(parent, after)`: names of its not-done children after `after`, a page;
    `cancel(name)`: cancel one child as its parent's cancel (hooks and all)."""

    name = "children"
    kinds: frozenset[int] = frozenset({CANCEL})
    targets = False

    def __init__(
        self,
        children: Callable[[str, str], Awaitable[list[str]]],
        cancel: Callable[[str], Awaitable[object]],
    ) -> None:
        self.children = children
        self.cancel = cancel

    async def deliver(self, item: OutboxItem) -> None:
        notice = item.notice
        if not notice.children.total or notice.children.done >= notice.children.total:
            return
        after = ""
        while True:
            names = await self.children(notice.operation, after)
            for name in names:
                with contextlib.suppress(NotFound):  # deleted meanwhile
                    await self.cancel(name)
            if len(names) < PAGE:
                return
            after = names[-1]


__all__ = ["PAGE", "ChildrenCascade"]
