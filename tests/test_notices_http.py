"""Notice routes over real HTTP on loopback, against a real redis-server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import NamedTuple

import aiohttp
import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from dsp.budget.freqcap import CapRecorder, is_capped
from dsp.budget.keys import campaign_day, day_key, outcome_bucket, outcomes_key
from dsp.budget.outcomes import KEEP_AFTER_EXPIRY_S, OutcomeStore
from dsp.budget.spec import CampaignBudget, FrequencyCap
from dsp.features.keys import caps_key, user_key
from dsp.notices.service import NoticeService
from dsp.notices.signature import SIGNATURE_HEADER, sign
from dsp.notices.tokens import ClickToken, NoticeToken, TokenSigner
from dsp.observability.metrics import Metrics
from dsp.server.notice_routes import add_notice_routes
from dsp.testing.redis_server import reply_hash, reply_int

KEY = b"notice-test-key-0123456789"
SIGNER = TokenSigner({"k1": KEY}, active="k1")
USER = user_key("device-123")
LENDER_SECRET = b"lender-conversion-secret-0123456789"
CAP = FrequencyCap(max_impressions=2, window_s=3600)
BUDGETS = [CampaignBudget("c1", 1_000_000, frequency_cap=CAP),
           CampaignBudget("c2", 1_000_000, bills_on="nurl")]


class Tok(NamedTuple):
    """One bid's tokens, one per notice kind (as the bid response carries them)."""

    win: str
    bill: str
    loss: str
    click: str
    event: str


def tok(bid_id: str = "bid-1", campaign: str = "c1", price: int = 2_000, *, test: bool = False,
        expires_in_s: int = 600, signer: TokenSigner = SIGNER, floor: int = 0) -> Tok:
    now = int(time.time())
    win, bill, loss = signer.sign_kinds(
        NoticeToken(kid="k1", bid_id=bid_id, request_id="r1", imp_id="1", campaign_id=campaign,
                    exchange="x", bid_price_micros=price, currency="USD", user_key=USER,
                    issued_at_s=now - 1, expires_at_s=now + expires_in_s, test=test,
                    floor_micros=floor), ("win", "bill", "loss"))
    public = ClickToken(kid="k1", bid_id=bid_id, campaign_id=campaign, exchange="x",
                        issued_at_s=now - 1, expires_at_s=now + expires_in_s, test=test)
    return Tok(win, bill, loss, signer.sign_click(public), signer.sign_click(public, "event"))


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
                        if c == "c1" else None,
                        conversion_secrets=lambda: {"c1": LENDER_SECRET, "c2": b"c2-secret-000000000"})
    app = web.Application()
    add_notice_routes(app, svc)
    server = TestServer(app)
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield Env(session, server, metrics, redis_client)
    await server.close()


async def test_win_then_bill_commits_once(env: Env) -> None:
    t = tok()
    assert (await env.get("/notice/win", t=t.win, p="1.5"))[:2] == (200, "ok")
    assert (await env.get("/notice/win", t=t.win, p="1.5"))[:2] == (200, "duplicate")
    assert (await env.get("/notice/bill", t=t.bill, p="1.5"))[:2] == (200, "ok")
    assert (await env.get("/notice/bill", t=t.bill, p="1.5"))[:2] == (200, "duplicate")
    assert await env.spent() == 1_500  # CPM 1.5 -> 1500 micros for one impression
    assert env.count("bill", "duplicate") == 1 and env.count("win", "ok") == 1


async def test_a_bid_s_notices_are_one_field_kept_as_long_as_its_token(env: Env) -> None:
    # Redis holds one field per notified bid, in the hash of the hour the token was issued in,
    # kept until the token expires + the owner's last look-ups; not three days per kind.
    now = time.time()
    t = tok("bid-ttl", expires_in_s=1_200)
    for path, token in (("/notice/win", t.win), ("/notice/bill", t.bill),
                        ("/notice/bill", t.bill), ("/notice/loss", t.loss)):
        assert (await env.get(path, t=token, p="1.5"))[0] == 200
    key = outcomes_key("c1", outcome_bucket(int(now) - 1))
    assert await env.redis.hgetall(key) == {b"bid-ttl": b"7C1500"}
    assert 1_200 + KEEP_AFTER_EXPIRY_S - 10 <= await env.redis.ttl(key) <= 1_200 + KEEP_AFTER_EXPIRY_S


