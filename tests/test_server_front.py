"""The lean HTTP/1.1 front (dsp/server/front.py) over raw sockets: framing, keep-alive, pipelining,
hand-over to aiohttp, limits, timeouts. Real Redis, real models, the demo config.

Which transport answered is visible in the ``Server`` header: ``dsp`` (the front) or aiohttp's.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis as sync_redis
from prometheus_client import CollectorRegistry

from dsp.features.writer import write_rows
from dsp.observability.metrics import Metrics
from dsp.server.app import build_app
from dsp.server.front import accepts_gzip, parse_head
from dsp.server.settings import Settings
from dsp.testing.redis_server import busy_script
from dsp.testing.serve import serving
from dsp.testing.users import interested_user_row

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "tests" / "fixtures" / "configs" / "demo"
CORPUS = ROOT.parent / "shared" / "openrtb-corpus"
KNOWN = "known-user-1"
BID = json.dumps({
    "id": "req-1", "tmax": 500, "imp": [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 0.5}],
    "site": {"id": "s", "domain": "news.example", "cat": ["IAB12"]},
    "device": {"devicetype": 2, "os": "Windows", "geo": {"country": "USA"}},
    "user": {"id": KNOWN}}).encode()
COPPA = json.dumps({"id": "req-2", "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}],
                    "site": {"id": "s"}, "regs": {"coppa": 1}}).encode()


def _settings(redis_url: str, **over: object) -> Settings:
    base = Settings(redis_url=redis_url, configs_dir=str(DEMO),
                    models_dir=str(ROOT / "models"), public_url="http://bidder.test",
                    token_keys={"k1": b"0123456789abcdef0123456789"}, token_active="k1",
                    max_body_bytes=64 * 1024, reload_check_s=3600, transport="front")
    return msgspec.structs.replace(base, **over)


async def _serve(redis_url: str, **over: object) -> AsyncIterator[tuple[str, int]]:
    r = sync_redis.Redis.from_url(redis_url)
    write_rows(r, [KNOWN], interested_user_row())
    r.close()
    settings = _settings(redis_url, **over)
    async with serving(build_app(settings, Metrics(CollectorRegistry())), settings) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


@pytest.fixture()
async def addr(redis_url: str) -> AsyncIterator[tuple[str, int]]:
    async for a in _serve(redis_url):
        yield a


def post(body: bytes, path: str = "/bid/generic", headers: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def server(self) -> str:
        return self.headers.get("server", "")


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(n), 10) if n else b""
    return Reply(status, headers, body)


async def exchange(addr: tuple[str, int], data: bytes, replies: int, *,
                   byte_by_byte: bool = False) -> list[Reply]:
    reader, writer = await asyncio.open_connection(*addr)
    try:
        if byte_by_byte:
            for i in range(len(data)):
                writer.write(data[i:i + 1])
                await writer.drain()
        else:
            writer.write(data)
        return [await read_reply(reader) for _ in range(replies)]
    finally:
        writer.close()


async def test_pipelined_requests_are_answered_in_order_by_the_front(addr: tuple[str, int]) -> None:
    stream = post(BID) + post(COPPA) + post(b"{") + post(BID, "/bid/nowhere")
    replies = await exchange(addr, stream, 4)
    assert [r.status for r in replies] == [200, 204, 400, 404]
    assert all(r.server == "dsp" for r in replies)
    assert json.loads(replies[0].body)["id"] == "req-1"
    assert json.loads(replies[2].body)["error"]


async def test_thousands_of_pipelined_answers_that_finish_at_once(redis_url: str) -> None:
    # Invalid requests and gated no-bids are answered without awaiting anything; a long pipeline
    # of them must be answered in a loop (no recursion per request), in order; the connection then
    # still serves a bid. Shedding is off: the last of 3,000 pipelined requests waits longer than
    # half its budget (tests/test_server_overload.py has the same stream with shedding on).
    n = 3000
    stream = b"".join(post(b"{") if i % 2 else post(COPPA) for i in range(n))
    async for addr in _serve(redis_url, shedding=False):
        reader, writer = await asyncio.open_connection(*addr)
        writer.write(stream)
        replies = [await read_reply(reader) for _ in range(n)]
        writer.write(post(BID))  # its deadline counts from now, not from the stream's arrival
        replies.append(await read_reply(reader))
        writer.close()
    assert [r.status for r in replies[:n]] == [204 if i % 2 == 0 else 400 for i in range(n)]
    assert replies[-1].status == 200
    assert json.loads(replies[-1].body)["id"] == "req-1"


async def test_a_stream_split_at_every_byte_gets_the_same_answers(addr: tuple[str, int]) -> None:
    stream = post(BID) + post(COPPA)
    whole = await exchange(addr, stream, 2)
    split = await exchange(addr, stream, 2, byte_by_byte=True)
    assert [r.status for r in split] == [r.status for r in whole] == [200, 204]
    assert json.loads(split[0].body)["seatbid"][0]["bid"][0]["impid"] == "1"


async def test_other_routes_hand_the_connection_to_aiohttp(addr: tuple[str, int]) -> None:
    stream = post(COPPA) + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + post(BID)
    replies = await exchange(addr, stream, 3)
    assert [r.status for r in replies] == [204, 200, 200]
    assert replies[0].server == "dsp"
    assert replies[1].body == b"ok" and "aiohttp" in replies[1].server
    assert "aiohttp" in replies[2].server  # the connection stays with aiohttp
    assert json.loads(replies[2].body)["seatbid"][0]["bid"][0]["impid"] == "1"
    (wrong_method,) = await exchange(addr, b"GET /bid/generic HTTP/1.1\r\nHost: x\r\n\r\n", 1)
    assert wrong_method.status == 405
    # A percent-escaped exchange name is routed the way aiohttp routes it (decoded), not 404.
    (escaped,) = await exchange(addr, post(BID, "/bid/gen%65ric"), 1)
    assert escaped.status == 200 and "aiohttp" in escaped.server


async def test_chunked_bodies_and_http10_are_served_by_aiohttp(addr: tuple[str, int]) -> None:
    chunked = (b"POST /bid/generic HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + f"{len(BID):x}\r\n".encode() + BID + b"\r\n0\r\n\r\n")
    (reply,) = await exchange(addr, chunked, 1)
    assert reply.status == 200 and "aiohttp" in reply.server
    old = b"POST /bid/generic HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" % (len(BID), BID)
    (reply,) = await exchange(addr, old, 1)
    assert reply.status == 200 and json.loads(reply.body)["id"] == "req-1"


async def test_expect_100_continue(addr: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*addr)
    writer.write(f"POST /bid/generic HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                 f"Content-Length: {len(BID)}\r\n\r\n".encode())
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert interim.startswith(b"HTTP/1.1 100")
    writer.write(BID)
    reply = await read_reply(reader)
    writer.close()
    assert reply.status == 200


async def test_connection_close_is_honoured(addr: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*addr)
    writer.write(post(COPPA, headers="Connection: close\r\n") + post(BID))
    reply = await read_reply(reader)
    assert reply.status == 204 and reply.headers["connection"] == "close"
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed; the second request is ignored
    writer.close()


async def test_oversized_body_is_refused_without_reading_it(addr: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*addr)
    writer.write(b"POST /bid/generic HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n{")
    reply = await read_reply(reader)
    assert reply.status == 413 and reply.headers["connection"] == "close"
    assert "larger than" in json.loads(reply.body)["error"]
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()


async def test_gzip_and_version_echo(addr: tuple[str, int]) -> None:
    body = gzip.compress(BID)
    (reply,) = await exchange(addr, post(body, headers="Content-Encoding: gzip\r\nAccept-Encoding: "
                                         "br, gzip\r\nx-openrtb-version: 2.6\r\n"), 1)
    assert reply.server == "dsp" and reply.headers["content-encoding"] == "gzip"
    assert reply.headers["x-openrtb-version"] == "2.6"
    assert json.loads(gzip.decompress(reply.body))["id"] == "req-1"
    (plain,) = await exchange(addr, post(BID, headers="Accept-Encoding: gzip;q=0\r\n"), 1)
    assert "content-encoding" not in plain.headers and json.loads(plain.body)["id"] == "req-1"


@pytest.mark.parametrize("raw", [
    b"HELLO\r\n\r\n",
    b"POST /bid/generic HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"POST /bid/generic HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\n",
    b"POST /bid/generic HTTP/1.1\r\nHost: x\r\n bad: fold\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /bid/generic HTTP/1.1\r\nHost: x\r\nContent-Length: -2\r\n\r\n{}",
    b"POST /bid/generic HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Encoding: zstd\r\n\r\n{}",
    b"POST /bid/generic HTTP/1.1\r\nx-openrtb-version: 2.6\nInjected: yes\r\nContent-Length: 2\r\n\r\n{}",
])
async def test_unusual_or_malicious_heads_get_aiohttps_answer(addr: tuple[str, int], raw: bytes) -> None:
    reader, writer = await asyncio.open_connection(*addr)
    writer.write(raw)
    reply = await read_reply(reader)
    writer.close()
    assert 400 <= reply.status < 500 and "aiohttp" in reply.server
    assert "injected" not in reply.headers


async def test_garbage_never_breaks_the_server(addr: tuple[str, int]) -> None:
    rng = random.Random(5)
    templates = [post(BID), post(COPPA), b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"]
    for _ in range(60):
        data = bytearray(rng.choice(templates))
        for _ in range(rng.randint(1, 6)):  # flip, drop or insert bytes
            i = rng.randrange(len(data))
            op = rng.random()
            if op < 0.4:
                data[i] = rng.randrange(256)
            elif op < 0.7:
                del data[i]
            else:
                data.insert(i, rng.choice(b"\r\n :/\x00{}"))
        reader, writer = await asyncio.open_connection(*addr)
        writer.write(bytes(data))
        writer.write_eof()
        try:
            out = await asyncio.wait_for(reader.read(), 15)
        finally:
            writer.close()
        if out:
            status = int(out.split(b" ", 2)[1])
            assert status < 500, out[:200]
    (reply,) = await exchange(addr, post(BID), 1)
    assert reply.status == 200


# Narrow exception to warnings-as-errors: with every warning an error this test hangs in the
# server's teardown on a loaded machine (3 of 4 runs of this file, never with warnings as
# warnings; the connection the front hands to aiohttp is still open when the runner shuts down).
# The front's owner has the follow-up; until then this one test runs with default warnings.
@pytest.mark.filterwarnings("default")
async def test_slow_and_idle_connections_are_closed(redis_url: str) -> None:
    async for addr in _serve(redis_url, request_timeout_s=0.5, keepalive_timeout_s=1.0):
        slow_r, slow_w = await asyncio.open_connection(*addr)
        slow_w.write(b"POST /bid/generic HTTP/1.1\r\nHost: x\r\n")  # the head never completes
        idle_r, idle_w = await asyncio.open_connection(*addr)
        idle_w.write(post(COPPA))
        assert (await read_reply(idle_r)).status == 204
        assert (await asyncio.wait_for(slow_r.read(), 10)).startswith(b"HTTP/1.1 408 ")
        assert await asyncio.wait_for(idle_r.read(), 10) == b""
        slow_w.close()
        idle_w.close()


def test_parse_head_contract() -> None:
    head = parse_head(b"POST /bid/smaato?x=1 HTTP/1.1\r\nHost: a\r\ncontent-length: 12\r\n"
                      b"Accept-Encoding: gzip\r\nX-OpenRTB-Version:  2.5 \r\nConnection: Close")
    assert head is not None
    assert (head.exchange, head.length, head.accept_gzip, head.close, head.version) == \
        ("smaato", 12, True, True, b"2.5")
    no_length = parse_head(b"POST /bid/generic HTTP/1.1\r\nHost: a")
    assert no_length is not None and no_length.length == 0 and not no_length.close
    for refused in (b"GET /bid/generic HTTP/1.1", b"POST /bid/ HTTP/1.1", b"POST /bid/a/b HTTP/1.1",
                    b"POST /bid/g%65neric HTTP/1.1", b"POST /bid/generic HTTP/1.0",
                    b"POST /bid/Generic HTTP/1.1", b"POST /bid/generic#x HTTP/1.1",
                    b"POST /bid/gen\xc3\xa9ric HTTP/1.1", b"POST /bid/generic\t HTTP/1.1",
                    b"POST /bid/generic HTTP/1.1\r\nHost: a\r\nContent-Length: 1e3",
                    b"POST /bid/generic HTTP/1.1\r\nHost: a\r\nContent-Length : 3",
                    b"POST /bid/generic HTTP/1.1\r\nHost: a\r\nExpect: 100-continue",
                    b"POST /bid/generic HTTP/1.1\r\nHost: a\r\nNoColon",
                    b"POST /bid/generic HTTP/1.1",  # HTTP/1.1 needs Host
                    b"POST /bid/generic HTTP/1.1\r\nHost: a\r\nx-openrtb-version: 2.6\x7f",
                    b"POST /bid/generic HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: 1",
                    b"POST /bid/generic HTTP/1.1\r\nHost: a\r\nX\x01: 1",
                    b"POST /bid/generic HTTP/1.1\r\nHost: a\r\n folded",
                    b"POST /bid/generic HTTP/1.1\r\nHost: a\nX: bare-lf",
                    b"POST /bid/generic HTTP/1.1\r\nHost: a\rX: bare-cr",
                    b"POST /bid/generic HTTP/1.1\r\nHo st: a",
                    b"POST /bid/generic HTTP/1.1\r\nHost: a\x01b",
                    b"POST /bid/generic HTTP/1.1\r\nHost: a\x00",
                    b"POST /bid/generic HTTP/1.1\r\nHost: a\r\nX: a\rb"):
        assert parse_head(refused) is None, refused
    bad_version = parse_head(b"POST /bid/generic HTTP/1.1\r\nHost: a\r\nx-openrtb-version: 2.6\x80")
    assert bad_version is not None and bad_version.version is None


@pytest.mark.parametrize(("value", "expected"), [
    (b"gzip", True), (b"deflate, GZIP", True), (b"*", True), (b"gzip;q=0.5", True),
    (b"gzip;q=0", False), (b"gzip; q=0.000", False), (b"br", False), (b"", False),
])
def test_accepts_gzip(value: bytes, expected: bool) -> None:
    assert accepts_gzip(value) is expected


async def test_stop_answers_in_flight_requests_and_closes_idle_connections(redis_url: str) -> None:
    import socket

    import redis.asyncio as aioredis

    from dsp.server.run import BidderServer

    r = sync_redis.Redis.from_url(redis_url)
    write_rows(r, [KNOWN], interested_user_row())
    r.close()
    settings = _settings(redis_url, shutdown_grace_s=5.0)
    server = BidderServer(build_app(settings, Metrics(CollectorRegistry())), settings)
    port = await server.start(socket.create_server(("127.0.0.1", 0)))
    idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
    idle_w.write(post(COPPA))
    assert (await read_reply(idle_r)).status == 204  # now an idle keep-alive connection
    busy_r, busy_w = await asyncio.open_connection("127.0.0.1", port)
    blocker = aioredis.Redis.from_url(redis_url)
    # holds the feature lookup
    redis_busy: asyncio.Future[Any] = asyncio.ensure_future(blocker.eval(busy_script(400), 0))
    await asyncio.sleep(0.05)
    busy_w.write(post(BID))  # in flight: waiting for its audience batch
    await asyncio.sleep(0.05)
    stopping = asyncio.create_task(server.stop())
    assert await asyncio.wait_for(idle_r.read(), 5) == b""  # idle: closed at once
    answer = await read_reply(busy_r)  # in flight: answered, then closed
    assert answer.status in (200, 204)
    assert answer.headers.get("connection", "").lower() == "close"
    assert await asyncio.wait_for(busy_r.read(), 5) == b""
    await asyncio.wait_for(stopping, 10)
    with pytest.raises(OSError):  # the listening socket is gone
        await asyncio.open_connection("127.0.0.1", port)
    await redis_busy
    await blocker.aclose()
    idle_w.close()
    busy_w.close()
