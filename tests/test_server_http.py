"""The bidder over real HTTP on loopback: real Redis, real ONNX models, the demo config."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import redis as sync_redis
from prometheus_client import CollectorRegistry

from dsp.features.writer import write_rows
from dsp.observability.metrics import Metrics
from dsp.openrtb.response import BidResponse
from dsp.server.app import build_app
from dsp.server.settings import TRANSPORTS, Settings
from dsp.testing.redis_server import free_port
from dsp.testing.serve import serving
from dsp.testing.users import interested_user_row

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "tests" / "fixtures" / "configs" / "demo"
CORPUS = ROOT.parent / "shared" / "openrtb-corpus"
VALID = sorted(CORPUS.glob("*/*.json"))
BAD = sorted(p for p in (CORPUS / "bad").rglob("*") if p.is_file())
KNOWN = "known-user-1"


def _settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, configs_dir=str(DEMO),
                    models_dir=str(ROOT / "models"), public_url="http://bidder.test",
                    token_keys={"k1": b"0123456789abcdef0123456789"}, token_active="k1",
                    max_body_bytes=64 * 1024, reload_check_s=3600)


@pytest.fixture(params=TRANSPORTS)
async def client(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the bidder served by ``dsp serve``'s code with each transport: the lean front
    (production default: bids served by the front, everything else handed to aiohttp) and plain
    aiohttp. Every test below must pass on both."""
    r = sync_redis.Redis.from_url(redis_url)
    write_rows(r, [KNOWN], interested_user_row())
    r.close()
    settings = msgspec.structs.replace(_settings(redis_url), transport=request.param)
    app = build_app(settings, Metrics(CollectorRegistry()))
    async with serving(app, settings) as url, aiohttp.ClientSession(base_url=url) as session:
        yield session


def _request(user_id: str = KNOWN, **over: object) -> dict[str, object]:
    req: dict[str, object] = {
        "id": "req-1", "tmax": 200,
        "imp": [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 0.5}],
        "site": {"id": "s", "domain": "news.example", "cat": ["IAB12"]},
        "device": {"devicetype": 2, "os": "Windows", "geo": {"country": "USA"}},
        "user": {"id": user_id}}
    req.update(over)
    return req


async def test_known_user_gets_a_priced_bid(client: aiohttp.ClientSession) -> None:
    resp = await client.post("/bid/generic", json=_request(), headers={"x-openrtb-version": "2.6"})
    assert resp.status == 200, await resp.text()
    assert resp.headers["x-openrtb-version"] == "2.6"
    body = msgspec.json.decode(await resp.read(), type=BidResponse)
    assert body.id == "req-1" and body.cur == "USD" and body.seatbid
    bid = body.seatbid[0].bid[0]
    assert bid.impid == "1" and 0 < bid.price <= 6.0 and bid.crid == "ql-300x250"
    assert bid.cat == ["IAB13-2"] and bid.adomain == ["quickloan.example"] and bid.mtype == 1
    assert bid.nurl and bid.nurl.startswith("http://bidder.test/notice/win?t=")
    assert bid.burl and "${AUCTION_PRICE}" in bid.burl
    assert bid.lurl and "${AUCTION_LOSS}" in bid.lurl


async def test_unknown_user_no_bid(client: aiohttp.ClientSession) -> None:
    resp = await client.post("/bid/generic", json=_request(user_id="nobody-we-know"))
    assert resp.status == 204


async def test_nbr_body_when_the_exchange_wants_one(client: aiohttp.ClientSession) -> None:
    resp = await client.post("/bid/bidswitch", json=_request(regs={"coppa": 1}))
    assert resp.status == 200
    assert json.loads(await resp.read()) == {"id": "req-1", "nbr": 7}


async def test_gzip_in_and_out(client: aiohttp.ClientSession) -> None:
    raw = gzip.compress(json.dumps(_request()).encode())
    resp = await client.post("/bid/generic", data=raw, auto_decompress=False,
                             headers={"Content-Encoding": "gzip", "Accept-Encoding": "gzip",
                                      "Content-Type": "application/json"})
    assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip"
    body = json.loads(gzip.decompress(await resp.read()))
    assert body["seatbid"][0]["bid"][0]["impid"] == "1"


