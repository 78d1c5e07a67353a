"""The admin port: ``/metrics`` and ``/admin/*``, never on the exchange-facing bid port.

    app = admin_app(render_metrics, reload, token=os.environ.get("DSP_ADMIN_TOKEN"),
                    loopback=is_loopback(settings.admin_host))
    site = await start_admin(app, settings.admin_host, settings.admin_port)

``dsp serve --admin-port 9090 --admin-host 127.0.0.1`` (the defaults). With one worker the worker
serves it beside the bid port; with ``--workers N`` the supervisor does: its ``/metrics`` sums
every worker (Prometheus multiprocess files, :mod:`dsp.observability.multiproc`) and its
``POST /admin/reload`` validates the config once and then signals every worker (SIGHUP), so a
reload reaches all of them.

Access rules:

* ``DSP_ADMIN_TOKEN`` set: ``/admin/*`` needs ``Authorization: Bearer <token>``; so does
  ``/metrics`` when the admin host is not loopback.
* Not set: only allowed on loopback (``dsp serve`` refuses to start otherwise), where ``/admin/*``
  and ``/metrics`` answer without a token.
* Tokens are compared as bytes in constant time (``hmac.compare_digest``), so any header value,
  non-ASCII included, is a 403 and never a 500.
* Reload work (reading and compiling YAML, 13-19 ms) runs in a thread, off the event loop; only
  the swap of the compiled snapshot happens on the loop.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

ReloadFn = Callable[[], Awaitable[dict[str, object]]]


def _authorised(request: web.Request, expected: bytes | None) -> bool:
    if expected is None:
        return True
    got = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
    return hmac.compare_digest(got, expected)


def admin_app(render_metrics: Callable[[], bytes], reload: ReloadFn, *, token: str | None,
              loopback: bool) -> web.Application:
    """The admin application (see the module docstring for who may call what)."""
    if not token and not loopback:
        raise ValueError("an admin port beyond loopback needs DSP_ADMIN_TOKEN")
    expected = b"Bearer " + token.encode() if token else None
    metrics_expected = None if loopback else expected

    async def metrics(request: web.Request) -> web.Response:
        if not _authorised(request, metrics_expected):
            return web.json_response({"error": "missing or wrong admin token"}, status=403)
        return web.Response(body=render_metrics(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def do_reload(request: web.Request) -> web.Response:
        if not _authorised(request, expected):
            return web.json_response({"ok": False, "error": "missing or wrong admin token"},
                                     status=403)
        result = await reload()
        return web.json_response(result, status=200 if result["ok"] else 422)

    app = web.Application(client_max_size=4096)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/admin/reload", do_reload)
    return app


async def start_admin(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` (0: a free port); returns the runner and the bound port."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    for address in runner.addresses:  # the bound port when 0 was asked for
        if isinstance(address, tuple):
            bound = int(address[1])
    return runner, bound
