"""Invalid-traffic and supply-path gates: cheap, pure, before any campaign or Redis work.

    got = quality_gate(req, profile, snapshot.traffic)
    # -> (NoBidReason, detail) to stop the request, or SupplyFacts for the campaign checks

Request-level, in this order (cheapest and most final first), each with its OpenRTB nbr:

1. ``device.ip`` missing where the exchange profile says it always sends one (4, non-human);
2. a private, loopback, link-local or multicast address (4);
3. a known bot or crawler user agent (3);
4. the seller (``publisher.id``) not in the exchange's sellers.json, or not authorised by the
   publisher's ads.txt / the developer's app-ads.txt for the exchange's ad system domain (12);
   no ads.txt file for the domain when ``ads_txt: required`` (11).

The campaign-level facts (data-centre address, schain completeness, number of resellers) go to
the request context; each campaign's ``supply`` rules decide in eligibility (nbr 5, 16, 17).
"""

from __future__ import annotations

import msgspec

from dsp.exchanges.profile import ExchangeProfile
from dsp.openrtb.geo import domain_keys
from dsp.openrtb.nobid import NoBidReason
from dsp.openrtb.request import BidRequest
from dsp.traffic.iprange import non_public, parse_ip
from dsp.traffic.rules import TrafficRules
from dsp.traffic.supply import AdsTxt


class SupplyFacts(msgspec.Struct, frozen=True, gc=False):
    """What the campaign-level supply rules read (one per request)."""

    datacenter: str | None = None  # the range's name when device.ip is a data-centre address
    schain_complete: bool = False  # schain present with complete = 1
    resellers: int = 0  # schain nodes after the first; 1 for an ads.txt RESELLER line


NO_FACTS = SupplyFacts()

Stop = tuple[NoBidReason, str]


def _ads_file(files: dict[str, AdsTxt], domains: tuple[str, ...]) -> tuple[str, AdsTxt] | None:
    for d in domains:
        f = files.get(d)
        if f is not None:
            return d, f
    return None


def _seller(req: BidRequest) -> str | None:
    """The publisher's account id at the exchange (``site``/``app`` ``publisher.id``)."""
    inv = req.site or req.app
    pub = inv.publisher if inv is not None else None
    return pub.id if pub is not None else None


def _domains(req: BidRequest) -> tuple[tuple[str, ...], bool]:
    """(candidate ads.txt / app-ads.txt domains, is an app)."""
    if req.site is not None:
        pub = req.site.publisher
        return domain_keys(req.site.domain) or domain_keys(pub.domain if pub else None), False
    if req.app is not None:
        pub = req.app.publisher
        return domain_keys(req.app.domain) or domain_keys(pub.domain if pub else None), True
    return (), False


def _authorisation(req: BidRequest, profile: ExchangeProfile, rules: TrafficRules) -> Stop | int:
    """A stop, or the number of resellers the ads.txt line implies (0 or 1)."""
    ad_system = profile.ad_system_domain
    if ad_system is None:
        return 0
    seller_id = _seller(req)
    sellers = rules.sellers.get(ad_system)
    if sellers is not None and seller_id and seller_id not in sellers.sellers:
        return NoBidReason.UNAUTHORISED_SELLER, f"seller {seller_id} is not in {ad_system}'s sellers.json"
    mode = profile.ads_txt or rules.ads_txt_mode
    if mode == "off" or (not seller_id and mode != "required"):
        return 0  # when_present checks (file, publisher.id) pairs only
    domains, is_app = _domains(req)
    if not domains:
        return 0
    found = _ads_file(rules.app_ads_txt if is_app else rules.ads_txt, domains)
    kind = "app-ads.txt" if is_app else "ads.txt"
    if found is None:
        if mode == "required":
            return NoBidReason.ADS_TXT_UNAVAILABLE, f"no {kind} for {domains[0]}"
        return 0
    domain, ads = found
    rel = ads.relationship(ad_system, seller_id) if seller_id else None
    if rel is None:
        return NoBidReason.UNAUTHORISED_SELLER, (
            f"{kind} of {domain} does not list {ad_system}, {seller_id or '(no publisher.id)'}")
    return 1 if rel == "RESELLER" else 0


def quality_gate(req: BidRequest, profile: ExchangeProfile, rules: TrafficRules) -> Stop | SupplyFacts:
    """The first request-level invalid-traffic or supply reason, else the supply facts."""
    device = req.device
    ip_text = device.ip or device.ipv6 if device is not None else None
    if not ip_text and profile.always_sends_ip:
        return NoBidReason.NON_HUMAN_TRAFFIC, "no device.ip (this exchange always sends one)"
    ip = parse_ip(ip_text)
    if ip is None and ip_text and profile.always_sends_ip:
        return NoBidReason.NON_HUMAN_TRAFFIC, f"device.ip {ip_text[:45]!r} is not an address"
    if rules.block_non_public_ip:
        kind = non_public(ip)
        if kind is not None:
            return NoBidReason.NON_HUMAN_TRAFFIC, f"device.ip {ip_text} is a {kind} address"
    if device is not None and device.ua:
        bot = rules.bots.match(device.ua)
        if bot is not None:
            return NoBidReason.KNOWN_CRAWLER, f"user agent matches bot pattern {bot!r}"
    resellers = _authorisation(req, profile, rules)
    if not isinstance(resellers, int):
        return resellers
    schain = req.source.schain if req.source is not None else None
    complete = False
    if schain is not None:
        complete = schain.complete == 1
        if schain.nodes:
            resellers = max(resellers, len(schain.nodes) - 1)
    datacenter = rules.datacenters.lookup(ip) if ip is not None else None
    if datacenter is None and not complete and resellers == 0:
        return NO_FACTS
    return SupplyFacts(datacenter, complete, resellers)
