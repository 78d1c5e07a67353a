"""Who is the user, scored: features and both models for many concurrent requests in one go.

    resolver = AudienceResolver(feature_store, ModelScorer(intent, risk), population)
    audience = await resolver.resolve(user_id, deadline)       # the request's one await

Each request submits its user id to a :class:`dsp.batching.MicroBatcher`. One batch is one
``FeatureSource.fetch`` (one Redis pipeline) followed by one ``Scorer.score`` over the known users'
rows (one ONNX run per model). Outcomes:

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
* ONNX runs are bounded by the batch size (``max_batch_size`` rows: ~1 ms for 128 rows on one
  core, docs/models.md); with a scoring thread a run that outlives the deadline is not waited for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Protocol

import msgspec
import numpy as np

from dsp.batching import MicroBatcher
from dsp.bidding.ports import FeatureSource, FloatArray, Scorer, StagedScorer
from dsp.clock import Deadline, monotonic
from dsp.errors import DependencyUnavailable

#: Share of the time left (until the batch's earliest deadline) that the Redis fetch may use.
FETCH_SHARE = 0.7


class Audience(msgspec.Struct, gc=False, frozen=True):
    """A resolved, scored user. ``known`` False: population scores, no user-level data."""

    user_key: str
    known: bool
    p_intent: float
    pd: float
    caps: dict[str, bytes]


class Predictor(Protocol):
    """A synchronous model: (n, n_features) float32 rows -> (n,) calibrated probabilities."""

    def predict(self, rows: FloatArray) -> FloatArray: ...


class ModelScorer:
    """:class:`dsp.bidding.ports.Scorer` over two synchronous predictors (one run each per call).

    With ``executor`` (one thread), both runs happen off the event loop: onnxruntime releases the
    GIL, so the loop keeps parsing and answering other requests (and gathering the next batch)
    while a batch is scored; without it they run inline. Either way one batch = one run per model.
    """

    __slots__ = ("_executor", "_intent", "_risk")

    def __init__(self, intent: Predictor, risk: Predictor, executor: Executor | None = None) -> None:
        self._intent = intent
        self._risk = risk
        self._executor = executor

    def _both(self, rows: FloatArray) -> tuple[FloatArray, FloatArray]:
        return self._intent.predict(rows), self._risk.predict(rows)

    def _staged(self, rows: FloatArray, floors: FloatArray) -> tuple[FloatArray, FloatArray]:
        p_intent = self._intent.predict(rows)
        wanted = p_intent >= floors
        pd = np.full(rows.shape[0], np.nan, dtype=np.float32)
        if wanted.all():
            pd = self._risk.predict(rows)
        elif wanted.any():
            pd[wanted] = self._risk.predict(rows[wanted])
        return p_intent, pd

    async def score_staged(self, rows: FloatArray, intent_floors: FloatArray,
                           deadline: Deadline) -> tuple[FloatArray, FloatArray]:
        """Intent for every row, risk only where intent clears the row's floor (NaN elsewhere):
        cheapest filter first; the risk model is the larger one."""
        if deadline.expired():
            raise DependencyUnavailable("scoring: deadline passed")
        if self._executor is None:
            return self._staged(rows, intent_floors)
        loop = asyncio.get_running_loop()
        return await _bounded(loop.run_in_executor(self._executor, self._staged, rows, intent_floors),
                              deadline)

    async def score(self, rows: FloatArray, deadline: Deadline) -> tuple[FloatArray, FloatArray]:
        if deadline.expired():
            raise DependencyUnavailable("scoring: deadline passed")
        if self._executor is None:
            return self._both(rows)
        loop = asyncio.get_running_loop()
        return await _bounded(loop.run_in_executor(self._executor, self._both, rows), deadline)


async def _bounded(run: asyncio.Future[tuple[FloatArray, FloatArray]],
                   deadline: Deadline) -> tuple[FloatArray, FloatArray]:
    """Wait for a model run in the scoring thread until the deadline, no longer (the thread
    finishes the run; its result is dropped)."""
    try:
        async with asyncio.timeout(max(0.0, deadline.remaining_s())):
            return await run
    except TimeoutError:
        raise DependencyUnavailable("scoring: deadline passed during the model run") from None


class AudienceSource(Protocol):
    """What the flow needs: resolve one user (the request's one await) or the population."""

    def unknown(self, user_key: str = "", caps: dict[str, bytes] | None = None) -> Audience: ...

    async def resolve(self, user_id: str, deadline: Deadline, intent_floor: float = 0.0) -> Audience:
        """``intent_floor``: the lowest ``intent_min`` among the request's candidate campaigns;
        below it no campaign can bid, so the risk model may be skipped (``pd`` is then NaN)."""
        ...

    async def close(self) -> None: ...


class AudienceResolver:
    """Resolves and scores users through one shared micro-batch per event-loop tick."""

    def __init__(self, features: FeatureSource, scorer: Scorer, population: tuple[float, float], *,
                 max_batch_size: int = 128, max_wait_us: int = 0, max_in_flight: int = 1,
                 on_batch: Callable[[int], None] | None = None,
                 on_redis_error: Callable[[DependencyUnavailable], None] | None = None,
                 on_stage: Callable[[str, float], None] | None = None) -> None:
        self._features = features
        self._scorer = scorer
        self.population = population
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
        return Audience(user_key, False, p_intent, pd, caps if caps is not None else {})

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
            t1 = monotonic()
            staged = self._staged
            if staged is not None:
                floors = np.array([items[i][1] for i in known], dtype=np.float32)
                p_intent, pd = await staged.score_staged(rows, floors, deadline)
            else:
                p_intent, pd = await self._scorer.score(rows, deadline)
            if on_stage is not None:
                on_stage("scoring", monotonic() - t1)
            pi_list: Sequence[float] = p_intent.tolist()
            pd_list: Sequence[float] = pd.tolist()
            for k, i in enumerate(known):
                r = records[i]
                out[i] = Audience(r.user_key, True, pi_list[k], pd_list[k], r.caps)
        return out

    async def close(self) -> None:
        await self._batcher.close()
