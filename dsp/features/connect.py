"""Redis clients: the one place a connection is built (server, commands, benchmarks, seeding).

    client = async_client(url, cluster=False)      # redis.asyncio.Redis | RedisCluster
    client = sync_client(url)                      # redis.Redis (bulk writes, commands)

``DEFAULT_REDIS_URL`` is written here once. Every key the bidder touches is designed for Redis
Cluster (hash tags); with ``cluster`` the cluster client routes them. Timeouts are short on
purpose: the bid path degrades (user unknown) rather than waits.
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
RedisError = redis.RedisError
AnyAsyncRedis = aioredis.Redis | AsyncRedisCluster


def async_client(url: str, *, cluster: bool = False, timeout_s: float = 1.0) -> AnyAsyncRedis:
    """One client per process (connections are made lazily)."""
    if cluster:
        return AsyncRedisCluster.from_url(url, decode_responses=False, socket_connect_timeout=timeout_s,
                                          socket_timeout=timeout_s)
    return aioredis.Redis.from_url(url, decode_responses=False, socket_connect_timeout=timeout_s,
                                   socket_timeout=timeout_s)


def sync_client(url: str, *, cluster: bool = False,
                timeout_s: float | None = None) -> redis.Redis | RedisCluster:
    """A synchronous client for bulk writes and commands: one node, or a cluster via any node."""
    if cluster:
        return RedisCluster.from_url(url, socket_timeout=timeout_s)
    return redis.Redis.from_url(url, socket_timeout=timeout_s)
