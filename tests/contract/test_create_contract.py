"""Tracker.create on every store backend: committed at once, idempotent by request id,
ALREADY_EXISTS rolled back inside the store's transaction (also when the group commit
shares that transaction with other requests)."""

from __future__ import annotations

import asyncio

import pytest

from tracker import errors
from tracker.service import Tracker
from tracker.stores.base import Store
from tracker.v1 import events_pb2


def created(operation_type: str = "export", **labels: str) -> events_pb2.Created:
    return events_pb2.Created(operation_type=operation_type, labels=labels)


def test_create_is_committed_idempotent_and_exclusive(store: Store) -> None:
    async def scenario() -> None:
        tracker = Tracker(store)
        first = await tracker.create(created(team="a"), operation_id="c-1", request_id="r1")
        assert first.name == "operations/c-1" and not first.done
        assert store.get("operations/c-1") is not None
        again = await tracker.create(created(team="a"), operation_id="c-1", request_id="r1")
        assert again == first
        with pytest.raises(errors.AlreadyExists):
            await tracker.create(created(), operation_id="c-1", request_id="r2")
        named = await tracker.create(created(), parent="projects/p/locations/l", request_id="x")
        retried = await tracker.create(created(), parent="projects/p/locations/l", request_id="x")
        assert named.name == retried.name
        assert named.name.startswith("projects/p/locations/l/operations/")
        # Ten requests for one name in one group: one wins, the rest are refused, and
        # nothing of the losers is written.
        outcomes = await asyncio.gather(
            *(
                tracker.create(created(str(i)), operation_id="c-race", request_id=f"q{i}")
                for i in range(10)
            ),
            return_exceptions=True,
        )
        won = [o for o in outcomes if not isinstance(o, BaseException)]
        assert len(won) == 1
        assert all(isinstance(o, errors.AlreadyExists) for o in outcomes if o not in won)
        stored = store.get("operations/c-race")
        assert stored is not None
        assert stored.state.operation_type == str(outcomes.index(won[0]))
        assert store.delete("operations/c-1")
        with pytest.raises(errors.AlreadyExists):
            await tracker.create(created(), operation_id="c-1", request_id="r3")

    asyncio.run(scenario())
