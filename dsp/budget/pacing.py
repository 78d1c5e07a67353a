"""Pacing: a spend plan over the campaign day and a feedback controller for ``λ``. Pure code.

Plan. 24 hourly weights (``CampaignBudget.pacing_curve``, even = all equal) in campaign-local
time. At time ``t`` the *target spend rate* spreads what is left of the budget over what is left
of the plan, in proportion to the current hour's weight::

    target_rate(t) = remaining_budget · density(t) / (1 − F(t))

where ``F`` is the plan's cumulative fraction and ``density`` its derivative (per second). Because
the target is recomputed from the *remaining* budget, overspend in the morning lowers the target
for the afternoon and the budget lasts the day under steady traffic.

Controller. Every ``interval_s`` the observed spend rate (smoothed, EWMA) is compared with the
target in log space, ``e = log(observed / target)``, and ``u = log(1 + λ)`` moves by ``gain · e``
(clipped to ``max_step``; nothing moves inside ``deadband``). A gain below 1 on a smoothed signal
gives monotone approach without overshoot-driven oscillation for the usual bid landscape (spend
falls as λ rises). When λ is at ``lambda_max`` and spend is still too high, the controller raises
``throttle``: the fraction of the lowest-value traffic that ``admit`` turns away (lowest value
first, by a quantile of recently seen values); under-spend lowers the throttle before λ.

Plan guard. The controller acts in steps of ``interval_s``; a burst (every bid wins at its full
price) can spend far ahead of the plan before it catches up. So the money gate also enforces the
plan directly (:mod:`dsp.budget.runtime`, LEASE script): spend + open reservations ≤ plan-to-date +
allowance, where the plan-to-date advances at :meth:`PacingPlan.guard_rate` — the target above,
capped at ``catch_up_max`` × the planned rate. When the guard binds, :meth:`PacingController.guard`
raises the throttle at once (lowest-value traffic first), without waiting for λ to reach
``lambda_max``.

The same :class:`PacingController` runs in the bidder (wall clock) and in ``dsp replay``
(simulated clock).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86_400.0


class PacingSettings(msgspec.Struct, frozen=True):
    interval_s: float = 5.0
    gain: float = 0.25
    max_step: float = 0.5
    deadband: float = 0.05
    smoothing: float = 0.7  # EWMA weight of the newest spend-rate observation
    lambda_max: float = 20.0
    throttle_gain: float = 0.2
    throttle_max: float = 0.95
    # Guard feedback (every tick): the throttle closes this share of the gap the guard refused.
    guard_gain: float = 0.5


class PacingPlan:
    """The campaign's planned spend shape over its local day."""

    __slots__ = ("_cum", "_offset_s", "_weights")

    def __init__(self, curve: Sequence[float], utc_offset_minutes: int = 0) -> None:
        if len(curve) != 24 or any(w < 0 for w in curve) or sum(curve) <= 0:
            raise ValueError("pacing curve needs 24 non-negative weights with a positive sum")
        total = float(sum(curve))
        self._weights = [w / total for w in curve]
        self._cum = [0.0]
        for w in self._weights:
            self._cum.append(self._cum[-1] + w)
        self._offset_s = utc_offset_minutes * 60

    def seconds_into_day(self, now_s: float) -> float:
        return (now_s + self._offset_s) % SECONDS_PER_DAY

    def in_schedule(self, now_s: float) -> bool:
        """False during an hour whose weight is 0 (the campaign does not bid then)."""
        return self._weights[int(self.seconds_into_day(now_s) // SECONDS_PER_HOUR)] > 0

    def elapsed_fraction(self, now_s: float) -> float:
        """F(t): planned fraction of the day's spend that should be gone by now."""
        sec = self.seconds_into_day(now_s)
        hour = int(sec // SECONDS_PER_HOUR)
        return self._cum[hour] + self._weights[hour] * (sec - hour * SECONDS_PER_HOUR) / SECONDS_PER_HOUR

    def density_per_s(self, now_s: float) -> float:
        """The plan's share of the day's spend per second at ``now_s``."""
        return self._weights[int(self.seconds_into_day(now_s) // SECONDS_PER_HOUR)] / SECONDS_PER_HOUR

    def planned_micros(self, budget_micros: int, now_s: float) -> int:
        """Plan-to-date as planned at the start of the day: ``budget · F(t)``."""
        return int(budget_micros * self.elapsed_fraction(now_s))

    def guard_rate(self, budget_micros: int, spent_micros: int, now_s: float,
                   catch_up_max: float) -> float:
        """Micros per second the plan guard's plan-to-date advances by now: the re-spread target,
        never above ``catch_up_max`` × the planned rate ``budget · density``. Worked example: an
        even $300 day planned at 3,472 micros/s; nothing spent by noon, the re-spread target is
        6,944/s, the guard allows 1.5 × 3,472 = 5,208/s (``catch_up_max`` 1.5)."""
        planned = budget_micros * self.density_per_s(now_s)
        return min(self.target_rate(budget_micros - spent_micros, now_s), catch_up_max * planned)

    def target_rate(self, remaining_micros: int, now_s: float) -> float:
        """Micros per second the campaign should spend now (0 when nothing is left)."""
        if remaining_micros <= 0:
            return 0.0
        sec = self.seconds_into_day(now_s)
        density = self._weights[int(sec // SECONDS_PER_HOUR)] / SECONDS_PER_HOUR
        if density <= 0:
            return 0.0
        # Near the end of the plan this tends to "spend what is left in the time left".
        left = max(1.0 - self.elapsed_fraction(now_s), density)
        return remaining_micros * density / left


def even_target_rate(remaining_micros: float, time_left_s: float) -> float:
    """The even plan over an arbitrary horizon (replay episodes): spend what is left evenly."""
    if remaining_micros <= 0 or time_left_s <= 0:
        return 0.0
    return remaining_micros / time_left_s


class PacingController:
    """Feedback on spend rate vs target rate; outputs ``lam`` (λ ≥ 0) and ``throttle`` (0..1)."""

    __slots__ = ("_rate", "lam", "settings", "throttle")

    def __init__(self, settings: PacingSettings | None = None, *, initial_lambda: float = 0.0) -> None:
        self.settings = settings or PacingSettings()
        self.lam = max(0.0, initial_lambda)
        self.throttle = 0.0
        self._rate: float | None = None

    def update(self, spend_rate_micros_s: float, target_rate_micros_s: float) -> float:
        """Feed one observation (spend rate over the last interval) and return the new λ."""
        s = self.settings
        if self._rate is None:
            self._rate = spend_rate_micros_s
        else:
            self._rate = s.smoothing * spend_rate_micros_s + (1 - s.smoothing) * self._rate
        eps = 1e-9 + 1e-3 * max(target_rate_micros_s, 0.0)
        if target_rate_micros_s <= 0:
            error = s.max_step  # nothing should be spent: push λ up
        else:
            error = math.log((self._rate + eps) / (target_rate_micros_s + eps))
        if abs(error) < s.deadband:
            return self.lam
        step = max(-s.max_step, min(s.max_step, s.gain * error))
        u = math.log1p(self.lam)
        u_max = math.log1p(s.lambda_max)
        if step > 0:
            if u >= u_max - 1e-12:
                self.throttle = min(s.throttle_max, self.throttle + s.throttle_gain * step)
            else:
                u = min(u_max, u + step)
        elif self.throttle > 0:
            self.throttle = max(0.0, self.throttle + s.throttle_gain * step)
        else:
            u = max(0.0, u + step)
        self.lam = math.expm1(u)
        return self.lam

    def guard(self, refused_share: float) -> float:
        """The plan guard refused ``refused_share`` of the requests that passed the throttle since
        the last call: raise the throttle by ``guard_gain`` of that share of the remaining
        traffic, so the lowest-value requests are the ones left out (not whichever came last in
        a tick). Returns the throttle. Lowered by :meth:`update` when spend falls under target."""
        if refused_share > 0:
            s = self.settings
            step = (1.0 - self.throttle) * min(1.0, refused_share) * s.guard_gain
            self.throttle = min(s.throttle_max, self.throttle + step)
        return self.throttle

    def restore(self, lam: float, throttle: float) -> None:
        """Continue from a saved state (another worker's, or this campaign's before a restart)."""
        s = self.settings
        self.lam = min(max(0.0, lam), s.lambda_max)
        self.throttle = min(max(0.0, throttle), s.throttle_max)
