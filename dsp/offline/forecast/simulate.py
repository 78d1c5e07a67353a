"""Replay a logged request sample through one config with the real bid path, day by day.

    result = simulate(snapshot, rows, market, initial_lambda={...})

Every sampled request goes through :func:`dsp.bidding.decide.prepare` and
:func:`~dsp.bidding.decide.choose` (policy gates, eligibility, pricing, shading, the money gate)
with the scores logged when it was sampled. The money gate is :class:`SimMoney`: each campaign's
daily budget, spent as the market settles, and pacing by the bidder's own
:class:`~dsp.budget.pacing.PacingController` — λ updated every ``update_every`` sampled requests
from the spend rate against "what is left, spread over the traffic left in the day" (the plan's
hourly weights), lowest-value-first throttling, λ carried from one day to the next. A sample of
rate r stands for 1/r requests: its bids, wins and spend count 1/r times.

What each bid wins is the ``market``'s business (:class:`Market`): the forecast settles in
expectation on a fitted landscape (:mod:`dsp.offline.forecast.market`); the accuracy harness can
settle on the true logged prices. Bids are recorded (campaign, row, bid) so that intervals can be
computed afterwards without replaying again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec

from dsp.bidding.audience import Audience
from dsp.bidding.decide import IdSource, Prepared, choose, prepare
from dsp.budget.pacing import PacingController, PacingPlan, PacingSettings
from dsp.config.snapshot import Snapshot
from dsp.errors import InvalidRequest
from dsp.openrtb.decode import RequestDecoder
from dsp.openrtb.nobid import NoBidReason

SECONDS_PER_DAY = 86_400
VALUE_WINDOW = 512
DEFAULT_PACING = PacingSettings(gain=0.1, smoothing=0.3)  # the replay's settings (docs/replay.md)
DEFAULT_UPDATE_EVERY = 25  # sampled requests between controller updates


class Row(msgspec.Struct, frozen=True, gc=False):
    """One sampled request as logged: body, scores, and how many requests it stands for."""

    ts_us: int
    exchange: str
    body: bytes
    p_intent: float
    pd: float
    user_known: bool
    weight: float = 1.0  # 1 / sample rate
    scores: dict[str, float] = {}  # every named score logged (gate scores included)


class Settled(msgspec.Struct, frozen=True, gc=False):
    """Expected outcome of one bid: wins, spend (micros, campaign currency) and clicks."""

    wins: float
    spend_micros: float
    clicks: float


class Market(Protocol):
    def settle(self, row: int, campaign: str, exchange: str, size: tuple[int, int],
               bid_micros: float, p_intent: float) -> Settled:
        """What one bid of ``bid_micros`` (one impression, campaign currency) yields."""
        ...


class BidRecord(msgspec.Struct, frozen=True, gc=False):
    row: int
    campaign: str
    exchange: str
    size: tuple[int, int]
    bid_micros: float
    p_intent: float
    weight: float
    pacing_lambda: float = 0.0


class CampaignTotals(msgspec.Struct):
    bids: float = 0.0
    wins: float = 0.0
    spend_micros: float = 0.0
    clicks: float = 0.0
    intent_won: float = 0.0  # Σ P(win) · p_intent: drives applications
    days: int = 0
    days_out: int = 0  # days on which the budget ran out
    out_share_sum: float = 0.0  # Σ over those days of the share of the day's traffic seen


class _Pacer:
    __slots__ = ("ctrl", "daily_micros", "floor", "hour_weights", "lam_n", "lam_sum", "plan",
                 "remaining", "values", "window")

    def __init__(self, daily_micros: int, plan: PacingPlan, curve: Sequence[float],
                 settings: PacingSettings, lam0: float) -> None:
        self.daily_micros = daily_micros
        self.plan = plan
        total = float(sum(curve)) or 1.0
        self.hour_weights = [w / total for w in curve]
        self.ctrl = PacingController(settings, initial_lambda=lam0)
        self.remaining = float(daily_micros)
        self.window = 0.0
        self.values: list[int] = []
        self.floor = 0
        self.lam_sum = 0.0
        self.lam_n = 0


class SimMoney:
    """:class:`dsp.bidding.ports.MoneyGate` over simulated budgets (no Redis, no clock)."""

    def __init__(self, snapshot: Snapshot, initial_lambda: dict[str, float],
                 settings: PacingSettings) -> None:
        self.settings = settings
        self.pacers: dict[str, _Pacer] = {}
        for b in snapshot.budgets:
            self.pacers[b.campaign_id] = _Pacer(
                b.daily_budget_micros, PacingPlan(b.pacing_curve, b.utc_offset_minutes),
                b.pacing_curve, settings, initial_lambda.get(b.campaign_id, 0.0))

    def start_day(self, carry: bool) -> None:
        for p in self.pacers.values():
            lam = p.lam_sum / p.lam_n if (carry and p.lam_n) else p.ctrl.lam
            p.ctrl = PacingController(self.settings, initial_lambda=lam)
            p.remaining = float(p.daily_micros)
            p.window = 0.0
            p.values = []
            p.floor = 0
            p.lam_sum, p.lam_n = 0.0, 0

    def pacing_multiplier(self, campaign_id: str) -> float:
        p = self.pacers.get(campaign_id)
        return p.ctrl.lam if p is not None else 0.0

    def admit(self, campaign_id: str, value_micros: int) -> NoBidReason | None:
        p = self.pacers.get(campaign_id)
        if p is None or p.remaining <= 0:
            return NoBidReason.BUDGET_EXHAUSTED
        p.values.append(value_micros)
        if p.floor > 0 and value_micros < p.floor:
            return NoBidReason.PACING_THROTTLED
        return None

    def reserve(self, campaign_id: str, bid_id: str, price_micros: int, expires_at_s: float,
                *, test: bool = False, issued_at_s: float | None = None) -> bool:
        p = self.pacers.get(campaign_id)
        return p is not None and p.remaining > 0


def _day_of(ts_us: int) -> int:
    return ts_us // 1_000_000 // SECONDS_PER_DAY


def simulate(snapshot: Snapshot, rows: Sequence[Row], market: Market, *,
             initial_lambda: dict[str, float] | None = None,
             settings: PacingSettings = DEFAULT_PACING,
             update_every: int = DEFAULT_UPDATE_EVERY, carry_lambda: bool = True,
             record: list[BidRecord] | None = None) -> dict[str, CampaignTotals]:
    """Totals per campaign over ``rows`` (in time order; days are UTC days of ``ts_us``)."""
    decoder = RequestDecoder()
    money = SimMoney(snapshot, initial_lambda or {}, settings)
    totals = {c.id: CampaignTotals() for c in snapshot.campaigns}
    ids = IdSource("fc-")
    days: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        days.setdefault(_day_of(r.ts_us), []).append(i)
    decoded: dict[bytes, object] = {}
    for n_day, (_, day_rows) in enumerate(sorted(days.items())):
        money.start_day(carry_lambda and n_day > 0)
        # Target: what is left, spread over the traffic left today in proportion to the plan.
        left_weight: dict[str, list[float]] = {}
        for cid, p in money.pacers.items():
            acc, suffix = 0.0, [0.0] * (len(day_rows) + 1)
            for j in range(len(day_rows) - 1, -1, -1):
                r = rows[day_rows[j]]
                hour = int(p.plan.seconds_into_day(r.ts_us / 1e6) // 3600)
                acc += r.weight * p.hour_weights[hour]
                suffix[j] = acc
            left_weight[cid] = suffix
        out_at: dict[str, int] = {}
        k = max(1, update_every)
        for j, i in enumerate(day_rows):
            r = rows[i]
            if j and j % k == 0:
                for cid, p in money.pacers.items():
                    seen = sum(rows[day_rows[x]].weight for x in range(j - k, j))
                    target = p.remaining / left_weight[cid][j] * seen if left_weight[cid][j] > 0 \
                        else 0.0
                    p.ctrl.update(p.window / k, max(target, 0.0) / k)
                    p.window = 0.0
                    if j <= len(day_rows) * 3 // 4:
                        p.lam_sum += p.ctrl.lam
                        p.lam_n += 1
                    th = p.ctrl.throttle
                    recent = sorted(p.values[-VALUE_WINDOW:])
                    p.floor = recent[min(len(recent) - 1, int(th * len(recent)))] \
                        if th > 0 and recent else 0
            _bid_one(snapshot, decoder, decoded, money, ids, market, totals, r, i, record)
            for cid, p in money.pacers.items():
                if p.remaining <= 0 and cid not in out_at:
                    out_at[cid] = j + 1
        for cid, t in totals.items():
            t.days += 1
            if cid in out_at:
                t.days_out += 1
                t.out_share_sum += out_at[cid] / len(day_rows)
    return totals


def _bid_one(snapshot: Snapshot, decoder: RequestDecoder, decoded: dict[bytes, object],
             money: SimMoney, ids: IdSource, market: Market, totals: dict[str, CampaignTotals],
             r: Row, i: int, record: list[BidRecord] | None) -> None:
    profile = snapshot.exchanges.get(r.exchange)
    if profile is None:
        return
    req = decoded.get(r.body)
    if req is None:
        try:
            req = decoder.decode(r.body, lax_numbers=profile.lax_numbers)
        except InvalidRequest:
            req = False
        if len(decoded) < 4096:
            decoded[r.body] = req
    if req is False:
        return
    prep = prepare(req, profile, snapshot, r.ts_us / 1e6)  # type: ignore[arg-type]
    if not isinstance(prep, Prepared):
        return
    audience = Audience("u:{fc}" if r.user_known else "", r.user_known, r.p_intent, r.pd, {},
                        r.scores)
    chosen = choose(prep, audience, money, snapshot, ids)
    if isinstance(chosen, NoBidReason):
        return
    for ch in chosen:
        c = ch.candidate.campaign
        imp = prep.req.imp[ch.candidate.imp_index]
        size = (imp.banner.w or 0, imp.banner.h or 0) if imp.banner is not None else (0, 0)
        bid_micros = ch.price.bid_cpm_micros / 1000.0
        s = market.settle(i, c.id, r.exchange, size, bid_micros, r.p_intent)
        t = totals[c.id]
        t.bids += r.weight
        t.wins += s.wins * r.weight
        t.spend_micros += s.spend_micros * r.weight
        t.clicks += s.clicks * r.weight
        t.intent_won += s.wins * r.p_intent * r.weight
        p = money.pacers[c.id]
        p.remaining -= s.spend_micros * r.weight
        p.window += s.spend_micros * r.weight
        if record is not None:
            record.append(BidRecord(i, c.id, r.exchange, size, bid_micros, r.p_intent, r.weight,
                                    p.ctrl.lam))
