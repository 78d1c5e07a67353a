"""Run the bidder application on a socket until told to stop.

    server = BidderServer(app, settings)
    port = await server.start()            # binds settings.host:settings.port (SO_REUSEPORT)
    ...
    await server.stop()                    # graceful: in-flight requests answer first

``settings.transport`` picks the transport: ``"front"`` (default) puts :mod:`dsp.server.front`
on the socket, which answers bid requests itself and hands any other request's connection to the
aiohttp application; ``"aiohttp"`` serves everything with aiohttp (the reference; slower on the
bid path, identical answers). Either way connections are accepted by the front's protocol, so the
per-worker connection cap and the total request deadline apply to both (with ``"aiohttp"`` the
front hands every connection over as soon as it is made). The aiohttp application's start-up
and clean-up (``Services.open``/``close``) run exactly once, in :meth:`start` and :meth:`stop`.


With ``settings.admin_port`` set, the same process also serves the admin port
(:mod:`dsp.server.admin`: ``/metrics`` and ``/admin/reload``) on ``settings.admin_host``;
``admin_url`` names it once started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from aiohttp import web

from dsp.observability.metrics import render
from dsp.server.admin import admin_app, start_admin
from dsp.server.app import SERVICES
from dsp.server.credentials import ADMIN_TOKEN_ENV, is_loopback
from dsp.server.front import Front
from dsp.server.settings import TRANSPORTS, Settings

log = logging.getLogger(__name__)


#: Listen backlog (the kernel caps it at ``net.core.somaxconn``, 4096 by default). Large on
#: purpose: when an exchange opens a burst of connections while a worker is busy, a full accept
#: queue drops SYNs and the client retries after a second (measured under 1.5x overload: 22,000
#: listen overflows and a p50 of ~1 s with 1,024; docs/operations.md). An accepted connection
#: costs little, and its requests can then be shed in microseconds.
LISTEN_BACKLOG = 4096


def listening_socket(host: str, port: int, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """A TCP listening socket with ``SO_REUSEPORT`` (so N worker processes share the port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=backlog, reuse_port=True)


class BidderServer:
    """One worker's server: the aiohttp runner plus the chosen transport on one socket."""

    def __init__(self, app: web.Application, settings: Settings) -> None:
        if settings.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {settings.transport!r}")
        self._app = app
        self._settings = settings
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=settings.shutdown_grace_s)
        self._server: asyncio.Server | None = None
        self._admin: web.AppRunner | None = None
        self.front: Front | None = None
        self.admin_url: str | None = None

    async def start(self, sock: socket.socket | None = None) -> int:
        """Run the application's start-up, then listen. Returns the bound port."""
        s = self._settings
        await self._runner.setup()
        sock = sock or listening_socket(s.host, s.port)
        server = self._runner.server
        assert server is not None
        self.front = Front(self._app[SERVICES].endpoint, server,
                           keepalive_timeout_s=s.keepalive_timeout_s,
                           request_timeout_s=s.request_timeout_s,
                           max_connections=s.max_connections,
                           serve_bids=s.transport == "front")
        self._server = await asyncio.get_running_loop().create_server(
            self.front.protocol, sock=sock, backlog=LISTEN_BACKLOG)
        self.front.start()
        if s.admin_port is not None:
            svc = self._app[SERVICES]
            app = admin_app(lambda: render(svc.metrics), lambda: svc.reload("admin"),
                            token=os.environ.get(ADMIN_TOKEN_ENV) or None,
                            loopback=is_loopback(s.admin_host))
            self._admin, admin_port = await start_admin(app, s.admin_host, s.admin_port)
            self.admin_url = f"http://{s.admin_host}:{admin_port}"
        port: int = sock.getsockname()[1]
        return port

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests answer (up to ``shutdown_grace_s``), then run
        the application's clean-up (Redis, batchers, money runtime)."""
        if self._admin is not None:
            await self._admin.cleanup()
        if self._server is not None:
            self._server.close()
        if self.front is not None:
            await self.front.close(self._settings.shutdown_grace_s)
        # Bounded: a stop must end (the process is going away; a clean-up step that waits on a
        # dead peer would otherwise hold SIGTERM forever).
        try:
            await asyncio.wait_for(self._runner.cleanup(), self._settings.shutdown_grace_s + 10.0)
        except TimeoutError:
            log.warning("clean-up did not finish in time; stopping anyway")
