"""AudienceResolver with real Redis and the real ONNX models: one batch, staged scoring, Redis down."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import redis as sync_redis
import redis.asyncio as aioredis

from dsp.bidding.audience import AudienceResolver, ModelScorer, stacking_caps
from dsp.clock import Deadline
from dsp.features.contract import DEFAULTS, FEATURE_INDEX
from dsp.features.store import FeatureStore
from dsp.features.writer import write_rows
from dsp.scoring.model import ModelRunner, load_models
from dsp.testing.redis_server import free_port

Stores = Callable[..., FeatureStore]  # the conftest `stores` fixture

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def models() -> dict[str, ModelRunner]:
    return load_models(ROOT / "models")


def _rows() -> np.ndarray:
    keen = np.asarray(DEFAULTS, dtype=np.float32).copy()
    keen[FEATURE_INDEX["loan_app_installs"]] = 6
    keen[FEATURE_INDEX["lenders_applied_30d"]] = 2
    keen[FEATURE_INDEX["applications_7d"]] = 2
    plain = np.asarray(DEFAULTS, dtype=np.float32).copy()
    return np.stack([keen, plain])


async def test_one_batch_staged_scoring(stores: Stores,
                                        redis_url: str, models: dict[str, ModelRunner]) -> None:
    rows = _rows()
    client = sync_redis.Redis.from_url(redis_url)
    write_rows(client, ["keen", "plain"], rows)
    client.close()
    intent, risk = models["intent"], models["risk"]
    expected_intent = intent.predict(rows)
    expected_pd = risk.predict(rows)
    floor = float((expected_intent[0] + expected_intent[1]) / 2)  # keen above, plain below
    batches: list[int] = []
    r = aioredis.Redis.from_url(redis_url)
    resolver = AudienceResolver(stores(r), ModelScorer(intent, risk), (0.01, 0.2),
                                on_batch=batches.append)
    try:
        keen, plain, nobody = await asyncio.gather(
            resolver.resolve("keen", Deadline.after_ms(1000), floor),
            resolver.resolve("plain", Deadline.after_ms(1000), floor),
            resolver.resolve("nobody", Deadline.after_ms(1000), floor))
        full = await resolver.resolve("plain", Deadline.after_ms(1000))
    finally:
        await resolver.close()
        await r.aclose()
    assert batches == [3, 1]  # three concurrent requests shared one fetch and one run per model
    assert keen.known and keen.p_intent == pytest.approx(float(expected_intent[0]), abs=1e-6)
    assert keen.pd == pytest.approx(float(expected_pd[0]), abs=1e-6)
    assert plain.known and plain.p_intent == pytest.approx(float(expected_intent[1]), abs=1e-6)
    assert math.isnan(plain.pd)  # below the floor: the risk model was not run for it
    assert full.pd == pytest.approx(float(expected_pd[1]), abs=1e-6)  # floor 0: scored
    assert not nobody.known and (nobody.p_intent, nobody.pd) == (0.01, 0.2)


async def test_redis_down_means_unknown_users(stores: Stores, models: dict[str, ModelRunner]) -> None:
    errors: list[Exception] = []
    r = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    resolver = AudienceResolver(stores(r), ModelScorer(models["intent"], models["risk"]),
                                (0.01, 0.2), on_redis_error=errors.append)
    try:
        aud = await resolver.resolve("someone", Deadline.after_ms(300))
    finally:
        await resolver.close()
        await r.aclose()
    assert not aud.known and (aud.p_intent, aud.pd) == (0.01, 0.2) and errors


async def test_named_scores_reach_the_audience_and_a_model_failure_fails_the_batch() -> None:
    from dsp.errors import DependencyUnavailable
    from dsp.testing.fakes import FakeFeatureStore, StaticScorer

    row = _rows()[0]
    features = FakeFeatureStore({"u1": row})
    scorer = StaticScorer({"p_intent": 0.25, "pd": 0.1, "p_ivt": 0.75})
    resolver = AudienceResolver(features, scorer, {"p_intent": 0.01, "pd": 0.2, "p_ivt": 0.0})
    try:
        known, unknown = await asyncio.gather(resolver.resolve("u1", Deadline.after_ms(1000)),
                                              resolver.resolve("nobody", Deadline.after_ms(1000)))
        assert known.known and known.p_intent == 0.25 and known.pd == pytest.approx(0.1)
        assert known.scores["p_ivt"] == 0.75  # a gate score travels with the user
        assert not unknown.known and unknown.scores["p_ivt"] == 0.0  # the population's
        assert (features.fetches, scorer.calls) == (1, 1)  # one batch: one fetch, one score call
        scorer.fail = True
        with pytest.raises(DependencyUnavailable):
            await resolver.resolve("u1", Deadline.after_ms(1000))
    finally:
        await resolver.close()


async def test_multi_lending_stops_raising_intent_past_the_stacking_threshold(
        stores: Stores, redis_url: str, models: dict[str, ModelRunner]) -> None:
    base = np.asarray(DEFAULTS, dtype=np.float32).copy()
    base[FEATURE_INDEX["loan_app_installs"]] = 4
    users = {}
    for n in (0, 3, 9):
        row = base.copy()
        row[FEATURE_INDEX["lenders_applied_30d"]] = n
        row[FEATURE_INDEX["lenders_applied_90d"]] = n
        users[f"stack-{n}"] = row
    client = sync_redis.Redis.from_url(redis_url)
    write_rows(client, list(users), np.stack(list(users.values())))
    client.close()
    intent, risk = models["intent"], models["risk"]
    raw = intent.predict(np.stack(list(users.values())))
    assert raw[2] > raw[1] > raw[0]  # unclipped, the model keeps rising with applications
    r = aioredis.Redis.from_url(redis_url)
    resolver = AudienceResolver(stores(r), ModelScorer(intent, risk), (0.01, 0.2),
                                caps=lambda: stacking_caps(3, 3))
    try:
        got = [await resolver.resolve(u, Deadline.after_ms(1000)) for u in users]
    finally:
        await resolver.close()
        await r.aclose()
    assert got[1].p_intent > got[0].p_intent  # below the threshold, applications still count
    assert got[2].p_intent == pytest.approx(got[1].p_intent)  # 9 applications score as 3
    assert stacking_caps(None, None) == ()
