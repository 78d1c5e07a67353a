"""``dsp serve``: run the bidder with N processes sharing one port (``SO_REUSEPORT``).

    dsp serve --port 8080 --workers 2 --redis-url redis://127.0.0.1:6379/0 --configs bidder_configs \
              --admin-port 9090 --admin-host 127.0.0.1

The parent validates the config first (every problem is printed, exit code 2) and checks what a
reachable bidder must have (:mod:`dsp.server.credentials`: exit code 2 with the reason, e.g. more
than one process without ``DSP_TOKEN_KEYS`` unless ``--ephemeral-token-key``, an admin host beyond
loopback without ``DSP_ADMIN_TOKEN``, an exchange credential variable unset), printing a warning
for every open exchange profile when the bid port is bound beyond loopback. Then it runs one
worker in-process (``--workers 1``; the worker also serves the admin port) or supervises N
spawned workers: the supervisor owns the admin port (``/metrics`` summed over every worker
through Prometheus multiprocess files; ``POST /admin/reload`` validates once, then signals every
worker), SIGTERM/SIGINT stop the workers, SIGHUP is forwarded (each worker reloads its config; a
bad config keeps the last good snapshot), and a worker that dies is restarted. Each worker is one
uvloop event loop with its own Redis client, ONNX sessions and micro-batchers; they share nothing
but Redis. The bid port serves only ``/bid/*``, ``/notice/*``, ``/conversion``, ``/healthz`` and
``/readyz``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dsp.cli.common import add_redis_url
from dsp.clock import CLOCK_OFFSET_ENV, CLOCK_OFFSET_S
from dsp.features.keys import user_hash_key_from_env
from dsp.server.settings import (
    TOKEN_KEYS_ENV,
    TRANSPORTS,
    Settings,
    events_hash_key_from_env,
    token_keys_from_env,
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=os.environ.get("DSP_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DSP_PORT", "8080")))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("DSP_WORKERS", "1")),
                        help="processes sharing the port (one per core)")
    add_redis_url(parser)
    parser.add_argument("--redis-cluster", action="store_true",
                        default=os.environ.get("DSP_REDIS_CLUSTER", "") not in ("", "0", "false"),
                        help="--redis-url is a seed node of a Redis Cluster (env DSP_REDIS_CLUSTER=1)")
    parser.add_argument("--configs", default=os.environ.get("DSP_CONFIGS", "bidder_configs"),
                        help="bidder_configs directory (campaigns/, exchanges/, currencies.yaml)")
    parser.add_argument("--models", default=os.environ.get("DSP_MODELS", "models"),
                        help="models directory (models/intent, models/risk)")
    parser.add_argument("--public-url", default=os.environ.get("DSP_PUBLIC_URL", ""),
                        help="base URL for notice URLs (default http://HOST:PORT)")
    parser.add_argument("--max-body-bytes", type=int, default=256 * 1024)
    parser.add_argument("--score-thread", action="store_true",
                        help="run ONNX in one thread beside the event loop (helps when a spare core "
                             "exists; measured no better on a busy 2-core box)")
    parser.add_argument("--batches-in-flight", type=int, default=1,
                        help="audience micro-batches out at once (default 1)")
    parser.add_argument("--no-gc-tuning", action="store_true",
                        help="keep Python's default garbage-collector settings")
    parser.add_argument("--transport", choices=TRANSPORTS,
                        default=os.environ.get("DSP_TRANSPORT", "front"),
                        help="front (default): the lean HTTP/1.1 front answers bid requests and hands "
                             "other requests to aiohttp; aiohttp: aiohttp serves everything")
    parser.add_argument("--request-timeout", type=float,
                        default=float(os.environ.get("DSP_REQUEST_TIMEOUT", "10")),
                        help="seconds a request's head and body may take in all (then 408/close)")
    parser.add_argument("--max-connections", type=int,
                        default=int(os.environ.get("DSP_MAX_CONNECTIONS", "4096")),
                        help="open connections per worker; past it new ones get 503 and are closed")
    parser.add_argument("--no-shedding", action="store_true",
                        help="never shed late requests (for comparisons; see docs/operations.md)")
    parser.add_argument("--shed-lag-share", type=float,
                        default=float(os.environ.get("DSP_SHED_LAG_SHARE", "0.15")),
                        help="shed new bid requests while the event loop lags more than this share "
                             "of their deadline budget (default 0.15; docs/operations.md, Overload)")
    parser.add_argument("--admin-port", type=int, default=int(os.environ.get("DSP_ADMIN_PORT", "9090")),
                        help="port for /metrics and /admin/* (default 9090; 0: a free port)")
    parser.add_argument("--admin-host", default=os.environ.get("DSP_ADMIN_HOST", "127.0.0.1"),
                        help="interface of the admin port (default 127.0.0.1; anything beyond "
                             "loopback requires DSP_ADMIN_TOKEN)")
    parser.add_argument("--ephemeral-token-key", action="store_true",
                        help="allow more than one process without DSP_TOKEN_KEYS (each start gets "
                             "a random key: notices do not survive a restart; demos only)")
    parser.add_argument("--no-events", action="store_true",
                        default=os.environ.get("DSP_EVENTS", "1") in ("0", "false", "off"),
                        help="do not write the event log (bids, outcomes, request sample); it is on "
                             "by default, in the Redis named by --redis-url")
    parser.add_argument("--events-redis-url", default=os.environ.get("DSP_EVENTS_REDIS_URL", ""),
                        help="write the event streams to this Redis instead of --redis-url")
    parser.add_argument("--events-redis-cluster", action="store_true",
                        help="--events-redis-url is a seed node of a Redis Cluster")
    parser.add_argument("--events-sample-rate", type=float,
                        default=float(os.environ.get("DSP_EVENTS_SAMPLE_RATE", "0.01")),
                        help="share of bid requests kept as request samples (default 0.01)")
    parser.add_argument("--log-level", default=os.environ.get("DSP_LOG_LEVEL", "INFO"))
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Raises ValueError for a malformed secret in the environment."""
    keys, active = token_keys_from_env()
    return Settings(admin_host=args.admin_host, admin_port=args.admin_port,
                    features_hash_key=user_hash_key_from_env(),
                    host=args.host, port=args.port, workers=max(1, args.workers),
                    redis_url=args.redis_url, redis_cluster=args.redis_cluster,
                    configs_dir=args.configs, models_dir=args.models,
                    public_url=args.public_url, max_body_bytes=args.max_body_bytes,
                    token_keys=keys, token_active=active, score_in_thread=args.score_thread,
                    batches_in_flight=max(1, args.batches_in_flight),
                    gc_tuning=not args.no_gc_tuning, transport=args.transport,
                    request_timeout_s=args.request_timeout,
                    max_connections=max(1, args.max_connections), shedding=not args.no_shedding,
                    shed_lag_share=min(0.5, max(0.01, args.shed_lag_share)),
                    events_enabled=not args.no_events, events_redis_url=args.events_redis_url,
                    events_redis_cluster=args.events_redis_cluster,
                    events_sample_rate=min(1.0, max(0.0, args.events_sample_rate)),
                    events_hash_key=events_hash_key_from_env())


