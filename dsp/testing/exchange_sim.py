"""A steady exchange for chaos, cluster and soak runs: bids at a fixed rate over real HTTP, and the
notices an exchange would send for them, with an exact record of what should have been billed.

    sim = ExchangeSim(url, users=["u1", ...], rate=200)
    report = await sim.run(duration_s=10)           # or: start(); ...; await stop()
    report.server_errors                            # 5xx answers + failed connections
    report.expected_spend_micros                    # {campaign: micros billed and accepted}

Per bid request (desktop banners for known users, mobile ones for unknown users; ``tmax`` given):

* a bid (200 with a seatbid) is "won" with probability ``win_share``: the win notice (``nurl``)
  and the billing notice (``burl``) are sent with ``${AUCTION_PRICE}`` = the bid price (so no
  price anomaly and no cap applies), and one bill in ``duplicate_share`` is sent twice; otherwise
  the loss notice (``lurl``, ``${AUCTION_LOSS}`` = 102) is sent;
* a notice answered 503 (Redis unavailable: "retry") or not answered at all is retried, as
  exchanges do, until it is answered or ``notice_retry_s`` has passed;
* whichever of win and bill commits spend for the exchange, it commits ``round(price * 1000)``
  micros exactly once per won bid: the expected spend is that sum over bids whose both notices
  were answered 200 (a notice given up on is reported in ``lost_notices``).

Latency is measured per bid request from its scheduled send time (open loop: a stall shows).
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from dsp.money import cpm_to_micros_per_imp

#: Users the scripts seed (all "interested": dsp.testing.users.interested_user_row) and the demo
#: config's campaigns.
USERS = [f"sim-user-{i}" for i in range(200)]
CAMPAIGNS = ["quickloan-prime", "cashbridge-starter"]


@dataclass
class SimReport:
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    notice_statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    latencies_ms: list[tuple[float, float]] = field(default_factory=list)  # (send time, ms)
    bids: int = 0
    wins: int = 0
    connection_errors: int = 0
    lost_notices: int = 0
    expected_spend_micros: collections.Counter[str] = field(default_factory=collections.Counter)
    bid_times: list[float] = field(default_factory=list)  # monotonic time of each bid received

    @property
    def server_errors(self) -> int:
        """5xx answers to bid requests, plus bid requests that got no answer at all."""
        return sum(n for s, n in self.statuses.items() if s >= 500) + self.connection_errors

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + self.connection_errors

    def bids_between(self, t0: float, t1: float) -> int:
        return sum(1 for t in self.bid_times if t0 <= t < t1)

    def summary(self) -> dict[str, Any]:
        lat = sorted(ms for _, ms in self.latencies_ms)

        def pct(q: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(q * len(lat)))], 2) if lat else None

        return {"requests": self.requests, "statuses": dict(self.statuses), "bids": self.bids,
                "wins": self.wins, "server_errors": self.server_errors,
                "notice_statuses": dict(self.notice_statuses), "lost_notices": self.lost_notices,
                "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": lat[-1] if lat else None}


class _Bid(msgspec.Struct):
    id: str
    price: float
    cid: str | None = None
    nurl: str | None = None
    burl: str | None = None
    lurl: str | None = None


class _SeatBid(msgspec.Struct):
    bid: list[_Bid]


class _Response(msgspec.Struct):
    seatbid: list[_SeatBid] = []


_decoder = msgspec.json.Decoder(_Response)


def _request(rid: str, user: str, known: bool, tmax_ms: int) -> dict[str, Any]:
    if known:
        return {"id": rid, "tmax": tmax_ms,
                "imp": [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 0.5}],
                "site": {"id": "s", "domain": "news.example", "cat": ["IAB12"]},
                "device": {"devicetype": 2, "os": "Windows", "geo": {"country": "USA"}},
                "user": {"id": user}}
    return {"id": rid, "tmax": tmax_ms, "imp": [{"id": "1", "banner": {"w": 320, "h": 50}}],
            "site": {"id": "s", "domain": "news.example", "cat": ["IAB12"]},
            "device": {"devicetype": 4, "os": "android", "geo": {"country": "USA"}},
            "user": {"id": user}}


class ExchangeSim:
    """See the module docstring. One instance per run; runs inside the caller's event loop."""

    def __init__(self, url: str, users: list[str], *, rate: float = 200.0, tmax_ms: int = 100,
                 exchange: str = "generic", known_share: float = 0.8, win_share: float = 0.3,
                 duplicate_share: float = 0.1, notice_retry_s: float = 30.0,
                 timeout_s: float = 2.0, seed: int = 1) -> None:
        self.url = url.rstrip("/")
        self.users = users
        self.rate = rate
        self.tmax_ms = tmax_ms
        self.exchange = exchange
        self.known_share = known_share
        self.win_share = win_share
        self.duplicate_share = duplicate_share
        self.notice_retry_s = notice_retry_s
        self.timeout_s = timeout_s
        self.report = SimReport()
        self._rng = random.Random(seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def run(self, duration_s: float) -> SimReport:
        self.start()
        await asyncio.sleep(duration_s)
        return await self.stop()

    def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, force_close=False),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        self._runner = asyncio.create_task(self._send_loop())

    async def stop(self) -> SimReport:
        """Stop sending bid requests; wait for outstanding requests and notice retries."""
        self._stop.set()
        if self._runner is not None:
            await self._runner
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        return self.report

    async def _send_loop(self) -> None:
        interval = 1.0 / self.rate
        t0 = time.monotonic()
        i = 0
        while not self._stop.is_set():
            due = t0 + i * interval
            delay = due - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                    return
                except TimeoutError:
                    pass
            known = self._rng.random() < self.known_share
            user = self._rng.choice(self.users) if known else f"new-{self._rng.getrandbits(48):x}"
            self._spawn(self._bid(f"sim-{i}", user, known, due))
            i += 1

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _bid(self, rid: str, user: str, known: bool, due: float) -> None:
        assert self._session is not None
        rep = self.report
        body = msgspec.json.encode(_request(rid, user, known, self.tmax_ms))
        try:
            async with self._session.post(f"{self.url}/bid/{self.exchange}", data=body,
                                          headers={"Content-Type": "application/json"}) as resp:
                data = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            rep.connection_errors += 1
            return
        now = time.monotonic()
        rep.statuses[status] += 1
        rep.latencies_ms.append((due, (now - due) * 1000.0))
        if status != 200:
            return
        bids = [b for sb in _decoder.decode(data).seatbid for b in sb.bid]
        for bid in bids:
            rep.bids += 1
            rep.bid_times.append(now)
            if self._rng.random() < self.win_share:
                rep.wins += 1
                self._spawn(self._won(bid))
            elif bid.lurl:
                self._spawn(self._notice(bid.lurl.replace("${AUCTION_LOSS}", "102")
                                         .replace("${AUCTION_PRICE}", "")))

    async def _won(self, bid: _Bid) -> None:
        price = f"{bid.price:.6f}"
        urls = [u.replace("${AUCTION_PRICE}", price) for u in (bid.nurl, bid.burl) if u]
        if urls and self._rng.random() < self.duplicate_share:
            urls.append(urls[-1])
        results = [await self._notice(u) for u in urls]
        if urls and all(results):
            self.report.expected_spend_micros[bid.cid or ""] += cpm_to_micros_per_imp(float(price))

    async def _notice(self, url: str) -> bool:
        """Send one notice until it is answered (not 503, not unanswered); True when 200."""
        assert self._session is not None
        end = time.monotonic() + self.notice_retry_s
        while True:
            try:
                async with self._session.get(url, allow_redirects=False) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError, OSError):
                status = 0
            if status not in (0, 502, 503, 504):
                self.report.notice_statuses[status] += 1
                return status == 200
            if time.monotonic() > end:
                self.report.lost_notices += 1
                return False
            await asyncio.sleep(0.2)


