"""Shared fixtures: a real redis-server per test session on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from dsp.features.store import FeatureStore
from dsp.testing.redis_server import RedisServer

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
CORPUS = SHARED / "openrtb-corpus"
DATASETS = SHARED / "datasets"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def cluster_port() -> Iterator[int]:
    """A one-node Redis Cluster owning every slot: it still enforces the cluster rules that matter
    (CROSSSLOT for multi-key commands and scripts, the cluster protocol for clients)."""
    import time

    import redis as sync_redis

    from dsp.testing.redis_server import free_port

    # The cluster bus defaults to port + 10000, which can exceed 65535 for an ephemeral port:
    # give it its own free port.
    with RedisServer(extra_args=["--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                                 "--cluster-config-file", "nodes.conf"]) as srv:
        client = sync_redis.Redis(port=srv.port)
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + 10
        while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
            if time.monotonic() > deadline:
                pytest.fail("one-node cluster did not become ready")
            time.sleep(0.05)
        client.close()
        yield srv.port


@pytest.fixture()
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A clean database for each test."""
    import redis as sync_redis

    client = sync_redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture()
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture()
async def stores() -> AsyncIterator[Callable[..., FeatureStore]]:
    """Build FeatureStores (``stores(client, **kw)``); each one's own connections are closed after
    the test (the clients passed in stay the test's)."""
    made: list[FeatureStore] = []

    def make(client: Any, **kw: Any) -> FeatureStore:
        store = FeatureStore(client, **kw)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()
