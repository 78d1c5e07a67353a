"""Forecast accuracy on data we did not make: the iPinYou logs converted into the event format.

For each campaign of the ``han-cai/rlb-dp`` validation files (100 episodes of 1,000 auctions):

1. **The logging policy** is the replay's own strategy (``dsp replay``: our pricing formula with
   value per click ``8 · b0 / CTR``, ``b0`` tuned on the first 50 episodes as the replay table
   does, budget 1/32 of the training cost per episode, the bidder's pacing controller), written as
   a campaign config and run through the real bid path on every auction in log order.
2. **Conversion**: every auction becomes a ``sample`` event (pCTR as the ``intent`` score, episode
   ``e`` = UTC day ``e`` of 2026, auction ``j`` at ``j · 86.4 s`` into it); every bid the policy
   places becomes a ``bid`` event and, settled on the logged market price (win when the bid is
   at least the price, pay the price), a ``win`` (with the price) or a ``loss`` (without one:
   censored), and a ``click`` when the won auction was clicked. Prices: an iPinYou CPM price
   ``P`` is taken as ``P`` currency units CPM (``P · 1000`` micros per impression).
3. **Forecast**: the landscape and the click model are fitted on the events of episodes 1–50 only;
   the sampled requests of episodes 51–100 (bodies and scores, no outcomes) are replayed through
   the old and the changed config. **Truth**: the same replay settled on the true prices and
   clicks. Changes: the policy itself, bid level ×0.5, ×0.7, ×1.4, ×2 (the value per click), and
   budget 1/32, 1/8, 1/2 of the training cost.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import msgspec
import numpy as np

from dsp.config.snapshot import Snapshot, load_snapshot
from dsp.offline.forecast.eventfiles import log_policy, read_log
from dsp.offline.forecast.intervals import Estimate, estimates
from dsp.offline.forecast.market import TruthMarket, fit_market
from dsp.offline.forecast.simulate import BidRecord, Row, simulate
from dsp.offline.replay.engine import episode_budget
from dsp.offline.replay.ipinyou import dataset_paths, read_info
from dsp.offline.replay.ipinyou import read_log as read_market
from dsp.offline.replay.report import HEADROOM, split, tune_lin

EPISODE = 1000
DAY0 = 20454  # 2026-01-01 in days since the epoch
PRICE_CAP = 300  # the highest market price in these files (CPM units)
TICK_MICROS = 1000.0  # one CPM price unit, per impression
CHANGES: tuple[tuple[str, float, float], ...] = (
    ("policy", 1.0, 1 / 32), ("bid x0.5", 0.5, 1 / 32), ("bid x0.7", 0.7, 1 / 32),
    ("bid x1.4", 1.4, 1 / 32), ("bid x2", 2.0, 1 / 32), ("budget 1/8", 1.0, 1 / 8),
    ("budget 1/2", 1.0, 1 / 2))
BODY = (b'{"id":"r","at":2,"imp":[{"id":"1","banner":{"w":300,"h":250}}],'
        b'"site":{"id":"s","page":"https://ipinyou.example/"},"device":{"devicetype":2}}')


class CampaignAccuracy(msgspec.Struct):
    campaign: str
    change: str
    truth_wins: float
    truth_spend_micros: float
    truth_clicks: float
    wins: Estimate
    spend: Estimate
    clicks: Estimate


def config_tree(root: Path, campaign: str, value_per_click: float, daily_units: float) -> Path:
    """A config tree whose one campaign bids like the replay's PacedBid (see the docstring)."""
    (root / "campaigns").mkdir(parents=True, exist_ok=True)
    (root / "exchanges").mkdir(exist_ok=True)
    (root / "exchanges" / "ipinyou.yaml").write_text("name: ipinyou\nauction_type: 2\n")
    (root / "currencies.yaml").write_text("base: USD\nrates:\n  USD: 1.0\n")
    (root / "campaigns" / f"ipinyou-{campaign}.yaml").write_text(f"""\
id: ipinyou-{campaign}
currency: USD
max_cpm: {PRICE_CAP}
pd_max: 1.0
intent_min: 0.0
requires_user: false
funnel: {{apply_rate: 1.0, p_approve: 1.0, margin: {value_per_click / 1000!r}, lgd: 0.0, ead: 0.0}}
budget: {{daily: {daily_units!r}}}
creatives:
  - {{id: c1, w: 300, h: 250, adomain: [ipinyou.example], cat: [IAB3], markup: "<b>ad</b>"}}
""")
    return root


