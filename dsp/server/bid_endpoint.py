"""``POST /bid/{exchange}``: the bid path's HTTP semantics, independent of the transport.

:meth:`BidEndpoint.answer` takes what the transport read (exchange name, raw body, whether the
client accepts gzip) and returns a :class:`BidReply`: 200 + BidResponse (gzip when accepted),
204 no-bid (or 200 + ``nbr`` body when the exchange profile wants one), 400 ``{"error", "path"}``
for a malformed or invalid request, 404 for an unknown exchange, 413 for a body (or an inflated
gzip body) over the limit. Nothing a client sends produces a 5xx: an unexpected error while
decoding is a 400 naming the exception type, one inside the flow a no-bid (INTERNAL_ERROR); both
are counted (``dsp_unexpected_errors_total{where}``) and logged as a sampled warning, never a
traceback per request.

Overload: before decoding, :class:`dsp.server.overload.LoadGuard` may decide the request is shed
(already too old, the loop lagging, too many in flight): a 204 that costs a few µs. The deadline
counts from ``t0``, when the transport read the request's first bytes; it is the request's
``tmax`` (or the profile's default), capped by the profile's ``tmax_max_ms``, minus the profile's
round-trip allowance and safety margin.

Two transports call it: :mod:`dsp.server.front` (the lean HTTP/1.1 front that serves bid traffic
in production) and :meth:`BidEndpoint.handle_exchange` (an aiohttp handler: the same route on the
aiohttp application, used for connections the front hands over and by ``--transport aiohttp``).
Both echo ``x-openrtb-version`` when the request had one, else send the exchange profile's
``openrtb_version``. The exchange's hooks (:mod:`dsp.exchanges.hooks`) run around the flow:
``normalise_request`` inside decoding, ``decorate_response`` before encoding a bid.
"""

from __future__ import annotations

import functools
import gzip
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import msgspec
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from dsp.bidding.eventlog import BidEventLog
from dsp.bidding.flow import BidFlow, Decision
from dsp.bidding.respond import nobid_response
from dsp.clock import Deadline, monotonic
from dsp.config.reloader import SnapshotHolder
from dsp.config.snapshot import Snapshot
from dsp.errors import InvalidRequest
from dsp.exchanges.auth import ExchangeGuard, HeaderGetter, build_guards, headers_from_mapping
from dsp.exchanges.hooks import ExchangeHooks, hooks_for
from dsp.observability.logging import DecisionLog, SampledWarning
from dsp.openrtb.decode import RequestDecoder
from dsp.openrtb.nobid import NoBidReason
from dsp.openrtb.request import BidRequest, Regs
from dsp.openrtb.response import encode_response
from dsp.privacy.policy import Privacy
from dsp.server.overload import LoadGuard
from dsp.server.recorder import BidRecorder

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
VERSION_HEADER = "x-openrtb-version"
_GZIP_MAGIC = b"\x1f\x8b"
_error_encoder = msgspec.json.Encoder()


class BodyTooLarge(Exception):
    pass


class BidReply(NamedTuple):
    """What to send: ``status``, ``body`` (JSON; empty for 204), whether ``body`` is gzipped, and
    the OpenRTB version we speak to this exchange (the ``x-openrtb-version`` header when the
    request carried none; None for answers before the exchange is known)."""

    status: int
    body: bytes = b""
    gzipped: bool = False
    version: bytes | None = None


NO_CONTENT = BidReply(204)
_NO_CONTENT = {v: BidReply(204, version=v.encode()) for v in ("2.5", "2.6")}
_VERSION = {v: v.encode() for v in ("2.5", "2.6")}


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


def error_reply(status: int, message: str, path: str = "") -> BidReply:
    return BidReply(status, _error_encoder.encode({"error": message, "path": path}))


UNKNOWN_EXCHANGE = error_reply(404, "unknown exchange", "exchange")
AUTH_REPLIES = {401: error_reply(401, "missing or wrong exchange credentials"),
                403: error_reply(403, "source address not allowed for this exchange")}


def _no_headers(_name: bytes) -> bytes | None:
    return None


