"""Which (imp, campaign, creative[, deal]) pairs may bid, cheapest filters first. Pure.

The filters are the rows of :mod:`dsp.bidding.filters` (stages ``campaign``, ``creative`` and
``deal``), run in table order: campaign-level rows once per request (schedule, geo, device, OS,
categories, consent, user), then per imp the creative that fits it (format and size), the block
lists against that creative (``bcat`` by IAB prefix, ``badv``, ``bapp``), deals and private
auctions, and the floor currency. Every drop can be recorded (``trace``) for ``dsp explain``; the
hot path passes None and formats no text.
"""

from __future__ import annotations

import msgspec

from dsp.bidding.context import RequestContext
from dsp.bidding.filters import (
    DEAL,
    FLOOR_CURRENCY,
    NO_CAMPAIGN,
    NO_CREATIVE,
    Checks,
    Filter,
    campaign_checks,
    checks,
)
from dsp.bidding.native import NativePlan, native_fit
from dsp.bidding.video import VastPlan, video_fit
from dsp.config.snapshot import CompiledCampaign, CompiledCreative, Rates
from dsp.money import units_to_micros
from dsp.openrtb.native import parse_native
from dsp.openrtb.nobid import NoBidReason
from dsp.openrtb.request import Deal, Imp

Plan = VastPlan | NativePlan | None


class Candidate(msgspec.Struct, gc=False):
    """One way to bid: this campaign's creative on this imp, optionally through a deal."""

    imp_index: int
    imp: Imp
    campaign: CompiledCampaign
    creative: CompiledCreative
    deal: Deal | None
    floor_cpm_micros: int  # in the campaign's currency
    auction_type: int
    plan: Plan = None  # video: the VAST plan; native: the assets answered


class Drop(msgspec.Struct, frozen=True):
    """Why a campaign (or one of its imps) was filtered out; ``imp_index`` -1 = whole request."""

    campaign_id: str
    imp_index: int
    reason: NoBidReason
    detail: str
    filter: str = ""  # the row of dsp.bidding.filters that dropped it


_CAMPAIGN_CHECKS = checks("campaign")
_CREATIVE_CHECKS = checks("creative")


def campaign_drop(c: CompiledCampaign, ctx: RequestContext) -> Filter | None:
    """The first campaign-stage row that drops campaign ``c`` for this request, or None (the whole
    stage, row by row: the reference :func:`eligible`'s per-campaign plans must agree with)."""
    for check, row in _CAMPAIGN_CHECKS:
        if check(c, ctx):
            return row
    return None


#: (campaign, its campaign-stage checks) for each campaign of one exchange, in snapshot order
CampaignPlan = tuple[tuple[CompiledCampaign, Checks], ...]
_PLANS: dict[int, tuple[tuple[CompiledCampaign, ...], CampaignPlan]] = {}
_MAX_PLANS = 256  # (snapshot, exchange) pairs remembered; a reload makes new ones


def campaign_plan(campaigns: tuple[CompiledCampaign, ...]) -> CampaignPlan:
    """Each campaign with the campaign-stage rows that can drop it
    (:func:`dsp.bidding.filters.campaign_checks`), built once per snapshot's campaigns tuple
    (``Snapshot.campaigns_for`` returns the same tuple until a reload) and then looked up by
    identity: one dict lookup per request instead of re-deriving which rows matter."""
    got = _PLANS.get(id(campaigns))
    if got is not None and got[0] is campaigns:
        return got[1]
    plan = tuple((c, campaign_checks(c)) for c in campaigns)
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    _PLANS[id(campaigns)] = (campaigns, plan)  # the tuple is held, so its id cannot be reused
    return plan


def _creative(c: CompiledCampaign, imp: Imp, i: int = 0,
              ctx: RequestContext | None = None) -> tuple[CompiledCreative, Plan] | None:
    """The creative that fits imp ``i`` (and, for video and native, how it is built), or None.

    Banners by size (``w``/``h``, then ``format``); video by :func:`dsp.bidding.video.video_fit`
    (protocols, duration, mimes, bitrate, placement); native by the request's assets
    (:func:`dsp.bidding.native.native_fit`, the request parsed once per imp in the context)."""
    banner = imp.banner
    if banner is not None and c.banners:
        if banner.w and banner.h:
            hit = c.banners.get((banner.w, banner.h))
            if hit is not None:
                return hit, None
        if banner.format:
            for fmt in banner.format:
                if fmt.w and fmt.h:
                    hit = c.banners.get((fmt.w, fmt.h))
                    if hit is not None:
                        return hit, None
    if imp.video is not None and c.videos:
        for cr in c.videos:
            vplan = video_fit(cr.video, imp.video)
            if vplan is not None:
                return cr, vplan
    if imp.native is not None and c.natives:
        nreq = ctx.natives[i] if ctx is not None and i < len(ctx.natives) else parse_native(imp.native)
        for cr in c.natives:
            nplan = native_fit(cr.native, nreq)
            if nplan is not None:
                return cr, nplan
    if imp.audio is not None and "audio" in c.by_kind:
        return c.by_kind["audio"], None
    return None


