"""Overload sheds, it does not queue: the LoadGuard's rules, and shedding over real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from dsp.observability.metrics import Metrics, render
from dsp.server.app import build_app
from dsp.server.overload import LoadGuard
from dsp.testing.redis_server import busy_script
from dsp.testing.serve import bidder_settings, serving
from dsp.testing.users import seed_interested

ROOT = Path(__file__).resolve().parent.parent
KNOWN = "known-user-1"
BID = json.dumps({
    "id": "req-1", "tmax": 120, "imp": [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 0.5}],
    "site": {"id": "s", "domain": "news.example", "cat": ["IAB12"]},
    "device": {"devicetype": 2, "os": "Windows", "geo": {"country": "USA"}},
    "user": {"id": KNOWN}}).encode()
COPPA = json.dumps({"id": "req-2", "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}],
                    "site": {"id": "s"}, "regs": {"coppa": 1}}).encode()


def test_guard_rules() -> None:
    guard = LoadGuard(late_share=0.5, lag_share=0.15, max_inflight=10)
    assert guard.shed_reason(0.010, 0.095, 0) is None
    assert guard.shed_reason(0.050, 0.095, 0) == "late"       # waited more than half its budget
    guard.lag_s = 0.012                                        # the loop lags 13% of the budget:
    assert guard.shed_reason(0.0, 0.095, 0) is None           # under the target, a fresh one goes on
    assert guard.shed_reason(0.036, 0.095, 0) == "lag"        # but its wait plus the lag is too late
    guard.lag_s = 0.015                                        # 16% of the budget: the loop is behind,
    assert guard.shed_reason(0.0, 0.095, 0) == "lag"          # every new request is shed
    assert guard.shed_reason(0.0, 0.200, 0) is None           # (a longer budget tolerates it)
    guard.lag_s = 0.0
    assert guard.shed_reason(0.0, 0.095, 10) == "queue"       # ten already waiting in the flow
    assert LoadGuard(enabled=False).shed_reason(10.0, 0.095, 10**6) is None
    with pytest.raises(ValueError):
        LoadGuard(late_share=0.0)
    with pytest.raises(ValueError):
        LoadGuard(late_share=0.3, lag_share=0.4)


async def test_lag_probe_sees_a_blocked_loop_only_when_sustained() -> None:
    import time

    guard = LoadGuard()
    guard.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.1)  # one stall: a GC pause, a neighbour on the CPU
        await asyncio.sleep(0.03)
        assert guard.lag_s < 0.05  # the smallest of the last three probes
        assert guard.read_max_lag() >= 0.09  # the gauge still shows the worst
        loop = asyncio.get_running_loop()
        end = time.monotonic() + 0.3
        lags = []

        def hog() -> None:  # every loop iteration takes 25 ms: a loop that stays behind
            spin = time.monotonic() + 0.025
            while time.monotonic() < spin:
                pass
            lags.append(guard.lag_s)
            if time.monotonic() < end:
                loop.call_soon(hog)

        loop.call_soon(hog)
        await asyncio.sleep(0.35)
        assert max(lags) > 0.01
    finally:
        guard.stop()


async def _serve(redis_url: str, **over: object) -> AsyncIterator[tuple[str, int, Metrics]]:
    seed_interested(redis_url, KNOWN)
    settings = bidder_settings(redis_url, ROOT / "bidder_configs", health_check_s=3600.0, **over)
    metrics = Metrics(CollectorRegistry())
    async with serving(build_app(settings, metrics), settings) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port), metrics


def post(body: bytes) -> bytes:
    return b"POST /bid/generic HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body


async def read_statuses(reader: asyncio.StreamReader, n: int) -> list[int]:
    out = []
    for _ in range(n):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        out.append(int(head.split(b" ")[1]))
        length = [line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")]
        if length:
            await reader.readexactly(int(length[0].split(b":")[1]))
    return out


def _shed(metrics: Metrics) -> dict[str, float]:
    out = {}
    for line in render(metrics).decode().splitlines():
        if line.startswith("dsp_shed_total{"):
            out[line.split('"')[1]] = float(line.rsplit(" ", 1)[1])
    return out


async def test_requests_that_waited_too_long_are_shed_in_order(redis_url: str) -> None:
    # 3,000 pipelined requests: the front answers them one after another; those that have waited
    # more than half their budget by their turn get the cheapest no-bid (204, not decoded: the
    # invalid "{" bodies among them are not even looked at), the rest their real answer, in order.
    n = 3000
    stream = b"".join(post(b"{") if i % 2 else post(COPPA) for i in range(n)) + post(BID)
    # (the BID at the end has waited as long as the rest: it is shed or a deadline no-bid)
    async for host, port, metrics in _serve(redis_url):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(stream)
        statuses = await read_statuses(reader, n + 1)
        writer.close()
        shed = _shed(metrics)
    invalid = statuses[1:n:2]
    assert invalid[0] == 400 and invalid[-1] == 204  # early ones answered, late ones shed
    first_shed = invalid.index(204)
    assert all(s == 400 for s in invalid[:first_shed])
    assert shed.get("late", 0) + shed.get("lag", 0) >= invalid.count(204)


async def test_a_backlog_in_the_flow_is_shed_not_joined(redis_url: str) -> None:
    # Redis stalls; with max_inflight 4 the fifth concurrent request is not queued behind the
    # four waiting ones: it is answered at once with a 204 and counted as shed (queue).
    async for host, port, metrics in _serve(redis_url, max_inflight=4, shedding=True):
        blocker = aioredis.Redis.from_url(redis_url)
        stall = asyncio.create_task(blocker.eval(busy_script(1500), 0))  # type: ignore[misc, var-annotated, arg-type]
        await asyncio.sleep(0.1)
        conns = [await asyncio.open_connection(host, port) for _ in range(8)]
        for _, w in conns[:4]:
            w.write(post(BID))
        await asyncio.sleep(0.03)  # the four are inside the flow, waiting on Redis
        for _, w in conns[4:]:
            w.write(post(BID))
        late = [await read_statuses(r, 1) for r, _ in conns[4:]]
        assert not stall.done()
        assert late == [[204]] * 4
        assert _shed(metrics).get("queue") == 4
        for r, w in conns[:4]:
            assert (await read_statuses(r, 1))[0] in (200, 204)
            w.close()
        for _, w in conns[4:]:
            w.close()
        await stall
        await blocker.aclose()
