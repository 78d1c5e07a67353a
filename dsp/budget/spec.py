"""What the money side needs to know about a campaign, in integer micros.

Built from the campaign config (dsp.config) when a snapshot compiles; consumed by the budget
leases, the pacing controller and frequency caps (dsp.budget). Kept here, in plain values, so
dsp.budget does not depend on the config file format.
"""

from __future__ import annotations

import msgspec


class FrequencyCap(msgspec.Struct, frozen=True):
    """At most ``max_impressions`` per user per rolling ``window_s`` seconds."""

    max_impressions: int
    window_s: int


class CampaignBudget(msgspec.Struct, frozen=True):
    """Budget, schedule and caps of one campaign.

    ``pacing_curve`` has 24 non-negative weights, one per hour of the campaign's day (in
    ``utc_offset_minutes`` local time); spend is planned in proportion to them. An even plan is
    24 equal weights. ``daily_budget_micros`` is in the account currency.
    """

    campaign_id: str
    daily_budget_micros: int
    total_budget_micros: int | None = None
    pacing_curve: tuple[float, ...] = (1.0,) * 24
    utc_offset_minutes: int = 0
    frequency_cap: FrequencyCap | None = None
    bills_on: str = "burl"  # "burl": billing notice commits; "nurl": win notice commits
    # Flight dates (wall-clock seconds, UTC): outside [active_from_s, active_until_s) the campaign
    # does not bid (OUT_OF_SCHEDULE). An hour whose pacing weight is 0 is out of schedule too.
    active_from_s: float | None = None
    active_until_s: float | None = None
    # Largest lease one process may hold (micros); None: a fraction of the daily budget
    # (MoneySettings.lease_fraction), at least MoneySettings.min_lease_micros.
    max_lease_micros: int | None = None
    # Plan guard (docs/money.md, "Pacing guarantee"): spend + open reservations stay within the
    # plan-to-date + this allowance. None: MoneySettings.allowance_fraction of the daily budget
    # (0.1 %), at least one impression at ``max_price_micros``. ``plan_guard=False`` turns the
    # guard off (the budget and the λ controller still apply).
    plan_guard: bool = True
    allowance_micros: int | None = None
    # Catch-up: the guard's rate re-spreads what is left over what is left of the plan, but never
    # faster than this multiple of the planned rate (so an under-delivered morning never turns
    # into a burst).
    catch_up_max: float = 1.5
    # The campaign's highest price for one impression (max CPM / 1000), micros; 0 if unknown.
    max_price_micros: int = 0
