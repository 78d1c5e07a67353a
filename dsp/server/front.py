"""The lean HTTP/1.1 front: answers ``POST /bid/{exchange}`` itself, hands everything else to aiohttp.

    front = Front(endpoint, runner.server, keepalive_timeout_s=75, request_timeout_s=10)
    server = await loop.create_server(front.protocol, sock=sock)
    front.start()
    ...
    server.close(); await front.close(grace_s=10)

Why it exists: behind aiohttp the bidder used ~35 µs more CPU per request (parsing, routing,
request/response objects) than behind this front (docs/bidpath.md, "Performance"). Exchange
traffic is one request shape repeated billions of times, so the front parses that shape with a
few ``bytes`` operations and writes the response head from cached bytes; DESIGN.md §2 planned
this ("the transport can be swapped for a leaner one later without touching the flow").

Contract (what a client sees is the same as from the aiohttp application):

* Served here: ``POST /bid/<name>[?query]`` over HTTP/1.1 with a well-formed head (CRLF line
  ends, no folded or control-character lines, at most one ``Content-Length`` of digits, no
  ``Transfer-Encoding``, ``Expect`` or ``Upgrade``, ``Content-Encoding`` absent, ``identity`` or
  ``gzip``). An unknown exchange (404) or a request its exchange's guard refuses (401/403,
  :mod:`dsp.exchanges.auth`) is answered from the head alone, before the body is read or decoded,
  and the connection closed. The answer comes from :meth:`BidEndpoint.answer`; bodies over the
  limit get 413 and the connection is closed without reading them.
* Anything else (other routes and methods, HTTP/1.0, chunked bodies, ``Expect: 100-continue``,
  a malformed or over-long head) hands the connection, from that request on, to aiohttp's
  protocol for the same application: aiohttp answers it (every route, its own 400s) and keeps the
  connection. Nothing is parsed twice and nothing is lost: the bytes the front holds are passed on.
* Keep-alive and pipelining: requests on one connection are answered in order, one at a time;
  while one is being answered the next is buffered (reading pauses past ``high_water_bytes``) and
  nothing new starts while the socket's write buffer is full.
* Timeouts: an idle keep-alive connection is closed after ``keepalive_timeout_s``; a request whose
  head or body has not fully arrived ``request_timeout_s`` after its last byte is dropped (slow
  clients cannot hold connections open). An answer in progress is bounded by the bid deadline.
* Shutdown (:meth:`close`): idle connections close now, in-flight requests are answered with
  ``Connection: close``, and whatever is left after ``grace_s`` is aborted.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import cast

from dsp.clock import monotonic
from dsp.server.bid_endpoint import JSON_TYPE, NO_CONTENT, VERSION_HEADER, BidEndpoint, BidReply

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024  # a longer head goes to aiohttp, which answers 400/431
_MAX_LENGTH_DIGITS = 12
_GZIP_ENCODINGS = (b"", b"identity", b"gzip", b"x-gzip")
_VERSION_NAME = VERSION_HEADER.encode()
_JSON_HEAD = f"\r\nContent-Type: {JSON_TYPE}\r\nContent-Length: %d".encode()
_NAME_CHARS = b"abcdefghijklmnopqrstuvwxyz0123456789_.-"


def _status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nServer: dsp\r\nDate: ".encode()


_STATUS = {status: _status_line(status) for status in (200, 204, 400, 401, 403, 404, 413)}


def accepts_gzip(value: bytes) -> bool:
    """True when an ``Accept-Encoding`` value accepts gzip (``gzip`` or ``*`` without ``q=0``)."""
    for item in value.lower().split(b","):
        coding, _, params = item.partition(b";")
        if coding.strip() in (b"gzip", b"x-gzip", b"*"):
            q = params.strip()
            if not q.startswith(b"q=") or q[2:].strip(b" 0.") != b"":
                return True
    return False


class Head:
    """The parts of a bid request's head the front uses."""

    __slots__ = ("accept_gzip", "close", "exchange", "gpc", "length", "lines", "version")

    def __init__(self, exchange: str, length: int, accept_gzip: bool, close: bool,
                 version: bytes | None, gpc: bool = False, lines: list[bytes] | None = None) -> None:
        self.exchange = exchange
        self.length = length
        self.accept_gzip = accept_gzip
        self.close = close
        self.version = version
        self.gpc = gpc  # Sec-GPC: 1 (Global Privacy Control, forwarded by the exchange)
        self.lines = lines or []

    def header(self, name: bytes) -> bytes | None:
        """The value of header ``name`` (lower case), or None. Read only for guarded exchanges
        (:mod:`dsp.exchanges.auth`), so the common path never pays for it."""
        for line in self.lines[1:]:
            key, _, value = line.partition(b":")
            if key.lower() == name:
                return value.strip(b" \t")
        return None


