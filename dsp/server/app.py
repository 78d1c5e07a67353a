"""The bidder's aiohttp application: wiring only (clients, models, batchers, background tasks).

    app = build_app(settings, metrics)       # web.run_app(app) or an AppRunner

Every resource is owned by one cleanup context that starts it before ``yield`` and stops it after
(``Services.open``): the Redis client, the ONNX runners (loaded and checked against the feature
contract at start-up), the audience micro-batcher, the money runtime (budget leases, pacing), the
notice service, the config reloader (SIGHUP, ``POST /admin/reload`` on the admin port, periodic
file check; the YAML work runs in a thread, off the event loop) and the Redis health probe behind
``/readyz`` and the once-a-second flush of the bid-path metric tallies.

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
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import redis.asyncio as aioredis
from aiohttp import web
from redis.asyncio.cluster import RedisCluster

from dsp.bidding.audience import AudienceResolver, AudienceSource, ModelScorer
from dsp.bidding.decide import IdSource
from dsp.bidding.flow import BidFlow
from dsp.bidding.respond import NoticeUrls
from dsp.budget.freqcap import CapRecorder
from dsp.budget.outcomes import OutcomeStore
from dsp.budget.runtime import MoneyRuntime
from dsp.config.reloader import SnapshotHolder
from dsp.config.snapshot import Snapshot
from dsp.features.contract import DEFAULTS
from dsp.features.store import FeatureStore
from dsp.notices.service import NoticeService
from dsp.notices.tokens import TokenSigner
from dsp.observability.logging import DecisionLog
from dsp.observability.metrics import Metrics
from dsp.scoring.model import ModelRunner, load_models
from dsp.server.bid_endpoint import BidEndpoint
from dsp.server.credentials import conversion_secrets
from dsp.server.notice_routes import add_notice_routes
from dsp.server.recorder import BidRecorder
from dsp.server.settings import Settings

log = logging.getLogger(__name__)

SERVICES: web.AppKey[Services] = web.AppKey("services")

AnyRedis = aioredis.Redis | RedisCluster
METRICS_FLUSH_S = 1.0


def connect_redis(s: Settings) -> AnyRedis:
    """One client per process (connections are made lazily). Every key the bidder touches is
    designed for Redis Cluster (hash tags); with ``redis_cluster`` the cluster client routes them.
    The feature store, budget scripts and notice stores work with both clients (tested on a
    cluster in tests/test_*_cluster.py)."""
    if s.redis_cluster:
        return RedisCluster.from_url(s.redis_url, decode_responses=False,
                                     socket_connect_timeout=1.0, socket_timeout=1.0)
    return aioredis.Redis.from_url(s.redis_url, decode_responses=False,
                                   socket_connect_timeout=1.0, socket_timeout=1.0)


#: Builds the audience source from (redis client, intent runner, risk runner, population scores);
#: the default is the micro-batched AudienceResolver (benchmarks swap in a per-request one).
AudienceFactory = Callable[[AnyRedis, ModelRunner, ModelRunner, tuple[float, float]], AudienceSource]


class Services:
    """Per-process collaborators. Built synchronously (clients connect lazily, models load now);
    :meth:`open` starts the background work inside the event loop, :meth:`close` stops it."""

    def __init__(self, settings: Settings, metrics: Metrics, holder: SnapshotHolder,
                 make_audience: AudienceFactory | None = None) -> None:
        s = settings
        self.settings = settings
        self.metrics = metrics
        self.holder = holder
        self.recorder = BidRecorder(metrics)
        self.redis = connect_redis(s)
        runners = load_models(Path(s.models_dir))  # ModelContractError aborts start-up
        intent, risk = runners["intent"], runners["risk"]
        defaults = np.asarray(DEFAULTS, dtype=np.float32).reshape(1, -1)
        population = (float(intent.predict(defaults)[0]), float(risk.predict(defaults)[0]))
        self.models_ok = True
        self.redis_ok = False
        snap = holder.current
        self.money = MoneyRuntime(self.redis, metrics, snap.budgets)
        self.resolver: AudienceSource
        self.features = FeatureStore(self.redis, hash_key=s.user_hash_key)
        self._scoring_thread: ThreadPoolExecutor | None = None
        if make_audience is not None:
            self.resolver = make_audience(self.redis, intent, risk, population)
        else:
            if s.score_in_thread:
                self._scoring_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx")
            self.resolver = AudienceResolver(
                self.features, ModelScorer(intent, risk, self._scoring_thread), population,
                max_batch_size=min(intent.config.max_batch_size, risk.config.max_batch_size),
                max_wait_us=max(intent.config.max_wait_us, risk.config.max_wait_us),
                max_in_flight=s.batches_in_flight, on_batch=self.recorder.batch,
                on_redis_error=self.recorder.redis_error,
                on_stage=self.recorder.stage)
        signer = TokenSigner(s.token_keys, s.token_active)
        ids = IdSource(f"{secrets.token_hex(3)}{os.getpid():x}-")
        flow = BidFlow(self.resolver, self.money, NoticeUrls(signer, s.base_url), ids)
        self.endpoint = BidEndpoint(holder, flow, self.recorder, s.max_body_bytes,
                                    DecisionLog(sample_rate=s.decision_sample_rate, metrics=metrics))
        self.notices = NoticeService(
            signer, OutcomeStore(self.redis), CapRecorder(self.redis), metrics, snap.budgets,
            # Read through the holder so a reload changes landing pages and billing styles too.
            landing_url_for=lambda cid: holder.current.landing_url(cid),
            bills_on_for=lambda token: holder.current.bills_on(token.exchange),
            conversion_secrets=lambda: self._conversion_secrets)
        self._conversion_secrets = conversion_secrets(snap)
        holder.subscribe(self._on_snapshot)
        self._tasks: list[asyncio.Task[None]] = []
        self._reloads: set[asyncio.Task[dict[str, object]]] = set()

    async def open(self) -> None:
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

    async def reload(self, trigger: str) -> dict[str, object]:
        """Reload the config now: the files are read and compiled in a thread (off the event
        loop), the swap happens here. Keeps the last good snapshot on failure. A summary."""
        candidate = await asyncio.get_running_loop().run_in_executor(None, self.holder.prepare)
        result = self.holder.apply(candidate)
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
        pending = {*self._tasks, *self._reloads}
        while pending:  # a task that swallowed one cancellation gets another, bounded by its tick
            for task in pending:
                task.cancel()
            _done, pending = await asyncio.wait(pending, timeout=1.0)
        await self.resolver.close()
        await self.features.aclose()
        if self._scoring_thread is not None:
            self._scoring_thread.shutdown(wait=False)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.money.stop(), timeout=5.0)
        await self.redis.aclose()


async def _healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _readyz(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    checks = {"redis": svc.redis_ok, "models": svc.models_ok, "config": svc.holder.current is not None}
    status = 200 if all(checks.values()) else 503
    return web.json_response({"ready": status == 200, "checks": checks,
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
