"""Feature store against a real redis-server: batched reads, unknown, malformed, wrong version."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np
import pytest
import redis as sync_redis
import redis.asyncio as aioredis

from dsp.clock import Deadline
from dsp.errors import DependencyUnavailable
from dsp.features.contract import DEFAULTS, FEATURE_INDEX, N_FEATURES
from dsp.features.keys import SCHEMA_VERSION, caps_key, user_key
from dsp.features.record import FeatureRecord, RecordCodec
from dsp.features.store import FeatureStore
from dsp.features.writer import write_rows
from dsp.testing.redis_server import RedisServer, busy_script

Stores = Callable[..., FeatureStore]  # the conftest `stores` fixture


def _rows(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 5, size=(n, N_FEATURES)).astype(np.float32)


async def test_batched_read_returns_written_vectors_in_order(stores: Stores, redis_url: str,
                                                             redis_client: aioredis.Redis) -> None:
    ids = [f"user-{i}" for i in range(500)]
    rows = _rows(len(ids))
    with sync_redis.Redis.from_url(redis_url) as client:
        assert write_rows(client, ids, rows, chunk=128) == 500
    store = stores(redis_client)
    asked = [*ids[::-1][:200], "never-seen", ""]
    records = await store.fetch(asked, Deadline.after_ms(2000))
    assert len(records) == len(asked)
    for raw, rec in zip(asked[:200], records[:200], strict=True):
        assert rec.known
        assert rec.user_key == user_key(raw)
        np.testing.assert_array_equal(rec.features, rows[ids.index(raw)])
        assert rec.features.dtype == np.float32
    unknown, empty = records[-2], records[-1]
    assert not unknown.known and unknown.user_key == user_key("never-seen")
    np.testing.assert_array_equal(unknown.features, DEFAULTS)
    assert not empty.known and empty.user_key == "" and empty.caps == {}


async def test_caps_hash_comes_back_in_the_same_fetch(stores: Stores, redis_client: aioredis.Redis) -> None:
    key = user_key("capped-user")
    await redis_client.hset(caps_key(key), mapping={"camp-a": b"\x01\x02", "camp-b": b"x"})
    store = stores(redis_client)
    [rec] = await store.fetch(["capped-user"], Deadline.after_ms(2000))
    assert not rec.known  # caps without features: still unknown, caps still returned
    assert rec.caps == {"camp-a": b"\x01\x02", "camp-b": b"x"}


async def test_malformed_and_wrong_version_records_are_unknown_and_counted(stores: Stores,
        redis_client: aioredis.Redis) -> None:
    codec = RecordCodec()
    good = np.array(DEFAULTS, dtype=np.float32)
    good[FEATURE_INDEX["loan_app_installs"]] = 7.0
    nan_vec = good.copy()
    nan_vec[0] = np.nan
    blobs = {
        "good": codec.encode(good),
        "garbage": b"\xff\x00 not msgpack",
        "old-version": codec.encode(good, version=SCHEMA_VERSION + 1),
        "short": msgspec.msgpack.encode(FeatureRecord(SCHEMA_VERSION, b"\x00" * 12)),
        "nan": codec.encode(nan_vec),
        "json": b'{"late_night_share": 0.5}',
    }
    for raw, blob in blobs.items():
        await redis_client.set(user_key(raw), blob)
    seen: list[int] = []
    store = stores(redis_client, on_malformed=seen.append)
    records = await store.fetch(list(blobs), Deadline.after_ms(2000))
    by_id = dict(zip(blobs, records, strict=True))
    assert by_id["good"].known
    assert by_id["good"].features[FEATURE_INDEX["loan_app_installs"]] == 7.0
    for bad in ("garbage", "old-version", "short", "nan", "json"):
        assert not by_id[bad].known, bad
        np.testing.assert_array_equal(by_id[bad].features, DEFAULTS)
    assert seen == [5]


async def test_all_empty_ids_do_not_touch_redis(stores: Stores) -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.05)
    store = stores(dead)
    records = await store.fetch(["", ""], Deadline.after_ms(100))
    assert [r.known for r in records] == [False, False]
    await dead.aclose()


async def test_redis_down_raises_dependency_unavailable(stores: Stores) -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.05)
    store = stores(dead)
    with pytest.raises(DependencyUnavailable):
        await store.fetch(["someone"], Deadline.after_ms(500))
    await dead.aclose()


async def test_expired_deadline_raises_dependency_unavailable(stores: Stores,
                                                              redis_client: aioredis.Redis) -> None:
    store = stores(redis_client)
    with pytest.raises(DependencyUnavailable):
        await store.fetch(["someone"], Deadline.after_ms(-1.0))


async def test_keys_of_the_wrong_type_spoil_only_their_own_user(stores: Stores,
                                                                redis_client: aioredis.Redis) -> None:
    codec = RecordCodec()
    await redis_client.set(user_key("fine"), codec.encode(np.array(DEFAULTS) + 1))
    await redis_client.hset(user_key("hash-features"), "x", "1")      # features key is a hash
    await redis_client.set(caps_key(user_key("string-caps")), "oops")  # caps key is a string
    seen: list[int] = []
    records = await stores(redis_client, on_malformed=seen.append).fetch(
        ["fine", "hash-features", "string-caps"], Deadline.after_ms(2000))
    assert [r.known for r in records] == [True, False, False]
    assert records[2].caps == {}
    assert seen == [1]


async def test_fetch_survives_a_script_cache_flush(stores: Stores, redis_url: str,
                                                   redis_client: aioredis.Redis) -> None:
    # A Redis restart or failover empties the script cache: the next fetch gets NOSCRIPT, loads
    # the script and answers; nothing is reported unavailable.
    rows = _rows(2, seed=3)
    with sync_redis.Redis.from_url(redis_url) as client:
        write_rows(client, ["a", "b"], rows)
    store = stores(redis_client)
    first = await store.fetch(["a", "b"], Deadline.after_ms(2000))
    await redis_client.script_flush()
    assert await redis_client.script_exists(store._script.sha) == [False]  # type: ignore[union-attr]
    again = await store.fetch(["b", "a"], Deadline.after_ms(2000))
    assert [r.known for r in first + again] == [True] * 4
    np.testing.assert_array_equal(again[0].features, rows[1])
    np.testing.assert_array_equal(again[1].features, first[0].features)


async def test_a_fetch_cut_off_by_its_deadline_never_leaks_its_reply_into_the_next(stores: Stores,
        redis_url: str, redis_client: aioredis.Redis) -> None:
    # Redis is busy (a 0.3 s script on another connection) past the first fetch's deadline: that
    # fetch fails, its reply arrives later on a connection that must not be reused as is.
    rows = _rows(2, seed=5)
    with sync_redis.Redis.from_url(redis_url) as client:
        write_rows(client, ["first", "second"], rows)
    store = stores(redis_client)
    await store.fetch(["first"], Deadline.after_ms(2000))  # a pooled connection exists now
    blocker = aioredis.Redis.from_url(redis_url)
    sleeping: asyncio.Future[Any] = asyncio.ensure_future(blocker.eval(busy_script(300), 0))
    await asyncio.sleep(0.05)
    with pytest.raises(DependencyUnavailable):
        await store.fetch(["first"], Deadline.after_ms(50))
    await sleeping
    await blocker.aclose()
    [rec] = await store.fetch(["second"], Deadline.after_ms(2000))
    assert rec.known and rec.user_key == user_key("second")
    np.testing.assert_array_equal(rec.features, rows[1])
    await store.aclose()


async def test_password_and_database_of_the_client_are_used(stores: Stores) -> None:
    with RedisServer() as server:
        with sync_redis.Redis.from_url(server.url) as admin:
            admin.config_set("requirepass", "s3cret")
        url = f"redis://:s3cret@127.0.0.1:{server.port}/3"
        rows = _rows(1, seed=9)
        with sync_redis.Redis.from_url(url) as client:
            write_rows(client, ["in-db-3"], rows)
        client_3 = aioredis.Redis.from_url(url, socket_timeout=1.0)
        store = stores(client_3)
        [rec] = await store.fetch(["in-db-3"], Deadline.after_ms(2000))
        assert rec.known
        np.testing.assert_array_equal(rec.features, rows[0])
        no_password = stores(aioredis.Redis.from_url(f"redis://127.0.0.1:{server.port}/3"))
        with pytest.raises(DependencyUnavailable):
            await no_password.fetch(["in-db-3"], Deadline.after_ms(2000))
        await store.aclose()
        await no_password.aclose()
        await client_3.aclose()


async def test_pack_evalsha_matches_redis_py(redis_client: aioredis.Redis) -> None:
    from redis.asyncio.connection import Connection

    from dsp.features.store import pack_evalsha

    conn = Connection()
    keys = [user_key(f"user-{i}") for i in range(40)] + ["ключ"]  # non-ASCII too
    expected = b"".join(conn.pack_command("EVALSHA", "ab" * 20, len(keys), *keys, ":fc"))
    assert pack_evalsha("ab" * 20, keys, ":fc") == expected
    assert pack_evalsha("ab" * 20, []) == b"".join(conn.pack_command("EVALSHA", "ab" * 20, 0))