def parse_head(head: bytes) -> Head | None:
    """Parse a request head (without the final blank line). None: not a request the front serves
    (another route, method or protocol version, or anything unusual): aiohttp gets it."""
    lines = head.split(b"\r\n")
    method, _, rest = lines[0].partition(b" ")
    target, _, protocol = rest.partition(b" ")
    if method != b"POST" or protocol != b"HTTP/1.1" or not target.startswith(b"/bid/"):
        return None
    name = target[5:].partition(b"?")[0]
    # Exchange names are config identifiers ([a-z0-9_.-], dsp.config.schema.Ident); anything
    # else (escapes, fragments, upper case, a longer path) is aiohttp's to route or refuse.
    if not name or name.translate(None, _NAME_CHARS):
        return None
    length = -1
    accept_gzip = close = gpc = False
    version: bytes | None = None
    for line in lines[1:]:
        key, colon, value = line.partition(b":")
        if (not colon or not key or key[0] in (32, 9) or key[-1] in (32, 9)
                or b"\r" in line or b"\n" in line or b"\x00" in line):
            return None
        key = key.lower()
        value = value.strip(b" \t")
        if key == b"content-length":
            if length >= 0 or not value.isdigit() or len(value) > _MAX_LENGTH_DIGITS:
                return None
            length = int(value)
        elif key == b"accept-encoding":
            accept_gzip = accepts_gzip(value)
        elif key == b"connection":
            close = b"close" in value.lower()
        elif key == b"sec-gpc":
            gpc = value == b"1"
        elif key == _VERSION_NAME:
            version = value if value.isascii() and value.decode().isprintable() else None
        elif key == b"content-encoding":
            if value.lower() not in _GZIP_ENCODINGS:
                return None
        elif key in (b"transfer-encoding", b"expect", b"upgrade"):
            return None
    return Head(name.decode(), max(length, 0), accept_gzip, close, version, gpc, lines)


class Front:
    """Per-process state of the front: the endpoint, aiohttp's protocol factory for hand-overs,
    the open connections (for timeouts and shutdown) and the cached ``Date`` header."""

    def __init__(self, endpoint: BidEndpoint, fallback: Callable[[], asyncio.BaseProtocol], *,
                 keepalive_timeout_s: float = 75.0, request_timeout_s: float = 10.0) -> None:
        self.endpoint = endpoint
        self.fallback = fallback
        self.keepalive_timeout_s = keepalive_timeout_s
        self.request_timeout_s = request_timeout_s
        # Buffered bytes of the next request(s) past which reading pauses while one is answered.
        self.high_water_bytes = endpoint.max_body_bytes + MAX_HEAD_BYTES
        self.connections: set[BidConnection] = set()
        self.closing = False
        self.date = formatdate(usegmt=True).encode()
        self._timer: asyncio.TimerHandle | None = None

    def protocol(self) -> BidConnection:
        """The protocol factory for ``loop.create_server``."""
        return BidConnection(self)

    def start(self) -> None:
        """Start the once-a-second tick (Date header, timeouts). Call inside the event loop."""
        self._tick()

    def _tick(self) -> None:
        self.date = formatdate(usegmt=True).encode()
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in list(self.connections):
            conn.check_timeouts(now)
        self._timer = loop.call_later(1.0, self._tick)

    async def close(self, grace_s: float = 10.0) -> None:
        """Stop serving: idle connections close now; busy ones after their answer; abort the rest
        after ``grace_s``. The listening socket is the caller's (``server.close()``) to close."""
        self.closing = True
        for conn in list(self.connections):
            conn.close_if_idle()
        loop = asyncio.get_running_loop()
        end = loop.time() + grace_s
        while self.connections and loop.time() < end:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        if self._timer is not None:
            self._timer.cancel()

    def response(self, reply: BidReply, version: bytes | None, close: bool) -> bytes:
        """The bytes of one HTTP/1.1 response."""
        parts = [_STATUS.get(reply.status) or _status_line(reply.status), self.date]
        body = reply.body
        if body:
            parts.append(_JSON_HEAD % len(body))
            if reply.gzipped:
                parts.append(b"\r\nContent-Encoding: gzip")
        version = version or reply.version  # the request's, else the exchange profile's
        if version is not None:
            parts.append(b"\r\nx-openrtb-version: " + version)
        parts.append(b"\r\nConnection: close\r\n\r\n" if close else b"\r\n\r\n")
        parts.append(body)
        return b"".join(parts)


