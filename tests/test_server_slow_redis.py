"""Slow Redis over real HTTP, on both transports: Redis answers nobody for a while (a busy Lua
script); the bidder still answers every request inside tmax, contextual campaigns still bid on
users it cannot look up, nothing is a 5xx, and bidding on known users resumes afterwards.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from dsp.observability.metrics import Metrics
from dsp.server.app import build_app
from dsp.server.settings import TRANSPORTS
from dsp.testing.redis_server import busy_script
from dsp.testing.serve import bidder_settings, serving
from dsp.testing.users import seed_interested

ROOT = Path(__file__).resolve().parent.parent
KNOWN = "known-user-1"
TMAX_MS = 200
STALL_MS = 2500
# QuickLoan (requires a known user) bids on this desktop request for KNOWN.
DESKTOP = {"id": "d", "tmax": TMAX_MS,
           "imp": [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 0.5}],
           "site": {"id": "s", "domain": "news.example", "cat": ["IAB12"]},
           "device": {"devicetype": 2, "os": "Windows", "geo": {"country": "USA"}},
           "user": {"id": KNOWN}}
# CashBridge (contextual: requires_user false, mobile) bids on this one with population scores
# when the user cannot be looked up. (The population's pd, 0.22 with the shipped models, is above
# the demo's pd_max of 0.20; the test's config copy raises it to 0.30.)
MOBILE = {"id": "m", "tmax": TMAX_MS, "imp": [{"id": "1", "banner": {"w": 320, "h": 50}}],
          "site": {"id": "s", "domain": "news.example", "cat": ["IAB12"]},
          "device": {"devicetype": 4, "os": "android", "geo": {"country": "USA"}},
          "user": {"id": "someone-new"},
          # CashBridge bids only on fully disclosed supply paths
          "source": {"schain": {"complete": 1, "ver": "1.0", "nodes": [
              {"asi": "exchange.example", "sid": "pub-1", "hp": 1}]}}}


@pytest.fixture(params=TRANSPORTS)
async def bidder(redis_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    configs = tmp_path / "configs"
    shutil.copytree(ROOT / "bidder_configs", configs)
    cashbridge = configs / "campaigns" / "cashbridge-starter.yaml"
    text = cashbridge.read_text()
    assert "\npd_max: 0.23 " in text
    cashbridge.write_text(text.replace("\npd_max: 0.23 ", "\npd_max: 0.30 "))
    seed_interested(redis_url, KNOWN)
    # health_check_s: no pings during the stall
    settings = bidder_settings(redis_url, configs, transport=request.param, health_check_s=3600.0)
    async with serving(build_app(settings, Metrics(CollectorRegistry())), settings) as url:
        yield url


async def _post(c: aiohttp.ClientSession, body: dict[str, object], rid: str) -> tuple[int, float]:
    t0 = time.monotonic()
    async with c.post("/bid/generic", data=json.dumps({**body, "id": rid})) as resp:
        await resp.read()
        return resp.status, time.monotonic() - t0


async def test_slow_redis_costs_no_deadline_and_contextual_bids_go_on(bidder: str, redis_url: str) -> None:
    async with aiohttp.ClientSession(base_url=bidder) as c:
        assert (await _post(c, DESKTOP, "warm"))[0] == 200  # connections made, Redis healthy
        assert (await _post(c, MOBILE, "warm-m"))[0] == 200
        blocker = aioredis.Redis.from_url(redis_url)
        stall = asyncio.create_task(blocker.eval(busy_script(STALL_MS), 0))  # type: ignore[misc, var-annotated, arg-type]
        await asyncio.sleep(0.1)  # the script is running: Redis answers nobody now
        t_stall = time.monotonic()
        answers = await asyncio.gather(*(_post(c, MOBILE if i % 2 else DESKTOP, f"r{i}")
                                         for i in range(20)))
        answered_s = time.monotonic() - t_stall
        assert not stall.done()  # every answer came while Redis was still stalled
        await stall
        await blocker.aclose()
        after = await _post(c, DESKTOP, "after")
    statuses = [s for s, _ in answers]
    assert all(s in (200, 204) for s in statuses), statuses
    assert all(s == 200 for s in statuses[1::2]), statuses   # contextual bids went on
    assert all(s == 204 for s in statuses[0::2]), statuses   # the known user is unknown now
    assert answered_s < STALL_MS / 1000 - 0.5
    assert after[0] == 200  # known-user bidding resumes once Redis answers
    print(f"answers during the stall: max {max(t for _, t in answers) * 1000:.1f} ms, tmax {TMAX_MS}")
