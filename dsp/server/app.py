"""The bidder's aiohttp application: wiring only (clients, models, batchers, background tasks).

    app = build_app(settings, metrics)       # web.run_app(app) or an AppRunner

Every resource is owned by one cleanup context that starts it before ``yield`` and stops it after
(``Services.open``): the Redis client, the scoring plan's ONNX runners (``models/plan.json``,
loaded and checked against the feature contract at start-up; ``/readyz`` probes each), the
audience micro-batcher, the money runtime (budget leases, pacing), the notice service, the config
reloader (SIGHUP, ``POST /admin/reload`` on the admin port, periodic file check; the YAML work
runs in a thread, off the event loop), the Redis health probe behind ``/readyz`` and the
once-a-second flush of the bid-path metric tallies.

This application is the **bid port**: ``/bid/*``, ``/notice/*``, ``/conversion``, ``/healthz``,
``/readyz`` and nothing else. ``/metrics`` and ``/admin/*`` live on the admin port
(:mod:`dsp.server.admin`), never reachable by exchanges or browsers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from dsp.bidding.audience import AudienceResolver, AudienceSource, stacking_caps
from dsp.bidding.decide import IdSource
from dsp.bidding.eventlog import BidEventLog
from dsp.bidding.flow import BidFlow
from dsp.bidding.respond import NoticeUrls
from dsp.budget.freqcap import CapRecorder
from dsp.budget.outcomes import OutcomeStore
from dsp.budget.runtime import MoneyRuntime
from dsp.config.diff import diff_snapshots
from dsp.config.reloader import SnapshotHolder
from dsp.config.snapshot import Snapshot
from dsp.events.schema import ConfigEvent
from dsp.events.writer import EventStats, EventWriter
from dsp.features.connect import AnyAsyncRedis, async_client
from dsp.features.store import FeatureStore
from dsp.notices.service import NoticeService
from dsp.notices.tokens import TokenSigner
from dsp.observability.logging import DecisionLog
from dsp.observability.metrics import Metrics
from dsp.scoring.model import ModelRunner
from dsp.scoring.plan import load_plan
from dsp.server.bid_endpoint import BidEndpoint
from dsp.server.credentials import conversion_secrets
from dsp.server.memtrace import MemTrace
from dsp.server.notice_routes import add_notice_routes
from dsp.server.overload import LoadGuard
from dsp.server.recorder import BidRecorder
from dsp.server.settings import Settings

log = logging.getLogger(__name__)

SERVICES: web.AppKey[Services] = web.AppKey("services")

AnyRedis = AnyAsyncRedis
METRICS_FLUSH_S = 1.0


def connect_redis(s: Settings, url: str = "", cluster: bool | None = None) -> AnyRedis:
    """One client per process (:func:`dsp.features.connect.async_client`; lazily connected).
    ``url``/``cluster`` override the settings' Redis (the event log's own Redis)."""
    return async_client(url or s.redis_url, cluster=s.redis_cluster if cluster is None else cluster)


#: Builds the audience source from (redis client, intent runner, risk runner, population scores)
#: for benchmarks that compare against a per-request baseline;
#: the default is the micro-batched AudienceResolver (benchmarks swap in a per-request one).
AudienceFactory = Callable[[AnyRedis, ModelRunner, ModelRunner, tuple[float, float]], AudienceSource]


class Services:
    """Per-process collaborators. Built synchronously (clients connect lazily, models load now);
    :meth:`open` starts the background work inside the event loop, :meth:`close` stops it."""

    def __init__(self, settings: Settings, metrics: Metrics, holder: SnapshotHolder,
                 make_audience: AudienceFactory | None = None) -> None:
        s = settings
        self.settings = settings
        self._scoring_thread: ThreadPoolExecutor | None = None
        self.metrics = metrics
        self.holder = holder
        self.recorder = BidRecorder(metrics)
        self.redis = connect_redis(s)
        if s.score_in_thread and make_audience is None:
            self._scoring_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx")
        # The scoring plan (models/plan.json) and every model it names; ModelContractError aborts
        # start-up.
        self.scorer, runners = load_plan(Path(s.models_dir), self._scoring_thread)
        population = self.scorer.population()
        self.redis_ok = False
        snap = holder.current
        self.money = MoneyRuntime(self.redis, metrics, snap.budgets)
        self.resolver: AudienceSource
        self.features = FeatureStore(self.redis, hash_key=s.features_hash_key,
                                     on_unavailable=self.recorder.redis_error)
        if make_audience is not None:
            self.resolver = make_audience(self.redis, runners["intent"], runners["risk"],
                                          (population["p_intent"], population["pd"]))
        else:
            self.resolver = AudienceResolver(
                self.features, self.scorer, population,
                max_batch_size=min(r.config.max_batch_size for r in runners.values()),
                max_wait_us=max(r.config.max_wait_us for r in runners.values()),
                max_in_flight=s.batches_in_flight, on_batch=self.recorder.batch,
                on_redis_error=self.recorder.redis_error,
                on_stage=self.recorder.stage,
                caps=lambda: stacking_caps(holder.current.traffic.stacking_threshold_30d,
                                           holder.current.traffic.stacking_threshold_90d))
        signer = TokenSigner(s.token_keys, s.token_active)
        ids = IdSource(f"{secrets.token_hex(3)}{os.getpid():x}-")
        flow = BidFlow(self.resolver, self.money, NoticeUrls(signer, s.base_url), ids)
        self.guard = LoadGuard(late_share=s.shed_late_share, lag_share=s.shed_lag_share,
                               max_inflight=s.max_inflight,
                               enabled=s.shedding)
        self.recorder.lag_probe = self.guard.read_max_lag
        # The event log: on by default, in the same Redis unless --events-redis-url says otherwise.
        self.events: EventWriter | None = None
        self._events_redis: AnyRedis | None = None
        event_log: BidEventLog | None = None
        if s.events_enabled:
            if s.events_redis_url:
                self._events_redis = connect_redis(s, s.events_redis_url, s.events_redis_cluster)
            self.events = EventWriter(self._events_redis or self.redis, stats=EventStats(metrics),
                                      shards=s.events_shards, max_buffer=s.events_max_buffer,
                                      maxlen_entries=s.events_maxlen_entries, tick_s=s.events_tick_s)
            event_log = BidEventLog(
                self.events, s.user_hash_key, sample_rate=s.events_sample_rate,
                model_versions={name: r.config.version for name, r in runners.items()})
        self.endpoint = BidEndpoint(holder, flow, self.recorder, s.max_body_bytes,
                                    DecisionLog(sample_rate=s.decision_sample_rate, metrics=metrics),
                                    events=event_log, guard=self.guard)
        self._loaded = snap
        self.notices = NoticeService(
            signer, OutcomeStore(self.redis, wait_replicas=1 if s.redis_cluster else 0),
            CapRecorder(self.redis), metrics, snap.budgets,
            # Read through the holder so a reload changes landing pages and billing styles too.
            landing_url_for=lambda cid: holder.current.landing_url(cid),
            bills_on_for=lambda token: holder.current.bills_on(token.exchange),
            conversion_secrets=lambda: self._conversion_secrets,
            currency_for=lambda cid: holder.current.campaign_currency(cid),
            events=self.events)
        self._conversion_secrets = conversion_secrets(snap)
        holder.subscribe(self._on_snapshot)
        self._tasks: list[asyncio.Task[None]] = []
        self._reloads: set[asyncio.Task[dict[str, object]]] = set()
        self.memtrace = MemTrace.from_env()  # debug only: DSP_DEBUG_TRACEMALLOC (soak runs)

    async def open(self) -> None:
        if self.memtrace is not None:
            self.memtrace.start()
        self.guard.start()
        if self.events is not None:
            self.events.start()
            self._config_event("start", "", self._loaded, self._loaded, ok=True, problems=0)
        await self._ping()
        try:
            await asyncio.wait_for(self.money.start(), timeout=5.0)
        except Exception:  # Redis down at start: the brake keeps money safe; bidding degrades
            log.exception("money runtime did not start cleanly")
        self._tasks = [asyncio.create_task(self._health_loop(), name="redis-health"),
                       asyncio.create_task(self._reload_loop(), name="config-watch"),
                       asyncio.create_task(self._metrics_loop(), name="metrics-flush")]

    def _on_snapshot(self, snap: Snapshot) -> None:
        self.money.update_budgets(snap.budgets)
        self.notices.update_budgets(snap.budgets)
        self.endpoint.update_snapshot(snap)
        self._conversion_secrets = conversion_secrets(snap)

    async def _ping(self) -> None:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation that
        # arrives as the ping completes, and the health loop then never stops (a shutdown hang
        # seen about once in 15 runs of tests/test_server_front.py on a loaded machine).
        try:
            async with asyncio.timeout(0.5):
                await self.redis.ping()
            self.redis_ok = True
        except Exception:
            self.redis_ok = False

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_check_s)
            await self._ping()

    def _config_event(self, trigger: str, actor: str, old: Snapshot, new: Snapshot, *, ok: bool,
                      problems: int) -> None:
        if self.events is None:
            return
        now_us = int(time.time() * 1_000_000)
        changed = [str(c)[:200] for c in diff_snapshots(old, new)[:100]] if old is not new else []
        self.events.append(ConfigEvent(
            ts_us=now_us, config_id=f"{socket.gethostname()}:{os.getpid()}:{now_us}",
            config_version=new.version, previous_version=old.version if old is not new else "",
            trigger=trigger, actor=actor, changed=changed, ok=ok, problems=problems))

    async def reload(self, trigger: str, actor: str = "") -> dict[str, object]:
        """Reload the config now: the files are read and compiled in a thread (off the event
        loop), the swap happens here. Keeps the last good snapshot on failure. A summary."""
        before = self.holder.current
        candidate = await asyncio.get_running_loop().run_in_executor(None, self.holder.prepare)
        result = self.holder.apply(candidate)
        self._config_event(trigger, actor, before, self.holder.current, ok=result.ok,
                           problems=len(result.problems))
        self.metrics.config_reloads.labels("ok" if result.ok else "failed").inc()
        if result.ok:
            log.info("config reloaded", extra={"fields": {"trigger": trigger, "version": result.version,
                                                          "changed": result.changed}})
        else:
            log.error("config reload failed; keeping the last good snapshot",
                      extra={"fields": {"trigger": trigger, "problems": result.problems}})
        return {"ok": result.ok, "version": result.version, "changed": result.changed,
                "problems": result.problems}

    def reload_soon(self, trigger: str) -> None:
        """Start a reload from a signal handler (SIGHUP)."""
        task = asyncio.get_running_loop().create_task(self.reload(trigger))
        self._reloads.add(task)  # a reference until done (the loop keeps only weak ones)
        task.add_done_callback(self._reloads.discard)

    async def _metrics_loop(self) -> None:
        """Flush the bid path's tallies once a second (other processes' scrapes read the files)."""
        try:
            while True:
                await asyncio.sleep(METRICS_FLUSH_S)
                self.recorder.flush()
        finally:
            self.recorder.flush()

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_check_s)
            loop = asyncio.get_running_loop()
            if await loop.run_in_executor(None, self.holder.changed):
                await self.reload("file-watch")

    async def close(self) -> None:
        """Stop everything; each step is bounded (a stuck client must not hang shutdown)."""
        self.guard.stop()
        pending = {*self._tasks, *self._reloads}
        for _ in range(5):  # a task that swallowed one cancellation gets another (3.11 wait_for)
            if not pending:
                break
            for task in pending:
                task.cancel()
            _done, pending = await asyncio.wait(pending, timeout=1.0)
        if pending:
            log.error("background tasks ignored cancellation",
                      extra={"fields": {"tasks": sorted(t.get_name() for t in pending)}})
        await _bounded("audience resolver", self.resolver.close())
        if self.events is not None:
            await _bounded("event writer", self.events.stop())
        if self._events_redis is not None:
            await _bounded("event redis", self._events_redis.aclose())
        await _bounded("feature store", self.features.aclose())
        if self._scoring_thread is not None:
            self._scoring_thread.shutdown(wait=False)
        await _bounded("money runtime", self.money.stop())
        await _bounded("redis", self.redis.aclose())
        if self.memtrace is not None:
            await _bounded("memtrace", self.memtrace.stop())


async def _bounded(what: str, step: Awaitable[object], timeout_s: float = 5.0) -> None:
    """Await one shutdown step for at most ``timeout_s``; log (never raise) what went wrong."""
    try:
        async with asyncio.timeout(timeout_s):
            await step
    except TimeoutError:
        log.error("shutdown step timed out", extra={"fields": {"step": what, "after_s": timeout_s}})
    except Exception:
        log.exception("shutdown step failed", extra={"fields": {"step": what}})


async def _healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _readyz(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    models = svc.scorer.probe()  # every model of the plan answers the defaults row (~50 µs each)
    checks = {"redis": svc.redis_ok, "models": all(models.values()),
              "config": svc.holder.current is not None}
    status = 200 if all(checks.values()) else 503
    return web.json_response({"ready": status == 200, "checks": checks, "models": models,
                              "config_version": svc.holder.current.version}, status=status)


def build_app(settings: Settings, metrics: Metrics, holder: SnapshotHolder | None = None, *,
              make_audience: AudienceFactory | None = None) -> web.Application:
    """The application. The config is loaded now (ConfigInvalid aborts start-up)."""
    holder = holder or SnapshotHolder.load(Path(settings.configs_dir))
    app = web.Application(client_max_size=settings.max_body_bytes)
    svc = Services(settings, metrics, holder, make_audience)
    app[SERVICES] = svc

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        await svc.open()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, svc.reload_soon, "SIGHUP")
        yield
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGHUP)
        await svc.close()

    app.cleanup_ctx.append(lifecycle)

    for exchange in sorted(holder.current.exchanges):  # static routes: a dict lookup per request
        app.router.add_post(f"/bid/{exchange}", svc.endpoint.route_for(exchange))
    app.router.add_post("/bid/{exchange}", svc.endpoint.handle)  # exchanges added by a reload
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    add_notice_routes(app, svc.notices)
    return app