async def test_post_form_and_price_capped_at_bid(env: Env) -> None:
    async with env.session.post(env.server.make_url("/notice/bill"),
                                data={"t": tok(price=1_000).bill, "p": "7.0"}) as resp:
        assert resp.status == 200
    assert await env.spent() == 1_000
    assert env.metrics.price_anomalies.labels(kind="bill", anomaly="above_bid")._value.get() == 1


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
    params = {k: (tok().bill if v == "TOKEN" else v) for k, v in params.items()}
    code, text, _ = await env.get("/notice/bill", **params)
    assert code == status and field in text
    assert await env.spent() == 0


async def test_forged_and_expired_tokens_are_refused(env: Env) -> None:
    forged = tok(signer=TokenSigner({"k1": b"another-key-0123456789"}, active="k1"))
    assert (await env.get("/notice/bill", t=forged.bill, p="1.0"))[0] == 403
    _body, _, mac = tok().bill.partition(".")
    altered = tok(price=9_999_999).bill.partition(".")[0] + "." + mac  # body swapped, old MAC
    assert (await env.get("/notice/bill", t=altered, p="9000"))[0] == 403
    assert (await env.get("/notice/bill", t=tok(expires_in_s=-5).bill, p="1.0"))[0] == 410
    assert await env.spent() == 0
    assert env.count("bill", "invalid") == 2 and env.count("bill", "expired") == 1


async def test_replayed_token_counts_once(env: Env) -> None:
    t = tok("bid-r")
    for _ in range(5):
        assert (await env.get("/notice/bill", t=t.bill, p="2.0"))[0] == 200
    assert await env.spent() == 2_000


async def test_loss_then_win_and_bill_out_of_order(env: Env) -> None:
    t = tok("bid-o")
    assert (await env.get("/notice/loss", t=t.loss, r="102"))[1] == "ok"
    assert (await env.get("/notice/bill", t=t.bill, p="1.0"))[1] == "out_of_order"
    assert (await env.get("/notice/loss", t=t.loss, r="102"))[1] == "duplicate"
    assert (await env.get("/notice/loss", t=t.loss, r="abc"))[0] == 400
    assert await env.spent() == 1_000


async def test_nurl_exchange_commits_on_win(env: Env, redis_client: aioredis.Redis) -> None:
    t = tok("bid-n", campaign="c2")
    assert (await env.get("/notice/win", t=t.win, p="1.0"))[1] == "ok"
    assert (await env.get("/notice/bill", t=t.bill, p="1.0"))[1] == "ignored"
    spent = await redis_client.hget(day_key("c2", campaign_day(time.time(), 0)), "spent")
    assert reply_int(spent) == 1_000


async def test_test_bids_never_touch_money(env: Env) -> None:
    t = tok("bid-t", test=True)
    assert (await env.get("/notice/win", t=t.win, p="1.0"))[1] == "test"
    assert (await env.get("/notice/bill", t=t.bill, p="1.0"))[1] == "test"
    assert await env.spent() == 0
    assert not await env.redis.exists(caps_key(USER))


async def test_unknown_campaign_is_counted_as_unknown(env: Env) -> None:
    assert (await env.get("/notice/bill", t=tok("bid-u", campaign="gone").bill, p="1.0"))[1] == "unknown"


async def test_win_counts_toward_the_frequency_cap(env: Env) -> None:
    for i in range(3):
        await env.get("/notice/win", t=tok(f"bid-{i}").win, p="1.0")
    await env.get("/notice/win", t=tok("bid-0").win, p="1.0")  # duplicate: not counted
    caps = reply_hash(await env.redis.hgetall(caps_key(USER)))
    assert len(caps["c1"].split(b",")) == 2  # trimmed to the cap
    assert is_capped(caps, "c1", CAP, time.time())
    assert 0 < await env.redis.ttl(caps_key(USER)) <= 3600


