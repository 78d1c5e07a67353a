"""HTTP adapter for notices: thin handlers around :class:`dsp.notices.service.NoticeService`.

Routes (GET or POST; POST parameters may be in the query string or a form body):

    /notice/win?t=<token>&p=${AUCTION_PRICE}     200 "<result>"
    /notice/bill?t=<token>&p=${AUCTION_PRICE}    200 "<result>"
    /notice/loss?t=<token>&r=${AUCTION_LOSS}&m=${AUCTION_MIN_TO_WIN}  200 "<result>"
    /notice/click?t=<click token>                302 to the landing page with dsp_click=<click id>
    /notice/event?t=<event token>&e=<impression|start|...>  200 "<result>" (counted, never billed)
    POST /conversion   {"click_id": ..., "event": "submitted|approved|funded", "amount": 1234.5}
                       with X-DSP-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">

Each URL takes the token of its own kind only (a loss token on /notice/win is 403, like a forgery).
Bad input -> 4xx with a message naming the field (403 forged or wrong-kind token, 410 expired,
400 malformed, 401 unsigned/wrongly signed/stale conversion, 404 no landing page or unknown click
id); Redis down -> 503 (the exchange retries; retries are deduplicated).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from dsp.errors import DependencyUnavailable, RequestRejected
from dsp.notices.service import NoticeOutcome, NoticeService
from dsp.notices.signature import SIGNATURE_HEADER

NOTICE_SERVICE: web.AppKey[NoticeService] = web.AppKey("notice_service", NoticeService)
_MAX_BODY_BYTES = 16 * 1024


async def _params(request: web.Request) -> dict[str, str]:
    params = {k: v for k, v in request.query.items()}
    if request.method == "POST" and request.content_type in (
            "application/x-www-form-urlencoded", "multipart/form-data"):
        if (request.content_length or 0) > _MAX_BODY_BYTES:
            raise RequestRejected("body: too large", status=413)
        form = await request.post()
        for k, v in form.items():
            if isinstance(v, str):
                params.setdefault(k, v)
    return params


def _answer(out: NoticeOutcome) -> web.Response:
    if out.status == 302 and out.location:
        return web.Response(status=302, headers={"Location": out.location, "Cache-Control": "no-store"})
    return web.Response(status=out.status, text=out.result)


def _guard(fn: Callable[[web.Request], Awaitable[NoticeOutcome]]
           ) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        try:
            return _answer(await fn(request))
        except RequestRejected as exc:
            return web.Response(status=exc.status, text=exc.message)
        except DependencyUnavailable:
            return web.Response(status=503, text="notice store unavailable, retry")
    return handler


def add_notice_routes(app: web.Application, service: NoticeService) -> None:
    """Register the notice and conversion routes on ``app`` (the bidder's app builder calls this)."""
    app[NOTICE_SERVICE] = service

    async def win(request: web.Request) -> NoticeOutcome:
        p = await _params(request)
        return await service.win(p.get("t"), p.get("p"))

    async def bill(request: web.Request) -> NoticeOutcome:
        p = await _params(request)
        return await service.bill(p.get("t"), p.get("p"))

    async def loss(request: web.Request) -> NoticeOutcome:
        p = await _params(request)
        return await service.loss(p.get("t"), p.get("r"), p.get("m"))

    async def click(request: web.Request) -> NoticeOutcome:
        p = await _params(request)
        return await service.click(p.get("t"))

    async def event(request: web.Request) -> NoticeOutcome:
        p = await _params(request)
        return await service.event(p.get("t"), p.get("e"))

    async def conversion(request: web.Request) -> NoticeOutcome:
        if (request.content_length or 0) > _MAX_BODY_BYTES:
            raise RequestRejected("body: too large", status=413)
        return await service.conversion(await request.read(),
                                        request.headers.get(SIGNATURE_HEADER))

    for path, fn in (("/notice/win", win), ("/notice/bill", bill), ("/notice/loss", loss),
                     ("/notice/click", click), ("/notice/event", event)):
        h = _guard(fn)
        app.router.add_route("GET", path, h)
        app.router.add_route("POST", path, h)
    app.router.add_route("POST", "/conversion", _guard(conversion))