class BidConnection(asyncio.Protocol):
    """One client connection while it speaks bid requests (see the module docstring)."""

    __slots__ = ("_buf", "_busy", "_front", "_last_s", "_loop", "_need", "_peer", "_read_paused",
                 "_transport", "_write_paused")

    def __init__(self, front: Front) -> None:
        self._front = front
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._buf = b""
        self._need = 0  # bytes the buffer must hold before the pending request is complete
        self._busy = False
        self._read_paused = False
        self._write_paused = False
        self._last_s = 0.0
        self._peer: str | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = transport.get_extra_info("peername")
            self._peer = peer[0] if isinstance(peer, tuple) else None
        self._last_s = self._loop.time()
        self._front.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self._last_s = self._loop.time()
        buf = self._buf + data if self._buf else data
        self._buf = buf
        if self._busy or self._write_paused:
            if len(buf) > self._front.high_water_bytes and not self._read_paused:
                self._read_paused = True
                assert self._transport is not None
                self._transport.pause_reading()
            return
        if len(buf) >= self._need:
            self._next()

    def eof_received(self) -> bool:
        # Half-closed by the client: finish the answer in progress, then close.
        return self._busy

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._front.connections.discard(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if not self._busy and self._transport is not None:
            self._next()

    # -- requests --------------------------------------------------------------------------------

    def _next(self) -> None:
        """Start answering the next complete request in the buffer, if there is one."""
        buf = self._buf
        if not buf or self._transport is None:
            return
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                self._hand_over()
            return
        head = parse_head(buf[:end]) if end <= MAX_HEAD_BYTES else None
        if head is None:
            self._hand_over()
            return
        endpoint = self._front.endpoint
        stop = endpoint.admit(head.exchange, self._peer, head.header)
        if stop is not None:  # unknown exchange, or the exchange's guard said no: body unread
            self._buf = b""
            self._transport.write(self._front.response(stop, head.version, True))
            self._transport.close()
            return
        if head.length > endpoint.max_body_bytes:
            self._buf = b""
            self._transport.write(self._front.response(endpoint.too_large(head.exchange),
                                                       head.version, True))
            self._transport.close()
            return
        total = end + 4 + head.length
        if len(buf) < total:
            self._need = total
            return
        self._need = 0
        self._buf = buf[total:]
        self._busy = True
        self._loop.create_task(self._answer(head, buf[end + 4:total], monotonic()))

    async def _answer(self, head: Head, body: bytes, t0: float) -> None:
        try:
            reply = await self._front.endpoint.answer(head.exchange, body, head.accept_gzip, t0,
                                                      gpc=head.gpc)
        except Exception:  # answer() never raises; a bug here must still not kill the connection
            log.exception("bid endpoint raised")
            reply = NO_CONTENT
        transport = self._transport
        if transport is None:  # the client went away; a reservation for the bid just expires
            return
        close = head.close or self._front.closing
        transport.write(self._front.response(reply, head.version, close))
        self._busy = False
        if close:
            transport.close()
            return
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()
        if not self._write_paused and len(self._buf) >= self._need:
            self._next()

    def _hand_over(self) -> None:
        """Give the connection, from the buffered request on, to aiohttp's protocol."""
        transport = self._transport
        assert transport is not None and not self._busy
        self._front.connections.discard(self)
        self._transport = None
        buf, self._buf = self._buf, b""
        proto = cast(asyncio.Protocol, self._front.fallback())
        transport.set_protocol(proto)
        proto.connection_made(transport)
        if self._write_paused:
            proto.pause_writing()
        if self._read_paused:
            transport.resume_reading()
        if buf:
            proto.data_received(buf)

    # -- housekeeping ------------------------------------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        if self._busy or self._transport is None:
            return
        limit = self._front.request_timeout_s if self._buf else self._front.keepalive_timeout_s
        if now - self._last_s > limit:
            self._transport.close()

    def close_if_idle(self) -> None:
        if not self._busy and self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
