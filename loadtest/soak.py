"""Soak: a steady open-loop exchange against one bidder for a while; what grows?

    .venv/bin/python -m loadtest.soak --minutes 60 --rate 1000 --warmup-minutes 5

Starts a throwaway Redis, seeds 200 users, runs ``dsp serve`` (``--workers``, default 1) on a copy
of the demo config (budgets x1000), and drives it with dsp.testing.exchange_sim: bid requests at
``--rate`` per second (80% known users; tmax 100 ms), every bid followed by its notices (30% won:
win + bill, one bill in ten sent twice; the rest a loss notice). Every ``--sample-s`` seconds it
samples the workers' RSS and open file descriptors (/proc) and Redis ``used_memory`` and key
count; after the warm-up it fits a straight line to each and prints the slope per minute (and
per hour), with the first and last value. Non-2xx answers and lost notices are reported too.
The generator runs in this process; pin it with ``--cpu`` away from the bidder's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import redis as sync_redis

from dsp.features.writer import write_rows
from dsp.testing.exchange_sim import USERS, ExchangeSim, sim_configs
from dsp.testing.redis_server import RedisServer
from dsp.testing.serve import running_bidder
from dsp.testing.users import interested_user_row

REPO = Path(__file__).resolve().parent.parent


def workers_of(port: int) -> list[psutil.Process]:
    """The ``dsp serve`` worker processes listening on ``port`` (not the supervisor)."""
    parent = next(p for p in psutil.process_iter(["cmdline"])
                  if "serve" in (p.info["cmdline"] or []) and str(port) in (p.info["cmdline"] or []))
    kids = [c for c in parent.children() if "resource_tracker" not in " ".join(c.cmdline())]
    return kids or [parent]


def sample(procs: list[psutil.Process], r: sync_redis.Redis) -> dict[str, float]:
    info = r.info("memory")
    return {"t": time.monotonic(),
            "rss_mb": sum(p.memory_info().rss for p in procs) / 2**20,
            "fds": float(sum(p.num_fds() for p in procs)),
            "redis_mb": float(info["used_memory"]) / 2**20,
            "redis_keys": float(r.dbsize())}


def slopes(samples: list[dict[str, float]], warmup_s: float) -> dict[str, dict[str, float]]:
    t0 = samples[0]["t"]
    kept = [s for s in samples if s["t"] - t0 >= warmup_s]
    out: dict[str, dict[str, float]] = {}
    if len(kept) < 3:
        return out
    minutes = np.array([(s["t"] - t0) / 60 for s in kept])
    for key in ("rss_mb", "fds", "redis_mb", "redis_keys"):
        y = np.array([s[key] for s in kept])
        slope = float(np.polyfit(minutes, y, 1)[0])
        out[key] = {"first": round(float(y[0]), 2), "last": round(float(y[-1]), 2),
                    "per_min": round(slope, 4), "per_hour": round(slope * 60, 2)}
    return out


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    with RedisServer() as redis_srv, tempfile.TemporaryDirectory(prefix="dsp-soak-") as tmp:
        r = sync_redis.Redis.from_url(redis_srv.url)
        write_rows(r, USERS, np.repeat(interested_user_row(), len(USERS), axis=0))
        configs = sim_configs(REPO / "bidder_configs", Path(tmp) / "configs")
        with running_bidder(redis_srv.url, Path(tmp) / "serve.log", configs=configs,
                            workers=args.workers) as url:
            procs = workers_of(int(url.rsplit(":", 1)[1]))
            if args.bidder_cpu is not None:
                for p in procs:
                    p.cpu_affinity([args.bidder_cpu])
            sim = ExchangeSim(url, USERS, rate=args.rate, tmax_ms=100, timeout_s=2.0)
            sim.start()
            samples = []
            end = time.monotonic() + args.minutes * 60
            while time.monotonic() < end:
                samples.append(sample(procs, r))
                await asyncio.sleep(min(args.sample_s, max(0.0, end - time.monotonic())))
            samples.append(sample(procs, r))
            report = await sim.stop()
        r.close()
    return {"rate": args.rate, "minutes": args.minutes, "warmup_minutes": args.warmup_minutes,
            "workers": args.workers, "sim": report.summary(),
            "slopes": slopes(samples, args.warmup_minutes * 60), "samples": samples}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="loadtest.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--warmup-minutes", type=float, default=5.0)
    p.add_argument("--rate", type=float, default=1000.0, help="bid requests per second")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--sample-s", type=float, default=10.0)
    p.add_argument("--cpu", type=int, default=None, help="pin this generator to one CPU")
    p.add_argument("--bidder-cpu", type=int, default=None, help="pin the bidder's workers to one CPU")
    p.add_argument("--json-out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    result = asyncio.run(soak(args))
    sim = result["sim"]
    print(f"soak: {args.minutes:g} min at {args.rate:g} req/s, {args.workers} worker(s); "
          f"slopes after {args.warmup_minutes:g} min of warm-up")
    print(f"requests {sim['requests']:,}, bids {sim['bids']:,}, wins {sim['wins']:,}, non-2xx+unanswered "
          f"{sim['server_errors']}, lost notices {sim['lost_notices']}, p99 {sim['p99_ms']} ms")
    print(f"{'metric':<12} {'first':>10} {'last':>10} {'per min':>10} {'per hour':>10}")
    for key, v in result["slopes"].items():
        print(f"{key:<12} {v['first']:>10} {v['last']:>10} {v['per_min']:>10} {v['per_hour']:>10}")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
