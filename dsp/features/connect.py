"""Redis clients: the one place a connection is built (server, commands, benchmarks, seeding).

    client = async_client(url, cluster=False)      # redis.asyncio.Redis | RedisCluster
    client = sync_client(url)                      # redis.Redis (bulk writes, commands)

``DEFAULT_REDIS_URL`` is written here once. Every key the bidder touches is designed for Redis
Cluster (hash tags); with ``cluster`` the cluster client routes them. Timeouts are short on
purpose: the bid path degrades (user unknown) rather than waits.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from redis._parsers.commands import AsyncCommandsParser
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
RedisError = redis.RedisError
AnyAsyncRedis = aioredis.Redis | AsyncRedisCluster


class CommandTableOnce(AsyncCommandsParser):
    """redis-py's cluster client re-reads the slot map after every connection error, and each time
    also fetches and parses ``COMMAND`` (the whole command table, in Python): during a shard's
    failover (1-3 s of connection errors) that was about half of ~0.8 s of re-initialisation CPU
    in one run, taken from the event loop in slices of tens of milliseconds (loop lag of 57-82 ms
    after a master was killed, docs/operations.md). The table does not change while a shard fails
    over, so it is read once per process; re-initialisations only point the parser at the new
    default node. (A server upgrade that adds commands is picked up by a restart.)"""

    __slots__ = ()

    async def initialize(self, node: Any = None) -> None:
        if self.commands:
            if node is not None:
                self.node = node
            return
        await super().initialize(node)


def async_client(url: str, *, cluster: bool = False, timeout_s: float = 1.0) -> AnyAsyncRedis:
    """One client per process (connections are made lazily)."""
    if cluster:
        client = AsyncRedisCluster.from_url(url, decode_responses=False,
                                            socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        client.commands_parser = CommandTableOnce()
        return client
    return aioredis.Redis.from_url(url, decode_responses=False, socket_connect_timeout=timeout_s,
                                   socket_timeout=timeout_s)


def sync_client(url: str, *, cluster: bool = False,
                timeout_s: float | None = None) -> redis.Redis | RedisCluster:
    """A synchronous client for bulk writes and commands: one node, or a cluster via any node."""
    if cluster:
        return RedisCluster.from_url(url, socket_timeout=timeout_s)
    return redis.Redis.from_url(url, socket_timeout=timeout_s)
