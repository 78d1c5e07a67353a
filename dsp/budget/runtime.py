"""MoneyRuntime: the process-local money gate of the bid path (dsp.bidding.ports.MoneyGate).

The bid path only calls the synchronous, local methods :meth:`~MoneyRuntime.pacing_multiplier`,
:meth:`~MoneyRuntime.admit` and :meth:`~MoneyRuntime.reserve`: no Redis, no await. One background
task (``start()``/``stop()``) does everything that talks to Redis, every ``tick_s``:

1. looks up the outcomes of outstanding bids (one HMGET per campaign day) and commits or
   releases them in the local :class:`~dsp.budget.ledger.Ledger`;
2. renews each campaign's lease with one LEASE script call (settle commits, return excess,
   lease more within the plan guard, extend the TTL, save the pacing state) — see
   :mod:`dsp.budget.leases`;
3. when the guard refused requests since the last tick, raises the throttle at once
   (:meth:`~dsp.budget.pacing.PacingController.guard`); every ``pacing.interval_s``, feeds the
   campaign's global spend rate (the demand, while the guard refuses) vs its plan to the
   :class:`~dsp.budget.pacing.PacingController`;
4. exports λ, throttle, lease money, ledger drift, spend, plan-to-date and the brake.

Plan guard: the lease is the only money the bid path can reserve, and the LEASE script grants it
only while the campaign's spend + all leases (which hold every open reservation) stay within the
plan-to-date + allowance, each process holding at most its share. So the guard holds across any
number of processes with the same local check as the budget: ``available_micros > 0``.

Emergency brake: when no LEASE call has succeeded for ``brake_grace_s`` (Redis unreachable or
slow), ``admit`` answers BUDGET_BRAKE and ``reserve`` refuses, for every budgeted campaign, until
a call succeeds again. ``brake_grace_s`` < ``lease_ttl_s``, so a cut-off process stops spending
before Redis reclaims its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from dsp.budget.keys import campaign_day, outcome_bucket
from dsp.budget.leases import LeaseBook
from dsp.budget.ledger import Ledger
from dsp.budget.outcomes import KEEP_AFTER_EXPIRY_S, OutcomeStore
from dsp.budget.pacing import SECONDS_PER_HOUR, PacingController, PacingPlan, PacingSettings
from dsp.budget.spec import CampaignBudget
from dsp.clock import monotonic, wall_time
from dsp.observability.metrics import Metrics
from dsp.openrtb.nobid import NoBidReason

log = logging.getLogger(__name__)

_VALUE_WINDOW = 512
_MIN_VALUES = 64  # values seen before this process computes its own throttle floor
#: Bids settled per Redis round trip, and slices per campaign per tick (16k bids: far above one
#: process's bid rate times the tick; a larger backlog drains over the next ticks).
SETTLE_SLICE = 256
SETTLE_SLICES_PER_TICK = 64


class MoneySettings(msgspec.Struct, frozen=True):
    tick_s: float = 0.5
    lease_ttl_s: float = 15.0
    brake_grace_s: float = 3.0
    redis_timeout_s: float = 1.0
    lease_horizon_s: float = 10.0  # keep about this many seconds of reservations available
    lease_fraction: float = 0.01  # default max lease: 1% of the daily budget ...
    min_lease_micros: int = 1_000_000  # ... but at least this
    first_check_s: float = 2.0  # first outcome look-up this long after the bid
    settle_grace_s: float = 5.0  # final look-up this long after the bid's expiry
    # A bid nobody has answered (no win, loss or bill) this long after it is taken as lost and
    # its reservation released, even if its token lives longer; a won bid awaiting its billing
    # notice stays reserved until its expiry. Notices later than this are "late" (docs/money.md).
    unanswered_hold_s: float = 30.0
    # A released bid is looked up once more this long later; a notice that committed it
    # meanwhile is charged to the lease (late notices then cost the budget, not overspend).
    late_recheck_s: float = 600.0
    # Plan guard allowance when the campaign sets none: this share of the daily budget, at least
    # one impression at the campaign's max price (docs/money.md, "Pacing guarantee").
    allowance_fraction: float = 0.001
    pacing: PacingSettings = PacingSettings()


class _Campaign:
    """Everything the runtime keeps for one campaign."""

    def __init__(self, spec: CampaignBudget, settings: MoneySettings, day: int) -> None:
        self.controller = PacingController(settings.pacing)
        self.ledger = Ledger(spec.campaign_id, day)
        self.draining: list[Ledger] = []
        self.configure(spec, settings)
        self.spent_micros = 0
        self.budget_micros = spec.daily_budget_micros
        self.free_micros = spec.daily_budget_micros
        self.valid_until = 0.0  # monotonic; the lease may be spent until then
        self.reserved_since = 0  # micros reserved since the last sync (rate estimate)
        self.rate_micros_s = 0.0
        self.pacing_at: tuple[float, int] | None = None  # (wall s, spent) at the last update
        self.expiry: dict[str, float] = {}  # bids whose token outlives unanswered_hold_s
        self.values = [0] * _VALUE_WINDOW
        self.values_n = 0
        self.value_floor = 0
        # Requests that reached the lease check, and those it refused (since the last tick / the
        # last pacing update): the guard's refused share drives the throttle.
        self.asked = self.refused = 0
        self.asked_interval = self.refused_interval = 0
        self.plan_micros = -1  # the guard's plan-to-date in Redis (-1: guard not in force)
        self.guard_limited = False
        self.share_micros = self.max_lease_micros  # what the guard lets this process hold
        self.adopted = False  # pacing state loaded from Redis (or found absent)

    def configure(self, spec: CampaignBudget, settings: MoneySettings) -> None:
        """(Re)derive everything that comes from the campaign's spec (start-up, reload)."""
        self.spec = spec
        self.plan = PacingPlan(spec.pacing_curve, spec.utc_offset_minutes)
        self.max_lease_micros = spec.max_lease_micros or max(
            settings.min_lease_micros, int(spec.daily_budget_micros * settings.lease_fraction))
        self.allowance_micros = spec.allowance_micros if spec.allowance_micros is not None else max(
            int(spec.daily_budget_micros * settings.allowance_fraction), spec.max_price_micros)
        self._sched_from, self._sched_until, self._sched_open = math.inf, -math.inf, False

    def bidding_at(self, now_s: float) -> bool:
        """Inside the flight dates and in an hour with a pacing weight > 0. The answer is cached
        for the interval in which it cannot change (this hour, cut at a flight boundary), so the
        bid path pays two float comparisons, not the plan's arithmetic (a clock that moves
        backwards, as in tests, just recomputes)."""
        if self._sched_from <= now_s < self._sched_until:
            return self._sched_open
        spec = self.spec
        lo = now_s - self.plan.seconds_into_day(now_s) % SECONDS_PER_HOUR
        hi = lo + SECONDS_PER_HOUR
        for edge in (spec.active_from_s, spec.active_until_s):
            if edge is not None:
                if now_s < edge:
                    hi = min(hi, edge)
                else:
                    lo = max(lo, edge)
        is_open = not ((spec.active_from_s is not None and now_s < spec.active_from_s)
                       or (spec.active_until_s is not None and now_s >= spec.active_until_s)
                       or not self.plan.in_schedule(now_s))
        self._sched_from, self._sched_until, self._sched_open = lo, hi, is_open
        return is_open

    def note_value(self, value_micros: int) -> None:
        self.values[self.values_n % _VALUE_WINDOW] = value_micros
        self.values_n += 1

    def recompute_value_floor(self) -> None:
        """Lowest-value-first throttle: drop values below the ``throttle`` quantile. With fewer
        than :data:`_MIN_VALUES` values seen (a fresh worker) the floor stays as adopted."""
        throttle = self.controller.throttle
        n = min(self.values_n, _VALUE_WINDOW)
        if throttle <= 0:
            self.value_floor = 0
            return
        if n < _MIN_VALUES:
            return
        seen = sorted(self.values[:n])
        self.value_floor = seen[min(n - 1, int(throttle * n))]

    def pacing_state(self) -> str:
        """What the LEASE script keeps for the next worker / restart / day: "λ throttle floor"."""
        c = self.controller
        return f"{c.lam:.6g} {c.throttle:.6g} {self.value_floor}"

    def adopt(self, state: str) -> None:
        """Continue from a stored pacing state (once, at this process's first sync)."""
        self.adopted = True
        parts = state.split()
        if len(parts) != 3:
            return
        try:
            lam, throttle, floor = float(parts[0]), float(parts[1]), int(parts[2])
        except ValueError:
            return
        self.controller.restore(lam, throttle)
        self.value_floor = max(0, floor) if self.controller.throttle > 0 else 0


