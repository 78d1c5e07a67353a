"""The cluster client reads the command table once per process, not on every re-initialisation
(which redis-py runs after each connection error, i.e. over and over during a failover)."""

from __future__ import annotations

import redis as sync_redis
from redis.asyncio.cluster import RedisCluster

from dsp.features.connect import CommandTableOnce, async_client


def _command_calls(port: int) -> int:
    r = sync_redis.Redis(port=port)
    try:
        stats = r.info("commandstats")
        return int(stats.get("cmdstat_command", {}).get("calls", 0))
    finally:
        r.close()


async def test_cluster_client_reads_the_command_table_once(cluster_port: int) -> None:
    client = async_client(f"redis://127.0.0.1:{cluster_port}/0", cluster=True)
    assert isinstance(client, RedisCluster)
    try:
        assert isinstance(client.commands_parser, CommandTableOnce)
        await client.set(b"k", b"v")
        assert client.commands_parser.commands  # loaded by the first initialisation
        before = _command_calls(cluster_port)
        for _ in range(3):  # what a connection error triggers: a full re-initialisation
            client._initialize = True
            await client.initialize()
            assert await client.get(b"k") == b"v"
        assert _command_calls(cluster_port) == before
        assert client.commands_parser.node is client.nodes_manager.default_node
    finally:
        await client.aclose()
