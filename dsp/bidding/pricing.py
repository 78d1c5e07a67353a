"""The value formula of DESIGN.md §3 and the bid price. Pure, integer micros out.

For an impression of a user with calibrated ``p_intent`` and probability of default ``pd``::

    NPV   = margin · (1 − pd) − pd · lgd · ead − cost            (currency units, per booked loan)
    v     = p_intent · apply_rate · p_approve · NPV               (per impression)
    gate    v ≤ 0 -> VALUE_NOT_POSITIVE (intent_min and pd_max are rows of dsp.bidding.filters,
            checked before pricing)
    bid   = min(max_cpm, 1000 · v / (1 + λ))                      (CPM; second price, at=2)
    at=1    bid · shading, clamped up to the floor when the unshaded bid clears it
    always  bid ≥ floor, else BELOW_FLOOR

Worked example (QuickLoan demo constants: margin 900, lgd 0.65, ead 3000, cost 120,
apply_rate 0.002, p_approve 0.55, max_cpm 6): pd 0.05, p_intent 0.2 ->
NPV = 855 − 97.5 − 120 = 637.5; v = 0.2 · 0.002 · 0.55 · 637.5 = 0.14025 per imp = 140.25 CPM,
capped at 6.00 CPM -> ``bid_cpm_micros == 6_000_000``.
"""

from __future__ import annotations

import msgspec

from dsp.bidding.filters import FLOOR, VALUE, Filter
from dsp.config.snapshot import CompiledCampaign
from dsp.money import round_half_away

_CPM_MICROS_PER_UNIT_PER_IMP = 1000 * 1_000_000  # 1 unit per imp = 1000 units CPM = 1e9 CPM micros


class Price(msgspec.Struct, gc=False):
    """Outcome of pricing one (imp, campaign): ``stopped`` is None when ``bid_cpm_micros`` is a
    bid, else the filter row (``value`` or ``floor``) that stopped it."""

    value_cpm_micros: int
    bid_cpm_micros: int
    stopped: Filter | None
    detail: str = ""


def impression_value(c: CompiledCampaign, p_intent: float, pd: float) -> float:
    """Expected value of one impression in currency units (may be negative)."""
    npv = c.margin * (1.0 - pd) - pd * c.lgd * c.ead - c.cost
    return p_intent * c.apply_rate * c.p_approve * npv


def price(c: CompiledCampaign, p_intent: float, pd: float, *, pacing_lambda: float,
          floor_cpm_micros: int, auction_type: int, shading: float) -> Price:
    """Price one candidate that passed the score gates. Amounts are CPM micros in the campaign's
    currency."""
    value = round_half_away(impression_value(c, p_intent, pd) * _CPM_MICROS_PER_UNIT_PER_IMP)
    if value <= 0:
        return Price(value, 0, VALUE, "expected value is not positive")
    bid = min(c.max_cpm_micros, round_half_away(value / (1.0 + max(pacing_lambda, 0.0))))
    if auction_type == 1:
        shaded = round_half_away(bid * shading)
        if shaded < floor_cpm_micros <= bid:
            shaded = floor_cpm_micros
        bid = shaded
    if bid < floor_cpm_micros or bid <= 0:
        return Price(value, bid, FLOOR,
                     f"bid {bid / 1e6:.4f} below floor {floor_cpm_micros / 1e6:.4f} CPM")
    return Price(value, bid, None)
