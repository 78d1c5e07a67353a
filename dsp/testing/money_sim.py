"""Bidder and notice-handler processes for multi-process money tests and demos.

    python -m dsp.testing.money_sim bidder  --redis URL --campaign c --daily-micros N --seconds S
    python -m dsp.testing.money_sim notices --redis URL --campaign c --seconds S
    python -m dsp.testing.money_sim hold    --redis URL --campaign c --daily-micros N

``bidder`` runs a real :class:`~dsp.budget.runtime.MoneyRuntime` and bids as fast as it can: admit,
reserve, then decides the auction's fate at random (win and bill at a clearing price below the
bid, lose with a loss notice, or silence) and pushes the signed notices — with duplicates, bills
before wins and losses after wins — onto a Redis list. It records every bid it meant to be billed
in ``sim:billed:{c}`` (bid id -> clearing micros) so a test can check that Redis committed exactly
that. ``notices`` processes pop that list and run the real :class:`NoticeService`. ``hold`` leases,
reserves, prints ``READY`` and waits (to be killed with SIGKILL). ``capwins`` sends ``--n`` win
notices for one user (frequency caps across processes). ``bench`` times the bid-path calls.
Not used by the bidder itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from collections.abc import Sequence

import msgspec
import redis.asyncio as aioredis

from dsp.budget.freqcap import CapRecorder
from dsp.budget.outcomes import OutcomeStore
from dsp.budget.runtime import MoneyRuntime, MoneySettings
from dsp.budget.spec import CampaignBudget, FrequencyCap
from dsp.money import micros_per_imp_to_cpm
from dsp.notices.service import NoticeService
from dsp.notices.tokens import NoticeToken, TokenSigner
from dsp.observability.metrics import Metrics

QUEUE = "sim:notices:{%s}"
BILLED = "sim:billed:{%s}"
STRAY = "sim:stray:{%s}"  # billed after a loss notice: may be released before the bill arrives
SIM_USER = "u:{00000000000000aa}"


SIM_KEY_ENV = "DSP_SIM_TOKEN_KEY"


def signer() -> TokenSigner:
    """The simulation's notice key: bidders and notice handlers are separate processes, so the
    test that spawns them draws one fresh key and passes it in ``DSP_SIM_TOKEN_KEY`` (hex)."""
    key_hex = os.environ.get(SIM_KEY_ENV, "")
    if not key_hex:
        raise SystemExit(f"money_sim: set {SIM_KEY_ENV} to a hex key shared by every process")
    return TokenSigner({"s1": bytes.fromhex(key_hex)}, active="s1")


def settings(lease_ttl_s: float) -> MoneySettings:
    return MoneySettings(tick_s=0.1, lease_ttl_s=lease_ttl_s, brake_grace_s=min(1.0, lease_ttl_s / 3),
                         first_check_s=0.3, settle_grace_s=1.0, lease_horizon_s=1.0)


def budget(args: argparse.Namespace) -> CampaignBudget:
    """The simulated campaign: spends as fast as the leases allow (no plan guard), so the
    multi-process tests exercise the leases' overspend bound at full speed."""
    return CampaignBudget(campaign_id=args.campaign, daily_budget_micros=args.daily_micros,
                          max_lease_micros=args.max_lease_micros, plan_guard=False,
                          frequency_cap=FrequencyCap(max_impressions=1000, window_s=3600))


def token(s: TokenSigner, campaign: str, bid_id: str, price: int, ttl_s: float,
          issued_at_s: float | None = None) -> dict[str, str]:
    """The bid's win, bill and loss tokens (one per notice kind), by kind letter."""
    now = int(time.time() if issued_at_s is None else issued_at_s)
    w, b, lo = s.sign_kinds(NoticeToken(kid="s1", bid_id=bid_id, request_id=bid_id, imp_id="1",
                                        campaign_id=campaign, exchange="sim",
                                        bid_price_micros=price, currency="USD", user_key=SIM_USER,
                                        issued_at_s=now, expires_at_s=int(now + ttl_s) + 1),
                            ("win", "bill", "loss"))
    return {"w": w, "b": b, "l": lo}