def _blocked(cr: CompiledCreative, ctx: RequestContext) -> Filter | None:
    for check, row in _CREATIVE_CHECKS:
        if check(cr, ctx):
            return row
    return None


_MAX_FLOOR_UNITS = 1e9  # a floor beyond a billion CPM is as good as infinite (and stays an int)


def _floor(amount: float, cur: str | None, to_cur: str, rates: Rates) -> int | None:
    """A CPM floor in currency units -> CPM micros in ``to_cur`` (None: unknown currency).

    Floors arrive from the wire: ``1e400`` decodes to infinity, so amounts are clamped before
    the conversion to integers (a bid never clears such a floor anyway)."""
    if amount <= 0:
        return 0
    return rates.convert_micros(units_to_micros(min(amount, _MAX_FLOOR_UNITS)), cur or "USD", to_cur)


def imp_candidate(c: CompiledCampaign, i: int, imp: Imp, ctx: RequestContext, rates: Rates,
                  seat: str | None) -> Candidate | tuple[Filter, str]:
    """The candidate of campaign ``c`` on imp ``i``, or the row that drops it (and a detail text)."""
    fit = _creative(c, imp, i, ctx)
    if fit is None:
        return NO_CREATIVE, ""
    creative, plan = fit
    blocked = _blocked(creative, ctx)
    if blocked is not None:
        return blocked, ""
    pmp = imp.pmp
    if pmp is not None and pmp.deals and c.deals:
        for deal in pmp.deals:
            if deal.id in c.deals and (not deal.wseat or (seat is not None and seat in deal.wseat)):
                floor = _floor(deal.bidfloor, deal.bidfloorcur, c.currency, rates)
                if floor is None:
                    return FLOOR_CURRENCY, f"deal floor currency {deal.bidfloorcur}"
                at = deal.at if deal.at in (1, 2) else ctx.auction_type
                return Candidate(i, imp, c, creative, deal, floor, at, plan)
    if pmp is not None and pmp.private_auction == 1:
        return DEAL, "private auction and no deal of this campaign"
    if not c.open_auction:
        return DEAL, "campaign bids on deals only"
    floor = _floor(imp.bidfloor, imp.bidfloorcur, c.currency, rates)
    if floor is None:
        return FLOOR_CURRENCY, f"floor currency {imp.bidfloorcur} has no rate"
    return Candidate(i, imp, c, creative, None, floor, ctx.auction_type, plan)


def eligible(campaigns: tuple[CompiledCampaign, ...], imps: list[Imp], ctx: RequestContext,
             rates: Rates, seat: str | None,
             trace: list[Drop] | None = None) -> tuple[list[Candidate], Filter]:
    """All candidates, and the row to report if the list is empty (or used up later): the
    furthest-down row (highest rank) that dropped any campaign."""
    out: list[Candidate] = []
    best = NO_CAMPAIGN
    for c, plan in campaign_plan(campaigns):
        drop: Filter | None = None
        for check, row in plan:
            if check(c, ctx):
                drop = row
                break
        if drop is not None:
            if drop.rank > best.rank:
                best = drop
            if trace is not None:
                trace.append(Drop(c.id, -1, drop.reason, drop.explain(c, ctx), drop.name))
            continue
        for i, imp in enumerate(imps):
            got = imp_candidate(c, i, imp, ctx, rates, seat)
            if isinstance(got, Candidate):
                out.append(got)
                continue
            row, detail = got
            if row.rank > best.rank:
                best = row
            if trace is not None:
                if not detail:
                    fit = _creative(c, imp, i, ctx)
                    detail = row.explain(fit[0], ctx) if fit is not None else row.explain()
                trace.append(Drop(c.id, i, row.reason, detail, row.name))
    return out, best
