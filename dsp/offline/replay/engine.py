"""Replay market-price logs through the bidder's pricing and pacing code. Pure (no I/O).

Protocol (as in Cai et al., ``han-cai/rlb-dp``, so results compare with the published table):
the log is cut into episodes of ``n_per_episode`` auctions in log order; each episode starts
with the budget ``budget_per_episode`` (1/32 of the training cost of ``n`` auctions by default);
an auction is won when the bid is at least the logged market price; the winner pays the market
price (second price) or its bid (first price); the bid never exceeds what is left; a final partial
episode gets a full budget, as in the reference code.

Strategies:

* :class:`PacedBid` — ours, the bidder's formula (DESIGN §3): value = pCTR · value-per-click,
  bid = min(max_bid, value / (1 + λ)), with λ driven every ``update_every`` auctions by the
  bidder's own :class:`~dsp.budget.pacing.PacingController` (spend rate vs "what is left, spread
  over the auctions left") and its lowest-value-first throttle.
* :class:`LinearBid` — the published linear baseline: bid = b0 · pCTR / mean CTR.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from dsp.budget.pacing import PacingController, PacingSettings, even_target_rate
from dsp.offline.replay.ipinyou import MarketLog

CURVE_POINTS = 10


class LinearBid(msgspec.Struct, frozen=True):
    b0: float
    ctr_avg: float
    max_bid: float = 300.0


class PacedBid(msgspec.Struct, frozen=True):
    value_per_click: float  # price units per click; value = pCTR * value_per_click
    max_bid: float = 300.0
    update_every: int = 25  # auctions between controller updates (the bidder's "few seconds")
    lambda0: float = 0.0
    # Start each episode from the previous episode's mean λ, as the bidder's controller keeps its
    # state from one day to the next (causal: only past episodes are used).
    carry_lambda: bool = True
    pacing: PacingSettings = PacingSettings()


class ReplayResult(msgspec.Struct):
    auctions: int
    impressions: int
    clicks: int
    spend: int  # price units (iPinYou CPM units), as in the published table
    budget: int
    budget_used_curve: list[float]  # mean fraction of the episode budget spent at 10%, 20%, ...

    @property
    def win_rate(self) -> float:
        return self.impressions / self.auctions if self.auctions else 0.0

    @property
    def cpm(self) -> float:
        """Mean price per impression in CPM units (the published table's CPM / 1000 convention:
        cost/1000 per impression * 1000)."""
        return self.spend / self.impressions if self.impressions else 0.0

    @property
    def ecpc(self) -> float:
        """Cost per click in the published table's units (cost / 1000 / clicks)."""
        return self.spend / 1000 / self.clicks if self.clicks else math.inf


def episode_budget(cpm_train: float, n_per_episode: int, c0: float) -> int:
    """The reference budget: ``int(train cost per auction * c0 * N)``."""
    return int(cpm_train * c0 * n_per_episode)


def _episodes(n_total: int, n_per_episode: int) -> list[tuple[int, int]]:
    return [(s, min(s + n_per_episode, n_total)) for s in range(0, n_total, n_per_episode)]


def replay(log: MarketLog, strategy: LinearBid | PacedBid, *, budget_per_episode: int,
           n_per_episode: int = 1000, first_price: bool = False) -> ReplayResult:
    clicks = log.clicks.tolist()
    prices = log.prices.tolist()
    pctr = log.pctr.tolist()
    imps = clk = spend = 0
    curve = np.zeros(CURVE_POINTS)
    episodes = _episodes(len(prices), n_per_episode)
    lam = strategy.lambda0 if isinstance(strategy, PacedBid) else 0.0
    for start, end in episodes:
        if isinstance(strategy, PacedBid):
            won, c, cost, marks, mean_lam = _paced_episode(
                strategy, clicks, prices, pctr, start, end, budget_per_episode, n_per_episode,
                first_price, lam)
            if strategy.carry_lambda:
                lam = mean_lam
        else:
            won, c, cost, marks = _linear_episode(strategy, clicks, prices, pctr, start, end,
                                                  budget_per_episode, n_per_episode, first_price)
        imps += won
        clk += c
        spend += cost
        curve += np.asarray(marks) / max(budget_per_episode, 1)
    n_ep = max(len(episodes), 1)
    return ReplayResult(auctions=len(prices), impressions=imps, clicks=clk, spend=spend,
                        budget=budget_per_episode * len(episodes),
                        budget_used_curve=[round(float(x) / n_ep, 4) for x in curve])


def _marks_at(n_per_episode: int) -> list[int]:
    return [n_per_episode * (k + 1) // CURVE_POINTS for k in range(CURVE_POINTS)]


def _linear_episode(s: LinearBid, clicks: list[int], prices: list[int], pctr: list[float],
                    start: int, end: int, budget: int, n: int, first_price: bool
                    ) -> tuple[int, int, int, list[int]]:
    b = budget
    won = clk = 0
    marks = _marks_at(n)
    curve: list[int] = []
    scale = s.b0 / s.ctr_avg
    for j, i in enumerate(range(start, end)):
        a = min(int(pctr[i] * scale), int(s.max_bid), b)
        price = prices[i]
        if a >= price:
            pay = a if first_price else price
            b -= pay
            won += 1
            clk += clicks[i]
        if len(curve) < len(marks) and j + 1 == marks[len(curve)]:
            curve.append(budget - b)
    curve.extend([budget - b] * (len(marks) - len(curve)))
    return won, clk, budget - b, curve


def _paced_episode(s: PacedBid, clicks: list[int], prices: list[int], pctr: list[float],
                   start: int, end: int, budget: int, n: int, first_price: bool, lambda0: float
                   ) -> tuple[int, int, int, list[int], float]:
    ctrl = PacingController(s.pacing, initial_lambda=lambda0)
    lam_sum, lam_n = 0.0, 0
    b = budget
    won = clk = 0
    spent_window = 0
    values: list[float] = []
    floor = 0.0
    marks = _marks_at(n)
    curve: list[int] = []
    vpc, k = s.value_per_click, max(1, s.update_every)
    for j, i in enumerate(range(start, end)):
        if j and j % k == 0:
            ctrl.update(spent_window / k, even_target_rate(b, n - j))
            spent_window = 0
            if j <= n * 3 // 4:  # the end of an episode is distorted by "spend what is left"
                lam_sum += ctrl.lam
                lam_n += 1
            floor = float(np.quantile(values[-512:], ctrl.throttle)) if ctrl.throttle > 0 else 0.0
        value = pctr[i] * vpc
        values.append(value)
        price = prices[i]
        bid = 0.0 if value < floor else min(s.max_bid, value / (1.0 + ctrl.lam), float(b))
        if bid >= price and b > 0:
            pay = min(b, math.ceil(bid)) if first_price else price
            b -= pay
            spent_window += pay
            won += 1
            clk += clicks[i]
        if len(curve) < len(marks) and j + 1 == marks[len(curve)]:
            curve.append(budget - b)
    curve.extend([budget - b] * (len(marks) - len(curve)))
    return won, clk, budget - b, curve, (lam_sum / lam_n if lam_n else ctrl.lam)
