"""The effects of one notice: win, bill, loss, click, conversion. Transport-free.

Every method takes the raw parameters exactly as they arrived (strings), verifies the signed token
(:mod:`dsp.notices.tokens`), and either returns a :class:`NoticeOutcome` or raises
:class:`~dsp.errors.RequestRejected` (a 4xx naming the field; nothing changed). Redis failures
raise :class:`~dsp.errors.DependencyUnavailable` (answer 503 so the exchange retries; nothing was
counted, and the retry is deduplicated).

Money rules:

* ``p`` is ``${AUCTION_PRICE}``: a CPM in currency units; one impression costs ``p/1000``, in
  integer micros, capped at our bid (a clearing price above the bid is an exchange error).
* Whether the win or the billing notice commits spend is the exchange profile's business: pass
  ``bills_on_for(token) -> "nurl" | "burl" | None``; ``None`` falls back to the campaign's
  ``CampaignBudget.bills_on``.
* The bid id is the idempotency key: each notice kind counts once per bid (one Lua script does the
  dedup and the ledger update together, :mod:`dsp.budget.outcomes`).
* Test bids (``token.test``) are verified and answered but never touch money, caps or counters.
* Each notice that counts (not a duplicate, not test traffic) appends one event to the event log
  (``events``: :class:`dsp.events.writer.EventWriter`, never awaited): win/bill with the clearing
  price and whether it commits spend, loss with its reason code and ``${AUCTION_MIN_TO_WIN}``
  (``m``), click, conversion with its stage and amount.
* The click's landing page comes from config (``landing_url_for(campaign_id)``), never from the
  request: no open redirect. The token is appended as ``dsp_t`` so the lender's back end can send
  it back with a conversion.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import msgspec

from dsp.budget.freqcap import CapRecorder
from dsp.budget.keys import campaign_day
from dsp.budget.outcomes import OutcomeStore
from dsp.budget.spec import CampaignBudget
from dsp.clock import wall_time
from dsp.errors import DependencyUnavailable, RequestRejected
from dsp.events.schema import (
    NO_LOSS_REASON,
    NO_PRICE,
    BillEvent,
    ClickEvent,
    ConversionEvent,
    Event,
    LossEvent,
    WinEvent,
)
from dsp.features.keys import caps_key
from dsp.money import cpm_to_micros_per_imp, round_half_away, units_to_micros
from dsp.notices.tokens import NoticeToken, TokenExpired, TokenInvalid, TokenSigner
from dsp.observability.metrics import Metrics


class EventAppender(Protocol):
    def append(self, event: Event) -> None: ...


CONVERSION_EVENTS = ("submitted", "approved", "funded")
VIDEO_EVENTS = ("start", "firstQuartile", "midpoint", "thirdQuartile", "complete")
_MAX_CPM = 1_000_000.0
_MAX_AMOUNT = 1e12  # currency units; anything above is a unit mix-up


class NoticeOutcome(msgspec.Struct, frozen=True):
    """What the transport answers: ``status`` and, for clicks, where to redirect."""

    kind: str
    result: str  # ok | duplicate | early | late | out_of_order | ignored | unknown | test
    committed_micros: int = 0
    status: int = 200
    location: str | None = None


class Conversion(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /conversion`` (JSON): the token from the click, the funnel event, and the
    amount in currency units (e.g. the funded loan's principal; optional)."""

    token: str
    event: str
    amount: float | None = None


