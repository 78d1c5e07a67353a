"""Markets that settle simulated bids: the fitted one (forecast) and the logged truth (accuracy).

:class:`FittedMarket` holds one :class:`~dsp.offline.forecast.landscape.Landscape` per segment
(exchange and creative size; pooled over segments when one is thin) and a click model per
campaign, ``P(click | won) = k · p_intent`` with ``k = clicks / Σ p_intent`` over the logged wins
(the score ranks, the log calibrates). It settles a bid in expectation. :class:`TruthMarket`
settles on the true price and click of each logged auction (only for data where those are
known, e.g. the iPinYou logs): win when the bid is at least the market price, pay that price.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import numpy as np
import numpy.typing as npt

from dsp.offline.forecast.landscape import Landscape, bootstrap, fit, recency_weights
from dsp.offline.forecast.simulate import BidRecord, Settled

MIN_SEGMENT_OUTCOMES = 200  # wins + losses before a segment gets its own landscape
HALF_LIFE_DAYS = 7.0  # recency weighting of the landscape (chosen a priori: a week of traffic)
Segment = tuple[str, tuple[int, int]]


class Outcomes(msgspec.Struct, frozen=True):
    """Logged bids with their outcomes, aligned arrays (one row per bid)."""

    campaign: list[str]
    exchange: list[str]
    size: list[tuple[int, int]]
    bid_micros: npt.NDArray[np.float64]
    won: npt.NDArray[np.bool_]
    price_micros: npt.NDArray[np.float64]  # clearing price where won (NaN elsewhere)
    clicked: npt.NDArray[np.bool_]
    p_intent: npt.NDArray[np.float64]
    resolved: npt.NDArray[np.bool_]  # a win or a loss is known (unresolved bids are left out)
    ts_us: npt.NDArray[np.int64]


PRIOR_CLICKS = 1.0  # pseudo-clicks at k = 1 (the score taken as calibrated) before any data


class ClickModel(msgspec.Struct, frozen=True):
    """``P(click | won) = k · p_intent``; ``k = (clicks + 1) / (Σ p_intent + 1)`` over a
    campaign's logged wins: the mean of a Gamma posterior whose prior is one pseudo-click at
    k = 1 (the score taken as calibrated), so a log without clicks does not forecast zero
    clicks with certainty; the posterior variance widens the click interval."""

    per_intent: dict[str, float]  # campaign -> k (posterior mean)
    pooled: float
    # Gamma posterior of k per campaign, (shape, rate): mean shape/rate, variance shape/rate².
    posterior: dict[str, tuple[float, float]] = {}

    def k_variance(self, campaign: str) -> float:
        shape, rate = self.posterior.get(campaign, (PRIOR_CLICKS, PRIOR_CLICKS))
        return shape / (rate * rate)

    def rate(self, campaign: str, p_intent: float) -> float:
        return min(1.0, self.per_intent.get(campaign, self.pooled) * p_intent)


def fit_clicks(o: Outcomes) -> ClickModel:
    won = o.won & o.resolved
    camps = np.asarray(o.campaign)
    pooled = (float(o.clicked[won].sum()) + PRIOR_CLICKS) / (float(o.p_intent[won].sum())
                                                             + PRIOR_CLICKS)
    per: dict[str, float] = {}
    post: dict[str, tuple[float, float]] = {}
    for c in sorted(set(o.campaign)):
        m = won & (camps == c)
        shape = float(o.clicked[m].sum()) + PRIOR_CLICKS
        rate = float(o.p_intent[m].sum()) + PRIOR_CLICKS
        per[c], post[c] = shape / rate, (shape, rate)
    return ClickModel(per, pooled, post)


class FittedMarket:
    """Landscapes per segment and a click model; settles bids in expectation."""

    def __init__(self, landscapes: dict[Segment, Landscape], pooled: Landscape,
                 clicks: ClickModel) -> None:
        self.landscapes = landscapes
        self.pooled = pooled
        self.clicks = clicks

    def landscape(self, exchange: str, size: tuple[int, int]) -> Landscape:
        return self.landscapes.get((exchange, size), self.pooled)

    def settle(self, row: int, campaign: str, exchange: str, size: tuple[int, int],
               bid_micros: float, p_intent: float) -> Settled:
        p, pay, _ = self.landscape(exchange, size).evaluate(np.array([bid_micros]))
        p_win = float(p[0])
        return Settled(p_win, float(pay[0]), p_win * self.clicks.rate(campaign, p_intent))

    def totals(self, records: Sequence[BidRecord]) -> dict[str, tuple[float, float, float, float,
                                                                      float, float]]:
        """Per campaign along recorded bids: (wins, spend, clicks) means and noise variances."""
        out: dict[str, list[float]] = {}
        by_seg: dict[Segment, list[int]] = {}
        for n, r in enumerate(records):
            by_seg.setdefault((r.exchange, r.size), []).append(n)
        for seg, idx in by_seg.items():
            land = self.landscape(*seg)
            bids = np.array([records[n].bid_micros for n in idx])
            p, pay, pay2 = land.evaluate(bids)
            for k, n in enumerate(idx):
                r = records[n]
                w = r.weight
                q = float(p[k]) * self.clicks.rate(r.campaign, r.p_intent)
                acc = out.setdefault(r.campaign, [0.0] * 6)
                acc[0] += w * p[k]
                acc[1] += w * pay[k]
                acc[2] += w * q
                acc[3] += w * w * p[k] * (1 - p[k])
                acc[4] += w * w * max(pay2[k] - pay[k] ** 2, 0.0)
                acc[5] += w * w * q * (1 - q)
        return {c: (v[0], v[1], v[2], v[3], v[4], v[5]) for c, v in out.items()}


def fit_market(o: Outcomes, *, tick_micros: float = 1.0, max_price_micros: float | None = None,
               n_boot: int = 0, seed: int = 0, half_life_days: float = HALF_LIFE_DAYS
               ) -> tuple[FittedMarket, list[FittedMarket]]:
    """The fitted market and ``n_boot`` bootstrap refits (landscapes and click model)."""
    m = o.resolved
    wts = recency_weights(o.ts_us, half_life_days)
    kw: dict[str, object] = {"tick_micros": tick_micros, "max_price_micros": max_price_micros}
    pooled = fit(o.bid_micros[m], o.won[m], o.price_micros[m], weights=wts[m],
                 **kw)  # type: ignore[arg-type]
    exch = np.asarray(o.exchange)
    sizes = np.array([f"{w}x{h}" for w, h in o.size])
    segs: dict[Segment, Landscape] = {}
    seg_masks: dict[Segment, npt.NDArray[np.bool_]] = {}
    for e, s in sorted(set(zip(o.exchange, o.size, strict=True))):
        sm = m & (exch == e) & (sizes == f"{s[0]}x{s[1]}")
        if sm.sum() >= MIN_SEGMENT_OUTCOMES and o.won[sm].any():
            segs[(e, s)] = fit(o.bid_micros[sm], o.won[sm], o.price_micros[sm], weights=wts[sm],
                               **kw)  # type: ignore[arg-type]
            seg_masks[(e, s)] = sm
    market = FittedMarket(segs, pooled, fit_clicks(o))
    boots: list[FittedMarket] = []
    if n_boot:
        rng = np.random.default_rng(seed)
        idx_all = np.flatnonzero(m)
        pooled_b = bootstrap(o.bid_micros[m], o.won[m], o.price_micros[m], n_boot, seed,
                             weights=wts[m], **kw)
        seg_b = {seg: bootstrap(o.bid_micros[sm], o.won[sm], o.price_micros[sm], n_boot,
                                seed + 1 + i, weights=wts[sm], **kw)
                 for i, (seg, sm) in enumerate(seg_masks.items())}
        for b in range(len(pooled_b)):
            pick = rng.choice(idx_all, size=idx_all.size, replace=True)
            sub = Outcomes([o.campaign[i] for i in pick], [o.exchange[i] for i in pick],
                           [o.size[i] for i in pick], o.bid_micros[pick], o.won[pick],
                           o.price_micros[pick], o.clicked[pick], o.p_intent[pick],
                           o.resolved[pick], o.ts_us[pick])
            boots.append(FittedMarket({s: v[b] for s, v in seg_b.items() if b < len(v)},
                                      pooled_b[b], fit_clicks(sub)))
    return market, boots


class TruthMarket:
    """Settles on the logged truth: ``price_micros[row]`` and ``click[row]`` per auction."""

    def __init__(self, price_micros: npt.NDArray[np.float64], click: npt.NDArray[np.int8]) -> None:
        self.price = price_micros.tolist()
        self.click = click.tolist()

    def settle(self, row: int, campaign: str, exchange: str, size: tuple[int, int],
               bid_micros: float, p_intent: float) -> Settled:
        price = self.price[row]
        if bid_micros >= price:
            return Settled(1.0, price, float(self.click[row]))
        return Settled(0.0, 0.0, 0.0)