class MoneyRuntime:
    """Implements MoneyGate. Build one per process; ``await start()``, ``await stop()``."""

    def __init__(self, redis: Any, metrics: Metrics, budgets: Sequence[CampaignBudget], *,
                 settings: MoneySettings | None = None, lease_id: str | None = None,
                 clock: Callable[[], float] = wall_time) -> None:
        self.settings = settings or MoneySettings()
        s = self.settings
        if s.settle_grace_s + s.late_recheck_s + 60 > KEEP_AFTER_EXPIRY_S:
            # Outcomes are kept KEEP_AFTER_EXPIRY_S past the token's expiry (dsp.budget.outcomes):
            # a look-up later than that would find nothing and miss a late bill.
            raise ValueError(f"settle_grace_s + late_recheck_s must stay a minute under "
                             f"{KEEP_AFTER_EXPIRY_S} s (outcomes expire then)")
        self.metrics = metrics
        self.clock = clock
        self.lease_id = lease_id or uuid.uuid4().hex[:16]
        self.leases = LeaseBook(redis, self.lease_id, ttl_s=self.settings.lease_ttl_s)
        self.outcomes = OutcomeStore(redis)
        self._campaigns: dict[str, _Campaign] = {}
        self._retired: list[Ledger] = []
        self._last_ok = monotonic()
        self._braked = False
        self._brake_grace_s = self.settings.brake_grace_s
        self._task: asyncio.Task[None] | None = None
        self.update_budgets(budgets)

    # --- configuration --------------------------------------------------------------------
    def update_budgets(self, budgets: Sequence[CampaignBudget]) -> None:
        """Swap in a new list (config reload). Removed campaigns stop bidding at once; their
        leases drain back to Redis in the background. Pacing state of kept campaigns survives."""
        now = self.clock()
        fresh: dict[str, _Campaign] = {}
        for spec in budgets:
            old = self._campaigns.get(spec.campaign_id)
            if old is None:
                fresh[spec.campaign_id] = _Campaign(spec, self.settings,
                                                    campaign_day(now, spec.utc_offset_minutes))
            else:
                old.configure(spec, self.settings)
                fresh[spec.campaign_id] = old
        for cid, gone in self._campaigns.items():
            if cid not in fresh:
                self._retired.extend([gone.ledger, *gone.draining])
        self._campaigns = fresh

    # --- the bid path (sync, local) ---------------------------------------------------------
    @property
    def braked(self) -> bool:
        """True while no LEASE call has succeeded for ``brake_grace_s`` (checked on every call,
        so the brake holds even while a tick is stuck waiting for Redis)."""
        if not self._braked and monotonic() - self._last_ok > self.settings.brake_grace_s:
            self._braked = True
        return self._braked

    def pacing_multiplier(self, campaign_id: str) -> float:
        c = self._campaigns.get(campaign_id)
        return c.controller.lam if c is not None else 0.0

    def _bidding_now(self, c: _Campaign) -> bool:
        """Inside the flight dates and in an hour with a pacing weight > 0."""
        return c.bidding_at(self.clock())

    def admit(self, campaign_id: str, value_micros: int) -> NoBidReason | None:
        """The bid path's money check: schedule, brake, throttle, the local lease (which the
        plan guard sizes). No Redis and nothing that grows: attribute reads, two clock reads,
        two counters (``benchmarks/bench_money_gate.py``)."""
        c = self._campaigns.get(campaign_id)
        if c is None:
            return NoBidReason.BUDGET_EXHAUSTED
        if not c.bidding_at(self.clock()):
            return NoBidReason.OUT_OF_SCHEDULE
        mono = monotonic()
        if self._braked or mono - self._last_ok > self._brake_grace_s:
            self._braked = True  # (as the ``braked`` property; the next good tick releases it)
            return NoBidReason.BUDGET_BRAKE
        c.note_value(value_micros)
        if value_micros < c.value_floor:
            return NoBidReason.PACING_THROTTLED
        c.asked += 1
        if c.ledger.available_micros <= 0 or mono >= c.valid_until:
            c.refused += 1
            return NoBidReason.BUDGET_EXHAUSTED
        return None

    def reserve(self, campaign_id: str, bid_id: str, price_micros: int, expires_at_s: float,
                *, test: bool = False, issued_at_s: float | None = None) -> bool:
        """Reserve a bid's price in the local lease. ``issued_at_s`` is the time its notice token
        carries (now when omitted): it names the day and the outcome bucket the notices use."""
        if test:
            return True
        c = self._campaigns.get(campaign_id)
        if c is None or self.braked or monotonic() >= c.valid_until:
            return False
        now = self.clock()
        issued = now if issued_at_s is None else issued_at_s
        if campaign_day(issued, c.spec.utc_offset_minutes) != c.ledger.day:
            return False  # just past midnight: wait for the tick to open the new day's books
        s = self.settings
        final_at = min(max(expires_at_s, now), now + s.unanswered_hold_s) + s.settle_grace_s
        ok = c.ledger.reserve(bid_id, price_micros, now_s=now, first_check_s=s.first_check_s,
                              final_check_at_s=final_at, bucket=outcome_bucket(issued))
        if ok:
            c.reserved_since += price_micros
            if expires_at_s > now + s.unanswered_hold_s:
                c.expiry[bid_id] = expires_at_s
        else:
            c.refused += 1
        return ok

    def ledger_drift_micros(self) -> int:
        """Σ over campaigns of leased - (committed + reserved + available): 0 when books balance."""
        return sum(c.ledger.drift_micros() for c in self._campaigns.values())

    def ledger(self, campaign_id: str) -> Ledger | None:
        """The campaign's current-day ledger (read-only use: CLI, tests)."""
        c = self._campaigns.get(campaign_id)
        return c.ledger if c is not None else None

    def controller(self, campaign_id: str) -> PacingController | None:
        c = self._campaigns.get(campaign_id)
        return c.controller if c is not None else None

    # --- background -------------------------------------------------------------------------
    async def start(self) -> None:
        """One sync now (so the bidder starts with leases), then the background loop. The loop
        starts even if that first sync fails or is cancelled (Redis down at start-up: the brake
        holds until Redis answers)."""
        try:
            await self.tick()
        except Exception:
            log.exception("first money sync failed; retrying in the background")
        finally:
            if self._task is None:
                self._task = asyncio.create_task(self._run(), name="money-runtime")

    async def stop(self) -> None:
        """Stop the loop; settle commits and hand unused money back (outstanding reservations
        stay in the lease until its TTL reclaims them)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.tick(returning=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_s)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the money loop die; the brake covers failures
                log.exception("money tick failed")

    async def tick(self, *, returning: bool = False) -> None:
        """One round of outcome look-ups, lease syncs and pacing for every campaign."""
        started = monotonic()
        jobs = [self._sync_campaign(c, returning=returning) for c in self._campaigns.values()]
        jobs.extend(self._sync_ledger(led, None, returning=True) for led in self._retired)
        results = await asyncio.gather(*jobs, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        for exc in failures:
            kind = "timeout" if isinstance(exc, TimeoutError) else "error"
            self.metrics.redis_errors.labels(op="money", kind=kind).inc()
        if not failures:
            self._last_ok = started
        self._retired = [led for led in self._retired if led.leased_micros > 0 or led.outstanding]
        self._braked = monotonic() - self._last_ok > self.settings.brake_grace_s
        self.metrics.budget_brake.set(1 if self._braked else 0)

    async def _sync_campaign(self, c: _Campaign, *, returning: bool) -> None:
        now = self.clock()
        day = campaign_day(now, c.spec.utc_offset_minutes)
        if day != c.ledger.day:
            c.draining.append(c.ledger)
            c.ledger = Ledger(c.spec.campaign_id, day)
            c.pacing_at = None
        for led in list(c.draining):
            await self._sync_ledger(led, c, returning=True)
            if led.leased_micros == 0 and not led.outstanding:
                c.draining.remove(led)
        await self._sync_ledger(c.ledger, c, returning=returning)
        self._guard_feedback(c)
        self._pace(c, now)
        cid = c.spec.campaign_id
        m = self.metrics
        m.lease_available_micros.labels(campaign=cid).set(c.ledger.available_micros)
        m.ledger_drift_micros.labels(campaign=cid).set(c.ledger.drift_micros())
        m.pacing_multiplier.labels(campaign=cid).set(c.controller.lam)
        m.pacing_throttle.labels(campaign=cid).set(c.controller.throttle)
        m.budget_spent_micros.labels(campaign=cid).set(c.spent_micros)
        m.budget_plan_micros.labels(campaign=cid).set(c.plan.planned_micros(c.budget_micros, now))
        if c.plan_micros >= 0:
            m.budget_guard_micros.labels(campaign=cid).set(c.plan_micros + c.allowance_micros)

    async def _sync_ledger(self, led: Ledger, c: _Campaign | None, *, returning: bool) -> None:
        s = self.settings
        await asyncio.wait_for(self._settle_outcomes(led, c), s.redis_timeout_s)
        rate = -1.0  # no plan guard on this call (draining, returning, not bidding, guard off)
        if c is None or returning or led is not c.ledger or not self._bidding_now(c):
            want, give_back = 0, led.available_micros
        else:
            c.rate_micros_s = 0.7 * c.rate_micros_s + 0.3 * c.reserved_since / max(s.tick_s, 1e-3)
            c.reserved_since = 0
            target = min(c.max_lease_micros,
                         max(c.max_lease_micros // 4, int(c.rate_micros_s * s.lease_horizon_s)))
            want = max(0, target - led.available_micros)
            give_back = max(0, led.available_micros - 2 * target)
            if c.spec.plan_guard:
                rate = c.plan.guard_rate(c.budget_micros, c.spent_micros, self.clock(),
                                         c.spec.catch_up_max)
                # More than our share (another process started): hand the excess back.
                give_back = max(give_back, led.leased_micros - c.share_micros)
        spec = c.spec if c is not None else None
        asked = led.take_for_return(give_back)
        state = c.pacing_state() if c is not None and c.adopted and led is c.ledger else ""
        sent_at = monotonic()
        try:
            res = await asyncio.wait_for(self.leases.sync(
                led.campaign_id, led.day,
                daily_budget_micros=spec.daily_budget_micros if spec else -1,
                total_budget_micros=spec.total_budget_micros if spec else None,
                settle_micros=led.committed_micros, return_micros=asked, want_micros=want,
                max_lease_micros=c.max_lease_micros if c else 0,
                had_lease=led.leased_micros > 0, plan_rate_micros_s=rate,
                allowance_micros=c.allowance_micros if c else 0,
                min_share_micros=spec.max_price_micros if spec else 0,
                horizon_s=s.lease_horizon_s,
                reserved_micros=led.reserved_micros,
                pacing_state=state), s.redis_timeout_s)
        except BaseException:
            led.sync_failed(asked)
            raise
        if res.lost:
            orphans = led.lease_lost()
            if c is not None:
                for bid_id in orphans:
                    c.expiry.pop(bid_id, None)
            log.warning("lease of %s day %d reclaimed; %d bids orphaned", led.campaign_id,
                        led.day, len(orphans))
        else:
            led.lease_synced(settled_micros=res.settled_micros, return_asked_micros=asked,
                             returned_micros=res.returned_micros, granted_micros=res.granted_micros,
                             lease_micros=res.lease_micros)
        if c is not None and led is c.ledger:
            c.spent_micros, c.budget_micros = res.spent_micros, res.budget_micros
            c.free_micros = res.budget_micros - res.out_micros - res.spent_micros
            c.plan_micros, c.guard_limited = res.plan_micros, res.guard_limited
            c.share_micros = res.share_micros if res.share_micros >= 0 else c.max_lease_micros
            if not c.adopted:
                c.adopt(res.pacing_state)
            # Spend only what Redis will reclaim no sooner than our TTL, minus the brake margin.
            c.valid_until = sent_at + s.lease_ttl_s - s.brake_grace_s

    async def _settle_outcomes(self, led: Ledger, c: _Campaign | None) -> None:
        """Look up due outcomes and settle them, in slices of :data:`SETTLE_SLICE` bids with a
        Redis round trip between slices: a backlog of thousands of bids (one tick at a few
        thousand bids/s) never holds the event loop for more than one slice's work. Unsliced,
        3,500 due bids were one step of 2–8 ms in ``Ledger.due`` alone, then one 3,500-key HMGET
        to pack, every tick, stalling every bid request in flight
        (``benchmarks/bench_hotspots.py``). At most :data:`SETTLE_SLICES_PER_TICK`
        slices per call; the rest stay due for the next tick."""
        now = self.clock()
        late = led.due_rechecks(now)
        if late:
            try:
                outcomes_late = await self.outcomes.lookup(
                    led.campaign_id, [b for _, _, b in late], [b for b, _, _ in late])
            except BaseException:
                led.requeue_rechecks(late, now + self.settings.tick_s)
                raise
            for (_, price, _), out in zip(late, outcomes_late, strict=True):
                if out.state == "C":
                    led.charge_late(out.committed_micros, price)
                    self.metrics.notices.labels(kind="settle", result="late_charged").inc()
        for _ in range(SETTLE_SLICES_PER_TICK):
            first, final = led.due(now, limit=SETTLE_SLICE)
            if not first and not final:
                return
            await self._settle_slice(led, c, now, first, final)

    async def _settle_slice(self, led: Ledger, c: _Campaign | None, now: float,
                            first: list[str], final: list[str]) -> None:
        ids = first + final
        try:
            outcomes = await self.outcomes.lookup(led.campaign_id,
                                                  [led.bucket_of(b) for b in ids], ids)
        except BaseException:
            retry_at = self.clock() + self.settings.tick_s
            led.requeue(first, retry_at, final=False)
            led.requeue(final, retry_at, final=True)
            raise
        n_first = len(first)
        expiry = c.expiry if c is not None else {}
        for i, (bid_id, out) in enumerate(zip(ids, outcomes, strict=True)):
            if out.state == "C":
                led.commit(bid_id, out.committed_micros)
            elif out.state == "W" and i < n_first and bid_id in expiry:
                led.extend(bid_id, expiry[bid_id] + self.settings.settle_grace_s)
                continue
            elif out.state == "L" or i >= n_first:
                led.release(bid_id, recheck_at_s=now + self.settings.late_recheck_s)
            else:
                continue
            expiry.pop(bid_id, None)

    def _guard_feedback(self, c: _Campaign) -> None:
        """Every tick: if the guard (not the budget) cut our lease and refused requests since the
        last tick, raise the throttle now, so what the plan allows goes to the highest values."""
        asked, refused = c.asked, c.refused
        c.asked = c.refused = 0
        c.asked_interval += asked
        if c.guard_limited and refused and asked:
            c.refused_interval += refused
            c.controller.guard(refused / asked)
            c.recompute_value_floor()  # (a sort of <= 512 values; only when the throttle moved)

    def _pace(self, c: _Campaign, now: float) -> None:
        if c.pacing_at is None:
            c.pacing_at = (now, c.spent_micros)
            return
        then, spent_then = c.pacing_at
        dt = now - then
        if dt < self.settings.pacing.interval_s:
            return
        c.pacing_at = (now, c.spent_micros)
        asked, refused = c.asked_interval, c.refused_interval
        c.asked_interval = c.refused_interval = 0
        if not c.plan.in_schedule(now):
            return
        rate = max(0, c.spent_micros - spent_then) / dt
        if asked and refused:  # the guard held spend down: the controller sees the demand
            rate /= max(0.05, 1.0 - refused / asked)
        if c.spec.plan_guard:  # aim where the guard lets spend go (catch-up capped)
            target = c.plan.guard_rate(c.budget_micros, c.spent_micros, now, c.spec.catch_up_max)
        else:
            target = c.plan.target_rate(c.budget_micros - c.spent_micros, now)
        c.controller.update(rate, target)
        c.recompute_value_floor()
