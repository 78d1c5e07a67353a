"""``dsp forecast`` on an event log: a logged day of traffic under the demo configs, replayed
through the old and an edited tree; refusal on a thin log; the landscape's censoring."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import msgspec
import numpy as np
import pytest

from dsp.cli import main
from dsp.config.snapshot import load_snapshot
from dsp.offline.forecast.eventfiles import log_policy, read_log
from dsp.offline.forecast.landscape import fit
from dsp.offline.forecast.simulate import Row
from dsp.testing.users import desktop_banner_request

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "bidder_configs"
DAY_US = 86_400_000_000
DAY0 = 20_500  # 2026-02-15


def _rows(n: int, seed: int) -> list[Row]:
    rng = np.random.default_rng(seed)
    rows: list[Row] = []
    for i in range(n):
        req = desktop_banner_request(f"r{i}", f"user-{i}")
        if i % 2:  # a phone with a 320x50 slot: CashBridge's traffic
            req["imp"] = [{"id": "1", "banner": {"w": 320, "h": 50}, "bidfloor": 0.2}]
            req["device"] = {"devicetype": 4, "os": "Android", "geo": {"country": "USA"}}
            # CashBridge bids only on fully disclosed supply paths
            req["source"] = {"schain": {"complete": 1, "ver": "1.0", "nodes": [
                {"asi": "exchange.example", "sid": "pub-1", "hp": 1}]}}
        ts = (DAY0 + i * 2 // n) * DAY_US + (i % (n // 2)) * (DAY_US // (n // 2))
        rows.append(Row(ts, "generic", json.dumps(req).encode(), float(rng.uniform(0.01, 0.08)),
                        float(rng.uniform(0.02, 0.2)), True, 100.0))  # a 1% sample
    return rows


def _log(tmp: Path, n: int = 4000, seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    prices = np.exp(rng.normal(np.log(4_000.0), 0.5, n))  # ~$4 CPM, micros per impression
    clicks = (rng.random(n) < 0.02).astype(np.int8)
    events = tmp / "events"
    log_policy(load_snapshot(CONFIGS), _rows(n, seed), prices, clicks, events,
               initial_lambda={}, part="t")
    return events


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _log(tmp_path_factory.mktemp("fc"))


def test_log_reads_back(events: Path) -> None:
    rows, outcomes, _ = read_log(events)
    assert len(rows) == 4000 and rows[0].weight == pytest.approx(100.0)
    assert outcomes.won.sum() > 100 and (~outcomes.won).sum() > 100
    assert np.isnan(outcomes.price_micros[~outcomes.won]).all()  # losses carry no price
    assert set(outcomes.campaign) == {"quickloan-prime", "cashbridge-starter"}


def test_forecast_old_vs_new(events: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    edited = tmp_path / "edited"
    shutil.copytree(CONFIGS, edited)
    path = edited / "campaigns" / "quickloan-prime.yaml"
    path.write_text(path.read_text().replace("max_cpm: 6.00", "max_cpm: 3.00"))
    assert main(["forecast", "--from", str(CONFIGS), "--configs", str(edited),
                 "--events", str(events), "--json"]) == 0
    fc = json.loads(capsys.readouterr().out)
    by = {c["campaign"]: c for c in fc["campaigns"]}
    ql = by["quickloan-prime"]
    assert ql["status"] == "ok"
    assert ql["new"]["wins"]["mean"] < ql["old"]["wins"]["mean"]  # a lower cap wins less
    assert ql["new"]["spend_micros"]["mean"] < ql["old"]["spend_micros"]["mean"]
    for side in ("old", "new"):
        w = ql[side]["wins"]
        assert w["low"] <= w["mean"] <= w["high"] and w["coverage"] == 0.9
    # CashBridge is unchanged, but QuickLoan's lower bids leave it more of the phone slots that
    # both campaigns want (one bid per imp: the best price goes out).
    cb = by["cashbridge-starter"]
    assert cb["new"]["bids"] > cb["old"]["bids"]
    assert main(["forecast", "--from", str(CONFIGS), "--configs", str(edited),
                 "--events", str(events)]) == 0
    out = capsys.readouterr().out
    assert "campaign quickloan-prime (USD): ok" in out and "cost per funded loan" in out
    assert "[old] fair-lending gate" in out and "[new] fair-lending gate" in out


def test_thin_log_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = _log(tmp_path, n=200, seed=2)
    assert main(["forecast", "--from", str(CONFIGS), "--events", str(events)]) == 3
    assert "refusing" in capsys.readouterr().err


def test_censored_fit_is_not_the_naive_fit() -> None:
    """Prices uniform on 1..100; we bid 50 on half the auctions and 100 on the rest. Wins show
    prices <= bid, losses only "above the bid": Kaplan–Meier recovers P(win | 75) = 0.75, the
    won prices alone would say 0.83."""
    rng = np.random.default_rng(0)
    price = rng.integers(1, 101, 20_000).astype(float)
    bid = np.where(rng.random(20_000) < 0.5, 50.0, 100.0)
    won = bid >= price
    land = fit(bid, won, np.where(won, price, np.nan))
    p, pay, _ = land.evaluate(np.array([25.0, 50.0, 75.0]))
    assert p == pytest.approx([0.25, 0.50, 0.75], abs=0.02)
    assert pay[1] == pytest.approx(np.mean(np.where(price <= 50, price, 0.0)), rel=0.03)
    naive = (price[won] <= 75).mean()
    assert naive == pytest.approx(62.5 / 75, abs=0.02) and p[2] < naive - 0.05
    assert msgspec.json.decode(msgspec.json.encode(land)).keys() >= {"times", "survival"}


async def test_forecast_on_a_real_bidders_log(redis_url: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The real bidder serves 600 users (every request sampled), the exchange answers with
    notices, the sink writes the log; ``dsp forecast`` reads it and forecasts both campaigns."""
    from urllib.parse import urlsplit

    import redis as sync_redis
    from aiohttp.test_utils import TestClient, TestServer
    from prometheus_client import CollectorRegistry

    from dsp.events.reader import StreamReader
    from dsp.features.writer import write_rows
    from dsp.observability.metrics import Metrics
    from dsp.offline.eventlog.sink import EventSink
    from dsp.openrtb.response import BidResponse
    from dsp.server.app import build_app
    from dsp.server.settings import Settings
    from dsp.testing.users import interested_user_row

    # The plan guard holds a fresh day's first minutes to a sliver of the plan; this test wants
    # a few hundred settled bids in seconds, so its copy of the demo tree switches the guard off.
    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    for name in ("quickloan-prime", "cashbridge-starter"):
        f = configs / "campaigns" / f"{name}.yaml"
        f.write_text(f.read_text().replace("pacing:\n", "pacing:\n  guard: false\n", 1))
    users = [f"fc-user-{i}" for i in range(600)]
    r = sync_redis.Redis.from_url(redis_url)
    write_rows(r, users, np.repeat(interested_user_row(), len(users), axis=0))
    r.close()
    settings = Settings(redis_url=redis_url, configs_dir=str(configs), models_dir=str(ROOT / "models"),
                        public_url="http://bidder.test", token_keys={"k1": b"0123456789abcdef0123456789"},
                        token_active="k1", reload_check_s=3600, events_sample_rate=1.0)
    rng = np.random.default_rng(5)

    def path(url: str, **macros: str) -> str:
        for k, v in macros.items():
            url = url.replace("${" + k + "}", v)
        parts = urlsplit(url)
        return f"{parts.path}?{parts.query}"

    async with TestClient(TestServer(build_app(settings, Metrics(CollectorRegistry())))) as c:
        for uid in users:
            resp = await c.post("/bid/generic", json=desktop_banner_request(f"r-{uid}", uid),
                                headers={"x-openrtb-version": "2.6"})
            if resp.status != 200:
                continue
            answer = msgspec.json.decode(await resp.read(), type=BidResponse)
            assert answer.seatbid
            bid = answer.seatbid[0].bid[0]
            market = float(np.exp(rng.normal(np.log(3.0), 0.5)))  # CPM
            if market <= bid.price:
                await c.get(path(bid.nurl or "", AUCTION_PRICE=f"{market:.4f}"))
                await c.get(path(bid.burl or "", AUCTION_PRICE=f"{market:.4f}"))
            else:
                await c.get(path(bid.lurl or "", AUCTION_LOSS="102", AUCTION_MIN_TO_WIN=f"{market:.4f}"))
        await asyncio.sleep(0.2)
    events = tmp_path / "events"
    EventSink(StreamReader(sync_redis.Redis.from_url(redis_url), "fc"), events).run(drain=True)
    assert main(["forecast", "--from", str(configs), "--configs", str(configs), "--events",
                 str(events), "--json"]) == 0
    fc = json.loads(capsys.readouterr().out)
    assert fc["samples"] == 600 and fc["outcomes"] >= 200
    ql = next(c for c in fc["campaigns"] if c["campaign"] == "quickloan-prime")
    assert ql["status"] == "ok"
    assert ql["old"]["wins"]["mean"] == pytest.approx(ql["new"]["wins"]["mean"])  # same config
    assert 0 < ql["old"]["wins"]["mean"] <= ql["old"]["bids"]
