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
from dsp.config.learned import ShadingTable
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
    shading: float = 1.0  # first price: the factor applied to the unshaded bid
    pacing_lambda: float = 0.0
    explore: bool = False  # placed by the exploration policy
    propensity: float = 1.0  # probability that the policy places this bid (exploration: its share)


def impression_value(c: CompiledCampaign, p_intent: float, pd: float) -> float:
    """Expected value of one impression in currency units (may be negative)."""
    npv = c.margin * (1.0 - pd) - pd * c.lgd * c.ead - c.cost
    return p_intent * c.apply_rate * c.p_approve * npv


def price(c: CompiledCampaign, p_intent: float, pd: float, *, pacing_lambda: float,
          floor_cpm_micros: int, auction_type: int, shading: float,
          table: ShadingTable | None = None) -> Price:
    """Price one candidate that passed the score gates. Amounts are CPM micros in the campaign's
    currency. First price: ``table`` (the learned landscape's surplus-maximising bid for this
    value, :class:`dsp.config.learned.ShadingTable`) when given, else the fixed ``shading``."""
    value = round_half_away(impression_value(c, p_intent, pd) * _CPM_MICROS_PER_UNIT_PER_IMP)
    if value <= 0:
        return Price(value, 0, VALUE, "expected value is not positive")
    lam = max(pacing_lambda, 0.0)
    bid = min(c.max_cpm_micros, round_half_away(value / (1.0 + lam)))
    factor = 1.0
    if auction_type == 1:
        shaded = table.bid_for(bid) if table is not None else round_half_away(bid * shading)
        if shaded < floor_cpm_micros <= bid:
            shaded = floor_cpm_micros
        factor = shaded / bid if bid > 0 else shading
        bid = shaded
    if bid < floor_cpm_micros or bid <= 0:
        return Price(value, bid, FLOOR,
                     f"bid {bid / 1e6:.4f} below floor {floor_cpm_micros / 1e6:.4f} CPM")
    return Price(value, bid, None, shading=factor, pacing_lambda=lam)


#: An exploration bid: the floor, or this share of the campaign's max CPM when that is higher.
EXPLORE_BID_SHARE_OF_MAX_CPM = 0.1


def explore_price(c: CompiledCampaign, p: Price, floor_cpm_micros: int) -> Price | None:
    """The bid placed on an explored request the policy would not bid on (intent below the
    campaign's ``intent_min``, or a value below the floor): ``max(floor, 10% of max_cpm)``,
    flagged ``explore`` with propensity ``c.explore_share``. Its cost is bounded by the share:
    at most ``explore_share`` of the otherwise unbid traffic, at that price. None (no
    exploration) when the floor is above the campaign's ``max_cpm``: the bid cap marketing set
    holds for exploration too."""
    bid = max(floor_cpm_micros, round_half_away(c.max_cpm_micros * EXPLORE_BID_SHARE_OF_MAX_CPM))
    if bid > c.max_cpm_micros:
        return None
    return Price(p.value_cpm_micros, bid, None, "exploration", pacing_lambda=p.pacing_lambda,
                 explore=True, propensity=c.explore_share)
