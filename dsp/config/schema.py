"""The config file formats, as msgspec Structs with ``forbid_unknown_fields`` (typos are errors).

Three kinds of human-edited YAML live under ``bidder_configs/``:

* ``campaigns/*.yaml`` — one :class:`CampaignFile` each, owned by marketing;
* ``exchanges/*.yaml`` — one :class:`dsp.exchanges.profile.ExchangeProfile` each, owned by
  engineering (``alias_of`` merges a parent profile's file under the alias's keys);
* ``currencies.yaml`` — :class:`CurrencyFile`, the conversion rates;
* ``privacy.yaml`` — :class:`PrivacyFile`, our GVL vendor id and the consent we need (optional);
* ``traffic.yaml`` — :class:`TrafficFile`, invalid-traffic and supply-path data files (optional).

Money in these files is in currency units (what a marketer types: ``max_cpm: 4.50``); the snapshot
compiler (:mod:`dsp.config.snapshot`) converts every amount to integer micros once.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from dsp.exchanges.profile import ExchangeProfile

Probability = Annotated[float, Meta(ge=0.0, le=1.0)]
PositiveMoney = Annotated[float, Meta(gt=0.0)]
NonNegMoney = Annotated[float, Meta(ge=0.0)]
Hour = Annotated[int, Meta(ge=0, le=23)]
CurrencyCode = Annotated[str, Meta(pattern=r"^[A-Z]{3}$")]
Ident = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


class _Cfg(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Base for config Structs: unknown keys are errors, values are immutable."""


class Funnel(_Cfg, frozen=True, kw_only=True):
    """Funnel constants of the value formula (DESIGN.md §3), per campaign.

    ``p(apply | impression) = p_intent · apply_rate``: the intent model scores lending intent, the
    campaign says how often an intending user who sees this ad clicks and applies.
    NPV of a booked loan = ``margin · (1 − pd) − pd · lgd · ead − cost`` (currency units).
    """

    apply_rate: Probability
    p_approve: Probability
    margin: NonNegMoney
    lgd: Probability
    ead: NonNegMoney
    cost: NonNegMoney = 0.0


class Budget(_Cfg, frozen=True, kw_only=True):
    daily: PositiveMoney
    total: PositiveMoney | None = None


class Pacing(_Cfg, frozen=True, kw_only=True):
    """How the day's budget is spread (docs/money.md, "Pacing" and "Pacing guarantee")."""

    mode: Literal["even", "curve"] = "even"
    curve: list[Annotated[float, Meta(ge=0.0)]] | None = None
    # Plan guard: spend + open reservations never run ahead of the plan by more than
    # ``allowance`` (currency units; default 0.1 % of the daily budget, at least one impression
    # at max_cpm). ``guard: false`` leaves only the budget and the λ controller.
    guard: bool = True
    allowance: NonNegMoney | None = None
    # Catch-up after under-delivery: what is left is re-spread over what is left of the plan, at
    # most this multiple of the planned rate (1 = never faster than planned).
    catch_up_max: Annotated[float, Meta(ge=1.0, le=10.0)] = 1.5


class Schedule(_Cfg, frozen=True, kw_only=True):
    start: dt.date | None = None
    end: dt.date | None = None
    hours: list[Hour] | None = None  # local hours (utc_offset_minutes) when the campaign may bid
    utc_offset_minutes: Annotated[int, Meta(ge=-14 * 60, le=14 * 60)] = 0


class FrequencyCapCfg(_Cfg, frozen=True, kw_only=True):
    impressions: Annotated[int, Meta(gt=0)]
    window_hours: Annotated[int, Meta(gt=0)]


class Targeting(_Cfg, frozen=True, kw_only=True):
    """Absent lists mean "any". Categories match by IAB prefix: ``IAB13`` matches ``IAB13-2``."""

    exchanges: list[str] | None = None
    countries: list[Annotated[str, Meta(pattern=r"^[A-Za-z]{2,3}$")]] | None = None  # alpha-3 or -2
    # ISO 3166-2 subdivisions, e.g. US-CA (lending licences are per state); a request whose
    # region is unknown matches no allow list.
    regions: list[Annotated[str, Meta(pattern=r"^[A-Za-z]{2}-[A-Za-z0-9]{1,3}$")]] | None = None
    exclude_regions: list[Annotated[str, Meta(pattern=r"^[A-Za-z]{2}-[A-Za-z0-9]{1,3}$")]] | None = None
    metros: list[Annotated[str, Meta(min_length=1)]] | None = None  # Nielsen DMA codes, e.g. "807"
    # Placement lists: domains match the site domain and its subdomains; bundles the app bundle.
    domains: list[Annotated[str, Meta(min_length=3)]] | None = None
    exclude_domains: list[Annotated[str, Meta(min_length=3)]] | None = None
    app_bundles: list[Annotated[str, Meta(min_length=1)]] | None = None
    exclude_app_bundles: list[Annotated[str, Meta(min_length=1)]] | None = None
    device_types: list[Annotated[int, Meta(ge=1, le=8)]] | None = None  # AdCOM device types
    os: list[str] | None = None  # case-insensitive, e.g. [ios, android]
    categories: list[str] | None = None  # site/app/content categories to include
    exclude_categories: list[str] | None = None
    deals: list[str] | None = None  # deal ids this campaign may bid on
    open_auction: bool = True  # bid outside deals too


