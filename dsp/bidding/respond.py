"""Build the BidResponse (and the signed notice URLs) from chosen bids. Pure apart from HMAC.

Notice URLs (the endpoints belong to dsp.server.notice_routes), one token per kind
(:mod:`dsp.notices.tokens`: a token is good for its own URL only)::

    nurl  {base_url}/notice/win?t=<win token>&p=${AUCTION_PRICE}
    burl  {base_url}/notice/bill?t=<bill token>&p=${AUCTION_PRICE}
    lurl  {base_url}/notice/loss?t=<loss token>&p=${AUCTION_PRICE}&r=${AUCTION_LOSS}&m=${AUCTION_MIN_TO_WIN}
    adm   every click-through -> {base_url}/notice/click?t=<click token>

Video ``adm`` is a VAST 4 inline document built for the imp (:mod:`dsp.bidding.video`: the click
notice as ``<ClickThrough>``, the impression and tracking events to ``/notice/event``); native
``adm`` a Native 1.2 response (:mod:`dsp.bidding.native`: the click notice as ``link.url``, the
impression event as the impression tracker). Markup is fetched by browsers and players, so it
carries only public tokens (click, event: no price, no user, cannot win, bill or lose); money
moves only on the server-to-server nurl/burl.

The win/bill/loss tokens share one payload: campaign, imp, our bid and the imp's floor in
account-currency micros per impression, hashed user key, expiry. Only the URLs the exchange
profile asks for are signed. The markup carries the click token only (no price, no user, cannot
win, bill or lose): the billing-capable token never reaches a browser.
"""

from __future__ import annotations

from dsp.bidding.decide import Chosen, Prepared
from dsp.bidding.native import NativePlan, native_adm
from dsp.bidding.video import VastPlan, VastUrls, vast_xml
from dsp.money import micros_to_units
from dsp.notices.tokens import ClickToken, NoticeToken, TokenSigner
from dsp.openrtb.nobid import NoBidReason
from dsp.openrtb.response import Bid, BidResponse, SeatBid

#: a click token outlives the notice tokens: users click long after the auction
CLICK_TTL_S = 7 * 86_400
_STYLES = ("nurl", "burl", "lurl")
_KIND_OF = {"nurl": "win", "burl": "bill", "lurl": "loss"}
#: each notice style's URL around its token: (path and query up to the token, the rest)
_FORM = {
    "nurl": ("/notice/win?t=", "&p=${AUCTION_PRICE}"),
    "burl": ("/notice/bill?t=", "&p=${AUCTION_PRICE}"),
    "lurl": ("/notice/loss?t=", "&p=${AUCTION_PRICE}&r=${AUCTION_LOSS}&m=${AUCTION_MIN_TO_WIN}"),
}
_MAX_FORMS = 64  # distinct ``wanted`` tuples kept (one per exchange profile in practice)

#: (styles, token kinds, URL prefixes with the base, URL suffixes) for one ``wanted`` tuple
_Forms = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]


