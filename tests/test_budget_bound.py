"""The stated worst-case overspend bound (docs/money.md): spent <= budget + K * max_lease, where K
is the number of leases lost (process crashed or cut off past the lease TTL) with bids still out."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from dsp.budget.keys import campaign_day, day_key
from dsp.budget.outcomes import OutcomeStore
from dsp.budget.pacing import PacingController, PacingPlan
from dsp.budget.runtime import MoneyRuntime, MoneySettings
from dsp.budget.spec import CampaignBudget
from dsp.observability.metrics import Metrics
from dsp.testing.redis_server import reply_int

BUDGET = 100_000
MAX_LEASE = 10_000
SETTINGS = MoneySettings(tick_s=0.05, lease_ttl_s=0.4, brake_grace_s=0.1, first_check_s=0.0,
                         settle_grace_s=0.0, lease_horizon_s=100.0)


async def spend_all(rt: MoneyRuntime, prefix: str, rounds: int,
                    bill: OutcomeStore | None = None) -> list[str]:
    """Reserve as much as the lease allows, ``rounds`` times; with ``bill``, every bid wins."""
    ids = []
    for r in range(rounds):
        await rt.tick()
        for i in range(MAX_LEASE // 1_000):
            bid_id = f"{prefix}-{r}-{i}"
            issued = time.time()  # the bid's token time: its day and outcome bucket
            if rt.reserve("c1", bid_id, 1_000, issued + 3600, issued_at_s=issued):
                ids.append(bid_id)
                if bill is not None:
                    await bill.record("c1", campaign_day(issued, 0), bid_id, "b", 1_000,
                                      commits=True, issued_at_s=issued)
    return ids


async def test_worst_case_overspend_is_the_lost_leases(redis_url: str) -> None:
    # The bound of the leases alone: no plan guard (it only makes leases smaller).
    spec = CampaignBudget("c1", BUDGET, max_lease_micros=MAX_LEASE, plan_guard=False)
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(4)]
    dead = [MoneyRuntime(c, Metrics(), [spec], settings=SETTINGS) for c in clients[:3]]
    dead_bids = [await spend_all(rt, f"dead{k}", 3) for k, rt in enumerate(dead)]
    assert all(sum(1_000 for _ in ids) == MAX_LEASE for ids in dead_bids)  # each holds a full lease
    await asyncio.sleep(0.5)  # the three "crash": their leases pass the TTL
    survivor = MoneyRuntime(clients[3], Metrics(), [spec], settings=SETTINGS)
    store = OutcomeStore(clients[3])
    day = campaign_day(time.time(), 0)
    alive = await spend_all(survivor, "alive", 40, bill=store)  # all its bids win, billed
    await survivor.tick()
    assert sum(1_000 for _ in alive) == BUDGET  # the reclaimed money was leased again
    for ids in dead_bids:  # ...and then every bid of the dead processes wins too
        for bid_id in ids:
            await store.record("c1", day, bid_id, "b", 1_000, commits=True)
    spent = reply_int(await clients[3].hget(day_key("c1", day), "spent"))
    assert spent == BUDGET + 3 * MAX_LEASE  # the bound is reached, never exceeded
    assert survivor.ledger_drift_micros() == 0
    for c in clients:
        await c.aclose()


def test_budget_lasts_the_day_under_steady_traffic() -> None:
    """A simulated day: the market spends base/(1+λ)² micros/s; the controller updates every 5 s."""
    plan = PacingPlan((1.0,) * 24)
    ctrl = PacingController()
    budget = 8_640_000_000  # 8,640 units: at λ = 0 the market would take it in ~2.4 hours
    base = 1_000_000.0
    spent = 0.0
    exhausted_at = None
    start = 1_700_006_400.0  # a UTC midnight
    for step in range(86_400 // 5):
        now = start + step * 5
        rate = base / (1.0 + ctrl.lam) ** 2
        spend = min(rate * 5, budget - spent)
        spent += spend
        if spent >= budget and exhausted_at is None:
            exhausted_at = step * 5
        ctrl.update(spend / 5, plan.target_rate(int(budget - spent), now + 5))
        if step * 5 == 43_200:
            assert 0.4 < spent / budget < 0.6  # on plan at noon
    assert spent <= budget
    assert spent >= 0.97 * budget
    assert exhausted_at is None or exhausted_at >= 0.97 * 86_400
