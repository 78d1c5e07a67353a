"""Shared pieces of model training: LightGBM settings, out-of-fold margins, the trained-model value."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from dsp.features.contract import FEATURE_NAMES, is_prohibited
from dsp.offline.training.metrics import Calibration
from dsp.scoring.model_config import check_features

F64 = npt.NDArray[np.float64]
FloatArray = npt.NDArray[np.float32]


class TrainedModel:
    """A fitted booster with its Platt parameters, features and held-out evaluation."""

    __slots__ = ("a", "b", "booster", "extra", "features", "holdout", "name", "params",
                 "test_p", "test_x", "test_y")

    def __init__(self, name: str, booster: Any, features: list[str], a: float, b: float,
                 params: dict[str, Any], holdout: Calibration, test_x: FloatArray, test_y: F64,
                 test_p: F64, extra: dict[str, Any]) -> None:
        self.name = name
        self.booster = booster
        self.features = features
        self.a = a
        self.b = b
        self.params = params
        self.holdout = holdout
        self.test_x = test_x
        self.test_y = test_y
        self.test_p = test_p
        self.extra = extra

    def importances(self) -> list[tuple[str, float]]:
        """Gain importances, normalised to sum to 1, highest first."""
        gains = np.asarray(self.booster.feature_importance(importance_type="gain"), dtype=np.float64)
        total = gains.sum() or 1.0
        pairs = [(f, float(g / total)) for f, g in zip(self.features, gains, strict=True)]
        return sorted(pairs, key=lambda t: -t[1])


def guard_features(model_name: str, features: list[str]) -> None:
    """Training-time fair-lending guard: same check as load time (prohibited, unknown, dupes)."""
    check_features(model_name, features, FEATURE_NAMES)
    assert not any(is_prohibited(f) for f in features)


def fit_booster(x: npt.ArrayLike, y: npt.ArrayLike, params: dict[str, Any], seed: int) -> Any:
    """A deterministic single-threaded LightGBM binary booster."""
    import lightgbm as lgb

    full = {"objective": "binary", "verbosity": -1, "num_threads": 1, "deterministic": True,
            "force_row_wise": True, "seed": seed, **params}
    rounds = int(full.pop("n_estimators"))
    data = lgb.Dataset(np.asarray(x, dtype=np.float32), label=np.asarray(y), free_raw_data=True)
    return lgb.train(full, data, num_boost_round=rounds)


def oof_margins(x: FloatArray, y: npt.NDArray[np.int64], params: dict[str, Any], seed: int,
                folds: int = 5) -> F64:
    """Out-of-fold raw margins (for an unbiased Platt fit on the training rows)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xF01D]))
    fold_of = rng.integers(0, folds, size=y.shape[0])
    out = np.empty(y.shape[0], dtype=np.float64)
    for k in range(folds):
        held = fold_of == k
        booster = fit_booster(x[~held], y[~held], params, seed + k)
        out[held] = booster.predict(x[held].astype(np.float64), raw_score=True)
    return out
