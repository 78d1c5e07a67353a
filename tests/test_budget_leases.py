"""LEASE and NOTICE scripts against a real redis-server."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from dsp.budget.keys import day_key, total_key
from dsp.budget.leases import LeaseBook
from dsp.budget.outcomes import OutcomeStore
from dsp.testing.redis_server import reply_int


async def sync(book: LeaseBook, *, want: int, settle: int = 0, ret: int = 0, had: bool = False,
               daily: int = 100_000, total: int | None = None, max_lease: int = 30_000):
    return await book.sync("c1", 7, daily_budget_micros=daily, total_budget_micros=total,
                           settle_micros=settle, return_micros=ret, want_micros=want,
                           max_lease_micros=max_lease, had_lease=had)


async def test_grants_never_exceed_the_budget(redis_client: aioredis.Redis) -> None:
    books = [LeaseBook(redis_client, f"p{i}", ttl_s=30) for i in range(5)]
    results = await asyncio.gather(*(sync(b, want=30_000) for b in books))
    granted = sorted(r.granted_micros for r in results)
    assert sum(granted) == 100_000  # 3 full slices, then what is left, then nothing
    assert granted[0] == 0 and max(granted) == 30_000
    assert reply_int(await redis_client.hget(day_key("c1", 7), "out")) == 100_000


async def test_max_lease_caps_what_one_process_holds(redis_client: aioredis.Redis) -> None:
    book = LeaseBook(redis_client, "p1", ttl_s=30)
    r1 = await sync(book, want=50_000)
    r2 = await sync(book, want=50_000, had=True)
    assert (r1.lease_micros, r2.granted_micros, r2.lease_micros) == (30_000, 0, 30_000)


async def test_settle_and_return_free_money_once(redis_client: aioredis.Redis) -> None:
    book, other = LeaseBook(redis_client, "p1", ttl_s=30), LeaseBook(redis_client, "p2", ttl_s=30)
    await sync(book, want=30_000, max_lease=100_000)
    await sync(other, want=70_000, max_lease=100_000)
    store = OutcomeStore(redis_client)
    assert await store.record("c1", 7, "bid1", "b", 10_000, commits=True) == ("early", 10_000)
    res = await sync(book, want=0, settle=10_000, ret=5_000, had=True)
    assert (res.settled_micros, res.returned_micros, res.lease_micros) == (10_000, 5_000, 15_000)
    assert res.spent_micros == 10_000 and res.out_micros == 85_000
    # budget 100k = out 85k + spent 10k + free 5k: the other process can take exactly 5k more
    assert (await sync(other, want=50_000, had=True, max_lease=200_000)).granted_micros == 5_000


async def test_crashed_lease_comes_back_after_ttl(redis_client: aioredis.Redis) -> None:
    dead = LeaseBook(redis_client, "dead", ttl_s=0.2)
    alive = LeaseBook(redis_client, "alive", ttl_s=30)
    await sync(dead, want=60_000, max_lease=60_000)
    assert (await sync(alive, want=100_000, max_lease=100_000)).granted_micros == 40_000
    await asyncio.sleep(0.3)
    res = await sync(alive, want=100_000, had=True, max_lease=100_000)
    assert res.reclaimed_micros == 60_000 and res.granted_micros == 60_000
    assert res.out_micros == 100_000
    assert not await redis_client.hexists(day_key("c1", 7), "lease:dead")


async def test_own_expired_lease_is_reported_lost(redis_client: aioredis.Redis) -> None:
    book = LeaseBook(redis_client, "p1", ttl_s=0.1)
    await sync(book, want=10_000)
    await asyncio.sleep(0.2)
    res = await sync(book, want=10_000, settle=5_000, had=True)
    assert res.lost and res.settled_micros == 0 and res.lease_micros == 10_000


async def test_total_budget_limits_the_day(redis_client: aioredis.Redis) -> None:
    await redis_client.hset(total_key("c1"), mapping={"spent": 95_000})
    book = LeaseBook(redis_client, "p1", ttl_s=30)
    res = await sync(book, want=30_000, total=100_000)
    assert res.granted_micros == 5_000


async def test_pinned_budget_wins_over_config(redis_client: aioredis.Redis) -> None:
    await redis_client.hset(day_key("c1", 7), mapping={"budget": 20_000, "pinned": 1})
    res = await sync(LeaseBook(redis_client, "p1", ttl_s=30), want=30_000)
    assert res.budget_micros == 20_000 and res.granted_micros == 20_000


async def test_notice_script_counts_each_bid_once(redis_client: aioredis.Redis) -> None:
    s = OutcomeStore(redis_client)
    assert await s.record("c1", 7, "b1", "w", 900, commits=False) == ("ok", 0)
    assert await s.record("c1", 7, "b1", "w", 900, commits=False) == ("duplicate", 0)
    assert await s.record("c1", 7, "b1", "b", 900, commits=True) == ("ok", 900)
    assert await s.record("c1", 7, "b1", "b", 900, commits=True) == ("duplicate", 0)
    assert await s.record("c1", 7, "b1", "l", 0, commits=False) == ("late", 0)
    # loss first, then the (real) bill: committed, flagged out of order
    assert await s.record("c1", 7, "b2", "l", 0, commits=False) == ("ok", 0)
    assert await s.record("c1", 7, "b2", "b", 500, commits=True) == ("out_of_order", 500)
    # exchange billing on nurl: the win commits, a later bill is ignored
    assert await s.record("c1", 7, "b3", "w", 300, commits=True) == ("ok", 300)
    assert await s.record("c1", 7, "b3", "b", 300, commits=False) == ("ignored", 0)
    assert reply_int(await redis_client.hget(day_key("c1", 7), "spent")) == 1_700
    assert reply_int(await redis_client.hget(total_key("c1"), "spent")) == 1_700
    states = [o.state for o in await s.lookup("c1", 7, ["b1", "b2", "b3", "b4"])]
    assert states == ["C", "C", "C", ""]


async def test_concurrent_duplicate_notices_commit_once(redis_client: aioredis.Redis) -> None:
    s = OutcomeStore(redis_client)
    results = await asyncio.gather(*(s.record("c1", 7, "b1", "b", 700, commits=True)
                                     for _ in range(20)))
    assert sorted(r[1] for r in results) == [0] * 19 + [700]
    assert reply_int(await redis_client.hget(day_key("c1", 7), "spent")) == 700


async def test_lookup_of_many_bids_is_chunked_and_ordered(redis_client: aioredis.Redis) -> None:
    s = OutcomeStore(redis_client)
    await s.record("c1", 7, "b2500", "l", 0, commits=False)
    await s.record("c1", 7, "b10", "b", 42, commits=True)
    out = await s.lookup("c1", 7, [f"b{i}" for i in range(3000)])
    assert len(out) == 3000 and out[2500].state == "L" and out[10].committed_micros == 42
    assert sum(1 for o in out if o.state) == 2
