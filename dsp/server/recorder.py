"""Bid-path metrics, tallied in plain Python and flushed into Prometheus in bulk.

One :class:`BidRecorder` per process wraps the :class:`dsp.observability.metrics.Metrics` object
passed in (no globals). Label values are closed sets: configured exchange names, the no-bid
reasons of the filter table (:data:`dsp.bidding.filters.REASON_LABEL`), configured campaign ids.

Why tallies: a prometheus-client ``inc()`` or ``observe()`` takes a lock and (for a histogram)
walks the buckets; the bid path made five of them per request (1.9 µs against 0.47 for the
tallies in ``benchmarks/bench_hotspots.py``).
Per request the recorder now bumps ``int`` entries in dicts (and finds the latency bucket with one
``bisect``); :meth:`flush` moves the counts into the Prometheus children. Flushes happen before
every exposition (``Metrics.render`` calls the registered hooks, so a scrape of this process is
exact) and once a second from the app's background loop (what other processes' scrapes see in
multi-process mode, where values travel through files: at most ~1 s late).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from dsp.bidding.filters import REASON_LABEL
from dsp.errors import DependencyUnavailable
from dsp.observability.metrics import LATENCY_BUCKETS_S, STAGES, Metrics
from dsp.openrtb.nobid import NoBidReason
from dsp.privacy.policy import Privacy

UNKNOWN_EXCHANGE_LABEL = "_unknown"


class _LatencyTally:
    """Non-cumulative bucket counts and the sum, the shape prometheus-client keeps internally."""

    __slots__ = ("counts", "sum_s")

    def __init__(self, n_buckets: int) -> None:
        self.counts = [0] * n_buckets
        self.sum_s = 0.0


class BidRecorder:
    """Records the bid path. Per-request counts and latencies are tallied and flushed (module
    docstring); per-request stage latencies (decode, pricing) are sampled one request in
    ``stage_sample`` and observed directly, as are per-batch stages (features, scoring).

    ``inflight`` is the number of requests inside the bid flow now (``+= 1`` / ``-= 1`` by the
    endpoint); the ``dsp_inflight_requests`` gauge shows its value at the last flush."""

    __slots__ = ("_bids", "_bounds", "_cache", "_latency", "_n", "_nobids", "_privacy", "_requests",
                 "_shed", "_stages", "_unknown", "inflight", "lag_probe", "metrics", "stage_sample")

    def __init__(self, metrics: Metrics, stage_sample: int = 16) -> None:
        self.metrics = metrics
        self._requests: dict[tuple[str, str], int] = {}
        self._nobids: dict[tuple[str, NoBidReason], int] = {}
        self._bids: dict[tuple[str, str], int] = {}
        self._privacy: dict[tuple[str, Privacy], int] = {}
        self._latency: dict[str, _LatencyTally] = {}
        self._unknown = 0
        # prometheus-client's bucket rule: an observation goes to the first bound >= it.
        self._bounds = (*LATENCY_BUCKETS_S, math.inf)
        self._cache: dict[str, Any] = {}
        self._stages = {stage: metrics.stage_latency.labels(stage) for stage in STAGES}
        self._shed: dict[str, int] = {}
        self.inflight = 0
        #: Returns the worst event-loop lag since the last call (LoadGuard.read_max_lag), or None.
        self.lag_probe: Callable[[], float] | None = None
        self.stage_sample = max(1, stage_sample)
        self._n = 0
        metrics.before_render.append(self.flush)

    def sample_stages(self) -> bool:
        """True for one request in ``stage_sample``: time its decode and pricing stages."""
        self._n += 1
        return self._n % self.stage_sample == 0

    def stage(self, stage: str, seconds: float) -> None:
        self._stages[stage].observe(seconds)

    def request(self, exchange: str, outcome: str, latency_s: float) -> None:
        """Count one answered request (outcome: bid | nobid | invalid) and its latency."""
        key = (exchange, outcome)
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1
        tally = self._latency.get(exchange)
        if tally is None:
            tally = self._latency[exchange] = _LatencyTally(len(self._bounds))
        tally.counts[bisect_left(self._bounds, latency_s)] += 1
        tally.sum_s += latency_s

    def shed(self, exchange: str, reason: str, latency_s: float) -> None:
        """Count one request shed by the LoadGuard (``reason`` in SHED_REASONS): a no-bid."""
        shed = self._shed
        shed[reason] = shed.get(reason, 0) + 1
        self.nobid(exchange, NoBidReason.OVERLOADED)
        self.request(exchange, "nobid", latency_s)

    def unexpected(self, where: str) -> None:
        """An unexpected exception answered as a 400 or a no-bid (``where`` in UNEXPECTED_WHERE)."""
        self.metrics.unexpected_errors.labels(where).inc()

    def unknown_exchange(self) -> None:
        """Count a request for an exchange that is not configured, under the fixed label
        ``exchange="_unknown"`` (outcome ``unknown_exchange``): the name is never a label."""
        self._unknown += 1

    def auth_rejected(self, exchange: str, status: int) -> None:
        """Count a request refused by the exchange's guard (a configured name; 401 or 403)."""
        self.metrics.exchange_auth_rejections.labels(exchange, str(status)).inc()

    def nobid(self, exchange: str, reason: NoBidReason) -> None:
        key = (exchange, reason)
        nobids = self._nobids
        nobids[key] = nobids.get(key, 0) + 1

    def privacy(self, exchange: str, outcome: Privacy) -> None:
        """Count one request's consent-signal outcome (closed set: :class:`Privacy`)."""
        key = (exchange, outcome)
        tally = self._privacy
        tally[key] = tally.get(key, 0) + 1

    def bid(self, exchange: str, campaign: str) -> None:
        key = (exchange, campaign)
        bids = self._bids
        bids[key] = bids.get(key, 0) + 1

    def flush(self) -> None:
        """Move the tallies into the Prometheus collectors and reset them. Runs on the event
        loop (the recorder is not thread-safe; neither is the bid path that feeds it)."""
        m = self.metrics
        requests, self._requests = self._requests, {}
        for (exchange, outcome), n in requests.items():
            m.requests.labels(exchange, outcome).inc(n)
        if self._unknown:
            m.requests.labels(UNKNOWN_EXCHANGE_LABEL, "unknown_exchange").inc(self._unknown)
            self._unknown = 0
        nobids, self._nobids = self._nobids, {}
        for (exchange, reason), n in nobids.items():
            m.nobids.labels(exchange, REASON_LABEL[reason]).inc(n)
            if reason is NoBidReason.DEADLINE:
                m.deadline_misses.labels(exchange, "flow").inc(n)
            elif reason is NoBidReason.MODEL_ERROR:
                m.model_errors.labels("batch").inc(n)
        privacy, self._privacy = self._privacy, {}
        for (exchange, signal), n in privacy.items():
            m.privacy.labels(exchange, signal.value).inc(n)
        bids, self._bids = self._bids, {}
        for (exchange, campaign), n in bids.items():
            m.bids.labels(exchange, campaign).inc(n)
        latency, self._latency = self._latency, {}
        for exchange, tally in latency.items():
            child = m.request_latency.labels(exchange)
            # prometheus-client 0.26 keeps non-cumulative bucket values and a sum per child
            # (Histogram.observe does exactly these increments); pinned in requirements.lock and
            # checked against observe() in tests/test_server_recorder.py.
            child._sum.inc(tally.sum_s)
            for i, n in enumerate(tally.counts):
                if n:
                    child._buckets[i].inc(n)
        shed_counts, self._shed = self._shed, {}
        for shed_reason, n in shed_counts.items():
            m.shed.labels(shed_reason).inc(n)
        m.inflight_requests.set(self.inflight)
        if self.lag_probe is not None:
            m.loop_lag_seconds.set(self.lag_probe())

    def batch(self, size: int) -> None:
        child = self._cache.get("batch")
        if child is None:
            child = self._cache["batch"] = self.metrics.batch_size.labels("audience")
        child.observe(size)

    def redis_error(self, exc: DependencyUnavailable) -> None:
        kind = "timeout" if "deadline" in str(exc) or "timeout" in str(exc).lower() else "error"
        self.metrics.redis_errors.labels("fetch", kind).inc()
