"""The transport floor: a bare uvloop ``asyncio.Protocol`` with httptools (llhttp) that reads the
body and answers 204 — no framework, no routing, no request objects.

What is left of a request's cost here is the loopback syscalls (one read, one write per request
with keep-alive), uvloop's callbacks and llhttp's C parser: the least any Python HTTP server on
this machine can pay. ``bench_bidpath`` reports every server as a share of it and of the aiohttp
204 ceiling (``ceiling_server``), in the same run.

    python -m benchmarks.floor_server --port 8098

Answers ``GET /healthz`` with 200 ``ok`` (for the benchmark's readiness probe) and every other
request with 204 after its body has arrived; keep-alive and pipelining in order.
"""

from __future__ import annotations

import argparse
import asyncio
import socket

import httptools
import uvloop

_NO_CONTENT = b"HTTP/1.1 204 No Content\r\nServer: floor\r\n\r\n"
_BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_OK = b"HTTP/1.1 200 OK\r\nServer: floor\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class FloorProtocol(asyncio.Protocol):
    __slots__ = ("_body", "_get", "_parser", "_transport")

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._body: list[bytes] = []
        self._get = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            assert self._transport is not None
            self._transport.write(_BAD)
            self._transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._get = url == b"/healthz"

    def on_body(self, body: bytes) -> None:
        self._body.append(body)  # read, as the other servers do

    def on_message_complete(self) -> None:
        assert self._transport is not None
        self._transport.write(_OK if self._get else _NO_CONTENT)
        if not self._parser.should_keep_alive():
            self._transport.close()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FloorProtocol, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8098)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
