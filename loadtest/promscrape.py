"""Server-side latency from the bidder's own /metrics: histogram deltas and their quantiles.

The open-loop client measures what an exchange would see (kernel and client included); the
bidder's ``dsp_request_latency_seconds`` histogram measures "inside the bidder". Scraping it before
and after a run and diffing the cumulative buckets gives that run's server-side distribution.
"""

from __future__ import annotations

import math
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Buckets = dict[float, float]  # upper bound (seconds, +Inf included) -> cumulative count


#: No-bid reasons that mean "could not do the work in time / at all" rather than a decision.
SHED_REASONS = frozenset({"deadline", "model_error", "features_unavailable", "internal_error",
                          "overloaded"})
#: No-bid reasons of a user looked up, scored and priced out (the value formula said no).
PRICED_OUT_REASONS = frozenset({"intent_too_low", "risk_too_high", "value_not_positive", "below_floor"})


class Scrape:
    """What the capacity report reads from one /metrics scrape."""

    __slots__ = ("buckets", "nobids", "pacing", "requests", "spend")

    def __init__(self, buckets: Buckets, nobids: dict[str, float], requests: float,
                 spend: dict[str, float] | None = None, pacing: dict[str, float] | None = None) -> None:
        self.buckets = buckets      # dsp_request_latency_seconds, all exchanges
        self.nobids = nobids        # dsp_nobids_total by reason, all exchanges
        self.requests = requests    # dsp_bid_requests_total, all exchanges and outcomes
        self.spend = spend or {}    # dsp_spend_micros_total by campaign (committed by notices)
        self.pacing = pacing or {}  # dsp_pacing_multiplier (λ) by campaign, now

    def share_since(self, before: Scrape | None, reasons: frozenset[str]) -> float:
        """Share of the requests since ``before`` that no-bid for one of ``reasons``."""
        prev = before.nobids if before is not None else {}
        n = self.requests - (before.requests if before is not None else 0.0)
        hits = sum(self.nobids.get(r, 0.0) - prev.get(r, 0.0) for r in reasons)
        return hits / n if n > 0 else 0.0

    def shed_since(self, before: Scrape | None) -> tuple[float, dict[str, float]]:
        """(share of requests no-bid for a SHED_REASONS reason, their counts) since ``before``."""
        prev = before.nobids if before is not None else {}
        counts = {r: self.nobids.get(r, 0.0) - prev.get(r, 0.0) for r in SHED_REASONS}
        n = self.requests - (before.requests if before is not None else 0.0)
        return (sum(counts.values()) / n if n > 0 else 0.0), {r: c for r, c in counts.items() if c}


def scrape(url: str) -> Scrape | None:
    """Scrape the bidder; None when it has no /metrics (e.g. the 204 ceiling server)."""
    try:
        # dsp serve's /metrics is on its admin port: a ServedUrl (dsp.testing.serve) names it.
        base = getattr(url, "admin", "") or url
        with urllib.request.urlopen(base.rstrip("/") + "/metrics", timeout=5) as r:
            if r.status != 200:
                return None
            text = r.read().decode()
    except OSError:
        return None
    buckets: Buckets = {}
    nobids: dict[str, float] = {}
    spend: dict[str, float] = {}
    pacing: dict[str, float] = {}
    requests = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "dsp_request_latency_seconds_bucket":
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
            elif s.name == "dsp_nobids_total":
                reason = s.labels.get("reason", "")
                nobids[reason] = nobids.get(reason, 0.0) + s.value
            elif s.name == "dsp_bid_requests_total":
                requests += s.value
            elif s.name == "dsp_spend_micros_total":
                c = s.labels.get("campaign", "")
                spend[c] = spend.get(c, 0.0) + s.value
            elif s.name == "dsp_pacing_multiplier":
                c = s.labels.get("campaign", "")
                pacing[c] = max(pacing.get(c, 0.0), s.value)
    if not buckets and not requests:
        return None
    return Scrape(buckets, nobids, requests, spend, pacing)


def delta(after: Buckets, before: Buckets | None) -> Buckets:
    return {le: after[le] - (before or {}).get(le, 0.0) for le in after}


def quantile(buckets: Buckets, q: float) -> float | None:
    """Prometheus-style ``histogram_quantile``: linear inside the bucket holding rank q·N."""
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return prev_le  # beyond the last finite bound: report that bound
            span = count - prev_count
            return prev_le + (le - prev_le) * ((rank - prev_count) / span if span > 0 else 1.0)
        prev_le, prev_count = le, count
    return prev_le