async def test_click_redirects_to_configured_landing_only(env: Env) -> None:
    t = tok("bid-c")
    code, _, resp = await env.get("/notice/click", t=t.click, u="https://evil.example/")
    assert code == 302
    loc = resp.headers["Location"]
    assert loc == f"https://lender.example/apply?src=dsp&dsp_click={SIGNER.click_id('bid-c')}"
    assert "evil" not in loc and t.click not in loc and "." not in loc.split("dsp_click=")[1]
    await env.get("/notice/click", t=t.click)
    assert env.metrics.clicks.labels(campaign="c1")._value.get() == 1
    assert (await env.get("/notice/click", t=tok("bid-c2", campaign="c2").click))[0] == 404
    assert (await env.get("/notice/click", t="forged.token"))[0] == 403


async def test_each_token_is_good_for_its_own_kind_only(env: Env) -> None:
    t = tok("bid-k")
    for path, wrong in (("/notice/win", (t.bill, t.loss, t.click)),
                        ("/notice/bill", (t.win, t.loss, t.click)),
                        ("/notice/loss", (t.win, t.bill, t.click)),
                        ("/notice/click", (t.win, t.bill, t.loss))):
        for other in wrong:
            code, text, _ = await env.get(path, t=other, p="1.0")
            assert code == 403, (path, text)
    assert await env.spent() == 0
    assert env.metrics.clicks.labels(campaign="c1")._value.get() == 0
    # and each is good where it belongs
    assert (await env.get("/notice/win", t=t.win, p="1.0"))[1] == "ok"
    assert (await env.get("/notice/bill", t=t.bill, p="1.0"))[1] == "ok"
    assert await env.spent() == 1_000


async def test_price_below_the_signed_floor_is_an_anomaly_charged_at_the_floor(env: Env) -> None:
    t = tok("bid-f", price=3_000, floor=1_200)
    assert (await env.get("/notice/bill", t=t.bill, p="0"))[0] == 200
    assert await env.spent() == 1_200
    assert env.metrics.price_anomalies.labels(kind="bill", anomaly="below_floor")._value.get() == 1
    t2 = tok("bid-f2", price=3_000, floor=1_200)  # at the floor: no anomaly
    assert (await env.get("/notice/bill", t=t2.bill, p="1.2"))[0] == 200
    assert await env.spent() == 2_400
    assert env.metrics.price_anomalies.labels(kind="bill", anomaly="below_floor")._value.get() == 1


async def _post_conversion(env: Env, payload: object, *, secret: bytes = LENDER_SECRET,
                           t: int | None = None, header: str | None = None) -> tuple[int, str]:
    body = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
    sig = header if header is not None else sign(secret, body, int(time.time()) if t is None else t)
    async with env.session.post(env.server.make_url("/conversion"), data=body,
                                headers={SIGNATURE_HEADER: sig} if sig else {}) as resp:
        return resp.status, await resp.text()


async def test_conversion_names_the_click_id_and_is_signed(env: Env) -> None:
    t = tok("bid-v")
    _, _, resp = await env.get("/notice/click", t=t.click)
    click_id = resp.headers["Location"].split("dsp_click=")[1]
    conv = {"click_id": click_id, "event": "funded", "amount": 2500.0}
    for expected in ("ok", "duplicate"):
        assert await _post_conversion(env, conv) == (200, expected)
    value = env.metrics.conversion_value_micros.labels(campaign="c1", event="funded")._value.get()
    assert value == 2_500_000_000
    for bad, field in (({"click_id": click_id, "event": "bought"}, "event"),
                       ({"click_id": click_id, "event": "funded", "amount": -1}, "amount"),
                       ({"click_id": click_id, "event": "funded", "amount": 1e12}, "amount"),
                       ({"event": "funded"}, "click_id")):
        code, text = await _post_conversion(env, bad)
        assert code == 400 and field in text, text
    assert (await _post_conversion(env, b"{not json"))[0] == 400
    assert await _post_conversion(env, {"click_id": "nope", "event": "funded"}) == \
        (404, "click_id: unknown, or older than the conversion window")


