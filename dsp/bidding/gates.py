"""Request-level policy gates: run before any campaign, Redis or model work. Pure functions.

Order (cheapest and most final first): COPPA, seat restrictions (``wseat``/``bseat`` against the
profile's seat), currency (the response currency must be one the request allows and we can
convert to). GDPR without consent and ``lmt``/``dnt`` do not stop the request here: they remove
user-level data (see :mod:`dsp.bidding.context`), and each campaign then decides whether it bids
contextually (eligibility). Block lists (``bcat``/``badv``/``bapp``) are per creative, also in
eligibility.
"""

from __future__ import annotations

from dsp.config.snapshot import ExchangeProfile, Rates
from dsp.openrtb.nobid import NoBidReason
from dsp.openrtb.request import BidRequest


def response_currency(req: BidRequest, profile: ExchangeProfile, rates: Rates) -> str | None:
    """The currency we answer in: the first of ``cur`` we can convert to, else the profile's.

    None when the request restricts currencies to ones we have no rate for.
    """
    if not req.cur:
        return profile.currency
    if profile.currency in req.cur:
        return profile.currency
    for cur in req.cur:
        if cur in rates.rates:
            return cur
    return None


def policy_gate(req: BidRequest, profile: ExchangeProfile) -> NoBidReason | None:
    """The first request-level reason not to bid at all, or None."""
    if req.regs is not None and req.regs.coppa == 1:
        return NoBidReason.COPPA
    seat = profile.seat
    if req.wseat and (seat is None or seat not in req.wseat):
        return NoBidReason.BLOCKED_SEAT
    if req.bseat and seat is not None and seat in req.bseat:
        return NoBidReason.BLOCKED_SEAT
    return None
