"""Which (imp, campaign, creative[, deal]) pairs may bid, cheapest filters first. Pure.

Campaign-level filters run once per request (in this order, each with a named reason):
schedule (flight dates, local hours) -> geo -> device type -> OS -> categories -> consent/user.
Imp-level filters follow: creative format and size, block lists (``bcat`` against the creative's
categories by IAB prefix, ``badv`` against its ``adomain``), deals and private auctions, floor
currency. Every drop can be recorded (``trace``) for ``dsp explain``; the hot path passes None.
"""

from __future__ import annotations

import msgspec

from dsp.bidding.context import RequestContext
from dsp.bidding.quality import NO_FACTS
from dsp.config.snapshot import CompiledCampaign, CompiledCreative, Placement, Rates
from dsp.money import units_to_micros
from dsp.openrtb.nobid import NoBidReason
from dsp.openrtb.request import Deal, Imp


class Candidate(msgspec.Struct, gc=False):
    """One way to bid: this campaign's creative on this imp, optionally through a deal."""

    imp_index: int
    imp: Imp
    campaign: CompiledCampaign
    creative: CompiledCreative
    deal: Deal | None
    floor_cpm_micros: int  # in the campaign's currency
    auction_type: int


class Drop(msgspec.Struct, frozen=True):
    """Why a campaign (or one of its imps) was filtered out; ``imp_index`` -1 = whole request."""

    campaign_id: str
    imp_index: int
    reason: NoBidReason
    detail: str


# Later filters rank higher: the request's no-bid reason is the one of the campaign that got
# furthest, which is the most useful one to report.
_RANK = {r: i for i, r in enumerate((
    NoBidReason.OUT_OF_SCHEDULE, NoBidReason.NO_ELIGIBLE_CAMPAIGN, NoBidReason.DATA_CENTER_IP,
    NoBidReason.SCHAIN_BLOCKED, NoBidReason.SCHAIN_INCOMPLETE, NoBidReason.NO_CONSENT,
    NoBidReason.PRIVACY_OPT_OUT, NoBidReason.USER_UNKNOWN, NoBidReason.NO_MATCHING_CREATIVE,
    NoBidReason.BLOCKED_CATEGORY,
    NoBidReason.BLOCKED_ADVERTISER, NoBidReason.BLOCKED_APP, NoBidReason.CURRENCY_UNSUPPORTED))}


