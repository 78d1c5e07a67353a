"""The bid flow's dependencies, as protocols. The flow does I/O only through these.

Implementations:
    FeatureSource  -> dsp.features.store.FeatureStore (Redis), wrapped by a cross-request batcher
    Scorer         -> dsp.scoring.plan.PlanScorer (the scoring plan's ONNX runners, micro-batched)
    MoneyGate      -> dsp.budget (local budget leases, pacing multipliers, emergency brake)

Contracts every implementation keeps:
    * list in, list out, same length and order;
    * an await never outlives the deadline it is given (raise DependencyUnavailable instead);
    * nothing here raises anything but DependencyUnavailable for a dependency failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from dsp.clock import Deadline
from dsp.openrtb.nobid import NoBidReason

FloatArray = npt.NDArray[np.float32]
#: Named scores of a batch: score name (``p_intent``, ``pd``, ...) -> shape (n,) float32.
Scores = dict[str, FloatArray]


class UserRecord(Protocol):
    """One resolved user as the feature store returns it.

    ``features`` is a float32 vector in the feature contract's order (dsp.features.contract),
    filled with the declared defaults when the user is unknown (``known`` is False then).
    ``caps`` holds the user's raw frequency-cap state (decoded by dsp.budget.freqcap), fetched in
    the same Redis round trip as the features.
    ``user_key`` is the hashed key (hash-tag form) used for counters and tokens; "" if no id.
    """

    @property
    def user_key(self) -> str: ...
    @property
    def known(self) -> bool: ...
    @property
    def features(self) -> FloatArray: ...
    @property
    def caps(self) -> dict[str, bytes]: ...


class FeatureSource(Protocol):
    async def fetch(self, user_ids: Sequence[str], deadline: Deadline) -> Sequence[UserRecord]:
        """Fetch many users in one round trip. Missing users come back unknown, with defaults.

        Raises DependencyUnavailable when Redis fails or the deadline passes; callers then treat
        every user as unknown.
        """
        ...


class Scorer(Protocol):
    async def score(self, rows: FloatArray, deadline: Deadline) -> Scores:
        """Score a (n, n_features) matrix: named scores, each shape (n,), calibrated. Always
        ``p_intent`` and ``pd`` (the value formula's inputs); any other name feeds a gate (a
        campaign's ``max_scores``). NaN where the plan did not score a row.

        Raises DependencyUnavailable on model failure or when the deadline cannot be met.
        """
        ...


@runtime_checkable
class StagedScorer(Protocol):
    """A Scorer that can skip cascaded models where intent already rules every campaign out."""

    async def score_staged(self, rows: FloatArray, intent_floors: FloatArray,
                           deadline: Deadline) -> Scores:
        """Named scores: ``p_intent`` for every row; cascaded scores (``pd``) only where
        ``p_intent >= intent_floors`` (row-wise), NaN elsewhere. One run of each model at most.
        Same errors as ``score``."""
        ...


class MoneyGate(Protocol):
    """Local, non-blocking budget and pacing decisions (no Redis round trip on the bid path)."""

    def pacing_multiplier(self, campaign_id: str) -> float:
        """λ ≥ 0 in ``bid = value / (1 + λ)``; 0 means no shading for pacing."""
        ...

    def admit(self, campaign_id: str, value_micros: int) -> NoBidReason | None:
        """Cheap pre-check before pricing: None if the campaign may bid on this impression,
        else why not (BUDGET_BRAKE, BUDGET_EXHAUSTED, PACING_THROTTLED, OUT_OF_SCHEDULE).
        ``value_micros`` is the impression's expected value, so pacing can throttle the
        lowest-value traffic first."""
        ...

    def reserve(self, campaign_id: str, bid_id: str, price_micros: int, expires_at_s: float,
                *, test: bool = False, issued_at_s: float | None = None) -> bool:
        """Reserve one impression's bid price from the local lease. False if it does not fit.
        Test traffic (``test=True``) is never counted toward money and always returns True.
        ``issued_at_s``: the time the bid's notice token carries (its day and outcome bucket)."""
        ...
