"""The scoring plan: which models run, on which rows, producing which named scores.

``models/plan.json`` lists steps in order; each names a model directory (``models/<model>/``,
whose ``config.json`` declares its features, output, ``score`` name and whether it ``feeds``
pricing or a gate). Today's plan::

    {"steps": [
      {"model": "intent"},                                   # p_intent for every row
      {"model": "risk", "only_if_clears": "p_intent"}        # pd only where p_intent >= the
    ]}                                                       # request's lowest intent_min

What the plan can say (no code edits):

* a **cascade** — ``only_if_clears: p_intent``: the step runs only on rows whose ``p_intent``
  clears the row's floor (the lowest ``intent_min`` among the request's candidate campaigns);
  other rows get NaN for this score, which the filter table never lets through;
* a **segment** — ``segment: {"feature": "has_credit_history", "equals": 0}``: the step runs only
  on rows whose contract feature equals the value; two steps can write the same score for
  complementary segments (a thin-file risk model beside the full-file one);
* a **gate score** — a model whose config says ``feeds: gate`` (say ``p_ivt``); a campaign gates on
  it with ``max_scores: {p_ivt: 0.5}`` (the ``max_scores`` row of :mod:`dsp.bidding.filters`).

A third model is therefore a directory plus a line here. Loading checks the whole plan at start-up
(:class:`dsp.errors.ModelContractError`): every model loads and honours the feature contract,
``p_intent`` and ``pd`` are produced, a cascade names a score an earlier step produced, a segment
names a contract feature. Without ``plan.json`` the plan above is used.

:class:`PlanScorer` runs a plan: list of rows in, named scores out, one ``predict`` per step per
batch at most (a step whose mask is empty is skipped). It implements the bid flow's ``Scorer``
and ``StagedScorer`` ports structurally (dsp.bidding.ports) without importing the flow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import Executor
from pathlib import Path
from typing import Literal, Protocol

import msgspec
import numpy as np
import numpy.typing as npt

from dsp.clock import Deadline
from dsp.errors import DependencyUnavailable, ModelContractError
from dsp.features.contract import DEFAULTS, FEATURE_INDEX
from dsp.scoring.model import ModelRunner, load_model

FloatArray = npt.NDArray[np.float32]
Scores = dict[str, FloatArray]

PLAN_FILE = "plan.json"


class Segment(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Rows whose contract feature ``feature`` equals ``equals``."""

    feature: str
    equals: float


