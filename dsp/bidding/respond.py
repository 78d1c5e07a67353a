"""Build the BidResponse (and the signed notice URLs) from chosen bids. Pure apart from HMAC.

Notice URLs (the endpoints belong to dsp.server.notice_routes), one token per kind
(:mod:`dsp.notices.tokens`: a token is good for its own URL only)::

    nurl  {base_url}/notice/win?t=<win token>&p=${AUCTION_PRICE}
    burl  {base_url}/notice/bill?t=<bill token>&p=${AUCTION_PRICE}
    lurl  {base_url}/notice/loss?t=<loss token>&p=${AUCTION_PRICE}&r=${AUCTION_LOSS}
    adm   every click-through -> {base_url}/notice/click?t=<click token>

The win/bill/loss tokens share one payload: campaign, imp, our bid and the imp's floor in
account-currency micros per impression, hashed user key, expiry. Only the URLs the exchange
profile asks for are signed. The markup carries the click token only (no price, no user, cannot
win, bill or lose): the billing-capable token never reaches a browser.
"""

from __future__ import annotations

from dsp.bidding.decide import Chosen, Prepared
from dsp.money import micros_to_units
from dsp.notices.tokens import ClickToken, NoticeToken, TokenSigner
from dsp.openrtb.nobid import NoBidReason
from dsp.openrtb.response import Bid, BidResponse, SeatBid

#: a click token outlives the notice tokens: users click long after the auction
CLICK_TTL_S = 7 * 86_400
_KIND_OF = {"nurl": "win", "burl": "bill", "lurl": "loss"}


class NoticeUrls:
    """Signs tokens and renders the nurl/burl/lurl and click URLs for one process."""

    __slots__ = ("_base", "_signer")

    def __init__(self, signer: TokenSigner, base_url: str) -> None:
        self._signer = signer
        self._base = base_url.rstrip("/")

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

    def urls(self, token: NoticeToken, wanted: tuple[str, ...]) -> dict[str, str]:
        """``{"nurl": ..., "burl": ..., "lurl": ...}`` for the notice styles in ``wanted``."""
        styles = [w for w in ("nurl", "burl", "lurl") if w in wanted]
        tokens = self._signer.sign_kinds(token, [_KIND_OF[w] for w in styles])
        base = self._base
        out: dict[str, str] = {}
        for style, t in zip(styles, tokens, strict=True):
            if style == "nurl":
                out[style] = f"{base}/notice/win?t={t}&p=${{AUCTION_PRICE}}"
            elif style == "burl":
                out[style] = f"{base}/notice/bill?t={t}&p=${{AUCTION_PRICE}}"
            else:
                out[style] = f"{base}/notice/loss?t={t}&p=${{AUCTION_PRICE}}&r=${{AUCTION_LOSS}}"
        return out

    def click_url(self, token: NoticeToken) -> str:
        click = ClickToken(kid=token.kid, bid_id=token.bid_id, campaign_id=token.campaign_id,
                           exchange=token.exchange, issued_at_s=token.issued_at_s,
                           expires_at_s=token.issued_at_s + CLICK_TTL_S, test=token.test)
        return f"{self._base}/notice/click?t={self._signer.sign_click(click)}"


def bid_response(prep: Prepared, chosen: list[Chosen], notices: NoticeUrls,
                 user_key: str) -> BidResponse:
    """The 200 response for ``chosen`` (one bid per imp), in ``prep.currency``."""
    wanted = prep.profile.notices
    bids: list[Bid] = []
    for ch in chosen:
        cand = ch.candidate
        cr = cand.creative
        token = notices.token(prep, ch, user_key)
        urls = notices.urls(token, wanted)
        parts = cr.markup_parts
        adm = notices.click_url(token).join(parts) if len(parts) > 1 else cr.markup
        w, h = cr.w, cr.h
        if cr.kind == "video" and cand.imp.video is not None:
            w, h = cand.imp.video.w, cand.imp.video.h
        bids.append(Bid(
            id=ch.bid_id, impid=cand.imp.id, price=micros_to_units(ch.price_cpm_micros),
            adm=adm, adomain=list(cr.adomain), crid=cr.id, cid=cand.campaign.id,
            cat=list(cr.cat), w=w, h=h, mtype=cr.mtype,
            dealid=cand.deal.id if cand.deal is not None else None,
            nurl=urls.get("nurl"), burl=urls.get("burl"), lurl=urls.get("lurl")))
    return BidResponse(id=prep.req.id, seatbid=[SeatBid(bid=bids, seat=prep.profile.seat)],
                       bidid=chosen[0].bid_id, cur=prep.currency)


def nobid_response(request_id: str, reason: NoBidReason) -> BidResponse:
    """The body for exchanges that want one on no-bid: ``{"id": ..., "nbr": code}``."""
    return BidResponse(id=request_id, nbr=reason.nbr)
