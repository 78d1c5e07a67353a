"""Retrain the intent model from logged outcomes, correcting for what the bidder chose to see.

    data = training_set(open_log(Path("events")))            # won impressions, labels, weights
    model = fit_weighted(data.x, data.y, data.weight, seed=7)

The label of a logged impression is "the user applied" (a ``submitted`` conversion for the bid).
Only won impressions have labels, and the bidder only bids where the serving model already
scores intent high: training on them as they come (naive) learns the world above the bidder's
threshold only. Two corrections, multiplied into each row's weight:

* **exploration** (campaign ``learning.explore_share``): a small share of requests is bid on
  past the intent gate; such rows carry ``propensity = explore_share``, weight ``1/propensity``,
  so they stand for all the traffic the policy skips;
* **winning** (bid-aware learning, Zhang et al., KDD 2016): a bid at price b is seen only if it
  wins, with probability W(b) from the censored bid landscape fitted to the same log; weight
  ``1/W(b)``; the product is clipped at ``MAX_WEIGHT`` (10) so a few rows cannot dominate.

What remains biased, and is said in the evaluation report: users the bidder never bids on even
when exploring (no candidate campaign: targeting, no consent, unknown users) stay unseen; the
weights assume the market price does not depend on the user's intent given the bid (the
landscape is one curve for the slice, not per user); clipping trades a little bias for variance
(under-weighting the explored region); the label is "applied", observed only while the
conversion window is open, so the newest impressions are under-labelled.
"""

from __future__ import annotations

import itertools
from typing import Any

import duckdb
import msgspec
import numpy as np
import numpy.typing as npt

from dsp.features.contract import N_FEATURES
from dsp.offline.learning.landscape import fit_landscape
from dsp.offline.training.common import fit_booster
from dsp.offline.training.export import fit_platt, native_predict
from dsp.offline.training.intent import PARAMS
from dsp.offline.training.metrics import evaluate, roc_auc

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
MIN_WIN_PROB = 0.05
#: Weights are clipped here (clipped IPS): an explored row at 1% propensity would weigh 100+ and a
#: handful of them would steer the trees; measured on the synthetic world (docs/learning.md),
#: unclipped weights lost AUC against the naive model, clipped at 10 they closed most of the gap.
MAX_WEIGHT = 10.0
CALIBRATION_SHARE = 0.2

QUERY = """
SELECT features, won, submitted, explore, propensity, bid_cpm_micros,
       coalesce(scores['p_intent'], -1.0) AS serving, ts_us
FROM bid_outcomes
WHERE NOT test AND octet_length(features) = {nbytes}
  {where}
ORDER BY ts_us
"""


class TrainingSet(msgspec.Struct):
    """Won impressions (features, label, weight) plus the serving model's logged score."""

    x: F32
    y: npt.NDArray[np.int64]
    weight: F64
    serving: F64
    ts_us: npt.NDArray[np.int64]
    explored: npt.NDArray[np.bool_]
    bids: int  # bids the rows were drawn from (won or not)


def training_set(con: duckdb.DuckDBPyConnection, *, since_us: int | None = None,
                 until_us: int | None = None, weighting: bool = True) -> TrainingSet:
    where = ""
    if since_us is not None:
        where += f" AND ts_us >= {int(since_us)}"
    if until_us is not None:
        where += f" AND ts_us < {int(until_us)}"
    rows = con.sql(QUERY.format(nbytes=4 * N_FEATURES, where=where)).fetchall()
    n = len(rows)
    won = np.fromiter((r[1] for r in rows), dtype=bool, count=n)
    bids = np.fromiter((r[5] for r in rows), dtype=np.float64, count=n)
    weight = np.ones(n)
    if weighting and n:
        prop = np.fromiter((r[4] for r in rows), dtype=np.float64, count=n)
        grid = np.linspace(0.0, float(bids.max()) * 1.05 + 1.0, 300)
        land = fit_landscape(bids, won, grid)
        cdf = np.asarray(land.cdf)
        j = np.clip(np.searchsorted(grid, bids, side="right") - 1, 0, len(grid) - 1)
        w_bid = np.maximum(cdf[j], MIN_WIN_PROB)
        weight = np.minimum(1.0 / (np.maximum(prop, 1e-6) * w_bid), MAX_WEIGHT)
    keep = won
    x = np.frombuffer(b"".join(r[0] for r, k in zip(rows, keep, strict=True) if k),
                      dtype="<f4").reshape(-1, N_FEATURES).astype(np.float32)
    y = np.fromiter((1 if r[2] else 0 for r, k in zip(rows, keep, strict=True) if k), dtype=np.int64)
    serving = np.fromiter((r[6] for r, k in zip(rows, keep, strict=True) if k), dtype=np.float64)
    ts = np.fromiter((r[7] for r, k in zip(rows, keep, strict=True) if k), dtype=np.int64)
    explored = np.fromiter((r[3] for r, k in zip(rows, keep, strict=True) if k), dtype=bool)
    return TrainingSet(x, y, weight[keep], serving, ts, explored, n)


