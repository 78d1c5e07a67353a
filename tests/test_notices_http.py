"""Notice routes over real HTTP on loopback, against a real redis-server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from dsp.budget.freqcap import CapRecorder, is_capped
from dsp.budget.keys import campaign_day, day_key
from dsp.budget.outcomes import OutcomeStore
from dsp.budget.spec import CampaignBudget, FrequencyCap
from dsp.features.keys import caps_key, user_key
from dsp.notices.service import NoticeService
from dsp.notices.tokens import NoticeToken, TokenSigner
from dsp.observability.metrics import Metrics
from dsp.server.notice_routes import add_notice_routes
from dsp.testing.redis_server import reply_hash, reply_int

KEY = b"notice-test-key-0123456789"
SIGNER = TokenSigner({"k1": KEY}, active="k1")
USER = user_key("device-123")
CAP = FrequencyCap(max_impressions=2, window_s=3600)
BUDGETS = [CampaignBudget("c1", 1_000_000, frequency_cap=CAP),
           CampaignBudget("c2", 1_000_000, bills_on="nurl")]


def tok(bid_id: str = "bid-1", campaign: str = "c1", price: int = 2_000, *, test: bool = False,
        expires_in_s: int = 600, signer: TokenSigner = SIGNER) -> str:
    now = int(time.time())
    return signer.sign(NoticeToken(kid="k1", bid_id=bid_id, request_id="r1", imp_id="1",
                                   campaign_id=campaign, exchange="x", bid_price_micros=price,
                                   currency="USD", user_key=USER, issued_at_s=now - 1,
                                   expires_at_s=now + expires_in_s, test=test))


class Env:
    def __init__(self, session: aiohttp.ClientSession, server: TestServer, metrics: Metrics,
                 redis: aioredis.Redis) -> None:
        self.session, self.server, self.metrics, self.redis = session, server, metrics, redis

    async def get(self, path: str, **params: str) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.session.get(self.server.make_url(path), params=params,
                                    allow_redirects=False) as resp:
            return resp.status, await resp.text(), resp

    async def spent(self) -> int:
        raw = await self.redis.hget(day_key("c1", campaign_day(time.time(), 0)), "spent")
        return int(raw or 0)

    def count(self, kind: str, result: str) -> float:
        return self.metrics.notices.labels(kind=kind, result=result)._value.get()


@pytest.fixture()
async def env(redis_client: aioredis.Redis) -> AsyncIterator[Env]:
    metrics = Metrics()
    svc = NoticeService(SIGNER, OutcomeStore(redis_client), CapRecorder(redis_client), metrics,
                        BUDGETS, landing_url_for=lambda c: "https://lender.example/apply?src=dsp"
                        if c == "c1" else None)
    app = web.Application()
    add_notice_routes(app, svc)
    server = TestServer(app)
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield Env(session, server, metrics, redis_client)
    await server.close()


async def test_win_then_bill_commits_once(env: Env) -> None:
    t = tok()
    assert (await env.get("/notice/win", t=t, p="1.5"))[:2] == (200, "ok")
    assert (await env.get("/notice/win", t=t, p="1.5"))[:2] == (200, "duplicate")
    assert (await env.get("/notice/bill", t=t, p="1.5"))[:2] == (200, "ok")
    assert (await env.get("/notice/bill", t=t, p="1.5"))[:2] == (200, "duplicate")
    assert await env.spent() == 1_500  # CPM 1.5 -> 1500 micros for one impression
    assert env.count("bill", "duplicate") == 1 and env.count("win", "ok") == 1


async def test_post_form_and_price_capped_at_bid(env: Env) -> None:
    async with env.session.post(env.server.make_url("/notice/bill"),
                                data={"t": tok(price=1_000), "p": "7.0"}) as resp:
        assert resp.status == 200
    assert await env.spent() == 1_000
    assert env.count("bill", "price_above_bid") == 1


@pytest.mark.parametrize(("params", "status", "field"), [
    ({"p": "1.0"}, 400, "t:"),
    ({"t": "garbage", "p": "1.0"}, 403, "malformed"),
    ({"t": "x" * 3000, "p": "1.0"}, 403, "malformed"),
    ({"t": "TOKEN", "p": "${AUCTION_PRICE}"}, 400, "p:"),
    ({"t": "TOKEN", "p": "-1"}, 400, "p:"),
    ({"t": "TOKEN", "p": "nan"}, 400, "p:"),
    ({"t": "TOKEN"}, 400, "p:"),
])
async def test_bad_input_is_4xx_and_changes_nothing(env: Env, params: dict[str, str], status: int,
                                                    field: str) -> None:
    params = {k: (tok() if v == "TOKEN" else v) for k, v in params.items()}
    code, text, _ = await env.get("/notice/bill", **params)
    assert code == status and field in text
    assert await env.spent() == 0


async def test_forged_and_expired_tokens_are_refused(env: Env) -> None:
    forged = tok(signer=TokenSigner({"k1": b"another-key-0123456789"}, active="k1"))
    assert (await env.get("/notice/bill", t=forged, p="1.0"))[0] == 403
    _body, _, mac = tok().partition(".")
    altered = tok(price=9_999_999).partition(".")[0] + "." + mac  # body swapped, old MAC
    assert (await env.get("/notice/bill", t=altered, p="9000"))[0] == 403
    assert (await env.get("/notice/bill", t=tok(expires_in_s=-5), p="1.0"))[0] == 410
    assert await env.spent() == 0
    assert env.count("bill", "invalid") == 2 and env.count("bill", "expired") == 1


async def test_replayed_token_counts_once(env: Env) -> None:
    t = tok("bid-r")
    for _ in range(5):
        assert (await env.get("/notice/bill", t=t, p="2.0"))[0] == 200
    assert await env.spent() == 2_000


async def test_loss_then_win_and_bill_out_of_order(env: Env) -> None:
    t = tok("bid-o")
    assert (await env.get("/notice/loss", t=t, r="102"))[1] == "ok"
    assert (await env.get("/notice/bill", t=t, p="1.0"))[1] == "out_of_order"
    assert (await env.get("/notice/loss", t=t, r="102"))[1] == "duplicate"
    assert (await env.get("/notice/loss", t=t, r="abc"))[0] == 400
    assert await env.spent() == 1_000


async def test_nurl_exchange_commits_on_win(env: Env, redis_client: aioredis.Redis) -> None:
    t = tok("bid-n", campaign="c2")
    assert (await env.get("/notice/win", t=t, p="1.0"))[1] == "ok"
    assert (await env.get("/notice/bill", t=t, p="1.0"))[1] == "ignored"
    spent = await redis_client.hget(day_key("c2", campaign_day(time.time(), 0)), "spent")
    assert reply_int(spent) == 1_000


async def test_test_bids_never_touch_money(env: Env) -> None:
    t = tok("bid-t", test=True)
    assert (await env.get("/notice/win", t=t, p="1.0"))[1] == "test"
    assert (await env.get("/notice/bill", t=t, p="1.0"))[1] == "test"
    assert await env.spent() == 0
    assert not await env.redis.exists(caps_key(USER))


async def test_unknown_campaign_is_counted_as_unknown(env: Env) -> None:
    assert (await env.get("/notice/bill", t=tok("bid-u", campaign="gone"), p="1.0"))[1] == "unknown"


async def test_win_counts_toward_the_frequency_cap(env: Env) -> None:
    for i in range(3):
        await env.get("/notice/win", t=tok(f"bid-{i}"), p="1.0")
    await env.get("/notice/win", t=tok("bid-0"), p="1.0")  # duplicate: not counted
    caps = reply_hash(await env.redis.hgetall(caps_key(USER)))
    assert len(caps["c1"].split(b",")) == 2  # trimmed to the cap
    assert is_capped(caps, "c1", CAP, time.time())
    assert 0 < await env.redis.ttl(caps_key(USER)) <= 3600


async def test_click_redirects_to_configured_landing_only(env: Env) -> None:
    t = tok("bid-c")
    code, _, resp = await env.get("/notice/click", t=t, u="https://evil.example/")
    assert code == 302
    loc = resp.headers["Location"]
    assert loc.startswith("https://lender.example/apply?src=dsp&dsp_t=") and "evil" not in loc
    await env.get("/notice/click", t=t)
    assert env.metrics.clicks.labels(campaign="c1")._value.get() == 1
    assert (await env.get("/notice/click", t=tok("bid-c2", campaign="c2")))[0] == 404
    assert (await env.get("/notice/click", t="forged.token"))[0] == 403


async def test_conversion(env: Env) -> None:
    url = env.server.make_url("/conversion")
    body = msgspec.json.encode({"token": tok("bid-v", expires_in_s=-100), "event": "funded",
                                "amount": 2500.0})
    for expected in ("ok", "duplicate"):
        async with env.session.post(url, data=body) as resp:
            assert resp.status == 200 and await resp.text() == expected
    value = env.metrics.conversion_value_micros.labels(campaign="c1", event="funded")._value.get()
    assert value == 2_500_000_000
    for bad, field in (({"token": tok(), "event": "bought"}, "event"),
                       ({"token": tok(), "event": "funded", "amount": -1}, "amount"),
                       ({"event": "funded"}, "token"), ({"token": "x.y", "event": "funded"}, "")):
        async with env.session.post(url, data=msgspec.json.encode(bad)) as resp:
            assert resp.status in (400, 403) and field in await resp.text()
    async with env.session.post(url, data=b"{not json") as resp:
        assert resp.status == 400


async def test_unsubstituted_macros(env: Env) -> None:
    t = tok("bid-m")
    # a win on a burl exchange needs no price; the bill does
    assert (await env.get("/notice/win", t=t, p="${AUCTION_PRICE}"))[:2] == (200, "ok")
    assert (await env.get("/notice/bill", t=t, p="${AUCTION_PRICE}"))[0] == 400
    assert (await env.get("/notice/loss", t=tok("bid-m2"), r="${AUCTION_LOSS}"))[:2] == (200, "ok")
    # a nurl exchange commits on the win: the price is required there
    assert (await env.get("/notice/win", t=tok("bid-m3", campaign="c2"), p="${AUCTION_PRICE}"))[0] == 400
    assert await env.spent() == 0


async def test_bills_on_follows_the_exchange_profile(redis_client: aioredis.Redis) -> None:
    # In the server this is Snapshot.bills_on(token.exchange) (tests/test_config_notices.py).
    svc = NoticeService(SIGNER, OutcomeStore(redis_client), CapRecorder(redis_client), Metrics(),
                        BUDGETS, bills_on_for=lambda t: "nurl" if t.exchange == "x" else None)
    out = await svc.win(tok("bid-p"), "1.0")  # exchange "x" sends no burl: the win commits
    assert (out.result, out.committed_micros) == ("ok", 1_000)


async def test_clearing_price_in_the_auction_currency_is_converted(env: Env) -> None:
    """A bid of 2,000 USD micros was sent as 180,000 RUB micros; the exchange reports RUB."""
    now = int(time.time())
    t = SIGNER.sign(NoticeToken(kid="k1", bid_id="bid-rub", request_id="r1", imp_id="1",
                                campaign_id="c1", exchange="x", bid_price_micros=2_000,
                                currency="USD", user_key=USER, issued_at_s=now - 1,
                                expires_at_s=now + 600, auction_currency="RUB",
                                auction_bid_micros=180_000))
    assert (await env.get("/notice/win", t=t, p="90"))[:2] == (200, "ok")  # 90 RUB CPM
    assert (await env.get("/notice/bill", t=t, p="90"))[:2] == (200, "ok")
    assert await env.spent() == 1_000  # 90,000 RUB micros per imp = 1,000 USD micros
    assert env.count("bill", "price_above_bid") == 0


async def test_video_tracking_events_are_counted_and_move_no_money(env: Env) -> None:
    t = tok("bid-ev")
    for event in ("start", "firstQuartile", "complete"):
        code, _, _ = await env.get("/notice/event", t=t, e=event)
        assert code == 200
    assert env.metrics.notices.labels(kind="video_start", result="ok")._value.get() == 1
    assert env.metrics.notices.labels(kind="video_complete", result="ok")._value.get() == 1
    assert (await env.get("/notice/event", t=t, e="rewind"))[0] == 400  # closed set of names
    assert (await env.get("/notice/event", t="forged.token", e="start"))[0] == 403
    assert env.metrics.spend_micros.labels(campaign="c1")._value.get() == 0
