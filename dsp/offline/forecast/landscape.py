"""A bid landscape fitted on logged wins and losses: P(win | bid) and the expected price paid.

Market prices are *censored*: a won second-price auction shows the clearing price (``price <=
bid``), a lost one only shows that the price was above our bid. Fitting a curve to the won prices
alone would learn the cheap end of the market and overstate win rates. The Kaplan–Meier estimator
treats each loss as a right-censored observation at its bid (``price > bid``)::

    S(t) = Π_{t_k <= t} (1 − d_k / n_k)          S = P(market price > t)
    d_k  = wins whose price is t_k,  n_k = bids still "at risk" at t_k (price >= t_k or censored
           at or above t_k)

    P(win | b)          = 1 − S(b)
    E[pay · 1{win} | b] = Σ_{t_k <= b} t_k · (S(t_{k−1}) − S(t_k))   (second price: pay the market)

Above the highest bid the log ever placed, ``S`` is unknown (every bid up there is an
extrapolation). :meth:`Landscape.coverage` says up to where the curve is identified. Beyond it the
survival keeps decaying at the hazard measured over the top quarter of the identified range (an
exponential tail: a stated assumption, not a fit), and past ``max_price_micros`` (a known cap of
the market, when there is one) the price is certainly below the bid.

Amounts are micros of one impression, in any single currency; ``tick_micros`` is the price grid
(a loss at bid ``b`` means the price is at least the next grid point above ``b``).
"""

from __future__ import annotations

import msgspec
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


class Landscape(msgspec.Struct, frozen=True):
    """Step survival function of the market price (from :func:`fit`)."""

    times: list[float]  # event times (prices seen on wins), ascending
    survival: list[float]  # S(t) right after each event time
    top_micros: float  # highest bid or price observed: the curve is identified up to here
    max_price_micros: float  # the market's price cap (or top_micros * 2 when unknown)
    wins: int
    losses: int

    def coverage(self) -> float:
        return self.top_micros

    def tail_hazard(self) -> float:
        """Hazard per micro over the top quarter of the identified range (at least the hazard
        that would empty the remaining mass by the cap, so the tail is never flatter)."""
        t = np.asarray(self.times)
        s = np.asarray(self.survival)
        cap = max(self.max_price_micros, self.top_micros + 1.0)
        floor_h = 1.0 / (cap - self.top_micros)
        if t.size < 2 or s[-1] <= 0:
            return floor_h
        lo = 0.75 * self.top_micros
        k = int(np.searchsorted(t, lo, side="right"))
        s_lo = float(s[k - 1]) if k > 0 else 1.0
        span = self.top_micros - (float(t[k - 1]) if k > 0 else 0.0)
        if span <= 0 or s_lo <= s[-1]:
            return floor_h
        return max(float(np.log(s_lo / s[-1]) / span), floor_h)

    def _arrays(self) -> tuple[F64, F64, F64]:
        t = np.asarray(self.times, dtype=np.float64)
        s = np.asarray(self.survival, dtype=np.float64)
        prev = np.concatenate([[1.0], s[:-1]])
        cum_pay = np.cumsum(t * (prev - s))
        return t, s, cum_pay

    def evaluate(self, bids_micros: F64) -> tuple[F64, F64, F64]:
        """(P(win), E[pay · 1{win}], E[pay² · 1{win}]) per bid, second price."""
        b = np.asarray(bids_micros, dtype=np.float64)
        t, s, cum_pay = self._arrays()
        if t.size == 0:
            zero = np.zeros_like(b)
            return zero, zero, zero
        prev = np.concatenate([[1.0], s[:-1]])
        cum_pay2 = np.cumsum(t * t * (prev - s))
        k = np.searchsorted(t, b, side="right")  # number of event times <= b
        s_at = np.where(k > 0, s[np.maximum(k - 1, 0)], 1.0)
        pay = np.where(k > 0, cum_pay[np.maximum(k - 1, 0)], 0.0)
        pay2 = np.where(k > 0, cum_pay2[np.maximum(k - 1, 0)], 0.0)
        # Beyond the identified range the survival decays with the hazard seen over the top
        # quarter of that range (an exponential tail); the market's cap holds what is left.
        top, cap = self.top_micros, max(self.max_price_micros, self.top_micros + 1.0)
        s_top = float(s[-1])
        h = self.tail_hazard()
        over = b > top
        hi = np.minimum(b, cap)
        dx = np.maximum(hi - top, 0.0)
        decay = np.exp(-h * dx)
        inv = 1.0 / h
        tail_p = s_top * (1.0 - decay)
        tail_pay = s_top * ((top + inv) - (hi + inv) * decay)
        tail_pay2 = s_top * ((top * top + 2 * top * inv + 2 * inv * inv)
                             - (hi * hi + 2 * hi * inv + 2 * inv * inv) * decay)
        at_cap = np.where(b >= cap, s_top * np.exp(-h * (cap - top)), 0.0)
        p_win = (1.0 - s_at) + np.where(over, tail_p + at_cap, 0.0)
        pay = pay + np.where(over, tail_pay + at_cap * cap, 0.0)
        pay2 = pay2 + np.where(over, tail_pay2 + at_cap * cap * cap, 0.0)
        return p_win, pay, pay2


