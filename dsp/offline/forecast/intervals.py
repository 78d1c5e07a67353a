"""Intervals for forecast totals: the market's own noise plus the fit's uncertainty.

For the bids a simulated config placed (recorded along the expected path), each total is a sum
of independent outcomes, so its noise variance is the sum of per-bid variances (Bernoulli wins
and clicks; the price's spread for spend). The fit's uncertainty is the spread of the same totals
under bootstrap refits of the landscape and the click model. The interval is the normal one,
``mean ± z · sqrt(noise + fit)`` with ``z`` for the stated coverage (90%: 1.645); clicks use the
negative-binomial quantiles of :func:`_clicks` (few logged clicks make the click rate, not the
Poisson draw, the main uncertainty). Pacing feedback
(an unlucky morning lowers λ for the afternoon) is ignored, which makes intervals for
budget-bound campaigns wider than needed, not narrower.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
import numpy as np

from dsp.offline.forecast.market import FittedMarket
from dsp.offline.forecast.simulate import BidRecord

COVERAGE = 0.90
Z = {0.80: 1.2816, 0.90: 1.6449, 0.95: 1.9600}


class Estimate(msgspec.Struct, frozen=True):
    mean: float
    low: float
    high: float
    coverage: float = COVERAGE

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high


def estimates(market: FittedMarket, boots: Sequence[FittedMarket], records: Sequence[BidRecord],
              coverage: float = COVERAGE) -> dict[str, dict[str, Estimate]]:
    """Per campaign: ``wins``, ``spend_micros`` and ``clicks`` estimates with intervals."""
    z = Z[coverage]
    central = market.totals(records)
    boot_totals = [b.totals(records) for b in boots]
    out: dict[str, dict[str, Estimate]] = {}
    for cid, (wins, spend, clicks, v_w, v_s, v_c) in central.items():
        ests: dict[str, Estimate] = {}
        for k, (name, mean, noise) in enumerate((("wins", wins, v_w), ("spend_micros", spend, v_s),
                                                 ("clicks", clicks, v_c))):
            draws = [bt[cid][k] for bt in boot_totals if cid in bt]
            fit_var = float(np.var(draws, ddof=1)) if len(draws) > 1 else 0.0
            if name == "clicks":
                ests[name] = _clicks(market, cid, float(mean), coverage)
                continue
            half = z * math.sqrt(max(noise, 0.0) + fit_var)
            ests[name] = Estimate(float(mean), float(max(mean - half, 0.0)), float(mean + half),
                                  coverage)
        out[cid] = ests
    return out


def _clicks(market: FittedMarket, cid: str, mean: float, coverage: float) -> Estimate:
    """Clicks = Poisson(k · S) with the click rate ``k`` ~ Gamma(shape, rate) (its posterior
    from the logged clicks): a negative binomial, whose quantiles are the interval. Skewed up:
    with a handful of logged clicks the rate may well be two or three times its mean."""
    k_mean = market.clicks.per_intent.get(cid, market.clicks.pooled)
    shape, rate = market.clicks.posterior.get(cid, (1.0, 1.0))
    if k_mean <= 0 or mean <= 0:
        return Estimate(mean, 0.0, 0.0, coverage)
    exposure = mean / k_mean  # Σ P(win) · p_intent over the simulated bids
    p = rate / (rate + exposure)
    tail = (1.0 - coverage) / 2.0
    low, high = _nbinom_quantiles(shape, p, (tail, 1.0 - tail))
    return Estimate(mean, low, high, coverage)


def _nbinom_quantiles(n: float, p: float, qs: tuple[float, float]) -> tuple[float, float]:
    """Quantiles of NegBin(n, p) (failures before the n-th success), by walking the pmf:
    ``P(0) = p^n``, ``P(x+1) = P(x) · (x + n) / (x + 1) · (1 − p)``."""
    log_p0 = n * math.log(p)
    pmf, cdf, x = math.exp(log_p0), 0.0, 0
    out: list[float] = []
    limit = 10 * (n * (1 - p) / p + 10 * math.sqrt(n * (1 - p)) / p + 10)
    for q in qs:
        while cdf + pmf < q and x < limit:
            cdf += pmf
            pmf *= (x + n) / (x + 1) * (1.0 - p)
            x += 1
        out.append(float(x))
    return out[0], out[1]
