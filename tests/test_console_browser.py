"""The campaign console in a real browser, against a bidder that has served traffic.

A real bidder app (real Redis, real ONNX models) answers bid requests and notices on loopback;
its event writer puts bids, wins, bills, a loss, clicks and conversions into Redis streams; the
sink drains them into Parquet. Then ``dsp console`` runs in its own process and headless Chromium
loads every view: the rendered numbers must equal what was sent (and what the Redis money ledger
committed, and ``dsp report`` where that command exists), and no page may log a JavaScript error.
With ``DSP_WRITE_SCREENSHOTS=1`` the screenshots go to docs/img/ (docs/marketing.md shows them).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
import pytest
import redis as sync_redis
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from dsp.budget.keys import campaign_day, day_key
from dsp.events.reader import StreamReader
from dsp.notices.signature import SIGNATURE_HEADER, sign
from dsp.observability.metrics import Metrics
from dsp.offline.eventlog.sink import EventSink
from dsp.openrtb.response import BidResponse
from dsp.server.app import build_app
from dsp.testing.browser import Browser, chromium_path
from dsp.testing.redis_server import free_port
from dsp.testing.serve import bidder_settings
from dsp.testing.users import desktop_banner_request, seed_interested

ROOT = Path(__file__).resolve().parent.parent
USER = "console-user"
#: The lenders' conversion secrets (the shipped campaigns name these variables).
LENDER_SECRETS = {"quickloan-prime": "quickloan-console-test-secret",
                  "cashbridge-starter": "cashbridge-console-test-secret"}
CLEARING_CPM = ("2.5000", "3.1250", "1.7500", "4.0000")  # what the exchange says we paid
pytestmark = pytest.mark.skipif(chromium_path() is None, reason="chromium not installed")


def _path(url: str, **macros: str) -> str:
    for k, v in macros.items():
        url = url.replace("${" + k + "}", v)
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def _serve_traffic(redis_url: str) -> dict[str, int]:
    """6 bids; 4 won and billed, 1 lost, 1 unanswered; 2 clicks; one loan funded."""
    seed_interested(redis_url, USER)
    settings = bidder_settings(redis_url, ROOT / "bidder_configs", max_body_bytes=64 * 1024,
                               events_sample_rate=1.0)
    app = build_app(settings, Metrics(CollectorRegistry()))
    bids = []
    async with TestClient(TestServer(app)) as c:
        for i in range(6):
            resp = await c.post("/bid/generic", json=desktop_banner_request(f"req-{i}", USER),
                                headers={"x-openrtb-version": "2.6"})
            assert resp.status == 200, await resp.text()
            answer = msgspec.json.decode(await resp.read(), type=BidResponse)
            assert answer.seatbid
            bids.append(answer.seatbid[0].bid[0])
        for bid, price in zip(bids[:4], CLEARING_CPM, strict=True):
            assert (await c.get(_path(bid.nurl or "", AUCTION_PRICE=price))).status == 200
            assert (await c.get(_path(bid.burl or "", AUCTION_PRICE=price))).status == 200
        lost = bids[4]
        assert (await c.get(_path(lost.lurl or "", AUCTION_PRICE="", AUCTION_LOSS="102",
                                  AUCTION_MIN_TO_WIN="9.0"))).status == 200
        click_ids = []
        for bid in bids[:2]:  # the user clicks the served markup's link (a click token)
            href = (bid.adm or "").split('href="', 1)[1].split('"', 1)[0]
            resp = await c.get(_path(href), allow_redirects=False)
            assert resp.status == 302
            click_ids.append(resp.headers["Location"].split("dsp_click=", 1)[1])
        for event, amount in (("submitted", None), ("approved", None), ("funded", 5000.0)):
            body = msgspec.json.encode({"click_id": click_ids[0], "event": event, "amount": amount})
            secret = LENDER_SECRETS[bids[0].cid or ""]
            resp = await c.post("/conversion", data=body, headers={
                SIGNATURE_HEADER: sign(secret.encode(), body, int(time.time()))})
            assert resp.status in (200, 204), await resp.text()
        await asyncio.sleep(0.2)  # the event writer flushes once per tick
    spend = sum(round(float(p) * 1_000) for p in CLEARING_CPM)  # CPM units -> micros per imp
    return {"bids": 6, "wins": 4, "spend_micros": spend, "clicks": 2, "applications": 1,
            "approvals": 1, "funded": 1}


def _cells(dom: str, campaign: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(
        rf"data-campaign=\"{re.escape(campaign)}\" data-field=\"([a-z_0-9]+)\">([^<]*)<", dom)}


async def test_console_shows_what_the_bidder_served(redis_url: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSP_LENDER_QUICKLOAN_SECRET", LENDER_SECRETS["quickloan-prime"])
    monkeypatch.setenv("DSP_LENDER_CASHBRIDGE_SECRET", LENDER_SECRETS["cashbridge-starter"])
    sent = await _serve_traffic(redis_url)
    events = tmp_path / "events"
    sink = EventSink(StreamReader(sync_redis.Redis.from_url(redis_url), "console-test"), events)
    assert sink.run(drain=True).events > 0
    r = sync_redis.Redis.from_url(redis_url)
    now = dt.datetime.now(dt.UTC)
    ledger_spent = int(r.hget(day_key("quickloan-prime", campaign_day(now.timestamp(), 0)),
                              "spent") or 0)
    r.close()
    assert ledger_spent == sent["spend_micros"]  # the money side agrees with what we sent
    proposals = tmp_path / "proposals"
    shutil.copytree(ROOT / "bidder_configs", proposals / "cheaper-quickloan")
    ql = proposals / "cheaper-quickloan" / "campaigns" / "quickloan-prime.yaml"
    ql.write_text(ql.read_text().replace("max_cpm: 6.00", "max_cpm: 3.00"))

    port = free_port()
    console = subprocess.Popen(
        [sys.executable, "-m", "dsp.cli", "console", "--port", str(port), "--events", str(events),
         "--redis-url", redis_url, "--configs", str(ROOT / "bidder_configs"),
         "--proposals", str(proposals)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert console.stdout is not None
        line = await asyncio.to_thread(console.stdout.readline)
        assert f"http://127.0.0.1:{port}/" in line
        base = f"http://127.0.0.1:{port}"
        async with Browser.start() as browser:
            page = await browser.load(base + "/")
            for _ in range(60):  # the fair-lending status is computed in the background
                if "pending" not in page.dom:
                    break
                await asyncio.sleep(0.5)
                page = await browser.load(base + "/")
            shots = {"overview": await browser.load(base + "/", screenshot=True)}
            shots["campaign"] = await browser.load(base + "/campaign/quickloan-prime",
                                                   screenshot=True)
            shots["history"] = await browser.load(base + "/history", screenshot=True)
            shots["forecast"] = await browser.load(base + "/forecast", screenshot=True)
            shots["forecast-result"] = await browser.load(
                base + "/forecast?proposal=cheaper-quickloan", screenshot=True, timeout_s=120)
    finally:
        console.terminate()
        console.wait(timeout=20)
        if console.stdout is not None:
            console.stdout.close()

    for name, p in shots.items():
        assert p.errors == [], f"{name}: JavaScript errors {p.errors}"
    got = _cells(shots["overview"].dom, "quickloan-prime")
    assert got["bids"] == str(sent["bids"]) and got["wins"] == str(sent["wins"])
    assert got["win_rate"] == f"{sent['wins'] / sent['bids']:.1%}"
    assert got["spend"] == f"{sent['spend_micros'] / 1e6:,.2f}"
    for field in ("clicks", "applications", "approvals", "funded"):
        assert got[field] == str(sent[field]), field
    assert got["cost_per_funded"] == f"{sent['spend_micros'] / 1e6:,.2f}"
    assert got["fair_lending"].startswith("passes (AIR sex")
    cb = _cells(shots["overview"].dom, "cashbridge-starter")  # configured, no traffic: shown
    assert cb["bids"] == "0" and cb["spend"] == "0.00"
    detail = shots["campaign"].dom
    assert "<svg" in detail and "pacing plan" in detail
    assert f"committed today {sent['spend_micros'] / 1e6:,.2f}" in detail
    assert "start" in shots["history"].dom  # the bidder's config load is in the history
    assert "cheaper-quickloan" in shots["forecast"].dom
    result = shots["forecast-result"].dom
    assert "campaign quickloan-prime" in result and ("refusing" in result or "old" in result)
    assert "adverse-impact ratio" in result

    if importlib.util.find_spec("dsp.cli.report") is not None:
        report = subprocess.run([sys.executable, "-m", "dsp.cli", "report", "--events",
                                 str(events), "--json"], cwd=ROOT, capture_output=True, text=True,
                                check=True)
        camp = next(c for c in json.loads(report.stdout)["campaigns"]
                    if c["campaign"] == "quickloan-prime")
        assert camp["bids"] == sent["bids"] and camp["wins"] == sent["wins"]
        assert camp["spend_micros"] == sent["spend_micros"] and camp["clicks"] == sent["clicks"]

    if os.environ.get("DSP_WRITE_SCREENSHOTS"):
        out = ROOT / "docs" / "img"
        out.mkdir(parents=True, exist_ok=True)
        for name, p in shots.items():
            (out / f"console-{name}.png").write_bytes(p.png)
