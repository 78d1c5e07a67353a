"""Prometheus metrics: one :class:`Metrics` object per process, passed to whoever records.

No module-level collectors: tests build a fresh ``Metrics(CollectorRegistry())`` each. In a
multi-process server set ``PROMETHEUS_MULTIPROC_DIR``; prometheus-client then writes every value
to per-process files and ``render()`` aggregates them (see dsp.observability.multiproc; the
route is dsp.server.metrics_route).

Label sets are small and closed: ``exchange`` (configured profile names, plus ``_unknown`` for
requests naming no configured exchange: a client-chosen name never becomes a label), ``reason``
(NoBidReason values), ``campaign`` (configured campaign ids), ``stage`` (fixed list below).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prom_multiprocess

# Seconds. Dense below 10 ms: the bid path's budget lives there.
LATENCY_BUCKETS_S = (0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03,
                     0.05, 0.075, 0.1, 0.25, 0.5, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
STAGES = ("decode", "features", "scoring", "pricing")
#: Why a request was answered with the cheapest no-bid without being processed (dsp.server.overload).
SHED_REASONS = ("late", "lag", "queue")
#: Why a connection was closed or refused before a full request was read (dsp.server.front).
CONNECTION_DROPS = ("cap", "slow", "bad_head", "too_large")
#: Where an unexpected exception was turned into an answer (never a 5xx; no traceback per request).
UNEXPECTED_WHERE = ("decode", "flow")


class Metrics:
    """Every collector the bidder exports. Names are prefixed ``dsp_``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.registry = r
        #: Called by :func:`render` before every exposition: recorders that tally in plain
        #: Python (dsp.server.recorder) flush into the collectors here.
        self.before_render: list[Callable[[], None]] = []
        self.requests = Counter("dsp_bid_requests", "Bid requests received",
                                ["exchange", "outcome"], registry=r)  # outcome: bid|nobid|invalid
        self.bids = Counter("dsp_bids", "Bids returned", ["exchange", "campaign"], registry=r)
        self.nobids = Counter("dsp_nobids", "No-bids by reason", ["exchange", "reason"], registry=r)
        self.privacy = Counter("dsp_privacy_decisions", "Consent-signal outcomes of bid requests "
                               "(malformed strings included)", ["exchange", "outcome"], registry=r)
        self.request_latency = Histogram("dsp_request_latency_seconds",
                                         "Whole bid request, received to answered",
                                         ["exchange"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.stage_latency = Histogram("dsp_stage_latency_seconds", "Bid path stages",
                                       ["stage"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.batch_size = Histogram("dsp_batch_size", "Micro-batch sizes", ["batcher"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.redis_errors = Counter("dsp_redis_errors", "Redis errors and timeouts",
                                    ["op", "kind"], registry=r)  # kind: error|timeout
        self.deadline_misses = Counter("dsp_deadline_misses", "Requests whose deadline ran out",
                                       ["exchange", "stage"], registry=r)
        self.model_errors = Counter("dsp_model_errors", "ONNX run failures", ["model"], registry=r)
        self.notices = Counter("dsp_notices", "Notices by kind and result", ["kind", "result"],
                               registry=r)  # result: ok|duplicate|late|early|unknown|invalid|expired
        self.wins = Counter("dsp_wins", "Won impressions", ["campaign"], registry=r)
        self.spend_micros = Counter("dsp_spend_micros", "Committed spend in micros",
                                    ["campaign"], registry=r)
        self.pacing_multiplier = Gauge("dsp_pacing_multiplier", "Pacing multiplier lambda",
                                       ["campaign"], registry=r, multiprocess_mode="max")
        self.lease_available_micros = Gauge("dsp_lease_available_micros",
                                            "Budget available in this process's lease",
                                            ["campaign"], registry=r, multiprocess_mode="sum")
        self.ledger_drift_micros = Gauge("dsp_ledger_drift_micros",
                                         "leased - (committed + reserved + available)",
                                         ["campaign"], registry=r, multiprocess_mode="max")
        self.pacing_throttle = Gauge("dsp_pacing_throttle",
                                     "Share of the lowest-value traffic the pacing throttle turns away",
                                     ["campaign"], registry=r, multiprocess_mode="livemax")
        # Every worker reads the same values from Redis (its last LEASE call): the most recent
        # live one is the campaign's. All in micros of the campaign currency, today (local day).
        self.budget_spent_micros = Gauge("dsp_budget_spent_micros",
                                         "Committed spend of the campaign's current day",
                                         ["campaign"], registry=r,
                                         multiprocess_mode="livemostrecent")
        self.budget_plan_micros = Gauge("dsp_budget_plan_micros",
                                        "Plan-to-date: the day's budget times the plan's elapsed share",
                                        ["campaign"], registry=r,
                                        multiprocess_mode="livemostrecent")
        self.budget_guard_micros = Gauge("dsp_budget_guard_micros",
                                         "Plan guard: spend + open reservations may reach this now",
                                         ["campaign"], registry=r,
                                         multiprocess_mode="livemostrecent")
        self.budget_brake = Gauge("dsp_budget_brake", "1 while the emergency brake is on",
                                  registry=r, multiprocess_mode="max")
        self.config_reloads = Counter("dsp_config_reloads", "Config reloads", ["result"],
                                      registry=r)
        # For the HPA and the dashboards. livesum: dead workers drop out of the sum.
        self.inflight_requests = Gauge("dsp_inflight_requests", "Bid requests being processed now",
                                       registry=r, multiprocess_mode="livesum")
        self.decision_logs = Counter("dsp_decision_logs", "Decision records written by the sampler",
                                     ["result"], registry=r)  # result: logged|rate_limited
        self.shed = Counter("dsp_shed", "Bid requests answered with the cheapest no-bid because the "
                            "worker was behind", ["reason"], registry=r)  # SHED_REASONS
        self.connections_dropped = Counter("dsp_connections_dropped",
                                           "Connections refused or closed before a request was read",
                                           ["reason"], registry=r)  # CONNECTION_DROPS
        self.unexpected_errors = Counter("dsp_unexpected_errors", "Unexpected exceptions answered "
                                         "as 400 or no-bid", ["where"], registry=r)  # UNEXPECTED_WHERE
        self.loop_lag_seconds = Gauge("dsp_loop_lag_seconds", "Event-loop lag (latest probe)",
                                      registry=r, multiprocess_mode="max")
        # The money side (dsp.budget).
        self.clicks = Counter("dsp_clicks", "Clicks (first per bid)", ["campaign"], registry=r)
        self.conversions = Counter("dsp_conversions", "Conversions (first per bid and event)",
                                   ["campaign", "event"], registry=r)
        # Who may call: bid requests refused before decoding (dsp.exchanges.auth), notice prices
        # outside what was signed, admin calls refused.
        self.exchange_auth_rejections = Counter("dsp_exchange_auth_rejections",
                                                "Bid requests refused by exchange auth",
                                                ["exchange", "status"], registry=r)  # 401|403
        self.price_anomalies = Counter("dsp_price_anomalies",
                                       "Win/bill prices outside what the token signed",
                                       ["kind", "anomaly"], registry=r)  # below_floor|above_bid
        self.conversion_value_micros = Counter("dsp_conversion_value_micros",
                                               "Conversion amounts in micros", ["campaign", "event"],
                                               registry=r)
        # The event log's writer (dsp.events.writer): what reached Redis, what was dropped.
        self.events_written = Counter("dsp_events_written", "Events written to the Redis streams",
                                      ["kind"], registry=r)
        self.events_dropped = Counter("dsp_events_dropped", "Events dropped before Redis",
                                      ["reason"], registry=r)  # reason: buffer_full|redis_error
        self.events_buffered = Gauge("dsp_events_buffered", "Events waiting for the next flush",
                                     registry=r, multiprocess_mode="livesum")


class SinkMetrics:
    """What ``dsp events sink`` exports (its own process and registry)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.registry = r
        self.events = Counter("dsp_sink_events", "Events written to Parquet (after dedup)",
                              ["kind"], registry=r)
        self.duplicates = Counter("dsp_sink_duplicates", "Events skipped as duplicates of an id",
                                  ["kind"], registry=r)
        self.files = Counter("dsp_sink_files", "Parquet files written", ["kind"], registry=r)
        self.bytes = Counter("dsp_sink_bytes", "Parquet bytes written", ["kind"], registry=r)
        self.entries = Counter("dsp_sink_entries", "Stream entries acknowledged", ["result"],
                               registry=r)  # result: ok|rejected
        self.batch_seconds = Histogram("dsp_sink_batch_seconds", "Read, write, fsync and ack of a batch",
                                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
                                       registry=r)
        self.lag_entries = Gauge("dsp_sink_lag_entries", "Stream entries not yet read by the group",
                                 ["stream"], registry=r)
        self.pending_entries = Gauge("dsp_sink_pending_entries", "Entries read but not acknowledged",
                                     ["stream"], registry=r)
        self.oldest_age_seconds = Gauge("dsp_sink_oldest_unread_seconds",
                                        "Age of the oldest entry not yet read by the group",
                                        ["stream"], registry=r)
        self.partition_files = Gauge("dsp_sink_partition_files",
                                     "Parquet files in the current hour's partition", ["kind"],
                                     registry=r)


def render(metrics: Metrics) -> bytes:
    """Prometheus text exposition; aggregates all processes when PROMETHEUS_MULTIPROC_DIR is set.
    Runs the ``before_render`` hooks first, so this process's tallies are current."""
    for hook in metrics.before_render:
        hook()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(metrics.registry)


def render_processes() -> bytes:
    """The exposition summed over every process writing to ``PROMETHEUS_MULTIPROC_DIR`` (the
    supervisor of ``dsp serve --workers N``, which records nothing itself, serves this)."""
    registry = CollectorRegistry()
    prom_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)
