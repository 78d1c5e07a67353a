"""``dsp models train``: train both models, export ONNX, verify parity and fairness, write reports.

Writes, per model, ``models/<name>/``: ``model.onnx``, ``config.json``, ``native.lgb.txt`` (the
LightGBM booster, used by the parity test) and ``EVALUATION.md``. Deterministic in ``seed``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np

from dsp.features.contract import FEATURE_INDEX
from dsp.features.keys import SCHEMA_VERSION
from dsp.offline.bench import models as bench
from dsp.offline.taiwan import TAIWAN_DIR, TAIWAN_FILE, TaiwanData, load_taiwan
from dsp.offline.training import fairness, intent, report, risk
from dsp.offline.training.common import TrainedModel
from dsp.offline.training.export import INPUT_NAME, OUTPUT_NAME, native_predict, snap_thresholds, to_onnx
from dsp.scoring.model import load_models
from dsp.scoring.model_config import (
    CONFIG_FILE,
    Calibration,
    ModelConfig,
    TensorSpec,
    write_config,
)

ONNX_FILE = "model.onnx"
NATIVE_FILE = "native.lgb.txt"
REPORT_FILE = "EVALUATION.md"
PARITY_TOLERANCE = 1e-5

FAIRNESS_READING = (
    "How to read it: age is not an input, so group differences are proxy effects. In this world "
    "thin files (no credit history, hence pd = the base rate) are more common among the young, "
    "and late-night activity — an intent signal lenders report — rises with youth; a pd_max "
    "below the base rate therefore under-selects young users, while a low intent_min can "
    "over-select them. A campaign whose AIR falls below 0.8 above needs a review before it runs "
    "(e.g. a thin-file risk model instead of the base rate, or different thresholds).")

_DESCRIPTIONS = {
    "risk": "Probability of default (UCI Taiwan credit default, next-month default), calibrated.",
    "intent": "Probability that one impression leads to a loan application (synthetic world), "
              "calibrated.",
}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


_SCORES = {"intent": "p_intent", "risk": "pd"}  # the value formula's inputs (dsp.bidding.pricing)


def _config(model: TrainedModel, onnx_bytes: bytes, seed: int, trained_at: str) -> ModelConfig:
    digest = hashlib.sha256(onnx_bytes).hexdigest()[:10]
    return ModelConfig(
        name=model.name, version=f"s{SCHEMA_VERSION}.seed{seed}.{digest}", onnx_file=ONNX_FILE,
        score=_SCORES[model.name], feeds="pricing",
        features=list(model.features),
        inputs=[TensorSpec(INPUT_NAME, "float32", [-1, len(model.features)])],
        outputs=[TensorSpec(OUTPUT_NAME, "float32", [-1])], output=OUTPUT_NAME,
        calibration=Calibration(kind="platt", a=model.a, b=model.b,
                                fitted_on="out-of-fold margins" if model.name == "risk"
                                else "20% calibration users"),
        max_batch_size=128, max_wait_us=0, description=_DESCRIPTIONS[model.name],
        trained_at=trained_at,
        training={"seed": seed, "test_fraction": risk.TEST_FRACTION,
                  "holdout_auc": round(model.holdout.auc, 5), "holdout_ece": round(model.holdout.ece, 5)},
    )


def _parity(model: TrainedModel, model_dir: Path) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_dir / ONNX_FILE), providers=["CPUExecutionProvider"])
    x = np.asarray(model.test_x, dtype=np.float32)
    onnx_p = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    native = native_predict(model.booster, x, model.a, model.b)
    return float(np.max(np.abs(onnx_p.astype(np.float64) - native)))


def train_all(seed: int, data_dir: Path | None, models_dir: Path, campaigns_dir: Path,
              *, bench_seconds: float = 0.5, split_seeds: tuple[int, ...] = (),
              log: bool = True) -> dict[str, TrainedModel]:
    """Train, export, check and document both models; return them (for tests and the CLI)."""
    def say(msg: str) -> None:
        if log:
            print(msg, flush=True)

    data = load_taiwan(data_dir)
    trained_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    say("training risk model (Taiwan) ...")
    models = {"risk": risk.train(seed, data=data)}
    say(f"  risk: held-out AUC {models['risk'].holdout.auc:.4f}, ECE {models['risk'].holdout.ece:.4f}")
    say("training intent model (synthetic population) ...")
    models["intent"] = intent.train(seed, data=data)
    say(f"  intent: held-out AUC {models['intent'].holdout.auc:.4f} "
        f"(oracle {models['intent'].extra['oracle_auc']:.4f}), ECE {models['intent'].holdout.ece:.4f}")

    sensitivity_md = ""
    if split_seeds:
        say(f"risk split sensitivity over seeds {list(split_seeds)} ...")
        sensitivity_md = _sensitivity(split_seeds, data)

    parity: dict[str, float] = {}
    for name, model in models.items():
        model.booster = snap_thresholds(model.booster)  # exact float32 thresholds (see export)
        model_dir = models_dir / name
        model_dir.mkdir(parents=True, exist_ok=True)
        onnx_bytes = to_onnx(model.booster, len(model.features), model.a, model.b,
                             name=f"dsp_{name}", doc=_DESCRIPTIONS[name])
        (model_dir / ONNX_FILE).write_bytes(onnx_bytes)
        model.booster.save_model(str(model_dir / NATIVE_FILE))
        write_config(_config(model, onnx_bytes, seed, trained_at), model_dir / CONFIG_FILE)
        parity[name] = _parity(model, model_dir)
        say(f"  {name}: ONNX vs native max abs diff {parity[name]:.2e}")
        if parity[name] > PARITY_TOLERANCE:
            raise RuntimeError(f"{name}: ONNX/native parity {parity[name]:.2e} > {PARITY_TOLERANCE}")

    runners = load_models(models_dir)  # the serving loader validates what we just wrote
    pop, _ = intent.holdout(data, seed)
    p_intent = runners["intent"].predict(pop.features).astype(np.float64)
    pd = runners["risk"].predict(pop.features).astype(np.float64)
    gates = fairness.load_gates(campaigns_dir)
    has_history = pop.features[:, FEATURE_INDEX["has_credit_history"]].astype(np.float64)
    fairness_md = (fairness.markdown(fairness.gate_reports(gates, pd, p_intent, pop.sex, pop.age))
                   + "\n**What drives the differences** (same held-out users):\n\n"
                   + fairness.drivers_markdown(pd, p_intent, has_history, pop.sex, pop.age)
                   + "\n\n" + FAIRNESS_READING)

    say("benchmarking inference ...")
    bench_rows = [r for name in ("intent", "risk")
                  for r in bench.bench_runner(runners[name], seconds_per_size=bench_seconds)]
    bench_md = bench.markdown(bench_rows, bench.context())
    taiwan_md5 = _md5((data_dir or _default_dir()) / TAIWAN_DIR / TAIWAN_FILE)
    for name, model in models.items():
        text = report.render(model, version=_config(model, (models_dir / name / ONNX_FILE).read_bytes(),
                                                    seed, trained_at).version,
                             seed=seed, trained_at=trained_at, split_seeds=split_seeds,
                             data_used=_data_used(name, model, taiwan_md5),
                             parity_max_abs=parity[name], fairness_md=fairness_md, bench_md=bench_md,
                             notes=_notes(name, model) + (sensitivity_md if name == "risk" else ""))
        report_path = models_dir / name / REPORT_FILE
        text = keep_policy_block(report_path, text)
        report_path.write_text(text, encoding="utf-8")
    say(f"wrote {models_dir}/{{risk,intent}}/{{{ONNX_FILE},{CONFIG_FILE},{NATIVE_FILE},{REPORT_FILE}}}")
    return models


POLICY_START, POLICY_END = "<!-- policy:start -->", "<!-- policy:end -->"


def keep_policy_block(path: Path, text: str) -> str:
    """Carry the hand-written policy section (between POLICY_START and POLICY_END: e.g. the
    fair-lending threshold policy and its cost) of the previous report into the new one, before
    its "## Inference cost" section. Retraining must not delete a documented decision."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    start, end = old.find(POLICY_START), old.find(POLICY_END)
    if start < 0 or end < start:
        return text
    block = old[start:end + len(POLICY_END)] + "\n\n"
    anchor = text.find("## Inference cost")
    return text[:anchor] + block + text[anchor:] if anchor >= 0 else text + "\n" + block


