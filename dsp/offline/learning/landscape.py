"""The bid landscape from censored outcomes: P(win | bid) without ever seeing most prices.

What a bid's outcome tells about the market price ``m`` (the highest other bid):

    first price, win           m ≤ bid          (left-censored: the exchange keeps the price)
    first price, loss          m > bid          (right-censored)
    loss with min-to-win p     m = p            (exact; OpenRTB 2.6 ``${AUCTION_MIN_TO_WIN}``)
    second price, win at p     m = p            (exact: the clearing price is the market price)

Fitting ``W(b) = P(m ≤ b)`` to wins and losses by plain frequency at each bid is biased as soon as
bids depend on the impression, and it cannot use exact prices and censored ones together. The
estimator here is Turnbull's nonparametric maximum likelihood estimate (the Kaplan–Meier estimate
generalised to left-, right- and interval-censored data; with only exact and right-censored
observations it *is* Kaplan–Meier): EM over a price grid, each iteration O(grid).

    land = fit_landscape(bids, won, grid=np.arange(0, 301), exact=None)
    land.win_prob(80.0)                     # P(win | bid 80)
    land.best_bid(value=120.0)              # argmax_b (value - b) * W(b), b <= value

Prices are in whatever unit the caller uses (CPM micros in the bidder; iPinYou CPM units in
the replay); the grid must cover them.
"""

from __future__ import annotations

import msgspec
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class Landscape(msgspec.Struct, frozen=True):
    """``grid[j]`` price points (ascending); ``cdf[j] = P(m <= grid[j])``."""

    grid: list[float]
    cdf: list[float]
    n: int  # observations fitted

    def win_prob(self, bid: float) -> float:
        g = np.asarray(self.grid)
        j = int(np.searchsorted(g, bid, side="right")) - 1
        return 0.0 if j < 0 else float(self.cdf[j])

    def best_bid(self, value: float) -> float:
        """argmax over grid points b <= value of (value - b) * W(b); 0.0 when nothing pays."""
        g = np.asarray(self.grid)
        c = np.asarray(self.cdf)
        ok = g <= value
        if not ok.any():
            return 0.0
        surplus = (value - g[ok]) * c[ok]
        j = int(np.argmax(surplus))
        return float(g[ok][j]) if surplus[j] > 0 else 0.0

    def bid_table(self, values: FloatArray) -> FloatArray:
        """best_bid for many values at once (the compiled table the bidder interpolates)."""
        g = np.asarray(self.grid)
        c = np.asarray(self.cdf)
        out = np.zeros(len(values))
        for i, v in enumerate(values):
            ok = g <= v
            if ok.any():
                s = (v - g[ok]) * c[ok]
                j = int(np.argmax(s))
                out[i] = g[ok][j] if s[j] > 0 else 0.0
        return out


def fit_landscape(bids: npt.ArrayLike, won: npt.ArrayLike, grid: npt.ArrayLike, *,
                  exact: npt.ArrayLike | None = None, iterations: int = 500,
                  tol: float = 1e-9) -> Landscape:
    """Turnbull NPMLE of the market-price distribution on ``grid``.

    ``bids[i]``, ``won[i]``: one auction. ``exact[i]`` (optional, NaN when unknown): the market
    price when the outcome revealed it (min-to-win on a loss, clearing price in second price);
    such rows count as exact observations. Prices are snapped to the grid (a price between two
    points counts at the lower one: conservative for W)."""
    g = np.asarray(grid, dtype=np.float64)
    b = np.asarray(bids, dtype=np.float64)
    w = np.asarray(won, dtype=bool)
    m = len(g)
    ex = np.full(len(b), np.nan) if exact is None else np.asarray(exact, dtype=np.float64)
    has_exact = ~np.isnan(ex)
    # index of the highest grid point <= x
    k_bid = np.clip(np.searchsorted(g, b, side="right") - 1, -1, m - 1)
    n_left = np.bincount(k_bid[w & ~has_exact] + 1, minlength=m + 1)[1:].astype(np.float64)
    # a win with bid below the grid says nothing new (m <= bid < grid[0]): counted at cell 0
    n_left[0] += float(np.sum((k_bid < 0) & w & ~has_exact))
    lose = ~w & ~has_exact
    n_right = np.bincount(k_bid[lose] + 1, minlength=m + 1).astype(np.float64)  # m > grid[k]
    k_ex = np.clip(np.searchsorted(g, ex[has_exact], side="right") - 1, 0, m - 1)
    n_exact = np.bincount(k_ex, minlength=m).astype(np.float64)
    total = n_left.sum() + n_right.sum() + n_exact.sum()
    if total == 0:
        return Landscape(list(map(float, g)), [1.0] * m, 0)
    p = np.full(m, 1.0 / m)
    # n_right[k + 1] holds losses with bid at grid[k] (k = -1 .. m-1): mass strictly above cell k
    for _ in range(iterations):
        cdf = np.cumsum(p)
        f_left = np.where(cdf > 0, n_left / np.maximum(cdf, 1e-300), 0.0)
        # cell j gets left-censored weight from every bid level k >= j
        left_w = np.cumsum(f_left[::-1])[::-1]
        surv = 1.0 - np.concatenate(([0.0], cdf))  # P(m > grid[k]) for k = -1 .. m-1
        f_right = np.where(surv > 1e-300, n_right / np.maximum(surv, 1e-300), 0.0)
        # cell j gets right-censored weight from every level k < j, i.e. index k+1 <= j
        right_w = np.cumsum(f_right)[:m]
        new = p * (left_w + right_w) + n_exact
        new /= total
        if np.max(np.abs(new - p)) < tol:
            p = new
            break
        p = new
    cdf = np.clip(np.cumsum(p), 0.0, 1.0)
    return Landscape(list(map(float, g)), list(map(float, cdf)), int(total))
