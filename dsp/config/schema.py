"""The config file formats, as msgspec Structs with ``forbid_unknown_fields`` (typos are errors).

Three kinds of human-edited YAML live under ``bidder_configs/``:

* ``campaigns/*.yaml`` — one :class:`CampaignFile` each, owned by marketing;
* ``exchanges/*.yaml`` — one :class:`ExchangeFile` each, owned by engineering;
* ``currencies.yaml`` — :class:`CurrencyFile`, the conversion rates.

Money in these files is in currency units (what a marketer types: ``max_cpm: 4.50``); the snapshot
compiler (:mod:`dsp.config.snapshot`) converts every amount to integer micros once.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from dsp.exchanges.auth import ExchangeAuth

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
    mode: Literal["even", "curve"] = "even"
    curve: list[Annotated[float, Meta(ge=0.0)]] | None = None


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
    countries: list[Annotated[str, Meta(pattern=r"^[A-Z]{3}$")]] | None = None  # ISO-3166-1 alpha-3
    device_types: list[Annotated[int, Meta(ge=1, le=8)]] | None = None  # AdCOM device types
    os: list[str] | None = None  # case-insensitive, e.g. [ios, android]
    categories: list[str] | None = None  # site/app/content categories to include
    exclude_categories: list[str] | None = None
    deals: list[str] | None = None  # deal ids this campaign may bid on
    open_auction: bool = True  # bid outside deals too


class Creative(_Cfg, frozen=True, kw_only=True):
    id: Annotated[str, Meta(min_length=1)]
    adomain: Annotated[list[str], Meta(min_length=1)]
    cat: Annotated[list[str], Meta(min_length=1)]
    markup: Annotated[str, Meta(min_length=1)]
    format: Literal["banner", "video", "native", "audio"] = "banner"
    w: Annotated[int, Meta(gt=0)] | None = None
    h: Annotated[int, Meta(gt=0)] | None = None
    bundle: str | None = None  # advertiser app bundle/store id, matched against bapp


class CampaignFile(_Cfg, frozen=True, kw_only=True):
    """One campaign (``bidder_configs/campaigns/<id>.yaml``)."""

    id: Ident
    name: str = ""
    currency: CurrencyCode
    max_cpm: PositiveMoney
    pd_max: Probability
    intent_min: Probability
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


class ExchangeFile(_Cfg, frozen=True, kw_only=True):
    """One exchange profile (``bidder_configs/exchanges/<name>.yaml``): data, not code."""

    name: Ident
    openrtb_version: Literal["2.5", "2.6"] = "2.6"
    currency: CurrencyCode = "USD"
    auction_type: Literal[1, 2] = 2  # used when the request has no ``at``
    tmax_default_ms: Annotated[int, Meta(gt=0)] = 120
    round_trip_allowance_ms: Annotated[int, Meta(ge=0)] = 20
    safety_margin_ms: Annotated[int, Meta(ge=0)] = 5
    seat: str | None = None
    lax_numbers: bool = False
    nobid_body: bool = False  # True: answer 200 + {"id", "nbr"} instead of 204
    first_price_shading: Annotated[float, Meta(gt=0.0, le=1.0)] = 0.85
    notices: tuple[Literal["nurl", "burl", "lurl"], ...] = ("nurl", "burl", "lurl")
    notice_ttl_s: Annotated[int, Meta(gt=0)] = 3600
    #: who may send bid requests (dsp.exchanges.auth); absent: open (demo profiles)
    auth: ExchangeAuth | None = None


class CurrencyFile(_Cfg, frozen=True, kw_only=True):
    """``rates[X]`` is the value of one unit of X in ``base`` (so ``rates[base] == 1``)."""

    base: CurrencyCode = "USD"
    rates: dict[CurrencyCode, PositiveMoney] = {}
