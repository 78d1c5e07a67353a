"""The filter table: every gate and filter of the bid path, in one ordered list.

Each row is ``Filter(name, stage, reason, check, detail)``. Rows run in table order within their
stage, and the stages run in table order too (request -> campaign -> creative -> deal -> price ->
money), so a row's **position is its rank**: when no campaign bids, the request's no-bid reason is
the reason of the row furthest down the table that dropped a campaign (the campaign that got
furthest explains the request best). ``dsp explain`` prints the row that dropped each campaign,
the metrics' ``reason`` label set is :data:`REASON_LABELS`, and the story-coverage test checks that
every :class:`NoBidReason` is either produced by a row here (with a story fixture) or listed in
:data:`FLOW_REASONS`.

Stages and the arguments of ``check`` / ``detail`` (``check`` returns True to drop):

=========  ==============================  =====================================================
request    (req, profile, rates)           once per request, before any campaign (policy gates)
campaign   (campaign, ctx)                 once per campaign per request (targeting, consent)
creative   (creative, ctx)                 per imp, on the creative that fits it (block lists)
deal       —                               reported by the deal/floor lookup in eligibility
price      (candidate, audience, ctx)      per candidate after the request's one await
money      —                               reported by pricing or the MoneyGate port
=========  ==============================  =====================================================

A row without ``check`` is an *outcome row*: the stage's own lookup reports it (no creative fits
the imp; a private auction without our deal; the value formula; the money gate). It still has a
position (its rank) and a reason, and :func:`outcome` finds it by (stage, reason).

Adding a gate: one row in the right stage (a ``check`` and a ``detail`` function next to it), and
one story fixture under ``tests/fixtures/bidding/`` that ends in the row's reason. If the gate
needs a new no-bid reason, add it to :class:`dsp.openrtb.nobid.NoBidReason` first. A campaign
row whose check is a no-op for some campaigns should say so with ``applies`` (below).

A campaign-stage row may also give ``applies(campaign)``: False when its targeting leaves the row
nothing to test for that campaign (no country list, no placement lists, contextual campaigns and
the user rows). :func:`campaign_checks` leaves those rows out of the campaign's plan, built once
per snapshot (:func:`dsp.bidding.eligibility.campaign_plan`); the first row that drops a campaign,
and so the reported reason, is the same as with the whole stage (tests/test_bidding_plan.py).

Cost: a row is one Python call per campaign (campaign stage: only the rows in its plan) or per
candidate (price stage); ``benchmarks/bench_decide.py``, ``bench_hotpath.py`` and
``count_hotpath.py`` measure the decision steps (docs/bidpath.md, "Performance").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import msgspec

from dsp.budget.freqcap import is_capped
from dsp.openrtb.nobid import NoBidReason

if TYPE_CHECKING:
    from dsp.bidding.audience import Audience
    from dsp.bidding.context import RequestContext
    from dsp.bidding.eligibility import Candidate
    from dsp.config.snapshot import CompiledCampaign, CompiledCreative, Rates
    from dsp.exchanges.profile import ExchangeProfile
    from dsp.openrtb.request import BidRequest

Stage = Literal["request", "campaign", "creative", "deal", "price", "money"]
STAGES: tuple[Stage, ...] = ("request", "campaign", "creative", "deal", "price", "money")

R = NoBidReason


class Filter(msgspec.Struct, frozen=True, gc=False):
    """One row. ``rank`` is the row's position in :data:`FILTERS` (set when the table is built).

    ``applies`` (campaign stage only): ``applies(campaign)`` is False when the row can never drop
    that campaign, whatever the request (its targeting leaves the row nothing to test, e.g. no
    country list); :func:`campaign_checks` leaves such rows out of the campaign's plan. It must
    be a necessary condition of ``check`` returning True (tests/test_bidding_plan.py checks the
    plans against the whole table). None: the row always runs."""

    name: str
    stage: Stage
    reason: NoBidReason
    check: Callable[..., bool] | None = None
    detail: Callable[..., str] | None = None
    rank: int = -1
    applies: Callable[[CompiledCampaign], bool] | None = None

    def explain(self, *args: object) -> str:
        """The human text for ``dsp explain`` (never on the hot path)."""
        return self.detail(*args) if self.detail is not None else self.name.replace("_", " ")


# -- request stage: (req, profile, rates) -------------------------------------------------------

def response_currency(req: BidRequest, profile: ExchangeProfile, rates: Rates) -> str | None:
    """The currency we answer in: the profile's if allowed, else the first of ``cur`` we can
    convert to; None when the request restricts currencies to ones we have no rate for."""
    if not req.cur or profile.currency in req.cur:
        return profile.currency
    for cur in req.cur:
        if cur in rates.rates:
            return cur
    return None


def _coppa(req: BidRequest, profile: ExchangeProfile, rates: Rates) -> bool:
    return req.regs is not None and req.regs.coppa == 1


def _wseat(req: BidRequest, profile: ExchangeProfile, rates: Rates) -> bool:
    wseat = req.wseat
    return wseat is not None and len(wseat) > 0 and (profile.seat is None or profile.seat not in wseat)


def _bseat(req: BidRequest, profile: ExchangeProfile, rates: Rates) -> bool:
    bseat = req.bseat
    return bseat is not None and profile.seat is not None and profile.seat in bseat


def _currency(req: BidRequest, profile: ExchangeProfile, rates: Rates) -> bool:
    return response_currency(req, profile, rates) is None


# -- campaign stage: (campaign, ctx) ------------------------------------------------------------

def _local_s(c: CompiledCampaign, ctx: RequestContext) -> float:
    return ctx.now_s + c.utc_offset_minutes * 60


def _flight(c: CompiledCampaign, ctx: RequestContext) -> bool:
    if c.start_day is None and c.end_day is None:
        return False
    day = int(_local_s(c, ctx) // 86400)
    return (c.start_day is not None and day < c.start_day) or (c.end_day is not None and day > c.end_day)


def _hours(c: CompiledCampaign, ctx: RequestContext) -> bool:
    return c.hours is not None and int(_local_s(c, ctx) // 3600) % 24 not in c.hours


def _hours_detail(c: CompiledCampaign, ctx: RequestContext) -> str:
    return f"local hour {int(_local_s(c, ctx) // 3600) % 24} not scheduled"


def _country(c: CompiledCampaign, ctx: RequestContext) -> bool:
    return c.countries is not None and ctx.country not in c.countries


def _region(c: CompiledCampaign, ctx: RequestContext) -> bool:
    p = c.placement
    return p is not None and p.regions is not None and ctx.region not in p.regions


def _exclude_region(c: CompiledCampaign, ctx: RequestContext) -> bool:
    p = c.placement
    return p is not None and bool(p.exclude_regions) and ctx.region in p.exclude_regions


def _metro(c: CompiledCampaign, ctx: RequestContext) -> bool:
    p = c.placement
    return p is not None and p.metros is not None and ctx.metro not in p.metros


def _block_domain(c: CompiledCampaign, ctx: RequestContext) -> bool:
    p = c.placement
    return (p is not None and bool(p.exclude_domains) and bool(ctx.domain_keys)
            and not p.exclude_domains.isdisjoint(ctx.domain_keys))


def _block_bundle(c: CompiledCampaign, ctx: RequestContext) -> bool:
    p = c.placement
    return p is not None and bool(p.exclude_bundles) and ctx.bundle in p.exclude_bundles


def _allow_placement(c: CompiledCampaign, ctx: RequestContext) -> bool:
    p = c.placement
    if p is None or not p.allow_lists:
        return False
    site_ok = p.domains is not None and bool(ctx.domain_keys) and not p.domains.isdisjoint(ctx.domain_keys)
    return not site_ok and not (p.bundles is not None and ctx.bundle in p.bundles)


def _where(ctx: RequestContext) -> str:
    return ctx.domain_keys[0] if ctx.domain_keys else str(ctx.bundle)


def _datacenter(c: CompiledCampaign, ctx: RequestContext) -> bool:
    return ctx.supply.datacenter is not None and not c.supply.allow_datacenter_ip


def _resellers(c: CompiledCampaign, ctx: RequestContext) -> bool:
    limit = c.supply.max_resellers
    return limit is not None and ctx.supply.resellers > limit


def _schain_complete(c: CompiledCampaign, ctx: RequestContext) -> bool:
    return c.supply.require_complete_schain and not ctx.supply.schain_complete


def _gdpr_user_data(c: CompiledCampaign, ctx: RequestContext) -> bool:
    return c.requires_user and ctx.gdpr_no_consent


def _opted_out(c: CompiledCampaign, ctx: RequestContext) -> bool:
    return c.requires_user and not ctx.privacy.user_data and not ctx.privacy.eu


def _privacy_detail(c: CompiledCampaign, ctx: RequestContext) -> str:
    return f"campaign needs user data; {ctx.privacy.outcome.value}: {ctx.privacy.detail}"


def _device(c: CompiledCampaign, ctx: RequestContext) -> bool:
    return c.device_types is not None and ctx.device_type not in c.device_types


def _os(c: CompiledCampaign, ctx: RequestContext) -> bool:
    return c.os is not None and ctx.os not in c.os


def _categories(c: CompiledCampaign, ctx: RequestContext) -> bool:
    return c.categories is not None and c.categories.isdisjoint(ctx.category_keys)


def _exclude(c: CompiledCampaign, ctx: RequestContext) -> bool:
    return bool(c.exclude_categories) and not c.exclude_categories.isdisjoint(ctx.category_keys)


def _consent(c: CompiledCampaign, ctx: RequestContext) -> bool:
    return ctx.gdpr_no_consent and not c.gdpr_contextual


def _no_user_id(c: CompiledCampaign, ctx: RequestContext) -> bool:
    return c.requires_user and not ctx.user_id


def _needs_user(c: CompiledCampaign) -> bool:
    return c.requires_user


# -- creative stage: (creative, ctx) ------------------------------------------------------------

def _bcat(cr: CompiledCreative, ctx: RequestContext) -> bool:
    return bool(ctx.bcat) and not cr.cat_keys.isdisjoint(ctx.bcat)


def _badv(cr: CompiledCreative, ctx: RequestContext) -> bool:
    return bool(ctx.badv) and not ctx.badv.isdisjoint(cr.adomain)


def _bapp(cr: CompiledCreative, ctx: RequestContext) -> bool:
    return bool(ctx.bapp) and cr.bundle is not None and cr.bundle in ctx.bapp


# -- price stage: (candidate, audience, ctx) ----------------------------------------------------

def _user_unknown(cand: Candidate, audience: Audience, ctx: RequestContext) -> bool:
    return cand.campaign.requires_user and not audience.known


def _freq(cand: Candidate, audience: Audience, ctx: RequestContext) -> bool:
    c = cand.campaign
    cap = c.budget.frequency_cap
    return cap is not None and bool(audience.caps) and is_capped(audience.caps, c.id, cap, ctx.now_s)


def _intent(cand: Candidate, audience: Audience, ctx: RequestContext) -> bool:
    # Intent before risk: the risk model is skipped for users below every campaign's intent_min
    # and their pd is NaN (which compares False, so it must never be the deciding test).
    return audience.p_intent < cand.campaign.intent_min


def _risk(cand: Candidate, audience: Audience, ctx: RequestContext) -> bool:
    return not audience.pd <= cand.campaign.pd_max


def _max_scores(cand: Candidate, audience: Audience, ctx: RequestContext) -> bool:
    # A score the plan did not produce (or a NaN: not scored) does not gate.
    if not cand.campaign.max_scores:
        return False
    scores = audience.scores
    for name, highest in cand.campaign.max_scores:
        value = scores.get(name)
        if value is not None and value > highest:
            return True
    return False


def _max_scores_detail(cand: Candidate, audience: Audience, ctx: RequestContext) -> str:
    return ", ".join(f"{n}={audience.scores.get(n, float('nan')):.4f} (max {m})"
                     for n, m in cand.campaign.max_scores)


def _scores_detail(cand: Candidate, audience: Audience, ctx: RequestContext) -> str:
    c = cand.campaign
    return f"pd={audience.pd:.4f} (max {c.pd_max}), p_intent={audience.p_intent:.4f} (min {c.intent_min})"


def _ranked(*rows: Filter) -> tuple[Filter, ...]:
    order = {s: i for i, s in enumerate(STAGES)}
    stages = [order[r.stage] for r in rows]
    if stages != sorted(stages):
        raise ValueError("filter table rows must be grouped by stage, in STAGES order")
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise ValueError("filter names must be unique")
    return tuple(msgspec.structs.replace(r, rank=i) for i, r in enumerate(rows))


#: The table. Position = rank; edit here (and add a story fixture) to add a gate.
FILTERS: tuple[Filter, ...] = _ranked(
    Filter("coppa", "request", R.COPPA, _coppa, lambda *_: "regs.coppa = 1"),
    Filter("wseat", "request", R.BLOCKED_SEAT, _wseat, lambda *_: "our seat is not in wseat"),
    Filter("bseat", "request", R.BLOCKED_SEAT, _bseat, lambda *_: "our seat is in bseat"),
    Filter("currency", "request", R.CURRENCY_UNSUPPORTED, _currency,
           lambda req, *_: f"no rate for any of cur {req.cur}"),
    # Outcome rows of dsp.bidding.quality.quality_gate (one call, its own detail text):
    Filter("ip", "request", R.NON_HUMAN_TRAFFIC, None,
           lambda *_: "device.ip missing where always sent, or not a public address"),
    Filter("bot_user_agent", "request", R.KNOWN_CRAWLER, None, lambda *_: "known bot user agent"),
    Filter("seller_authorisation", "request", R.UNAUTHORISED_SELLER, None,
           lambda *_: "seller not in sellers.json or not authorised by ads.txt / app-ads.txt"),
    Filter("ads_txt_required", "request", R.ADS_TXT_UNAVAILABLE, None,
           lambda *_: "no ads.txt / app-ads.txt for the domain"),
    Filter("campaigns", "campaign", R.NO_ELIGIBLE_CAMPAIGN, None,
           lambda *_: "no enabled campaign runs on this exchange"),
    Filter("flight_dates", "campaign", R.OUT_OF_SCHEDULE, _flight, lambda *_: "outside the flight dates",
           applies=lambda c: c.start_day is not None or c.end_day is not None),
    Filter("hours", "campaign", R.OUT_OF_SCHEDULE, _hours, _hours_detail,
           applies=lambda c: c.hours is not None),
    Filter("country", "campaign", R.NO_ELIGIBLE_CAMPAIGN, _country,
           lambda c, ctx: f"country {ctx.country} not targeted",
           applies=lambda c: c.countries is not None),
    Filter("region", "campaign", R.NO_ELIGIBLE_CAMPAIGN, _region,
           lambda c, ctx: f"region {ctx.region} not targeted",
           applies=lambda c: c.placement is not None and c.placement.regions is not None),
    Filter("exclude_region", "campaign", R.NO_ELIGIBLE_CAMPAIGN, _exclude_region,
           lambda c, ctx: f"region {ctx.region} excluded",
           applies=lambda c: c.placement is not None and bool(c.placement.exclude_regions)),
    Filter("metro", "campaign", R.NO_ELIGIBLE_CAMPAIGN, _metro,
           lambda c, ctx: f"metro {ctx.metro} not targeted",
           applies=lambda c: c.placement is not None and c.placement.metros is not None),
    Filter("exclude_domain", "campaign", R.NO_ELIGIBLE_CAMPAIGN, _block_domain,
           lambda c, ctx: f"domain {ctx.domain_keys[0]} blocked",
           applies=lambda c: c.placement is not None and bool(c.placement.exclude_domains)),
    Filter("exclude_app", "campaign", R.NO_ELIGIBLE_CAMPAIGN, _block_bundle,
           lambda c, ctx: f"app {ctx.bundle} blocked",
           applies=lambda c: c.placement is not None and bool(c.placement.exclude_bundles)),
    Filter("placement_allow", "campaign", R.NO_ELIGIBLE_CAMPAIGN, _allow_placement,
           lambda c, ctx: f"placement {_where(ctx)} not on the allow list",
           applies=lambda c: c.placement is not None and c.placement.allow_lists),
    Filter("device_type", "campaign", R.NO_ELIGIBLE_CAMPAIGN, _device,
           lambda c, ctx: f"device type {ctx.device_type} not targeted",
           applies=lambda c: c.device_types is not None),
    Filter("os", "campaign", R.NO_ELIGIBLE_CAMPAIGN, _os, lambda c, ctx: f"os {ctx.os} not targeted",
           applies=lambda c: c.os is not None),
    Filter("categories", "campaign", R.NO_ELIGIBLE_CAMPAIGN, _categories, lambda *_: "no targeted category",
           applies=lambda c: c.categories is not None),
    Filter("exclude_categories", "campaign", R.NO_ELIGIBLE_CAMPAIGN, _exclude,
           lambda *_: "excluded category",
           applies=lambda c: bool(c.exclude_categories)),
    Filter("data_center_ip", "campaign", R.DATA_CENTER_IP, _datacenter,
           lambda c, ctx: f"device.ip is in {ctx.supply.datacenter}",
           applies=lambda c: not c.supply.allow_datacenter_ip),
    Filter("schain_resellers", "campaign", R.SCHAIN_BLOCKED, _resellers,
           lambda c, ctx: f"{ctx.supply.resellers} reseller(s), campaign allows {c.supply.max_resellers}",
           applies=lambda c: c.supply.max_resellers is not None),
    Filter("schain_complete", "campaign", R.SCHAIN_INCOMPLETE, _schain_complete,
           lambda *_: "campaign requires a complete schain",
           applies=lambda c: c.supply.require_complete_schain),
    Filter("gdpr_consent", "campaign", R.NO_CONSENT, _consent,
           lambda c, ctx: f"GDPR without consent ({ctx.privacy.outcome.value}: {ctx.privacy.detail}); "
                          "campaign does not bid contextually",
           applies=lambda c: not c.gdpr_contextual),
    Filter("gdpr_user_data", "campaign", R.NO_CONSENT, _gdpr_user_data, _privacy_detail,
           applies=_needs_user),
    Filter("privacy_opt_out", "campaign", R.PRIVACY_OPT_OUT, _opted_out, _privacy_detail,
           applies=_needs_user),
    Filter("user_id", "campaign", R.USER_UNKNOWN, _no_user_id,
           lambda *_: "campaign needs a known user; none may be looked up",
           applies=_needs_user),
    Filter("creative_fit", "creative", R.NO_MATCHING_CREATIVE, None,
           lambda *_: "no creative fits the imp's format or size"),
    Filter("bcat", "creative", R.BLOCKED_CATEGORY, _bcat,
           lambda cr, ctx: f"creative category {','.join(cr.cat)} blocked by bcat"),
    Filter("badv", "creative", R.BLOCKED_ADVERTISER, _badv,
           lambda cr, ctx: f"advertiser {','.join(cr.adomain)} blocked by badv"),
    Filter("bapp", "creative", R.BLOCKED_APP, _bapp,
           lambda cr, ctx: f"advertiser app {cr.bundle} blocked by bapp"),
    Filter("deal", "deal", R.NO_ELIGIBLE_CAMPAIGN, None,
           lambda *_: "private auction without a deal of this campaign, or a deals-only campaign"),
    Filter("floor_currency", "deal", R.CURRENCY_UNSUPPORTED, None, lambda *_: "floor currency has no rate"),
    Filter("user_known", "price", R.USER_UNKNOWN, _user_unknown, lambda *_: "user unknown (no features)"),
    Filter("frequency_cap", "price", R.FREQUENCY_CAPPED, _freq, lambda *_: "frequency cap reached"),
    Filter("intent_min", "price", R.INTENT_TOO_LOW, _intent, _scores_detail),
    Filter("pd_max", "price", R.RISK_TOO_HIGH, _risk, _scores_detail),
    Filter("max_scores", "price", R.SCORE_TOO_HIGH, _max_scores, _max_scores_detail),
    Filter("value", "money", R.VALUE_NOT_POSITIVE, None, lambda *_: "expected value is not positive"),
    Filter("floor", "money", R.BELOW_FLOOR, None, lambda *_: "bid below the floor"),
    Filter("budget_schedule", "money", R.OUT_OF_SCHEDULE, None, lambda *_: "money gate: not bidding now"),
    Filter("budget_brake", "money", R.BUDGET_BRAKE, None, lambda *_: "money gate: emergency brake"),
    Filter("budget", "money", R.BUDGET_EXHAUSTED, None, lambda *_: "money gate: budget exhausted"),
    Filter("pacing", "money", R.PACING_THROTTLED, None, lambda *_: "money gate: pacing throttles this value"),
    Filter("reservation", "money", R.BUDGET_EXHAUSTED, None,
           lambda *_: "the bid price does not fit the local budget lease"),
)

#: Reasons the flow itself reports (no filter row can): timeouts, failures of a dependency, and
#: overload (a request shed before decoding, dsp.server.overload; tests/test_server_overload.py).
FLOW_REASONS: frozenset[NoBidReason] = frozenset({
    R.DEADLINE, R.MODEL_ERROR, R.FEATURES_UNAVAILABLE, R.INTERNAL_ERROR, R.OVERLOADED})

#: The ``reason`` label of the no-bid metric for each reason: the table's reasons (in rank order),
#: then the flow's. A closed set, so a request can never mint a new label value.
REASON_LABEL: dict[NoBidReason, str] = {
    reason: reason.value for reason in [*(r.reason for r in FILTERS),
                                        *sorted(FLOW_REASONS, key=lambda r: r.value)]}
REASON_LABELS: tuple[str, ...] = tuple(REASON_LABEL.values())


def rows(stage: Stage) -> tuple[Filter, ...]:
    """The rows of one stage, in order."""
    return tuple(r for r in FILTERS if r.stage == stage)


def checks(stage: Stage) -> tuple[tuple[Callable[..., bool], Filter], ...]:
    """(check, row) pairs of one stage's predicate rows: what the hot loops iterate."""
    return tuple((r.check, r) for r in rows(stage) if r.check is not None)


