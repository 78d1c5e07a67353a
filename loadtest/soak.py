"""Soak: a steady open-loop exchange against one bidder for a while; what grows?

    .venv/bin/python -m loadtest.soak --minutes 60 --rate 1000 --warmup-minutes 5

Starts a throwaway Redis, seeds ``--users`` users (100,000: the demo campaigns cap each user at a
few impressions a day, so a small population is capped within minutes and bidding dies away),
runs ``dsp serve`` (``--workers``, default 1) on a copy of the demo config (budgets x1000), drives
it with dsp.testing.exchange_sim: bid requests at
``--rate`` per second (80% known users; tmax 100 ms), every bid followed by its notices (30% won:
win + bill, one bill in ten sent twice; the rest a loss notice). Every ``--sample-s`` seconds it
samples the workers' RSS and open file descriptors (/proc) and Redis ``used_memory`` and key
count; after the warm-up it fits a straight line to each and prints the slope per minute (and
per hour), with the first and last value. Non-2xx answers and lost notices are reported too.
The generator runs in this process; pin it with ``--cpu`` away from the bidder's CPU.

Redis memory is also split: ``redis_events_mb`` is the event-log streams (``dsp:ev:*``, a buffer
for the sink, capped by its trimming), ``redis_other_mb`` the rest (money, caps, features). At the
end the keys are grouped by prefix (count, memory, TTL range): what the new keys are.

``--tracemalloc DIR`` turns on the workers' debug hook (:mod:`dsp.server.memtrace`): a heap
snapshot at the end of the warm-up, then every minute a diff against it (the allocation sites and
object types that grew), printed at the end. It slows the workers 2-3x: use it to find what
grows, not for the slope figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import redis as sync_redis

from dsp.features.writer import write_rows
from dsp.testing.exchange_sim import ExchangeSim, sim_configs
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


METRICS = ("rss_mb", "fds", "redis_mb", "redis_events_mb", "redis_other_mb", "redis_keys")


def stream_mb(r: sync_redis.Redis) -> float:
    """Memory of the event-log streams (``MEMORY USAGE ... SAMPLES 0``: exact)."""
    keys = list(r.scan_iter(match="dsp:ev:*", count=1000))
    return sum(int(r.memory_usage(k, samples=0) or 0) for k in keys) / 2**20


def sample(procs: list[psutil.Process], r: sync_redis.Redis) -> dict[str, float]:
    info = r.info("memory")
    redis_mb = float(info["used_memory"]) / 2**20
    events_mb = stream_mb(r)
    return {"t": time.monotonic(),
            "rss_mb": sum(p.memory_info().rss for p in procs) / 2**20,
            "fds": float(sum(p.num_fds() for p in procs)),
            "redis_mb": redis_mb, "redis_events_mb": events_mb,
            "redis_other_mb": redis_mb - events_mb,
            "redis_keys": float(r.dbsize())}


def nobid_reasons(admin_url: str) -> dict[str, float]:
    """``dsp_nobids_total`` by reason from the bidder's admin port: why requests got no bid (a
    soak whose bidder sheds or hits deadlines says little about per-bid state)."""
    import urllib.request

    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen(f"{admin_url}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        m = re.match(r'dsp_nobids_total\{.*reason="([^"]+)".*\} ([0-9.e+]+)$', line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def key_groups(r: sync_redis.Redis) -> list[dict[str, Any]]:
    """Every key grouped by prefix (hash tags and trailing numbers folded): count, memory (MB),
    TTL range (s; -1 = none). What the soak's new keys are."""
    groups: dict[str, dict[str, Any]] = {}
    for raw in r.scan_iter(count=1000):
        key = raw.decode(errors="replace")
        prefix = re.sub(r":\d+$", ":<n>", re.sub(r"\{[^}]*\}", "{…}", key))
        g = groups.setdefault(prefix, {"prefix": prefix, "keys": 0, "mb": 0.0, "ttl_min": None,
                                       "ttl_max": None})
        ttl = int(r.ttl(raw))
        g["keys"] += 1
        g["mb"] += int(r.memory_usage(raw) or 0) / 2**20
        g["ttl_min"] = ttl if g["ttl_min"] is None else min(g["ttl_min"], ttl)
        g["ttl_max"] = ttl if g["ttl_max"] is None else max(g["ttl_max"], ttl)
    for g in groups.values():
        g["mb"] = round(g["mb"], 3)
    return sorted(groups.values(), key=lambda g: -g["mb"])


