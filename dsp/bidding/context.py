"""What the bid path derives once per request, before any campaign is looked at.

:func:`request_context` reads the decoded request and the exchange profile and returns a
:class:`RequestContext` of plain values (country, device type, categories, block lists, the user
id to look up and whether we may) so that eligibility and pricing never walk the request again.
Pure: no I/O, no clock except the ``now_s`` passed in.
"""

from __future__ import annotations

import msgspec

from dsp.bidding.quality import NO_FACTS, SupplyFacts
from dsp.config.snapshot import iab_keys
from dsp.openrtb.geo import country_alpha3, domain_keys, region_code
from dsp.openrtb.native import NativeRequest, parse_native
from dsp.openrtb.request import BidRequest
from dsp.privacy.policy import NO_SIGNAL, PrivacyDecision, PrivacyPolicy, decide, eu_applies


class RequestContext(msgspec.Struct, gc=False):
    """Per-request facts used by every campaign check. Built once, then read only."""

    exchange: str
    test: bool
    auction_type: int
    country: str | None
    region: str | None  # ISO 3166-2, e.g. "US-CA" (dialects normalised)
    metro: str | None
    domain_keys: tuple[str, ...]  # site domain and its parents, lower case
    bundle: str | None  # app bundle / store id, lower case
    device_type: int | None
    os: str | None
    categories: tuple[str, ...]
    category_keys: frozenset[str]  # categories and their IAB tier-1 parents (see iab_keys)
    bcat: frozenset[str]
    badv: frozenset[str]
    bapp: frozenset[str]
    user_id: str  # raw id to look up ("" when none or not allowed)
    user_allowed: bool  # False: lmt/dnt, GDPR without consent, a US opt-out -> no user-level data
    gdpr_no_consent: bool
    now_s: float  # wall clock, seconds since the epoch (schedules, token expiry)
    privacy: PrivacyDecision = NO_SIGNAL  # what the consent signals allow, and why not
    supply: SupplyFacts = NO_FACTS  # data-centre address, schain completeness, resellers
    natives: tuple[NativeRequest | None, ...] = ()  # each imp's parsed native request (if any)


_EMPTY: frozenset[str] = frozenset()


def _user_id(req: BidRequest) -> str:
    """Our id for the user: the buyer uid (cookie-synced to us), else the exchange's, else the IFA."""
    user = req.user
    if user is not None:
        if user.buyeruid:
            return user.buyeruid
        if user.id:
            return user.id
    if req.device is not None and req.device.ifa:
        return req.device.ifa
    return ""


def _categories(req: BidRequest) -> tuple[str, ...]:
    inv = req.site or req.app
    cats: list[str] = []
    if inv is not None:
        for group in (inv.cat, inv.sectioncat, inv.pagecat):
            if group:
                cats.extend(group)
        if inv.content is not None and inv.content.cat:
            cats.extend(inv.content.cat)
    elif req.dooh is not None and req.dooh.content is not None and req.dooh.content.cat:
        cats.extend(req.dooh.content.cat)
    return tuple(cats)


_DEFAULT_POLICY = PrivacyPolicy()


def privacy_decision(req: BidRequest, policy: PrivacyPolicy, user_id: str) -> PrivacyDecision:
    """Decode the consent signals only when the answer matters: GDPR applies (the campaigns'
    ``gdpr_without_consent`` policy depends on it) or there is a user id we would look up."""
    regs = req.regs
    if regs is None or not (user_id or eu_applies(regs)):
        return NO_SIGNAL
    return decide(req, policy)


def request_context(req: BidRequest, exchange: str, default_auction_type: int,
                    now_s: float, privacy: PrivacyPolicy = _DEFAULT_POLICY,
                    supply: SupplyFacts = NO_FACTS) -> RequestContext:
    """Derive the :class:`RequestContext` of ``req`` (pure)."""
    device = req.device
    geo = device.geo if device is not None and device.geo is not None else None
    if geo is None and req.user is not None:
        geo = req.user.geo
    limited = device is not None and (device.lmt == 1 or device.dnt == 1)
    user_id = "" if limited else _user_id(req)
    decision = privacy_decision(req, privacy, user_id)
    gdpr_no_consent = decision.eu and not decision.user_data
    user_allowed = decision.user_data and not limited
    at = req.at if req.at in (1, 2) else default_auction_type
    cats = _categories(req)
    country = country_alpha3(geo.country) if geo is not None else None
    site, app = req.site, req.app
    # Positional, in field order: a call with more than 15 keywords compiles to a dict build and
    # unpack (CPython's stack-use guideline), ~1.2 µs against ~0.2 µs for these 22 fields.
    return RequestContext(
        exchange, req.test == 1, at,  # exchange, test, auction_type
        country,
        region_code(geo.region, country) if geo is not None else None,  # region
        geo.metro if geo is not None else None,  # metro
        domain_keys(site.domain) if site is not None else (),  # domain_keys
        app.bundle.strip().lower() if app is not None and app.bundle else None,  # bundle
        device.devicetype if device is not None else None,  # device_type
        device.os.lower() if device is not None and device.os else None,  # os
        cats, iab_keys(cats) if cats else _EMPTY,  # categories, category_keys
        frozenset(req.bcat) if req.bcat else _EMPTY,  # bcat
        frozenset(req.badv) if req.badv else _EMPTY,  # badv
        frozenset(req.bapp) if req.bapp else _EMPTY,  # bapp
        user_id if user_allowed else "",  # user_id
        user_allowed, gdpr_no_consent, now_s, decision, supply,
        tuple(parse_native(imp.native) for imp in req.imp)  # natives
        if any(imp.native is not None for imp in req.imp) else ())