def _default_dir() -> Path:
    from dsp.offline.taiwan import default_data_dir

    return default_data_dir()


def _sensitivity(seeds: tuple[int, ...], data: TaiwanData) -> str:
    """Risk held-out figures when only the split (and training) seed changes."""
    rows = ["", "", "Split sensitivity (same code, other split/training seeds; "
            "`dsp models train --split-seeds ...`):", "",
            "| seed | held-out AUC | ECE | Brier |", "|---:|---:|---:|---:|"]
    aucs: list[float] = []
    for seed in seeds:
        h = risk.train(seed, data=data).holdout
        aucs.append(h.auc)
        rows.append(f"| {seed} | {h.auc:.4f} | {h.ece:.4f} | {h.brier:.5f} |")
    sd = float(np.std(aucs, ddof=1)) if len(aucs) > 1 else 0.0
    rows.append(f"| mean ± sd | {np.mean(aucs):.4f} ± {sd:.4f} | | |")
    return "\n".join(rows)


def _data_used(name: str, model: TrainedModel, taiwan_md5: str) -> str:
    taiwan = (f"UCI *default of credit card clients* (Yeh & Lien 2009, UCI id 350, "
              f"DOI 10.24432/C55S3H), 30,000 rows, `{TAIWAN_DIR}/{TAIWAN_FILE}` md5 `{taiwan_md5}`, "
              f"read from the shared datasets directory (not copied into this repo; licence not "
              f"verified by the dataset's SOURCE.md — research/demo use). Stratified split "
              f"`dsp.offline.taiwan.split_indices(test_fraction={risk.TEST_FRACTION}, seed)`.")
    if name == "risk":
        e = model.extra
        return (f"{taiwan}\n\nTraining: {e['train_rows']:,} Taiwan rows plus {e['thin_copies']:,} "
                f"thin-file copies (credit block set to the contract defaults, labels kept). "
                f"Held-out: {e['test_rows']:,} Taiwan test rows, all with credit history.")
    e = model.extra
    return (f"Synthetic population (`dsp.offline.population`, ground truth documented in its "
            f"module docstring), every user anchored on a real Taiwan row. Training: "
            f"{e['train_users']:,} users on Taiwan training rows (+{e['calibration_users']:,} for "
            f"calibration), one impression each, application rate {e['train_rate']:.2%}. Held-out: "
            f"{e['holdout_users']:,} users on Taiwan test rows, mean true intent "
            f"{e['mean_true_intent']:.2%}.\n\n{taiwan}")


def _notes(name: str, model: TrainedModel) -> str:
    if name == "risk":
        return (f"Inputs are the credit-history block only (behavioural features are synthetic and "
                f"would invent risk signal). EDUCATION is excluded from the contract (not a "
                f"protected class, but a proxy risk; it added < 0.002 AUC in a trial). Users "
                f"without history and unknown users get pd = {model.extra['thin_file_pd']:.4f} "
                f"(training base rate {model.extra['base_rate_train']:.4f}).")
    return ("Inputs: every contract feature (behavioural and credit). The oracle AUC scores the "
            "same held-out labels with the true probabilities, so the gap is what the model "
            "leaves on the table.")
