"""The effects of one notice: win, bill, loss, click, conversion. Transport-free.

Every method takes the raw parameters exactly as they arrived (strings), verifies the signed token
(:mod:`dsp.notices.tokens`), and either returns a :class:`NoticeOutcome` or raises
:class:`~dsp.errors.RequestRejected` (a 4xx naming the field; nothing changed). Redis failures
raise :class:`~dsp.errors.DependencyUnavailable` (answer 503 so the exchange retries; nothing was
counted, and the retry is deduplicated).

Money rules:

* Each notice verifies a token of its own kind (:mod:`dsp.notices.tokens`): a loss token can
  neither win nor bill, a click token only counts a click.
* ``p`` is ``${AUCTION_PRICE}``: a CPM in currency units; one impression costs ``p/1000``, in
  integer micros. The token carries our bid and the imp's floor, and a price outside
  ``[floor, bid]`` is an **anomaly**: counted (``dsp_price_anomalies{kind, anomaly}``), logged
  (at most one line per anomaly kind per 10 s, with the count since the last line) and charged by
  this rule: above the bid -> the bid (we never agreed to pay more; the exchange's invoice is
  disputed from the metric), below the floor -> the floor (an exchange cannot clear below its own
  floor, so a low price is an error or a forged notice; charging the floor keeps the budget from
  being under-counted). One micro of rounding is tolerated at the floor.
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
  request: no open redirect. It receives ``dsp_click=<click id>`` (never a token); the click's
  record (campaign, day, bid) is stored under that id for the conversion window.
* Conversions come from the lender's server, signed (:mod:`dsp.notices.signature`) with the
  secret of the campaign's lender (``conversion_secrets()``: campaign id -> secret bytes); they
  name the click id. Unsigned, wrongly signed or stale posts are 401 and change nothing; amounts
  are bounded by :data:`MAX_CONVERSION_UNITS`.
"""

from __future__ import annotations

import logging
import math
import time
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
from dsp.notices.signature import SIGNATURE_HEADER, Unauthorized, verify
from dsp.notices.tokens import ClickToken, NoticeToken, TokenExpired, TokenInvalid, TokenSigner
from dsp.observability.metrics import Metrics

log = logging.getLogger(__name__)

class EventAppender(Protocol):
    def append(self, event: Event) -> None: ...


CONVERSION_EVENTS = ("submitted", "approved", "funded")
#: tracking events the markup may fire: the ad's impression pixel (video ``<Impression>``, native
#: impression tracker) and the video progress events
VIDEO_EVENTS = ("impression", "start", "firstQuartile", "midpoint", "thirdQuartile", "complete")
_MAX_CPM = 1_000_000.0
#: the largest conversion amount accepted (currency units): a consumer loan is far below it, so a
#: larger number is a unit mix-up or an attack on the value metrics
MAX_CONVERSION_UNITS = 10_000_000.0
_ANOMALY_LOG_EVERY_S = 10.0


class ClickRecord(msgspec.Struct, array_like=True, frozen=True):
    """Stored under the click id (dsp.budget.keys.click_key) for the conversion window."""

    campaign_id: str
    day: int
    bid_id: str
    clicked_at_s: int
    test: bool = False
    exchange: str = ""
    currency: str = ""  # the campaign's (account) currency: conversion amounts are in it


_CLICK_ENC = msgspec.msgpack.Encoder()
_CLICK_DEC = msgspec.msgpack.Decoder(ClickRecord)


class NoticeOutcome(msgspec.Struct, frozen=True):
    """What the transport answers: ``status`` and, for clicks, where to redirect."""

    kind: str
    result: str  # ok | duplicate | early | late | out_of_order | ignored | unknown | test
    committed_micros: int = 0
    status: int = 200
    location: str | None = None