def fit(bids_micros: F64, won: npt.NDArray[np.bool_], price_micros: F64, *,
        tick_micros: float = 1.0, max_price_micros: float | None = None,
        weights: F64 | None = None) -> Landscape:
    """Kaplan–Meier fit. ``price_micros`` is read only where ``won``; losses are censored at
    their bid. ``weights`` (e.g. a recency decay) weight each observation in both the events
    and the risk sets. Raises ValueError without any win (nothing to fit)."""
    bids = np.asarray(bids_micros, dtype=np.float64)
    w = np.asarray(won, dtype=bool)
    prices = np.asarray(price_micros, dtype=np.float64)
    if not w.any():
        raise ValueError("no wins to fit a bid landscape on")
    if weights is not None:
        return _fit_weighted(bids, w, prices, np.asarray(weights, dtype=np.float64), tick_micros,
                             max_price_micros)
    events = prices[w]
    # A loss at b: the price is above b, i.e. at least the next price on the grid, so the bid is
    # still "at risk" at that grid point (censoring earlier would overstate cheap wins).
    censor = (np.floor(bids[~w] / tick_micros) + 1.0) * tick_micros
    times = np.unique(events)
    d = np.searchsorted(np.sort(events), times, side="right") - np.searchsorted(
        np.sort(events), times, side="left")
    ev_sorted, ce_sorted = np.sort(events), np.sort(censor)
    at_risk = (ev_sorted.size - np.searchsorted(ev_sorted, times, side="left")) + (
        ce_sorted.size - np.searchsorted(ce_sorted, times, side="left"))
    survival = np.cumprod(1.0 - d / np.maximum(at_risk, 1))
    top = float(max(bids.max(initial=0.0), events.max(initial=0.0)))
    cap = float(max_price_micros) if max_price_micros else 2.0 * top
    return Landscape([float(x) for x in times], [float(x) for x in survival], top, cap,
                     int(w.sum()), int((~w).sum()))


def _fit_weighted(bids: F64, w: npt.NDArray[np.bool_], prices: F64, weights: F64,
                  tick_micros: float, max_price_micros: float | None) -> Landscape:
    events, ev_w = prices[w], weights[w]
    censor, ce_w = (np.floor(bids[~w] / tick_micros) + 1.0) * tick_micros, weights[~w]
    times = np.unique(events)
    order_e, order_c = np.argsort(events), np.argsort(censor)
    ev_s, ev_ws = events[order_e], ev_w[order_e]
    ce_s, ce_ws = censor[order_c], ce_w[order_c]
    ev_tail = np.concatenate([np.cumsum(ev_ws[::-1])[::-1], [0.0]])  # weight with value >= i-th
    ce_tail = np.concatenate([np.cumsum(ce_ws[::-1])[::-1], [0.0]])
    ev_cum = np.concatenate([[0.0], np.cumsum(ev_ws)])
    lo, hi = np.searchsorted(ev_s, times, side="left"), np.searchsorted(ev_s, times, side="right")
    d = ev_cum[hi] - ev_cum[lo]
    at_risk = ev_tail[lo] + ce_tail[np.searchsorted(ce_s, times, side="left")]
    survival = np.cumprod(1.0 - d / np.maximum(at_risk, 1e-12))
    top = float(max(bids.max(initial=0.0), events.max(initial=0.0)))
    cap = float(max_price_micros) if max_price_micros else 2.0 * top
    return Landscape([float(x) for x in times], [float(x) for x in survival], top, cap,
                     int(w.sum()), int((~w).sum()))


def recency_weights(ts_us: npt.NDArray[np.int64], half_life_days: float) -> F64:
    """``0.5 ** (age / half_life)`` with age in days before the newest observation: the market
    drifts (iPinYou: the share of prices <= 30 moves by a fifth over 50 days), so recent outcomes
    count more. ``half_life_days <= 0``: all weights 1."""
    ts = np.asarray(ts_us, dtype=np.float64)
    if half_life_days <= 0 or ts.size == 0:
        return np.ones_like(ts)
    age_days = (ts.max() - ts) / 86_400e6
    out: F64 = np.power(0.5, age_days / half_life_days)
    return out


def bootstrap(bids_micros: F64, won: npt.NDArray[np.bool_], price_micros: F64, n: int,
              seed: int, **kwargs: object) -> list[Landscape]:
    """``n`` refits on resampled logs (rows with replacement): the fit's own uncertainty."""
    rng = np.random.default_rng(seed)
    out: list[Landscape] = []
    size = len(bids_micros)
    for _ in range(n):
        idx = rng.integers(0, size, size)
        if not np.asarray(won)[idx].any():
            continue
        wts = kwargs.get("weights")
        extra = {k: v for k, v in kwargs.items() if k != "weights"}
        out.append(fit(np.asarray(bids_micros)[idx], np.asarray(won)[idx],
                       np.asarray(price_micros)[idx],
                       weights=None if wts is None else np.asarray(wts)[idx],
                       **extra))  # type: ignore[arg-type]
    return out