class SupplyRules(_Cfg, frozen=True, kw_only=True):
    """Per-campaign supply-path rules (request-level invalid-traffic checks are in traffic.yaml).

    ``max_resellers``: how many resellers may stand between the publisher's own seller and the
    exchange (``schain`` nodes after the first; an ads.txt RESELLER line counts as one); 0 means
    direct paths only."""

    require_complete_schain: bool = False
    max_resellers: Annotated[int, Meta(ge=0)] | None = None
    allow_datacenter_ip: bool = False  # opt out of the data-centre IP filter (e.g. B2B offers)


HttpsUrl = Annotated[str, Meta(pattern=r"^https?://[^\s<>\"']+$")]


class MediaFile(_Cfg, frozen=True, kw_only=True):
    """One rendition of a video creative (VAST ``<MediaFile>``)."""

    url: HttpsUrl
    type: Annotated[str, Meta(pattern=r"^[a-z]+/[a-z0-9.+-]+$")]  # MIME type, e.g. video/mp4
    w: Annotated[int, Meta(gt=0)]
    h: Annotated[int, Meta(gt=0)]
    bitrate_kbps: Annotated[int, Meta(gt=0)]
    delivery: Literal["progressive", "streaming"] = "progressive"


class VideoSpec(_Cfg, frozen=True, kw_only=True):
    """What a video creative is; the VAST 4 document is built per request from it."""

    duration_s: Annotated[int, Meta(gt=0, le=600)]
    title: Annotated[str, Meta(min_length=1)]
    media: Annotated[list[MediaFile], Meta(min_length=1)]
    placements: list[Annotated[int, Meta(ge=1, le=4)]] | None = None  # plcmt values accepted


class NativeImage(_Cfg, frozen=True, kw_only=True):
    url: HttpsUrl
    w: Annotated[int, Meta(gt=0)]
    h: Annotated[int, Meta(gt=0)]
    type: Literal[1, 3] = 3  # Native 1.2 image asset types: 1 icon, 3 main
    mime: Annotated[str, Meta(pattern=r"^image/[a-z0-9.+-]+$")] = "image/png"


class NativeSpec(_Cfg, frozen=True, kw_only=True):
    """Assets a native response is assembled from, per request (Native 1.2 asset types).

    ``data`` maps a data asset type to its text: 1 sponsored, 2 desc, 3 rating, 4 likes,
    5 downloads, 6 price, 7 saleprice, 8 phone, 9 address, 10 desc2, 11 displayurl, 12 ctatext."""

    titles: Annotated[list[Annotated[str, Meta(min_length=1)]], Meta(min_length=1)]
    images: list[NativeImage] = []
    data: dict[Annotated[int, Meta(ge=1, le=12)], Annotated[str, Meta(min_length=1)]] = {}


class Creative(_Cfg, frozen=True, kw_only=True):
    """``markup`` is the ad for banner and audio; video and native ads are built per request
    from ``video`` / ``native`` (required for those formats)."""

    id: Annotated[str, Meta(min_length=1)]
    adomain: Annotated[list[str], Meta(min_length=1)]
    cat: Annotated[list[str], Meta(min_length=1)]
    markup: Annotated[str, Meta(min_length=1)] | None = None
    format: Literal["banner", "video", "native", "audio"] = "banner"
    w: Annotated[int, Meta(gt=0)] | None = None
    h: Annotated[int, Meta(gt=0)] | None = None
    bundle: str | None = None  # advertiser app bundle/store id, matched against bapp
    video: VideoSpec | None = None
    native: NativeSpec | None = None