class Conversion(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /conversion`` (JSON): the click id the landing page received, the funnel
    event, and the amount in currency units (e.g. the funded loan's principal; optional)."""

    click_id: str
    event: str
    amount: float | None = None


class NoticeService:
    def __init__(self, signer: TokenSigner, outcomes: OutcomeStore, caps: CapRecorder,
                 metrics: Metrics, budgets: Sequence[CampaignBudget], *,
                 landing_url_for: Callable[[str], str | None] = lambda _cid: None,
                 bills_on_for: Callable[[NoticeToken], str | None] = lambda _t: None,
                 conversion_secrets: Callable[[], Mapping[str, bytes]] = dict,
                 currency_for: Callable[[str], str | None] = lambda _cid: None,
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
        self.conversion_secrets = conversion_secrets
        self.currency_for = currency_for
        self._anomalies: dict[str, tuple[float, int]] = {}  # anomaly -> (last log time, unlogged)
        self.conversion_window_s = conversion_window_s
        self.clock = clock
        self._budgets: Mapping[str, CampaignBudget] = {}
        self.update_budgets(budgets)

    def update_budgets(self, budgets: Sequence[CampaignBudget]) -> None:
        self._budgets = {b.campaign_id: b for b in budgets}

    # --- helpers -------------------------------------------------------------------------------
    def _verify(self, kind: str, text: str | None) -> NoticeToken:
        if not text:
            self.metrics.notices.labels(kind=kind, result="invalid").inc()
            raise RequestRejected("t: missing notice token", status=400)
        try:
            return self.signer.verify(text, kind, now_s=self.clock())
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
            self._anomaly(kind, "above_bid", token, micros)
            micros = token.bid_price_micros
        elif micros + 1 < token.floor_micros:
            self._anomaly(kind, "below_floor", token, micros)
            micros = token.floor_micros
        return micros, auction_micros

    def _anomaly(self, kind: str, anomaly: str, token: NoticeToken, micros: int) -> None:
        """Count a price outside [floor, bid]; log it at most once per anomaly per 10 s."""
        self.metrics.price_anomalies.labels(kind=kind, anomaly=anomaly).inc()
        now = time.monotonic()
        last, unlogged = self._anomalies.get(anomaly, (-math.inf, 0))
        if now - last < _ANOMALY_LOG_EVERY_S:
            self._anomalies[anomaly] = (last, unlogged + 1)
            return
        self._anomalies[anomaly] = (now, 0)
        log.warning("notice price outside what was signed", extra={"fields": {
            "anomaly": anomaly, "kind": kind, "exchange": token.exchange,
            "campaign": token.campaign_id, "bid_id": token.bid_id, "price_micros": micros,
            "floor_micros": token.floor_micros, "bid_micros": token.bid_price_micros,
            "not_logged_since_last": unlogged}})

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
                commits=self._commits(kind, token), issued_at_s=token.issued_at_s,
                expires_at_s=token.expires_at_s)
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
        """302 to the campaign's landing page (from config), with ``dsp_click=<click id>``."""
        if not token_text:
            self.metrics.notices.labels(kind="click", result="invalid").inc()
            raise RequestRejected("t: missing click token", status=400)
        try:
            token: ClickToken = self.signer.verify_click(token_text, now_s=self.clock())
        except (TokenInvalid, TokenExpired) as exc:
            self.metrics.notices.labels(
                kind="click", result="expired" if isinstance(exc, TokenExpired) else "invalid").inc()
            raise
        landing = self.landing_url_for(token.campaign_id)
        if not landing:
            self.metrics.notices.labels(kind="click", result="unknown").inc()
            raise RequestRejected("t: campaign has no landing page", status=404)
        click_id = self.signer.click_id(token.bid_id)
        sep = "&" if urllib.parse.urlsplit(landing).query else "?"
        location = f"{landing}{sep}dsp_click={click_id}"
        now = self.clock()
        spec = self._budgets.get(token.campaign_id)
        day = campaign_day(token.issued_at_s, spec.utc_offset_minutes if spec else 0)
        record = ClickRecord(token.campaign_id, day, token.bid_id, int(now), token.test,
                             token.exchange, self.currency_for(token.campaign_id) or "")
        try:
            first = await self.outcomes.record_click(click_id, _CLICK_ENC.encode(record),
                                                     self.conversion_window_s)
        except Exception:
            # The user still gets the landing page; the click goes uncounted.
            self.metrics.redis_errors.labels(op="notice", kind="error").inc()
            first = False
        if token.test:
            self.metrics.notices.labels(kind="click", result="test").inc()
            return NoticeOutcome("click", "test", status=302, location=location)
        if first:
            self.metrics.clicks.labels(campaign=token.campaign_id).inc()
            self._emit(ClickEvent(ts_us=int(self.clock() * 1_000_000), exchange=token.exchange,
                                  campaign=token.campaign_id, bid_id=token.bid_id,
                                  click_id=click_id))
        self.metrics.notices.labels(kind="click", result="ok" if first else "duplicate").inc()
        return NoticeOutcome("click", "ok" if first else "duplicate", status=302, location=location)

    async def event(self, token_text: str | None, event: str | None) -> NoticeOutcome:
        """A tracking event from markup (the impression pixel of a video or native ad, video
        start/quartiles/complete): counted by event, no money moves. Takes the public ``event``
        token only; the event name is checked against :data:`VIDEO_EVENTS` (a closed label set)."""
        if not token_text:
            self.metrics.notices.labels(kind="event", result="invalid").inc()
            raise RequestRejected("t: missing event token", status=400)
        try:
            token = self.signer.verify_click(token_text, now_s=self.clock(), kind="event")
        except (TokenInvalid, TokenExpired) as exc:
            self.metrics.notices.labels(
                kind="event", result="expired" if isinstance(exc, TokenExpired) else "invalid").inc()
            raise
        if event not in VIDEO_EVENTS:
            self.metrics.notices.labels(kind="event", result="invalid").inc()
            raise RequestRejected(f"e: unknown video event {str(event)[:40]!r}", status=400)
        result = "test" if token.test else "ok"
        self.metrics.notices.labels(kind=f"video_{event}", result=result).inc()
        return NoticeOutcome("event", result)

    def _conversion_rejected(self, exc: RequestRejected) -> RequestRejected:
        result = "unauthorized" if exc.status == 401 else "invalid"
        self.metrics.notices.labels(kind="conversion", result=result).inc()
        return exc

    async def conversion(self, body: bytes, signature: str | None) -> NoticeOutcome:
        """``POST /conversion`` from the lender's server: ``body`` (JSON :class:`Conversion`)
        signed in ``signature`` (the ``X-DSP-Signature`` header; :mod:`dsp.notices.signature`).
        The signature is checked before the body is decoded."""
        secrets_by_campaign = self.conversion_secrets()
        try:
            matched = verify(set(secrets_by_campaign.values()), signature, body, self.clock())
        except Unauthorized as exc:
            raise self._conversion_rejected(exc) from None
        try:
            conv = msgspec.json.decode(body, type=Conversion)
        except msgspec.ValidationError as exc:
            raise self._conversion_rejected(RequestRejected(f"body: {exc}", status=400)) from None
        except msgspec.DecodeError:
            raise self._conversion_rejected(RequestRejected("body: not valid JSON", status=400)) from None
        if conv.event not in CONVERSION_EVENTS:
            raise self._conversion_rejected(RequestRejected(
                f"event: must be one of {', '.join(CONVERSION_EVENTS)}", status=400))
        amount_micros = 0
        if conv.amount is not None:
            if not math.isfinite(conv.amount) or not 0 <= conv.amount <= MAX_CONVERSION_UNITS:
                raise self._conversion_rejected(RequestRejected(
                    f"amount: must be a number between 0 and {MAX_CONVERSION_UNITS:.0f}", status=400))
            amount_micros = units_to_micros(conv.amount)
        if not conv.click_id or len(conv.click_id) > 64:
            raise self._conversion_rejected(RequestRejected("click_id: missing or too long", status=400))
        try:
            raw = await self.outcomes.click(conv.click_id)
        except Exception as exc:
            self.metrics.redis_errors.labels(op="notice", kind="error").inc()
            raise DependencyUnavailable(f"conversion not recorded: {exc}") from exc
        if raw is None:
            self.metrics.notices.labels(kind="conversion", result="unknown").inc()
            raise RequestRejected("click_id: unknown, or older than the conversion window", status=404)
        click = _CLICK_DEC.decode(raw)
        if secrets_by_campaign.get(click.campaign_id) not in matched:
            raise self._conversion_rejected(Unauthorized(
                f"{SIGNATURE_HEADER}: not signed with the secret of this click's lender"))
        if click.test:
            self.metrics.notices.labels(kind="conversion", result="test").inc()
            return NoticeOutcome("conversion", "test")
        try:
            first = await self.outcomes.mark_conversion(
                click.campaign_id, click.day, f"{click.bid_id}|{conv.event}",
                str(amount_micros), self.conversion_window_s + 86_400)
        except Exception as exc:
            self.metrics.redis_errors.labels(op="notice", kind="error").inc()
            raise DependencyUnavailable(f"conversion not recorded: {exc}") from exc
        if first:
            self._emit(ConversionEvent(
                ts_us=int(self.clock() * 1_000_000), exchange=click.exchange,
                campaign=click.campaign_id, bid_id=click.bid_id, stage=conv.event,
                amount_micros=amount_micros, currency=click.currency, click_id=conv.click_id))
            self.metrics.conversions.labels(campaign=click.campaign_id, event=conv.event).inc()
            self.metrics.conversion_value_micros.labels(
                campaign=click.campaign_id, event=conv.event).inc(amount_micros)
        result = "ok" if first else "duplicate"
        self.metrics.notices.labels(kind="conversion", result=result).inc()
        return NoticeOutcome("conversion", result)
