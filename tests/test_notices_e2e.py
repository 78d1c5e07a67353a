"""Bid -> notices through the real bidder app (dsp.server.app wiring) on loopback, real Redis."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
import pytest
import redis as sync_redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from dsp.budget.keys import campaign_day, day_key
from dsp.notices.signature import SIGNATURE_HEADER, sign
from dsp.observability.metrics import Metrics
from dsp.openrtb.response import Bid, BidResponse
from dsp.server.app import SERVICES, build_app
from dsp.testing.serve import bidder_settings
from dsp.testing.users import desktop_banner_request, seed_interested

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "tests" / "fixtures" / "configs" / "demo"
USER = "notice-e2e-user"
Client = TestClient[web.Request, web.Application]


LENDER_SECRET = "quickloan-conversion-secret-for-tests"


@pytest.fixture()
async def client(redis_url: str, monkeypatch: pytest.MonkeyPatch
                 ) -> AsyncIterator[Client]:
    monkeypatch.setenv("DSP_LENDER_QUICKLOAN_SECRET", LENDER_SECRET)
    seed_interested(redis_url, USER)
    settings = bidder_settings(redis_url, DEMO, max_body_bytes=64 * 1024)
    app = build_app(settings, Metrics(CollectorRegistry()))
    async with TestClient(TestServer(app)) as c:
        yield c


def _first_bid(body: bytes) -> Bid:
    seatbid = msgspec.json.decode(body, type=BidResponse).seatbid
    assert seatbid
    return seatbid[0].bid[0]


def _path(url: str, price: str) -> str:
    parts = urlsplit(url.replace("${AUCTION_PRICE}", price).replace("${AUCTION_LOSS}", "102"))
    return f"{parts.path}?{parts.query}"


async def test_bid_then_win_and_bill_commit_once(client: Client,
                                                 redis_url: str) -> None:
    req = desktop_banner_request("req-n", USER)
    resp = await client.post("/bid/generic", json=req, headers={"x-openrtb-version": "2.6"})
    assert resp.status == 200, await resp.text()
    bid = _first_bid(await resp.read())
    assert bid.nurl and bid.burl and bid.cid
    services = client.app[SERVICES]  # type: ignore[index]
    ledger = services.money.ledger(bid.cid)
    assert ledger is not None and ledger.is_reserved(bid.id)  # the bid reserved its price
    clearing = f"{bid.price * 0.6:.4f}"
    for _ in range(2):  # duplicates
        assert (await client.get(_path(bid.nurl, clearing))).status == 200
        assert (await client.get(_path(bid.burl, clearing))).status == 200
    assert (await client.get(_path(bid.lurl or "", clearing))).status == 200  # loss after win
    r = sync_redis.Redis.from_url(redis_url)
    spent = int(r.hget(day_key(bid.cid, campaign_day(time.time(), 0)), "spent") or 0)
    assert spent == round(float(clearing) * 1000)  # one impression at the clearing CPM
    forged = bid.burl.replace("t=", "t=x", 1)
    assert (await client.get(_path(forged, clearing))).status == 403
    services.money.clock = lambda: time.time() + 3  # past the first outcome look-up (2 s)
    await services.money.tick()
    assert not ledger.is_reserved(bid.id) and ledger.drift_micros() == 0


async def test_win_notices_cap_the_user_on_the_bid_path(client: Client) -> None:
    wins: dict[str, int] = {}
    caps = {"quickloan-prime": 6, "cashbridge-starter": 3}
    for i in range(12):
        req = {"id": f"req-cap-{i}", "tmax": 200,
               "imp": [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 0.5}],
               "site": {"id": "s", "domain": "news.example", "cat": ["IAB12"]},
               "device": {"devicetype": 2, "os": "Windows", "geo": {"country": "USA"}},
               "user": {"id": USER}}
        resp = await client.post("/bid/generic", json=req, headers={"x-openrtb-version": "2.6"})
        if resp.status != 200:
            break
        bid = _first_bid(await resp.read())
        assert bid.cid and bid.nurl
        assert wins.get(bid.cid, 0) < caps[bid.cid]  # never bids for a user past the cap
        assert (await client.get(_path(bid.nurl, "1.0"))).status == 200
        wins[bid.cid] = wins.get(bid.cid, 0) + 1
    assert wins == {"quickloan-prime": 6} or all(n == caps[c] for c, n in wins.items()), wins
    assert sum(wins.values()) < 12  # the caps ran out before the requests did


async def test_click_in_the_markup_then_a_signed_conversion(client: Client) -> None:
    """The whole story a user and a lender see: the served markup's link goes through
    /notice/click, the landing page gets a click id (no token), the lender's server posts the
    conversion naming it, signed with its secret."""
    req = desktop_banner_request("req-click", USER)
    resp = await client.post("/bid/generic", json=req)
    assert resp.status == 200, await resp.text()
    answer = msgspec.json.decode(await resp.read(), type=BidResponse)
    assert answer.seatbid
    bid = answer.seatbid[0].bid[0]
    assert bid.adm and 'href="http://bidder.test/notice/click?t=' in bid.adm
    for notice_url in (bid.nurl, bid.burl, bid.lurl):  # no notice token reaches the browser
        assert notice_url and urlsplit(notice_url).query.split("t=")[1].split("&")[0] not in bid.adm
    href = bid.adm.split('href="', 1)[1].split('"', 1)[0]
    # a click token cannot win or bill
    click_token = urlsplit(href).query.split("t=", 1)[1]
    assert (await client.get(f"/notice/bill?t={click_token}&p=1.0")).status == 403
    click = await client.get(_path(href, ""), allow_redirects=False)
    assert click.status == 302
    services = client.app[SERVICES]  # type: ignore[index]
    landing = services.holder.current.landing_url(bid.cid or "")
    location = click.headers["Location"]
    assert landing and location.startswith(landing + "&dsp_click=") and click_token not in location
    # an unsigned landing parameter is never followed (no open redirect)
    evil = await client.get(_path(href, "") + "&u=https://evil.example/", allow_redirects=False)
    assert "evil.example" not in evil.headers.get("Location", "")
    click_id = location.split("dsp_click=", 1)[1]
    body = msgspec.json.encode({"click_id": click_id, "event": "approved", "amount": 3000})
    unsigned = await client.post("/conversion", data=body)
    assert unsigned.status == 401
    signed = await client.post("/conversion", data=body, headers={
        SIGNATURE_HEADER: sign(LENDER_SECRET.encode(), body, int(time.time()))})
    assert signed.status == 200 and await signed.text() == "ok"
    got = services.metrics.conversions.labels(campaign=bid.cid, event="approved")._value.get()
    assert got == 1


async def test_eur_auction_bills_in_campaign_currency(client: Client,
                                                      redis_url: str) -> None:
    """A EUR auction: the exchange reports the clearing price in EUR; spend is counted in USD."""
    from dsp.notices.tokens import TokenSigner

    req = {"id": "req-eur", "tmax": 200, "cur": ["EUR"],
           "imp": [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 0.1, "bidfloorcur": "EUR"}],
           "site": {"id": "s", "domain": "news.example", "cat": ["IAB12"]},
           "device": {"devicetype": 2, "os": "Windows", "geo": {"country": "DEU"}},
           "user": {"id": USER}}
    resp = await client.post("/bid/generic", json=req)
    assert resp.status == 200, await resp.text()
    answer = msgspec.json.decode(await resp.read(), type=BidResponse)
    assert answer.cur == "EUR"
    assert answer.seatbid
    bid = answer.seatbid[0].bid[0]
    token_text = urlsplit(bid.burl or "").query.split("t=", 1)[1].split("&", 1)[0]
    token = TokenSigner({"k1": b"0123456789abcdef0123456789"}, "k1").verify(token_text, "bill")
    assert token.auction_currency == "EUR" and token.currency == "USD"
    clearing_eur = f"{bid.price * 0.5:.6f}"
    assert (await client.get(_path(bid.nurl or "", clearing_eur))).status == 200
    assert (await client.get(_path(bid.burl or "", clearing_eur))).status == 200
    r = sync_redis.Redis.from_url(redis_url)
    spent = int(r.hget(day_key(bid.cid or "", campaign_day(time.time(), 0)), "spent") or 0)
    expected_usd = float(clearing_eur) * 1000 * 1.08  # CPM -> micros per imp, EUR -> USD
    assert abs(spent - expected_usd) <= 2
    assert spent < token.bid_price_micros  # half the bid, not clamped to it
