"""The open-loop generator against real HTTP servers on loopback, and the projection arithmetic."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from aiohttp import web

from dsp.testing.redis_server import free_port
from dsp.testing.traffic import TrafficGenerator, TrafficMix

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the loadtest/ package

from loadtest.capacity import judge
from loadtest.openloop import run, summarize
from loadtest.projection import SECONDS_PER_DAY, cores_needed, hosts_needed, project


def _gen() -> TrafficGenerator:
    return TrafficGenerator.from_sources(TrafficMix(exchanges={"a": 1.0, "b": 1.0}, seed=3))


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def test_every_request_is_answered_and_counted() -> None:
    seen: list[dict[str, object]] = []

    async def bid(request: web.Request) -> web.Response:
        seen.append(json.loads(await request.read()))
        if len(seen) % 4 == 0:
            return web.json_response({"id": seen[-1]["id"], "seatbid": [{"bid": [{"price": 1.5}]}]})
        if len(seen) % 4 == 1:
            return web.json_response({"id": seen[-1]["id"], "nbr": 8})
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/bid/{exchange}", bid)
    runner, url = await _serve(app)
    try:
        stats = await run(url, 200, 1.0, 0.25, _gen(), connections=4, max_connections=16,
                          timeout_ms=2000, keep_bodies=3)
    finally:
        await runner.cleanup()
    s = summarize(stats, 200, 1.0)
    assert s["sent"] == 200 and s["responses"] == 200 and s["total_responses"] == 250
    assert len(seen) == 250 and len({r["id"] for r in seen}) == 250  # fresh ids
    assert sum(s["status"].values()) == 200 and 95 <= s["status"]["200"] <= 105  # half are 200s
    assert 45 <= s["bids"] <= 55 and s["bid_rate"] == s["bids"] / 200  # but only every 4th bids
    assert s["error_rate"] == 0 and s["timeout_rate"] == 0
    assert len(stats.bodies) == 3 and all(b'"price"' in b for b in stats.bodies)


async def test_a_stall_is_charged_to_every_request_due_during_it() -> None:
    """No coordinated omission: requests due while the server stalls carry the stall."""
    stall = asyncio.Event()
    calls = 0

    async def bid(request: web.Request) -> web.Response:
        nonlocal calls
        await request.read()
        calls += 1
        if calls == 20:
            await asyncio.sleep(0.3)  # one slow answer on a single connection blocks the rest
            stall.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/bid/{exchange}", bid)
    runner, url = await _serve(app)
    try:
        stats = await run(url, 200, 1.0, 0.0, _gen(), connections=1, max_connections=1,
                          timeout_ms=3000)
    finally:
        await runner.cleanup()
    lat_ms = sorted(x / 1000 for x in stats.latencies_us)
    # ~60 requests were due during the 300 ms stall on the only connection; each waited part of it.
    assert stall.is_set() and len(lat_ms) == 200
    assert sum(1 for x in lat_ms if x >= 100) >= 30


async def test_timeouts_are_counted_not_hidden() -> None:
    async def bid(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(1.0)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/bid/{exchange}", bid)
    runner, url = await _serve(app)
    try:
        stats = await run(url, 50, 0.4, 0.0, _gen(), connections=2, max_connections=4,
                          timeout_ms=100)
    finally:
        await runner.cleanup()
    s = summarize(stats, 50, 0.4)
    assert s["sent"] == 20 and s["responses"] == 0 and s["timeout_rate"] == 1.0


def test_judge_names_the_failed_condition() -> None:
    base = {"p99_ms": 5.0, "error_rate": 0.0, "timeout_rate": 0.0, "achieved_rps": 1000.0}
    assert judge(base, 1000, 10, 0.001) == (True, "ok")
    assert "p99" in judge({**base, "p99_ms": 12.0}, 1000, 10, 0.001)[1]
    assert "errors" in judge({**base, "timeout_rate": 0.01}, 1000, 10, 0.001)[1]
    assert "achieved" in judge({**base, "achieved_rps": 900.0}, 1000, 10, 0.001)[1]


def test_projection_formula() -> None:
    assert cores_needed(116_000, 1000) == 116
    assert cores_needed(116_000.5, 1000) == 117
    assert hosts_needed(116, 32, 2) == 4
    rows = project(1000, [10_000_000_000], peak_factor=3, host_cores=32, reserved_cores=2)
    avg, peak = rows
    assert avg.rps == pytest.approx(10e9 / SECONDS_PER_DAY)
    assert avg.cores == 116 and peak.cores == 348 and peak.hosts == 12
    with pytest.raises(ValueError):
        hosts_needed(10, 2, 2)


def test_server_histogram_quantile() -> None:
    from loadtest.promscrape import delta, quantile

    before = {0.001: 10.0, 0.005: 10.0, 0.01: 10.0, float("inf"): 10.0}
    after = {0.001: 60.0, 0.005: 150.0, 0.01: 160.0, float("inf"): 160.0}
    d = delta(after, before)  # 50 in (0, 1ms], 90 in (1, 5ms], 10 in (5, 10ms]
    assert d[float("inf")] == 150
    assert quantile(d, 0.5) == pytest.approx(0.001 + 0.004 * (25 / 90))
    assert 0.005 < quantile(d, 0.99) <= 0.01  # type: ignore[operator]
    assert quantile({float("inf"): 0.0}, 0.99) is None


def test_report_prints_ratio_projection_and_formula() -> None:
    import datetime as dt

    from loadtest.capacity import MIXES, Step, TargetResult, parse_args, report

    def step(rps: float, cpu_s: float, bid_rate: float = 0.05) -> Step:
        summary = {"achieved_rps": rps, "responses": int(rps * 4), "total_responses": int(rps * 5),
                   "p50_ms": 1.0, "p99_ms": 8.0, "p999_ms": 12.0, "error_rate": 0.0, "timeout_rate": 0.0,
                   "bid_rate": bid_rate, "client_late": False, "send_lag_p99_ms": 0.1,
                   "notices_per_bid": 1.32, "notices": {"win": 3, "bill": 2, "loss": 7}}
        st = Step(rps, summary, cpu_s, 0.1, 0.0, True, "ok", server_p99_ms=5.0, priced_out=0.41,
                  spend_units_s={"quickloan-prime": 1.5}, pacing={"quickloan-prime": 0.25})
        return st

    low, high = MIXES["low"], MIXES["high"]
    ceiling = TargetResult("aiohttp 204 ceiling", 1, "1", best=step(4000, 5.0))
    one = TargetResult("bidder (1 process)", 1, "1", low, best=step(1000, 4.0))
    two = TargetResult("bidder (2 processes)", 2, "0,1", low, best=step(1800, 8.0))
    hot = TargetResult("bidder (1 process)", 1, "1", high, best=step(500, 4.0, 0.28))
    s = parse_args([])
    text = report(s, [ceiling, one, two, hot], dt.datetime(2026, 1, 1, tzinfo=dt.UTC), 300.0,
                  ["generic"], 20000, 70, 0.5, {"low": {"quickloan-prime": 1234.5}})
    assert f"mix low: known users {low.known_share:.0%} of requests" in text
    assert f"mix high: known users {high.known_share:.0%}" in text
    assert "budgets (low): daily quickloan-prime 1,234.50" in text
    assert "1,000 / 4,000 = 0.25" in text and "500 / 4,000 = 0.12" in text
    assert "2 processes vs 1: 1.80×" in text
    assert "41.0" in text and "1.32" in text  # priced out %, notices per bid
    assert "pacing λ max 0.25" in text and "committed spend 1.50 units/s" in text
    assert "projection, mix low (bid rate 5.0%" in text and "projection, mix high (bid rate 28.0%" in text
    assert "R_core = 1,000 req/s per core" in text and "86,400,000 req/day per core" in text
    assert "cores = ceil(rate / R_core)" in text
    assert "10 B    peak ×3      347,222      348      12" in text
    assert "800" in text  # cpu µs/req = 4 s / 5000 requests
    assert "numbers are depressed" in text


def test_shed_work_fails_a_step() -> None:
    from loadtest.promscrape import Scrape

    before = Scrape({}, {"deadline": 5.0, "coppa": 50.0}, 1000.0)
    after = Scrape({}, {"deadline": 25.0, "model_error": 10.0, "coppa": 500.0}, 2000.0)
    rate, counts = after.shed_since(before)
    assert rate == pytest.approx(0.03) and counts == {"deadline": 20.0, "model_error": 10.0}
    base = {"p99_ms": 5.0, "error_rate": 0.0, "timeout_rate": 0.0, "achieved_rps": 1000.0,
            "shed_rate": rate, "shed": counts}
    ok, why = judge(base, 1000, 10, 0.001, 0.01)
    assert not ok and why.startswith("shed 3.00%")
    assert judge({**base, "shed_rate": 0.005}, 1000, 10, 0.001, 0.01) == (True, "ok")


def test_scaled_configs_multiply_budgets_and_still_load(tmp_path: Path) -> None:
    import yaml

    from dsp.config.snapshot import load_snapshot
    from loadtest.capacity import REPO, scaled_configs

    demo = REPO / "tests" / "fixtures" / "configs" / "demo"
    out = scaled_configs(demo, tmp_path / "cfg", 1000)
    for src in (demo / "campaigns").glob("*.yaml"):
        a = yaml.safe_load(src.read_text())["budget"]
        b = yaml.safe_load((out / "campaigns" / src.name).read_text())["budget"]
        assert b["daily"] == pytest.approx(a["daily"] * 1000)
    assert len(load_snapshot(out).campaigns) == len(list(out.glob("campaigns/*.yaml")))


async def test_bids_send_their_notices_back() -> None:
    """Every bid wins or loses (win share 0.5): a win fetches nurl and burl (bill share 1.0), a loss
    its lurl, with the auction macros filled; notices are counted apart from the bid latency."""
    from loadtest.scenarios import LoadSettings

    hits: list[str] = []

    async def bid(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        url = str(request.url.origin())
        return web.json_response({"id": body["id"], "cur": "USD", "seatbid": [{"bid": [{
            "id": "b1", "impid": "1", "price": 2.5, "nurl": url + "/notice/win?p=${AUCTION_PRICE}",
            "burl": url + "/notice/bill?p=${AUCTION_PRICE}",
            "lurl": url + "/notice/loss?r=${AUCTION_LOSS}"}]}]})

    async def notice(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/bid/{exchange}", bid)
    app.router.add_get("/notice/{kind}", notice)
    runner, url = await _serve(app)
    settings = LoadSettings(exchanges={}, shapes={}, ids_file=None, known_share=0.6, gzip_share=0.0,
                            win_share=0.5, bill_share=1.0, loss_notices=True, clear_ratio=0.8)
    try:
        stats = await run(url, 200, 1.0, 0.0, _gen(), connections=4, max_connections=16,
                          timeout_ms=2000, notices=settings)
    finally:
        await runner.cleanup()
    s = summarize(stats, 200, 1.0)
    assert s["bids"] == 200 and s["notice_errors"] == 0
    wins, bills, losses = (s["notices"].get(k, 0) for k in ("win", "bill", "loss"))
    assert wins == bills and wins + losses == 200 and 60 <= wins <= 140
    assert s["notices_per_bid"] == round((wins + bills + losses) / 200, 3)
    assert sorted(hits) == sorted(["/notice/win?p=2", "/notice/bill?p=2"] * wins
                                  + ["/notice/loss?r=102"] * losses)


def test_sized_configs_make_the_pacing_target_the_planned_spend(tmp_path: Path) -> None:
    """Budgets sized to the run: at ``now`` the pacing target of each calibrated campaign is
    headroom × (spend per request × planned rate); uncalibrated campaigns keep their budgets."""
    import time

    import yaml

    from dsp.budget.pacing import PacingPlan
    from dsp.config.snapshot import load_snapshot
    from dsp.money import units_to_micros
    from loadtest.capacity import REPO, sized_configs

    src = REPO / "bidder_configs"
    ids = sorted(c.id for c in load_snapshot(src).campaigns)
    now = time.time()
    out, daily = sized_configs(src, tmp_path / "cfg", {ids[0]: 150.0}, 8000.0, 1.25, now)
    snap = load_snapshot(out)
    sized = next(c for c in snap.campaigns if c.id == ids[0])
    b = sized.budget
    assert daily == {ids[0]: pytest.approx(b.daily_budget_micros / 1e6)}
    target = PacingPlan(b.pacing_curve, b.utc_offset_minutes).target_rate(b.daily_budget_micros, now)
    assert target == pytest.approx(1.25 * 150.0 * 8000.0, rel=1e-3)
    if b.total_budget_micros is not None:
        assert b.total_budget_micros == pytest.approx(2 * b.daily_budget_micros, abs=20_000)
    for other in (c for c in snap.campaigns if c.id != ids[0]):
        path = next(p for p in (src / "campaigns").glob("*.yaml")
                    if yaml.safe_load(p.read_text())["id"] == other.id)
        assert other.budget.daily_budget_micros == units_to_micros(
            yaml.safe_load(path.read_text())["budget"]["daily"])
