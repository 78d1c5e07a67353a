"""Pure decision steps of one request: prepare (before I/O) and choose (after the one await).

    prep = prepare(req, profile, snapshot, now_s)             # Prepared | NoBidReason
    audience = await resolver.resolve(prep.ctx.user_id, deadline)   # (flow.py, the only await)
    chosen = choose(prep, audience, money, snapshot, ...)    # list[Chosen] | NoBidReason

``choose`` prices every candidate (value formula, frequency cap, pacing, floors), keeps the best
campaign per imp (highest price in the base currency) and reserves its price with the money gate;
if the reservation does not fit, the next best campaign is tried. One bid per imp at most.
Every step can record what it did in ``trace`` (``dsp explain``); the hot path passes None.
"""

from __future__ import annotations

import msgspec

from dsp.bidding.audience import Audience
from dsp.bidding.context import RequestContext, request_context
from dsp.bidding.eligibility import Candidate, Drop, eligible
from dsp.bidding.filters import RESERVATION, Filter, checks, outcome, response_currency
from dsp.bidding.ports import MoneyGate
from dsp.bidding.pricing import Price, explore_price, price
from dsp.bidding.quality import quality_gate
from dsp.config.snapshot import Snapshot
from dsp.exchanges.profile import ExchangeProfile
from dsp.openrtb.nobid import NoBidReason
from dsp.openrtb.request import BidRequest


class Prepared(msgspec.Struct, gc=False):
    """Everything known before features and scores: context, currency, candidates."""

    req: BidRequest
    profile: ExchangeProfile
    ctx: RequestContext
    currency: str
    candidates: list[Candidate]
    fallback: Filter  # the row reported if no candidate ends up bidding
    # Exploration draw, uniform in [0, 1) (2.0: none drawn): campaign c explores this request
    # when explore_u < c.explore_share (set by the flow; see :func:`choose`).
    explore_u: float = 2.0

    @property
    def needs_user(self) -> bool:
        return bool(self.ctx.user_id)

    # (Plain loops below: a generator per request costs more than the loop itself.)
    @property
    def intent_floor(self) -> float:
        """The lowest intent_min among the candidates: below it nothing can bid (0 when the
        request is explored: every score is needed)."""
        u = self.explore_u  # 2.0 (none drawn) is above every explore_share (at most 0.2)
        lowest = self.candidates[0].campaign.intent_min
        for cand in self.candidates:
            c = cand.campaign
            if u < c.explore_share:
                return 0.0
            if c.intent_min < lowest:
                lowest = c.intent_min
        return lowest

    @property
    def may_explore(self) -> bool:
        for cand in self.candidates:  # noqa: SIM110 (any() over a generator: slower per request)
            if cand.campaign.explore_share > 0.0:
                return True
        return False


class Chosen(msgspec.Struct, gc=False):
    """The winning campaign of one imp, priced and reserved."""

    candidate: Candidate
    price: Price
    bid_id: str
    price_cpm_micros: int  # in the response currency


class Priced(msgspec.Struct, frozen=True):
    """Trace record: a candidate's pricing outcome (for ``dsp explain``)."""

    campaign_id: str
    imp_index: int
    reason: NoBidReason | None
    value_cpm_micros: int
    bid_cpm_micros: int
    detail: str
    filter: str = ""  # the row of dsp.bidding.filters that stopped it ("" when it may bid)


_REQUEST_CHECKS = checks("request")
_PRICE_CHECKS = checks("price")


def prepare(req: BidRequest, profile: ExchangeProfile, snapshot: Snapshot, now_s: float,
            trace: list[Drop] | None = None) -> Prepared | NoBidReason:
    """Request gates, request context and eligible candidates. No I/O."""
    return prepare_in_context(req, profile, snapshot, now_s, trace)[1]


def prepare_in_context(req: BidRequest, profile: ExchangeProfile, snapshot: Snapshot, now_s: float,
                       trace: list[Drop] | None = None
                       ) -> tuple[RequestContext | None, Prepared | NoBidReason]:
    """:func:`prepare`, also returning the request context when one was built (the flow counts
    its privacy outcome even when no campaign is left)."""
    rates = snapshot.rates
    for check, row in _REQUEST_CHECKS:
        if check(req, profile, rates):
            if trace is not None:
                trace.append(Drop("*", -1, row.reason, row.explain(req, profile, rates), row.name))
            return None, row.reason
    quality = quality_gate(req, profile, snapshot.traffic)
    if isinstance(quality, tuple):  # an outcome row of the request stage (filters table)
        row = outcome("request", quality[0])
        if trace is not None:
            trace.append(Drop("*", -1, row.reason, quality[1], row.name))
        return None, row.reason
    currency = response_currency(req, profile, rates) or profile.currency
    ctx = request_context(req, profile.name, profile.auction_type, now_s, snapshot.privacy, quality)
    candidates, fallback = eligible(snapshot.campaigns_for(profile.name), req.imp, ctx,
                                    rates, profile.seat, trace)
    if not candidates:
        return ctx, fallback.reason
    return ctx, Prepared(req, profile, ctx, currency, candidates, fallback)


