"""Build the BidResponse (and the signed notice URLs) from chosen bids. Pure apart from HMAC.

Notice URLs (the endpoints belong to dsp.server.notice_routes)::

    nurl  {base_url}/notice/win?t=<token>&p=${AUCTION_PRICE}
    burl  {base_url}/notice/bill?t=<token>&p=${AUCTION_PRICE}
    lurl  {base_url}/notice/loss?t=<token>&r=${AUCTION_LOSS}&m=${AUCTION_MIN_TO_WIN}

Video ``adm`` is a VAST 4 inline document built for the imp (:mod:`dsp.bidding.video`: the
billing notice as ``<Impression>``, the click notice as ``<ClickThrough>``, tracking events to
``/notice/event``); native ``adm`` a Native 1.2 response (:mod:`dsp.bidding.native`: the click
notice as ``link.url``, the billing notice as the impression tracker). The billing notice
counts once per bid however many of burl, VAST and native trackers fire.

One token per bid (same in all three URLs): campaign, imp, our bid in account-currency micros per
impression, hashed user key, expiry; signed with :class:`dsp.notices.tokens.TokenSigner`.
"""

from __future__ import annotations

from dsp.bidding.decide import Chosen, Prepared
from dsp.bidding.native import NativePlan, native_adm
from dsp.bidding.video import VastPlan, VastUrls, vast_xml
from dsp.money import micros_to_units
from dsp.notices.tokens import NoticeToken, TokenSigner
from dsp.openrtb.nobid import NoBidReason
from dsp.openrtb.response import Bid, BidResponse, SeatBid


class NoticeUrls:
    """Signs tokens and renders the nurl/burl/lurl strings for one process."""

    __slots__ = ("_base", "_signer")

    def __init__(self, signer: TokenSigner, base_url: str) -> None:
        self._signer = signer
        self._base = base_url.rstrip("/")

    def token(self, prep: Prepared, chosen: Chosen, user_key: str) -> str:
        cand = chosen.candidate
        now = int(prep.ctx.now_s)
        same_currency = prep.currency == cand.campaign.currency
        return self._signer.sign(NoticeToken(
            kid=self._signer.active, bid_id=chosen.bid_id, request_id=prep.req.id,
            imp_id=cand.imp.id, campaign_id=cand.campaign.id, exchange=prep.ctx.exchange,
            bid_price_micros=-(-chosen.price.bid_cpm_micros // 1000),
            currency=cand.campaign.currency, user_key=user_key, issued_at_s=now,
            expires_at_s=now + prep.profile.notice_ttl_s, test=prep.ctx.test,
            # ${AUCTION_PRICE} comes back in the response currency: carry the bid in it too.
            auction_currency="" if same_currency else prep.currency,
            auction_bid_micros=0 if same_currency else -(-chosen.price_cpm_micros // 1000)))

    def click(self, token: str) -> str:
        """The click notice: counts the click, then redirects to the campaign's landing page."""
        return f"{self._base}/notice/click?t={token}"

    def event(self, token: str) -> str:
        """A video tracking-event notice, to be completed with the event name."""
        return f"{self._base}/notice/event?t={token}&e="

    def urls(self, token: str) -> tuple[str, str, str]:
        base = self._base
        return (f"{base}/notice/win?t={token}&p=${{AUCTION_PRICE}}",
                f"{base}/notice/bill?t={token}&p=${{AUCTION_PRICE}}",
                f"{base}/notice/loss?t={token}&r=${{AUCTION_LOSS}}&m=${{AUCTION_MIN_TO_WIN}}")


def bid_response(prep: Prepared, chosen: list[Chosen], notices: NoticeUrls,
                 user_key: str) -> BidResponse:
    """The 200 response for ``chosen`` (one bid per imp), in ``prep.currency``."""
    wanted = prep.profile.notices
    v25 = prep.profile.openrtb_version == "2.5"  # mtype is a 2.6 field: not in 2.5 answers
    bids: list[Bid] = []
    for ch in chosen:
        cand = ch.candidate
        cr = cand.creative
        token = notices.token(prep, ch, user_key)
        nurl, burl, lurl = notices.urls(token)
        w, h = cr.w, cr.h
        adm = cr.markup
        plan = cand.plan
        if isinstance(plan, VastPlan) and cr.video is not None and cand.imp.video is not None:
            w, h = cand.imp.video.w, cand.imp.video.h
            adm = vast_xml(plan, ch.bid_id, cr.id, cr.video,
                           VastUrls(burl, notices.click(token), notices.event(token)),
                           ad_system=prep.profile.seat or "lender-dsp")
        elif isinstance(plan, NativePlan):
            adm = native_adm(plan, notices.click(token), burl,
                             wrapped=prep.profile.native_wrapper)
        bids.append(Bid(
            id=ch.bid_id, impid=cand.imp.id, price=micros_to_units(ch.price_cpm_micros),
            adm=adm, adomain=list(cr.adomain), crid=cr.id,
            cid=cand.campaign.id if prep.profile.send_cid else None,
            cat=list(cr.cat), w=w, h=h, mtype=None if v25 else cr.mtype,
            dealid=cand.deal.id if cand.deal is not None else None,
            nurl=nurl if "nurl" in wanted else None, burl=burl if "burl" in wanted else None,
            lurl=lurl if "lurl" in wanted else None))
    return BidResponse(id=prep.req.id, seatbid=[SeatBid(bid=bids, seat=prep.profile.seat)],
                       bidid=chosen[0].bid_id, cur=prep.currency)


def nobid_response(request_id: str, reason: NoBidReason) -> BidResponse:
    """The body for exchanges that want one on no-bid: ``{"id": ..., "nbr": code}``."""
    return BidResponse(id=request_id, nbr=reason.nbr)
