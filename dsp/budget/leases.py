"""Redis side of budget leases: one LEASE script call per lease / renew / settle / return.

A process holds at most one lease per campaign day, named by its ``lease_id`` (unique per
process start). Each call, atomically on the campaign's slot:

1. reclaims every lease whose TTL has passed (a crashed process's money comes back);
2. subtracts ``settle_micros`` (our committed spend, now final) and ``return_micros`` (unused money
   we hand back) from our lease;
3. grants up to ``want_micros`` more, never beyond ``budget - out - spent`` (daily, and lifetime
   when a total budget is set) nor beyond ``max_lease_micros`` held at once;
4. extends our lease's TTL.

With a plan rate (``plan_rate_micros_s`` ≥ 0; the caller is bidding on the campaign's current
day) the grant also stays within the plan guard, atomically with everything above::

    plan  = min(plan + rate · (now − plan_ms), spent + reserved)  # no credit for under-delivery
    grant ≤ plan + allowance − spent − out                        # the guard, across all leases
    share = max(min(plan + allowance − spent, allowance + rate · horizon) / live leases, min_share)
    grant ≤ share − ours                                          # at most our share held

``reserved`` is what the live leases hold in open reservations (each caller reports its own,
``reserved_micros``; kept as ``resv:<id>``). Clamping the plan to spend + reservations — not to
spend + leases — means money a lease holds idle is inside the allowance: after any quiet period,
what can be spent at once (idle lease money + room) is at most the allowance. A day's first
call starts ``plan`` from the previous day's unused room, ``plan + allowance − spent − reserved``
of that day (so midnight does not hand out a second allowance; money the old day's leases hold
idle goes back and does not count). ``pacing_state`` (λ, throttle, value floor as text) is stored for
the campaign; the previous value comes back in the result, so a new process continues from it.

If our lease was reclaimed while we were cut off (``lost``), settle/return are ignored: the
caller must drop its local books (see :meth:`dsp.budget.ledger.Ledger.lease_lost`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from dsp.budget.keys import day_key, pacing_key, total_key
from dsp.budget.scripts import LEASE


class LeaseResult(msgspec.Struct, frozen=True):
    lease_micros: int  # what we hold now
    granted_micros: int
    spent_micros: int  # the campaign day's committed spend (all processes)
    budget_micros: int  # the day's budget in force (config, or pinned by `dsp budget set`)
    out_micros: int  # money held by all live leases
    lost: bool
    reclaimed_micros: int
    total_spent_micros: int
    settled_micros: int
    returned_micros: int
    plan_micros: int = -1  # the plan guard's plan-to-date (-1: no plan rate was given)
    live_leases: int = 1  # live leases on this campaign day, ours included
    guard_limited: bool = False  # the guard or our share (not the budget) cut the grant
    share_micros: int = -1  # the most this lease may hold under the guard (-1: no guard)
    pacing_state: str = ""  # what was stored before this call ("" if nothing)


class LeaseBook:
    """Calls the LEASE script for one process (one ``lease_id``)."""

    def __init__(self, redis: Any, lease_id: str, *, ttl_s: float, key_ttl_s: int = 3 * 86_400) -> None:
        self._script = redis.register_script(LEASE)
        self.lease_id = lease_id
        self.ttl_ms = int(ttl_s * 1000)
        self.key_ttl_s = key_ttl_s

    async def sync(self, campaign_id: str, day: int, *, daily_budget_micros: int,
                   total_budget_micros: int | None, settle_micros: int, return_micros: int,
                   want_micros: int, max_lease_micros: int, had_lease: bool,
                   plan_rate_micros_s: float = -1.0, allowance_micros: int = 0,
                   min_share_micros: int = 0, horizon_s: float = 10.0,
                   pacing_state: str = "", reserved_micros: int = 0) -> LeaseResult:
        raw = await self._script(
            keys=[day_key(campaign_id, day), total_key(campaign_id), pacing_key(campaign_id),
                  day_key(campaign_id, day - 1)],
            args=[self.lease_id, daily_budget_micros,
                  -1 if total_budget_micros is None else total_budget_micros,
                  max(0, settle_micros), max(0, return_micros), max(0, want_micros),
                  max(0, max_lease_micros), self.ttl_ms, "1" if had_lease else "0", self.key_ttl_s,
                  repr(float(plan_rate_micros_s)) if plan_rate_micros_s >= 0 else "-1",
                  max(0, allowance_micros), max(0, min_share_micros), pacing_state,
                  repr(float(horizon_s)), max(0, reserved_micros)])
        v = [int(x) for x in raw[:14]]
        state = raw[14]
        return LeaseResult(lease_micros=v[0], granted_micros=v[1], spent_micros=v[2],
                           budget_micros=v[3], out_micros=v[4], lost=bool(v[5]),
                           reclaimed_micros=v[6], total_spent_micros=v[7], settled_micros=v[8],
                           returned_micros=v[9], plan_micros=v[10], live_leases=v[11],
                           guard_limited=bool(v[12]), share_micros=v[13],
                           pacing_state=state.decode() if isinstance(state, bytes) else str(state))
