"""Evaluation metrics in plain numpy: ROC-AUC, Brier score, reliability table, ECE.

The reliability table uses equal-mass bins (deciles of the predicted probability): with intent
probabilities concentrated below 5 %, equal-width bins would put almost every user into the first
bin and hide miscalibration. ``ece = Σ_b (n_b / n) · |mean(p_b) − mean(y_b)|``.
"""

from __future__ import annotations

import msgspec
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


class ReliabilityBin(msgspec.Struct, frozen=True):
    lo: float
    hi: float
    count: int
    mean_predicted: float
    observed_rate: float


class Calibration(msgspec.Struct, frozen=True):
    """AUC, Brier and the reliability table of one set of predictions."""

    n: int
    positives: int
    auc: float
    brier: float
    ece: float
    bins: list[ReliabilityBin]


def roc_auc(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Mann-Whitney ROC-AUC with average ranks for ties."""
    yy = np.asarray(y).astype(bool)
    pp = np.asarray(p, dtype=np.float64)
    n_pos = int(yy.sum())
    n_neg = yy.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both classes")
    order = np.argsort(pp, kind="mergesort")
    sorted_p = pp[order]
    ranks = np.empty(pp.shape[0], dtype=np.float64)
    # average ranks over runs of equal scores
    boundaries = np.flatnonzero(np.diff(sorted_p)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [pp.shape[0]]))
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each run
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[yy].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def brier(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    yy = np.asarray(y, dtype=np.float64)
    pp = np.asarray(p, dtype=np.float64)
    return float(np.mean((pp - yy) ** 2))


def reliability(y: npt.ArrayLike, p: npt.ArrayLike, n_bins: int = 10) -> list[ReliabilityBin]:
    """Equal-mass bins: users sorted by predicted probability, split into ``n_bins`` equal groups."""
    yy = np.asarray(y, dtype=np.float64)
    pp = np.asarray(p, dtype=np.float64)
    order = np.argsort(pp, kind="mergesort")
    out: list[ReliabilityBin] = []
    for chunk in np.array_split(order, n_bins):
        if chunk.shape[0] == 0:
            continue
        out.append(ReliabilityBin(lo=float(pp[chunk].min()), hi=float(pp[chunk].max()),
                                  count=int(chunk.shape[0]),
                                  mean_predicted=float(pp[chunk].mean()),
                                  observed_rate=float(yy[chunk].mean())))
    return out


def ece_of(bins: list[ReliabilityBin]) -> float:
    total = sum(b.count for b in bins)
    return float(sum(b.count / total * abs(b.mean_predicted - b.observed_rate) for b in bins))


def evaluate(y: npt.ArrayLike, p: npt.ArrayLike, n_bins: int = 10) -> Calibration:
    """Everything the evaluation report and the tests need about one prediction set."""
    yy = np.asarray(y)
    bins = reliability(yy, p, n_bins)
    return Calibration(n=int(yy.shape[0]), positives=int(np.asarray(yy, dtype=bool).sum()),
                       auc=roc_auc(yy, p), brier=brier(yy, p), ece=ece_of(bins), bins=bins)
