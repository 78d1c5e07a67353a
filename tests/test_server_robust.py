"""Hostile clients over real sockets, on both transports (the lean front and plain aiohttp): slow
clients, too many connections, malformed heads and bodies, oversized bodies. Real Redis, real
models, the demo config.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from dsp.observability.metrics import Metrics, render
from dsp.server.app import build_app
from dsp.server.settings import TRANSPORTS
from dsp.testing.serve import bidder_settings, serving
from dsp.testing.users import seed_interested

ROOT = Path(__file__).resolve().parent.parent
KNOWN = "known-user-1"
IMP = [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 0.5}]
BID = json.dumps({"id": "req-1", "tmax": 500, "imp": IMP,
                  "site": {"id": "s", "domain": "news.example", "cat": ["IAB12"]},
                  "device": {"devicetype": 2, "os": "Windows", "geo": {"country": "USA"}},
                  "user": {"id": KNOWN}}).encode()


class Served:
    def __init__(self, host: str, port: int, metrics: Metrics) -> None:
        self.host, self.port, self.metrics = host, port, metrics

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.host, self.port)

    def metric(self, name: str) -> str:
        return "\n".join(line for line in render(self.metrics).decode().splitlines()
                         if line.startswith(name))


async def _serve(redis_url: str, transport: str, **over: object) -> AsyncIterator[Served]:
    seed_interested(redis_url, KNOWN)
    settings = bidder_settings(redis_url, ROOT / "bidder_configs",
                               **{"max_body_bytes": 64 * 1024, "transport": transport, **over})
    metrics = Metrics(CollectorRegistry())
    async with serving(build_app(settings, metrics), settings) as url:
        host, port = url.removeprefix("http://").split(":")
        yield Served(host, int(port), metrics)


@pytest.fixture(params=TRANSPORTS)
async def served(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    async for s in _serve(redis_url, request.param, request_timeout_s=1.0):
        yield s


def post(body: bytes, path: str = "/bid/generic", headers: bytes = b"Host: x\r\n") -> bytes:
    return (b"POST " + path.encode() + b" HTTP/1.1\r\n" + headers
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


async def status_of(reader: asyncio.StreamReader, timeout_s: float = 10.0) -> int:
    line = await asyncio.wait_for(reader.readline(), timeout_s)
    return int(line.split(b" ")[1])


async def read_all(reader: asyncio.StreamReader, timeout_s: float = 10.0) -> bytes:
    """Everything until EOF; a reset ends it too (what arrived before it is kept)."""
    out = b""
    end = time.monotonic() + timeout_s
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), max(0.01, end - time.monotonic()))
        except ConnectionError:
            return out
        if not chunk:
            return out
        out += chunk


# -- slow clients -----------------------------------------------------------------------------------

@pytest.mark.parametrize("request_bytes", [
    post(BID),                                            # the front's own path
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n",  # handed over
])
async def test_a_byte_at_a_time_does_not_renew_the_deadline(served: Served, request_bytes: bytes) -> None:
    # One byte every 0.2 s would take far longer than the 1 s request deadline; the connection is
    # ended (408, or closed) well before the client has sent everything.
    reader, writer = await served.open()
    t0 = time.monotonic()
    sent = 0
    try:
        for i in range(len(request_bytes)):
            if reader.at_eof() or writer.is_closing():
                break
            try:
                writer.write(request_bytes[i:i + 1])
                await writer.drain()
            except ConnectionError:
                break
            sent += 1
            await asyncio.sleep(0.2)
            if time.monotonic() - t0 > 30:
                break
        out = await read_all(reader)
    finally:
        writer.close()
    assert sent < len(request_bytes) // 2
    assert out == b"" or out.startswith(b"HTTP/1.1 408 ")
    assert 'reason="slow"' in served.metric("dsp_connections_dropped_total")


async def test_connection_cap_refuses_clearly(redis_url: str) -> None:
    for transport in TRANSPORTS:
        async for served in _serve(redis_url, transport, max_connections=3):
            held = [await served.open() for _ in range(3)]
            for _, w in held:  # make sure the server has accepted all three
                w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            for r, _ in held:
                assert await status_of(r) == 200
            reader, writer = await served.open()
            out = await read_all(reader)
            assert out.startswith(b"HTTP/1.1 503 ") and b"too many connections" in out
            writer.close()
            for _, w in held:
                w.close()
            # Room again once they are gone (a half-closed handed-over connection is closed by the
            # next once-a-second tick).
            statuses = []
            for _ in range(20):
                await asyncio.sleep(0.25)
                reader, writer = await served.open()
                writer.write(post(BID))
                statuses.append(await status_of(reader))
                writer.close()
                if statuses[-1] != 503:
                    break
            assert statuses[-1] == 200, statuses
            assert 'reason="cap"' in served.metric("dsp_connections_dropped_total")


# -- heads ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    b"POST /bid/generic HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}",            # bare LF
    b"POST /bid/generic HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",                 # no Host
    b"POST /bid/generic HTTP/1.1\r\nHost: x\r\nX\x01y: 1\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /bid/generic HTTP/1.1\r\nHost: x\r\nX\xc3\xa9: 1\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /bid/generic HTTP/1.1\r\nHost: x\r\nXy: a\x01b\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /bid/generic HTTP/1.1\r\nHost: x\r\nXy: a\rb\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /bid/generic HTTP/1.1\r\nHost: x\r\nX y: 1\r\nContent-Length: 2\r\n\r\n{}",
])
async def test_malformed_heads_get_a_prompt_400(served: Served, raw: bytes) -> None:
    # request_timeout_s is 1 s here; "prompt" means the answer does not wait for it.
    reader, writer = await served.open()
    writer.write(raw)
    t0 = time.monotonic()
    status = await status_of(reader)
    writer.close()
    assert status == 400
    assert time.monotonic() - t0 < 0.9


# -- bodies -----------------------------------------------------------------------------------------

def _with(**over: object) -> bytes:
    return json.dumps({"id": "r", "imp": IMP, **over}).encode()


@pytest.mark.parametrize(("body", "needle"), [
    (b'{"id":"r","imp":' + json.dumps(IMP).encode() + b',"zzz":' + b"[" * 100_000 + b"]" * 100_000
     + b"}", "nested too deeply"),
    (b'{"id":"r","imp":' + json.dumps(IMP).encode() + b',"site":{"domain":"\xff\xfe"}}', "UTF-8"),
    (b'{"id":"r","imp":' + json.dumps(IMP).encode() + b',"zzz":"\xc3("}', "UTF-8"),
    (b'{"id":"r","imp":' + json.dumps(IMP).encode() + b',"tmax":1' + b"0" * 400 + b"}", "tmax"),
    (_with(tmax=10**6), "tmax"),
    (_with(imp=[{"id": "1", "banner": {"w": 2**63}}]), "imp[0].banner.w"),
])
async def test_malformed_bodies_are_a_400_naming_the_problem(redis_url: str, body: bytes,
                                                             needle: str) -> None:
    for transport in TRANSPORTS:
        async for served in _serve(redis_url, transport, max_body_bytes=512 * 1024):
            for chunked in (False, True):
                reader, writer = await served.open()
                if chunked:  # a chunked body is always aiohttp's to read
                    writer.write(b"POST /bid/generic HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                                 b"\r\n\r\n%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
                else:
                    writer.write(post(body))
                status = await status_of(reader)
                rest = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                length = int(rest.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                error = json.loads(await reader.readexactly(length))
                writer.close()
                assert status == 400, (transport, chunked, error)
                assert needle in error["error"] or needle == error["path"], (transport, error)
            assert "dsp_unexpected_errors_total{" not in served.metric("dsp_unexpected_errors_total")


async def test_an_oversized_body_gets_a_413_the_client_can_read(served: Served) -> None:
    # The client sends its whole 1 MB body before reading (as most do): without draining, the
    # unread bytes make the server's close a reset and the client never sees the 413.
    body = b"{" + b" " * (1024 * 1024) + b"}"
    for chunked in (False, True):
        reader, writer = await served.open()
        if chunked:
            writer.write(b"POST /bid/generic HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(body), 65536):
                part = body[i:i + 65536]
                writer.write(b"%x\r\n" % len(part) + part + b"\r\n")
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(post(body))
        with contextlib.suppress(ConnectionError):  # the server may close once it has answered
            await asyncio.wait_for(writer.drain(), 10)
        out = await read_all(reader)
        writer.close()
        assert out.startswith(b"HTTP/1.1 413 "), (chunked, out[:100])