async def run_bidder(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    r = aioredis.Redis.from_url(args.redis)
    rt = MoneyRuntime(r, Metrics(), [budget(args)], settings=settings(args.lease_ttl_s))
    s = signer()
    await rt.start()
    queue, billed = QUEUE % args.campaign, BILLED % args.campaign
    end = time.monotonic() + args.seconds
    n_bids = 0
    while time.monotonic() < end:
        for _ in range(20):
            bid_id = uuid.uuid4().hex
            price = rng.randint(1_000, 5_000)
            if rt.admit(args.campaign, price) is not None:
                continue
            issued = time.time()  # the token's time: the bid's day and outcome bucket
            if not rt.reserve(args.campaign, bid_id, price, issued + args.bid_ttl_s,
                              issued_at_s=issued):
                continue
            n_bids += 1
            t = token(s, args.campaign, bid_id, price, args.bid_ttl_s, issued)
            fate = rng.random()
            msgs: list[bytes] = []
            if fate < 0.6:
                clearing = rng.randint(price // 2, price)
                cpm = repr(micros_per_imp_to_cpm(clearing))
                await r.hset(billed, bid_id, clearing)
                win, bill = ["w", t["w"], cpm], ["b", t["b"], cpm]
                order = [win, bill, bill] if rng.random() < 0.7 else [bill, win, win, bill]
                if rng.random() < 0.2:
                    order.append(["l", t["l"], ""])  # loss after win: must change nothing
                elif rng.random() < 0.1:
                    order.insert(0, ["l", t["l"], "1"])  # a stray loss first: the bill still counts
                    await r.hset(STRAY % args.campaign, bid_id, clearing)
                msgs = [msgspec.msgpack.encode(m) for m in order]
            elif fate < 0.8:
                msgs = [msgspec.msgpack.encode(m) for m in (["l", t["l"], "102"], ["l", t["l"], "102"])]
            if msgs:
                await r.rpush(queue, *msgs)
        await asyncio.sleep(0.01)
    await rt.stop()
    drift = rt.ledger_drift_micros()
    print(f"bids={n_bids} drift={drift}", flush=True)
    await r.aclose()
    return 0 if drift == 0 else 3


async def run_notices(args: argparse.Namespace) -> int:
    r = aioredis.Redis.from_url(args.redis)
    svc = NoticeService(signer(), OutcomeStore(r), CapRecorder(r), Metrics(), [budget(args)])
    queue = QUEUE % args.campaign
    end = time.monotonic() + args.seconds
    handled = 0
    while time.monotonic() < end:
        item = await r.blpop([queue], timeout=0.2)
        if item is None:
            continue
        raw = item[1] if isinstance(item[1], bytes) else str(item[1]).encode()
        kind, t, p = msgspec.msgpack.decode(raw, type=list[str])
        if kind == "w":
            await svc.win(t, p)
        elif kind == "b":
            await svc.bill(t, p)
        else:
            await svc.loss(t, p or None)
        handled += 1
    print(f"handled={handled}", flush=True)
    await r.aclose()
    return 0


async def run_capwins(args: argparse.Namespace) -> int:
    """Handle ``--n`` win notices of distinct bids for one user, as fast as possible."""
    r = aioredis.Redis.from_url(args.redis)
    svc = NoticeService(signer(), OutcomeStore(r), CapRecorder(r), Metrics(), [budget(args)])
    s = signer()
    await asyncio.gather(*(svc.win(token(s, args.campaign, f"{args.seed}-{i}", 5_000, 60)["w"], "1.0")
                           for i in range(args.n)))
    print("done", flush=True)
    await r.aclose()
    return 0


async def run_bench(args: argparse.Namespace) -> int:
    """Cost of the bid-path calls (admit, reserve) and of one tick with everything outstanding."""
    r = aioredis.Redis.from_url(args.redis)
    rt = MoneyRuntime(r, Metrics(), [CampaignBudget("bench", 10**15, max_lease_micros=10**14)])
    await rt.tick()
    n = args.n
    ids = [f"b{i}" for i in range(n)]
    expires = time.time() + 60
    t0 = time.perf_counter()
    for _ in range(n):
        rt.admit("bench", 1_000)
    t1 = time.perf_counter()
    for bid_id in ids:
        rt.reserve("bench", bid_id, 1_000, expires)
    t2 = time.perf_counter()
    rt.clock = lambda: time.time() + 3  # every bid due for its first outcome look-up
    await rt.tick()
    t3 = time.perf_counter()
    print(f"admit {1e6 * (t1 - t0) / n:.2f} us/call, reserve {1e6 * (t2 - t1) / n:.2f} us/call, "
          f"tick looking up {n} outstanding bids {1e3 * (t3 - t2):.1f} ms", flush=True)
    await r.aclose()
    return 0


async def run_hold(args: argparse.Namespace) -> int:
    r = aioredis.Redis.from_url(args.redis)
    rt = MoneyRuntime(r, Metrics(), [budget(args)], settings=settings(args.lease_ttl_s))
    await rt.start()
    for i in range(10):
        rt.reserve(args.campaign, f"held-{i}", 1_000, time.time() + 3600)
    print("READY", flush=True)
    await asyncio.sleep(3600)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dsp.testing.money_sim")
    p.add_argument("role", choices=("bidder", "notices", "hold", "capwins", "bench"))
    p.add_argument("--redis", required=True)
    p.add_argument("--campaign", default="sim")
    p.add_argument("--daily-micros", type=int, default=1_000_000)
    p.add_argument("--max-lease-micros", type=int, default=50_000)
    p.add_argument("--lease-ttl-s", type=float, default=3.0)
    p.add_argument("--bid-ttl-s", type=float, default=2.0)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=50)
    args = p.parse_args(argv)
    runner = {"bidder": run_bidder, "notices": run_notices, "hold": run_hold,
              "capwins": run_capwins, "bench": run_bench}[args.role]
    return asyncio.run(runner(args))


if __name__ == "__main__":
    sys.exit(main())
