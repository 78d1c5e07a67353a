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

* Served here: ``POST /bid/<name>[?query]`` over HTTP/1.1 with a well-formed head (the checks of
  :mod:`dsp.server.http_head`: CRLF line ends, token header names, no control bytes, ``Host``,
  at most one ``Content-Length`` of digits, no ``Transfer-Encoding``, ``Expect`` or ``Upgrade``,
  ``Content-Encoding`` absent, ``identity`` or ``gzip``). The answer comes from
  :meth:`BidEndpoint.answer`, or is a 204 written at once when the endpoint sheds the request
  (:mod:`dsp.server.overload`). A body over the limit gets 413, then a bounded lingering close
  (``LINGER_S``, ``LINGER_BYTES``): the client, still sending, reads the 413 instead of a reset.
  An unknown exchange (404) or a request its exchange's guard refuses (401/403,
  :mod:`dsp.exchanges.auth`) is answered from the head alone, before the body is read or decoded,
  and the connection closed.
* Anything else (other routes and methods, HTTP/1.0, chunked bodies, ``Expect: 100-continue``,
  a malformed, bare-LF or over-long head) hands the connection, from that request on, to aiohttp's
  protocol for the same application (wrapped by :class:`dsp.server.handover.HandedOver`, which
  keeps the request deadline and the connection count): aiohttp answers it (every route, its own
  400s) and keeps the connection. Nothing is parsed twice and nothing is lost: the bytes the front
  holds are passed on.
* Keep-alive and pipelining: requests on one connection are answered in order, one at a time;
  while one is being answered the next is buffered (reading pauses past ``high_water_bytes``) and
  nothing new starts while the socket's write buffer is full.
* Timeouts: an idle keep-alive connection is closed after ``keepalive_timeout_s``; a request whose
  head and body have not all arrived ``request_timeout_s`` after its first byte gets 408 and the
  connection is closed (one total deadline: a byte every few seconds does not renew it). An answer
  in progress is bounded by the bid deadline. The deadline of a bid counts from when its first
  bytes were read (``t0``), not from when the front got round to it.
* At most ``max_connections`` open connections per worker (handed-over ones included): the next
  one gets a 503 and is closed.
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
from dsp.server.bid_endpoint import JSON_TYPE, NO_CONTENT, BidEndpoint, BidReply
from dsp.server.handover import HandedOver
from dsp.server.http_head import Head, accepts_gzip, bare_lf_head, parse_head

__all__ = ["MAX_HEAD_BYTES", "BidConnection", "Front", "Head", "accepts_gzip", "parse_head"]

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024  # a longer head goes to aiohttp, which answers 400/431
#: After a 413 the front keeps reading (and discarding) the refused body for at most this long and
#: this many bytes, so the client, still sending, is not reset before it reads the 413.
LINGER_S = 2.0
LINGER_BYTES = 1024 * 1024
_JSON_HEAD = f"\r\nContent-Type: {JSON_TYPE}\r\nContent-Length: %d".encode()


def _status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nServer: dsp\r\nDate: ".encode()


_STATUS = {status: _status_line(status) for status in (200, 204, 400, 401, 403, 404, 413)}


