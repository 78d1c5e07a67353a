"""Native LightGBM vs shipped ONNX: max abs difference <= 1e-5 on held-out data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dsp.features.contract import CREDIT_FEATURES, DEFAULTS, FEATURE_INDEX
from dsp.offline.taiwan import default_data_dir, load_taiwan
from dsp.offline.training import intent, risk
from dsp.offline.training.export import native_predict
from dsp.scoring.model import load_model

MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture(scope="module")
def lgb():  # type: ignore[no-untyped-def]
    if not (default_data_dir() / "uci-taiwan-default-credit-card").is_dir():
        pytest.skip("shared datasets not available")
    return pytest.importorskip("lightgbm")


def _check(name: str, rows: np.ndarray, lgb) -> float:  # type: ignore[no-untyped-def]
    runner = load_model(MODELS / name)
    booster = lgb.Booster(model_file=str(MODELS / name / "native.lgb.txt"))
    cols = [FEATURE_INDEX[f] for f in runner.config.features]
    cal = runner.config.calibration
    native = native_predict(booster, rows[:, cols], cal.a, cal.b)
    onnx_p = runner.predict(rows).astype(np.float64)
    return float(np.max(np.abs(native - onnx_p)))


def test_risk_onnx_matches_native_on_heldout_rows(lgb) -> None:  # type: ignore[no-untyped-def]
    data = load_taiwan()
    seed = int(load_model(MODELS / "risk").config.training["seed"])
    x_credit, _ = risk.holdout(data, seed)
    rows = np.broadcast_to(DEFAULTS, (x_credit.shape[0], DEFAULTS.shape[0])).copy()
    rows[:, [FEATURE_INDEX[f] for f in CREDIT_FEATURES]] = x_credit
    rows = np.vstack([rows, DEFAULTS[None, :]])  # plus the unknown-user vector
    assert _check("risk", rows, lgb) <= 1e-5


def test_intent_onnx_matches_native_on_heldout_users(lgb) -> None:  # type: ignore[no-untyped-def]
    data = load_taiwan()
    seed = int(load_model(MODELS / "intent").config.training["seed"])
    pop, _ = intent.holdout(data, seed, n_users=50_000)
    assert _check("intent", pop.features, lgb) <= 1e-5
