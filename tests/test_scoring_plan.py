"""Models by configuration: a third model is a directory plus a line in models/plan.json.

The third model here is made in the test (an ONNX graph built with onnx.helper: a logistic
function of ``loan_app_installs``), declared ``feeds: gate`` with the score name ``p_ivt``; the
demo fixture campaign QuickLoan gates on it (``max_scores: {p_ivt: 0.5}``). The real intent and
risk models score the same user. A thin-file segment step shows a model chosen per user segment.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from dsp.bidding.audience import AudienceResolver
from dsp.bidding.decide import IdSource, Prepared, choose, prepare
from dsp.clock import Deadline
from dsp.config.snapshot import load_snapshot
from dsp.errors import ModelContractError
from dsp.features.contract import FEATURE_INDEX
from dsp.openrtb.decode import RequestDecoder
from dsp.openrtb.nobid import NoBidReason
from dsp.scoring.plan import load_plan, run_plan
from dsp.testing.fakes import AdmitAll, FakeFeatureStore
from dsp.testing.users import desktop_banner_request, interested_user_row

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "tests" / "fixtures" / "configs" / "demo"
W, B = 1.0, -3.0  # p_ivt = sigmoid(loan_app_installs - 3)


def _tiny_model(folder: Path) -> None:
    folder.mkdir()
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 1])
    y = helper.make_tensor_value_info("probability", TensorProto.FLOAT, [None])
    nodes = [helper.make_node("Mul", ["input", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["z"]),
             helper.make_node("Sigmoid", ["z"], ["p"]),
             helper.make_node("Reshape", ["p", "shape"], ["probability"])]
    inits = [helper.make_tensor("w", TensorProto.FLOAT, [1], [W]),
             helper.make_tensor("b", TensorProto.FLOAT, [1], [B]),
             helper.make_tensor("shape", TensorProto.INT64, [1], [-1])]
    graph = helper.make_graph(nodes, "ivt", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / "model.onnx"))
    (folder / "config.json").write_text(json.dumps({
        "name": folder.name, "version": "test", "onnx_file": "model.onnx",
        "features": ["loan_app_installs"],
        "inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 1]}],
        "outputs": [{"name": "probability", "dtype": "float32", "shape": [-1]}],
        "output": "probability", "score": "p_ivt", "feeds": "gate"}))


@pytest.fixture()
def models_dir(tmp_path: Path) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    for name in ("intent", "risk"):
        (d / name).symlink_to(ROOT / "models" / name)
    _tiny_model(d / "ivt")
    return d


def _plan(models_dir: Path, *steps: dict[str, object]) -> None:
    base = [{"model": "intent"}, {"model": "risk", "only_if_clears": "p_intent"}]
    (models_dir / "plan.json").write_text(json.dumps({"steps": base + list(steps)}))


async def _decide(models_dir: Path) -> tuple[object, dict[str, float]]:
    scorer, _ = load_plan(models_dir)
    store = FakeFeatureStore({"keen": interested_user_row()})
    resolver = AudienceResolver(store, scorer, scorer.population())
    audience = await resolver.resolve("keen", Deadline.after_ms(1000), 0.01)
    await resolver.close()
    snap = load_snapshot(DEMO)
    profile = snap.exchanges["generic"]
    req = RequestDecoder().decode(json.dumps(desktop_banner_request("r1", "keen")).encode())
    prep = prepare(req, profile, snap, 1_780_000_000.0)
    assert isinstance(prep, Prepared)
    return choose(prep, audience, AdmitAll(), snap, IdSource("t-")), audience.scores


async def test_a_third_model_is_a_directory_and_a_plan_line(models_dir: Path) -> None:
    _plan(models_dir)
    outcome, scores = await _decide(models_dir)
    assert isinstance(outcome, list) and outcome[0].candidate.campaign.id == "quickloan-prime"
    assert "p_ivt" not in scores

    _plan(models_dir, {"model": "ivt"})  # the config line
    outcome, scores = await _decide(models_dir)
    installs = float(interested_user_row()[0, FEATURE_INDEX["loan_app_installs"]])
    assert scores["p_ivt"] == pytest.approx(1 / (1 + math.exp(-(W * installs + B))), abs=1e-5)
    assert outcome is NoBidReason.SCORE_TOO_HIGH  # QuickLoan's max_scores: {p_ivt: 0.5}


def test_a_segment_step_scores_only_its_rows(models_dir: Path) -> None:
    (models_dir / "risk_thin").symlink_to(ROOT / "models" / "risk")  # stands in for a thin-file model
    _plan(models_dir, {"model": "ivt", "segment": {"feature": "has_credit_history", "equals": 0}})
    with pytest.raises(ModelContractError, match="config name"):
        _plan(models_dir, {"model": "risk_thin"})
        load_plan(models_dir)
    _plan(models_dir, {"model": "ivt", "segment": {"feature": "has_credit_history", "equals": 0}})
    scorer, _ = load_plan(models_dir)
    rows = np.repeat(interested_user_row(), 2, axis=0)
    rows[1, FEATURE_INDEX["has_credit_history"]] = 1.0
    scores = run_plan(scorer.steps, rows, None)
    assert not math.isnan(scores["p_ivt"][0]) and math.isnan(scores["p_ivt"][1])


def test_plan_problems_fail_at_load(models_dir: Path) -> None:
    _plan(models_dir, {"model": "nowhere"})
    with pytest.raises(ModelContractError):
        load_plan(models_dir)
    (models_dir / "plan.json").write_text(json.dumps({"steps": [{"model": "intent"}]}))
    with pytest.raises(ModelContractError, match="pd"):
        load_plan(models_dir)
    _plan(models_dir, {"model": "ivt", "segment": {"feature": "no_such_feature", "equals": 0}})
    with pytest.raises(ModelContractError, match="segment"):
        load_plan(models_dir)


def test_probe_reports_every_configured_model(models_dir: Path) -> None:
    _plan(models_dir, {"model": "ivt"})
    scorer, _ = load_plan(models_dir)
    assert scorer.probe() == {"intent": True, "risk": True, "ivt": True}
