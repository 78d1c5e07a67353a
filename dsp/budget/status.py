"""Read-only view of the money side in Redis, for the console: today's budget and spend.

    client = open_client("redis://127.0.0.1:6379/0")
    status = await day_status(client, "quickloan-prime", day)   # {"budget": micros, "spent": ..}

Reads the day ledger hash (:func:`dsp.budget.keys.day_key`) with one HMGET; never writes.
"""

from __future__ import annotations

from typing import Any

from dsp.budget.keys import day_key

FIELDS = ("budget", "spent", "out")


def open_client(url: str) -> Any:
    import redis.asyncio as aioredis

    return aioredis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)


async def day_status(client: Any, campaign_id: str, day: int) -> dict[str, int]:
    """``budget``, ``spent`` (committed) and ``out`` (held by live leases), micros; 0 if unset."""
    values = await client.hmget(day_key(campaign_id, day), *FIELDS)
    return {f: int(v) if v is not None else 0 for f, v in zip(FIELDS, values, strict=True)}
