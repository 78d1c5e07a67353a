"""The throughput ceiling: an aiohttp + uvloop handler that reads the body and answers 204.

Benchmarks run it beside the bidder in the same run so results are ratios, not absolute times.

    python -m benchmarks.ceiling_server --port 8099
"""

from __future__ import annotations

import argparse

import uvloop
from aiohttp import web


async def _nobid(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=204)


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/bid/{exchange}", _nobid)
    app.router.add_get("/healthz", lambda _r: _ok())
    return app


async def _ok() -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    uvloop.install()
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
