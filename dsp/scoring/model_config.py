"""Model config: the declared interface of one ONNX model in ``models/<name>/config.json``.

The config is the contract between a trained model and the serving path:

* ``features`` — the contract features the model reads, in the order of its input tensor's
  columns. Every name must exist in ``dsp.features.contract`` and none may be prohibited;
  :func:`check_features` enforces both (at load time *and* at training time).
* ``inputs`` / ``outputs`` — ONNX tensor names, element types and shapes; ``output`` names the
  float tensor holding the calibrated probability of the positive class.
* ``calibration`` — ``platt`` (a sigmoid already *inside* the graph; the runner does nothing),
  ``table`` (piecewise-linear lookup table applied by the runner) or ``none``.
* ``score`` / ``feeds`` — the name of the score this model produces and what reads it: ``pricing``
  (the value formula's inputs ``p_intent`` and ``pd``) or ``gate`` (a campaign's ``max_scores``
  row in the filter table); which models run, and on which rows, is the plan
  (:mod:`dsp.scoring.plan`, ``models/plan.json``).
* ``max_batch_size`` / ``max_wait_us`` — limits for the cross-request micro-batcher (defaults:
  128 rows, no waiting: batch whatever is already queued).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from dsp.errors import ModelContractError
from dsp.features.contract import FEATURE_NAMES, is_prohibited

CONFIG_FILE = "config.json"
#: The scores the value formula reads (DESIGN.md §3); every other score feeds a gate.
PRICING_SCORES = ("p_intent", "pd")


class TensorSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One ONNX tensor. ``shape`` uses -1 for the dynamic batch dimension."""

    name: str
    dtype: str = "float32"
    shape: list[int] = msgspec.field(default_factory=lambda: [-1])


class Calibration(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How raw scores become calibrated probabilities.

    ``platt``: ``p = sigmoid(a * logit(raw) + b)``, inside the ONNX graph (a, b recorded here for
    the record; the runner applies nothing). ``table``: the runner maps the graph output through
    ``np.interp(raw, x, y)`` (an isotonic fit as a lookup table). ``none``: used as is.
    """

    kind: Literal["platt", "table", "none"] = "none"
    a: float = 1.0
    b: float = 0.0
    x: list[float] = msgspec.field(default_factory=list)
    y: list[float] = msgspec.field(default_factory=list)
    fitted_on: str = ""


class ModelConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Everything needed to load, feed, batch and audit one model."""

    name: str
    version: str
    onnx_file: str
    features: list[str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    output: str
    score: str = ""  # the named score this model produces ("" = the model's name)
    feeds: Literal["pricing", "gate"] = "gate"
    calibration: Calibration = Calibration()
    max_batch_size: Annotated[int, msgspec.Meta(ge=1, le=65536)] = 128
    max_wait_us: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0
    description: str = ""
    trained_at: str = ""
    training: dict[str, str | int | float] = msgspec.field(default_factory=dict)

    @property
    def score_name(self) -> str:
        return self.score or self.name


def check_features(model_name: str, features: list[str],
                   provided: tuple[str, ...] = FEATURE_NAMES) -> None:
    """Raise ModelContractError naming the first prohibited, duplicate or unprovided feature."""
    prohibited = [f for f in features if is_prohibited(f)]
    if prohibited:
        raise ModelContractError(
            f"model {model_name!r} uses prohibited feature(s) {', '.join(map(repr, prohibited))}: "
            "protected characteristics (ECOA/Reg B) may not be model inputs")
    provided_set = set(provided)
    missing = [f for f in features if f not in provided_set]
    if missing:
        raise ModelContractError(
            f"model {model_name!r} needs feature(s) {', '.join(map(repr, missing))} that the "
            "feature store does not provide (dsp.features.contract)")
    if len(set(features)) != len(features):
        dupes = sorted({f for f in features if features.count(f) > 1})
        raise ModelContractError(f"model {model_name!r} lists feature(s) twice: {dupes}")
    if not features:
        raise ModelContractError(f"model {model_name!r} declares no features")


def read_config(path: Path) -> ModelConfig:
    """Decode and validate one config.json; every failure is a ModelContractError naming the file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelContractError(f"{path}: cannot read model config: {exc}") from exc
    try:
        cfg = msgspec.json.decode(raw, type=ModelConfig)
    except msgspec.ValidationError as exc:
        raise ModelContractError(f"{path}: invalid model config: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise ModelContractError(f"{path}: model config is not valid JSON: {exc}") from exc
    if cfg.feeds == "pricing" and cfg.score_name not in PRICING_SCORES:
        raise ModelContractError(f"{path}: a pricing model's score must be one of {PRICING_SCORES}, "
                                 f"got {cfg.score_name!r} (other scores feed gates)")
    if cfg.calibration.kind == "table":
        xs, ys = cfg.calibration.x, cfg.calibration.y
        if len(xs) < 2 or len(xs) != len(ys) or any(b < a for a, b in itertools.pairwise(xs)):
            raise ModelContractError(f"{path}: calibration table needs >= 2 increasing x and equal-length y")
    return cfg


def write_config(cfg: ModelConfig, path: Path) -> None:
    """Write a config as indented JSON (stable key order: the Struct's field order)."""
    path.write_bytes(msgspec.json.format(msgspec.json.encode(cfg), indent=2) + b"\n")