class Learning(_Cfg, frozen=True, kw_only=True):
    """What this campaign takes from the event log (``bidder_configs/learned/``, written by
    ``dsp models funnel`` / ``dsp models shading``). Everything is off by default.

    ``funnel``: price with the re-estimated ``apply_rate`` and ``p_approve`` (Beta-shrunk toward
    the ``funnel`` constants above) when an estimate exists. ``shading``: first-price shading
    from the learned bid landscape (``learned``), the exchange's fixed factor (``fixed``) or
    whatever the exchange profile says (``exchange``). ``explore_share``: the share of the
    requests where this campaign would not bid (intent or value too low) on which it bids at the
    floor anyway, so retraining sees outcomes the policy would otherwise never observe (each such
    bid is logged with ``explore`` and its propensity; at most 0.2)."""

    funnel: bool = False
    shading: Literal["exchange", "fixed", "learned"] = "exchange"
    explore_share: Annotated[float, Meta(ge=0.0, le=0.2)] = 0.0


class CampaignFile(_Cfg, frozen=True, kw_only=True):
    """One campaign (``bidder_configs/campaigns/<id>.yaml``)."""

    id: Ident
    name: str = ""
    currency: CurrencyCode
    max_cpm: PositiveMoney
    pd_max: Probability
    intent_min: Probability
    max_scores: dict[str, Probability] = {}  # gate scores of the scoring plan: no bid above
    funnel: Funnel
    budget: Budget
    creatives: Annotated[list[Creative], Meta(min_length=1)]
    pacing: Pacing = Pacing()
    schedule: Schedule = Schedule()
    frequency_cap: FrequencyCapCfg | None = None
    targeting: Targeting = Targeting()
    requires_user: bool = True  # False: contextual, may bid on unknown users with population scores
    gdpr_without_consent: Literal["contextual", "nobid"] = "nobid"
    enabled: bool = True
    landing_url: str | None = None  # where /notice/click redirects (http/https); no clicks without it
    #: the environment variable holding the lender's conversion-signing secret (never the value);
    #: unset: POST /conversion is refused (401) for this campaign's clicks
    conversion_secret_env: Annotated[str, Meta(pattern=r"^[A-Z_][A-Z0-9_]{0,127}$")] | None = None
    supply: SupplyRules = SupplyRules()
    learning: Learning = Learning()


#: One exchange profile file; the schema is owned by the exchanges package.
ExchangeFile = ExchangeProfile


class CurrencyFile(_Cfg, frozen=True, kw_only=True):
    """``rates[X]`` is the value of one unit of X in ``base`` (so ``rates[base] == 1``)."""

    base: CurrencyCode = "USD"
    rates: dict[CurrencyCode, PositiveMoney] = {}


Purpose = Annotated[int, Meta(ge=1, le=24)]


class PrivacyFile(_Cfg, frozen=True, kw_only=True):
    """What user-level data needs (``bidder_configs/privacy.yaml``); see :mod:`dsp.privacy.policy`.

    ``gvl_vendor_id`` is OUR id in the IAB Global Vendor List; without one, user data of EU
    users is never used (GDPR traffic is contextual or no bid, per campaign)."""

    gvl_vendor_id: Annotated[int, Meta(ge=1, le=65535)] | None = None
    consent_purposes: tuple[Purpose, ...] = (1, 3, 4)
    flexible_purposes: tuple[Purpose, ...] = (7,)  # consent or legitimate interest (measurement)
    special_features: tuple[Annotated[int, Meta(ge=1, le=12)], ...] = ()
    honour_gpc: bool = True


class TrafficFile(_Cfg, frozen=True, kw_only=True):
    """Invalid-traffic and supply-path data (``bidder_configs/traffic.yaml``); paths are relative
    to the config directory. See :mod:`dsp.config.traffic`."""

    bot_user_agents: str | None = None  # one regex per line (crawler-user-agents patterns)
    extra_bot_patterns: tuple[str, ...] = ()
    datacenter_ranges: str | None = None  # start,end[,name] or CIDR[,name] per line
    block_non_public_ip: bool = True  # RFC 1918, loopback, link-local, multicast...
    sellers_dir: str | None = None  # <ad system domain>.json sellers.json files
    ads_txt_dir: str | None = None  # <publisher domain>.txt
    app_ads_txt_dir: str | None = None  # <developer domain>.txt
    ads_txt: Literal["off", "when_present", "required"] = "when_present"
    stacking_threshold_30d: Annotated[float, Meta(ge=0)] | None = None
    stacking_threshold_90d: Annotated[float, Meta(ge=0)] | None = None
