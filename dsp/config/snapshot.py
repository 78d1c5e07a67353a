"""Compile validated config files into one immutable :class:`Snapshot` (what the bid path reads).

    snapshot = load_snapshot(Path("bidder_configs"))   # raises ConfigInvalid listing every problem

Compilation does the work once that the hot path must not repeat: money to integer micros,
targeting lists to frozensets, creatives indexed by format and size, campaigns indexed by exchange,
per-campaign :class:`dsp.budget.spec.CampaignBudget` for the money runtime. A snapshot is never
mutated; a reload builds a new one and swaps the reference (see :mod:`dsp.config.reloader`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import msgspec

from dsp.budget.spec import CampaignBudget, FrequencyCap
from dsp.config.checks import cross_check
from dsp.config.clickthrough import split_clickthroughs
from dsp.config.loader import RawConfig, load_dir
from dsp.config.schema import CampaignFile, CurrencyFile, ExchangeFile
from dsp.errors import ConfigInvalid
from dsp.money import MICROS_PER_UNIT, units_to_micros

ExchangeProfile = ExchangeFile  # the exchange profile as the bid path uses it (already immutable)

MTYPE = {"banner": 1, "video": 2, "audio": 3, "native": 4}


class CompiledCreative(msgspec.Struct, frozen=True, gc=False):
    id: str
    kind: str  # banner | video | audio | native
    mtype: int
    w: int | None
    h: int | None
    adomain: tuple[str, ...]
    cat: tuple[str, ...]
    markup: str
    cat_keys: frozenset[str]  # cat plus IAB tier-1 parents, for bcat matching
    bundle: str | None = None  # the advertiser's app bundle, matched against bapp
    #: ``markup`` cut at its click-through URLs (dsp.config.clickthrough); the response joins
    #: the parts with the bid's /notice/click URL. One part: no click-through.
    markup_parts: tuple[str, ...] = ()


class CompiledCampaign(msgspec.Struct, frozen=True, gc=False):
    """One campaign ready for eligibility and pricing. ``None`` targeting means "any"."""

    id: str
    name: str
    currency: str
    max_cpm_micros: int
    pd_max: float
    intent_min: float
    apply_rate: float
    p_approve: float
    margin: float
    lgd: float
    ead: float
    cost: float
    requires_user: bool
    gdpr_contextual: bool
    exchanges: frozenset[str] | None
    countries: frozenset[str] | None
    device_types: frozenset[int] | None
    os: frozenset[str] | None
    categories: frozenset[str] | None  # IAB codes; a tier-1 code also matches its children
    exclude_categories: frozenset[str]
    deals: frozenset[str]
    open_auction: bool
    start_day: int | None  # first day (days since 1970-01-01, campaign local time), inclusive
    end_day: int | None  # last day, inclusive
    hours: frozenset[int] | None
    utc_offset_minutes: int
    banners: dict[tuple[int, int], CompiledCreative]
    by_kind: dict[str, CompiledCreative]  # first creative of each non-banner kind
    adomains: frozenset[str]
    creative_cats: tuple[str, ...]
    budget: CampaignBudget
    landing_url: str | None = None  # /notice/click redirects here
    conversion_secret_env: str | None = None  # names the lender's conversion-signing secret


class Rates(msgspec.Struct, frozen=True):
    """Currency conversion. ``rates[X]`` = value of one X in ``base``."""

    base: str
    rates: dict[str, float]

    def convert_micros(self, amount_micros: int, from_cur: str, to_cur: str) -> int | None:
        """Convert integer micros between currencies (half away from zero); None if unknown."""
        if from_cur == to_cur:
            return amount_micros
        src = self.rates.get(from_cur)
        dst = self.rates.get(to_cur)
        if src is None or dst is None:
            return None
        return units_to_micros(amount_micros * src / dst / MICROS_PER_UNIT)


class Snapshot(msgspec.Struct, frozen=True):
    """The whole active configuration. ``version`` is a content hash (same files, same version)."""

    version: str
    exchanges: dict[str, ExchangeProfile]
    campaigns: tuple[CompiledCampaign, ...]
    by_exchange: dict[str, tuple[CompiledCampaign, ...]]
    rates: Rates
    budgets: tuple[CampaignBudget, ...]
    files: dict[str, str]  # campaign id / exchange name -> file

    def campaigns_for(self, exchange: str) -> tuple[CompiledCampaign, ...]:
        return self.by_exchange.get(exchange, ())

    def landing_url(self, campaign_id: str) -> str | None:
        """The campaign's landing page (``landing_url`` in its YAML); None if unknown or unset."""
        for c in self.campaigns:
            if c.id == campaign_id:
                return c.landing_url
        return None

    def bills_on(self, exchange: str) -> str | None:
        """Which notice commits spend on ``exchange``: "burl" when the exchange sends billing
        notices, else "nurl" (it bills on win); None for an exchange we no longer know."""
        profile = self.exchanges.get(exchange)
        if profile is None:
            return None
        return "burl" if "burl" in profile.notices else "nurl"


_EPOCH = dt.date(1970, 1, 1)


def _epoch_day(day: dt.date | None) -> int | None:
    return None if day is None else (day - _EPOCH).days


