"""The dead-letter API (tracker.v1.DeadLetters, schemas/proto/tracker/v1/admin.proto) over
a `Tracker`: one implementation that the gRPC service and the HTTP/JSON routes both call.

Each method takes the request message and returns the response message, so both
transports answer alike and the JSON is the proto3 mapping of the same message. Errors
are the project's (tracker.errors); `tracker.api.status` answers them on either side.

Replaying parses the stored attributes and body as the Pub/Sub routes do, then applies
through `Tracker.ingest` (route "replay"): hooks, waiters and notifications as for any
event. A replay that fails again leaves the dead letter where it is and says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from google.protobuf import empty_pb2

from tracker.bindings import parse_pubsub
from tracker.dead_letter_filter import decode_token, encode_token, parse_filter, valid_id
from tracker.errors import InvalidArgument, InvalidEvent, NotFound, Unavailable, echo
from tracker.events import Event
from tracker.service import Tracker
from tracker.stores.base import ApplyResult, DeadLetter
from tracker.v1 import admin_pb2

log = logging.getLogger(__name__)

ROUTE: Final = "replay"
PREFIX: Final = "deadLetters/"
DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 1000
DEFAULT_REPLAY_LIMIT: Final = 100
MAX_REPLAY_LIMIT: Final = 1000
MAX_MESSAGES: Final = 100
# Attributes the pull subscriber adds when it publishes poison to --dead-letter-topic.
ADDED_ATTRIBUTES: Final = ("tracker-reason", "tracker-detail", "tracker-message-id")


def to_message(letter: DeadLetter) -> admin_pb2.DeadLetter:
    message = admin_pb2.DeadLetter(
        name=PREFIX + letter.id,
        id=letter.id,
        route=letter.route,
        reason=letter.reason,
        detail=letter.detail,
        message_id=letter.message_id,
        attributes=letter.attributes,
        body=letter.body,
    )
    message.received_time.FromDatetime(letter.received_at)
    with contextlib.suppress(UnicodeDecodeError):
        message.body_text = letter.body.decode("utf-8")
    return message


def letter_id(name: str) -> str:
    """The id of "deadLetters/<id>" (a bare id is taken too)."""
    value = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    if not value:
        raise InvalidArgument("name is required: deadLetters/<id>")
    if not valid_id(value) or "/" in value:
        raise InvalidArgument(f"{echo(name)} is not a dead-letter name (deadLetters/<id>)")
    return value


def _size(value: int, default: int, limit: int, what: str) -> int:
    if value < 0:
        raise InvalidArgument(f"{what} must not be negative")
    return min(value or default, limit)


class DeadLetterService:
    """tracker.v1.DeadLetters over one `Tracker` (its store, rules and ingest)."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.store = tracker.store

    async def _get(self, name: str) -> DeadLetter:
        key = letter_id(name)
        letter = await asyncio.to_thread(self.store.get_dead_letter, key)
        if letter is None:
            raise NotFound(f"dead letter {echo(key)} not found")
        return letter

    # ---- reads ---------------------------------------------------------------------------

    async def ListDeadLetters(
        self, request: admin_pb2.ListDeadLettersRequest
    ) -> admin_pb2.ListDeadLettersResponse:
        """Newest first (received time, then id, descending)."""
        size = _size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, "page_size")
        query = parse_filter(request.filter)
        after = (
            decode_token(request.page_token, request.filter, "newest")
            if request.page_token
            else None
        )
        rows = await asyncio.to_thread(
            self.store.list_dead_letters, replace(query, after=after, limit=size)
        )
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = encode_token((rows[-1].received_at, rows[-1].id), request.filter, "newest")
        return admin_pb2.ListDeadLettersResponse(
            dead_letters=[to_message(r) for r in rows], next_page_token=token
        )

    async def GetDeadLetter(self, request: admin_pb2.GetDeadLetterRequest) -> admin_pb2.DeadLetter:
        return to_message(await self._get(request.name))

    # ---- actions -------------------------------------------------------------------------

    async def DeleteDeadLetter(self, request: admin_pb2.DeleteDeadLetterRequest) -> empty_pb2.Empty:
        key = letter_id(request.name)
        if not await asyncio.to_thread(self.store.remove_dead_letter, key):
            raise NotFound(f"dead letter {echo(key)} not found")
        return empty_pb2.Empty()

    def _event(self, letter: DeadLetter) -> Event:
        return parse_pubsub(
            letter.attributes, letter.body, self.tracker.rules, received=letter.received_at
        )

    async def ReplayDeadLetter(
        self, request: admin_pb2.ReplayDeadLetterRequest
    ) -> admin_pb2.ReplayDeadLetterResponse:
        letter = await self._get(request.name)
        try:
            result = (await self.tracker.ingest([self._event(letter)], route=ROUTE)).results[0]
        except Unavailable:
            raise
        except Exception as exc:
            failure = self.tracker.as_poison(ROUTE, exc)
            raise InvalidArgument(
                f"dead letter {letter.id} failed again: {failure.reason}: {failure.message}",
                reason=failure.reason,
                metadata={"deadLetter": letter.id},
            ) from None
        await asyncio.to_thread(self.store.remove_dead_letter, letter.id)
        return admin_pb2.ReplayDeadLetterResponse(
            id=letter.id,
            operation=result.operation,
            outcome=result.outcome.value,
            state=result.status.state if result.status else "",
        )

    async def _apply_each(self, events: Sequence[Event]) -> list[ApplyResult | InvalidEvent]:
        """Each event's result or why it can never apply; Unavailable propagates."""
        try:
            return await self.tracker.ingest_each(events, route=ROUTE)
        except Unavailable:
            raise
        except Exception:  # not one of ours: find which, one at a time
            out: list[ApplyResult | InvalidEvent] = []
            for event in events:
                try:
                    out += (await self.tracker.ingest([event], route=ROUTE)).results
                except Unavailable:
                    raise
                except Exception as exc:
                    out.append(self.tracker.as_poison(ROUTE, exc))
            return out

    async def ReplayDeadLetters(
        self, request: admin_pb2.ReplayDeadLettersRequest
    ) -> admin_pb2.ReplayDeadLettersResponse:
        """The matching dead letters, oldest first, at most `limit` per call; the token
        goes on past the last one looked at (those that failed again stay behind it)."""
        limit = _size(request.limit, DEFAULT_REPLAY_LIMIT, MAX_REPLAY_LIMIT, "limit")
        query = parse_filter(request.filter)
        after = (
            decode_token(request.page_token, request.filter, "oldest")
            if request.page_token
            else None
        )
        rows = await asyncio.to_thread(
            self.store.list_dead_letters,
            replace(query, after=after, limit=limit, oldest_first=True),
        )
        token = ""
        if len(rows) > limit:
            rows = rows[:limit]
            token = encode_token((rows[-1].received_at, rows[-1].id), request.filter, "oldest")
        failed: dict[str, InvalidEvent] = {}
        parsed: list[tuple[DeadLetter, Event]] = []
        for letter in rows:
            try:
                parsed.append((letter, self._event(letter)))
            except Exception as exc:
                failed[letter.id] = self.tracker.as_poison(ROUTE, exc)
        done: list[str] = []
        if not request.dry_run:
            results = await self._apply_each([event for _, event in parsed])
            for (letter, _), result in zip(parsed, results, strict=True):
                if isinstance(result, InvalidEvent):
                    failed[letter.id] = result
                else:
                    done.append(letter.id)
            if done:
                await asyncio.to_thread(self.store.remove_dead_letters, done)
        return admin_pb2.ReplayDeadLettersResponse(
            matched=len(rows),
            replayed=len(done),
            failed=[
                admin_pb2.ReplayFailure(
                    id=r.id, reason=failed[r.id].reason, message=failed[r.id].message
                )
                for r in rows
                if r.id in failed
            ],
            next_page_token=token,
        )

    async def PurgeDeadLetters(
        self, request: admin_pb2.PurgeDeadLettersRequest
    ) -> admin_pb2.PurgeDeadLettersResponse:
        query = parse_filter(request.filter)
        matched = await asyncio.to_thread(self.store.purge_dead_letters, query, dry_run=True)
        if request.dry_run:
            return admin_pb2.PurgeDeadLettersResponse(matched=matched, purged=0)
        purged = await asyncio.to_thread(self.store.purge_dead_letters, query)
        log.info("purged %d dead letters (filter %s)", purged, echo(request.filter))
        return admin_pb2.PurgeDeadLettersResponse(matched=max(matched, purged), purged=purged)

    async def ReplayMessages(
        self, request: admin_pb2.ReplayMessagesRequest
    ) -> admin_pb2.ReplayMessagesResponse:
        """Messages pulled from the dead-letter topic: each applied, or recorded as a
        dead letter (route "replay") when it fails again; with dry_run only parsed."""
        if len(request.messages) > MAX_MESSAGES:
            raise InvalidArgument(f"at most {MAX_MESSAGES} messages per call")
        answer = admin_pb2.ReplayMessagesResponse()
        parsed: list[tuple[admin_pb2.ReplayMessageResult, dict[str, str], bytes, Event]] = []
        for message in request.messages:
            attributes = {k: v for k, v in message.attributes.items() if k not in ADDED_ATTRIBUTES}
            result = answer.results.add(message_id=message.message_id)
            try:
                event = parse_pubsub(attributes, message.data, self.tracker.rules)
            except Exception as exc:
                failure = self.tracker.as_poison(ROUTE, exc)
                if request.dry_run:
                    result.outcome, result.reason = "invalid", failure.reason
                    result.message = failure.message
                else:
                    await self._record(result, failure, attributes, message)
                continue
            result.operation = event.operation
            if request.dry_run:
                result.outcome = "valid"
            else:
                parsed.append((result, attributes, message.data, event))
        applied = await self._apply_each([p[3] for p in parsed]) if parsed else []
        for (result, attributes, data, _), outcome in zip(parsed, applied, strict=True):
            if isinstance(outcome, InvalidEvent):
                message = admin_pb2.PubsubMessage(message_id=result.message_id, data=data)
                message.attributes.update(attributes)
                await self._record(result, outcome, attributes, message)
            else:
                result.outcome = outcome.outcome.value
        return answer

    async def _record(
        self,
        result: admin_pb2.ReplayMessageResult,
        failure: InvalidEvent,
        attributes: dict[str, str],
        message: admin_pb2.PubsubMessage,
    ) -> None:
        letter = await self.tracker.dead_letter(
            route=ROUTE,
            exc=failure,
            attributes=attributes,
            body=message.data,
            message_id=message.message_id,
        )
        result.outcome, result.reason = "dead_lettered", failure.reason
        result.message, result.dead_letter = failure.message, letter.id


__all__ = ["DeadLetterService", "letter_id", "to_message"]
