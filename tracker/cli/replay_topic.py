"""`tracker dead-letters replay-topic`: the Pub/Sub side (pull, ack, nack).

Messages are pulled in batches and handed to `post` (the tracker's
`POST /v1/deadLetters:replayMessages`); a message is acked only once the tracker has
answered for it (applied, or recorded in its dead-letter table). If `post` fails (the
tracker is unreachable, refuses or is unavailable), the batch is nacked, so it is
redelivered and nothing is lost, and the error ends the command. With `dry_run` every
message is held until the end and then nacked: the subscription keeps them all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Final

import google.cloud.pubsub_v1 as pubsub_v1
from google.api_core import exceptions as gexc

from tracker import gcp
from tracker.errors import ConfigError, clip

PULL_BATCH: Final = 100
PULL_TIMEOUT: Final = 10.0
Post = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def replay_subscription(
    post: Post,
    subscription: str,
    *,
    max_messages: int,
    dry_run: bool,
    subscriber: Any = None,
) -> tuple[Counter[str], list[str]]:
    """Pull up to `max_messages`, post them, ack what was answered for; returns the
    count of each outcome and a line per message that failed (again)."""
    from tracker.cli.dead_letters import encode_message

    client = subscriber or gcp.client(f"replay-topic {subscription}", pubsub_v1.SubscriberClient)
    counts: Counter[str] = Counter()
    lines: list[str] = []
    held: list[str] = []
    handled = 0
    try:
        while handled < max_messages:
            received = _pull(client, subscription, min(PULL_BATCH, max_messages - handled))
            if not received:
                break
            ack_ids = {r.message.message_id: r.ack_id for r in received}
            try:
                results = post([encode_message(r.message) for r in received])
            except BaseException:
                _nack(client, subscription, list(ack_ids.values()))
                raise
            answered = [ack_ids[r["messageId"]] for r in results if r["messageId"] in ack_ids]
            if dry_run:
                held += list(ack_ids.values())
            else:
                if answered:
                    client.acknowledge(subscription=subscription, ack_ids=answered)
                missing = [a for a in ack_ids.values() if a not in answered]
                _nack(client, subscription, missing)
            for result in results:
                counts[result["outcome"]] += 1
                if result["outcome"] in ("dead_lettered", "invalid"):
                    where = f" (dead letter {result['deadLetter']})" if result["deadLetter"] else ""
                    lines.append(
                        f"{result['outcome']} {result['messageId']}: {result['reason']}:"
                        f" {result['message']}{where}"
                    )
            handled += len(received)
    finally:
        _nack(client, subscription, held)
        if subscriber is None:
            client.close()
    return counts, lines


def _pull(client: Any, subscription: str, count: int) -> list[Any]:
    try:
        response = client.pull(subscription=subscription, max_messages=count, timeout=PULL_TIMEOUT)
    except gexc.DeadlineExceeded:
        return []
    except gexc.GoogleAPICallError as exc:
        raise ConfigError(f"replay-topic {subscription}: {clip(exc.message, 300)}") from None
    return list(response.received_messages)


def _nack(client: Any, subscription: str, ack_ids: list[str]) -> None:
    if ack_ids:
        client.modify_ack_deadline(
            subscription=subscription, ack_ids=ack_ids, ack_deadline_seconds=0
        )


__all__ = ["replay_subscription"]