def iab_keys(cats: list[str] | tuple[str, ...]) -> frozenset[str]:
    """Each category and its IAB tier-1 parent: ``IAB13-2`` -> {``IAB13-2``, ``IAB13``}, so a
    block or target entry ``IAB13`` matches ``IAB13-2`` with one set intersection."""
    keys = set(cats)
    for cat in cats:
        dash = cat.find("-")
        if dash > 0:
            keys.add(cat[:dash])
    return frozenset(keys)


def _budget(c: CampaignFile) -> CampaignBudget:
    """The money side's view. Hours outside ``schedule.hours`` get pacing weight 0 (no spend)."""
    curve = tuple(c.pacing.curve) if c.pacing.mode == "curve" and c.pacing.curve else (1.0,) * 24
    if c.schedule.hours is not None:
        allowed = set(c.schedule.hours)
        curve = tuple(w if h in allowed else 0.0 for h, w in enumerate(curve))
    offset_s = c.schedule.utc_offset_minutes * 60
    start = _epoch_day(c.schedule.start)
    end = _epoch_day(c.schedule.end)
    cap = None
    if c.frequency_cap is not None:
        cap = FrequencyCap(max_impressions=c.frequency_cap.impressions,
                           window_s=c.frequency_cap.window_hours * 3600)
    return CampaignBudget(
        campaign_id=c.id,
        daily_budget_micros=units_to_micros(c.budget.daily),
        total_budget_micros=units_to_micros(c.budget.total) if c.budget.total is not None else None,
        pacing_curve=curve, utc_offset_minutes=c.schedule.utc_offset_minutes, frequency_cap=cap,
        active_from_s=None if start is None else float(start * 86400 - offset_s),
        active_until_s=None if end is None else float((end + 1) * 86400 - offset_s))


def compile_campaign(c: CampaignFile) -> CompiledCampaign:
    creatives = [CompiledCreative(cr.id, cr.format, MTYPE[cr.format], cr.w, cr.h,
                                  tuple(cr.adomain), tuple(cr.cat), cr.markup,
                                  iab_keys(cr.cat), cr.bundle,
                                  split_clickthroughs(cr.markup, cr.format))
                 for cr in c.creatives]
    banners = {(cr.w, cr.h): cr for cr in creatives
               if cr.kind == "banner" and cr.w is not None and cr.h is not None}
    by_kind: dict[str, CompiledCreative] = {}
    for cr in creatives:
        if cr.kind != "banner":
            by_kind.setdefault(cr.kind, cr)
    t = c.targeting
    return CompiledCampaign(
        id=c.id, name=c.name or c.id, currency=c.currency,
        max_cpm_micros=units_to_micros(c.max_cpm), pd_max=c.pd_max, intent_min=c.intent_min,
        apply_rate=c.funnel.apply_rate, p_approve=c.funnel.p_approve, margin=c.funnel.margin,
        lgd=c.funnel.lgd, ead=c.funnel.ead, cost=c.funnel.cost,
        requires_user=c.requires_user, gdpr_contextual=c.gdpr_without_consent == "contextual",
        exchanges=frozenset(t.exchanges) if t.exchanges is not None else None,
        countries=frozenset(t.countries) if t.countries is not None else None,
        device_types=frozenset(t.device_types) if t.device_types is not None else None,
        os=frozenset(o.lower() for o in t.os) if t.os is not None else None,
        categories=frozenset(t.categories) if t.categories is not None else None,
        exclude_categories=frozenset(t.exclude_categories or ()),
        deals=frozenset(t.deals or ()), open_auction=t.open_auction,
        start_day=_epoch_day(c.schedule.start), end_day=_epoch_day(c.schedule.end),
        hours=frozenset(c.schedule.hours) if c.schedule.hours is not None else None,
        utc_offset_minutes=c.schedule.utc_offset_minutes,
        banners=banners, by_kind=by_kind,
        adomains=frozenset(d for cr in creatives for d in cr.adomain),
        creative_cats=tuple(sorted({k for cr in creatives for k in cr.cat})),
        budget=_budget(c), landing_url=c.landing_url,
        conversion_secret_env=c.conversion_secret_env)


def _version(raw: RawConfig) -> str:
    payload = msgspec.json.encode([raw.campaigns, raw.exchanges, raw.currencies])
    return hashlib.sha256(payload).hexdigest()[:12]


def compile_snapshot(raw: RawConfig) -> Snapshot:
    """Cross-check and compile. Raises ConfigInvalid with every cross-file problem."""
    problems = cross_check(raw)
    if problems:
        raise ConfigInvalid(problems)
    campaigns = tuple(compile_campaign(c) for c in raw.campaigns if c.enabled)
    exchanges = {e.name: e for e in raw.exchanges}
    by_exchange = {name: tuple(c for c in campaigns if c.exchanges is None or name in c.exchanges)
                   for name in exchanges}
    cur: CurrencyFile = raw.currencies
    rates = Rates(cur.base, {cur.base: 1.0, **cur.rates})
    files = {**raw.campaign_files, **raw.exchange_files}
    return Snapshot(_version(raw), exchanges, campaigns, by_exchange, rates,
                    tuple(c.budget for c in campaigns), files)


def load_snapshot(root: Path) -> Snapshot:
    """Load, validate and compile ``root``; raise ConfigInvalid listing every problem found."""
    raw, problems = load_dir(root)
    if raw is None:
        raise ConfigInvalid(problems)
    return compile_snapshot(raw)
