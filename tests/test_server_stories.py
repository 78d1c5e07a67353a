"""HTTP stories: one file = request + the user's features in Redis + expected answer.

``tests/fixtures/http/*.json``: ``request`` (as the exchange sends it), ``exchange``, ``features``
(contract feature name -> value, the rest at their defaults; null = the user has no record; stored
under ``user_id`` when given, else the request's buyeruid or user id) and
``expect`` (HTTP status, and the winning campaign and price, or the ``nbr`` of a no-bid body).
The real server, real Redis and the real ONNX models decide.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis as sync_redis
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from dsp.features.contract import DEFAULTS, FEATURE_INDEX
from dsp.features.writer import write_rows
from dsp.observability.metrics import Metrics
from dsp.server.app import build_app
from dsp.server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "tests" / "fixtures" / "configs" / "demo"
STORIES = sorted((ROOT / "tests" / "fixtures" / "http").glob("*.json"))


def _seed(redis_url: str, story: dict[str, Any]) -> None:
    if story.get("features") is None:
        return
    row = np.asarray(DEFAULTS, dtype=np.float32).copy()
    for name, value in story["features"].items():
        row[FEATURE_INDEX[name]] = value
    user = story["request"].get("user", {})
    user_id = story.get("user_id") or user.get("buyeruid") or user["id"]
    client = sync_redis.Redis.from_url(redis_url)
    write_rows(client, [user_id], row.reshape(1, -1))
    client.close()


@pytest.mark.parametrize("path", STORIES, ids=[p.stem for p in STORIES])
async def test_http_story(path: Path, redis_url: str) -> None:
    story = json.loads(path.read_text())
    _seed(redis_url, story)
    settings = Settings(redis_url=redis_url, configs_dir=str(DEMO),
                        models_dir=str(ROOT / "models"), token_keys={"k1": b"0123456789abcdef01"},
                        token_active="k1", reload_check_s=3600)
    expect = story["expect"]
    async with TestClient(TestServer(build_app(settings, Metrics(CollectorRegistry())))) as c:
        resp = await c.post(f"/bid/{story['exchange']}", json=story["request"])
        assert resp.status == expect["status"], await resp.text()
        if resp.status != 200:
            return
        body = json.loads(await resp.read())
        assert body["id"] == story["request"]["id"]
        if "nbr" in expect:
            assert body.get("nbr") == expect["nbr"] and "seatbid" not in body
            return
        bid = body["seatbid"][0]["bid"][0]
        assert bid["cid"] == expect["campaign"]
        if "openrtb_version" in expect:
            assert resp.headers["x-openrtb-version"] == expect["openrtb_version"]
            assert ("mtype" in bid) == (expect["openrtb_version"] != "2.5")
        assert bid["price"] == pytest.approx(expect["price"], abs=1e-6)
