"""MoneyRuntime against a real redis-server: leases, settlement, expiry, pacing, brake."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from dsp.budget.keys import campaign_day, day_key
from dsp.budget.outcomes import OutcomeStore
from dsp.budget.runtime import MoneyRuntime, MoneySettings
from dsp.budget.spec import CampaignBudget
from dsp.observability.metrics import Metrics
from dsp.openrtb.nobid import NoBidReason
from dsp.testing.fakes import FakeClock
from dsp.testing.redis_server import RedisServer, reply_bytes, reply_int

FAST = MoneySettings(tick_s=0.05, lease_ttl_s=2.0, brake_grace_s=0.3, redis_timeout_s=0.3,
                     first_check_s=0.0, settle_grace_s=0.0, lease_horizon_s=1.0)
# Lease mechanics on a tiny budget: no plan guard here (tests/test_budget_guard.py has it).
BUDGET = CampaignBudget("c1", 100_000, max_lease_micros=20_000, plan_guard=False)


def led_has(rt: MoneyRuntime, bid_id: str) -> bool:
    led = rt.ledger("c1")
    return led is not None and led.is_reserved(bid_id)


def today() -> int:
    return campaign_day(time.time(), 0)


async def test_two_runtimes_share_one_budget(redis_url: str) -> None:
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    rts = [MoneyRuntime(c, Metrics(), [BUDGET], settings=FAST) for c in clients]
    for rt in rts:
        await rt.tick()
    assert all(rt.admit("c1", 1_000) is None for rt in rts)
    reserved = 0
    for i in range(100):
        for k, rt in enumerate(rts):
            if rt.reserve("c1", f"b{k}-{i}", 1_000, time.time() + 60):
                reserved += 1_000
    assert reserved == 10_000  # first slices: a quarter of the max lease each
    for rt in rts:
        await rt.tick()  # the reservation rate asks for more, up to the max lease
    for i in range(100, 200):
        for k, rt in enumerate(rts):
            if rt.reserve("c1", f"b{k}-{i}", 1_000, time.time() + 60):
                reserved += 1_000
    assert reserved == 40_000  # two leases of at most 20k each
    assert not rts[0].reserve("c1", "extra", 1_000, time.time() + 60)
    store = OutcomeStore(clients[0])
    ids0 = [f"b0-{i}" for i in range(200) if led_has(rts[0], f"b0-{i}")]
    for bid_id in ids0[:10]:  # half of process 0's bids are billed at 600
        await store.record("c1", today(), bid_id, "b", 600, commits=True)
    await store.record("c1", today(), "b1-0", "l", 0, commits=False)
    for rt in rts:
        await rt.tick()
    led0, led1 = rts[0].ledger("c1"), rts[1].ledger("c1")
    assert led0 is not None and led1 is not None
    assert rts[0].ledger_drift_micros() == 0 and rts[1].ledger_drift_micros() == 0
    assert led1.outstanding == 19
    # process 0: 10 bids committed at 600 and settled into its lease; 10 still pending
    raw = await clients[0].hgetall(day_key("c1", today()))
    assert int(raw[b"spent"]) == 6_000
    assert led0.committed_micros == 0 and led0.outstanding == 10
    leases = sum(int(v) for k, v in raw.items() if reply_bytes(k).startswith(b"lease:"))
    assert int(raw[b"out"]) == leases and leases + 6_000 <= 100_000
    for rt in rts:
        await rt.stop()
    for c in clients:
        await c.aclose()


async def test_reservation_expires_and_is_released(redis_client: aioredis.Redis) -> None:
    rt = MoneyRuntime(redis_client, Metrics(), [BUDGET], settings=FAST)
    await rt.tick()
    assert rt.reserve("c1", "late", 5_000, time.time() + 0.2)
    led = rt.ledger("c1")
    assert led is not None
    await rt.tick()  # first check: no outcome yet, kept
    assert led.is_reserved("late")
    await asyncio.sleep(0.3)
    await rt.tick()  # final check after expiry: released
    assert not led.is_reserved("late") and led.drift_micros() == 0


async def test_test_bids_never_reserve(redis_client: aioredis.Redis) -> None:
    rt = MoneyRuntime(redis_client, Metrics(), [BUDGET], settings=FAST)
    assert rt.reserve("c1", "t", 10**12, time.time() + 1, test=True)
    led = rt.ledger("c1")
    assert led is not None and led.reserved_micros == 0


async def test_admit_reasons(redis_client: aioredis.Redis) -> None:
    now = time.time()
    specs = [BUDGET,
             CampaignBudget("future", 100_000, active_from_s=now + 3600),
             CampaignBudget("night", 100_000, pacing_curve=tuple(
                 0.0 if h == int((now % 86_400) // 3600) else 1.0 for h in range(24)))]
    rt = MoneyRuntime(redis_client, Metrics(), specs, settings=FAST)
    assert rt.admit("c1", 1) == NoBidReason.BUDGET_EXHAUSTED  # no lease yet
    await rt.tick()
    assert rt.admit("c1", 1) is None
    assert rt.admit("future", 1) == NoBidReason.OUT_OF_SCHEDULE
    assert rt.admit("night", 1) == NoBidReason.OUT_OF_SCHEDULE
    for cid in ("future", "night"):  # campaigns that cannot bid now hold no money
        led = rt.ledger(cid)
        assert led is not None and led.leased_micros == 0
    assert rt.admit("nope", 1) == NoBidReason.BUDGET_EXHAUSTED
    rt.update_budgets([BUDGET])  # reload drops the others
    assert rt.admit("future", 1) == NoBidReason.BUDGET_EXHAUSTED


async def test_throttle_turns_away_lowest_values_first(redis_client: aioredis.Redis) -> None:
    rt = MoneyRuntime(redis_client, Metrics(), [BUDGET], settings=FAST)
    await rt.tick()
    for v in range(1, 101):
        rt.admit("c1", v)
    ctrl = rt.controller("c1")
    assert ctrl is not None
    ctrl.throttle = 0.5
    rt._campaigns["c1"].recompute_value_floor()
    assert rt.admit("c1", 10) == NoBidReason.PACING_THROTTLED
    assert rt.admit("c1", 90) is None


async def test_pacing_raises_lambda_when_spend_runs_ahead(redis_client: aioredis.Redis) -> None:
    clock = FakeClock(time.time())
    settings = MoneySettings(tick_s=0.05, lease_ttl_s=30, first_check_s=0, settle_grace_s=0)
    rt = MoneyRuntime(redis_client, Metrics(), [CampaignBudget("c1", 86_400_000_000)],
                      settings=settings, clock=clock)
    await rt.tick()
    store = OutcomeStore(redis_client)
    for step in range(6):  # spend 100x the planned rate (1 micro/s per ... of budget)
        clock.advance(10)
        await store.record("c1", campaign_day(clock(), 0), f"s{step}", "b", 100_000_000,
                           commits=True)
        await rt.tick()
    assert rt.pacing_multiplier("c1") > 1.0


async def test_brake_engages_and_releases_with_redis() -> None:
    srv = RedisServer().start()
    client = aioredis.Redis.from_url(srv.url, socket_timeout=0.2, socket_connect_timeout=0.2)
    metrics = Metrics()
    rt = MoneyRuntime(client, metrics, [BUDGET], settings=FAST)
    try:
        await rt.start()
        assert rt.admit("c1", 1) is None
        srv.stop()
        await asyncio.sleep(FAST.brake_grace_s + 0.5)
        assert rt.braked and rt.admit("c1", 1) == NoBidReason.BUDGET_BRAKE
        assert not rt.reserve("c1", "b", 1, time.time() + 5)
        assert metrics.budget_brake._value.get() == 1
        srv.start()  # same port, empty: the old lease is gone, a new one is taken
        for _ in range(60):
            await asyncio.sleep(0.05)
            if not rt.braked:
                break
        await asyncio.sleep(0.2)
        assert not rt.braked and rt.admit("c1", 1) is None
        assert rt.ledger_drift_micros() == 0
    finally:
        await rt.stop()
        await client.aclose()
        srv.stop()


async def test_unanswered_bids_release_early_won_bids_wait_for_the_bill(
        redis_client: aioredis.Redis) -> None:
    settings = MoneySettings(tick_s=0.05, lease_ttl_s=5, first_check_s=0.0, settle_grace_s=0.0,
                             unanswered_hold_s=0.2)
    rt = MoneyRuntime(redis_client, Metrics(), [BUDGET], settings=settings)
    await rt.tick()
    hour = time.time() + 3600
    assert rt.reserve("c1", "silent", 1_000, hour) and rt.reserve("c1", "won", 1_000, hour)
    await OutcomeStore(redis_client).record("c1", today(), "won", "w", 800, commits=False)
    await rt.tick()
    await asyncio.sleep(0.3)
    await rt.tick()
    led = rt.ledger("c1")
    assert led is not None
    assert not led.is_reserved("silent")  # nobody answered within the hold: released
    assert led.is_reserved("won")  # won, billing notice pending: still reserved
    await OutcomeStore(redis_client).record("c1", today(), "won", "b", 800, commits=True)
    await rt.tick()
    assert not led.is_reserved("won") and led.drift_micros() == 0


async def test_midnight_opens_new_books_and_drains_the_old(redis_client: aioredis.Redis) -> None:
    midnight = (int(time.time()) // 86_400 + 1) * 86_400.0
    clock = FakeClock(midnight - 1.0)
    rt = MoneyRuntime(redis_client, Metrics(), [BUDGET], settings=FAST, clock=clock)
    await rt.tick()
    old = rt.ledger("c1")
    assert old is not None and rt.reserve("c1", "late-night", 1_000, midnight + 600)
    clock.now_s = midnight + 1.0
    assert not rt.reserve("c1", "too-early", 1_000, midnight + 600)  # books not switched yet
    await rt.tick()
    new = rt.ledger("c1")
    assert new is not None and new is not old and new.day == old.day + 1
    assert rt.reserve("c1", "morning", 1_000, midnight + 600)
    # the old day kept only what its outstanding bid holds; the rest went back to Redis
    assert old.available_micros == 0 and old.reserved_micros == 1_000 and old.drift_micros() == 0
    old_out = reply_int(await redis_client.hget(day_key("c1", old.day), "out"))
    assert old_out == 1_000


async def test_late_bill_after_release_is_charged_to_the_lease(redis_client: aioredis.Redis) -> None:
    settings = MoneySettings(tick_s=0.05, lease_ttl_s=5, first_check_s=0.0, settle_grace_s=0.0,
                             unanswered_hold_s=0.0, late_recheck_s=0.0)
    rt = MoneyRuntime(redis_client, Metrics(), [BUDGET], settings=settings)
    await rt.tick()
    led = rt.ledger("c1")
    assert led is not None and rt.reserve("c1", "slow", 2_000, time.time() + 3600)
    await rt.tick()  # nobody answered within the hold: released, re-check scheduled
    assert not led.is_reserved("slow") and led.rechecks_pending == 1
    await OutcomeStore(redis_client).record("c1", today(), "slow", "b", 1_500, commits=True)
    leased_before = led.leased_micros
    await rt.tick()  # the late look-up finds the bill and charges it; the next sync settles it
    assert led.rechecks_pending == 0 and led.drift_micros() == 0
    assert led.leased_micros <= leased_before  # spent money left the lease
    raw = await redis_client.hgetall(day_key("c1", today()))
    assert int(raw[b"spent"]) + int(raw[b"out"]) <= BUDGET.daily_budget_micros
    assert rt.metrics.notices.labels(kind="settle", result="late_charged")._value.get() == 1


async def test_a_backlog_larger_than_a_slice_settles_in_one_tick(
        redis_client: aioredis.Redis) -> None:
    # Settlement runs in slices of SETTLE_SLICE bids (the event loop breathes between them); a
    # tick must still settle every due bid, exactly once.
    from dsp.budget.runtime import SETTLE_SLICE

    rt = MoneyRuntime(redis_client, Metrics(), [BUDGET], settings=FAST)
    await rt.tick()
    n = 2 * SETTLE_SLICE + 188
    past = time.time() - 1  # expired: every one is due for its final check at the next tick
    assert all(rt.reserve("c1", f"b{i}", 5, past) for i in range(n))
    store = OutcomeStore(redis_client)
    for i in range(0, n, 3):  # a third were won and billed at 4 micros
        await store.record("c1", today(), f"b{i}", "b", 4, commits=True)
    led = rt.ledger("c1")
    assert led is not None and led.reserved_micros == 5 * n
    await rt.tick()
    billed = len(range(0, n, 3))
    assert led.reserved_micros == 0 and led.outstanding == 0
    assert led.drift_micros() == 0
    raw = await redis_client.hgetall(day_key("c1", today()))
    assert int(raw[b"spent"]) == 4 * billed  # each billed bid committed exactly once