class Step(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    model: str
    only_if_clears: Literal["p_intent"] | None = None
    segment: Segment | None = None


class PlanFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    steps: list[Step]


DEFAULT_PLAN = PlanFile([Step("intent"), Step("risk", only_if_clears="p_intent")])


class Predictor(Protocol):
    """A synchronous model: (n, n_features) float32 rows -> (n,) calibrated probabilities."""

    def predict(self, rows: FloatArray) -> FloatArray: ...


class PlannedStep(msgspec.Struct, frozen=True):
    """One compiled step: the predictor, the score it writes and its row masks."""

    model: str
    score: str
    predictor: Predictor
    cascade: bool  # only rows whose p_intent clears their floor
    segment_column: int | None = None
    segment_value: float = 0.0


def read_plan(models_dir: Path) -> PlanFile:
    """``models_dir/plan.json``, or :data:`DEFAULT_PLAN` when there is none."""
    path = models_dir / PLAN_FILE
    if not path.is_file():
        return DEFAULT_PLAN
    try:
        return msgspec.json.decode(path.read_bytes(), type=PlanFile)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ModelContractError(f"{path}: invalid scoring plan: {exc}") from exc


def compile_plan(plan: PlanFile, predictors: Mapping[str, Predictor],
                 scores: Mapping[str, str]) -> tuple[PlannedStep, ...]:
    """Check ``plan`` against the loaded models (``scores``: model name -> score name)."""
    out: list[PlannedStep] = []
    produced: set[str] = set()
    for i, step in enumerate(plan.steps):
        where = f"{PLAN_FILE} steps[{i}]"
        if step.model not in predictors:
            raise ModelContractError(f"{where}: model {step.model!r} is not loaded")
        if step.only_if_clears is not None and step.only_if_clears not in produced:
            raise ModelContractError(f"{where}: cascade on {step.only_if_clears!r}, which no earlier "
                                     "step produces")
        column = None
        if step.segment is not None:
            if step.segment.feature not in FEATURE_INDEX:
                raise ModelContractError(f"{where}: segment feature {step.segment.feature!r} is not in "
                                         "the feature contract")
            column = FEATURE_INDEX[step.segment.feature]
        score = scores[step.model]
        produced.add(score)
        out.append(PlannedStep(step.model, score, predictors[step.model], step.only_if_clears is not None,
                               column, step.segment.equals if step.segment is not None else 0.0))
    missing = [s for s in ("p_intent", "pd") if s not in produced]
    if missing:
        raise ModelContractError(f"{PLAN_FILE}: no step produces {missing} (the value formula's inputs)")
    return tuple(out)


def run_plan(steps: tuple[PlannedStep, ...], rows: FloatArray, floors: FloatArray | None) -> Scores:
    """Every step's score for ``rows``; NaN where a step's cascade or segment excluded the row.
    ``floors`` None: no cascade (every row is scored by every step of its segment)."""
    n = rows.shape[0]
    out: Scores = {}
    for step in steps:
        mask: npt.NDArray[np.bool_] | None = None
        if step.segment_column is not None:
            mask = rows[:, step.segment_column] == step.segment_value
        if step.cascade and floors is not None:
            clears = out["p_intent"] >= floors
            mask = clears if mask is None else mask & clears
        if mask is None:  # every row: the model's own output array, no copy
            out[step.score] = step.predictor.predict(rows)
            continue
        got = out.get(step.score)
        if got is None:
            got = out[step.score] = np.full(n, np.nan, dtype=np.float32)
        if mask.all():
            got[:] = step.predictor.predict(rows)
        elif mask.any():
            got[mask] = step.predictor.predict(rows[mask])
    return out


def load_plan(models_dir: Path,
              executor: Executor | None = None) -> tuple[PlanScorer, dict[str, ModelRunner]]:
    """Read ``plan.json``, load every model it names (``models_dir/<model>/``) and compile it.
    Raises ModelContractError for any problem (start-up fails, never a bid)."""
    plan = read_plan(models_dir)
    runners: dict[str, ModelRunner] = {}
    for step in plan.steps:
        if step.model not in runners:
            runner = load_model(models_dir / step.model)
            if runner.config.name != step.model:
                raise ModelContractError(f"{models_dir / step.model}: config name {runner.config.name!r} "
                                         f"!= directory {step.model!r}")
            runners[step.model] = runner
    steps = compile_plan(plan, runners, {n: r.config.score_name for n, r in runners.items()})
    return PlanScorer(steps, executor), runners


class PlanScorer:
    """The bid flow's Scorer over a compiled plan.

    With ``executor`` (one thread), the runs happen off the event loop: onnxruntime releases the
    GIL, so the loop keeps parsing and answering other requests while a batch is scored; without
    it they run inline. Either way one batch = at most one run per step.
    """

    __slots__ = ("_executor", "steps")

    def __init__(self, steps: tuple[PlannedStep, ...], executor: Executor | None = None) -> None:
        self.steps = steps
        self._executor = executor

    @property
    def score_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.score for s in self.steps))

    async def _run(self, rows: FloatArray, floors: FloatArray | None, deadline: Deadline) -> Scores:
        if deadline.expired():
            raise DependencyUnavailable("scoring: deadline passed")
        if self._executor is None:
            return run_plan(self.steps, rows, floors)
        loop = asyncio.get_running_loop()
        run = loop.run_in_executor(self._executor, run_plan, self.steps, rows, floors)
        try:  # the thread finishes the run; a result after the deadline is dropped
            async with asyncio.timeout(max(0.0, deadline.remaining_s())):
                return await run
        except TimeoutError:
            raise DependencyUnavailable("scoring: deadline passed during the model run") from None

    async def score(self, rows: FloatArray, deadline: Deadline) -> Scores:
        return await self._run(rows, None, deadline)

    async def score_staged(self, rows: FloatArray, intent_floors: FloatArray, deadline: Deadline) -> Scores:
        """Cascaded steps run only where ``p_intent`` clears the row's floor (NaN elsewhere)."""
        return await self._run(rows, intent_floors, deadline)

    def population(self) -> dict[str, float]:
        """Every score of the contract defaults (an unknown user), computed once at start-up;
        with no cascade, so an unknown user has every score."""
        row = np.asarray(DEFAULTS, dtype=np.float32).reshape(1, -1)
        return {name: float(v[0]) for name, v in run_plan(self.steps, row, None).items()}

    def probe(self) -> dict[str, bool]:
        """Readiness: each step's model answers the defaults row with a probability (0..1)."""
        row = np.asarray(DEFAULTS, dtype=np.float32).reshape(1, -1)
        ok: dict[str, bool] = {}
        for step in self.steps:
            try:
                p = step.predictor.predict(row)
                ok[step.model] = p.shape == (1,) and 0.0 <= float(p[0]) <= 1.0
            except Exception:  # readiness reports, it never raises
                ok[step.model] = False
        return ok


def two_model_plan(intent: Predictor, risk: Predictor) -> tuple[PlannedStep, ...]:
    """Today's plan over two given predictors (intent for every row, risk cascaded)."""
    return compile_plan(DEFAULT_PLAN, {"intent": intent, "risk": risk},
                        {"intent": "p_intent", "risk": "pd"})