async def test_http_errors(client: aiohttp.ClientSession) -> None:
    resp = await client.post("/bid/nowhere", json=_request())
    assert resp.status == 404
    resp = await client.get("/bid/generic")
    assert resp.status == 405
    resp = await client.post("/bid/generic", data=b"{" + b" " * (70 * 1024) + b"}")
    assert resp.status == 413
    bomb = gzip.compress(b"{" + b" " * (200 * 1024) + b"}")
    resp = await client.post("/bid/generic", data=bomb, headers={"Content-Encoding": "gzip"})
    assert resp.status == 413
    resp = await client.post("/bid/generic", data=b"\x1f\x8bnot gzip", headers={"Content-Encoding": "gzip"})
    assert resp.status == 400


async def test_lax_exchange_accepts_numeric_strings(client: aiohttp.ClientSession) -> None:
    body = (CORPUS / "bad/invalid-openrtb/rtb4free--banner-w-h-as-strings.json").read_bytes()
    assert (await client.post("/bid/generic", data=body)).status == 400
    assert (await client.post("/bid/smaato", data=body)).status in (200, 204)


async def test_every_corpus_request_gets_200_or_204(client: aiohttp.ClientSession) -> None:
    for path in VALID:
        resp = await client.post("/bid/generic", data=path.read_bytes())
        assert resp.status in (200, 204), f"{path}: {resp.status} {await resp.text()}"
        if resp.status == 200:
            body = msgspec.json.decode(await resp.read(), type=BidResponse)
            assert body.id == json.loads(path.read_bytes())["id"]


async def test_every_bad_corpus_request_gets_400_naming_the_problem(
        client: aiohttp.ClientSession) -> None:
    for path in BAD:
        resp = await client.post("/bid/generic", data=path.read_bytes())
        assert resp.status == 400, f"{path}: {resp.status}"
        err = json.loads(await resp.read())
        assert set(err) == {"error", "path"} and err["error"]


async def test_health_and_readiness(client: aiohttp.ClientSession) -> None:
    assert (await client.get("/healthz")).status == 200
    resp = await client.get("/readyz")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["checks"] == {"redis": True, "models": True, "config": True}
    assert body["models"] == {"intent": True, "risk": True}  # every model of models/plan.json


async def test_readiness_fails_when_a_configured_model_stops_answering(redis_url: str) -> None:
    import msgspec
    from aiohttp.test_utils import TestClient, TestServer

    from dsp.server.app import SERVICES

    class Broken:
        def predict(self, rows: object) -> object:
            raise RuntimeError("session lost")

    app = build_app(_settings(redis_url), Metrics(CollectorRegistry()))
    async with TestClient(TestServer(app)) as c:
        scorer = app[SERVICES].scorer
        scorer.steps = tuple(msgspec.structs.replace(st, predictor=Broken()) if st.model == "risk" else st
                             for st in scorer.steps)
        resp = await c.get("/readyz")
        assert resp.status == 503
        body = await resp.json()
        assert body["checks"]["models"] is False and body["models"] == {"intent": True, "risk": False}


@pytest.fixture(params=TRANSPORTS)
async def admin(redis_url: str, request: pytest.FixtureRequest
                ) -> AsyncIterator[tuple[aiohttp.ClientSession, aiohttp.ClientSession]]:
    """(bid port client, admin port client) of one server."""
    r = sync_redis.Redis.from_url(redis_url)
    write_rows(r, [KNOWN], interested_user_row())
    r.close()
    settings = msgspec.structs.replace(_settings(redis_url), transport=request.param, admin_port=0)
    app = build_app(settings, Metrics(CollectorRegistry()))
    async with serving(app, settings) as url, aiohttp.ClientSession(base_url=url) as bid, \
            aiohttp.ClientSession(base_url=url.admin) as adm:
        yield bid, adm


async def test_admin_and_metrics_are_not_on_the_bid_port(
        admin: tuple[aiohttp.ClientSession, aiohttp.ClientSession]) -> None:
    bid, adm = admin
    assert (await bid.post("/admin/reload")).status in (404, 405)
    assert (await bid.get("/metrics")).status == 404
    resp = await adm.post("/admin/reload")  # loopback, no DSP_ADMIN_TOKEN: open
    assert resp.status == 200 and (await resp.json())["ok"] is True
    assert (await adm.get("/metrics")).status == 200
    assert (await adm.get("/bid/generic")).status == 404


