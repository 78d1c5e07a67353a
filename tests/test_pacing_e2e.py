"""Pacing under a burst, end to end: ``dsp serve --workers 2``, real Redis, real HTTP on loopback.

An exchange where every bid wins and is billed at its full price (a first-price auction with no
competition, or a private deal) sends bid requests far faster than the plan can absorb (>= 100x
the plan rate). Spend — read from Redis while the burst runs — must stay within 2x the plan plus
the plan guard's allowance over the burst and over any window of it, and still deliver >= 25 % of
the plan. The same across a worker killed and restarted mid-burst, and across the campaign's
midnight (the bidder's wall clock shifted by ``DSP_CLOCK_OFFSET_S`` puts midnight inside the
burst).

Assertions are on money only; the plan is computed from the elapsed wall time, so a slow,
shared machine makes the windows longer, never the test flaky.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import msgspec
import redis as sync_redis
import yaml

from dsp.budget.keys import campaign_day, day_key, pacing_key
from dsp.features.writer import write_rows
from dsp.openrtb.response import BidResponse
from dsp.testing.serve import listening_sockets, running_bidder
from dsp.testing.users import desktop_banner_request, interested_user_row

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = "quickloan-prime"
USER = "pacing-e2e-user"
DAILY_USD = 100.0
PLAN_RATE = DAILY_USD * 1_000_000 / 86_400  # micros per second (even plan)
ALLOWANCE = DAILY_USD * 1_000_000 * 0.001  # the default: 0.1 % of the daily budget
BURST_S = 32.0
CONCURRENCY = 4
REQUEST_GAP_S = 0.04  # per connection: about 100 requests/s in all, ~500x the plan at max_cpm


def _configs(tmp: Path, utc_offset_minutes: int) -> Path:
    """The shipped configs with one campaign: $100/day, even plan, no frequency cap (every bid
    may win), a high funnel margin (bids at or near max_cpm), the given time zone."""
    dst = tmp / "configs"
    shutil.copytree(ROOT / "bidder_configs", dst)
    for f in (dst / "campaigns").glob("*.yaml"):
        if f.stem != CAMPAIGN:
            f.unlink()
    path = dst / "campaigns" / f"{CAMPAIGN}.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["budget"] = {"daily": DAILY_USD}
    doc["pacing"] = {"mode": "even"}
    doc["schedule"] = {"utc_offset_minutes": utc_offset_minutes}
    doc.pop("frequency_cap", None)
    doc["funnel"]["margin"] = 20_000.0
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dst


def _offset_for_local(seconds_into_day: float, now: float) -> int:
    """A UTC offset (whole minutes, within ±14 h) that puts the campaign's local time at about
    ``seconds_into_day`` now (within a minute: the offset has minute resolution)."""
    utc = now % 86_400
    minutes = round((seconds_into_day - utc) / 60) % 1440
    return minutes - 1440 if minutes > 720 else minutes


class Exchange:
    """Sends bid requests on ``CONCURRENCY`` connections, paced so the test does not load the
    shared machine more than it needs; every bid wins and is billed at its bid price (win and
    bill notices right after the answer)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.requests = self.bids = self.errors = 0
        self.max_price_micros = 0
        self.stop_at = 0.0

    async def _one_client(self, session: aiohttp.ClientSession, k: int) -> None:
        i = 0
        while time.monotonic() < self.stop_at:
            i += 1
            await asyncio.sleep(REQUEST_GAP_S)
            try:
                async with session.post(f"{self.url}/bid/generic",
                                        json=desktop_banner_request(f"r{k}-{i}", USER)) as resp:
                    body = await resp.read()
                    status = resp.status
                self.requests += 1
                if status != 200:
                    continue
                bid = msgspec.json.decode(body, type=BidResponse).seatbid[0].bid[0]
                self.bids += 1
                self.max_price_micros = max(self.max_price_micros, round(bid.price * 1000))
                price = f"{bid.price:.6f}"  # CPM: the full bid price
                for notice in (bid.nurl, bid.burl):
                    parts = urlsplit((notice or "").replace("${AUCTION_PRICE}", price))
                    async with session.get(f"{self.url}{parts.path}?{parts.query}") as n:
                        await n.read()
            except (TimeoutError, aiohttp.ClientError, OSError):
                self.errors += 1  # a worker being killed: its connections drop
                await asyncio.sleep(0.01)

    async def run(self, seconds: float) -> None:
        self.stop_at = time.monotonic() + seconds
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(self._one_client(session, k) for k in range(CONCURRENCY)))


class SpendLog:
    """Samples the campaign's committed spend (all of its day ledgers) from Redis."""

    def __init__(self, redis_url: str, offset_minutes: int, shift_s: float = 0.0) -> None:
        self.r = sync_redis.Redis.from_url(redis_url)
        self.day0 = campaign_day(time.time() + shift_s, offset_minutes)
        self.samples: list[tuple[float, int]] = []

    def spent(self) -> int:
        return sum(int(self.r.hget(day_key(CAMPAIGN, d), "spent") or 0)
                   for d in (self.day0, self.day0 + 1))

    def sample(self) -> None:
        self.samples.append((time.monotonic(), self.spent()))

    async def run(self, until: float) -> None:
        while time.monotonic() < until:
            self.sample()
            await asyncio.sleep(0.5)

    def check(self, start: float) -> int:
        """The guarantee over the whole burst and every window of >= 10 s in it; returns the
        burst's spend."""
        self.sample()
        points = [(start, 0), *self.samples]
        for i, (ti, si) in enumerate(points):
            for tj, sj in points[i + 1:]:
                if tj - ti >= 10.0:
                    bound = 2 * PLAN_RATE * min(60.0, tj - ti) + ALLOWANCE
                    assert sj - si <= bound, (
                        f"{sj - si} micros spent in {tj - ti:.1f} s; the guarantee is {bound:.0f}")
        return points[-1][1]


