"""The whole bidder app against Redis Cluster (`dsp serve --redis-cluster`): a bid and its notices."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import msgspec
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from redis.cluster import RedisCluster

from dsp.features.writer import write_rows
from dsp.observability.metrics import Metrics
from dsp.openrtb.response import BidResponse
from dsp.server.app import SERVICES, build_app
from dsp.server.settings import Settings
from dsp.testing.users import desktop_banner_request, interested_user_row

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "tests" / "fixtures" / "configs" / "demo"
USER = "cluster-serve-user"


async def test_bid_and_notices_through_a_cluster(cluster_port: int) -> None:
    seed = RedisCluster(host="127.0.0.1", port=cluster_port)
    write_rows(seed, [USER], interested_user_row())
    seed.close()
    settings = Settings(redis_url=f"redis://127.0.0.1:{cluster_port}/0", redis_cluster=True,
                        configs_dir=str(DEMO), models_dir=str(ROOT / "models"),
                        public_url="http://bidder.test", token_keys={"k1": b"0123456789abcdef0123"},
                        token_active="k1", reload_check_s=3600)
    app = build_app(settings, Metrics(CollectorRegistry()))
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/readyz")).status == 200
        req = desktop_banner_request("req-cluster", USER)
        resp = await client.post("/bid/generic", json=req)
        assert resp.status == 200, await resp.text()
        seatbid = msgspec.json.decode(await resp.read(), type=BidResponse).seatbid
        assert seatbid
        bid = seatbid[0].bid[0]
        services = client.app[SERVICES]  # type: ignore[index]
        ledger = services.money.ledger(bid.cid or "")
        assert ledger is not None and ledger.is_reserved(bid.id)
        for url in (bid.nurl, bid.burl):
            parts = urlsplit((url or "").replace("${AUCTION_PRICE}", "0.5"))
            notice = await client.get(f"{parts.path}?{parts.query}")
            assert notice.status == 200, await notice.text()