def slopes(samples: list[dict[str, float]], warmup_s: float) -> dict[str, dict[str, float]]:
    t0 = samples[0]["t"]
    kept = [s for s in samples if s["t"] - t0 >= warmup_s]
    out: dict[str, dict[str, float]] = {}
    if len(kept) < 3:
        return out
    minutes = np.array([(s["t"] - t0) / 60 for s in kept])
    for key in METRICS:
        y = np.array([s[key] for s in kept])
        slope = float(np.polyfit(minutes, y, 1)[0])
        out[key] = {"first": round(float(y[0]), 2), "last": round(float(y[-1]), 2),
                    "per_min": round(slope, 4), "per_hour": round(slope * 60, 2)}
    return out


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    with RedisServer() as redis_srv, tempfile.TemporaryDirectory(prefix="dsp-soak-") as tmp:
        r = sync_redis.Redis.from_url(redis_srv.url)
        users = [f"soak-user-{i}" for i in range(args.users)]
        write_rows(r, users, np.repeat(interested_user_row(), len(users), axis=0))
        configs = sim_configs(REPO / "bidder_configs", Path(tmp) / "configs")
        env: dict[str, str] = {}
        if args.tracemalloc is not None:
            env = {"DSP_DEBUG_TRACEMALLOC": str(args.tracemalloc),
                   "DSP_DEBUG_TRACEMALLOC_BASE_S": str(args.warmup_minutes * 60),
                   "DSP_DEBUG_TRACEMALLOC_S": "60"}
        with running_bidder(redis_srv.url, Path(tmp) / "serve.log", configs=configs,
                            workers=args.workers, env=env) as url:
            procs = workers_of(int(url.rsplit(":", 1)[1]))
            if args.bidder_cpu is not None:
                for p in procs:
                    p.cpu_affinity([args.bidder_cpu])
            sim = ExchangeSim(url, users, rate=args.rate, tmax_ms=100, timeout_s=2.0)
            sim.start()
            samples = []
            end = time.monotonic() + args.minutes * 60
            while time.monotonic() < end:
                samples.append(sample(procs, r))
                await asyncio.sleep(min(args.sample_s, max(0.0, end - time.monotonic())))
            samples.append(sample(procs, r))
            report = await sim.stop()
            groups = key_groups(r)
            nobids = nobid_reasons(url.admin)
        r.close()
    return {"rate": args.rate, "minutes": args.minutes, "warmup_minutes": args.warmup_minutes,
            "workers": args.workers, "sim": report.summary(),
            "slopes": slopes(samples, args.warmup_minutes * 60), "key_groups": groups,
            "nobid_reasons": nobids, "samples": samples}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="loadtest.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--warmup-minutes", type=float, default=5.0)
    p.add_argument("--rate", type=float, default=1000.0, help="bid requests per second")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--users", type=int, default=100_000,
                   help="known users seeded (enough that frequency caps do not end bidding)")
    p.add_argument("--sample-s", type=float, default=10.0)
    p.add_argument("--cpu", type=int, default=None, help="pin this generator to one CPU")
    p.add_argument("--bidder-cpu", type=int, default=None, help="pin the bidder's workers to one CPU")
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument("--tracemalloc", type=Path, default=None, metavar="DIR",
                   help="workers write heap-growth reports here (slow: diagnosis only)")
    args = p.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    result = asyncio.run(soak(args))
    sim = result["sim"]
    print(f"soak: {args.minutes:g} min at {args.rate:g} req/s, {args.workers} worker(s); "
          f"slopes after {args.warmup_minutes:g} min of warm-up")
    print(f"requests {sim['requests']:,}, bids {sim['bids']:,}, wins {sim['wins']:,}, non-2xx+unanswered "
          f"{sim['server_errors']}, lost notices {sim['lost_notices']}, p99 {sim['p99_ms']} ms")
    print(f"{'metric':<16} {'first':>10} {'last':>10} {'per min':>10} {'per hour':>10}")
    for key, v in result["slopes"].items():
        print(f"{key:<16} {v['first']:>10} {v['last']:>10} {v['per_min']:>10} {v['per_hour']:>10}")
    print("no-bids by reason: " + ", ".join(f"{k} {v:,.0f}" for k, v in result["nobid_reasons"].items()))
    print("Redis keys at the end, by prefix:")
    for g in result["key_groups"]:
        print(f"  {g['prefix']:<28} {g['keys']:>8} keys {g['mb']:>9.3f} MB  "
              f"TTL {g['ttl_min']}..{g['ttl_max']} s")
    if args.tracemalloc is not None:
        for path in sorted(args.tracemalloc.glob("memtrace-*.json")):
            rep = json.loads(path.read_text())
            print(f"tracemalloc {path.name}: traced {rep['traced_base_mb']} -> "
                  f"{rep['traced_now_mb']} MB over {rep['minutes_since_base']} min, "
                  f"{rep['asyncio_tasks']} asyncio tasks")
            for site in rep["sites"][:12]:
                print(f"  {site['size_diff_kb']:>+10.1f} KB {site['count_diff']:>+8} blocks  "
                      f"{' <- '.join(reversed(site['traceback'][-4:]))}")
            for t in rep["types"][:8]:
                print(f"  {t['grown']:>+8} {t['type']} (now {t['now']})")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
