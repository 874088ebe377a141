"""A client process whose credentials come from Application Default Credentials.

    python -m tests.id_token_client sync|async|async-hold URL AUDIENCE NAME METADATA_HOST

google-auth reads GCE_METADATA_HOST once, when it is first imported, so a test pointing
it at `tests.tokens.MetadataServer` runs the client in a process of its own, started
with that environment. Prints one JSON line of what the client saw.

`async-hold` publishes while the metadata server holds the mint, and releases it from
the event loop: that works only if minting leaves the loop free.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from typing import Any

from tracker.client import AsyncTrackerClient, TrackerClient, metadata


def _get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=30) as response:
        response.read()


def sync(url: str, audience: str, name: str) -> dict[str, Any]:
    with TrackerClient(url, id_token_audience=audience) as client:
        outcomes = [client.created(name).outcome, client.progress(name, 50).outcome]
        meta = metadata(client.get(name))
        listed = [op.name for op in client.list(f'name = "{name}"')]
    return {"outcomes": outcomes, "percent": meta.percent if meta else None, "listed": listed}


async def async_(url: str, audience: str, name: str) -> dict[str, Any]:
    async with AsyncTrackerClient(url, id_token_audience=audience) as client:
        outcomes = [(await client.created(name)).outcome, (await client.progress(name, 50)).outcome]
        meta = metadata(await client.get(name))
        listed = [op.name async for op in client.list(f'name = "{name}"')]
    return {"outcomes": outcomes, "percent": meta.percent if meta else None, "listed": listed}


async def async_hold(url: str, audience: str, name: str, host: str) -> dict[str, Any]:
    async with AsyncTrackerClient(url, id_token_audience=audience) as client:
        publishing = asyncio.ensure_future(client.created(name))
        await asyncio.to_thread(_get, f"http://{host}/test/arrived")
        await asyncio.to_thread(_get, f"http://{host}/test/release")
        return {"outcomes": [(await publishing).outcome]}


def main(argv: list[str]) -> int:
    mode, url, audience, name, host = argv
    if mode == "sync":
        result = sync(url, audience, name)
    elif mode == "async":
        result = asyncio.run(async_(url, audience, name))
    else:
        result = asyncio.run(async_hold(url, audience, name, host))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