class NoticeUrls:
    """Signs tokens and renders the nurl/burl/lurl and click URLs for one process.

    The URL text around each token (base URL, path, macros) is built once per notice-style set,
    not per bid; the payload of the three notice tokens is encoded once and MACed per kind, and
    so is the public payload shared by the click and event tokens of one bid."""

    __slots__ = ("_base", "_click", "_event", "_forms", "_signer")

    def __init__(self, signer: TokenSigner, base_url: str) -> None:
        self._signer = signer
        self._base = base_url.rstrip("/")
        self._click = f"{self._base}/notice/click?t="
        self._event = f"{self._base}/notice/event?t="
        self._forms: dict[tuple[str, ...], _Forms] = {}

    def token(self, prep: Prepared, chosen: Chosen, user_key: str) -> NoticeToken:
        cand = chosen.candidate
        now = int(prep.ctx.now_s)
        same_currency = prep.currency == cand.campaign.currency
        return NoticeToken(
            kid=self._signer.active, bid_id=chosen.bid_id, request_id=prep.req.id,
            imp_id=cand.imp.id, campaign_id=cand.campaign.id, exchange=prep.ctx.exchange,
            bid_price_micros=-(-chosen.price.bid_cpm_micros // 1000),
            currency=cand.campaign.currency, user_key=user_key, issued_at_s=now,
            expires_at_s=now + prep.profile.notice_ttl_s, test=prep.ctx.test,
            # ${AUCTION_PRICE} comes back in the response currency: carry the bid in it too.
            auction_currency="" if same_currency else prep.currency,
            auction_bid_micros=0 if same_currency else -(-chosen.price_cpm_micros // 1000),
            floor_micros=max(0, cand.floor_cpm_micros) // 1000)

    def _forms_for(self, wanted: tuple[str, ...]) -> _Forms:
        forms = self._forms.get(wanted)
        if forms is None:
            styles = tuple(w for w in _STYLES if w in wanted)
            forms = (styles, tuple(_KIND_OF[w] for w in styles),
                     tuple(self._base + _FORM[w][0] for w in styles),
                     tuple(_FORM[w][1] for w in styles))
            if len(self._forms) < _MAX_FORMS:
                self._forms[wanted] = forms
        return forms

    def urls(self, token: NoticeToken, wanted: tuple[str, ...]) -> dict[str, str]:
        """``{"nurl": ..., "burl": ..., "lurl": ...}`` for the notice styles in ``wanted``."""
        styles, kinds, prefixes, suffixes = self._forms_for(wanted)
        tokens = self._signer.sign_kinds(token, kinds)  # one per kind, in order
        out: dict[str, str] = {}
        for i, t in enumerate(tokens):  # (not zip(..., strict=True): its keyword parse costs more)
            out[styles[i]] = prefixes[i] + t + suffixes[i]
        return out

    def _public(self, token: NoticeToken, kinds: tuple[str, ...]) -> list[str]:
        public = ClickToken(kid=token.kid, bid_id=token.bid_id, campaign_id=token.campaign_id,
                            exchange=token.exchange, issued_at_s=token.issued_at_s,
                            expires_at_s=token.issued_at_s + CLICK_TTL_S, test=token.test)
        return self._signer.sign_public_kinds(public, kinds)

    def click_url(self, token: NoticeToken) -> str:
        """The click notice: counts the click, then redirects to the campaign's landing page."""
        return self._click + self._public(token, ("click",))[0]

    def event_url(self, token: NoticeToken) -> str:
        """A tracking-event notice (impression, video progress), to be completed with the event
        name: counted, never billed."""
        return self._event + self._public(token, ("event",))[0] + "&e="

    def markup_urls(self, token: NoticeToken) -> tuple[str, str]:
        """``(click_url(token), event_url(token))``, the shared payload encoded once."""
        click, event = self._public(token, ("click", "event"))
        return self._click + click, self._event + event + "&e="


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
        urls = notices.urls(token, wanted)
        w, h = cr.w, cr.h
        plan = cand.plan
        if isinstance(plan, VastPlan) and cr.video is not None and cand.imp.video is not None:
            w, h = cand.imp.video.w, cand.imp.video.h
            click, events = notices.markup_urls(token)
            adm = vast_xml(plan, ch.bid_id, cr.id, cr.video,
                           VastUrls(events + "impression", click, events),
                           ad_system=prep.profile.seat or "lender-dsp")
        elif isinstance(plan, NativePlan):
            click, events = notices.markup_urls(token)
            adm = native_adm(plan, click, events + "impression", wrapped=prep.profile.native_wrapper)
        else:
            parts = cr.markup_parts
            adm = notices.click_url(token).join(parts) if len(parts) > 1 else cr.markup
        bids.append(Bid(
            id=ch.bid_id, impid=cand.imp.id, price=micros_to_units(ch.price_cpm_micros),
            adm=adm, adomain=list(cr.adomain), crid=cr.id,
            cid=cand.campaign.id if prep.profile.send_cid else None,
            cat=list(cr.cat), w=w, h=h, mtype=None if v25 else cr.mtype,
            dealid=cand.deal.id if cand.deal is not None else None,
            nurl=urls.get("nurl"), burl=urls.get("burl"), lurl=urls.get("lurl")))
    return BidResponse(id=prep.req.id, seatbid=[SeatBid(bid=bids, seat=prep.profile.seat)],
                       bidid=chosen[0].bid_id, cur=prep.currency)


def nobid_response(request_id: str, reason: NoBidReason) -> BidResponse:
    """The body for exchanges that want one on no-bid: ``{"id": ..., "nbr": code}``."""
    return BidResponse(id=request_id, nbr=reason.nbr)
