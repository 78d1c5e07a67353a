"""A traffic burst where every bid wins at its full price, against ``dsp serve`` (never on the
bid path). Used by tests/test_pacing_e2e.py and benchmarks/bench_pacing_burst.py.

    configs = burst_configs(tmp, utc_offset_minutes=offset_for_local(1800.0, time.time()))
    seed_user(redis_url)
    with running_bidder(redis_url, log, workers=2, env=burst_env(tmp), configs=configs) as url:
        result = asyncio.run(run_burst(url, SpendLog(redis_url, offset), seconds=32.0))

The exchange behaves like a first-price auction with no competition (or a private deal): every
bid wins and is billed at its bid price, win and bill notices right after the answer. Spend is
sampled from Redis (the campaign's day ledgers) while the burst runs.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgspec
import redis as sync_redis
import yaml

from dsp.budget.keys import campaign_day, day_key
from dsp.features.writer import write_rows
from dsp.openrtb.response import BidResponse
from dsp.testing.users import desktop_banner_request, interested_user_row

REPO = Path(__file__).resolve().parent.parent.parent
CAMPAIGN = "quickloan-prime"
USER = "pacing-burst-user"
DAILY_USD = 100.0
PLAN_RATE_MICROS_S = DAILY_USD * 1_000_000 / 86_400  # the even plan
ALLOWANCE_MICROS = DAILY_USD * 1_000_000 * 0.001  # the default: 0.1 % of the daily budget
CONCURRENCY = 4
REQUEST_GAP_S = 0.04  # per connection: about 100 requests/s in all, ~500x the plan at max_cpm


def burst_configs(tmp: Path, utc_offset_minutes: int, *, guard: bool = True) -> Path:
    """The shipped configs with one campaign: $100/day, even plan, no frequency cap (every bid
    may win), a high funnel margin (bids at max_cpm), the given time zone; ``guard=False`` turns
    the plan guard off (what the bidder did before it)."""
    dst = tmp / "configs"
    shutil.copytree(REPO / "bidder_configs", dst)
    for f in (dst / "campaigns").glob("*.yaml"):
        if f.stem != CAMPAIGN:
            f.unlink()
    path = dst / "campaigns" / f"{CAMPAIGN}.yaml"
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    doc["budget"] = {"daily": DAILY_USD}
    doc["pacing"] = {"mode": "even", "guard": guard}
    doc["schedule"] = {"utc_offset_minutes": utc_offset_minutes}
    doc.pop("frequency_cap", None)
    doc["funnel"]["margin"] = 20_000.0
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dst


def burst_env(tmp: Path) -> dict[str, str]:
    return {"DSP_TOKEN_KEYS": "t1:" + "ab" * 16, "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prom"),
            "DSP_LOG_LEVEL": "WARNING"}


def seed_user(redis_url: str) -> None:
    """The one user every request carries (scored as interested: the campaign bids)."""
    r = sync_redis.Redis.from_url(redis_url)
    write_rows(r, [USER], interested_user_row())
    r.close()


def offset_for_local(seconds_into_day: float, now: float) -> int:
    """A UTC offset (whole minutes, within ±12 h) that puts the campaign's local time at about
    ``seconds_into_day`` now (within half a minute: the offset has minute resolution)."""
    minutes = round((seconds_into_day - now % 86_400) / 60) % 1440
    return minutes - 1440 if minutes > 720 else minutes


class Exchange:
    """Sends bid requests on ``CONCURRENCY`` connections, paced so a test does not load a shared
    machine more than it needs; every bid wins and is billed at its bid price."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.requests = self.bids = self.errors = 0
        self.max_price_micros = 0
        self.stop_at = 0.0

    async def _client(self, session: aiohttp.ClientSession, k: int) -> None:
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
                seatbid = msgspec.json.decode(body, type=BidResponse).seatbid or []
                bid = seatbid[0].bid[0]
                self.bids += 1
                self.max_price_micros = max(self.max_price_micros, round(bid.price * 1000))
                price = f"{bid.price:.6f}"  # CPM: the full bid price
                for notice in (bid.nurl, bid.burl):
                    parts = urlsplit((notice or "").replace("${AUCTION_PRICE}", price))
                    async with session.get(f"{self.url}{parts.path}?{parts.query}") as n:
                        await n.read()
            except (TimeoutError, aiohttp.ClientError, OSError):
                self.errors += 1  # e.g. a worker being killed: its connections drop
                await asyncio.sleep(0.01)

    async def run(self, seconds: float) -> None:
        self.stop_at = time.monotonic() + seconds
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            await asyncio.gather(*(self._client(session, k) for k in range(CONCURRENCY)))


