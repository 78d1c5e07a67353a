"""The key layout and the store on Redis Cluster (a one-node cluster owning every slot).

A one-node cluster still enforces the cluster rules that matter here: multi-key commands and
scripts across slots fail with CROSSSLOT, and clients must use the cluster protocol.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import redis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from dsp.clock import Deadline
from dsp.features.contract import N_FEATURES
from dsp.features.keys import caps_key, user_key
from dsp.features.store import FeatureStore
from dsp.features.writer import write_rows

Stores = Callable[..., FeatureStore]  # the conftest `stores` fixture


def test_user_keys_share_a_slot_and_users_spread_over_slots(cluster_port: int) -> None:
    client = redis.Redis(port=cluster_port)
    keys = [user_key(f"user-{i}") for i in range(200)]
    slots = {client.execute_command("CLUSTER", "KEYSLOT", k) for k in keys}
    assert len(slots) > 150  # hash tags spread users over the slots
    for k in keys[:20]:
        assert (client.execute_command("CLUSTER", "KEYSLOT", k)
                == client.execute_command("CLUSTER", "KEYSLOT", caps_key(k)))
    client.close()


async def test_store_reads_and_writes_through_the_cluster_client(stores: Stores, cluster_port: int) -> None:
    sync = RedisCluster(host="127.0.0.1", port=cluster_port)
    ids = [f"cluster-user-{i}" for i in range(300)]
    rows = np.random.default_rng(1).uniform(0, 3, size=(300, N_FEATURES)).astype(np.float32)
    assert write_rows(sync, ids, rows, chunk=64) == 300
    sync.hset(caps_key(user_key(ids[5])), "camp-1", b"\x07")
    sync.close()

    client = AsyncRedisCluster(host="127.0.0.1", port=cluster_port)
    try:
        store = stores(client)
        records = await store.fetch([*ids[:100], "nobody", ""], Deadline.after_ms(5000))
        assert [r.known for r in records[:100]] == [True] * 100
        np.testing.assert_array_equal(np.stack([r.features for r in records[:100]]), rows[:100])
        assert records[5].caps == {"camp-1": b"\x07"}
        assert not records[100].known and not records[101].known
    finally:
        await client.aclose()


async def test_cluster_keys_of_the_wrong_type_spoil_only_their_own_user(stores: Stores,
                                                                        cluster_port: int) -> None:
    client = AsyncRedisCluster(host="127.0.0.1", port=cluster_port)
    try:
        await client.hset(user_key("c-hash-features"), "x", "1")
        await client.set(caps_key(user_key("c-string-caps")), "oops")
        seen: list[int] = []
        records = await stores(client, on_malformed=seen.append).fetch(
            ["c-hash-features", "c-string-caps", "c-nobody"], Deadline.after_ms(5000))
        assert [r.known for r in records] == [False, False, False]
        assert records[1].caps == {}
        assert seen == [1]
    finally:
        await client.aclose()


async def test_seed_cli_writes_into_the_cluster(stores: Stores, cluster_port: int) -> None:
    from dsp.cli import main
    from dsp.offline.taiwan import default_data_dir

    if not (default_data_dir() / "uci-taiwan-default-credit-card").is_dir():
        pytest.skip("shared datasets not available")
    url = f"redis://127.0.0.1:{cluster_port}/0"
    assert main(["features", "seed", "--users", "500", "--seed", "9", "--redis-url", url,
                 "--cluster"]) == 0
    client = AsyncRedisCluster(host="127.0.0.1", port=cluster_port)
    try:
        records = await stores(client).fetch([f"syn9-{i:08d}" for i in range(0, 500, 5)],
                                                   Deadline.after_ms(5000))
        assert all(r.known for r in records) and len(records) == 100
    finally:
        await client.aclose()