Checks = tuple[tuple[Callable[..., bool], Filter], ...]


def campaign_checks(c: CompiledCampaign) -> Checks:
    """The campaign-stage (check, row) pairs that can drop campaign ``c``, in table order: the
    rows its ``applies`` calls no-ops for ``c`` are left out, so the first row that drops ``c``
    is the same as with the whole stage, in fewer calls. Built once per campaign and snapshot
    (:func:`dsp.bidding.eligibility.campaign_plan`), not per request."""
    return tuple((r.check, r) for r in rows("campaign")
                 if r.check is not None and (r.applies is None or r.applies(c)))


_OUTCOME: dict[tuple[Stage, NoBidReason], Filter] = {}
for _row in reversed(FILTERS):  # the first row of a (stage, reason) wins
    _OUTCOME[(_row.stage, _row.reason)] = _row
del _row

_BY_NAME: dict[str, Filter] = {r.name: r for r in FILTERS}


def outcome(stage: Stage, reason: NoBidReason) -> Filter:
    """The row that stands for ``reason`` reported by a stage's lookup or port (e.g. what
    ``MoneyGate.admit`` returned). A reason the table does not list for that stage ranks as the
    stage's last row, so an unexpected value degrades the report, never the request."""
    row = _OUTCOME.get((stage, reason))
    if row is None:
        return msgspec.structs.replace(rows(stage)[-1], reason=reason)
    return row


def by_name(name: str) -> Filter:
    """A row by name (KeyError for an unknown name: a bug, caught by the tests)."""
    return _BY_NAME[name]


#: Rows the eligibility and pricing code report by name.
NO_CAMPAIGN = by_name("campaigns")
NO_CREATIVE = by_name("creative_fit")
DEAL = by_name("deal")
FLOOR_CURRENCY = by_name("floor_currency")
VALUE = by_name("value")
FLOOR = by_name("floor")
RESERVATION = by_name("reservation")
