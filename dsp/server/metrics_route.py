"""``GET /metrics``: Prometheus text exposition for one process or, with
``PROMETHEUS_MULTIPROC_DIR`` set (see :mod:`dsp.observability.multiproc`), for all of them.

The app builder calls :func:`add_metrics_route` once with the process's :class:`Metrics`:

    add_metrics_route(app, metrics)

Scraping reads the per-process files from disk (a few ms with many series); keep the scrape
interval at 10-15 s. The handler never touches the bid path's state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from dsp.observability.metrics import Metrics, render


def metrics_handler(metrics: Metrics) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler answering the exposition of ``metrics`` (aggregated across processes)."""

    async def handle(_request: web.Request) -> web.Response:
        return web.Response(body=render(metrics), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handle


def add_metrics_route(app: web.Application, metrics: Metrics, path: str = "/metrics") -> None:
    """Register ``GET path`` on ``app`` (before the app is frozen, i.e. before it starts)."""
    app.router.add_get(path, metrics_handler(metrics))
