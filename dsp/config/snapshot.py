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
from collections.abc import Callable
from pathlib import Path

import msgspec

from dsp.budget.spec import CampaignBudget, FrequencyCap
from dsp.config.checks import cross_check
from dsp.config.clickthrough import split_clickthroughs
from dsp.config.learned import Learned, ShadingTable
from dsp.config.loader import RawConfig, load_dir
from dsp.config.schema import CampaignFile, CurrencyFile, NativeSpec, SupplyRules, Targeting, VideoSpec
from dsp.config.traffic import load_traffic
from dsp.errors import ConfigInvalid
from dsp.exchanges.profile import ExchangeProfile
from dsp.money import MICROS_PER_UNIT, units_to_micros
from dsp.openrtb.geo import country_alpha3, normalise_domain
from dsp.privacy.policy import PrivacyPolicy
from dsp.traffic.rules import TrafficRules

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
    video: VideoSpec | None = None  # video creatives: what the per-request VAST is built from
    native: NativeSpec | None = None  # native creatives: the assets a response is built from
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
    max_scores: tuple[tuple[str, float], ...] = ()  # (score name, highest allowed) gates
    shading_mode: str = "exchange"  # first price: exchange | fixed | learned (learning.shading)
    explore_share: float = 0.0  # learning.explore_share
    funnel_learned: bool = False  # apply_rate / p_approve come from learned/funnel.yaml
    placement: Placement | None = None  # regions, metros, domain and bundle lists (None: any)
    supply: SupplyRules = SupplyRules()
    videos: tuple[CompiledCreative, ...] = ()  # every video creative, in file order
    natives: tuple[CompiledCreative, ...] = ()  # every native creative, in file order


class Placement(msgspec.Struct, frozen=True, gc=False):
    """Region, metro and placement targeting, compiled to canonical sets (None: any)."""

    regions: frozenset[str] | None = None  # "US-CA"
    exclude_regions: frozenset[str] = frozenset()
    metros: frozenset[str] | None = None
    domains: frozenset[str] | None = None  # allow list (sites); apps then need app_bundles
    exclude_domains: frozenset[str] = frozenset()
    bundles: frozenset[str] | None = None  # allow list (apps), lower case
    exclude_bundles: frozenset[str] = frozenset()

    @property
    def allow_lists(self) -> bool:
        return self.domains is not None or self.bundles is not None


def _placement(t: Targeting) -> Placement | None:
    def opt(values: list[str] | None, norm: Callable[[str], str]) -> frozenset[str] | None:
        return None if values is None else frozenset(norm(v) for v in values)

    p = Placement(
        regions=opt(t.regions, str.upper), exclude_regions=opt(t.exclude_regions, str.upper) or frozenset(),
        metros=opt(t.metros, str.strip),
        domains=opt(t.domains, normalise_domain),
        exclude_domains=opt(t.exclude_domains, normalise_domain) or frozenset(),
        bundles=opt(t.app_bundles, lambda b: b.strip().lower()),
        exclude_bundles=opt(t.exclude_app_bundles, lambda b: b.strip().lower()) or frozenset())
    return None if p == Placement() else p


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
    shading: dict[tuple[str, str, str], ShadingTable] = {}  # (exchange, format, currency) -> table
    privacy: PrivacyPolicy = PrivacyPolicy()
    traffic: TrafficRules = TrafficRules()

    def shading_table(self, c: CompiledCampaign, profile: ExchangeProfile,
                      fmt: str) -> ShadingTable | None:
        """The learned first-price table this campaign uses on this exchange and format, if it
        opted in (campaign ``learning.shading``, else the exchange's ``shading``) and one exists."""
        mode = profile.shading if c.shading_mode == "exchange" else c.shading_mode
        if mode != "learned" or not self.shading:
            return None
        return self.shading.get((profile.name, fmt, c.currency))

    def campaigns_for(self, exchange: str) -> tuple[CompiledCampaign, ...]:
        return self.by_exchange.get(exchange, ())

    def landing_url(self, campaign_id: str) -> str | None:
        """The campaign's landing page (``landing_url`` in its YAML); None if unknown or unset."""
        for c in self.campaigns:
            if c.id == campaign_id:
                return c.landing_url
        return None

    def campaign_currency(self, campaign_id: str) -> str | None:
        """The campaign's (account) currency; None if unknown."""
        for c in self.campaigns:
            if c.id == campaign_id:
                return c.currency
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
        plan_guard=c.pacing.guard, catch_up_max=c.pacing.catch_up_max,
        allowance_micros=None if c.pacing.allowance is None else units_to_micros(c.pacing.allowance),
        max_price_micros=-(-units_to_micros(c.max_cpm) // 1000),
        active_from_s=None if start is None else float(start * 86400 - offset_s),
        active_until_s=None if end is None else float((end + 1) * 86400 - offset_s))


