"""Loading the shipped models, and the start-up errors of the model/feature contract."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dsp.errors import ModelContractError
from dsp.features.contract import DEFAULTS, FEATURE_NAMES, N_FEATURES
from dsp.offline.training.common import guard_features
from dsp.scoring.model import MODEL_NAMES, load_model, load_models

MODELS = Path(__file__).resolve().parent.parent / "models"


def _rows(n: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    rows = np.broadcast_to(DEFAULTS, (n, N_FEATURES)).copy()
    rows[:, :8] += rng.integers(0, 4, size=(n, 8)).astype(np.float32)
    return rows


def test_shipped_models_load_and_predict_probabilities() -> None:
    runners = load_models(MODELS)
    assert sorted(runners) == sorted(MODEL_NAMES)
    rows = _rows(64)
    for name, runner in runners.items():
        assert runner.config.max_batch_size >= 1 and runner.config.max_wait_us == 0
        p = runner.predict(rows)
        assert p.shape == (64,) and p.dtype == np.float32, name
        assert np.all((p > 0) & (p < 1)), name
        # batching does not change answers: row by row equals the batch
        singles = np.concatenate([runner.predict(rows[i:i + 1]) for i in range(8)])
        np.testing.assert_allclose(singles, p[:8], atol=1e-7)
        assert runner.predict(rows[:0]).shape == (0,)


def test_intent_reacts_to_multi_lending() -> None:
    runner = load_model(MODELS / "intent")
    rows = _rows(2)
    rows[:] = DEFAULTS
    rows[1, FEATURE_NAMES.index("lenders_applied_30d")] = 4
    rows[1, FEATURE_NAMES.index("lenders_applied_90d")] = 6
    p = runner.predict(rows)
    assert p[1] > 2 * p[0]


def test_wrong_row_shape_is_a_caller_error() -> None:
    runner = load_model(MODELS / "risk")
    with pytest.raises(ValueError, match=str(N_FEATURES)):
        runner.predict(np.zeros((3, N_FEATURES - 1), dtype=np.float32))


def _copy_with(tmp_path: Path, name: str, edit: dict[str, object]) -> Path:
    target = tmp_path / name
    shutil.copytree(MODELS / name, target, ignore=shutil.ignore_patterns("*.txt", "*.md"))
    cfg = json.loads((target / "config.json").read_text())
    cfg.update(edit)
    (target / "config.json").write_text(json.dumps(cfg))
    return target


def test_feature_the_store_does_not_provide_fails_naming_it(tmp_path: Path) -> None:
    features = list(json.loads((MODELS / "risk" / "config.json").read_text())["features"])
    features[3] = "bureau_score"
    with pytest.raises(ModelContractError, match="bureau_score"):
        load_model(_copy_with(tmp_path, "risk", {"features": features}))


def test_store_without_a_needed_feature_fails_naming_it() -> None:
    provided = tuple(f for f in FEATURE_NAMES if f != "utilization")
    with pytest.raises(ModelContractError, match="'utilization'"):
        load_models(MODELS, provided=provided)


@pytest.mark.parametrize("alias", ["AGE", "sex", "Marriage", "race"])
def test_prohibited_feature_fails_at_load(tmp_path: Path, alias: str) -> None:
    features = list(json.loads((MODELS / "risk" / "config.json").read_text())["features"])
    features[0] = alias
    with pytest.raises(ModelContractError, match=f"prohibited.*{alias}"):
        load_model(_copy_with(tmp_path, "risk", {"features": features}))


def test_prohibited_feature_fails_at_training_time() -> None:
    with pytest.raises(ModelContractError, match=r"prohibited.*'SEX'"):
        guard_features("risk", ["limit_bal", "SEX"])
    guard_features("risk", ["limit_bal", "pay_0"])  # allowed features pass


def test_graph_and_config_disagreeing_fails(tmp_path: Path) -> None:
    with pytest.raises(ModelContractError, match="inputs"):
        load_model(_copy_with(tmp_path, "intent", {"inputs": [{"name": "x", "shape": [-1, 32]}]}))
    with pytest.raises(ModelContractError, match="output 'label'"):
        load_model(_copy_with(tmp_path / "b", "intent", {"output": "label"}))


def test_unknown_config_key_and_missing_onnx_fail(tmp_path: Path) -> None:
    with pytest.raises(ModelContractError, match="max_batch"):
        load_model(_copy_with(tmp_path, "risk", {"max_batch": 64}))
    with pytest.raises(ModelContractError, match="not found"):
        load_model(_copy_with(tmp_path / "b", "risk", {"onnx_file": "nope.onnx"}))
    _copy_with(tmp_path / "c", "risk", {"name": "intent"})  # models/risk/ holding "intent"
    shutil.copytree(MODELS / "intent", tmp_path / "c" / "intent")
    with pytest.raises(ModelContractError, match="config name 'intent' != 'risk'"):
        load_models(tmp_path / "c")


def test_serving_path_does_not_import_training_libraries() -> None:
    import subprocess
    import sys

    code = ("import sys, dsp.scoring.model, dsp.features.store, dsp.cli.models, dsp.cli.features; "
            "heavy = [m for m in ('lightgbm', 'sklearn', 'onnxmltools', 'skl2onnx', 'onnx', "
            "'dsp.offline.training') if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_risk_rises_with_delinquency() -> None:
    from dsp.features.rows import parse_row

    runner = load_model(MODELS / "risk")
    base = {"limit_bal": 100000, "bill_amt1": 40000, "bill_amt2": 38000, "pay_amt1": 2000,
            "pay_amt2": 2000, "pay_0": 0, "pay_2": 0, "pay_3": 0}
    _, good = parse_row(json.dumps({"id": "a", "features": base}))
    _, late = parse_row(json.dumps({"id": "b", "features": {**base, "pay_0": 3, "pay_2": 2}}))
    pd_good, pd_late = runner.predict(np.stack([good, late]))
    assert pd_late > pd_good + 0.2


def test_the_serving_process_never_imports_offline_code_or_commands() -> None:
    """What `dsp serve`'s worker loads (dsp.server and everything it imports, at run time, not
    only what the import linter sees statically): no dsp.offline, no dsp.cli, no dsp.testing."""
    import subprocess
    import sys

    code = ("import sys, dsp.server.app, dsp.server.run, dsp.server.front; "
            "bad = sorted(m for m in sys.modules if m.split('.')[:2] in "
            "(['dsp', 'offline'], ['dsp', 'cli'], ['dsp', 'testing']) or m in ('lightgbm', 'sklearn')); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