def _rows(n: int) -> list[Row]:
    step_us = 86_400_000_000 // EPISODE
    return [Row((DAY0 + 1 + i // EPISODE) * 86_400_000_000 + (i % EPISODE) * step_us, "ipinyou",
                BODY, 0.0, 0.0, True) for i in range(n)]


def convert(campaign: str, snap: Snapshot, pctr: np.ndarray, prices: np.ndarray,
            clicks: np.ndarray, out: Path, lambda0: float) -> None:
    """Run the logging policy over every auction and write the event log (see the docstring)."""
    rows = [msgspec.structs.replace(r, p_intent=float(p)) for r, p in zip(_rows(len(pctr)), pctr,
                                                                          strict=True)]
    log_policy(snap, rows, prices.astype(np.float64) * TICK_MICROS, clicks, out,
               initial_lambda={f"ipinyou-{campaign}": lambda0}, part=f"ipinyou-{campaign}")


def evaluate_campaign(data_dir: Path, campaign: str, *, episodes: int = 100, n_boot: int = 20,
                      changes: tuple[tuple[str, float, float], ...] = CHANGES,
                      work: Path | None = None) -> list[CampaignAccuracy]:
    """Convert, fit on the first half of the episodes, forecast the second half (per change)."""
    paths = dataset_paths(data_dir, campaign)
    market_log = read_market(paths["validation"])
    info = read_info(paths["info"])
    n = min(episodes * EPISODE, len(market_log))
    half = (n // EPISODE // 2) * EPISODE
    budget_1_32 = episode_budget(info.cpm_train, EPISODE, 1 / 32)
    first, _ = split(market_log, EPISODE)
    b0 = tune_lin(first, info, budget_1_32, EPISODE, False)
    vpc = HEADROOM * b0 / info.ctr_train
    lam0 = HEADROOM - 1.0
    pctr, prices, clicks = market_log.pctr[:n], market_log.prices[:n], market_log.clicks[:n]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(work or tmp)
        old = load_snapshot(config_tree(base / "old", campaign, vpc, budget_1_32 / 1000))
        events = base / "events"
        convert(campaign, old, pctr, prices, clicks, events, lam0)
        last_fit_day = DAY0 + half // EPISODE
        rows, outcomes, lambdas = read_log(events, fit_days=(DAY0, last_fit_day),
                                           replay_days=(last_fit_day + 1, DAY0 + 1 + n // EPISODE))
        market, boots = fit_market(outcomes, tick_micros=TICK_MICROS,
                                   max_price_micros=PRICE_CAP * TICK_MICROS, n_boot=n_boot, seed=7)
        lam_start = lambdas.get(f"ipinyou-{campaign}", lam0)
        truth_market = TruthMarket(prices[half:n].astype(np.float64) * TICK_MICROS, clicks[half:n])
        cid = f"ipinyou-{campaign}"
        out: list[CampaignAccuracy] = []
        for name, bid_mult, c0 in changes:
            budget = episode_budget(info.cpm_train, EPISODE, c0)
            snap = load_snapshot(config_tree(base / name.replace(" ", "_").replace("/", "-"),
                                             campaign, vpc * bid_mult, budget / 1000))
            truth = simulate(snap, rows, truth_market, initial_lambda={cid: lam_start})[cid]
            recs: list[BidRecord] = []
            simulate(snap, rows, market, initial_lambda={cid: lam_start}, record=recs)
            est = estimates(market, boots, recs)[cid]
            out.append(CampaignAccuracy(campaign, name, float(truth.wins),
                                        float(truth.spend_micros), float(truth.clicks),
                                        est["wins"], est["spend_micros"], est["clicks"]))
        return out



TOLERANCE = 0.10


def within(forecast: float, truth: float, tolerance: float = TOLERANCE) -> bool:
    return abs(forecast - truth) <= tolerance * max(abs(truth), 1e-9)


def table(results: list[CampaignAccuracy]) -> str:
    """The docs table: per change, campaigns within ±10% on wins and spend, click coverage."""
    changes = [c for c, _, _ in CHANGES if any(r.change == c for r in results)]
    lines = ["| change | campaigns | wins within ±10% | spend within ±10% | click interval covers "
             "(90% stated) | median abs. error wins / spend |",
             "|---|---:|---:|---:|---:|---:|"]
    for ch in changes:
        rs = [r for r in results if r.change == ch]
        w = sum(within(r.wins.mean, r.truth_wins) for r in rs)
        s = sum(within(r.spend.mean, r.truth_spend_micros) for r in rs)
        c = sum(r.clicks.covers(r.truth_clicks) for r in rs)
        ew = np.median([abs(r.wins.mean / max(r.truth_wins, 1e-9) - 1) for r in rs])
        es = np.median([abs(r.spend.mean / max(r.truth_spend_micros, 1e-9) - 1) for r in rs])
        lines.append(f"| {ch} | {len(rs)} | {w} | {s} | {c} | {ew:.1%} / {es:.1%} |")
    lines += ["", "| campaign | change | wins truth / forecast | spend truth / forecast | clicks "
              "truth / forecast [90% interval] |", "|---|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.campaign} | {r.change} | {r.truth_wins:,.0f} / {r.wins.mean:,.0f} "
                     f"({r.wins.mean / max(r.truth_wins, 1e-9) - 1:+.1%}) | "
                     f"{r.truth_spend_micros / 1e6:,.2f} / {r.spend.mean / 1e6:,.2f} "
                     f"({r.spend.mean / max(r.truth_spend_micros, 1e-9) - 1:+.1%}) | "
                     f"{r.truth_clicks:.0f} / {r.clicks.mean:.1f} [{r.clicks.low:.1f}, "
                     f"{r.clicks.high:.1f}] |")
    return "\n".join(lines)