async def _burst(url: str, log: SpendLog, seconds: float,
                 during: object = None) -> tuple[Exchange, float, int]:
    ex = Exchange(url)
    start = time.monotonic()
    jobs = [ex.run(seconds), log.run(start + seconds + 1.5)]
    if during is not None:
        jobs.append(during)  # type: ignore[arg-type]
    await asyncio.gather(*jobs)
    elapsed = time.monotonic() - start
    spent = log.check(start)
    return ex, elapsed, spent


def _assert_guarantee(ex: Exchange, elapsed: float, spent: int) -> None:
    offered = ex.requests / elapsed * ex.max_price_micros  # every request would have won
    print(f"burst {elapsed:.1f} s: {ex.requests} requests, {ex.bids} bids (max {ex.max_price_micros}"
          f" micros), offered {offered / PLAN_RATE:.0f}x the plan; spent {spent} micros ="
          f" {spent / (PLAN_RATE * elapsed):.2f}x the plan of the burst, bound"
          f" {(2 * PLAN_RATE * elapsed + ALLOWANCE) / (PLAN_RATE * elapsed):.2f}x")
    assert ex.bids > 0 and offered >= 100 * PLAN_RATE, (ex.requests, ex.max_price_micros)
    assert spent <= 2 * PLAN_RATE * elapsed + ALLOWANCE
    assert spent >= 0.25 * PLAN_RATE * elapsed


def _env(tmp: Path) -> dict[str, str]:
    return {"DSP_TOKEN_KEYS": "t1:" + "ab" * 16, "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prom"),
            "DSP_LOG_LEVEL": "WARNING"}


def _seed(redis_url: str) -> None:
    r = sync_redis.Redis.from_url(redis_url)
    write_rows(r, [USER], interested_user_row())
    r.close()


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
            fds = list(Path(f"/proc/{child}/fd").iterdir())
            if any(os.readlink(fd) in inodes for fd in fds):
                workers.append(int(child))
        except OSError:
            continue
    return workers


def test_a_full_price_burst_spends_the_plan(redis_url: str, tmp_path: Path) -> None:
    _seed(redis_url)
    offset = _offset_for_local(1800.0, time.time())  # 00:30 local: the plan rate is the plan's
    with running_bidder(redis_url, tmp_path / "serve.log", workers=2, env=_env(tmp_path),
                        configs=_configs(tmp_path, offset)) as url:
        log = SpendLog(redis_url, offset)
        ex, elapsed, spent = asyncio.run(_burst(url, log, BURST_S))
        _assert_guarantee(ex, elapsed, spent)
        metrics = aiohttp_get(f"{url.admin}/metrics")
    assert f'dsp_budget_spent_micros{{campaign="{CAMPAIGN}"}}' in metrics
    assert f'dsp_budget_plan_micros{{campaign="{CAMPAIGN}"}}' in metrics


def test_a_worker_killed_mid_burst_neither_resets_nor_breaks_the_guard(
        redis_url: str, tmp_path: Path) -> None:
    _seed(redis_url)
    offset = _offset_for_local(1800.0, time.time())
    r = sync_redis.Redis.from_url(redis_url)
    with running_bidder(redis_url, tmp_path / "serve.log", workers=2, env=_env(tmp_path),
                        configs=_configs(tmp_path, offset)) as url:
        port = int(url.rsplit(":", 1)[1])
        parent = _parent_of(port)
        killed: list[int] = []

        async def kill_one() -> None:
            await asyncio.sleep(BURST_S / 3)
            state_before = r.get(pacing_key(CAMPAIGN))
            victim = _workers(parent, port)[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            assert state_before is not None  # the state a restarted worker continues from

        log = SpendLog(redis_url, offset)
        ex, elapsed, spent = asyncio.run(_burst(url, log, BURST_S, kill_one()))
        _assert_guarantee(ex, elapsed, spent)
        deadline = time.monotonic() + 30
        while len(_workers(parent, port)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = _workers(parent, port)
        assert killed and killed[0] not in workers and len(workers) == 2  # restarted
        assert listening_sockets(port) == 2


def test_midnight_inside_a_burst(redis_url: str, tmp_path: Path) -> None:
    _seed(redis_url)
    # The bidder's wall clock (DSP_CLOCK_OFFSET_S) starts 25 s before the campaign's midnight:
    # start-up takes a few seconds, so midnight falls well inside the 32 s burst.
    now = time.time()
    shift = (now // 86_400 + 1) * 86_400 - 25.0 - now
    env = {**_env(tmp_path), "DSP_CLOCK_OFFSET_S": repr(shift)}
    with running_bidder(redis_url, tmp_path / "serve.log", workers=2, env=env,
                        configs=_configs(tmp_path, 0)) as url:
        log = SpendLog(redis_url, 0, shift_s=shift)
        ex, elapsed, spent = asyncio.run(_burst(url, log, BURST_S))
        _assert_guarantee(ex, elapsed, spent)
        assert time.time() + shift > (log.day0 + 1) * 86_400  # the burst crossed midnight
        before, after = (int(log.r.hget(day_key(CAMPAIGN, d), "spent") or 0)
                         for d in (log.day0, log.day0 + 1))
        assert before > 0 and after > 0  # both days' books were used


def _parent_of(port: int) -> int:
    """The ``dsp serve`` supervisor: the parent of the processes listening on ``port``."""
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


def aiohttp_get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())
