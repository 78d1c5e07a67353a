"""Test doubles of the bid flow's ports, shipped in the package (httpx's ``MockTransport`` idea).

    money = AdmitAll()                                  # MoneyGate: admits, reserves nothing real
    scorer = StaticScorer({"p_intent": 0.2, "pd": 0.05})  # Scorer: the same scores for every row
    features = FakeFeatureStore({"user-1": row})        # FeatureSource: a dict instead of Redis
    clock = FakeClock(1_780_000_000.0)                  # a wall clock that moves when told

Used by the tests and by ``dsp explain`` / ``dsp config preview`` (which must not move money or
need Redis). This module imports only the flow's ports (:mod:`dsp.bidding.ports`) and the
vocabulary (clock, errors, no-bid reasons, the feature contract's defaults): never the server,
aiohttp or redis, so importing it is cheap and safe anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec
import numpy as np

from dsp.bidding.ports import FloatArray, Scores
from dsp.clock import Deadline
from dsp.errors import DependencyUnavailable
from dsp.features.contract import DEFAULTS
from dsp.openrtb.nobid import NoBidReason


class AdmitAll:
    """MoneyGate that admits every campaign (or answers ``admit_reason`` for all of them) and
    records reservations instead of touching a budget. ``reserve_ok`` False refuses every
    reservation except test traffic's (as the real gate does)."""

    def __init__(self, *, reserve_ok: bool = True, admit_reason: NoBidReason | None = None,
                 pacing_lambda: float = 0.0) -> None:
        self.reserve_ok = reserve_ok
        self.admit_reason = admit_reason
        self.pacing_lambda = pacing_lambda
        self.reserved: list[tuple[str, str, int, bool]] = []

    def pacing_multiplier(self, campaign_id: str) -> float:
        return self.pacing_lambda

    def admit(self, campaign_id: str, value_micros: int) -> NoBidReason | None:
        return self.admit_reason

    def reserve(self, campaign_id: str, bid_id: str, price_micros: int, expires_at_s: float,
                *, test: bool = False, issued_at_s: float | None = None) -> bool:
        self.reserved.append((campaign_id, bid_id, price_micros, test))
        return self.reserve_ok or test


class StaticScorer:
    """Scorer that gives every row the same named scores; ``fail`` raises DependencyUnavailable
    (a model failure). ``calls`` counts score calls (one per batch)."""

    def __init__(self, scores: Mapping[str, float], *, fail: bool = False) -> None:
        self.scores = dict(scores)
        self.fail = fail
        self.calls = 0

    async def score(self, rows: FloatArray, deadline: Deadline) -> Scores:
        self.calls += 1
        if self.fail:
            raise DependencyUnavailable("static scorer told to fail")
        n = rows.shape[0]
        return {name: np.full(n, value, dtype=np.float32) for name, value in self.scores.items()}


class FakeUser(msgspec.Struct, frozen=True):
    """A :class:`dsp.bidding.ports.UserRecord`."""

    user_key: str
    known: bool
    features: FloatArray
    caps: dict[str, bytes]


class FakeFeatureStore:
    """FeatureSource over a dict: user id -> contract-order feature row (and optional caps).
    ``fail`` makes every fetch raise DependencyUnavailable (Redis down); ``fetches`` counts calls."""

    def __init__(self, users: Mapping[str, FloatArray] | None = None,
                 caps: Mapping[str, dict[str, bytes]] | None = None, *, fail: bool = False) -> None:
        self.users = dict(users or {})
        self.caps = dict(caps or {})
        self.fail = fail
        self.fetches = 0
        self._defaults = np.asarray(DEFAULTS, dtype=np.float32)

    async def fetch(self, user_ids: Sequence[str], deadline: Deadline) -> Sequence[FakeUser]:
        self.fetches += 1
        if self.fail:
            raise DependencyUnavailable("fake feature store told to fail")
        out = []
        for uid in user_ids:
            row = self.users.get(uid)
            key = f"u:{{{uid}}}" if uid else ""
            caps = self.caps.get(uid, {})
            if row is None:
                out.append(FakeUser(key, False, self._defaults, caps))
            else:
                out.append(FakeUser(key, True, np.asarray(row, dtype=np.float32).reshape(-1), caps))
        return out


class FakeClock:
    """A wall clock for code that takes ``clock: Callable[[], float]``: call it for the time,
    :meth:`advance` to move it."""

    def __init__(self, now_s: float = 1_780_000_000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> float:
        self.now_s += seconds
        return self.now_s
