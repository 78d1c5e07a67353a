"""BidRecorder tallies in plain Python and flushes in bulk: what a scrape shows must be exactly
what direct prometheus-client calls would have shown (the flush writes histogram internals, so
this also guards a prometheus-client upgrade)."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, generate_latest

from dsp.observability.metrics import LATENCY_BUCKETS_S, STAGES, Metrics, render
from dsp.openrtb.nobid import NoBidReason
from dsp.server.recorder import BidRecorder


def _direct(m: Metrics, events: list[tuple[str, str, str, float]]) -> None:
    for stage in STAGES:  # the recorder creates its stage children up front
        m.stage_latency.labels(stage)
    for kind, exchange, label, latency_s in events:
        if kind == "request":
            m.requests.labels(exchange, label).inc()
            m.request_latency.labels(exchange).observe(latency_s)
        elif kind == "nobid":
            reason = NoBidReason(label)
            m.nobids.labels(exchange, label).inc()
            if reason is NoBidReason.DEADLINE:
                m.deadline_misses.labels(exchange, "flow").inc()
            elif reason is NoBidReason.MODEL_ERROR:
                m.model_errors.labels("batch").inc()
        else:
            m.bids.labels(exchange, label).inc()
    m.inflight_requests.set(3)


def _events(n: int) -> list[tuple[str, str, str, float]]:
    rng = random.Random(7)
    # Latencies on, just below and just above every bucket bound, plus beyond the last one.
    edges = [b * f for b in LATENCY_BUCKETS_S for f in (1.0, 0.999, 1.001)] + [5.0, 0.0]
    reasons = [r.value for r in NoBidReason]
    out = []
    for i in range(n):
        exchange = rng.choice(["generic", "exch-b"])
        kind = rng.choice(["request", "nobid", "bid"])
        label = {"request": rng.choice(["bid", "nobid", "invalid"]),
                 "nobid": rng.choice(reasons), "bid": rng.choice(["c1", "c2"])}[kind]
        latency = edges[i % len(edges)] if i % 3 else rng.uniform(0, 0.2)
        out.append((kind, exchange, label, latency))
    return out


def _samples(exposition: bytes) -> list[str]:
    """Sample lines, sorted, without the ``_created`` timestamps (those differ by construction);
    values to 12 significant digits (sums added in another order differ in the last bits)."""
    out = []
    for line in exposition.decode().splitlines():
        if line and not line.startswith("#") and "_created{" not in line:
            name, _, value = line.rpartition(" ")
            out.append(f"{name} {float(value):.12g}")
    return sorted(out)


def _feed(rec: BidRecorder, events: list[tuple[str, str, str, float]]) -> None:
    for kind, exchange, label, latency_s in events:
        if kind == "request":
            rec.request(exchange, label, latency_s)
        elif kind == "nobid":
            rec.nobid(exchange, NoBidReason(label))
        else:
            rec.bid(exchange, label)


def test_tallied_exposition_equals_direct_calls() -> None:
    events = _events(3000)
    direct = Metrics(CollectorRegistry())
    _direct(direct, events)
    tallied = Metrics(CollectorRegistry())
    rec = BidRecorder(tallied)
    half = len(events) // 2
    _feed(rec, events[:half])
    rec.flush()  # a flush in the middle (the background loop) must not lose or double anything
    _feed(rec, events[half:])
    rec.inflight = 3
    text = render(tallied)  # render runs the flush hook
    assert _samples(text) == _samples(generate_latest(direct.registry))
    assert b'dsp_request_latency_seconds_bucket{exchange="generic",le="0.0002"}' in text


def test_nothing_is_counted_twice_across_flushes() -> None:
    m = Metrics(CollectorRegistry())
    rec = BidRecorder(m)
    rec.request("generic", "bid", 0.001)
    rec.flush()
    rec.flush()
    render(m)
    assert m.requests.labels("generic", "bid")._value.get() == 1
    assert m.request_latency.labels("generic")._sum.get() == 0.001