def _refusal(status: int, message: str) -> bytes:
    """A complete ``Connection: close`` answer with a plain-text reason (408, 503)."""
    body = message.encode()
    return (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nServer: dsp\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode() + body


_TOO_MANY = _refusal(503, "too many connections to this worker; retry on another connection")
_TOO_SLOW = _refusal(408, "request not received in time")


class Front:
    """Per-process state of the front: the endpoint, aiohttp's protocol factory for hand-overs,
    the open connections (for timeouts, the cap and shutdown) and the cached ``Date`` header.

    ``serve_bids=False`` hands every connection to aiohttp at once (``--transport aiohttp``): the
    connection cap and the request deadline then still apply."""

    def __init__(self, endpoint: BidEndpoint, fallback: Callable[[], asyncio.BaseProtocol], *,
                 keepalive_timeout_s: float = 75.0, request_timeout_s: float = 10.0,
                 max_connections: int = 4096, serve_bids: bool = True) -> None:
        self.endpoint = endpoint
        self.fallback = fallback
        self.keepalive_timeout_s = keepalive_timeout_s
        self.request_timeout_s = request_timeout_s
        self.max_connections = max_connections
        self.serve_bids = serve_bids
        # Buffered bytes of the next request(s) past which reading pauses while one is answered.
        self.high_water_bytes = endpoint.max_body_bytes + MAX_HEAD_BYTES
        self.connections: set[BidConnection] = set()
        self.handed_over: set[HandedOver] = set()
        self.closing = False
        self.date = formatdate(usegmt=True).encode()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def open_connections(self) -> int:
        return len(self.connections) + len(self.handed_over)

    def protocol(self) -> BidConnection:
        """The protocol factory for ``loop.create_server``."""
        return BidConnection(self)

    def dropped(self, reason: str) -> None:
        """Count a connection refused or closed before its request was read (CONNECTION_DROPS)."""
        self.endpoint.recorder.metrics.connections_dropped.labels(reason).inc()

    def start(self) -> None:
        """Start the once-a-second tick (Date header, timeouts). Call inside the event loop."""
        self._tick()

    def _tick(self) -> None:
        self.date = formatdate(usegmt=True).encode()
        loop = asyncio.get_running_loop()
        now = monotonic()
        for conn in list(self.connections):
            conn.check_timeouts(now)
        for handed in list(self.handed_over):
            handed.check_timeouts(now)
        self._timer = loop.call_later(1.0, self._tick)

    async def close(self, grace_s: float = 10.0) -> None:
        """Stop serving: idle connections close now; busy ones after their answer; abort the rest
        after ``grace_s``. The listening socket is the caller's (``server.close()``) to close.
        Handed-over connections are aiohttp's (the runner's shutdown closes them)."""
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

    __slots__ = ("_arrived_s", "_buf", "_busy", "_discard", "_eof", "_front", "_last_s", "_loop",
                 "_need", "_peer", "_read_paused", "_started_s", "_transport", "_write_paused")

    def __init__(self, front: Front) -> None:
        self._front = front
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._buf = b""
        self._need = 0  # bytes the buffer must hold before the pending request is complete
        self._busy = False
        self._read_paused = False
        self._write_paused = False
        self._last_s = 0.0  # last bytes received (keep-alive idleness)
        self._arrived_s = 0.0  # first bytes of the pending request received: its deadline's t0
        self._started_s = 0.0  # when the pending request's total deadline started (timeouts)
        self._discard = -1  # >= 0: refused body being drained; bytes still allowed
        self._eof = False  # the client has shut its sending side
        self._peer: str | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        front = self._front
        if front.open_connections >= front.max_connections:
            front.dropped("cap")
            self._transport.write(_TOO_MANY)
            self._transport.close()
            self._transport = None
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = transport.get_extra_info("peername")
            self._peer = peer[0] if isinstance(peer, tuple) else None
        self._last_s = monotonic()
        front.connections.add(self)
        if not front.serve_bids:
            self._hand_over()

    def data_received(self, data: bytes) -> None:
        now = self._last_s = monotonic()
        if self._discard >= 0:
            self._drain(len(data))
            return
        buf = self._buf
        if buf:
            buf = self._buf = buf + data
        else:
            buf = self._buf = data
            self._arrived_s = now
            if not self._busy:
                self._started_s = now
        if self._busy or self._write_paused:
            if len(buf) > self._front.high_water_bytes and not self._read_paused:
                self._read_paused = True
                assert self._transport is not None
                self._transport.pause_reading()
            return
        if len(buf) >= self._need:
            self._next()

    def eof_received(self) -> bool:
        # Half-closed by the client: finish the answer in progress (and any complete pipelined
        # ones), then close.
        self._eof = True
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
        """Answer the complete requests in the buffer: shed ones at once (a 204 written now), the
        first one that needs work in a task (the rest wait for it: answers go out in order)."""
        while True:
            buf = self._buf
            if not buf or self._transport is None:
                return
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES or bare_lf_head(buf):
                    self._hand_over()  # aiohttp answers 400/431 now, not after the request timeout
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
                self._transport = None
                self._front.connections.discard(self)
                return
            if head.length > endpoint.max_body_bytes:
                self._refuse_body(head, len(buf) - end - 4)
                return
            total = end + 4 + head.length
            if len(buf) < total:
                self._need = total
                return
            self._need = 0
            self._buf = buf[total:]
            t0 = self._arrived_s
            if self._buf:  # pipelined bytes: they came with (or before) the latest read
                self._arrived_s = self._last_s
            if endpoint.shed(head.exchange, t0):
                if not self._write(NO_CONTENT, head) or self._write_paused:
                    return
                continue
            self._busy = True
            self._loop.create_task(self._answer(head, buf[end + 4:total], t0))
            return

    def _write(self, reply: BidReply, head: Head) -> bool:
        """Write one answer; False when the connection is now closed."""
        transport = self._transport
        assert transport is not None
        close = head.close or self._front.closing or (self._eof and not self._buf)
        transport.write(self._front.response(reply, head.version, close))
        if close:
            transport.close()
            self._transport = None
            self._front.connections.discard(self)
            return False
        self._started_s = monotonic()  # a buffered next request's deadline starts now
        return True

    async def _answer(self, head: Head, body: bytes, t0: float) -> None:
        try:
            reply = await self._front.endpoint.answer(head.exchange, body, head.accept_gzip, t0,
                                                      gpc=head.gpc)
        except Exception:  # answer() never raises; a bug here must still not kill the connection
            log.exception("bid endpoint raised")
            reply = NO_CONTENT
        if self._transport is None:  # the client went away; a reservation for the bid just expires
            return
        self._busy = False
        if not self._write(reply, head):
            return
        if self._read_paused:
            self._read_paused = False
            assert self._transport is not None
            self._transport.resume_reading()
        if not self._write_paused and len(self._buf) >= self._need:
            self._next()

    def _refuse_body(self, head: Head, received: int) -> None:
        """413 for a declared body over the limit, then a bounded lingering close: the answer is
        sent and our side shut for writing, and the body is read and dropped (at most
        ``LINGER_BYTES`` more, for at most ``LINGER_S``), so a client still sending sees the 413
        rather than a connection reset."""
        transport = self._transport
        assert transport is not None
        self._buf = b""
        self._front.dropped("too_large")
        transport.write(self._front.response(self._front.endpoint.too_large(head.exchange),
                                             head.version, True))
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._discard = max(0, min(head.length, LINGER_BYTES) - received)
        self._loop.call_later(LINGER_S, self.abort_linger)
        self._drain(0)

    def _drain(self, n: int) -> None:
        self._discard -= n
        if self._discard <= 0 and self._transport is not None:
            self._transport.close()

    def abort_linger(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _hand_over(self) -> None:
        """Give the connection, from the buffered request on, to aiohttp's protocol (wrapped, so
        the request deadline and the connection count still apply)."""
        transport = self._transport
        assert transport is not None and not self._busy
        front = self._front
        front.connections.discard(self)
        self._transport = None
        buf, self._buf = self._buf, b""
        proto = HandedOver(front, cast(asyncio.Protocol, front.fallback()))
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
        """Idle past the keep-alive timeout: close. A request whose head and body have not all
        arrived ``request_timeout_s`` after its first byte (one total deadline, not renewed by
        each byte): 408 and close. Not while an answer is in progress (bounded by the deadline)."""
        transport = self._transport
        if self._busy or transport is None or self._discard >= 0:
            return
        if self._buf:
            if now - self._started_s > self._front.request_timeout_s:
                self._front.dropped("slow")
                transport.write(_TOO_SLOW)
                transport.close()
        elif now - self._last_s > self._front.keepalive_timeout_s:
            transport.close()

    def close_if_idle(self) -> None:
        if not self._busy and self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
