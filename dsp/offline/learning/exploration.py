"""The synthetic-world experiment: how much exploration does retraining from won-only logs need?

    dsp models explore-experiment [--users 400000] [--seed 7]

A simulated day of auctions on the synthetic population (dsp.offline.population: the true
intent is known), one auction per user:

* the **serving model** (models/intent, the shipped ONNX model) scores every user; the bidder
  bids on users whose score is in the top ``BID_SHARE`` (its intent gate), at a price
  proportional to the score (second price);
* the market price is lognormal, independent of the user (so W(b) is the only selection on
  price); the bidder sees a label (applied or not, Bernoulli of the true intent) only for
  impressions it **won**;
* with exploration share ε, each user below the gate is bid on with probability ε at a fixed
  exploration price (logged with ``explore`` and propensity ε).

Each day is written as an event log (Parquet, the sink's layout) and retrained with
:mod:`dsp.offline.learning.retrain` (IPW: 1/propensity × 1/W(bid)), exactly as
``dsp models train --events`` does. Compared on fresh users (the held-out population):

    naive   0% exploration, won-only rows, unweighted
    0/1/5%  exploration with IPW
    full    every auction's label (what no bidder sees)
    oracle  the true intent
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from dsp.events.schema import BidEvent, ConversionEvent, Event, WinEvent
from dsp.features.contract import DEFAULTS, FEATURE_INDEX, FEATURE_NAMES
from dsp.offline.eventlog.join import open_log
from dsp.offline.eventlog.parquet import partition_of, write_events
from dsp.offline.learning.retrain import fit_plain, fit_weighted, log_loss, training_set
from dsp.offline.population import generate, sample_labels
from dsp.offline.taiwan import load_taiwan, split_indices
from dsp.offline.training.metrics import evaluate, roc_auc
from dsp.offline.training.risk import TEST_FRACTION

BID_SHARE = 0.15  # the serving policy bids on the top 15% of users by intent score
MARKET_MEDIAN_CPM_MICROS = 2_000_000
MARKET_SIGMA = 0.6
EXPLORE_CPM_MICROS = 4_000_000  # wins about 87% of the time (market 87th percentile)
#: The serving model predates these signals: it scores users with them at their defaults, so its
#: gate turns away users whom only these signals mark as intending (a stale model: retraining has
#: something to find, and only exploration shows it the users it turns away).
STALE_FEATURES = ("applications_7d", "lenders_applied_30d")
DAY_START_US = 1_764_720_000_000_000  # 2025-12-03 00:00 UTC


class Arm(msgspec.Struct):
    name: str
    rows: int
    positives: int
    auc: float
    log_loss: float
    ece: float


def _day_events(features: np.ndarray, serving: np.ndarray, labels: np.ndarray, share: float,
                seed: int) -> list[Event]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE7]))
    n = len(serving)
    gate = np.quantile(serving, 1.0 - BID_SHARE)
    policy = serving >= gate
    explored = ~policy & (rng.random(n) < share)
    scale = MARKET_MEDIAN_CPM_MICROS / float(np.median(serving[policy]))
    bid = np.where(policy, np.minimum(serving * scale, 8 * MARKET_MEDIAN_CPM_MICROS), EXPLORE_CPM_MICROS)
    market = MARKET_MEDIAN_CPM_MICROS * np.exp(MARKET_SIGMA * rng.standard_normal(n))
    won = (policy | explored) & (bid >= market)
    ts = DAY_START_US + np.sort(rng.integers(0, 86_400_000_000, size=n))
    events: list[Event] = []
    for i in np.flatnonzero(policy | explored):
        bid_id = f"x{seed}-{i}"
        t = int(ts[i])
        events.append(BidEvent(
            ts_us=t, exchange="sim", campaign="sim", bid_id=bid_id, request_id=bid_id, imp_id="1",
            creative="c", format="banner", bid_cpm_micros=int(bid[i]),
            bid_price_micros=-(-int(bid[i]) // 1000), currency="USD", auction_type=2,
            user_known=True, features=features[i].astype("<f4").tobytes(),
            scores={"p_intent": float(serving[i])}, explore=bool(explored[i]),
            propensity=share if explored[i] else 1.0))
        if won[i]:
            price = int(market[i]) // 1000
            events.append(WinEvent(ts_us=t + 1, exchange="sim", campaign="sim", bid_id=bid_id,
                                   price_micros=price, currency="USD", bills=True,
                                   committed_micros=price))
            if labels[i]:
                events.append(ConversionEvent(ts_us=t + 2, exchange="sim", campaign="sim",
                                              bid_id=bid_id, stage="submitted", currency="USD"))
    return events


def write_log(root: Path, events: list[Event]) -> None:
    from dsp.events.schema import kind_of

    groups: dict[tuple[str, str, int], list[Event]] = {}
    for ev in events:
        date, hour = partition_of(ev.ts_us)
        groups.setdefault((kind_of(ev), date, hour), []).append(ev)
    for (kind, date, hour), evs in groups.items():
        write_events(root, kind, date, hour, "part-sim", evs)


def _arm(name: str, rows: int, positives: int, y: np.ndarray, p: np.ndarray) -> Arm:
    cal = evaluate(y.astype(np.float64), p)
    return Arm(name, rows, positives, roc_auc(y, p), log_loss(y, p), cal.ece)


def run(work: Path, *, users: int = 1_000_000, holdout_users: int = 200_000, seed: int = 7,
        shares: tuple[float, ...] = (0.0, 0.01, 0.05), data_dir: Path | None = None,
        models_dir: Path = Path("models")) -> dict[str, Any]:
    from dsp.scoring.model import load_model

    data = load_taiwan(data_dir)
    train_idx, test_idx = split_indices(data.label, test_fraction=TEST_FRACTION, seed=seed)
    day = generate(users, seed + 5_000, data, train_idx, id_prefix="day-")
    labels = sample_labels(day.true_intent, seed + 5_001)
    fresh = generate(holdout_users, seed + 6_000, data, test_idx, id_prefix="fresh-")
    y_fresh = sample_labels(fresh.true_intent, seed + 6_001)
    serving_model = load_model(models_dir / "intent", FEATURE_NAMES)
    stale_rows = day.features.copy()
    for name in STALE_FEATURES:
        stale_rows[:, FEATURE_INDEX[name]] = DEFAULTS[FEATURE_INDEX[name]]
    serving = np.asarray(serving_model.predict(stale_rows), dtype=np.float64)
    arms: list[Arm] = []
    full = fit_plain(day.features, labels, seed)
    for share in shares:
        root = work / f"explore-{share:g}"
        write_log(root, _day_events(day.features, serving, labels, share, seed))
        con = open_log(root)
        if share == 0.0:
            naive = training_set(con, weighting=False)
            model = fit_plain(naive.x, naive.y, seed)
            arms.append(_arm("naive (0%, unweighted)", len(naive.y), int(naive.y.sum()), y_fresh,
                             model.predict(fresh.features)))
        ts = training_set(con)
        model = fit_weighted(ts.x, ts.y, ts.weight, seed)
        arms.append(_arm(f"{100 * share:g}% exploration, IPW", len(ts.y), int(ts.y.sum()), y_fresh,
                         model.predict(fresh.features)))
    arms.append(_arm("full (every auction labelled)", users, int(labels.sum()), y_fresh,
                     full.predict(fresh.features)))
    fresh_stale = fresh.features.copy()
    for name in STALE_FEATURES:
        fresh_stale[:, FEATURE_INDEX[name]] = DEFAULTS[FEATURE_INDEX[name]]
    arms.append(_arm("serving model (stale)", 0, 0, y_fresh,
                     np.asarray(serving_model.predict(fresh_stale), dtype=np.float64)))
    arms.append(_arm("oracle (true intent)", 0, 0, y_fresh, fresh.true_intent))
    by = {a.name: a for a in arms}
    naive_auc = by["naive (0%, unweighted)"].auc
    full_auc = by["full (every auction labelled)"].auc
    one = by.get("1% exploration, IPW")
    gap_closed = ((one.auc - naive_auc) / (full_auc - naive_auc)
                  if one is not None and full_auc != naive_auc else float("nan"))
    return {"users": users, "holdout_users": holdout_users, "seed": seed,
            "bid_share": BID_SHARE, "arms": [msgspec.to_builtins(a) for a in arms],
            "gap_closed_by_1pct": gap_closed,
            "oracle_minus_1pct": by["oracle (true intent)"].auc - one.auc if one else float("nan")}


def render(result: dict[str, Any]) -> str:
    lines = ["| model | training rows | positives | AUC (fresh users) | log-loss | ECE |",
             "|---|---|---|---|---|---|"]
    for a in result["arms"]:
        lines.append(f"| {a['name']} | {a['rows']:,} | {a['positives']:,} | {a['auc']:.4f} | "
                     f"{a['log_loss']:.4f} | {a['ece']:.4f} |")
    lines.append("")
    lines.append(f"1% exploration closes {100 * result['gap_closed_by_1pct']:.0f}% of the "
                 f"naive-vs-full AUC gap and is {result['oracle_minus_1pct']:.4f} AUC below the oracle.")
    return "\n".join(lines)
