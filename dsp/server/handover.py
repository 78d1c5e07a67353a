"""A connection the front handed to aiohttp, still under the front's limits.

    proto = HandedOver(front, aiohttp_protocol)
    transport.set_protocol(proto)
    proto.connection_made(transport)

aiohttp's request handler has a keep-alive timeout but no limit on how long one request's head
and body may take to arrive (a client sending a byte every few seconds holds the connection and
its task forever). This wrapper sits between the transport and aiohttp's protocol and gives each
request one total deadline: from its first byte until aiohttp starts writing the answer, at most
``front.request_timeout_s``; past it the connection is closed (counted as ``slow``). The clock is
not reset by later bytes. The handler's own time (e.g. a notice waiting on Redis) counts too: an
answer that has not started after ``request_timeout_s`` is not coming in time for anybody.

It also keeps the front's count of open connections (the per-worker cap) right while aiohttp
owns the connection, and answers half-closed connections: aiohttp's handler lets the transport
close as soon as the client shuts its sending side, dropping the answer to a request that
arrived whole; here the connection stays open until that answer has started and is closed by the
next tick (at most a second later).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, cast

from dsp.clock import monotonic

if TYPE_CHECKING:
    from dsp.server.front import Front


class _WatchedTransport:
    """The transport as aiohttp sees it: every call is passed through; writes mark the request as
    answered (its deadline no longer applies)."""

    __slots__ = ("_owner", "_transport")

    def __init__(self, transport: asyncio.Transport, owner: HandedOver) -> None:
        self._transport = transport
        self._owner = owner

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._owner.answered()
        self._transport.write(data)

    def writelines(self, data: Any) -> None:
        self._owner.answered()
        self._transport.writelines(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HandedOver(asyncio.Protocol):
    """aiohttp's protocol for one connection, wrapped (module docstring)."""

    __slots__ = ("_eof", "_front", "_inner", "_started_s", "_transport")

    def __init__(self, front: Front, inner: asyncio.Protocol) -> None:
        self._front = front
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._started_s = 0.0  # first byte of the request being received; 0: none pending
        self._eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._front.handed_over.add(self)
        self._inner.connection_made(cast(asyncio.Transport, _WatchedTransport(self._transport, self)))

    def data_received(self, data: bytes) -> None:
        if not self._started_s:
            self._started_s = monotonic()
        self._inner.data_received(data)

    def answered(self) -> None:
        self._started_s = 0.0

    def eof_received(self) -> bool:
        self._inner.eof_received()
        self._eof = True
        return True  # keep the transport: the tick closes it once the answer has started

    def connection_lost(self, exc: Exception | None) -> None:
        self._front.handed_over.discard(self)
        self._transport = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def check_timeouts(self, now: float) -> None:
        """Close the connection when its request has been arriving for too long, or when the
        client has half-closed it and nothing is pending."""
        started = self._started_s
        if self._transport is None:
            return
        if started and now - started > self._front.request_timeout_s:
            self._front.dropped("slow")
            self._transport.close()
        elif self._eof and not started:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
