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


def scrape_buckets(url: str, metric: str = "dsp_request_latency_seconds") -> Buckets | None:
    """Cumulative buckets of ``metric`` summed over all label sets; None when unavailable."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    out: Buckets = {}
    for fam in text_string_to_metric_families(text):
        if fam.name != metric:
            continue
        for s in fam.samples:
            if s.name == metric + "_bucket":
                le = float(s.labels["le"])
                out[le] = out.get(le, 0.0) + s.value
    return out or None


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
