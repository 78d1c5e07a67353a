"""Bid-path metrics with the label children cached (``labels()`` costs a lock and a dict build).

One :class:`BidRecorder` per process wraps the :class:`dsp.observability.metrics.Metrics` object
passed in (no globals). Label values are closed sets: configured exchange names, NoBidReason
values, configured campaign ids.
"""

from __future__ import annotations

from typing import Any

from dsp.errors import DependencyUnavailable
from dsp.observability.metrics import Metrics
from dsp.openrtb.nobid import NoBidReason


class BidRecorder:
    """Records the bid path. Per-request stage latencies (decode, pricing) are sampled one request
    in ``stage_sample`` (a histogram observe costs about a microsecond and a half); per-batch
    stages (features, scoring) are recorded for every batch."""

    __slots__ = ("_bids", "_cache", "_latency", "_n", "_nobids", "_requests", "_stages",
                 "inflight", "metrics", "stage_sample")

    def __init__(self, metrics: Metrics, stage_sample: int = 16) -> None:
        self.metrics = metrics
        self._requests: dict[tuple[str, str], Any] = {}
        self._nobids: dict[tuple[str, NoBidReason], Any] = {}
        self._bids: dict[tuple[str, str], Any] = {}
        self._latency: dict[str, Any] = {}
        self._cache: dict[str, Any] = {}
        self._stages = {stage: metrics.stage_latency.labels(stage)
                        for stage in ("decode", "features", "scoring", "pricing")}
        self.inflight = metrics.inflight_requests
        self.stage_sample = max(1, stage_sample)
        self._n = 0

    def sample_stages(self) -> bool:
        """True for one request in ``stage_sample``: time its decode and pricing stages."""
        self._n += 1
        return self._n % self.stage_sample == 0

    def stage(self, stage: str, seconds: float) -> None:
        self._stages[stage].observe(seconds)

    def request(self, exchange: str, outcome: str, latency_s: float) -> None:
        """Count one answered request (outcome: bid | nobid | invalid) and its latency."""
        key = (exchange, outcome)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.metrics.requests.labels(exchange, outcome)
        child.inc()
        hist = self._latency.get(exchange)
        if hist is None:
            hist = self._latency[exchange] = self.metrics.request_latency.labels(exchange)
        hist.observe(latency_s)

    def nobid(self, exchange: str, reason: NoBidReason) -> None:
        key = (exchange, reason)
        child = self._nobids.get(key)
        if child is None:
            child = self._nobids[key] = self.metrics.nobids.labels(exchange, reason.value)
        child.inc()
        if reason is NoBidReason.DEADLINE:
            self.metrics.deadline_misses.labels(exchange, "flow").inc()
        elif reason is NoBidReason.MODEL_ERROR:
            self.metrics.model_errors.labels("batch").inc()

    def bid(self, exchange: str, campaign: str) -> None:
        key = (exchange, campaign)
        child = self._bids.get(key)
        if child is None:
            child = self._bids[key] = self.metrics.bids.labels(exchange, campaign)
        child.inc()

    def batch(self, size: int) -> None:
        child = self._cache.get("batch")
        if child is None:
            child = self._cache["batch"] = self.metrics.batch_size.labels("audience")
        child.observe(size)

    def redis_error(self, exc: DependencyUnavailable) -> None:
        kind = "timeout" if "deadline" in str(exc) or "timeout" in str(exc).lower() else "error"
        self.metrics.redis_errors.labels("fetch", kind).inc()