def choose(prep: Prepared, audience: Audience, money: MoneyGate, snapshot: Snapshot,
           next_bid_id: IdSource, *, trace: list[Priced] | None = None) -> list[Chosen] | NoBidReason:
    """Price, pick the best campaign per imp and reserve. Returns the bids or the no-bid reason
    (the furthest-down filter row that stopped a candidate, see :mod:`dsp.bidding.filters`)."""
    ctx = prep.ctx
    rates = snapshot.rates
    shading = prep.profile.first_price_shading
    per_imp: dict[int, list[tuple[int, Candidate, Price]]] = {}
    worst = prep.fallback
    for cand in prep.candidates:
        c = cand.campaign
        row: Filter | None = None
        p: Price | None = None
        explore = prep.explore_u < c.explore_share and audience.known
        for check, r in _PRICE_CHECKS:
            if check(cand, audience, ctx):
                if explore and r.name == "intent_min":
                    continue  # explored: the intent gate is what exploration looks past
                row = r
                break
        if row is None:
            p = price(c, audience.p_intent, audience.pd, pacing_lambda=money.pacing_multiplier(c.id),
                      floor_cpm_micros=cand.floor_cpm_micros, auction_type=cand.auction_type,
                      shading=shading,
                      table=snapshot.shading_table(c, prep.profile, cand.creative.kind)
                      if cand.auction_type == 1 and snapshot.shading else None)
            if explore and (p.stopped is not None or audience.p_intent < c.intent_min):
                p = explore_price(c, p, cand.floor_cpm_micros) or p
            if p.stopped is not None:
                row = p.stopped
            else:
                why = money.admit(c.id, p.value_cpm_micros // 1000)
                if why is not None:
                    row = outcome("money", why)
        if trace is not None:
            trace.append(_priced(cand, audience, ctx, row, p))
        if row is not None or p is None:
            if row is not None and row.rank > worst.rank:
                worst = row
            continue
        in_base = rates.convert_micros(p.bid_cpm_micros, c.currency, rates.base)
        per_imp.setdefault(cand.imp_index, []).append((in_base or 0, cand, p))
    chosen: list[Chosen] = []
    expires_at_s = ctx.now_s + prep.profile.notice_ttl_s
    for options in per_imp.values():
        options.sort(key=lambda o: o[0], reverse=True)
        for _, cand, p in options:
            out_price = rates.convert_micros(p.bid_cpm_micros, cand.campaign.currency, prep.currency)
            if out_price is None or out_price <= 0:
                continue
            bid_id = next_bid_id()
            if money.reserve(cand.campaign.id, bid_id, -(-p.bid_cpm_micros // 1000), expires_at_s,
                             test=ctx.test, issued_at_s=ctx.now_s):
                chosen.append(Chosen(cand, p, bid_id, out_price))
                break
            if RESERVATION.rank > worst.rank:
                worst = RESERVATION
    return chosen if chosen else worst.reason


def _priced(cand: Candidate, audience: Audience, ctx: RequestContext, row: Filter | None,
            p: Price | None) -> Priced:
    """The trace record of one candidate (``dsp explain``; never on the hot path)."""
    value = p.value_cpm_micros if p is not None else 0
    bid = p.bid_cpm_micros if p is not None else 0
    if row is None:
        return Priced(cand.campaign.id, cand.imp_index, None, value, bid, "")
    if p is not None and p.detail:
        detail = p.detail
    elif row.stage == "price":
        detail = row.explain(cand, audience, ctx)
    else:
        detail = row.explain()
    return Priced(cand.campaign.id, cand.imp_index, row.reason, value, bid, detail, row.name)


class IdSource:
    """Unique bid ids: a per-process random prefix and a counter (``"3f9a1c-1b"``)."""

    __slots__ = ("_n", "_prefix")

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._n = 0

    def __call__(self) -> str:
        self._n += 1
        return f"{self._prefix}{self._n:x}"