def compile_campaign(c: CampaignFile, learned: Learned | None = None) -> CompiledCampaign:
    """Compile one campaign; ``learned`` funnel rates replace the configured ones when the
    campaign opts in (``learning.funnel``) and an estimate exists."""
    funnel = learned.funnel.get(c.id) if learned is not None and c.learning.funnel else None
    creatives = [CompiledCreative(cr.id, cr.format, MTYPE[cr.format], cr.w, cr.h,
                                  tuple(cr.adomain), tuple(cr.cat), cr.markup or "",
                                  iab_keys(cr.cat), cr.bundle, cr.video, cr.native,
                                  split_clickthroughs(cr.markup or "", cr.format))
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
        apply_rate=funnel.apply_rate if funnel else c.funnel.apply_rate,
        p_approve=funnel.p_approve if funnel else c.funnel.p_approve, margin=c.funnel.margin,
        lgd=c.funnel.lgd, ead=c.funnel.ead, cost=c.funnel.cost,
        requires_user=c.requires_user, gdpr_contextual=c.gdpr_without_consent == "contextual",
        exchanges=frozenset(t.exchanges) if t.exchanges is not None else None,
        countries=frozenset(country_alpha3(x) or x for x in t.countries) if t.countries is not None else None,
        device_types=frozenset(t.device_types) if t.device_types is not None else None,
        os=frozenset(o.lower() for o in t.os) if t.os is not None else None,
        categories=frozenset(t.categories) if t.categories is not None else None,
        exclude_categories=frozenset(t.exclude_categories or ()),
        deals=frozenset(t.deals or ()), open_auction=t.open_auction,
        start_day=_epoch_day(c.schedule.start), end_day=_epoch_day(c.schedule.end),
        hours=frozenset(c.schedule.hours) if c.schedule.hours is not None else None,
        utc_offset_minutes=c.schedule.utc_offset_minutes,
        banners=banners, by_kind=by_kind,
        videos=tuple(cr for cr in creatives if cr.kind == "video" and cr.video is not None),
        natives=tuple(cr for cr in creatives if cr.kind == "native" and cr.native is not None),
        adomains=frozenset(d for cr in creatives for d in cr.adomain),
        creative_cats=tuple(sorted({k for cr in creatives for k in cr.cat})),
        budget=_budget(c), landing_url=c.landing_url, placement=_placement(t), supply=c.supply,
        max_scores=tuple(sorted(c.max_scores.items())),
        shading_mode=c.learning.shading, explore_share=c.learning.explore_share,
        funnel_learned=funnel is not None, conversion_secret_env=c.conversion_secret_env)


def _version(raw: RawConfig) -> str:
    payload = msgspec.json.encode([raw.campaigns, raw.exchanges, raw.currencies, raw.privacy,
                                   sorted(raw.learned.funnel.items()),
                                   [t for _, t in sorted(raw.learned.shading.items())]])
    return hashlib.sha256(payload).hexdigest()[:12]


def compile_snapshot(raw: RawConfig, traffic: TrafficRules | None = None,
                     traffic_digest: str = "") -> Snapshot:
    """Cross-check and compile. Raises ConfigInvalid with every cross-file problem."""
    problems = cross_check(raw)
    if problems:
        raise ConfigInvalid(problems)
    campaigns = tuple(compile_campaign(c, raw.learned) for c in raw.campaigns if c.enabled)
    exchanges = {e.name: e for e in raw.exchanges}
    by_exchange = {name: tuple(c for c in campaigns if c.exchanges is None or name in c.exchanges)
                   for name in exchanges}
    cur: CurrencyFile = raw.currencies
    rates = Rates(cur.base, {cur.base: 1.0, **cur.rates})
    files = {**raw.campaign_files, **raw.exchange_files}
    p = raw.privacy
    privacy = PrivacyPolicy(p.gvl_vendor_id, tuple(p.consent_purposes), tuple(p.flexible_purposes),
                            tuple(p.special_features), p.honour_gpc)
    version = _version(raw)
    if traffic_digest:
        version = hashlib.sha256((version + traffic_digest).encode()).hexdigest()[:12]
    return Snapshot(version, exchanges, campaigns, by_exchange, rates,
                    tuple(c.budget for c in campaigns), files, raw.learned.shading, privacy,
                    traffic if traffic is not None else TrafficRules())


def load_snapshot(root: Path) -> Snapshot:
    """Load, validate and compile ``root``; raise ConfigInvalid listing every problem found."""
    raw, problems = load_dir(root)
    traffic, digest = load_traffic(root, problems)
    if problems:
        raise ConfigInvalid(problems + cross_check(raw))
    return compile_snapshot(raw, traffic, digest)