class SpendLog:
    """Samples the campaign's committed spend (its day ledger and the next day's) from Redis."""

    def __init__(self, redis_url: str, offset_minutes: int, shift_s: float = 0.0) -> None:
        self.r = sync_redis.Redis.from_url(redis_url)
        self.day0 = campaign_day(time.time() + shift_s, offset_minutes)
        self.samples: list[tuple[float, int]] = []

    def spent_on(self, day: int) -> int:
        return int(self.r.hget(day_key(CAMPAIGN, day), "spent") or 0)

    def sample(self) -> None:
        self.samples.append((time.monotonic(), self.spent_on(self.day0)
                             + self.spent_on(self.day0 + 1)))

    async def run(self, until: float) -> None:
        while time.monotonic() < until:
            self.sample()
            await asyncio.sleep(0.5)

    def worst_window(self, start: float, min_window_s: float = 10.0) -> tuple[float, float]:
        """(largest spend over any window >= ``min_window_s`` divided by its bound
        ``2 · plan(min(W, 60 s)) + allowance``, that window's length in s)."""
        points = [(start, 0), *self.samples]
        worst, length = 0.0, 0.0
        for i, (ti, si) in enumerate(points):
            for tj, sj in points[i + 1:]:
                if tj - ti >= min_window_s:
                    bound = 2 * PLAN_RATE_MICROS_S * min(60.0, tj - ti) + ALLOWANCE_MICROS
                    if (sj - si) / bound > worst:
                        worst, length = (sj - si) / bound, tj - ti
        return worst, length


class BurstResult(msgspec.Struct):
    elapsed_s: float
    requests: int
    bids: int
    max_price_micros: int
    spent_micros: int
    worst_window: float  # spend over the worst window / its bound (<= 1 keeps the guarantee)

    @property
    def plan_micros(self) -> float:
        return PLAN_RATE_MICROS_S * self.elapsed_s

    @property
    def offered_x_plan(self) -> float:
        """What the burst would have spent if every request were bid on (same user and request,
        same price), as a multiple of the plan rate."""
        return self.requests / self.elapsed_s * self.max_price_micros / PLAN_RATE_MICROS_S

    def summary(self) -> str:
        bound = 2 * self.plan_micros + ALLOWANCE_MICROS
        return (f"burst {self.elapsed_s:.1f} s: {self.requests} requests, {self.bids} bids (max "
                f"{self.max_price_micros} micros), offered {self.offered_x_plan:.0f}x the plan; "
                f"spent {self.spent_micros} micros = {self.spent_micros / self.plan_micros:.2f}x "
                f"the plan of the burst (bound {bound / self.plan_micros:.2f}x); worst window "
                f"{self.worst_window:.2f} of its bound")


async def run_burst(url: str, log: SpendLog, seconds: float,
                    during: Awaitable[None] | None = None) -> BurstResult:
    """Run the burst for ``seconds`` (and ``during`` beside it), sampling spend until 1.5 s after
    the last request (notices in flight land)."""
    ex = Exchange(url)
    start = time.monotonic()
    jobs: list[Awaitable[None]] = [ex.run(seconds), log.run(start + seconds + 1.5)]
    if during is not None:
        jobs.append(during)
    await asyncio.gather(*jobs)
    elapsed = time.monotonic() - start
    log.sample()
    worst, _ = log.worst_window(start)
    return BurstResult(elapsed_s=elapsed, requests=ex.requests, bids=ex.bids,
                       max_price_micros=ex.max_price_micros, spent_micros=log.samples[-1][1],
                       worst_window=worst)
