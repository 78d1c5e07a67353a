"""Per-campaign filter plans: leaving out the rows that are no-ops for a campaign never changes
which row drops it (so the no-bid reason, ``dsp explain`` and the metrics stay the same).

The plans (:func:`dsp.bidding.eligibility.campaign_plan`) are checked against the whole campaign
stage (:func:`campaign_drop`) for every story request and a few hundred generated ones, on the
configured campaigns and on variants that switch every targeting and supply knob on or off.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from dsp.bidding.context import RequestContext, request_context
from dsp.bidding.eligibility import campaign_drop, campaign_plan, eligible
from dsp.bidding.filters import FILTERS, campaign_checks, rows
from dsp.bidding.quality import SupplyFacts, quality_gate
from dsp.config.schema import CampaignFile
from dsp.config.snapshot import CompiledCampaign, compile_campaign, load_snapshot
from dsp.errors import InvalidRequest
from dsp.exchanges.hooks import hooks_for
from dsp.openrtb.decode import RequestDecoder
from dsp.testing.traffic import TrafficGenerator, TrafficMix

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "tests" / "fixtures" / "configs" / "demo"
STORIES = sorted((ROOT / "tests" / "fixtures" / "bidding").glob("*.json"))
NOW_S = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC).timestamp()

#: targeting / supply / policy variants laid over each configured campaign
VARIANTS: list[dict[str, Any]] = [
    {},
    {"targeting": {}, "supply": {}},
    {"targeting": {"countries": ["US", "GBR"], "device_types": [4], "os": ["iOS"]}},
    {"targeting": {"regions": ["US-CA"], "exclude_regions": ["US-NY"], "metros": ["501"]}},
    {"targeting": {"domains": ["news.example"], "app_bundles": ["com.example.app"]}},
    {"targeting": {"exclude_domains": ["casino.example"], "exclude_app_bundles": ["com.bad.app"]}},
    {"targeting": {"categories": ["IAB13"], "exclude_categories": ["IAB7"]}},
    {"supply": {"require_complete_schain": True, "max_resellers": 0}},
    {"supply": {"allow_datacenter_ip": True}},
    {"requires_user": False, "gdpr_without_consent": "contextual"},
    {"requires_user": True, "gdpr_without_consent": "nobid"},
    {"schedule": {"start": "2026-07-01", "end": "2026-07-31", "hours": [1, 2, 3],
                  "utc_offset_minutes": 120}},
]


def _campaigns() -> list[CompiledCampaign]:
    out = []
    for path in sorted((CONFIGS / "campaigns").glob("*.yaml")):
        base = yaml.safe_load(path.read_text())
        for i, variant in enumerate(VARIANTS):
            data = {**base, **variant, "id": f"{base['id']}-{i}"}
            if "schedule" in variant:
                data["schedule"] = {**base.get("schedule", {}), **variant["schedule"]}
            out.append(compile_campaign(msgspec.convert(data, CampaignFile)))
    return out


def _contexts() -> list[RequestContext]:
    snapshot = load_snapshot(CONFIGS)
    decoder = RequestDecoder()
    out = []

    def add(body: bytes, exchange: str) -> None:
        profile = snapshot.exchanges[exchange]
        try:
            req = decoder.decode(body, lax_numbers=profile.lax_numbers,
                                 hook=hooks_for(profile).normalise_request)
        except InvalidRequest:
            return
        facts = quality_gate(req, profile, snapshot.traffic)
        out.append(request_context(req, exchange, profile.auction_type, NOW_S, snapshot.privacy,
                                   facts if isinstance(facts, SupplyFacts) else SupplyFacts()))

    for path in STORIES:
        story = json.loads(path.read_text())
        add(json.dumps(story["request"]).encode(), story["exchange"])
    names = [n for n in snapshot.exchanges]
    gen = TrafficGenerator.from_sources(TrafficMix(exchanges=dict.fromkeys(names, 1.0), seed=5))
    for _ in range(400):
        sample = gen.next()
        add(sample.body, sample.path.rsplit("/", 1)[-1])
    # the context facts only supply rules read
    out += [msgspec.structs.replace(c, supply=SupplyFacts("aws", False, 2)) for c in out[:60]]
    return out


@pytest.fixture(scope="module")
def contexts() -> list[RequestContext]:
    return _contexts()


def test_plans_pick_the_same_row_as_the_whole_stage(contexts: list[RequestContext]) -> None:
    campaigns = tuple(_campaigns())
    plan = campaign_plan(campaigns)
    assert [c for c, _ in plan] == list(campaigns)
    dropped = skipped = 0
    for c, checks in plan:
        skipped += len(rows("campaign")) - 1 - len(checks)
        for ctx in contexts:
            want = campaign_drop(c, ctx)
            got = next((row for check, row in checks if check(c, ctx)), None)
            assert got == want, (c.id, want, got)
            dropped += want is not None
    assert dropped > len(campaigns) and skipped > len(campaigns)  # both paths were exercised


def test_eligible_reports_what_the_whole_stage_reports(contexts: list[RequestContext]) -> None:
    snapshot = load_snapshot(CONFIGS)
    campaigns = tuple(_campaigns())
    imps = RequestDecoder().decode(json.dumps(
        {"id": "r", "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}]}).encode()).imp
    for ctx in contexts[:120]:
        trace: list[Any] = []
        _, best = eligible(campaigns, imps, ctx, snapshot.rates, "seat", trace)
        by_campaign = {d.campaign_id: d.filter for d in trace if d.imp_index == -1}
        drops = [campaign_drop(c, ctx) for c in campaigns]
        for c, row in zip(campaigns, drops, strict=True):
            assert by_campaign.get(c.id) == (row.name if row is not None else None)
        if all(row is not None for row in drops):  # the reported row: the furthest down
            assert best == max((row for row in drops if row is not None), key=lambda r: r.rank)


def test_plans_are_cached_per_campaigns_tuple_and_only_campaign_rows_have_applies() -> None:
    campaigns = tuple(_campaigns()[:3])
    assert campaign_plan(campaigns) is campaign_plan(campaigns)
    assert campaign_plan(tuple(campaigns)) is campaign_plan(campaigns)  # same tuple object
    assert campaign_plan(()) == ()
    assert all(r.applies is None for r in FILTERS if r.stage != "campaign")
    bare = campaigns[0]
    assert len(campaign_checks(bare)) <= len([r for r in rows("campaign") if r.check is not None])