def ledger_check(redis: Any, campaigns: list[str], day: int) -> dict[str, dict[str, int]]:
    """The Redis books of each campaign's day (a sync client, single node or cluster): ``spent``,
    ``out`` and the sum of live leases. The invariant: ``out == leases`` (and spent as billed)."""
    from dsp.budget.keys import day_key

    out: dict[str, dict[str, int]] = {}
    for campaign in campaigns:
        raw = {k.decode(): v for k, v in redis.hgetall(day_key(campaign, day)).items()}
        leases = sum(int(v) for k, v in raw.items() if k.startswith("lease:"))
        out[campaign] = {"spent": int(raw.get("spent", 0)), "out": int(raw.get("out", 0)),
                         "leases": leases}
    return out


def sim_configs(src: Path, dst: Path) -> Path:
    """A copy of the config ``src`` for these runs: budgets x1000 (so the money gate does not end
    bidding mid-run) and CashBridge's pd_max at 0.30 (the shipped models' population pd is 0.22,
    above the demo's 0.20: with 0.30 contextual bids on unknown users happen)."""
    import shutil

    import yaml

    shutil.copytree(src, dst)
    for path in (dst / "campaigns").glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        budget = doc.get("budget", {})
        for key in ("daily", "total"):
            if isinstance(budget.get(key), int | float):
                budget[key] = float(budget[key]) * 1000
        if doc.get("id") == "cashbridge-starter":
            doc["pd_max"] = 0.30
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dst