def serve_worker(settings: Settings, log_level: str = "INFO") -> None:
    """Run one worker's event loop until SIGTERM/SIGINT (the spawned process's entry point)."""
    import uvloop

    from dsp.observability.logging import configure_json_logging

    configure_json_logging(log_level)
    _log_build()
    uvloop.run(_serve_until_signalled(settings))


def _log_build() -> None:
    """Say which build of the bid path this worker runs: mypyc-compiled or plain Python."""
    import logging

    from dsp import compiled
    from dsp.server.app import build_app  # noqa: F401  (imports the whole bid path)

    log = logging.getLogger("dsp.serve")
    log.info("bid path: %s", compiled.STATUS, extra={"fields": {
        "build": "compiled" if compiled.COMPILED else "pure", "modules": compiled.loaded_paths()}})


async def _serve_until_signalled(settings: Settings) -> None:
    import asyncio

    from dsp.observability.metrics import Metrics
    from dsp.server.app import build_app
    from dsp.server.run import BidderServer

    app = build_app(settings, Metrics())
    if settings.gc_tuning:
        app.on_startup.append(_tune_gc)
    server = BidderServer(app, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.stop()


async def _tune_gc(_app: object) -> None:
    """After start-up: freeze what exists (modules, models, config: never garbage) so collections
    stop rescanning it, and collect the young generation less often. Requests allocate many
    short-lived tracked objects; with the defaults a full collection walks the whole heap every
    few thousand requests and shows up as latency spikes."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _check_start(settings: Settings, ephemeral_token_key: bool) -> bool:
    """Config valid and the start-up rules of dsp.server.credentials met; warnings printed."""
    from dsp.config.snapshot import load_snapshot
    from dsp.errors import ConfigInvalid
    from dsp.server.credentials import startup_problems, startup_warnings

    try:
        snap = load_snapshot(Path(settings.configs_dir))
    except ConfigInvalid as exc:
        print(f"dsp serve: invalid config in {settings.configs_dir}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return False
    print(f"dsp serve: config {snap.version}: {len(snap.campaigns)} campaigns, "
          f"exchanges {', '.join(sorted(snap.exchanges))}", file=sys.stderr)
    keys_set = bool(os.environ.get(TOKEN_KEYS_ENV, "").strip())
    problems = startup_problems(snap, workers=settings.workers, token_keys_set=keys_set,
                                ephemeral_token_key=ephemeral_token_key,
                                admin_host=settings.admin_host)
    for reason in problems:
        print(f"dsp serve: refusing to start: {reason}", file=sys.stderr)
    for warning in startup_warnings(snap, host=settings.host, token_keys_set=keys_set):
        print(f"dsp serve: WARNING: {warning}", file=sys.stderr)
    return not problems


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"dsp serve: {exc}", file=sys.stderr)
        return 2
    if not _check_start(settings, args.ephemeral_token_key):
        return 2
    from dsp import compiled

    print(f"dsp serve: http://{settings.host}:{settings.port} with {settings.workers} worker(s); "
          f"admin (/metrics, /admin/*) on http://{settings.admin_host}:{settings.admin_port}; "
          f"bid path {compiled.STATUS}", file=sys.stderr)
    if CLOCK_OFFSET_S:
        print(f"dsp serve: WARNING wall clock shifted by {CLOCK_OFFSET_S:+.0f} s ({CLOCK_OFFSET_ENV});"
              " rehearsals and tests only", file=sys.stderr)
    if settings.workers == 1:
        # One process needs no cross-process aggregation: in-memory collectors cost about a third
        # of the file-backed multiprocess ones (~4 vs ~9 µs per request), so drop the setting
        # (e.g. from the container image) before any collector exists.
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        serve_worker(settings, args.log_level)
        return 0
    return _supervise(settings, args.log_level)


def _supervise(settings: Settings, log_level: str) -> int:
    import asyncio

    from dsp.observability.multiproc import enable_multiprocess

    enable_multiprocess(os.environ.get("PROMETHEUS_MULTIPROC_DIR")
                        or tempfile.mkdtemp(prefix="dsp-prom-"), clean=True)
    return asyncio.run(_supervise_async(settings, log_level))


async def _supervise_async(settings: Settings, log_level: str) -> int:
    """Start the workers (without an admin port: this process owns it), serve the admin port,
    restart workers that die, stop them all on SIGTERM/SIGINT."""
    import asyncio
    import multiprocessing as mp

    import msgspec

    from dsp.config.snapshot import load_snapshot
    from dsp.errors import ConfigInvalid
    from dsp.observability.metrics import render_processes
    from dsp.observability.multiproc import mark_worker_dead
    from dsp.server.admin import admin_app, start_admin
    from dsp.server.credentials import ADMIN_TOKEN_ENV, is_loopback

    ctx = mp.get_context("spawn")
    worker_settings = msgspec.structs.replace(settings, admin_port=None)
    procs: list[Any] = []
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def start() -> Any:
        p = ctx.Process(target=serve_worker, args=(worker_settings, log_level), daemon=False)
        p.start()
        return p

    def signal_workers(signum: int) -> int:
        sent = 0
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signum)
                sent += 1
        return sent

    async def reload() -> dict[str, object]:
        """Validate once (in a thread), then SIGHUP every worker: each reloads the same files."""
        try:
            snap = await loop.run_in_executor(None, load_snapshot, Path(settings.configs_dir))
        except ConfigInvalid as exc:
            return {"ok": False, "version": None, "changed": False,
                    "problems": [str(p) for p in exc.problems]}
        sent = signal_workers(signal.SIGHUP)
        return {"ok": True, "version": snap.version, "changed": None, "problems": [],
                "workers_signalled": sent}

    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, signal_workers, signal.SIGHUP)
    procs.extend(start() for _ in range(settings.workers))
    runner = None
    if settings.admin_port is not None:
        app = admin_app(render_processes, reload, token=os.environ.get(ADMIN_TOKEN_ENV) or None,
                        loopback=is_loopback(settings.admin_host))
        runner, port = await start_admin(app, settings.admin_host, settings.admin_port)
        print(f"dsp serve: admin port http://{settings.admin_host}:{port}", file=sys.stderr)
    restarts = 0
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=0.5)
        for i, p in enumerate(procs):
            if not p.is_alive() and not stopping.is_set():
                mark_worker_dead(p.pid)
                if restarts >= 10 * settings.workers:
                    print("dsp serve: workers keep dying; giving up", file=sys.stderr)
                    stopping.set()
                    break
                restarts += 1
                print(f"dsp serve: worker {p.pid} exited ({p.exitcode}); restarting", file=sys.stderr)
                procs[i] = start()
    signal_workers(signal.SIGTERM)
    if runner is not None:
        await runner.cleanup()
    deadline = time.monotonic() + 10.0
    for p in procs:
        await loop.run_in_executor(None, p.join, max(0.1, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
    return 0