class NoticeService:
    def __init__(self, signer: TokenSigner, outcomes: OutcomeStore, caps: CapRecorder,
                 metrics: Metrics, budgets: Sequence[CampaignBudget], *,
                 landing_url_for: Callable[[str], str | None] = lambda _cid: None,
                 bills_on_for: Callable[[NoticeToken], str | None] = lambda _t: None,
                 conversion_window_s: int = 30 * 86_400,
                 clock: Callable[[], float] = wall_time,
                 events: EventAppender | None = None) -> None:
        self.events = events
        self.signer = signer
        self.outcomes = outcomes
        self.caps = caps
        self.metrics = metrics
        self.landing_url_for = landing_url_for
        self.bills_on_for = bills_on_for
        self.conversion_window_s = conversion_window_s
        self.clock = clock
        self._budgets: Mapping[str, CampaignBudget] = {}
        self.update_budgets(budgets)

    def update_budgets(self, budgets: Sequence[CampaignBudget]) -> None:
        self._budgets = {b.campaign_id: b for b in budgets}

    # --- helpers -------------------------------------------------------------------------------
    def _verify(self, kind: str, text: str | None, *, now_s: float | None = None) -> NoticeToken:
        if not text:
            self.metrics.notices.labels(kind=kind, result="invalid").inc()
            raise RequestRejected("t: missing notice token", status=400)
        try:
            return self.signer.verify(text, now_s=self.clock() if now_s is None else now_s)
        except TokenExpired:
            self.metrics.notices.labels(kind=kind, result="expired").inc()
            raise
        except TokenInvalid:
            self.metrics.notices.labels(kind=kind, result="invalid").inc()
            raise

    def _price_micros(self, kind: str, text: str | None, token: NoticeToken, *,
                      required: bool = True) -> tuple[int, int]:
        """``p`` (CPM, currency units of the auction) -> (one impression's micros in the campaign
        currency, capped at our bid; the same price in the auction currency, as sent).

        An absent or unsubstituted (``${AUCTION_PRICE}``) price is a 400 when the notice must
        commit spend, and 0 otherwise (a win notice on an exchange that bills on burl)."""
        if text is None or text == "" or text.startswith("${"):
            if not required:
                return 0, 0
            self.metrics.notices.labels(kind=kind, result="invalid").inc()
            raise RequestRejected("p: missing clearing price (macro not substituted?)", status=400)
        try:
            cpm = float(text)
        except ValueError:
            self.metrics.notices.labels(kind=kind, result="invalid").inc()
            raise RequestRejected(f"p: not a number: {text[:40]!r}", status=400) from None
        if not math.isfinite(cpm) or cpm < 0 or cpm > _MAX_CPM:
            self.metrics.notices.labels(kind=kind, result="invalid").inc()
            raise RequestRejected("p: clearing price out of range", status=400)
        auction_micros = micros = cpm_to_micros_per_imp(cpm)
        if token.auction_bid_micros > 0:  # the auction ran in another currency: convert exactly
            micros = round_half_away(micros * token.bid_price_micros / token.auction_bid_micros)
        if micros > token.bid_price_micros:
            self.metrics.notices.labels(kind=kind, result="price_above_bid").inc()
            micros = token.bid_price_micros
        return micros, auction_micros

    def _commits(self, kind: str, token: NoticeToken) -> bool:
        bills_on = self.bills_on_for(token)
        if bills_on is None:
            spec = self._budgets.get(token.campaign_id)
            bills_on = spec.bills_on if spec is not None else "burl"
        return (kind == "w" and bills_on == "nurl") or (kind == "b" and bills_on == "burl")

    def _day(self, token: NoticeToken) -> int:
        spec = self._budgets.get(token.campaign_id)
        return campaign_day(token.issued_at_s, spec.utc_offset_minutes if spec else 0)

    def _emit(self, event: Event) -> None:
        if self.events is not None:
            self.events.append(event)

    def _priced_event(self, name: str, token: NoticeToken, price: tuple[int, int]) -> Event:
        cls = WinEvent if name == "win" else BillEvent
        price_micros, auction_micros = price
        rate = (token.bid_price_micros / token.auction_bid_micros
                if token.auction_bid_micros > 0 else 1.0)
        return cls(ts_us=int(self.clock() * 1_000_000), exchange=token.exchange,
                   campaign=token.campaign_id, bid_id=token.bid_id, price_micros=price_micros,
                   currency=token.currency,
                   auction_price_micros=auction_micros,
                   auction_currency=token.auction_currency or token.currency, rate=rate,
                   bid_price_micros=token.bid_price_micros,
                   bills=self._commits("w" if name == "win" else "b", token))

    async def _record(self, name: str, kind: str, token: NoticeToken, price_micros: int,
                      event: Event | None = None) -> NoticeOutcome:
        """Apply the notice; ``event`` goes to the event log when the notice counts (first of
        its kind for the bid). Built before the await so concurrent notices cannot mix fields."""
        if token.test:
            self.metrics.notices.labels(kind=name, result="test").inc()
            return NoticeOutcome(name, "test")
        try:
            result, committed = await self.outcomes.record(
                token.campaign_id, self._day(token), token.bid_id, kind, price_micros,
                commits=self._commits(kind, token))
        except Exception as exc:
            self.metrics.redis_errors.labels(op="notice", kind="error").inc()
            raise DependencyUnavailable(f"notice not recorded: {exc}") from exc
        known = token.campaign_id in self._budgets
        label = result if known or result == "duplicate" else "unknown"
        if result != "duplicate" and event is not None:
            if isinstance(event, WinEvent):  # BillEvent too
                event.committed_micros = committed
                event.result = result
            self._emit(event)
        self.metrics.notices.labels(kind=name, result=label).inc()
        if committed:
            self.metrics.spend_micros.labels(campaign=token.campaign_id).inc(committed)
        return NoticeOutcome(name, label, committed)

    # --- notices -------------------------------------------------------------------------------
    async def win(self, token_text: str | None, price_text: str | None) -> NoticeOutcome:
        token = self._verify("win", token_text)
        price = self._price_micros("win", price_text, token, required=self._commits("w", token))
        out = await self._record("win", "w", token, price[0], self._priced_event("win", token, price))
        if out.result in ("duplicate", "test"):
            return out
        self.metrics.wins.labels(campaign=token.campaign_id).inc()
        spec = self._budgets.get(token.campaign_id)
        if token.user_key and spec is not None and spec.frequency_cap is not None:
            try:
                await self.caps.record_impression(caps_key(token.user_key), token.campaign_id,
                                                  spec.frequency_cap, self.clock())
            except Exception:
                self.metrics.redis_errors.labels(op="freqcap", kind="error").inc()
        return out

    async def bill(self, token_text: str | None, price_text: str | None) -> NoticeOutcome:
        token = self._verify("bill", token_text)
        price = self._price_micros("bill", price_text, token)
        return await self._record("bill", "b", token, price[0],
                                  self._priced_event("bill", token, price))

    async def loss(self, token_text: str | None, reason_text: str | None,
                   price_text: str | None = None) -> NoticeOutcome:
        """``r`` = ``${AUCTION_LOSS}`` (an integer code); ``m`` = ``${AUCTION_MIN_TO_WIN}`` (CPM,
        auction currency; optional, an unsubstituted macro counts as absent)."""
        token = self._verify("loss", token_text)
        reason = NO_LOSS_REASON
        if reason_text and not reason_text.startswith("${"):
            if not reason_text.strip().lstrip("-").isdigit() or len(reason_text) > 12:
                self.metrics.notices.labels(kind="loss", result="invalid").inc()
                raise RequestRejected(f"r: loss reason must be an integer: {reason_text[:40]!r}",
                                      status=400)
            reason = int(reason_text)
        price = NO_PRICE
        if price_text and not price_text.startswith("${"):
            # min-to-win may exceed our bid (that is why we lost): no cap at the bid here.
            price = self._loss_price_micros(price_text, token)
        event = LossEvent(ts_us=int(self.clock() * 1_000_000), exchange=token.exchange,
                          campaign=token.campaign_id, bid_id=token.bid_id, loss_reason=reason,
                          min_to_win_micros=price, bid_price_micros=token.bid_price_micros,
                          currency=token.currency)
        return await self._record("loss", "l", token, 0, event)

    def _loss_price_micros(self, text: str, token: NoticeToken) -> int:
        try:
            cpm = float(text)
        except ValueError:
            cpm = math.nan
        if not math.isfinite(cpm) or cpm < 0 or cpm > _MAX_CPM:
            self.metrics.notices.labels(kind="loss", result="invalid").inc()
            raise RequestRejected(f"m: minimum price to win must be a CPM number: {text[:40]!r}",
                                  status=400)
        micros = cpm_to_micros_per_imp(cpm)
        if token.auction_bid_micros > 0:
            micros = round_half_away(micros * token.bid_price_micros / token.auction_bid_micros)
        return micros

    async def click(self, token_text: str | None) -> NoticeOutcome:
        """302 to the campaign's landing page (from config), with ``dsp_t=<token>`` appended."""
        token = self._verify("click", token_text)
        landing = self.landing_url_for(token.campaign_id)
        if not landing:
            self.metrics.notices.labels(kind="click", result="unknown").inc()
            raise RequestRejected("t: campaign has no landing page", status=404)
        assert token_text is not None
        sep = "&" if urllib.parse.urlsplit(landing).query else "?"
        location = f"{landing}{sep}dsp_t={urllib.parse.quote(token_text, safe='')}"
        if token.test:
            self.metrics.notices.labels(kind="click", result="test").inc()
            return NoticeOutcome("click", "test", status=302, location=location)
        try:
            first = await self.outcomes.mark_once(token.campaign_id, self._day(token),
                                                  f"{token.bid_id}|k")
        except Exception:
            # The user still gets the landing page; the click goes uncounted.
            self.metrics.redis_errors.labels(op="notice", kind="error").inc()
            first = False
        if first:
            self.metrics.clicks.labels(campaign=token.campaign_id).inc()
            self._emit(ClickEvent(ts_us=int(self.clock() * 1_000_000), exchange=token.exchange,
                                  campaign=token.campaign_id, bid_id=token.bid_id))
        self.metrics.notices.labels(kind="click", result="ok" if first else "duplicate").inc()
        return NoticeOutcome("click", "ok" if first else "duplicate", status=302, location=location)

    async def event(self, token_text: str | None, event: str | None) -> NoticeOutcome:
        """A VAST tracking event (start, quartiles, complete): counted by event, no money moves.

        The event name is checked against :data:`VIDEO_EVENTS` (a closed label set)."""
        token = self._verify("event", token_text)
        if event not in VIDEO_EVENTS:
            self.metrics.notices.labels(kind="event", result="invalid").inc()
            raise RequestRejected(f"e: unknown video event {str(event)[:40]!r}", status=400)
        result = "test" if token.test else "ok"
        self.metrics.notices.labels(kind=f"video_{event}", result=result).inc()
        return NoticeOutcome("event", result)

    async def conversion(self, body: bytes) -> NoticeOutcome:
        """``POST /conversion`` from the lender's back end (JSON :class:`Conversion`)."""
        try:
            conv = msgspec.json.decode(body, type=Conversion)
        except msgspec.ValidationError as exc:
            self.metrics.notices.labels(kind="conversion", result="invalid").inc()
            raise RequestRejected(f"body: {exc}", status=400) from None
        except msgspec.DecodeError:
            self.metrics.notices.labels(kind="conversion", result="invalid").inc()
            raise RequestRejected("body: not valid JSON", status=400) from None
        if conv.event not in CONVERSION_EVENTS:
            self.metrics.notices.labels(kind="conversion", result="invalid").inc()
            raise RequestRejected(f"event: must be one of {', '.join(CONVERSION_EVENTS)}", status=400)
        amount_micros = 0
        if conv.amount is not None:
            if not math.isfinite(conv.amount) or not 0 <= conv.amount <= _MAX_AMOUNT:
                self.metrics.notices.labels(kind="conversion", result="invalid").inc()
                raise RequestRejected("amount: must be a number between 0 and 1e12", status=400)
            amount_micros = units_to_micros(conv.amount)
        # Conversions come long after the bid: check the signature, then our own window.
        token = self._verify("conversion", conv.token, now_s=0.0)
        if self.clock() > token.issued_at_s + self.conversion_window_s:
            self.metrics.notices.labels(kind="conversion", result="expired").inc()
            raise TokenExpired("token: conversion window passed")
        if token.test:
            self.metrics.notices.labels(kind="conversion", result="test").inc()
            return NoticeOutcome("conversion", "test")
        try:
            first = await self.outcomes.mark_conversion(
                token.campaign_id, self._day(token), f"{token.bid_id}|{conv.event}",
                str(amount_micros), self.conversion_window_s + 86_400)
        except Exception as exc:
            self.metrics.redis_errors.labels(op="notice", kind="error").inc()
            raise DependencyUnavailable(f"conversion not recorded: {exc}") from exc
        if first:
            self._emit(ConversionEvent(
                ts_us=int(self.clock() * 1_000_000), exchange=token.exchange,
                campaign=token.campaign_id, bid_id=token.bid_id, stage=conv.event,
                amount_micros=amount_micros, currency=token.currency))
            self.metrics.conversions.labels(campaign=token.campaign_id, event=conv.event).inc()
            self.metrics.conversion_value_micros.labels(
                campaign=token.campaign_id, event=conv.event).inc(amount_micros)
        result = "ok" if first else "duplicate"
        self.metrics.notices.labels(kind="conversion", result=result).inc()
        return NoticeOutcome("conversion", result)