async def test_admin_token_compared_as_bytes(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSP_ADMIN_TOKEN", "s3cret")
    settings = msgspec.structs.replace(_settings(redis_url), admin_port=0)
    app = build_app(settings, Metrics(CollectorRegistry()))
    async with serving(app, settings) as url:
        port = int(url.admin.rsplit(":", 1)[1])
        async with aiohttp.ClientSession(base_url=url.admin) as adm:
            assert (await adm.post("/admin/reload")).status == 403
            assert (await adm.post("/admin/reload", headers={"Authorization": "Bearer nope"})).status == 403
            resp = await adm.post("/admin/reload", headers={"Authorization": "Bearer s3cret"})
            assert resp.status == 200
            assert (await adm.get("/metrics")).status == 200  # loopback: no token needed
        # A non-ASCII Authorization header: 403, never a 500.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /admin/reload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     + "ключ".encode() + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), timeout=10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 403"), answer[:80]


async def test_redis_down_degrades_without_errors() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    app = build_app(_settings(dead), Metrics(CollectorRegistry()))
    async with serving(app, _settings(dead)) as url, aiohttp.ClientSession(base_url=url) as c:
        resp = await c.post("/bid/generic", json=_request())
        assert resp.status == 204  # QuickLoan needs a known user; unknown now
        mobile = _request(device={"devicetype": 4, "os": "android"},
                          imp=[{"id": "1", "banner": {"w": 320, "h": 50}}])
        resp = await c.post("/bid/generic", json=mobile)
        assert resp.status in (200, 204)
        assert (await c.get("/readyz")).status == 503
        assert (await c.get("/healthz")).status == 200


async def test_metrics_record_the_bid_path(
        admin: tuple[aiohttp.ClientSession, aiohttp.ClientSession]) -> None:
    client, adm = admin
    assert (await client.post("/bid/generic", json=_request())).status == 200
    assert (await client.post("/bid/generic", json=_request(regs={"coppa": 1}))).status == 204
    assert (await client.post("/bid/generic", data=b"{")).status == 400
    text = await (await adm.get("/metrics")).text()
    assert 'dsp_bids_total{campaign="quickloan-prime",exchange="generic"} 1.0' in text
    assert 'dsp_nobids_total{exchange="generic",reason="coppa"} 1.0' in text
    assert 'dsp_bid_requests_total{exchange="generic",outcome="invalid"} 1.0' in text
    assert 'dsp_stage_latency_seconds_count{stage="features"}' in text
    assert 'dsp_batch_size_count{batcher="audience"} 1.0' in text


async def test_malformed_consent_is_a_nobid_counted_by_outcome(
        admin: tuple[aiohttp.ClientSession, aiohttp.ClientSession]) -> None:
    client, adm = admin
    bad = _request(regs={"gdpr": 1}, user={"buyeruid": KNOWN, "consent": "C%%%"})
    assert (await client.post("/bid/generic", json=bad)).status == 204
    opted_out = _request(regs={"us_privacy": "1YYN"})
    assert (await client.post("/bid/generic", json=opted_out)).status == 204
    text = await (await adm.get("/metrics")).text()
    assert 'dsp_privacy_decisions_total{exchange="generic",outcome="tcf_malformed"} 1.0' in text
    assert 'dsp_privacy_decisions_total{exchange="generic",outcome="us_opt_out"} 1.0' in text
    assert 'dsp_nobids_total{exchange="generic",reason="privacy_opt_out"} 1.0' in text


async def test_decisions_are_logged_when_sampled(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    r = sync_redis.Redis.from_url(redis_url)
    write_rows(r, [KNOWN], interested_user_row())
    r.close()
    settings = msgspec.structs.replace(_settings(redis_url), decision_sample_rate=1.0)
    app = build_app(settings, Metrics(CollectorRegistry()))
    with caplog.at_level("INFO", logger="dsp.decisions"):
        async with serving(app, settings) as url, aiohttp.ClientSession(base_url=url) as c:
            assert (await c.post("/bid/generic", json=_request())).status == 200
    records = [rec for rec in caplog.records if rec.name == "dsp.decisions"]
    assert records and records[0].decision["outcome"] == "bid"  # type: ignore[attr-defined]
    assert records[0].decision["bids"][0]["campaign"] == "quickloan-prime"  # type: ignore[attr-defined]


@pytest.mark.parametrize("over", [
    {"imp": [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 1e6}]},
    {"imp": [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 5, "bidfloorcur": "???"}]},
    {"tmax": 10_000},
    {"tmax": 1},
    {"cur": ["JPY"], "at": 1},
    {"cur": []},
    {"id": "ü" * 3000},
    {"imp": [{"id": str(i), "banner": {"format": [{"w": 300, "h": 250}]}} for i in range(300)]},
    {"device": {"geo": {"country": "ÅÄÖ"}, "os": "", "devicetype": -3, "lmt": 7}},
    {"site": {"cat": ["IAB13", "", "x" * 500]}, "bcat": [""], "badv": []},
    {"imp": [{"id": "1", "video": {"w": 0, "h": 0}, "pmp": {"private_auction": 1, "deals": [
        {"id": "d", "bidfloor": 1e9, "bidfloorcur": "XXX"}]}}]},
    {"regs": {"gdpr": 1, "ext": {"gdpr": 0, "us_privacy": "1YNN"}}},
    # malformed consent strings: no consent, never a 4xx
    {"regs": {"gdpr": 1}, "user": {"buyeruid": "b", "consent": "%%%not-base64%%%"}},
    {"regs": {"gdpr": 1}, "user": {"buyeruid": "b", "consent": "BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA"}},
    {"regs": {"gpp": "DBACNY~garbage", "gpp_sid": "2,x"}, "user": {"buyeruid": "b"}},
    {"regs": {"gpp": "~~~", "gpp_sid": [7]}, "user": {"buyeruid": "b"}},
    {"regs": {"us_privacy": "YYYYYYYY", "ext": {"gpc": "yes"}}, "user": {"buyeruid": "b"}},
    {"source": {"ext": {"schain": {"complete": 1, "nodes": []}}}, "dooh": None, "app": None},
])
async def test_odd_but_valid_requests_never_fail(client: aiohttp.ClientSession,
                                                  over: dict[str, Any]) -> None:
    resp = await client.post("/bid/generic", json=_request(**over))
    assert resp.status in (200, 204), await resp.text()
    if resp.status == 200:
        body = msgspec.json.decode(await resp.read(), type=BidResponse)
        assert body.seatbid and all(b.price > 0 for sb in body.seatbid for b in sb.bid)


