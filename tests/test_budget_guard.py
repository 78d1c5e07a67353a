"""The plan guard against a real redis-server: bursts, fair shares, lowest values first, state that
survives a restart and the day boundary, gentle catch-up. Every assertion is on money; the plan
advances on Redis time, so a slow machine only widens the window the bound is computed over."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from dsp.budget.keys import campaign_day, day_key, pacing_key
from dsp.budget.outcomes import OutcomeStore
from dsp.budget.pacing import PacingPlan, PacingSettings
from dsp.budget.runtime import MoneyRuntime, MoneySettings
from dsp.budget.spec import CampaignBudget
from dsp.observability.metrics import Metrics
from dsp.openrtb.nobid import NoBidReason
from dsp.testing.redis_server import reply_bytes

FAST = MoneySettings(tick_s=0.05, lease_ttl_s=3.0, brake_grace_s=1.0, redis_timeout_s=0.5,
                     first_check_s=0.0, settle_grace_s=0.0, lease_horizon_s=1.0)
RATE = 100_000  # micros per second: the even plan of the budget below
BUDGET = RATE * 86_400
ALLOWANCE = 50_000
PRICE = 10_000


def _spec(**kw: object) -> CampaignBudget:
    return CampaignBudget("g1", BUDGET, allowance_micros=ALLOWANCE, **kw)  # type: ignore[arg-type]


def _early_clock() -> list[float]:
    """A clock at 00:10 local time (campaign offset 0): the re-spread target is the plan rate."""
    return [(time.time() // 86_400) * 86_400 + 600.0]


async def _burst(rts: list[MoneyRuntime], store: OutcomeStore, clock: list[float], seconds: float,
                 *, values: list[int] | None = None, per_tick: int = 40) -> tuple[float, list[int]]:
    """Every runtime bids ``per_tick`` times per tick; every reserved bid wins and is billed at
    its full price at once (far above the plan). Returns (elapsed s, values of reserved bids)."""
    won: list[int] = []
    t0 = time.monotonic()
    k = 0
    while time.monotonic() - t0 < seconds:
        for n, rt in enumerate(rts):
            for _ in range(per_tick):
                k += 1
                v = values[k % len(values)] if values else PRICE
                if rt.admit("g1", v) is None and rt.reserve("g1", f"b{n}-{k}", PRICE,
                                                             clock[0] + 60, issued_at_s=clock[0]):
                    await store.record("g1", campaign_day(clock[0], 0), f"b{n}-{k}", "b", PRICE,
                                       commits=True, issued_at_s=clock[0])
                    won.append(v)
        clock[0] += FAST.tick_s
        await asyncio.gather(*(rt.tick() for rt in rts))
        await asyncio.sleep(FAST.tick_s)
    return time.monotonic() - t0, won


async def _spent(client: aioredis.Redis, day: int) -> int:
    return int(await client.hget(day_key("g1", day), "spent") or 0)


async def test_a_burst_on_two_processes_spends_the_plan_not_the_leases(redis_url: str) -> None:
    clock = _early_clock()
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    rts = [MoneyRuntime(c, Metrics(), [_spec()], settings=FAST, clock=lambda: clock[0])
           for c in clients]
    store = OutcomeStore(clients[0])
    t0 = time.monotonic()
    for rt in rts:
        await rt.tick()
    elapsed, won = await _burst(rts, store, clock, 2.5)
    elapsed = time.monotonic() - t0
    spent = await _spent(clients[0], campaign_day(clock[0], 0))
    offered = 2 * 40 * PRICE / FAST.tick_s  # what the burst would spend without pacing
    assert offered >= 100 * RATE
    # The guard: the plan since the first LEASE call (re-spread at 00:10 is 1.007 x the plan rate)
    # plus the allowance. The leases alone (1 % of the budget each) would allow 864 bids.
    assert spent <= 1.01 * RATE * elapsed + ALLOWANCE
    assert spent >= 0.25 * RATE * elapsed  # and the plan is still delivered
    assert len(won) * PRICE == spent
    raw = await clients[0].hgetall(day_key("g1", campaign_day(clock[0], 0)))
    assert int(raw[b"spent"]) + int(raw[b"out"]) <= float(raw[b"plan"]) + ALLOWANCE
    for rt in rts:
        assert rt.ledger_drift_micros() == 0
        await rt.stop()
    for c in clients:
        await c.aclose()


async def test_each_process_holds_at_most_its_share(redis_url: str) -> None:
    clock = _early_clock()
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(3)]
    rts = [MoneyRuntime(c, Metrics(), [_spec()], settings=FAST, clock=lambda: clock[0])
           for c in clients]
    for _ in range(3):
        for rt in rts:
            await rt.tick()
    leases = []
    for rt in rts:
        led = rt.ledger("g1")
        assert led is not None
        leases.append(led.leased_micros)
    # Nothing reserved, so the plan earns no credit: the room is the allowance, a third each
    # (the first process took it all, then handed back what was above its share).
    assert max(leases) <= ALLOWANCE / 3 + 1
    assert min(leases) > 0
    for rt in rts:
        await rt.stop()
    for c in clients:
        await c.aclose()


async def test_when_the_guard_binds_the_lowest_values_are_dropped_first(redis_url: str) -> None:
    clock = _early_clock()
    client = aioredis.Redis.from_url(redis_url)
    rt = MoneyRuntime(client, Metrics(), [_spec()], settings=FAST, clock=lambda: clock[0])
    await rt.tick()
    values = list(range(1_000, 101_000, 1_000))  # 100 distinct values, uniformly mixed
    _, won = await _burst([rt], OutcomeStore(client), clock, 3.0, values=values)
    ctrl = rt.controller("g1")
    assert ctrl is not None and ctrl.throttle > 0.5
    late = won[len(won) // 2:]
    assert late and sum(late) / len(late) > 70_000  # the uniform mean is 50,500
    assert rt.admit("g1", 1_000) == NoBidReason.PACING_THROTTLED
    await rt.stop()
    await client.aclose()


async def test_lambda_rises_on_the_demand_the_guard_held_back(redis_url: str) -> None:
    # Spend is held at the plan by the guard, so spend alone would tell λ nothing; the controller
    # sees the demand (spend / (1 - refused share)) and shades the price: the plan is then bought
    # at a lower price wherever the market still sells at it.
    clock = _early_clock()
    client = aioredis.Redis.from_url(redis_url)
    settings = MoneySettings(tick_s=0.05, lease_ttl_s=3.0, brake_grace_s=1.0, redis_timeout_s=0.5,
                             first_check_s=0.0, settle_grace_s=0.0, lease_horizon_s=1.0,
                             pacing=PacingSettings(interval_s=0.25))
    rt = MoneyRuntime(client, Metrics(), [_spec()], settings=settings, clock=lambda: clock[0])
    await rt.tick()
    await _burst([rt], OutcomeStore(client), clock, 2.0)
    assert rt.pacing_multiplier("g1") > 1.0
    await rt.stop()
    await client.aclose()


async def test_pacing_state_survives_a_restart_and_the_day_boundary(redis_url: str) -> None:
    midnight = (time.time() // 86_400 + 1) * 86_400
    clock = [midnight - 30.0]
    client = aioredis.Redis.from_url(redis_url)
    first = MoneyRuntime(client, Metrics(), [_spec()], settings=FAST, clock=lambda: clock[0])
    await first.tick()
    ctrl = first.controller("g1")
    assert ctrl is not None
    ctrl.restore(3.5, 0.4)  # as a long burst would leave it
    await first.tick()  # saved with the lease
    await first.stop()
    assert reply_bytes(await client.get(pacing_key("g1"))).split()[:2] == [b"3.5", b"0.4"]
    clock[0] = midnight + 30.0  # a new process, the next day
    second = MoneyRuntime(client, Metrics(), [_spec()], settings=FAST, clock=lambda: clock[0])
    assert second.pacing_multiplier("g1") == 0.0
    await second.tick()
    ctrl2 = second.controller("g1")
    assert ctrl2 is not None and ctrl2.lam == 3.5 and ctrl2.throttle == 0.4
    await second.stop()
    await client.aclose()


async def test_midnight_hands_out_no_second_allowance(redis_url: str) -> None:
    midnight = (time.time() // 86_400 + 1) * 86_400
    clock = [midnight - 2.0]
    client = aioredis.Redis.from_url(redis_url)
    rt = MoneyRuntime(client, Metrics(), [_spec()], settings=FAST, clock=lambda: clock[0])
    store = OutcomeStore(client)
    t0 = time.monotonic()
    await rt.tick()
    day = campaign_day(clock[0], 0)
    await _burst([rt], store, clock, 1.0)  # uses up yesterday's allowance
    clock[0] = midnight + 1.0
    await _burst([rt], store, clock, 1.5)
    elapsed = time.monotonic() - t0
    both = await _spent(client, day) + await _spent(client, day + 1)
    # Across midnight: one allowance and the plan (re-spread before midnight: 1.5 x at most).
    assert await _spent(client, day + 1) > 0
    assert both <= 1.5 * RATE * elapsed + ALLOWANCE
    await rt.stop()
    await client.aclose()


async def test_idle_time_earns_no_burst_later(redis_url: str) -> None:
    clock = _early_clock()
    client = aioredis.Redis.from_url(redis_url)
    rt = MoneyRuntime(client, Metrics(), [_spec()], settings=FAST, clock=lambda: clock[0])
    for _ in range(30):  # 1.5 s or more with no traffic at all: the plan accrues no credit
        await rt.tick()
        await asyncio.sleep(FAST.tick_s)
    t0 = time.monotonic()
    await _burst([rt], OutcomeStore(client), clock, 0.5)
    elapsed = time.monotonic() - t0 + FAST.tick_s
    spent = await _spent(client, campaign_day(clock[0], 0))
    # Idle lease money is inside the allowance: not 1.5 s or more of plan missed while idle.
    assert spent <= 1.01 * RATE * elapsed + ALLOWANCE
    await rt.stop()
    await client.aclose()


def test_catch_up_re_spreads_but_never_above_its_cap() -> None:
    plan = PacingPlan((1.0,) * 24)
    budget = 86_400_000_000  # even plan: 1,000,000 micros/s
    noon = 12 * 3600.0
    # Nothing spent by noon: the re-spread target is 2x, the cap 1.5x.
    assert plan.target_rate(budget, noon) == 2_000_000
    assert plan.guard_rate(budget, 0, noon, 1.5) == 1_500_000
    # On plan: the guard's rate is the plan's.
    assert abs(plan.guard_rate(budget, budget // 2, noon, 1.5) - 1_000_000) < 1
    # Ahead of plan: slower than the plan (the budget lasts the day).
    assert plan.guard_rate(budget, budget * 3 // 4, noon, 1.5) == 500_000
    assert plan.planned_micros(budget, noon) == budget // 2
