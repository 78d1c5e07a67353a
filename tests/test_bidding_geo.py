"""Geo and placement targeting: region dialects, metros, domain and app-bundle allow/block lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from dsp.bidding.context import request_context
from dsp.bidding.eligibility import campaign_drop
from dsp.config.schema import CampaignFile
from dsp.config.snapshot import compile_campaign
from dsp.openrtb.decode import normalise
from dsp.openrtb.geo import country_alpha3, domain_keys, region_code
from dsp.openrtb.request import BidRequest

ROOT = Path(__file__).resolve().parent.parent
BASE = yaml.safe_load((ROOT / "bidder_configs" / "campaigns" / "cashbridge-starter.yaml").read_text())


@pytest.mark.parametrize(("region", "country", "want"), [
    ("CA", "USA", "US-CA"), ("ca", "US", "US-CA"), ("US-CA", None, "US-CA"), ("us-ca", "DEU", "US-CA"),
    ("USA-CA", None, "US-CA"), ("US_CA", None, "US-CA"), (" NY ", "usa", "US-NY"),
    ("BY", "DEU", "DE-BY"), ("ON", "CA", "CA-ON"), ("CA", None, None), ("", "USA", None), (None, "USA", None),
])
def test_region_dialects(region: str | None, country: str | None, want: str | None) -> None:
    assert region_code(region, country) == want


def test_country_dialects() -> None:
    assert [country_alpha3(c) for c in ("US", "usa", "USA", "gb", "UK", "", None)] == [
        "USA", "USA", "USA", "GBR", "GBR", None, None]


def test_domain_keys() -> None:
    assert domain_keys("WWW.News.Example.COM.") == ("news.example.com", "example.com")
    assert domain_keys("https://m.example.org/path?q=1") == ("m.example.org", "example.org")
    assert domain_keys("localhost") == ("localhost",)
    assert domain_keys("") == () and domain_keys(None) == ()
    assert len(domain_keys(".".join(["a"] * 50) + ".com")) == 5  # bounded however deep


def _campaign(**targeting: Any) -> Any:
    data = {**BASE, "targeting": {**targeting}, "supply": {}}
    return compile_campaign(msgspec.convert(data, CampaignFile))


def _ctx(**parts: Any) -> Any:
    body = {"id": "r", "imp": [{"id": "1", "banner": {"w": 320, "h": 50}}], **parts}
    req = normalise(msgspec.json.decode(msgspec.json.encode(body), type=BidRequest))
    return request_context(req, "generic", 2, 1.78e9)


def _why(campaign: Any, **parts: Any) -> str | None:
    ctx = _ctx(**parts)
    row = campaign_drop(campaign, ctx)
    return None if row is None else row.explain(campaign, ctx)


def test_region_allow_and_block_lists_across_dialects() -> None:
    licensed = _campaign(regions=["US-CA", "us-tx"], exclude_regions=["US-TX"])
    assert _why(licensed, device={"geo": {"country": "US", "region": "CA"}}) is None
    assert _why(licensed, device={"geo": {"country": "USA", "region": "us-ca"}}) is None
    assert _why(licensed, user={"geo": {"country": "USA", "region": "CA"}}) is None
    assert _why(licensed, device={"geo": {"country": "USA", "region": "NY"}}) == "region US-NY not targeted"
    assert _why(licensed, device={"geo": {"country": "USA", "region": "TX"}}) == "region US-TX excluded"
    # unknown region: an allow list cannot be satisfied (licences are per state)
    assert _why(licensed, device={"geo": {"country": "USA"}}) == "region None not targeted"
    assert _why(licensed, device={"geo": {"region": "CA"}}) == "region None not targeted"


def test_metros() -> None:
    c = _campaign(metros=["807", "501"])
    assert _why(c, device={"geo": {"country": "USA", "metro": "807"}}) is None
    assert _why(c, device={"geo": {"country": "USA", "metro": "803"}}) == "metro 803 not targeted"


def test_domain_and_bundle_block_lists() -> None:
    c = _campaign(exclude_domains=["Casino.Example"], exclude_app_bundles=["com.Example.Slots"])
    assert _why(c, site={"domain": "www.casino.example"}) == "domain casino.example blocked"
    assert _why(c, site={"domain": "live.casino.example"}) == "domain live.casino.example blocked"
    assert _why(c, site={"domain": "notcasino.example"}) is None
    assert _why(c, app={"bundle": "com.example.slots"}) == "app com.example.slots blocked"
    assert _why(c, app={"bundle": "com.example.news"}) is None


def test_allow_lists_cover_sites_and_apps() -> None:
    c = _campaign(domains=["news.example"], app_bundles=["com.example.news"])
    assert _why(c, site={"domain": "sports.news.example"}) is None
    assert _why(c, app={"bundle": "COM.EXAMPLE.NEWS"}) is None
    assert _why(c, site={"domain": "other.example"}) == "placement other.example not on the allow list"
    assert _why(c, app={"bundle": "com.other"}) == "placement com.other not on the allow list"
    sites_only = _campaign(domains=["news.example"])
    assert _why(sites_only, app={"bundle": "com.example.news"}) is not None  # apps need app_bundles


def test_targeting_compiles_to_canonical_sets() -> None:
    c = _campaign(countries=["us", "CAN"], regions=["us-ca"], domains=["WWW.News.Example"])
    assert c.countries == frozenset({"USA", "CAN"})
    assert c.placement is not None and c.placement.regions == frozenset({"US-CA"})
    assert c.placement.domains == frozenset({"news.example"})
    assert _campaign().placement is None  # nothing to check on the hot path