def campaign_drop(c: CompiledCampaign, ctx: RequestContext,
                  verbose: bool = False) -> tuple[NoBidReason, str] | None:
    """The request-level reason campaign ``c`` cannot bid, or None. ``verbose`` fills the detail
    text (``dsp explain``); the hot path leaves it empty to avoid formatting strings."""
    if c.start_day is not None or c.end_day is not None or c.hours is not None:
        local_s = ctx.now_s + c.utc_offset_minutes * 60
        day = int(local_s // 86400)
        if (c.start_day is not None and day < c.start_day) or (c.end_day is not None and day > c.end_day):
            return NoBidReason.OUT_OF_SCHEDULE, "outside the flight dates"
        if c.hours is not None and int(local_s // 3600) % 24 not in c.hours:
            return NoBidReason.OUT_OF_SCHEDULE, (
                f"local hour {int(local_s // 3600) % 24} not scheduled" if verbose else "")
    if c.countries is not None and ctx.country not in c.countries:
        return NoBidReason.NO_ELIGIBLE_CAMPAIGN, f"country {ctx.country} not targeted" if verbose else ""
    if c.placement is not None:
        miss = placement_miss(c.placement, ctx, verbose)
        if miss is not None:
            return NoBidReason.NO_ELIGIBLE_CAMPAIGN, miss
    supply = ctx.supply
    if supply is not NO_FACTS:
        rules = c.supply
        if supply.datacenter is not None and not rules.allow_datacenter_ip:
            return NoBidReason.DATA_CENTER_IP, f"device.ip is in {supply.datacenter}" if verbose else ""
        if rules.max_resellers is not None and supply.resellers > rules.max_resellers:
            return NoBidReason.SCHAIN_BLOCKED, (
                f"{supply.resellers} reseller(s), campaign allows {rules.max_resellers}" if verbose else "")
    if c.supply.require_complete_schain and not supply.schain_complete:
        return NoBidReason.SCHAIN_INCOMPLETE, "campaign requires a complete schain"
    if c.device_types is not None and ctx.device_type not in c.device_types:
        return NoBidReason.NO_ELIGIBLE_CAMPAIGN, (
            f"device type {ctx.device_type} not targeted" if verbose else "")
    if c.os is not None and ctx.os not in c.os:
        return NoBidReason.NO_ELIGIBLE_CAMPAIGN, f"os {ctx.os} not targeted" if verbose else ""
    if c.categories is not None and c.categories.isdisjoint(ctx.category_keys):
        return NoBidReason.NO_ELIGIBLE_CAMPAIGN, "no targeted category"
    if c.exclude_categories and not c.exclude_categories.isdisjoint(ctx.category_keys):
        return NoBidReason.NO_ELIGIBLE_CAMPAIGN, "excluded category"
    if ctx.gdpr_no_consent and not c.gdpr_contextual:
        return NoBidReason.NO_CONSENT, (
            f"GDPR without consent ({ctx.privacy.outcome.value}: {ctx.privacy.detail}); "
            "campaign does not bid contextually" if verbose else "")
    if c.requires_user and not ctx.user_id:
        privacy = ctx.privacy
        if not privacy.user_data:
            reason = NoBidReason.NO_CONSENT if privacy.eu else NoBidReason.PRIVACY_OPT_OUT
            return reason, (f"campaign needs user data; {privacy.outcome.value}: {privacy.detail}"
                            if verbose else "")
        return NoBidReason.USER_UNKNOWN, "campaign needs a known user; none may be looked up"
    return None


def placement_miss(p: Placement, ctx: RequestContext, verbose: bool) -> str | None:
    """Why region, metro or placement targeting excludes the request ("" when not verbose)."""
    if p.regions is not None and ctx.region not in p.regions:
        return f"region {ctx.region} not targeted" if verbose else ""
    if p.exclude_regions and ctx.region in p.exclude_regions:
        return f"region {ctx.region} excluded" if verbose else ""
    if p.metros is not None and ctx.metro not in p.metros:
        return f"metro {ctx.metro} not targeted" if verbose else ""
    keys = ctx.domain_keys
    if p.exclude_domains and keys and not p.exclude_domains.isdisjoint(keys):
        return f"domain {keys[0]} blocked" if verbose else ""
    if p.exclude_bundles and ctx.bundle in p.exclude_bundles:
        return f"app {ctx.bundle} blocked" if verbose else ""
    if p.allow_lists:
        site_ok = p.domains is not None and bool(keys) and not p.domains.isdisjoint(keys)
        app_ok = p.bundles is not None and ctx.bundle in p.bundles
        if not (site_ok or app_ok):
            return (f"placement {keys[0] if keys else ctx.bundle} not on the allow list"
                    if verbose else "")
    return None


def _creative(c: CompiledCampaign, imp: Imp) -> CompiledCreative | None:
    banner = imp.banner
    if banner is not None and c.banners:
        if banner.w and banner.h:
            hit = c.banners.get((banner.w, banner.h))
            if hit is not None:
                return hit
        if banner.format:
            for fmt in banner.format:
                if fmt.w and fmt.h:
                    hit = c.banners.get((fmt.w, fmt.h))
                    if hit is not None:
                        return hit
    by_kind = c.by_kind
    if by_kind:
        if imp.video is not None and "video" in by_kind:
            return by_kind["video"]
        if imp.native is not None and "native" in by_kind:
            return by_kind["native"]
        if imp.audio is not None and "audio" in by_kind:
            return by_kind["audio"]
    return None


def _blocked(cr: CompiledCreative, ctx: RequestContext) -> tuple[NoBidReason, str] | None:
    if ctx.bcat and not cr.cat_keys.isdisjoint(ctx.bcat):
        return NoBidReason.BLOCKED_CATEGORY, f"creative category {','.join(cr.cat)} blocked by bcat"
    if ctx.badv and not ctx.badv.isdisjoint(cr.adomain):
        return NoBidReason.BLOCKED_ADVERTISER, f"advertiser {','.join(cr.adomain)} blocked by badv"
    if ctx.bapp and cr.bundle and cr.bundle in ctx.bapp:
        return NoBidReason.BLOCKED_APP, f"advertiser app {cr.bundle} blocked by bapp"
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
                  seat: str | None) -> Candidate | tuple[NoBidReason, str]:
    """The candidate of campaign ``c`` on imp ``i``, or why there is none."""
    creative = _creative(c, imp)
    if creative is None:
        return NoBidReason.NO_MATCHING_CREATIVE, "no creative fits the imp's format or size"
    blocked = _blocked(creative, ctx)
    if blocked is not None:
        return blocked
    pmp = imp.pmp
    if pmp is not None and pmp.deals and c.deals:
        for deal in pmp.deals:
            if deal.id in c.deals and (not deal.wseat or (seat is not None and seat in deal.wseat)):
                floor = _floor(deal.bidfloor, deal.bidfloorcur, c.currency, rates)
                if floor is None:
                    return NoBidReason.CURRENCY_UNSUPPORTED, f"deal floor currency {deal.bidfloorcur}"
                at = deal.at if deal.at in (1, 2) else ctx.auction_type
                return Candidate(i, imp, c, creative, deal, floor, at)
    if pmp is not None and pmp.private_auction == 1:
        return NoBidReason.NO_ELIGIBLE_CAMPAIGN, "private auction and no deal of this campaign"
    if not c.open_auction:
        return NoBidReason.NO_ELIGIBLE_CAMPAIGN, "campaign bids on deals only"
    floor = _floor(imp.bidfloor, imp.bidfloorcur, c.currency, rates)
    if floor is None:
        return NoBidReason.CURRENCY_UNSUPPORTED, f"floor currency {imp.bidfloorcur} has no rate"
    return Candidate(i, imp, c, creative, None, floor, ctx.auction_type)


def eligible(campaigns: tuple[CompiledCampaign, ...], imps: list[Imp], ctx: RequestContext,
             rates: Rates, seat: str | None,
             trace: list[Drop] | None = None) -> tuple[list[Candidate], NoBidReason]:
    """All candidates, and the no-bid reason to report if the list is empty (or used up later)."""
    out: list[Candidate] = []
    best = NoBidReason.NO_ELIGIBLE_CAMPAIGN
    best_rank = -1
    for c in campaigns:
        drop = campaign_drop(c, ctx, trace is not None)
        if drop is not None:
            if _RANK[drop[0]] > best_rank:
                best, best_rank = drop[0], _RANK[drop[0]]
            if trace is not None:
                trace.append(Drop(c.id, -1, drop[0], drop[1]))
            continue
        for i, imp in enumerate(imps):
            got = imp_candidate(c, i, imp, ctx, rates, seat)
            if isinstance(got, Candidate):
                out.append(got)
            else:
                if _RANK[got[0]] > best_rank:
                    best, best_rank = got[0], _RANK[got[0]]
                if trace is not None:
                    trace.append(Drop(c.id, i, got[0], got[1]))
    return out, best
