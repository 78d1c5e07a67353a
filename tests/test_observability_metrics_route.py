"""GET /metrics: a known set of requests shows up in counters and histograms, in one process and
summed across processes sharing one port (PROMETHEUS_MULTIPROC_DIR)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from dsp.observability.metrics import Metrics, render
from dsp.testing.redis_server import free_port
from dsp.testing.serve import listening_sockets

REPO = Path(__file__).resolve().parent.parent


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "pid"))
            out[(s.name, labels)] = out.get((s.name, labels), 0.0) + s.value
    return out


def _toy_app(metrics: Metrics) -> web.Application:
    async def bid(request: web.Request) -> web.Response:
        exchange = request.match_info["exchange"]
        body = await request.read()
        with metrics.request_latency.labels(exchange).time():
            if body == b"bid":
                metrics.requests.labels(exchange, "bid").inc()
                metrics.bids.labels(exchange, "c1").inc()
                return web.Response(status=200, text="{}")
            metrics.requests.labels(exchange, "nobid").inc()
            metrics.nobids.labels(exchange, "below_floor").inc()
            return web.Response(status=204)

    async def expose(_request: web.Request) -> web.Response:
        return web.Response(body=render(metrics), headers={"Content-Type": CONTENT_TYPE_LATEST})

    # A toy server with both routes on one port; dsp serve puts /metrics on its admin port
    # (dsp.server.admin), where the same render() answers.
    app = web.Application()
    app.router.add_post("/bid/{exchange}", bid)
    app.router.add_get("/metrics", expose)
    return app


async def test_metrics_show_a_known_set_of_requests() -> None:
    metrics = Metrics(CollectorRegistry())
    runner = web.AppRunner(_toy_app(metrics))
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        async with aiohttp.ClientSession() as s:
            for i in range(10):
                async with s.post(f"http://127.0.0.1:{port}/bid/x1", data=b"bid" if i < 3 else b"no"):
                    pass
            async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
                got = samples(await r.text())
    finally:
        await runner.cleanup()
    assert got[("dsp_bid_requests_total", (("exchange", "x1"), ("outcome", "bid")))] == 3
    assert got[("dsp_bid_requests_total", (("exchange", "x1"), ("outcome", "nobid")))] == 7
    assert got[("dsp_nobids_total", (("exchange", "x1"), ("reason", "below_floor")))] == 7
    assert got[("dsp_bids_total", (("campaign", "c1"), ("exchange", "x1")))] == 3
    assert got[("dsp_request_latency_seconds_count", (("exchange", "x1"),))] == 10
    assert got[("dsp_request_latency_seconds_bucket", (("exchange", "x1"), ("le", "+Inf")))] == 10


_WORKER = textwrap.dedent("""
    import sys
    from dsp.observability.multiproc import enable_multiprocess
    enable_multiprocess(sys.argv[1], clean=False)
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
    from dsp.observability.metrics import Metrics
    sys.path.insert(0, sys.argv[3])
    from test_observability_metrics_route import _toy_app
    web.run_app(_toy_app(Metrics(CollectorRegistry())), host="127.0.0.1", port=int(sys.argv[2]),
                reuse_port=True, print=None, access_log=None)
""")


@pytest.fixture()
def two_workers(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """Two processes serving the toy app on one port, sharing one multiprocess directory."""
    prom_dir = tmp_path / "prom"
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(prom_dir), str(port),
                               str(REPO / "tests")], cwd=REPO) for _ in range(2)]
    try:
        yield port, prom_dir
    finally:
        for p in procs:
            p.kill()
            p.wait()


async def test_metrics_sum_across_processes(two_workers: tuple[int, Path]) -> None:
    port, prom_dir = two_workers
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while listening_sockets(port) < 2:  # both workers bound the port
        assert time.monotonic() < deadline, "workers did not start"
        await asyncio.sleep(0.1)
    async with aiohttp.ClientSession() as s:
        # Fresh connections so the kernel spreads them over both SO_REUSEPORT listeners.
        for _ in range(40):
            async with aiohttp.ClientSession() as one, one.post(f"{url}/bid/x2", data=b"bid"):
                pass
        async with s.get(f"{url}/metrics") as r:
            got = samples(await r.text())
    assert len({p.name.rsplit("_", 1)[-1] for p in prom_dir.glob("counter_*.db")}) == 2
    assert got[("dsp_bid_requests_total", (("exchange", "x2"), ("outcome", "bid")))] == 40
    assert got[("dsp_request_latency_seconds_count", (("exchange", "x2"),))] == 40
