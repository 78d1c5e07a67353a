"""The exchange profile: one exchange's dialect as data (``bidder_configs/exchanges/<name>.yaml``).

    name: bidswitch-eu          # the route: POST /bid/bidswitch-eu
    alias_of: bidswitch         # optional: start from that profile, override the keys given here
    currency: EUR

A profile is engineering-owned data read by the config loader (unknown keys are errors) and
handed to the bid path as is (immutable). ``alias_of`` works like Prebid Server's bidder aliases:
the alias file is merged over its parent's file key by key (the parent must be a plain profile,
not an alias), and the alias uses its parent's hooks (:mod:`dsp.exchanges.hooks`). ``openrtb_version``
shapes the response (2.5 answers carry no 2.6-only fields such as ``mtype``) and is the
``x-openrtb-version`` header of every answer when the request had none.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from dsp.exchanges.auth import ExchangeAuth
from dsp.exchanges.auth import config_problems as auth_problems
from dsp.openrtb.request import TMAX_LIMIT_MS

__all__ = ["ExchangeAuth", "ExchangeProfile", "auth_problems"]

# Same patterns as the campaign files (dsp.config.schema); kept here so this module stays a leaf.
Ident = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
CurrencyCode = Annotated[str, Meta(pattern=r"^[A-Z]{3}$")]
OpenRtbVersion = Literal["2.5", "2.6"]


class ExchangeProfile(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One exchange profile: data, not code. Times in ms; shading is a factor in (0, 1]."""

    name: Ident
    alias_of: Ident | None = None
    openrtb_version: OpenRtbVersion = "2.6"
    currency: CurrencyCode = "USD"
    auction_type: Literal[1, 2] = 2  # used when the request has no ``at``
    tmax_default_ms: Annotated[int, Meta(gt=0)] = 120
    # The longest deadline this exchange's requests get, whatever their ``tmax`` says (a request's
    # tmax above it is clamped; above dsp.openrtb.request.TMAX_LIMIT_MS it is a 400).
    tmax_max_ms: Annotated[int, Meta(gt=0, le=TMAX_LIMIT_MS)] = 1_000
    round_trip_allowance_ms: Annotated[int, Meta(ge=0)] = 20
    safety_margin_ms: Annotated[int, Meta(ge=0)] = 5
    seat: str | None = None
    lax_numbers: bool = False
    nobid_body: bool = False  # True: answer 200 + {"id", "nbr"} instead of 204
    first_price_shading: Annotated[float, Meta(gt=0.0, le=1.0)] = 0.85
    # "learned": first-price bids from the learned landscape (bidder_configs/learned/shading.json)
    # where one exists for (exchange, format, currency); the fixed factor above otherwise.
    shading: Literal["fixed", "learned"] = "fixed"
    notices: tuple[Literal["nurl", "burl", "lurl"], ...] = ("nurl", "burl", "lurl")
    notice_ttl_s: Annotated[int, Meta(gt=0)] = 3600
    # The exchange's own domain as publishers list it in ads.txt and as schain ``asi``; its
    # sellers.json is bidder_configs/sellers/<ad_system_domain>.json when shipped.
    ad_system_domain: Annotated[str, Meta(pattern=r"^[a-z0-9.-]+\.[a-z]{2,}$")] | None = None
    always_sends_ip: bool = False  # a request without device.ip/ipv6 is then invalid traffic
    native_wrapper: bool = False  # True: native adm as {"native": {...}} (Native 1.0/1.1 envelope)
    send_cid: bool = True  # False: no bid.cid (an exchange that reads cid as its own billing id)
    # Bid fields the exchange's guide requires; checked at load against what we always send.
    required_bid_fields: tuple[Literal["adomain", "crid", "cid", "cat", "w", "h", "mtype", "adm",
                                       "nurl", "burl", "lurl", "seat"], ...] = ()
    ads_txt: Literal["off", "when_present", "required"] | None = None  # overrides traffic.yaml
    #: who may send bid requests (dsp.exchanges.auth); absent: open (the demo profiles)
    auth: ExchangeAuth | None = None

    @property
    def hook_name(self) -> str:
        """The key of this profile's hooks in :data:`dsp.exchanges.hooks.HOOKS`: an alias uses
        its parent's."""
        return self.alias_of or self.name