class BidEndpoint:
    """Holds the per-process collaborators of the bid route."""

    __slots__ = ("_decisions", "_decoder", "_events", "_flow", "_flow_warning", "_guards", "_holder",
                 "_hooks", "_odd_body", "_rec", "guard", "max_body_bytes")

    def __init__(self, holder: SnapshotHolder, flow: BidFlow, recorder: BidRecorder,
                 max_body_bytes: int, decisions: DecisionLog | None = None,
                 hooks: dict[str, ExchangeHooks] | None = None,
                 events: BidEventLog | None = None, guard: LoadGuard | None = None) -> None:
        self._hooks = hooks  # None: the registry dsp.exchanges.hooks.HOOKS (tests pass their own)
        self._decisions = decisions
        self._events = events
        self._holder = holder
        self._flow = flow
        self._rec = recorder
        self._decoder = RequestDecoder()
        self.max_body_bytes = max_body_bytes
        self.guard = guard or LoadGuard()
        self._guards: dict[str, ExchangeGuard] = build_guards(holder.current.exchanges)
        self._odd_body = SampledWarning(log, "unexpected error decoding a bid request; answered 400")
        self._flow_warning = SampledWarning(log, "bid flow failed; answered with a no-bid")

    @property
    def recorder(self) -> BidRecorder:
        return self._rec

    def shed(self, exchange: str, t0: float) -> bool:
        """True (counted) when this request is to be answered with the cheapest no-bid without
        being read further (dsp.server.overload). The front asks before it starts an answer task
        (a synchronous 204 costs a few µs; the task alone would cost more); :meth:`answer` asks
        again for the aiohttp path. An unknown exchange is never shed (it gets its 404)."""
        profile = self._holder.current.exchanges.get(exchange)
        if profile is None:
            return False
        allowance_ms = profile.round_trip_allowance_ms + profile.safety_margin_ms
        age_s = monotonic() - t0
        reason = self.guard.shed_reason(age_s, (profile.tmax_default_ms - allowance_ms) / 1000.0,
                                        self._rec.inflight)
        if reason is None:
            return False
        self._rec.shed(exchange, reason, age_s)
        return True

    def update_snapshot(self, snapshot: Snapshot) -> None:
        """Rebuild the exchange guards (secrets are read from the environment again)."""
        self._guards = build_guards(snapshot.exchanges)

    def exchange_guard(self, exchange: str) -> ExchangeGuard | None:
        """The exchange's guard, or None when its profile is open (or the exchange is unknown)."""
        return self._guards.get(exchange)

    def admit(self, exchange: str, peer: str | None, header: HeaderGetter | None) -> BidReply | None:
        """The answer that stops a request before its body is read or decoded, or None to go on.

        An unknown exchange is 404, counted under the one fixed label ``_unknown`` (the name a
        client sent never becomes a label); a guarded profile's 401/403 is counted by exchange.
        ``header`` is only called for guarded profiles (the front builds it lazily)."""
        if exchange not in self._holder.current.exchanges:
            self._rec.unknown_exchange()
            return UNKNOWN_EXCHANGE
        guard = self._guards.get(exchange)
        if guard is None:
            return None
        status = guard.check(peer, header or _no_headers)
        if status is None:
            return None
        self._rec.auth_rejected(exchange, status)
        return AUTH_REPLIES[status]

    def too_large(self, exchange: str) -> BidReply:
        """The 413 answer, counted; for a transport that refuses a body before reading it.
        Call :meth:`admit` first: ``exchange`` must be a configured name."""
        self._rec.request(exchange, "invalid", 0.0)
        return error_reply(413, f"body larger than {self.max_body_bytes} bytes")

    async def answer(self, exchange: str, body: bytes, accept_gzip: bool, t0: float, *,
                     gpc: bool = False) -> BidReply:
        """Answer one bid request. ``body`` is the raw body (gzip is detected by its magic bytes,
        so a missing ``Content-Encoding`` does not matter); ``t0`` is when the request arrived
        (``dsp.clock.monotonic``): the deadline counts from it. ``gpc``: the request carried
        ``Sec-GPC: 1`` (Global Privacy Control), which counts like ``regs.gpc``. Never raises."""
        snapshot = self._holder.current
        profile = snapshot.exchanges.get(exchange)
        if profile is None:  # only when a reload removed it since admit()
            self._rec.unknown_exchange()
            return UNKNOWN_EXCHANGE
        if self.shed(exchange, t0):
            return NO_CONTENT
        rec = self._rec
        allowance_ms = profile.round_trip_allowance_ms + profile.safety_margin_ms
        sampled = rec.sample_stages()
        try:
            if body[:2] == _GZIP_MAGIC:
                body = gunzip_limited(body, self.max_body_bytes)
            t_dec = monotonic() if sampled else 0.0
            hooks = hooks_for(profile, self._hooks)
            req = self._decoder.decode(body, lax_numbers=profile.lax_numbers,
                                       hook=hooks.normalise_request)
            if sampled:
                rec.stage("decode", monotonic() - t_dec)
        except InvalidRequest as exc:
            rec.request(exchange, "invalid", monotonic() - t0)
            return error_reply(400, exc.message, exc.path)
        except BodyTooLarge:
            rec.request(exchange, "invalid", monotonic() - t0)
            return error_reply(413, f"body larger than {self.max_body_bytes} bytes")
        except Exception as exc:  # the decoder should raise nothing else; a body must not be a 5xx
            rec.request(exchange, "invalid", monotonic() - t0)
            rec.unexpected("decode")
            self._odd_body.hit({"exchange": exchange, "exception": type(exc).__name__})
            return error_reply(400, f"undecodable body: {type(exc).__name__}")
        if gpc:
            with_gpc(req)
        tmax_ms = min(req.tmax or profile.tmax_default_ms, profile.tmax_max_ms)
        deadline = Deadline(t0 + (tmax_ms - allowance_ms) / 1000.0)
        rec.inflight += 1
        try:
            decision = await self._flow.run(req, profile, snapshot, deadline, timed=sampled)
            if sampled and decision.pricing_s:
                rec.stage("pricing", decision.pricing_s)
            if decision.privacy is not None and decision.privacy is not Privacy.NO_SIGNAL:
                rec.privacy(exchange, decision.privacy)
        except Exception as exc:  # a bug must not become a 5xx or a late bid
            rec.unexpected("flow")
            self._flow_warning.hit({"exchange": exchange,
                                     "exception": f"{type(exc).__name__}: {exc}"[:200]})
            reason = NoBidReason.INTERNAL_ERROR
        else:
            response = decision.response
            if self._events is not None:
                try:
                    self._events.record(body, req, exchange, decision, snapshot.version)
                except Exception:  # the log must never cost a bid
                    log.exception("event log failed")
            if self._decisions is not None and self._decisions.should_sample():
                self._log_decision(exchange, req.id, decision, monotonic() - t0)
            if response is not None:
                if hooks.decorate_response is not None:
                    hooks.decorate_response(response, req, profile)
                for campaign in decision.campaigns:
                    rec.bid(exchange, campaign)
                rec.request(exchange, "bid", monotonic() - t0)
                return _json_reply(encode_response(response), accept_gzip, profile.openrtb_version)
            reason = decision.reason or NoBidReason.INTERNAL_ERROR
        finally:
            rec.inflight -= 1
        rec.nobid(exchange, reason)
        rec.request(exchange, "nobid", monotonic() - t0)
        if profile.nobid_body:
            return _json_reply(encode_response(nobid_response(req.id, reason)), accept_gzip,
                               profile.openrtb_version)
        return _NO_CONTENT[profile.openrtb_version]

    def _log_decision(self, exchange: str, request_id: str, decision: Decision, elapsed_s: float) -> None:
        assert self._decisions is not None
        bids = []
        if decision.response is not None and decision.response.seatbid:
            bids = [{"imp": b.impid, "campaign": b.cid, "price": b.price, "crid": b.crid}
                    for sb in decision.response.seatbid for b in sb.bid]
        self._decisions.log({"exchange": exchange, "request_id": request_id,
                             "outcome": "bid" if decision.response is not None else "nobid",
                             "reason": decision.reason.value if decision.reason else None,
                             "privacy": decision.privacy.value if decision.privacy else None,
                             "bids": bids, "latency_ms": round(elapsed_s * 1000, 3)})

    # -- the aiohttp adapter -------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``POST /bid/{exchange}`` (the dynamic route: exchanges added by a reload)."""
        return await self.handle_exchange(request.match_info["exchange"], request)

    def route_for(self, exchange: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """A handler bound to one exchange, for a static route (aiohttp resolves those by a dict
        lookup instead of trying the ``/bid/{exchange}`` pattern)."""
        return functools.partial(self.handle_exchange, exchange)

    async def handle_exchange(self, exchange: str, request: web.Request) -> web.StreamResponse:
        t0 = monotonic()
        version = request.headers.get(VERSION_HEADER)
        peer = None
        if exchange in self._guards and request.transport is not None:
            peername = request.transport.get_extra_info("peername")
            peer = peername[0] if isinstance(peername, tuple) else None
        stop = self.admit(exchange, peer, headers_from_mapping(request.headers))
        if stop is not None:
            reply = stop
        else:
            try:  # aiohttp inflates gzip (and deflate, br) bodies itself
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                reply = self.too_large(exchange)
            except (RequestPayloadError, web.HTTPException, ConnectionError, ValueError) as exc:
                self._rec.request(exchange, "invalid", monotonic() - t0)
                reply = error_reply(400, f"unreadable body: {type(exc).__name__}")
            else:
                accept_gzip = "gzip" in request.headers.get("Accept-Encoding", "")
                reply = await self.answer(exchange, body, accept_gzip, t0,
                                          gpc=request.headers.get("Sec-GPC", "").strip() == "1")
        version = version or (reply.version.decode() if reply.version else None)
        headers = {VERSION_HEADER: version} if version else {}
        if reply.gzipped:
            headers["Content-Encoding"] = "gzip"
        if not reply.body:
            return web.Response(status=reply.status, headers=headers)
        return web.Response(status=reply.status, body=reply.body, content_type=JSON_TYPE,
                            headers=headers)


def with_gpc(req: BidRequest) -> None:
    """Record a ``Sec-GPC: 1`` header as ``regs.gpc`` (decoded requests are ours to normalise)."""
    if req.regs is None:
        req.regs = Regs(gpc=1)
    else:
        req.regs.gpc = 1


def _json_reply(payload: bytes, accept_gzip: bool, version: str) -> BidReply:
    if accept_gzip:
        return BidReply(200, gzip.compress(payload, compresslevel=1), True, _VERSION[version])
    return BidReply(200, payload, False, _VERSION[version])
