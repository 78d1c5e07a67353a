"""The exchange hook registry: explicit, aliases share their parent's hooks, both hook points run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis as sync_redis
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from dsp.config.snapshot import load_snapshot
from dsp.exchanges.hooks import HOOKS, NO_HOOKS, ExchangeHooks, hooks_for
from dsp.exchanges.smaato import move_udi_to_ifa
from dsp.features.writer import write_rows
from dsp.observability.metrics import Metrics
from dsp.openrtb.decode import RequestDecoder
from dsp.openrtb.request import BidRequest
from dsp.openrtb.response import BidResponse
from dsp.server.app import build_app
from dsp.server.settings import Settings
from dsp.testing.users import interested_user_row

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "tests" / "fixtures" / "configs" / "demo"


def test_every_registered_hook_belongs_to_a_profile() -> None:
    assert set(HOOKS) <= set(load_snapshot(DEMO).exchanges)


def test_alias_uses_its_parents_hooks_and_others_have_none() -> None:
    snap = load_snapshot(DEMO)
    registry = {"bidswitch": ExchangeHooks(normalise_request=move_udi_to_ifa)}
    assert hooks_for(snap.exchanges["bidswitch-eu"], registry) is registry["bidswitch"]
    assert hooks_for(snap.exchanges["generic"], registry) is NO_HOOKS
    assert hooks_for(snap.exchanges["smaato"]).normalise_request is move_udi_to_ifa


def test_smaato_hook_runs_before_validation_and_keeps_an_existing_ifa() -> None:
    body = {"id": "r", "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}],
            "ext": {"udi": {"googleadid": "gaid-1"}}}
    req = RequestDecoder().decode(json.dumps(body).encode(), hook=move_udi_to_ifa)
    assert req.device is not None and req.device.ifa == "gaid-1"
    body["device"] = {"ifa": "native"}
    req = RequestDecoder().decode(json.dumps(body).encode(), hook=move_udi_to_ifa)
    assert req.device is not None and req.device.ifa == "native"


async def test_the_bid_endpoint_calls_decorate_response(monkeypatch: pytest.MonkeyPatch,
                                                       redis_url: str) -> None:
    seen: list[str] = []

    def decorate(resp: BidResponse, req: BidRequest, profile: object) -> None:
        seen.append(req.id)
        resp.bidid = "decorated"

    monkeypatch.setitem(HOOKS, "generic", ExchangeHooks(decorate_response=decorate))
    story = json.loads((ROOT / "tests" / "fixtures" / "http" / "bid-keen-borrower.json").read_text())
    client = sync_redis.Redis.from_url(redis_url)
    write_rows(client, [story["request"]["user"]["id"]], interested_user_row())
    client.close()
    settings = Settings(redis_url=redis_url, configs_dir=str(DEMO), models_dir=str(ROOT / "models"),
                        token_keys={"k1": b"0123456789abcdef01"}, token_active="k1", reload_check_s=3600)
    async with TestClient(TestServer(build_app(settings, Metrics(CollectorRegistry())))) as c:
        resp = await c.post("/bid/generic", json=story["request"])
        assert resp.status == 200
        assert json.loads(await resp.read())["bidid"] == "decorated"
        assert resp.headers["x-openrtb-version"] == "2.6"
    assert seen == [story["request"]["id"]]