async def test_unsigned_wrong_or_stale_conversions_are_401_and_change_nothing(env: Env) -> None:
    t = tok("bid-s")
    _, _, resp = await env.get("/notice/click", t=t.click)
    conv = {"click_id": resp.headers["Location"].split("dsp_click=")[1], "event": "funded",
            "amount": 1e6}
    now = int(time.time())
    cases = [{"header": ""}, {"header": "t=abc,v1=00"}, {"header": "ключ"},
             {"secret": b"another-lender-secret"},
             {"t": now - 301}, {"t": now + 301}]
    for case in cases:
        code, text = await _post_conversion(env, conv, **case)  # type: ignore[arg-type]
        assert code == 401 and SIGNATURE_HEADER in text, (case, text)
    # the body changed after signing
    body = msgspec.json.encode(conv)
    sig = sign(LENDER_SECRET, body, now)
    assert (await _post_conversion(env, body.replace(b"1000000", b"9000000"), header=sig))[0] == 401
    assert env.metrics.conversions.labels(campaign="c1", event="funded")._value.get() == 0
    assert env.count("conversion", "unauthorized") == len(cases) + 1
    # a click of a campaign whose lender has another secret: the right signature is that lender's
    t2 = tok("bid-s2", campaign="c2")
    assert (await env.get("/notice/click", t=t2.click))[0] == 404  # c2 has no landing page here


async def test_unsubstituted_macros(env: Env) -> None:
    t = tok("bid-m")
    # a win on a burl exchange needs no price; the bill does
    assert (await env.get("/notice/win", t=t.win, p="${AUCTION_PRICE}"))[:2] == (200, "ok")
    assert (await env.get("/notice/bill", t=t.bill, p="${AUCTION_PRICE}"))[0] == 400
    assert (await env.get("/notice/loss", t=tok("bid-m2").loss, r="${AUCTION_LOSS}"))[:2] == (200, "ok")
    # a nurl exchange commits on the win: the price is required there
    assert (await env.get("/notice/win", t=tok("bid-m3", campaign="c2").win, p="${AUCTION_PRICE}"))[0] == 400
    assert await env.spent() == 0


async def test_bills_on_follows_the_exchange_profile(redis_client: aioredis.Redis) -> None:
    # In the server this is Snapshot.bills_on(token.exchange) (tests/test_config_notices.py).
    svc = NoticeService(SIGNER, OutcomeStore(redis_client), CapRecorder(redis_client), Metrics(),
                        BUDGETS, bills_on_for=lambda t: "nurl" if t.exchange == "x" else None)
    out = await svc.win(tok("bid-p").win, "1.0")  # exchange "x" sends no burl: the win commits
    assert (out.result, out.committed_micros) == ("ok", 1_000)


async def test_clearing_price_in_the_auction_currency_is_converted(env: Env) -> None:
    """A bid of 2,000 USD micros was sent as 180,000 RUB micros; the exchange reports RUB."""
    now = int(time.time())
    win, bill = SIGNER.sign_kinds(NoticeToken(
        kid="k1", bid_id="bid-rub", request_id="r1", imp_id="1", campaign_id="c1", exchange="x",
        bid_price_micros=2_000, currency="USD", user_key=USER, issued_at_s=now - 1,
        expires_at_s=now + 600, auction_currency="RUB", auction_bid_micros=180_000),
        ("win", "bill"))
    assert (await env.get("/notice/win", t=win, p="90"))[:2] == (200, "ok")  # 90 RUB CPM
    assert (await env.get("/notice/bill", t=bill, p="90"))[:2] == (200, "ok")
    assert await env.spent() == 1_000  # 90,000 RUB micros per imp = 1,000 USD micros
    assert env.metrics.price_anomalies.labels(kind="bill", anomaly="above_bid")._value.get() == 0


async def test_video_tracking_events_are_counted_and_move_no_money(env: Env) -> None:
    t = tok("bid-ev")
    for event in ("impression", "start", "firstQuartile", "complete"):
        code, _, _ = await env.get("/notice/event", t=t.event, e=event)
        assert code == 200
    assert env.metrics.notices.labels(kind="video_start", result="ok")._value.get() == 1
    assert env.metrics.notices.labels(kind="video_complete", result="ok")._value.get() == 1
    assert (await env.get("/notice/event", t=t.event, e="rewind"))[0] == 400
    for money_token in (t.win, t.bill, t.loss, t.click):  # only the public event token
        assert (await env.get("/notice/event", t=money_token, e="start"))[0] == 403
    assert (await env.get("/notice/bill", t=t.event, p="1.0"))[0] == 403  # closed set of names
    assert (await env.get("/notice/event", t="forged.token", e="start"))[0] == 403
    assert env.metrics.spend_micros.labels(campaign="c1")._value.get() == 0