@pytest.mark.parametrize(("over", "path"), [
    ({"tmax": 10**15}, "tmax"),
    ({"tmax": 10_001}, "tmax"),
    ({"imp": [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 1e300}]}, "imp[0].bidfloor"),
    ({"imp": [{"id": "1", "banner": {"w": 2**40, "h": 250}}]}, "imp[0].banner.w"),
    ({"device": {"geo": {"utcoffset": -(10**30)}}}, "device.geo.utcoffset"),
])
async def test_numbers_out_of_range_are_a_400_naming_the_field(client: aiohttp.ClientSession,
                                                               over: dict[str, object], path: str) -> None:
    resp = await client.post("/bid/generic", json=_request(**over))  # type: ignore[arg-type]
    assert resp.status == 400
    assert json.loads(await resp.read())["path"] == path


@pytest.mark.parametrize("exchange", ["smaato", "nexage", "bidswitch"])
async def test_every_corpus_request_on_every_dialect_profile(client: aiohttp.ClientSession,
                                                             exchange: str) -> None:
    wants_body = exchange in ("bidswitch", "nexage")
    for path in VALID:
        resp = await client.post(f"/bid/{exchange}", data=path.read_bytes())
        assert resp.status in (200, 204), f"{path}: {resp.status} {await resp.text()}"
        if resp.status == 200:
            body = msgspec.json.decode(await resp.read(), type=BidResponse)
            assert body.seatbid or (wants_body and body.nbr is not None)
    for path in BAD:
        resp = await client.post(f"/bid/{exchange}", data=path.read_bytes())
        lax_ok = "strings" in path.name and exchange != "bidswitch"
        assert resp.status in ((200, 204) if lax_ok else (400,)), f"{path}: {resp.status}"


async def test_sec_gpc_header_means_no_user_data(
        admin: tuple[aiohttp.ClientSession, aiohttp.ClientSession]) -> None:
    """``Sec-GPC: 1`` forwarded by the exchange counts like regs.gpc, on both transports."""
    client, adm = admin
    assert (await client.post("/bid/generic", json=_request())).status == 200
    resp = await client.post("/bid/generic", json=_request(), headers={"Sec-GPC": "1"})
    assert resp.status == 204
    text = await (await adm.get("/metrics")).text()
    assert 'dsp_privacy_decisions_total{exchange="generic",outcome="gpc"} 1.0' in text
    assert 'dsp_nobids_total{exchange="generic",reason="privacy_opt_out"} 1.0' in text
