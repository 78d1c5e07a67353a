"""Bids and notices through the real bidder app -> streams -> sink -> DuckDB join -> dsp report.

The figures in the report must equal what the test sent, exactly: duplicates once, test traffic
out, spend in integer micros as the ledger committed it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
import redis as sync_redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from dsp.budget.keys import campaign_day, day_key
from dsp.cli import main
from dsp.events.reader import StreamReader
from dsp.notices.signature import SIGNATURE_HEADER, sign
from dsp.observability.metrics import Metrics
from dsp.offline.eventlog.join import open_log
from dsp.offline.eventlog.parquet import read_kind
from dsp.offline.eventlog.sink import EventSink
from dsp.openrtb.response import Bid, BidResponse
from dsp.server.app import SERVICES, build_app
from dsp.testing.serve import bidder_settings
from dsp.testing.users import desktop_banner_request, seed_interested

ROOT = Path(__file__).resolve().parent.parent
USER = "events-e2e-user"
Client = TestClient[web.Request, web.Application]


LENDER_SECRET = b"quickloan-conversion-secret-for-tests"


@pytest.fixture()
async def client(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Client]:
    monkeypatch.setenv("DSP_LENDER_QUICKLOAN_SECRET", LENDER_SECRET.decode())
    seed_interested(redis_url, USER)
    settings = bidder_settings(redis_url, ROOT / "bidder_configs", max_body_bytes=64 * 1024,
                               events_sample_rate=1.0)
    app = build_app(settings, Metrics(CollectorRegistry()))
    async with TestClient(TestServer(app)) as c:
        yield c


def _path(url: str, price: str = "", reason: str = "", min_to_win: str = "") -> str:
    url = url.replace("${AUCTION_PRICE}", price).replace("${AUCTION_LOSS}", reason)
    parts = urlsplit(url.replace("${AUCTION_MIN_TO_WIN}", min_to_win))
    return f"{parts.path}?{parts.query}"


def _click_path(bid: Bid) -> str:
    """The click-through of the served markup (it goes through /notice/click)."""
    href = (bid.adm or "").split('href="', 1)[1].split('"', 1)[0]
    parts = urlsplit(href)
    assert parts.path == "/notice/click" and parse_qs(parts.query)["t"]
    return f"{parts.path}?{parts.query}"


async def _click_id(client: Client, bid: Bid) -> str:
    resp = await client.get(_click_path(bid), allow_redirects=False)
    assert resp.status == 302
    return resp.headers["Location"].split("dsp_click=", 1)[1]


async def _conversion(client: Client, body: dict[str, object]) -> int:
    raw = msgspec.json.encode(body)
    resp = await client.post("/conversion", data=raw, headers={
        SIGNATURE_HEADER: sign(LENDER_SECRET, raw, int(time.time()))})
    return resp.status


async def _bid(client: Client, request_id: str, **extra: object) -> Bid:
    resp = await client.post("/bid/generic", json=desktop_banner_request(request_id, USER, **extra))
    assert resp.status == 200, await resp.text()
    seatbid = msgspec.json.decode(await resp.read(), type=BidResponse).seatbid
    assert seatbid
    return seatbid[0].bid[0]


async def _ok(client: Client, path: str) -> None:
    resp = await client.get(path, allow_redirects=False)
    assert resp.status in (200, 302), await resp.text()


async def test_report_equals_what_was_sent(client: Client, redis_url: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    b1, b2, b3, _b4 = [await _bid(client, f"req-{i}") for i in range(4)]
    tb = await _bid(client, "req-test", test=1)
    nobid = await client.post("/bid/generic", json={**desktop_banner_request("req-nb", USER),
                                                    "imp": [{"id": "1", "banner": {"w": 1, "h": 1}}]})
    assert nobid.status == 204
    # b1: win and bill, each twice; a click (twice); the whole funnel, funded twice
    for _ in range(2):
        await _ok(client, _path(b1.nurl or "", "1.2"))
        await _ok(client, _path(b1.burl or "", "1.25"))
        await _ok(client, _click_path(b1))
    click_id = await _click_id(client, b1)
    for event, amount in (("submitted", None), ("approved", None), ("funded", 2500.5), ("funded", 2500.5)):
        body = {"click_id": click_id, "event": event, **({"amount": amount} if amount else {})}
        assert await _conversion(client, body) == 200
    # b2: the bill arrives before the win (reordered)
    await _ok(client, _path(b2.burl or "", "0.8"))
    await _ok(client, _path(b2.nurl or "", "0.8"))
    # b3: lost, with the loss reason and the price that would have won; a late duplicate
    await _ok(client, _path(b3.lurl or "", reason="102", min_to_win="3.5"))
    await _ok(client, _path(b3.lurl or "", reason="102", min_to_win="3.5"))
    # b4: nothing heard. The test bid: won and billed, and excluded from every figure.
    await _ok(client, _path(tb.nurl or "", "1.0"))
    await _ok(client, _path(tb.burl or "", "1.0"))

    services = client.app[SERVICES]  # type: ignore[index]
    assert services.events is not None
    await services.events.flush()
    out = tmp_path / "events"
    reader = StreamReader(sync_redis.Redis.from_url(redis_url), "e2e", count=2)
    totals = EventSink(reader, out).run(drain=True)
    assert totals.duplicates == 0  # duplicates never reach the streams

    # the files: each event once
    assert read_kind(out, "bid").num_rows == 5
    assert sorted(read_kind(out, "win").column("bid_id").to_pylist()) == sorted([b1.id, b2.id])
    conv = read_kind(out, "conversion")
    assert sorted(conv.column("stage").to_pylist()) == ["approved", "funded", "submitted"]
    loss = read_kind(out, "loss").to_pylist()
    assert [(x["bid_id"], x["loss_reason"], x["min_to_win_micros"]) for x in loss] == [(b3.id, 102, 3500)]
    assert read_kind(out, "sample").num_rows == 6  # every request (rate 1.0), test included
    assert read_kind(out, "config").num_rows == 1  # the start

    spend = 1250 + 800  # the billing notices (generic bills on burl): CPM 1.25 and 0.8 -> micros/imp
    r = sync_redis.Redis.from_url(redis_url)
    ledger = sum(int(r.hget(day_key(c, campaign_day(time.time(), 0)), "spent") or 0)
                 for c in {b1.cid, b2.cid, tb.cid} if c)
    assert ledger == spend  # the log agrees with the money ledger to the micro

    # the command in-process (a subprocess would block this test's event loop for its start-up)
    capsys.readouterr()
    assert main(["report", "--events", str(out), "--json",
                 "--configs", str(ROOT / "bidder_configs")]) == 0
    report = json.loads(capsys.readouterr().out)
    total = report["total"]
    assert (total["bids"], total["wins"], total["impressions"], total["billed"]) == (4, 2, 2, 2)
    assert total["spend_micros"] == spend and total["currency"] == "USD"
    assert (total["clicks"], total["applications"], total["approvals"], total["funded"]) == (1, 1, 1, 1)
    assert total["funded_micros"] == 2_500_500_000
    assert total["cost_per_funded_micros"] == spend
    assert total["avg_clearing_micros"] == 1025 and total["avg_bid_won_micros"] > 1025
    assert total["requests_sampled"] == 5 and total["losses"] == 1
    by_campaign = {c["campaign"]: c for c in report["campaigns"]}
    assert sum(c["bids"] for c in by_campaign.values()) == 4
    assert by_campaign[b1.cid or ""]["funded"] == 1
    assert [e["exchange"] for e in report["exchanges"]] == ["generic"]
    assert report["exchanges"][0]["spend_micros"] == spend

    assert main(["report", "--events", str(out), "--by", "campaign,day"]) == 0
    text = capsys.readouterr().out
    assert "funded" in text and "funnel" in text
    q = by_campaign[b1.cid or ""]["funnel"]["p_approve"]
    assert q["prior"] is not None and q["observed"] == 1.0 and q["prior"] < q["estimate"] < 1.0
    con = open_log(out)
    assert con.sql("SELECT count(*) FROM bid_outcomes").fetchall() == [(5,)]  # the test bid too


def test_report_rejects_unknown_dimension(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "dsp.cli", "report", "--events", str(tmp_path),
                           "--by", "planet"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "planet" in proc.stderr
