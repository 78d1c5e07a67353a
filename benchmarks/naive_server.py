"""The per-request baseline: the same bidder, but one Redis GET and one ONNX call per model per request.

Everything else (decode, gates, eligibility, pricing, response, money, notices) is the product's
code, so the benchmark isolates what cross-request batching buys.

    python -m benchmarks.naive_server --port 8098 --redis-url redis://127.0.0.1:6379/0 --configs DIR
"""

from __future__ import annotations

import argparse

import numpy as np
import uvloop
from aiohttp import web
from prometheus_client import CollectorRegistry

from dsp.bidding.audience import Audience, AudienceSource
from dsp.clock import Deadline
from dsp.features.connect import AnyAsyncRedis
from dsp.features.keys import user_key
from dsp.features.record import RecordCodec
from dsp.observability.metrics import Metrics
from dsp.scoring.model import ModelRunner
from dsp.server.app import build_app
from dsp.server.settings import Settings
from dsp.testing.redis_server import reply_bytes


class NaiveAudience:
    """GET the user's record, run each model on one row (risk only when intent clears the
    request's floor, as the bidder does). No batching, no caps."""

    def __init__(self, redis: AnyAsyncRedis, intent: ModelRunner, risk: ModelRunner,
                 population: tuple[float, float]) -> None:
        self._redis = redis
        self._intent = intent
        self._risk = risk
        self._codec = RecordCodec()
        self.population = population

    def unknown(self, user_key: str = "", caps: dict[str, bytes] | None = None) -> Audience:
        return Audience(user_key, False, self.population[0], self.population[1], caps or {})

    async def resolve(self, user_id: str, deadline: Deadline, intent_floor: float = 0.0) -> Audience:
        key = user_key(user_id)
        try:
            blob = await self._redis.get(key)
        except Exception:
            return self.unknown()
        features = self._codec.decode(reply_bytes(blob)) if blob else None
        if features is None:
            return self.unknown(key)
        row = np.asarray(features, dtype=np.float32).reshape(1, -1)
        p_intent = float(self._intent.predict(row)[0])
        if p_intent < intent_floor:  # the same "intent first" saving as the bidder, per request
            return Audience(key, True, p_intent, float("nan"), {})
        return Audience(key, True, p_intent, float(self._risk.predict(row)[0]), {})

    async def close(self) -> None:
        return None


def make_naive(redis: AnyAsyncRedis, intent: ModelRunner, risk: ModelRunner,
               population: tuple[float, float]) -> AudienceSource:
    return NaiveAudience(redis, intent, risk, population)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8098)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--configs", default="bidder_configs")
    parser.add_argument("--models", default="models")
    args = parser.parse_args()
    settings = Settings(host=args.host, port=args.port, redis_url=args.redis_url,
                        configs_dir=args.configs, models_dir=args.models,
                        token_keys={"b1": b"benchmark-key-0123456789"}, token_active="b1")
    uvloop.install()
    app = build_app(settings, Metrics(CollectorRegistry()), make_audience=make_naive)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
