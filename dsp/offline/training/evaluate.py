"""Recompute the shipped models' held-out figures from the data (``dsp models evaluate``, tests).

Uses the serving loader and the ONNX files only — no native model, no training — and the seed
recorded in each ``config.json``, so it checks exactly what the bidder runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dsp.features.contract import CREDIT_FEATURES, DEFAULTS, FEATURE_INDEX
from dsp.offline.taiwan import TaiwanData, load_taiwan
from dsp.offline.training import intent, risk
from dsp.offline.training.metrics import Calibration, evaluate, roc_auc
from dsp.offline.training.report import TARGET_AUC_RISK, TARGET_ECE, TARGET_ORACLE_GAP
from dsp.scoring.model import ModelRunner, load_models


def _seed(runner: ModelRunner) -> int:
    return int(runner.config.training["seed"])


def risk_holdout(runner: ModelRunner, data: TaiwanData) -> Calibration:
    """Risk model on the held-out Taiwan rows, fed as full contract vectors (as in serving)."""
    x_credit, y = risk.holdout(data, _seed(runner))
    rows = np.broadcast_to(DEFAULTS, (x_credit.shape[0], DEFAULTS.shape[0])).copy()
    rows[:, [FEATURE_INDEX[f] for f in CREDIT_FEATURES]] = x_credit
    return evaluate(y, runner.predict(rows).astype(np.float64))


def intent_holdout(runner: ModelRunner, data: TaiwanData) -> tuple[Calibration, float]:
    """Intent model on held-out synthetic users; also the oracle AUC on the same labels."""
    pop, y = intent.holdout(data, _seed(runner))
    cal = evaluate(y, runner.predict(pop.features).astype(np.float64))
    return cal, roc_auc(y, pop.true_intent)


def evaluate_shipped(models_dir: Path, data_dir: Path | None) -> list[tuple[str, bool]]:
    """Lines of ``figure ... target ... verdict`` and whether each meets its target."""
    runners = load_models(models_dir)
    data = load_taiwan(data_dir)
    r = risk_holdout(runners["risk"], data)
    i, oracle = intent_holdout(runners["intent"], data)
    return [
        (f"risk   AUC {r.auc:.4f} (target >= {TARGET_AUC_RISK})", r.auc >= TARGET_AUC_RISK),
        (f"risk   ECE {r.ece:.4f} (target <= {TARGET_ECE}), Brier {r.brier:.5f}", r.ece <= TARGET_ECE),
        (f"intent AUC {i.auc:.4f}, oracle {oracle:.4f}, gap {oracle - i.auc:.4f} "
         f"(target <= {TARGET_ORACLE_GAP})", oracle - i.auc <= TARGET_ORACLE_GAP),
        (f"intent ECE {i.ece:.4f} (target <= {TARGET_ECE}), Brier {i.brier:.5f}", i.ece <= TARGET_ECE),
    ]
