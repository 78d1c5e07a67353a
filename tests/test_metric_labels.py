"""A client-chosen name never becomes a metric label: 1,000 random exchange names, with and
without oversized bodies, on both transports, barely grow the ``/metrics`` exposition."""

from __future__ import annotations

import random
import string
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from dsp.observability.metrics import Metrics, render
from dsp.server.app import build_app
from dsp.server.settings import TRANSPORTS, Settings
from dsp.testing.serve import serving

ROOT = Path(__file__).resolve().parent.parent
MAX_BODY = 4096


def _names(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 10 == 0:  # not an identifier: upper case, long (the front hands these to aiohttp)
            out.append("".join(rng.choices(string.ascii_letters, k=rng.randint(200, 2000))))
        else:
            out.append("".join(rng.choices(string.ascii_lowercase + string.digits, k=rng.randint(3, 60))))
    return out


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_random_exchange_names_do_not_grow_metrics(redis_url: str, transport: str) -> None:
    settings = Settings(redis_url=redis_url, configs_dir=str(ROOT / "bidder_configs"),
                        models_dir=str(ROOT / "models"), transport=transport,
                        max_body_bytes=MAX_BODY, reload_check_s=3600,
                        token_keys={"k1": b"0123456789abcdef0123456789"}, token_active="k1")
    metrics = Metrics(CollectorRegistry())
    async with serving(build_app(settings, metrics), settings) as url:
        # One known request first, so the usual series exist.
        async with aiohttp.ClientSession() as s, \
                s.post(url + "/bid/generic", data=b'{"id":"x","imp":[{"id":"1"}]}') as r:
            assert r.status in (204, 400)
        before = len(render(metrics))
        statuses: set[int] = set()
        big = b"x" * (MAX_BODY * 3)
        async with aiohttp.ClientSession() as s:
            for i, name in enumerate(_names(1000, seed=7)):
                body = big if i % 2 else b'{"id":"r","imp":[{"id":"1"}]}'
                async with s.post(f"{url}/bid/{name}", data=body) as r:
                    statuses.add(r.status)
        after = render(metrics)
    assert statuses == {404}
    assert b'dsp_bid_requests_total{exchange="_unknown",outcome="unknown_exchange"} 1000.0' in after
    # One new series (the fixed _unknown label) and its _created line: a few hundred bytes.
    assert len(after) - before < 1024, (before, len(after))
