"""Learned first-price shading, validated on the iPinYou logs replayed as a first-price auction.

    dsp models shading-eval [--data-dir ../shared/datasets] [--buckets 4]

Per campaign (100,000 logged auctions in 100 episodes, ``<camp>.validation.txt``):

* **value** of an impression (in the logs' CPM units): the shipped pCTR, calibrated on the earlier
  episodes (scaled so predicted clicks = observed clicks), times the campaign's training eCPC
  (``train_info``: CPC). Every strategy sees the same values.
* **first price**: a bid wins when it is ≥ the logged market price and pays the bid. Surplus =
  Σ over won auctions of (value − bid).
* **earlier episodes** (1–50): the bidder explores: bid = value × s, s uniform in [0.1, 1.0]. The
  learner sees only win/loss of those bids (never a price) and fits the bid landscape with the
  censored estimator (:func:`dsp.offline.learning.landscape.fit_landscape`), one per value
  quantile bucket (``--buckets``); the baseline's shading factor is tuned on the same episodes
  **with full knowledge of the market prices** (the best fixed factor in hindsight, 0.02–1.00).
* **later episodes** (51–100): learned bids (argmax (v − b)·W(b), b ≤ v) against the best fixed
  factor and against unshaded bidding (b = v: first price at value, zero surplus by construction;
  its CPM is the reference for what shading saves).

Caveat (the dataset's own): the logs hold only auctions iPinYou won, so the market prices are
those of won auctions; the replay can evaluate bidding lower, not bidding above those prices.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt

from dsp.offline.learning.landscape import fit_landscape
from dsp.offline.replay.ipinyou import CAMPAIGNS, read_validation

F64 = npt.NDArray[np.float64]
FACTORS = np.round(np.arange(0.02, 1.0001, 0.01), 2)
PRICE_GRID = np.arange(0.0, 301.0)  # iPinYou prices are integers 0..300


class CampaignResult(msgspec.Struct):
    campaign: str
    best_factor: float
    surplus_fixed: float
    surplus_learned: float
    gain: float  # learned / fixed - 1
    wins_fixed: int
    wins_learned: int
    wins_unshaded: int
    cpm_fixed: float  # average price paid per 1000 won impressions (log units)
    cpm_learned: float
    cpm_unshaded: float
    clicks_learned: int
    clicks_fixed: int
    explore_surplus: float  # surplus the exploring policy made on the earlier episodes


def train_cpc(data_dir: Path, campaign: str) -> float:
    path = data_dir / "train_info" / f"{campaign}.train-info.txt"
    for line in path.read_text().splitlines():
        if line.startswith("CPC:"):
            return float(line.split()[1])
    raise ValueError(f"{path}: no CPC line")


def _outcome(bids: F64, values: F64, prices: F64, clicks: F64) -> tuple[float, int, float, int]:
    won = bids >= prices
    return (float(np.sum((values - bids)[won])), int(won.sum()), float(bids[won].sum()),
            int(clicks[won].sum()))


def learned_bids(values_early: F64, bids_early: F64, won_early: npt.NDArray[np.bool_],
                 values_late: F64, buckets: int) -> F64:
    """Fit one landscape per value-quantile bucket on the early outcomes; bid on the late ones."""
    edges: F64 = (np.quantile(values_early, np.linspace(0, 1, buckets + 1)[1:-1]) if buckets > 1
                  else np.asarray([], dtype=np.float64))
    k_early = np.searchsorted(edges, values_early)
    k_late = np.searchsorted(edges, values_late)
    out = np.zeros_like(values_late)
    for k in range(buckets):
        land = fit_landscape(bids_early[k_early == k], won_early[k_early == k], PRICE_GRID)
        sel = k_late == k
        if not sel.any():
            continue
        grid = np.linspace(0.0, max(float(values_late[sel].max()), 1.0) * 1.001, 1500)
        out[sel] = np.interp(values_late[sel], grid, land.bid_table(grid))
    return np.minimum(out, values_late)


def evaluate_campaign(data_dir: Path, campaign: str, *, buckets: int = 4, seed: int = 1,
                      explore_low: float = 0.1) -> CampaignResult:
    root = data_dir / "ipinyou-rtb-logs-rlb-dp"
    log = read_validation(root / "validation_100k" / f"{campaign}.validation.txt")
    clicks = log.clicks.astype(np.float64)
    prices = log.prices.astype(np.float64)
    pctr = log.pctr.astype(np.float64)
    half = len(prices) // 2
    scale = clicks[:half].sum() / max(pctr[:half].sum(), 1e-12)
    values = pctr * scale * train_cpc(root, campaign)
    ve, pe, ce = values[:half], prices[:half], clicks[:half]
    vl, pl, cl = values[half:], prices[half:], clicks[half:]
    best = max(FACTORS, key=lambda s: _outcome(s * ve, ve, pe, ce)[0])
    rng = np.random.default_rng(seed)
    bids_early = rng.uniform(explore_low, 1.0, size=half) * ve
    won_early = bids_early >= pe
    explore_surplus = float(np.sum((ve - bids_early)[won_early]))
    b_learned = learned_bids(ve, bids_early, won_early, vl, buckets)
    s_l, w_l, pay_l, c_l = _outcome(b_learned, vl, pl, cl)
    s_f, w_f, pay_f, c_f = _outcome(best * vl, vl, pl, cl)
    _, w_u, pay_u, _ = _outcome(vl, vl, pl, cl)
    return CampaignResult(
        campaign=campaign, best_factor=float(best), surplus_fixed=s_f, surplus_learned=s_l,
        gain=s_l / s_f - 1.0 if s_f > 0 else float("nan"), wins_fixed=w_f, wins_learned=w_l,
        wins_unshaded=w_u, cpm_fixed=pay_f / max(w_f, 1), cpm_learned=pay_l / max(w_l, 1),
        cpm_unshaded=pay_u / max(w_u, 1), clicks_learned=c_l, clicks_fixed=c_f,
        explore_surplus=explore_surplus)


def evaluate_all(data_dir: Path, campaigns: tuple[str, ...] = CAMPAIGNS, *,
                 buckets: int = 4, seed: int = 1) -> list[CampaignResult]:
    return [evaluate_campaign(data_dir, c, buckets=buckets, seed=seed) for c in campaigns]


def render(results: list[CampaignResult]) -> str:
    """The Markdown table of docs/learning.md."""
    lines = ["| campaign | best fixed factor | surplus fixed | surplus learned | gain | "
             "CPM unshaded | CPM fixed | CPM learned | wins fixed / learned | clicks fixed / learned |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.campaign} | {r.best_factor:.2f} | {r.surplus_fixed:,.0f} | "
                     f"{r.surplus_learned:,.0f} | {100 * r.gain:+.1f}% | {r.cpm_unshaded:.1f} | "
                     f"{r.cpm_fixed:.1f} | {r.cpm_learned:.1f} | {r.wins_fixed:,} / {r.wins_learned:,} | "
                     f"{r.clicks_fixed} / {r.clicks_learned} |")
    s_f = sum(r.surplus_fixed for r in results)
    s_l = sum(r.surplus_learned for r in results)
    pay = sum(r.cpm_learned * r.wins_learned for r in results)
    pay_u = sum(r.cpm_unshaded * r.wins_unshaded for r in results)
    pay_f = sum(r.cpm_fixed * r.wins_fixed for r in results)
    lines.append(f"| **all** | | {s_f:,.0f} | {s_l:,.0f} | **{100 * (s_l / s_f - 1):+.1f}%** | "
                 f"{pay_u / sum(r.wins_unshaded for r in results):.1f} | "
                 f"{pay_f / sum(r.wins_fixed for r in results):.1f} | "
                 f"{pay / sum(r.wins_learned for r in results):.1f} | | |")
    return "\n".join(lines)
