"""Spend under a full-price burst with the plan guard off (the bidder before it) and on.

    .venv/bin/python -m benchmarks.bench_pacing_burst [--seconds 32]

Starts a redis-server and ``dsp serve --workers 2`` for each run, then sends the burst of
:mod:`dsp.testing.burst` (every bid wins and is billed at its full price, ~500x the plan rate of a
$100/day even campaign at 6.00 CPM) and prints spend against the plan. The pass/fail version of
the guard-on run is tests/test_pacing_e2e.py; numbers in docs/money.md ("Pacing guarantee").
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from dsp.testing.burst import (
    SpendLog,
    burst_configs,
    burst_env,
    offset_for_local,
    run_burst,
    seed_user,
)
from dsp.testing.redis_server import RedisServer
from dsp.testing.serve import running_bidder


def one_run(guard: bool, seconds: float) -> str:
    with RedisServer() as srv, tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        seed_user(srv.url)
        offset = offset_for_local(1800.0, time.time())
        with running_bidder(srv.url, tmp / "serve.log", workers=2, env=burst_env(tmp),
                            configs=burst_configs(tmp, offset, guard=guard)) as url:
            res = asyncio.run(run_burst(url, SpendLog(srv.url, offset), seconds))
    return f"guard {'on ' if guard else 'off'}: {res.summary()}"


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_pacing_burst")
    p.add_argument("--seconds", type=float, default=32.0)
    args = p.parse_args()
    for guard in (False, True):
        print(one_run(guard, args.seconds), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
