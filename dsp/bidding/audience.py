"""Who is the user, scored: features and the scoring plan's models for many concurrent requests.

    resolver = AudienceResolver(feature_store, scorer, scorer.population())   # a PlanScorer
    audience = await resolver.resolve(user_id, deadline)       # the request's one await

Each request submits its user id to a :class:`dsp.batching.MicroBatcher`. One batch is one
``FeatureSource.fetch`` (one Redis pipeline) followed by one ``Scorer.score`` over the known users'
rows (one ONNX run per plan step at most). Outcomes:

* Redis slow or down (``DependencyUnavailable`` from the fetch) -> every user of the batch is
  unknown with the *population* scores (the models' output on the contract defaults, computed
  once at start-up); contextual campaigns may still bid; a redis error is counted. The fetch gets
  ``FETCH_SHARE`` of the time left before the batch's earliest deadline, so scoring still fits.
* a model failure -> ``DependencyUnavailable`` for every request of the batch (no-bid MODEL_ERROR).
* the deadline passed to :meth:`AudienceResolver.resolve` passes while the user is queued or in
  a batch that has not returned (a stalled Redis, a long model run) -> the user is unknown with
  the population scores, at that moment (the batcher's per-item timer): the request goes on with
  contextual campaigns instead of waiting. The flow passes a share of its own deadline
  (dsp.bidding.flow.AUDIENCE_SHARE), so pricing and the answer still fit inside tmax.
* model runs are bounded by the batch size (``max_batch_size`` rows); with a scoring thread a
  run that outlives the deadline is not waited for (dsp.scoring.plan.PlanScorer).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Protocol

import msgspec
import numpy as np

from dsp.batching import MicroBatcher
from dsp.bidding.ports import FeatureSource, FloatArray, Scorer, StagedScorer
from dsp.clock import Deadline, monotonic
from dsp.errors import DependencyUnavailable
from dsp.features.contract import FEATURE_INDEX
from dsp.scoring.plan import PlanScorer, Predictor, two_model_plan

#: Share of the time left (until the batch's earliest deadline) that the Redis fetch may use.
FETCH_SHARE = 0.7


class Audience(msgspec.Struct, gc=False, frozen=True):
    """A resolved, scored user. ``known`` False: population scores, no user-level data.

    ``p_intent`` and ``pd`` are the value formula's inputs; ``scores`` holds every named score of
    the scoring plan (gates read it: a campaign's ``max_scores``), empty when the plan has only
    the two pricing scores."""

    user_key: str
    known: bool
    p_intent: float
    pd: float
    caps: dict[str, bytes]
    scores: dict[str, float] = {}
    features: FloatArray | None = None  # the model input row (known users), for the event log


def ModelScorer(intent: Predictor, risk: Predictor, executor: Executor | None = None) -> PlanScorer:
    """Today's two-model plan over two predictors (tests, benchmarks, ``dsp explain``); the
    server loads whatever ``models/plan.json`` says (:func:`dsp.scoring.plan.load_plan`)."""
    return PlanScorer(two_model_plan(intent, risk), executor)


class AudienceSource(Protocol):
    """What the flow needs: resolve one user (the request's one await) or the population."""

    def unknown(self, user_key: str = "", caps: dict[str, bytes] | None = None) -> Audience: ...

    async def resolve(self, user_id: str, deadline: Deadline, intent_floor: float = 0.0) -> Audience:
        """``intent_floor``: the lowest ``intent_min`` among the request's candidate campaigns;
        below it no campaign can bid, so the risk model may be skipped (``pd`` is then NaN)."""
        ...

    async def close(self) -> None: ...


Caps = tuple[tuple[int, float], ...]  # (feature column, highest value the models may see)
_LENDER_FEATURES = ("lenders_applied_30d", "lenders_applied_90d")


def stacking_caps(threshold_30d: float | None, threshold_90d: float | None) -> Caps:
    """Multi-lending: applications to other lenders raise intent up to a threshold, no further.

    Past it the user is stacking loans (a risk sign, not more intent), so the intent model sees
    the count clipped at the threshold: bids stop rising with it. Example with threshold 3: a
    user with 9 applications in 30 days is scored as one with 3."""
    out = []
    for name, cap in zip(_LENDER_FEATURES, (threshold_30d, threshold_90d), strict=True):
        if cap is not None:
            out.append((FEATURE_INDEX[name], float(cap)))
    return tuple(out)


class AudienceResolver:
    """Resolves and scores users through one shared micro-batch per event-loop tick.

    ``caps`` (called once per batch, so a config reload applies at once) clips feature columns
    before scoring: see :func:`stacking_caps`."""

    def __init__(self, features: FeatureSource, scorer: Scorer,
                 population: tuple[float, float] | Mapping[str, float], *,
                 max_batch_size: int = 128, max_wait_us: int = 0, max_in_flight: int = 1,
                 on_batch: Callable[[int], None] | None = None,
                 on_redis_error: Callable[[DependencyUnavailable], None] | None = None,
                 on_stage: Callable[[str, float], None] | None = None,
                 caps: Callable[[], Caps] | None = None) -> None:
        self._caps = caps
        self._features = features
        self._scorer = scorer
        pop = (dict(population) if isinstance(population, Mapping)
               else {"p_intent": population[0], "pd": population[1]})
        self.population = (pop["p_intent"], pop["pd"])
        self._pop_scores = pop if set(pop) - {"p_intent", "pd"} else {}
        self._on_redis_error = on_redis_error
        self._on_stage = on_stage
        # A runtime Protocol check costs microseconds; the scorer does not change, ask once.
        self._staged = scorer if isinstance(scorer, StagedScorer) else None
        self._batcher: MicroBatcher[tuple[str, float], Audience] = MicroBatcher(
            self._resolve_batch, max_batch_size=max_batch_size, max_wait_us=max_wait_us,
            max_in_flight=max_in_flight, on_batch=on_batch, on_expire=self._expired)

    def _expired(self, _item: tuple[str, float]) -> Audience:
        return self.unknown()

    def unknown(self, user_key: str = "", caps: dict[str, bytes] | None = None) -> Audience:
        p_intent, pd = self.population
        return Audience(user_key, False, p_intent, pd, caps if caps is not None else {}, self._pop_scores)

    async def resolve(self, user_id: str, deadline: Deadline, intent_floor: float = 0.0) -> Audience:
        """One user. Raises DependencyUnavailable (model failure) or DeadlineExceeded.

        With a positive ``intent_floor`` and a staged scorer, ``pd`` is NaN when ``p_intent`` is
        below the floor (the risk model was not run): every campaign's intent gate fires first."""
        return await self._batcher.submit((user_id, intent_floor), deadline)

    async def _resolve_batch(self, items: list[tuple[str, float]],
                             deadline: Deadline) -> list[Audience]:
        on_stage = self._on_stage
        user_ids = [uid for uid, _ in items]
        t0 = monotonic()
        fetch_deadline = Deadline(t0 + (deadline.at_s - t0) * FETCH_SHARE)
        try:
            records = await self._features.fetch(user_ids, fetch_deadline)
        except DependencyUnavailable as exc:
            if self._on_redis_error is not None:
                self._on_redis_error(exc)
            return [self.unknown() for _ in user_ids]
        if on_stage is not None:
            on_stage("features", monotonic() - t0)
        known = [i for i, r in enumerate(records) if r.known]
        out = [self.unknown(r.user_key, r.caps) for r in records]
        if known:
            rows = np.stack([records[i].features for i in known]).astype(np.float32, copy=False)
            if self._caps is not None:
                for col, cap in self._caps():
                    np.minimum(rows[:, col], cap, out=rows[:, col])
            t1 = monotonic()
            staged = self._staged
            if staged is not None:
                floors = np.array([items[i][1] for i in known], dtype=np.float32)
                scores = await staged.score_staged(rows, floors, deadline)
            else:
                scores = await self._scorer.score(rows, deadline)
            if on_stage is not None:
                on_stage("scoring", monotonic() - t1)
            pi_list: Sequence[float] = scores["p_intent"].tolist()
            pd_list: Sequence[float] = scores["pd"].tolist()
            extra = {name: v.tolist() for name, v in scores.items() if name not in ("p_intent", "pd")}
            for k, i in enumerate(known):
                r = records[i]
                named = {**{n: v[k] for n, v in extra.items()}, "p_intent": pi_list[k],
                         "pd": pd_list[k]} if extra else {}
                out[i] = Audience(r.user_key, True, pi_list[k], pd_list[k], r.caps, named, r.features)
        return out

    async def close(self) -> None:
        await self._batcher.close()
