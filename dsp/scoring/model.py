"""ONNX model runners: contract vectors in, calibrated probabilities out.

    runners = load_models(Path("models"))          # {"intent": ModelRunner, "risk": ModelRunner}
    p_intent = runners["intent"].predict(rows)      # rows: float32 (n, N_FEATURES), contract order

``predict`` is synchronous and cheap per call (one ``InferenceSession.run``); the serving path
wraps it in a cross-request micro-batcher using ``runner.config.max_batch_size`` and
``max_wait_us``. Each runner owns one session with one intra-op and one inter-op thread and
sequential execution: one event loop per core, so parallelism comes from processes.

Loading fails (``ModelContractError``) at start-up, never at bid time, when a config names a
feature the store does not provide or a prohibited one, when the ONNX file is missing, or when
its input/output tensors disagree with the config.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from dsp.errors import DependencyUnavailable, ModelContractError
from dsp.features.contract import FEATURE_INDEX, FEATURE_NAMES, N_FEATURES
from dsp.scoring.model_config import CONFIG_FILE, ModelConfig, check_features, read_config

FloatArray = npt.NDArray[np.float32]

MODEL_NAMES: tuple[str, ...] = ("intent", "risk")


def session_options() -> ort.SessionOptions:
    """Single-threaded, sequential, fully optimised: the serving configuration."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


class ModelRunner:
    """One loaded model. ``predict`` maps (n, N_FEATURES) float32 rows to (n,) probabilities."""

    __slots__ = ("_cal_x", "_cal_y", "_columns", "_input", "_output", "_session", "config", "path")
    _columns: npt.NDArray[np.intp] | None

    def __init__(self, config: ModelConfig, model_dir: Path,
                 provided: tuple[str, ...] = FEATURE_NAMES) -> None:
        check_features(config.name, config.features, provided)
        self.config = config
        self.path = model_dir / config.onnx_file
        if not self.path.is_file():
            raise ModelContractError(f"model {config.name!r}: ONNX file {self.path} not found")
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=session_options(),
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped exceptions
            raise ModelContractError(f"model {config.name!r}: cannot load {self.path}: {exc}") from exc
        self._check_io()
        # Column selection from the full contract vector, built once.
        columns = np.array([FEATURE_INDEX[f] for f in config.features], dtype=np.intp)
        # None when the model reads the whole contract vector in order: no gather needed.
        identity = columns.shape[0] == N_FEATURES and bool((columns == np.arange(N_FEATURES)).all())
        self._columns = None if identity else columns
        self._input = config.inputs[0].name
        self._output = config.output
        cal = config.calibration
        self._cal_x = np.asarray(cal.x, dtype=np.float64) if cal.kind == "table" else None
        self._cal_y = np.asarray(cal.y, dtype=np.float64) if cal.kind == "table" else None

    def _check_io(self) -> None:
        cfg = self.config
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(cfg.inputs) != 1 or inputs[0].name != cfg.inputs[0].name:
            raise ModelContractError(
                f"model {cfg.name!r}: graph inputs {[i.name for i in inputs]} do not match "
                f"config inputs {[i.name for i in cfg.inputs]} (exactly one float input expected)")
        width = inputs[0].shape[-1]
        if isinstance(width, int) and width != len(cfg.features):
            raise ModelContractError(
                f"model {cfg.name!r}: graph input has {width} columns, config lists "
                f"{len(cfg.features)} features")
        outputs = {o.name: o for o in self._session.get_outputs()}
        if cfg.output not in outputs:
            raise ModelContractError(
                f"model {cfg.name!r}: output {cfg.output!r} not in graph outputs {sorted(outputs)}")
        if outputs[cfg.output].type != "tensor(float)":
            raise ModelContractError(
                f"model {cfg.name!r}: output {cfg.output!r} is {outputs[cfg.output].type}, "
                "expected tensor(float) (ZipMap must be off)")

    @property
    def name(self) -> str:
        return self.config.name

    def predict(self, rows: FloatArray) -> FloatArray:
        """Calibrated probabilities, shape (n,), float32, for contract-order rows (n, N_FEATURES).

        Raises ValueError for a wrongly shaped input (a caller bug) and DependencyUnavailable when
        onnxruntime fails.
        """
        if rows.ndim != 2 or rows.shape[1] != N_FEATURES:
            raise ValueError(f"expected rows of shape (n, {N_FEATURES}), got {rows.shape}")
        if rows.shape[0] == 0:
            return np.empty(0, dtype=np.float32)
        x = np.ascontiguousarray(rows if self._columns is None else rows[:, self._columns],
                                 dtype=np.float32)
        try:
            out = self._session.run([self._output], {self._input: x})[0]
        except Exception as exc:  # onnxruntime's exceptions are not a typed hierarchy
            raise DependencyUnavailable(f"model {self.name!r} failed: {exc}") from exc
        p = np.asarray(out, dtype=np.float32).reshape(-1)
        if self._cal_x is not None and self._cal_y is not None:
            p = np.interp(p, self._cal_x, self._cal_y).astype(np.float32)
        return p


def load_model(model_dir: Path, provided: tuple[str, ...] = FEATURE_NAMES) -> ModelRunner:
    """Load ``model_dir/config.json`` and its ONNX file; ModelContractError on any mismatch."""
    return ModelRunner(read_config(model_dir / CONFIG_FILE), model_dir, provided)


def load_models(models_dir: Path, names: tuple[str, ...] = MODEL_NAMES,
                provided: tuple[str, ...] = FEATURE_NAMES) -> dict[str, ModelRunner]:
    """Load every named model under ``models_dir`` (``models_dir/<name>/config.json``)."""
    runners: dict[str, ModelRunner] = {}
    for name in names:
        runner = load_model(models_dir / name, provided)
        if runner.config.name != name:
            raise ModelContractError(
                f"{models_dir / name / CONFIG_FILE}: config name {runner.config.name!r} != {name!r}")
        runners[name] = runner
    return runners
