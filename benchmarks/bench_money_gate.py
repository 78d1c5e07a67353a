"""Cost of the money gate's bid-path calls (``admit``, ``pacing_multiplier``, ``reserve``).

    .venv/bin/python -m benchmarks.bench_money_gate [--n 100000] [--rounds 5]

Starts its own redis-server (one LEASE call to get a lease), then times, in one process, best of
``--rounds`` (``time.process_time``, so other work on the machine matters less):

* ``baseline``: a no-op method with the same signature as ``admit`` (the floor of a Python call);
* ``admit``, ``pacing_multiplier`` and ``reserve`` on a real :class:`MoneyRuntime` holding a lease.

It prints µs per call and each call's ratio to the baseline measured in the same run: compare
ratios across commits, not µs (the machine is shared); the garbage collector is paused while
timing. Numbers in docs/money.md, "Cost on the bid
path".
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time

import redis.asyncio as aioredis

from dsp.budget.runtime import MoneyRuntime
from dsp.budget.spec import CampaignBudget
from dsp.observability.metrics import Metrics
from dsp.openrtb.nobid import NoBidReason
from dsp.testing.redis_server import RedisServer


class _Noop:
    def admit(self, campaign_id: str, value_micros: int) -> NoBidReason | None:
        return None


def _per_call_us(n: int, fn: object) -> float:
    """CPU µs per call, the garbage collector paused (its pauses swamp a sub-µs call)."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.process_time()
        fn()  # type: ignore[operator]
        return 1e6 * (time.process_time() - t0) / n
    finally:
        gc.enable()


async def main_async(n: int, rounds: int) -> dict[str, float]:
    with RedisServer() as srv:
        r = aioredis.Redis.from_url(srv.url)
        rt = MoneyRuntime(r, Metrics(), [CampaignBudget("bench", 10**15, max_lease_micros=10**14)])
        await rt.tick()
        noop = _Noop()
        best: dict[str, float] = {}
        expires = time.time() + 600
        for k in range(rounds):
            ids = [f"r{k}-{i}" for i in range(n)]

            def base() -> None:
                for _ in range(n):
                    noop.admit("bench", 1_000)

            def admit() -> None:
                for _ in range(n):
                    rt.admit("bench", 1_000)

            def lam() -> None:
                for _ in range(n):
                    rt.pacing_multiplier("bench")

            def reserve(ids: list[str] = ids) -> None:
                for bid_id in ids:
                    rt.reserve("bench", bid_id, 1, expires)

            for name, fn in (("baseline", base), ("admit", admit), ("pacing_multiplier", lam),
                             ("reserve", reserve)):
                us = _per_call_us(n, fn)
                best[name] = min(best.get(name, us), us)
        await rt.stop()
        await r.aclose()
    return best


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_money_gate")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    best = asyncio.run(main_async(args.n, args.rounds))
    base = best["baseline"]
    for name, us in best.items():
        print(f"{name:18s} {us:6.3f} us/call  {us / base:5.2f}x baseline")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
