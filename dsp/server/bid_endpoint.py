"""``POST /bid/{exchange}``: the thin HTTP adapter around :class:`dsp.bidding.flow.BidFlow`.

Answers: 200 + BidResponse (gzip when ``Accept-Encoding: gzip``), 204 no-bid (or 200 + ``nbr``
body when the exchange profile wants one), 400 ``{"error", "path"}`` for a malformed or invalid
request, 404 for an unknown exchange, 413 for a body (or an inflated gzip body) over the limit.
Nothing a client sends produces a 5xx: an unexpected error inside the flow becomes a no-bid
(INTERNAL_ERROR) and is logged. ``x-openrtb-version`` is echoed when present.
"""

from __future__ import annotations

import functools
import gzip
import logging
import zlib
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from dsp.bidding.flow import BidFlow, Decision
from dsp.bidding.respond import nobid_response
from dsp.clock import Deadline, monotonic
from dsp.config.reloader import SnapshotHolder
from dsp.config.snapshot import ExchangeProfile, Snapshot
from dsp.errors import InvalidRequest
from dsp.observability.logging import DecisionLog
from dsp.openrtb.decode import RequestDecoder
from dsp.openrtb.nobid import NoBidReason
from dsp.openrtb.response import encode_response
from dsp.server.recorder import BidRecorder

log = logging.getLogger(__name__)

_JSON = "application/json"
_VERSION_HEADER = "x-openrtb-version"
_GZIP_MAGIC = b"\x1f\x8b"
_error_encoder = msgspec.json.Encoder()


class BodyTooLarge(Exception):
    pass


def gunzip_limited(body: bytes, limit: int) -> bytes:
    """Inflate a gzip (or zlib) body, refusing more than ``limit`` bytes (zip bombs)."""
    inflater = zlib.decompressobj(47)  # 32 + 15: gzip or zlib header, auto-detected
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidRequest(f"body is not valid gzip: {exc}", "") from None
    if len(out) > limit:
        raise BodyTooLarge()
    if not inflater.eof:
        raise InvalidRequest("gzip body is truncated", "")
    return out


def _error(status: int, message: str, path: str, headers: dict[str, str] | None = None) -> web.Response:
    body = _error_encoder.encode({"error": message, "path": path})
    return web.Response(status=status, body=body, content_type=_JSON, headers=headers)


class BidEndpoint:
    """Holds the per-process collaborators; ``handle`` is the aiohttp handler."""

    __slots__ = ("_decisions", "_decoder", "_flow", "_holder", "_max_body", "_rec")

    def __init__(self, holder: SnapshotHolder, flow: BidFlow, recorder: BidRecorder,
                 max_body_bytes: int, decisions: DecisionLog | None = None) -> None:
        self._decisions = decisions
        self._holder = holder
        self._flow = flow
        self._rec = recorder
        self._decoder = RequestDecoder()
        self._max_body = max_body_bytes

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``POST /bid/{exchange}`` (the dynamic route: exchanges added by a reload)."""
        return await self.handle_exchange(request.match_info["exchange"], request)

    def route_for(self, exchange: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """A handler bound to one exchange, for a static route (aiohttp resolves those by a dict
        lookup instead of trying the ``/bid/{exchange}`` pattern)."""
        return functools.partial(self.handle_exchange, exchange)

    async def handle_exchange(self, exchange: str, request: web.Request) -> web.StreamResponse:
        t0 = monotonic()
        snapshot = self._holder.current
        profile = snapshot.exchanges.get(exchange)
        version = request.headers.get(_VERSION_HEADER)
        headers = {_VERSION_HEADER: version} if version else None
        if profile is None:
            return _error(404, f"unknown exchange {exchange!r}", "", headers)
        inflight = self._rec.inflight
        inflight.inc()
        try:
            return await self._answer(request, exchange, profile, snapshot, headers, t0)
        finally:
            inflight.dec()

    async def _answer(self, request: web.Request, exchange: str, profile: ExchangeProfile,
                      snapshot: Snapshot, headers: dict[str, str] | None,
                      t0: float) -> web.StreamResponse:
        sampled = self._rec.sample_stages()
        try:
            body = await request.read()
            if body[:2] == _GZIP_MAGIC:  # aiohttp inflates gzip bodies itself unless told not to
                body = gunzip_limited(body, self._max_body)
            t_dec = monotonic() if sampled else 0.0
            req = self._decoder.decode(body, lax_numbers=profile.lax_numbers)
            if sampled:
                self._rec.stage("decode", monotonic() - t_dec)
        except InvalidRequest as exc:
            self._rec.request(exchange, "invalid", monotonic() - t0)
            return _error(400, exc.message, exc.path, headers)
        except (BodyTooLarge, web.HTTPRequestEntityTooLarge):
            self._rec.request(exchange, "invalid", monotonic() - t0)
            return _error(413, f"body larger than {self._max_body} bytes", "", headers)
        except (RequestPayloadError, web.HTTPException, ConnectionError, ValueError) as exc:
            self._rec.request(exchange, "invalid", monotonic() - t0)
            return _error(400, f"unreadable body: {type(exc).__name__}", "", headers)
        tmax_ms = req.tmax if req.tmax else profile.tmax_default_ms
        budget_ms = tmax_ms - profile.round_trip_allowance_ms - profile.safety_margin_ms
        deadline = Deadline(t0 + budget_ms / 1000.0)
        try:
            decision = await self._flow.run(req, profile, snapshot, deadline, timed=sampled)
            if sampled and decision.pricing_s:
                self._rec.stage("pricing", decision.pricing_s)
        except Exception:  # a bug must not become a 5xx or a late bid
            log.exception("bid flow failed", extra={"fields": {"exchange": exchange, "id": req.id}})
            reason = NoBidReason.INTERNAL_ERROR
        else:
            response = decision.response
            if self._decisions is not None and self._decisions.should_sample():
                self._log_decision(exchange, req.id, decision, monotonic() - t0)
            if response is not None:
                for campaign in decision.campaigns:
                    self._rec.bid(exchange, campaign)
                self._rec.request(exchange, "bid", monotonic() - t0)
                return self._encode(request, encode_response(response), headers)
            reason = decision.reason or NoBidReason.INTERNAL_ERROR
        self._rec.nobid(exchange, reason)
        self._rec.request(exchange, "nobid", monotonic() - t0)
        if profile.nobid_body:
            return self._encode(request, encode_response(nobid_response(req.id, reason)), headers)
        return web.Response(status=204, headers=headers)

    def _log_decision(self, exchange: str, request_id: str, decision: Decision, elapsed_s: float) -> None:
        assert self._decisions is not None
        bids = []
        if decision.response is not None and decision.response.seatbid:
            bids = [{"imp": b.impid, "campaign": b.cid, "price": b.price, "crid": b.crid}
                    for sb in decision.response.seatbid for b in sb.bid]
        self._decisions.log({"exchange": exchange, "request_id": request_id,
                             "outcome": "bid" if decision.response is not None else "nobid",
                             "reason": decision.reason.value if decision.reason else None,
                             "bids": bids, "latency_ms": round(elapsed_s * 1000, 3)})

    @staticmethod
    def _encode(request: web.Request, payload: bytes,
                headers: dict[str, str] | None) -> web.Response:
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            out = dict(headers) if headers else {}
            out["Content-Encoding"] = "gzip"
            return web.Response(body=gzip.compress(payload, compresslevel=1), content_type=_JSON,
                                headers=out)
        return web.Response(body=payload, content_type=_JSON, headers=headers)
