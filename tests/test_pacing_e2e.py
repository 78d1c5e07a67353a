"""Pacing under a burst, end to end: ``dsp serve --workers 2``, real Redis, real HTTP on loopback.

An exchange where every bid wins and is billed at its full price (a first-price auction with no
competition, or a private deal; :mod:`dsp.testing.burst`) sends bid requests far faster than the
plan can absorb (>= 100x the plan rate). Spend — read from Redis while the burst runs — must stay
within 2x the plan plus the plan guard's allowance over the burst and over every window of it,
and still deliver >= 25 % of the plan. The same across a worker killed and restarted mid-burst,
and across the campaign's midnight (the bidder's wall clock shifted by ``DSP_CLOCK_OFFSET_S``
puts midnight inside the burst).

Assertions are on money only; the plan is computed from the elapsed wall time, so a slow,
shared machine makes the windows longer, never the test flaky. ``-s`` prints the numbers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request
from pathlib import Path

import redis as sync_redis

from dsp.budget.keys import pacing_key
from dsp.testing.burst import (
    ALLOWANCE_MICROS,
    CAMPAIGN,
    PLAN_RATE_MICROS_S,
    BurstResult,
    SpendLog,
    burst_configs,
    burst_env,
    offset_for_local,
    run_burst,
    seed_user,
)
from dsp.testing.serve import listening_sockets, running_bidder

BURST_S = 32.0


def _assert_guarantee(res: BurstResult) -> None:
    print(res.summary())
    assert res.bids > 0 and res.offered_x_plan >= 100, res
    assert res.worst_window <= 1.0, res  # every window >= 10 s: <= 2 x plan + allowance
    assert res.spent_micros <= 2 * PLAN_RATE_MICROS_S * res.elapsed_s + ALLOWANCE_MICROS
    assert res.spent_micros >= 0.25 * PLAN_RATE_MICROS_S * res.elapsed_s


def _workers(parent_pid: int, port: int) -> list[int]:
    """The supervisor's children that hold a listening socket on ``port`` (its bid workers; a
    ``multiprocessing`` helper process is a child too)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            inodes.add(f"socket:[{fields[9]}]")
    workers = []
    for child in Path(f"/proc/{parent_pid}/task/{parent_pid}/children").read_text().split():
        try:
            if any(os.readlink(fd) in inodes for fd in Path(f"/proc/{child}/fd").iterdir()):
                workers.append(int(child))
        except OSError:
            continue
    return workers


def _parent_of(port: int) -> int:
    """The ``dsp serve`` supervisor: the process whose command line has ``serve`` and the port."""
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            cmd = (pid_dir / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in cmd and str(port).encode() in cmd:
            return int(pid_dir.name)
    raise AssertionError("dsp serve not found")


def test_a_full_price_burst_spends_the_plan(redis_url: str, tmp_path: Path) -> None:
    seed_user(redis_url)
    offset = offset_for_local(1800.0, time.time())  # 00:30 local: the guard's rate is the plan's
    with running_bidder(redis_url, tmp_path / "serve.log", workers=2, env=burst_env(tmp_path),
                        configs=burst_configs(tmp_path, offset)) as url:
        res = asyncio.run(run_burst(url, SpendLog(redis_url, offset), BURST_S))
        _assert_guarantee(res)
        with urllib.request.urlopen(f"{url.admin}/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
    for name in ("dsp_budget_spent_micros", "dsp_budget_plan_micros", "dsp_budget_guard_micros"):
        assert f'{name}{{campaign="{CAMPAIGN}"}}' in metrics


def test_a_worker_killed_mid_burst_neither_resets_nor_breaks_the_guard(
        redis_url: str, tmp_path: Path) -> None:
    seed_user(redis_url)
    offset = offset_for_local(1800.0, time.time())
    r = sync_redis.Redis.from_url(redis_url)
    with running_bidder(redis_url, tmp_path / "serve.log", workers=2, env=burst_env(tmp_path),
                        configs=burst_configs(tmp_path, offset)) as url:
        port = int(url.rsplit(":", 1)[1])
        parent = _parent_of(port)
        killed: list[int] = []
        states: list[bytes | str | None] = []

        async def kill_one() -> None:
            await asyncio.sleep(BURST_S / 3)
            states.append(r.get(pacing_key(CAMPAIGN)))  # what the restarted worker continues from
            victim = _workers(parent, port)[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

        res = asyncio.run(run_burst(url, SpendLog(redis_url, offset), BURST_S, kill_one()))
        _assert_guarantee(res)
        assert states and states[0] is not None
        deadline = time.monotonic() + 30
        while len(_workers(parent, port)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = _workers(parent, port)
        assert killed and killed[0] not in workers and len(workers) == 2  # restarted
        assert listening_sockets(port) == 2


def test_midnight_inside_a_burst(redis_url: str, tmp_path: Path) -> None:
    seed_user(redis_url)
    # The bidder's wall clock (DSP_CLOCK_OFFSET_S) starts 25 s before the campaign's midnight:
    # start-up takes a few seconds, so midnight falls well inside the 32 s burst.
    now = time.time()
    shift = (now // 86_400 + 1) * 86_400 - 25.0 - now
    env = {**burst_env(tmp_path), "DSP_CLOCK_OFFSET_S": repr(shift)}
    with running_bidder(redis_url, tmp_path / "serve.log", workers=2, env=env,
                        configs=burst_configs(tmp_path, 0)) as url:
        log = SpendLog(redis_url, 0, shift_s=shift)
        res = asyncio.run(run_burst(url, log, BURST_S))
        _assert_guarantee(res)
        assert time.time() + shift > (log.day0 + 1) * 86_400  # the burst crossed midnight
        assert log.spent_on(log.day0) > 0 and log.spent_on(log.day0 + 1) > 0  # both days' books