class Trained(msgspec.Struct):
    booster: Any
    a: float
    b: float

    def predict(self, x: F32) -> F64:
        return native_predict(self.booster, x, self.a, self.b)


def fit_weighted(x: F32, y: npt.NDArray[np.int64], weight: F64, seed: int) -> Trained:
    """The intent model's booster on weighted rows, Platt-calibrated on a weighted 20% split."""
    import lightgbm as lgb

    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x12E7]))
    is_cal = rng.random(len(y)) < CALIBRATION_SHARE
    params = {"objective": "binary", "verbosity": -1, "num_threads": 1, "deterministic": True,
              "force_row_wise": True, "seed": seed, **PARAMS}
    rounds = int(params.pop("n_estimators"))
    data = lgb.Dataset(x[~is_cal], label=y[~is_cal], weight=weight[~is_cal], free_raw_data=True)
    booster = lgb.train(params, data, num_boost_round=rounds)
    margin = booster.predict(x[is_cal].astype(np.float64), raw_score=True)
    a, b = _weighted_platt(np.asarray(margin, dtype=np.float64), y[is_cal], weight[is_cal])
    return Trained(booster, a, b)


def fit_plain(x: F32, y: npt.NDArray[np.int64], seed: int) -> Trained:
    """Unweighted (the naive and the full-information models of the experiment)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x12E7]))
    is_cal = rng.random(len(y)) < CALIBRATION_SHARE
    booster = fit_booster(x[~is_cal], y[~is_cal], PARAMS, seed)
    margin = booster.predict(x[is_cal].astype(np.float64), raw_score=True)
    a, b = fit_platt(margin, y[is_cal])
    return Trained(booster, a, b)


def _weighted_platt(margin: F64, y: npt.NDArray[np.int64], w: F64) -> tuple[float, float]:
    """p = sigmoid(a·margin + b), weighted log-loss, by Newton steps (two parameters)."""
    a, b = 1.0, 0.0
    yf = y.astype(np.float64)
    w = w / w.mean()
    for _ in range(50):
        z = np.clip(a * margin + b, -30, 30)
        p = 1.0 / (1.0 + np.exp(-z))
        g = w * (p - yf)
        h = w * p * (1 - p) + 1e-9
        grad = np.array([np.sum(g * margin), np.sum(g)])
        hess = np.array([[np.sum(h * margin * margin), np.sum(h * margin)],
                         [np.sum(h * margin), np.sum(h)]]) + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        a, b = a - step[0], b - step[1]
        if np.max(np.abs(step)) < 1e-8:
            break
    return float(a), float(b)


def weighted_auc(y: npt.NDArray[np.int64], p: F64, w: F64) -> float:
    """AUC with row weights (the IPW estimate of the population AUC on a logged slice)."""
    order = np.argsort(p, kind="mergesort")
    y, p, w = y[order], p[order], w[order]
    pos_w = np.where(y == 1, w, 0.0)
    neg_w = np.where(y == 0, w, 0.0)
    # ties: group equal scores
    _, idx = np.unique(p, return_index=True)
    bounds = np.append(idx, len(p))
    cum_neg = 0.0
    num = 0.0
    for lo, hi in itertools.pairwise(bounds):
        pw, nw = pos_w[lo:hi].sum(), neg_w[lo:hi].sum()
        num += pw * (cum_neg + 0.5 * nw)
        cum_neg += nw
    total = pos_w.sum() * neg_w.sum()
    return float(num / total) if total > 0 else float("nan")


def log_loss(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    yy = np.asarray(y, dtype=np.float64)
    pp = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(yy * np.log(pp) + (1 - yy) * np.log(1 - pp)))


def compare_on_slice(new: Trained, data: TrainingSet) -> dict[str, Any]:
    """New model against the serving model's logged scores on a later slice (IPW-weighted AUC;
    unweighted AUC and calibration on the won rows too). ``promote`` when the new model's
    weighted AUC is at least the serving one's and its calibration error is not worse by more
    than 0.01."""
    p_new = new.predict(data.x)
    has_serving = data.serving >= 0
    out: dict[str, Any] = {"rows": len(data.y), "positives": int(data.y.sum()),
                           "explored_rows": int(data.explored.sum())}
    cal_new = evaluate(data.y.astype(np.float64), p_new)
    out["new"] = {"auc_weighted": weighted_auc(data.y, p_new, data.weight),
                  "auc": roc_auc(data.y, p_new), "ece": cal_new.ece, "log_loss": log_loss(data.y, p_new)}
    if has_serving.all() and len(data.y):
        cal_old = evaluate(data.y.astype(np.float64), data.serving)
        out["serving"] = {"auc_weighted": weighted_auc(data.y, data.serving, data.weight),
                          "auc": roc_auc(data.y, data.serving), "ece": cal_old.ece,
                          "log_loss": log_loss(data.y, data.serving)}
        out["promote"] = bool(out["new"]["auc_weighted"] >= out["serving"]["auc_weighted"]
                              and out["new"]["ece"] <= out["serving"]["ece"] + 0.01)
    else:
        out["serving"] = None
        out["promote"] = False
    return out
