"""JSON Schemas for the config files, generated from the Structs of :mod:`dsp.config.schema`.

    schemas = build_schemas()            # {"campaign": {...}, "exchange": {...}, "currency": {...}}
    write_schemas(Path("bidder_configs/schema"))

msgspec derives types, bounds, patterns, enums, defaults and required keys from the Structs; this
module adds what an editor shows while a marketer types: a description of every field with its
unit, and an example (``FIELD_DOCS``, one entry per Struct field — a field without one is an
error, so the schema cannot silently fall behind the Structs). ``additionalProperties: false``
mirrors ``forbid_unknown_fields``. Every shipped YAML points at its schema with a first line
``# yaml-language-server: $schema=../schema/campaign.json`` (relative to the file itself).

Dates: ``yaml.safe_load`` hands the loader a ``datetime.date`` for an unquoted ``2026-01-01`` and a
string for a quoted one; the loader accepts both. Editors that speak YAML 1.2 see both as strings,
which the schema's ``format: date`` string accepts; the shipped files quote their dates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from dsp.config.schema import (
    CampaignFile,
    CurrencyFile,
    ExchangeFile,
)

KINDS: dict[str, type[msgspec.Struct]] = {
    "campaign": CampaignFile, "exchange": ExchangeFile, "currency": CurrencyFile}


def _reachable(kinds: dict[str, type[msgspec.Struct]]) -> tuple[type[msgspec.Struct], ...]:
    """Every Struct a config kind contains (directly or nested), in discovery order."""
    seen: dict[str, type[msgspec.Struct]] = {}

    def walk(t: msgspec.inspect.Type) -> None:
        if isinstance(t, msgspec.inspect.StructType):
            if t.cls.__name__ in seen:
                return
            seen[t.cls.__name__] = t.cls
            for f in t.fields:
                walk(f.type)
        for attr in ("item_type", "key_type", "value_type"):
            sub = getattr(t, attr, None)
            if sub is not None:
                walk(sub)
        for sub in getattr(t, "types", ()):
            walk(sub)
        if isinstance(t, msgspec.inspect.Metadata):
            walk(t.type)

    for kind in kinds.values():
        walk(msgspec.inspect.type_info(kind))
    return tuple(seen.values())


STRUCTS: tuple[type[msgspec.Struct], ...] = _reachable(KINDS)
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_CUR = "currency units of the campaign's `currency` (e.g. 4.50 = $4.50), not micros"

# "Struct.field": (description with unit, example). The example is a value as typed in YAML.
FIELD_DOCS: dict[str, tuple[str, Any]] = {
    "CampaignFile.id": ("Campaign id: lower-case letters, digits, `_ . -`; also the file name by "
                        "convention. Used in metrics, budgets and reports.", "quickloan-prime"),
    "CampaignFile.name": ("Display name (free text).", "QuickLoan — prime personal loans"),
    "CampaignFile.currency": ("ISO-4217 currency of every amount in this file; needs a rate in "
                              "currencies.yaml.", "USD"),
    "CampaignFile.max_cpm": (f"Highest bid, CPM (price of 1,000 impressions) in {_CUR}.", 6.0),
    "CampaignFile.pd_max": ("Skip users whose probability of default is above this (0-1). The "
                            "fair-lending gate checks its effect per sex and age band.", 0.30),
    "CampaignFile.intent_min": ("Skip users whose lending intent (probability that one impression "
                                "leads to an application) is below this (0-1).", 0.01),
    "Targeting.regions": ("ISO-3166-2 regions to include (e.g. US-CA); omit for all.", ["US-CA"]),
    "Targeting.exclude_regions": ("ISO-3166-2 regions never to bid in.", ["US-NY"]),
    "Targeting.metros": ("Nielsen DMA codes to include; omit for all.", ["807"]),
    "Targeting.domains": ("Site domains to include (subdomains match too); omit for all.",
                          ["news.example"]),
    "Targeting.exclude_domains": ("Site domains never to bid on (subdomains too).",
                                  ["casino.example"]),
    "Targeting.app_bundles": ("App bundles to include; omit for all.", ["com.example.news"]),
    "Targeting.exclude_app_bundles": ("App bundles never to bid on.", ["com.example.game"]),
    "CampaignFile.supply": ("Supply-path rules: schain completeness, resellers allowed, "
                            "data-centre IPs.", None),
    "SupplyRules.require_complete_schain": ("Bid only when the request's supply chain is "
                                            "complete.", False),
    "SupplyRules.max_resellers": ("Resellers allowed between the publisher's seller and the "
                                  "exchange (count); 0 = direct paths only; omit for any.", 1),
    "SupplyRules.allow_datacenter_ip": ("Also bid on requests from data-centre IPs (e.g. B2B "
                                        "offers); default: those are invalid traffic.", False),
    "Creative.video": ("A video creative: the VAST document is built per request from this.",
                       None),
    "Creative.native": ("A native creative: the assets a native response is assembled from.",
                        None),
    "VideoSpec.duration_s": ("Length of the video, in seconds (1-600).", 15),
    "VideoSpec.title": ("Ad title in the VAST document.", "QuickLoan"),
    "VideoSpec.media": ("Renditions of the video (at least one).", None),
    "VideoSpec.placements": ("OpenRTB plcmt values the video may serve in (1 instream, "
                             "2 accompanying, 3 interstitial, 4 no-content); omit for all.", [1]),
    "MediaFile.url": ("Absolute http(s) URL of the video file.", "https://cdn.example/15s.mp4"),
    "MediaFile.type": ("MIME type.", "video/mp4"),
    "MediaFile.w": ("Width, in pixels.", 640),
    "MediaFile.h": ("Height, in pixels.", 360),
    "MediaFile.bitrate_kbps": ("Bitrate, in kbit/s.", 800),
    "MediaFile.delivery": ("VAST delivery: progressive download or streaming.", "progressive"),
    "NativeSpec.titles": ("Title texts (at least one); the one that fits the request is used.",
                          ["Starter credit in minutes"]),
    "NativeSpec.images": ("Images (icon or main) with their sizes.", None),
    "NativeSpec.data": ("Data assets by Native 1.2 type (1 sponsored, 2 desc, 6 price, "
                        "12 ctatext, ...) -> text.", {1: "CashBridge", 12: "Apply now"}),
    "NativeImage.url": ("Absolute http(s) URL of the image.", "https://cdn.example/icon.png"),
    "NativeImage.w": ("Width, in pixels.", 80),
    "NativeImage.h": ("Height, in pixels.", 80),
    "NativeImage.type": ("Native 1.2 image type: 1 icon, 3 main.", 3),
    "NativeImage.mime": ("MIME type.", "image/png"),
    "ExchangeProfile.ad_system_domain": ("The exchange's ad-system domain (its sellers.json is "
                                         "sellers/<domain>.json when shipped).", "smaato.com"),
    "ExchangeProfile.always_sends_ip": ("The exchange always sends device.ip: a request without "
                                        "one is invalid traffic.", False),
    "ExchangeProfile.native_wrapper": ("Native markup wrapped as {\"native\": {...}} (Native "
                                       "1.0/1.1 envelope).", False),
    "ExchangeProfile.send_cid": ("Send bid.cid (false for an exchange that reads cid as its own "
                                 "billing id).", True),
    "ExchangeProfile.required_bid_fields": ("Bid fields the exchange's guide requires; checked at "
                                            "load against what we always send.", ["adomain", "crid"]),
    "ExchangeProfile.ads_txt": ("ads.txt enforcement for this exchange (overrides traffic.yaml): "
                                "off, when_present, required.", "when_present"),
    "CampaignFile.conversion_secret_env": ("Name of the environment variable holding the "
                                           "lender's conversion-signing secret (never the value); "
                                           "unset: POST /conversion is refused for this campaign.",
                                           "QUICKLOAN_CONVERSION_SECRET"),
    "ExchangeProfile.auth": ("Who may send bid requests to this route (see dsp.exchanges.auth); "
                             "absent: open, as in the demo profiles.", None),
    "ExchangeProfile.tmax_max_ms": ("Longest tmax honoured from a request, in milliseconds "
                                    "(larger values are clamped to it).", 1000),
    "ExchangeAuth.secret": ("A shared secret the exchange sends in a header.", None),
    "ExchangeAuth.basic": ("HTTP basic auth the exchange sends.", None),
    "ExchangeAuth.allow_cidrs": ("Source networks (CIDR) bid requests may come from; omit for any.",
                                 ["203.0.113.0/24"]),
    "ExchangeAuth.trusted_proxies": ("Proxies (CIDR) whose forwarded-for header is believed.",
                                     ["10.0.0.0/8"]),
    "ExchangeAuth.forwarded_header": ("Header carrying the client address behind a trusted proxy.",
                                      "X-Forwarded-For"),
    "SharedSecret.header": ("Header name that carries the secret.", "X-Exchange-Token"),
    "SharedSecret.env": ("Environment variable holding the secret (never the secret itself).",
                         "DSP_EXCHANGE_SECRET"),
    "BasicAuth.user": ("User name the exchange sends.", "exchange"),
    "BasicAuth.password_env": ("Environment variable holding the password.",
                               "DSP_EXCHANGE_PASSWORD"),
    "CampaignFile.max_scores": ("Gate scores of the scoring plan (models/plan.json): no bid when "
                                "the named score is above the limit (0-1).", {"fraud": 0.5}),
    "CampaignFile.learning": ("What the campaign takes from the event log (learned funnel rates, "
                              "learned shading, exploration); all off by default.", None),
    "Learning.funnel": ("Price with the funnel rates re-estimated from the log (shrunk toward the "
                        "funnel constants) when an estimate exists.", False),
    "Learning.shading": ("First-price shading: `learned` (bid landscape), `fixed` (the exchange's "
                         "factor) or `exchange` (whatever the profile says).", "exchange"),
    "Learning.explore_share": ("Share (0-0.2) of requests where the campaign would not bid on "
                               "which it bids at the floor anyway, for unbiased retraining.", 0.01),
    "CampaignFile.funnel": ("Funnel constants of the value formula: value of an impression = "
                            "p_intent · apply_rate · p_approve · NPV.", None),
    "CampaignFile.budget": ("Daily (and optional lifetime) budget.", None),
    "CampaignFile.creatives": ("Ads this campaign may serve (at least one).", None),
    "CampaignFile.pacing": ("How the daily budget is spread over the day.", None),
    "CampaignFile.schedule": ("Dates and hours when the campaign may bid.", None),
    "CampaignFile.frequency_cap": ("At most N impressions per user per window; omit for no cap.",
                                   None),
    "CampaignFile.targeting": ("Where the campaign may bid; an absent list means any.", None),
    "CampaignFile.requires_user": ("true: bid only on users with features in the store; false: "
                                   "also on unknown users, scored with population averages.", True),
    "CampaignFile.gdpr_without_consent": ("Under GDPR without consent: `nobid`, or `contextual` "
                                          "(bid without user data).", "nobid"),
    "CampaignFile.enabled": ("false: the campaign is loaded and validated but never bids.", True),
    "CampaignFile.landing_url": ("Absolute http(s) URL the click notice redirects to; without it "
                                 "no clicks are tracked.", "https://quickloan.example/apply?src=dsp"),
    "Funnel.apply_rate": ("Share (0-1) of intending users who see the ad and then click and "
                          "apply.", 0.002),
    "Funnel.p_approve": ("Share (0-1) of applications that are approved.", 0.55),
    "Funnel.margin": (f"Lifetime margin of a repaid loan, in {_CUR}.", 900.0),
    "Funnel.lgd": ("Loss given default: share (0-1) of the exposure lost when a loan "
                   "defaults.", 0.65),
    "Funnel.ead": (f"Exposure at default, in {_CUR}.", 3000.0),
    "Funnel.cost": (f"Acquisition and servicing cost per booked loan, in {_CUR}.", 120.0),
    "Budget.daily": (f"Daily budget, in {_CUR}; spend never exceeds it by more than the stated "
                     "lease bound.", 500.0),
    "Budget.total": (f"Lifetime budget, in {_CUR}; at least the daily budget. Omit for none.",
                     30000.0),
    "Pacing.mode": ("`even`: the same spend every hour; `curve`: spend follows `curve`.", "even"),
    "Pacing.curve": ("24 relative hourly weights (local hours 0-23) when mode is `curve`; they "
                     "are normalised, so only ratios matter.", [1.0] * 24),
    "Pacing.guard": ("Plan guard: spend plus open bids never run ahead of the plan by more than "
                     "`allowance`; false leaves only the budget and the λ controller.", True),
    "Pacing.allowance": (f"How far spend may run ahead of the plan, in {_CUR}; default 0.1% of "
                         "the daily budget (at least one impression at max_cpm).", 0.5),
    "Pacing.catch_up_max": ("After under-delivery, what is left is re-spread over the rest of "
                            "the day at most this multiple of the planned rate (1-10).", 1.5),
    "Schedule.start": ("First day (YYYY-MM-DD, inclusive; quote it).", "2026-01-01"),
    "Schedule.end": ("Last day (YYYY-MM-DD, inclusive; quote it).", "2027-12-31"),
    "Schedule.hours": ("Local hours (0-23, see utc_offset_minutes) when the campaign may bid; "
                       "omit for all hours.", [8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]),
    "Schedule.utc_offset_minutes": ("Offset of the campaign's local time from UTC, in minutes "
                                    "(-840 to 840).", 60),
    "FrequencyCapCfg.impressions": ("Impressions per user per window (count).", 6),
    "FrequencyCapCfg.window_hours": ("Window length, in hours.", 24),
    "Targeting.exchanges": ("Exchange profile names (files in exchanges/); omit for all.",
                            ["generic", "smaato"]),
    "Targeting.countries": ("ISO-3166-1 alpha-3 country codes; omit for all.", ["USA", "CAN"]),
    "Targeting.device_types": ("AdCOM device types (1 mobile/tablet, 2 PC, 3 TV, 4 phone, "
                               "5 tablet, 6 connected device, 7 set-top box, 8 OOH); omit for all.",
                               [1, 4, 5]),
    "Targeting.os": ("Operating systems, case-insensitive; omit for all.", ["ios", "android"]),
    "Targeting.categories": ("IAB content categories to include (prefix match: IAB13 matches "
                             "IAB13-2); omit for all.", ["IAB13"]),
    "Targeting.exclude_categories": ("IAB content categories never to bid on (prefix match).",
                                     ["IAB25", "IAB26"]),
    "Targeting.deals": ("Private-marketplace deal ids this campaign may bid on.",
                        ["ql-finance-pmp-001"]),
    "Targeting.open_auction": ("Also bid outside deals; false needs `deals`.", True),
    "Creative.id": ("Creative id, unique within the campaign.", "ql-300x250"),
    "Creative.adomain": ("Advertiser domains (checked against the request's badv).",
                         ["quickloan.example"]),
    "Creative.cat": ("IAB categories of the ad (checked against the request's bcat).",
                     ["IAB13-2"]),
    "Creative.markup": ("Ad markup as served: HTML for banners, VAST XML for video, native JSON.",
                        '<a href="https://quickloan.example/apply"><img src="..." '
                        'width="300" height="250"></a>'),
    "Creative.format": ("Ad format; a banner needs w and h.", "banner"),
    "Creative.w": ("Width, in pixels (banners).", 300),
    "Creative.h": ("Height, in pixels (banners).", 250),
    "Creative.bundle": ("Advertiser app bundle or store id (checked against the request's bapp).",
                        "com.quickloan.app"),
    "ExchangeProfile.name": ("Route name: bids arrive at POST /bid/<name>.", "generic"),
    "ExchangeProfile.alias_of": ("Start from this profile and override only the keys given here "
                                 "(one level: an alias of an alias is an error).", "bidswitch"),
    "ExchangeProfile.shading": ("First-price bids: `fixed` (first_price_shading) or `learned` "
                                "(the learned bid landscape in bidder_configs/learned/).", "fixed"),
    "ExchangeProfile.openrtb_version": ("OpenRTB version the exchange speaks (where fields live).",
                                     "2.6"),
    "ExchangeProfile.currency": ("Default currency of floors and bids (ISO-4217).", "USD"),
    "ExchangeProfile.auction_type": ("Auction type when the request has no `at`: 1 first price, "
                                  "2 second price.", 2),
    "ExchangeProfile.tmax_default_ms": ("Response deadline when the request has no tmax, in "
                                     "milliseconds.", 120),
    "ExchangeProfile.round_trip_allowance_ms": ("Network round trip subtracted from tmax, in "
                                             "milliseconds.", 20),
    "ExchangeProfile.safety_margin_ms": ("Extra margin subtracted from tmax, in milliseconds.", 5),
    "ExchangeProfile.seat": ("Our seat id at this exchange (matched against wseat).", "lender-dsp"),
    "ExchangeProfile.lax_numbers": ("Accept numbers sent as strings (\"w\": \"320\").", False),
    "ExchangeProfile.nobid_body": ("No-bid as 200 with {id, nbr} instead of 204.", False),
    "ExchangeProfile.first_price_shading": ("Factor (0-1] applied to the bid in first-price "
                                         "auctions.", 0.85),
    "ExchangeProfile.notices": ("Notices the exchange sends; billing follows burl when listed, "
                             "else nurl.", ["nurl", "burl", "lurl"]),
    "ExchangeProfile.notice_ttl_s": ("How long a bid's notice token stays valid, in seconds.", 3600),
    "CurrencyFile.base": ("Base currency (ISO-4217); budgets compare in it.", "USD"),
    "CurrencyFile.rates": ("Value of one unit of each currency in the base currency "
                           "(rates[base] = 1).", {"USD": 1.0, "EUR": 1.08}),
}


class UndocumentedField(Exception):
    """A Struct field has no entry in FIELD_DOCS (add a description with its unit)."""


def _document(schema: dict[str, Any]) -> None:
    defs: dict[str, Any] = schema.get("$defs", {})
    by_name = {s.__name__: s for s in STRUCTS}
    missing: list[str] = []
    for name, node in defs.items():
        struct = by_name.get(name)
        if struct is None:
            continue
        node["additionalProperties"] = False
        for field in msgspec.structs.fields(struct):
            key = f"{name}.{field.name}"
            prop = node.get("properties", {}).get(field.encode_name)
            if key not in FIELD_DOCS:
                missing.append(key)
                continue
            description, example = FIELD_DOCS[key]
            if prop is None:
                continue
            prop["description"] = description
            if example is not None:
                prop["examples"] = [example]
    if missing:
        raise UndocumentedField(f"fields without FIELD_DOCS entries: {', '.join(sorted(missing))}")


def build_schemas() -> dict[str, dict[str, Any]]:
    """One JSON Schema (draft 2020-12) per config kind, keyed by kind."""
    out: dict[str, dict[str, Any]] = {}
    for kind, struct in KINDS.items():
        schema: dict[str, Any] = msgspec.json.schema(struct)
        _document(schema)
        out[kind] = {"$schema": SCHEMA_DIALECT, "title": f"dsp {kind} config", **schema}
    return out


def render(schema: dict[str, Any]) -> str:
    """Stable text of one schema (sorted keys, two-space indent, trailing newline)."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schemas(out_dir: Path) -> list[Path]:
    """Write ``<kind>.json`` for every kind into ``out_dir``; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for kind, schema in build_schemas().items():
        path = out_dir / f"{kind}.json"
        path.write_text(render(schema), encoding="utf-8")
        paths.append(path)
    return paths


def schema_comment(kind: str, depth: int = 1) -> str:
    """The first line a config file of ``kind`` carries, ``depth`` folders below the config root."""
    return f"# yaml-language-server: $schema={'../' * depth}schema/{kind}.json"
