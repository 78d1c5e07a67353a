"""``dsp serve``: run the bidder with N processes sharing one port (``SO_REUSEPORT``).

    dsp serve --port 8080 --workers 2 --redis-url redis://127.0.0.1:6379/0 --configs bidder_configs

The parent validates the config first (every problem is printed, exit code 2), then runs one
worker in-process (``--workers 1``) or supervises N spawned workers: SIGTERM/SIGINT stop them,
SIGHUP is forwarded (each worker reloads its config; a bad config keeps the last good snapshot),
and a worker that dies is restarted. Each worker is one uvloop event loop with its own Redis
client, ONNX sessions and micro-batchers; they share nothing but Redis. With several workers,
Prometheus runs in multiprocess mode so ``/metrics`` on any worker sums all of them.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dsp.cli.common import add_redis_url
from dsp.clock import CLOCK_OFFSET_ENV, CLOCK_OFFSET_S
from dsp.server.settings import TRANSPORTS, Settings, events_hash_key_from_env, token_keys_from_env


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
    keys, active = token_keys_from_env()
    return Settings(host=args.host, port=args.port, workers=max(1, args.workers),
                    redis_url=args.redis_url, redis_cluster=args.redis_cluster,
                    configs_dir=args.configs, models_dir=args.models,
                    public_url=args.public_url, max_body_bytes=args.max_body_bytes,
                    token_keys=keys, token_active=active, score_in_thread=args.score_thread,
                    batches_in_flight=max(1, args.batches_in_flight),
                    gc_tuning=not args.no_gc_tuning, transport=args.transport,
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


def _check_config(settings: Settings) -> bool:
    from dsp.config.snapshot import load_snapshot
    from dsp.errors import ConfigInvalid

    try:
        snap = load_snapshot(Path(settings.configs_dir))
    except ConfigInvalid as exc:
        print(f"dsp serve: invalid config in {settings.configs_dir}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return False
    print(f"dsp serve: config {snap.version}: {len(snap.campaigns)} campaigns, "
          f"exchanges {', '.join(sorted(snap.exchanges))}", file=sys.stderr)
    return True


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if not _check_config(settings):
        return 2
    from dsp import compiled

    print(f"dsp serve: http://{settings.host}:{settings.port} with {settings.workers} worker(s); "
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
    import multiprocessing as mp

    from dsp.observability.multiproc import enable_multiprocess, mark_worker_dead

    enable_multiprocess(os.environ.get("PROMETHEUS_MULTIPROC_DIR")
                        or tempfile.mkdtemp(prefix="dsp-prom-"), clean=True)
    ctx = mp.get_context("spawn")
    procs: list[Any] = []
    stopping = False

    def start() -> Any:
        p = ctx.Process(target=serve_worker, args=(settings, log_level), daemon=False)
        p.start()
        return p

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)

    def hup(_signum: int, _frame: object) -> None:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hup)
    procs.extend(start() for _ in range(settings.workers))
    restarts = 0
    while not stopping:
        time.sleep(0.5)
        for i, p in enumerate(procs):
            if not p.is_alive() and not stopping:
                mark_worker_dead(p.pid)
                if restarts >= 10 * settings.workers:
                    print("dsp serve: workers keep dying; giving up", file=sys.stderr)
                    stop(signal.SIGTERM, None)
                    break
                restarts += 1
                print(f"dsp serve: worker {p.pid} exited ({p.exitcode}); restarting", file=sys.stderr)
                procs[i] = start()
    deadline = time.monotonic() + 10.0
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
    return 0
