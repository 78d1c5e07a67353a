"""Micro-benchmarks behind the bid path's smaller design choices (docs/bidpath.md, "Performance").

    .venv/bin/python -m benchmarks.bench_hotspots [--rounds 3]

Each row is CPU time (``time.process_time``) per operation, best of ``--rounds``, the two sides of
a choice measured alternately in the same process:

* ``recorder``: one request's metrics through prometheus-client calls (inflight gauge inc/dec,
  request counter, latency histogram, no-bid counter: what the bid path did before) vs through
  :class:`dsp.server.recorder.BidRecorder`'s tallies (flushes included, one per 1,000 requests);
* ``settlement``: the longest single step of :meth:`dsp.budget.ledger.Ledger.due` for a backlog of
  3,500 due bids, taken in one call vs in slices of :data:`dsp.budget.runtime.SETTLE_SLICE`;
* ``await``: a coroutine that awaits one future, run as an ``asyncio.Task`` vs driven by hand
  (``send`` + done-callback; not used by the product: the saving did not pay for the contract);
* ``loop lookup``: ``asyncio.get_running_loop()`` (a ``getpid()`` system call on Python 3.11) vs
  an attribute read. Timing lives here, never in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop
from prometheus_client import CollectorRegistry

from dsp.budget.ledger import Ledger
from dsp.budget.runtime import SETTLE_SLICE
from dsp.observability.metrics import Metrics
from dsp.openrtb.nobid import NoBidReason
from dsp.server.recorder import BidRecorder

N_REQUESTS = 100_000
BACKLOG = 3_500


def _best(rounds: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(rounds))


def recorder_us(rounds: int) -> tuple[float, float]:
    m = Metrics(CollectorRegistry())
    reason = NoBidReason.DEADLINE
    requests = m.requests.labels("generic", "nobid")
    latency = m.request_latency.labels("generic")
    nobids = m.nobids.labels("generic", reason.value)
    inflight = m.inflight_requests
    rec = BidRecorder(Metrics(CollectorRegistry()))

    def direct() -> float:
        t0 = time.process_time()
        for _ in range(N_REQUESTS):
            inflight.inc()
            inflight.dec()
            nobids.inc()
            requests.inc()
            latency.observe(0.0012)
        return (time.process_time() - t0) / N_REQUESTS * 1e6

    def tallied() -> float:
        t0 = time.process_time()
        for i in range(N_REQUESTS):
            rec.inflight += 1
            rec.inflight -= 1
            rec.nobid("generic", reason)
            rec.request("generic", "nobid", 0.0012)
            if i % 1000 == 999:
                rec.flush()
        return (time.process_time() - t0) / N_REQUESTS * 1e6

    return _best(rounds, direct), _best(rounds, tallied)


def settlement_ms(rounds: int) -> tuple[float, float]:
    def backlog() -> Ledger:
        led = Ledger("c", 1)
        led.lease_synced(settled_micros=0, return_asked_micros=0, returned_micros=0,
                         granted_micros=10**12, lease_micros=10**12)
        for i in range(BACKLOG):
            led.reserve(f"bid-{i:08d}", 1_000, now_s=0, first_check_s=1, final_check_at_s=50)
        return led

    def whole() -> float:
        led = backlog()
        t0 = time.process_time()
        led.due(5.0)
        return (time.process_time() - t0) * 1e3

    def sliced() -> float:
        led = backlog()
        longest = 0.0
        while True:
            t0 = time.process_time()
            first, final = led.due(5.0, limit=SETTLE_SLICE)
            longest = max(longest, time.process_time() - t0)
            if not first and not final:
                return longest * 1e3

    return _best(rounds, whole), _best(rounds, sliced)


async def _awaits_one(fut: asyncio.Future[int]) -> int:
    return await fut


def _drive(coro: Coroutine[Any, Any, int], done: Callable[[int], None], _f: object = None) -> None:
    try:
        waiting = coro.send(None)
    except StopIteration as stop:
        done(stop.value)
        return
    waiting._asyncio_future_blocking = False
    waiting.add_done_callback(functools.partial(_drive, coro, done))


async def await_us(rounds: int) -> tuple[float, float]:
    loop = asyncio.get_running_loop()

    async def run(by_task: bool) -> float:
        finished = loop.create_future()
        count = 0

        def done(_value: object) -> None:
            nonlocal count
            count += 1
            if count == N_REQUESTS:
                finished.set_result(None)

        t0 = time.process_time()
        for i in range(N_REQUESTS):
            fut: asyncio.Future[int] = loop.create_future()
            if by_task:
                loop.create_task(_awaits_one(fut)).add_done_callback(done)
            else:
                _drive(_awaits_one(fut), done)
            loop.call_soon(fut.set_result, i)
            if i % 64 == 63:
                await asyncio.sleep(0)
        await finished
        return (time.process_time() - t0) / N_REQUESTS * 1e6

    task = min([await run(True) for _ in range(rounds)])
    drive = min([await run(False) for _ in range(rounds)])
    return task, drive


async def loop_lookup_us(rounds: int) -> tuple[float, float]:
    class Holder:
        loop = asyncio.get_running_loop()

    holder = Holder()

    def lookup() -> float:
        t0 = time.process_time()
        for _ in range(N_REQUESTS):
            asyncio.get_running_loop()
        return (time.process_time() - t0) / N_REQUESTS * 1e6

    def attribute() -> float:
        t0 = time.process_time()
        for _ in range(N_REQUESTS):
            _ = holder.loop
        return (time.process_time() - t0) / N_REQUESTS * 1e6

    return _best(rounds, lookup), _best(rounds, attribute)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    r = args.rounds
    rows = [("recorder, µs per request", "prometheus calls", "tallies", *recorder_us(r)),
            (f"settlement of {BACKLOG:,} due bids, longest step ms", "one due() call",
             f"slices of {SETTLE_SLICE}", *settlement_ms(r)),
            ("await one future, µs", "asyncio.Task", "driven by hand", *uvloop.run(await_us(r))),
            ("event loop lookup, µs", "get_running_loop()", "attribute", *uvloop.run(loop_lookup_us(r)))]
    print(f"best of {r} rounds; CPU time (time.process_time)")
    print(f"{'choice':<48}{'before':>22}{'':>10}{'after':>18}{'':>10}")
    for what, a_name, b_name, a, b in rows:
        print(f"{what:<48}{a_name:>22}{a:>10.3f}{b_name:>18}{b:>10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
