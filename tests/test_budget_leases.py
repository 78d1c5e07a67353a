"""LEASE and NOTICE scripts against a real redis-server."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from dsp.budget.keys import OUTCOME_BUCKET_S, day_key, outcome_bucket, outcomes_key, total_key
from dsp.budget.leases import LeaseBook
from dsp.budget.outcomes import KEEP_AFTER_EXPIRY_S, OutcomeStore
from dsp.testing.redis_server import reply_bytes, reply_int

#: Bids "issued" in outcome bucket 7 (the tests look their outcomes up there).
T7 = 7 * OUTCOME_BUCKET_S + 10.0


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
    assert await store.record("c1", 7, "bid1", "b", 10_000, commits=True, issued_at_s=T7) == ("early", 10_000)
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
    assert await s.record("c1", 7, "b1", "w", 900, commits=False, issued_at_s=T7) == ("ok", 0)
    assert await s.record("c1", 7, "b1", "w", 900, commits=False, issued_at_s=T7) == ("duplicate", 0)
    assert await s.record("c1", 7, "b1", "b", 900, commits=True, issued_at_s=T7) == ("ok", 900)
    assert await s.record("c1", 7, "b1", "b", 900, commits=True, issued_at_s=T7) == ("duplicate", 0)
    assert await s.record("c1", 7, "b1", "l", 0, commits=False, issued_at_s=T7) == ("late", 0)
    # loss first, then the (real) bill: committed, flagged out of order
    assert await s.record("c1", 7, "b2", "l", 0, commits=False, issued_at_s=T7) == ("ok", 0)
    assert await s.record("c1", 7, "b2", "b", 500, commits=True, issued_at_s=T7) == ("out_of_order", 500)
    # exchange billing on nurl: the win commits, a later bill is ignored
    assert await s.record("c1", 7, "b3", "w", 300, commits=True, issued_at_s=T7) == ("ok", 300)
    assert await s.record("c1", 7, "b3", "b", 300, commits=False, issued_at_s=T7) == ("ignored", 0)
    assert reply_int(await redis_client.hget(day_key("c1", 7), "spent")) == 1_700
    assert reply_int(await redis_client.hget(total_key("c1"), "spent")) == 1_700
    states = [o.state for o in await s.lookup("c1", 7, ["b1", "b2", "b3", "b4"])]
    assert states == ["C", "C", "C", ""]


async def test_concurrent_duplicate_notices_commit_once(redis_client: aioredis.Redis) -> None:
    s = OutcomeStore(redis_client)
    results = await asyncio.gather(*(s.record("c1", 7, "b1", "b", 700, commits=True, issued_at_s=T7)
                                     for _ in range(20)))
    assert sorted(r[1] for r in results) == [0] * 19 + [700]
    assert reply_int(await redis_client.hget(day_key("c1", 7), "spent")) == 700


async def test_lookup_of_many_bids_is_chunked_and_ordered(redis_client: aioredis.Redis) -> None:
    s = OutcomeStore(redis_client)
    await s.record("c1", 7, "b2500", "l", 0, commits=False, issued_at_s=T7)
    await s.record("c1", 7, "b10", "b", 42, commits=True, issued_at_s=T7)
    out = await s.lookup("c1", 7, [f"b{i}" for i in range(3000)])
    assert len(out) == 3000 and out[2500].state == "L" and out[10].committed_micros == 42
    assert sum(1 for o in out if o.state) == 2


async def test_one_field_per_bid_in_an_hour_bucket_that_expires_whole(
        redis_client: aioredis.Redis) -> None:
    # The outcome and the dedup of a bid are ONE field (not one per notice kind), in the hash of
    # the UTC hour the bid was issued in; the hash's TTL covers the token's life + the owner's
    # last look-ups, and only grows.
    import time

    s = OutcomeStore(redis_client)
    now = time.time()
    for kind, commits in (("w", False), ("b", True), ("b", True), ("l", False)):
        await s.record("c1", 7, "won", kind, 900, commits=commits, issued_at_s=now,
                       expires_at_s=now + 600)
    await s.record("c1", 7, "lost", "l", 0, commits=False, issued_at_s=now, expires_at_s=now + 60)
    key = outcomes_key("c1", outcome_bucket(now))
    assert await redis_client.hgetall(key) == {b"won": b"7C900", b"lost": b"4L"}
    ttl = await redis_client.ttl(key)
    assert 600 + KEEP_AFTER_EXPIRY_S - 5 <= ttl <= 600 + KEEP_AFTER_EXPIRY_S + 1
    # a later bid with a longer-lived token extends the bucket; a shorter one never shortens it
    await s.record("c1", 7, "long", "l", 0, commits=False, issued_at_s=now, expires_at_s=now + 3600)
    await s.record("c1", 7, "short", "l", 0, commits=False, issued_at_s=now, expires_at_s=now + 1)
    assert await redis_client.ttl(key) >= 3600 + KEEP_AFTER_EXPIRY_S - 5
    # a bid of the next hour lands in the next bucket, looked up there
    nxt = now + OUTCOME_BUCKET_S
    await s.record("c1", 7, "next", "b", 5, commits=True, issued_at_s=nxt, expires_at_s=nxt + 60)
    assert await redis_client.hget(outcomes_key("c1", outcome_bucket(nxt)), "next") == b"2C5"
    out = await s.lookup("c1", [outcome_bucket(now), outcome_bucket(nxt), outcome_bucket(now)],
                         ["won", "next", "nothing"])
    assert [(o.state, o.committed_micros) for o in out] == [("C", 900), ("C", 5), ("", 0)]
    # no other keys than the day ledger, the lifetime hash and the two buckets
    keys = sorted(reply_bytes(k).decode() for k in await redis_client.keys("*"))
    assert keys == sorted([day_key("c1", 7), total_key("c1"), key,
                           outcomes_key("c1", outcome_bucket(nxt))])
