"""Exchange dialects built from public guides: one folder of stories per exchange.

``tests/fixtures/exchanges/<exchange>/exemplary/*.json`` are requests shaped like the exchange's
own examples that must produce a bid satisfying the profile (the guide's required bid fields,
notice style, seat, cid, native envelope, VAST for video); ``supplemental/*.json`` are edge cases
ending in a no-bid, answered the way the exchange wants (204, or 200 with ``nbr``). Each story
goes through :class:`dsp.server.bid_endpoint.BidEndpoint` (the HTTP semantics without a socket)
with the story's resolved user.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from dsp.bidding.audience import Audience
from dsp.bidding.decide import IdSource
from dsp.bidding.flow import BidFlow
from dsp.bidding.respond import NoticeUrls
from dsp.clock import Deadline, monotonic
from dsp.config.reloader import SnapshotHolder
from dsp.config.snapshot import Snapshot, load_snapshot
from dsp.notices.tokens import TokenSigner
from dsp.observability.metrics import Metrics
from dsp.server.bid_endpoint import BidEndpoint
from dsp.server.recorder import BidRecorder
from dsp.testing.fakes import AdmitAll
from dsp.testing.stories import audience_of

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "tests" / "fixtures" / "configs" / "demo"
FOLDER = ROOT / "tests" / "fixtures" / "exchanges"
STORIES = sorted(FOLDER.glob("*/*/*.json"))
GUIDE_BUILT = ("google-ab", "xandr", "index", "pubmatic", "inmobi", "smaato")


class StoryAudience:
    """The AudienceSource port answering with the story's resolved user."""

    def __init__(self, audience: Audience) -> None:
        self.audience = audience

    def unknown(self, user_key: str = "", caps: dict[str, bytes] | None = None) -> Audience:
        a = self.audience
        return a if not a.known else Audience("", False, a.p_intent, a.pd, {})

    async def resolve(self, user_id: str, deadline: Deadline, intent_floor: float = 0.0) -> Audience:
        return self.audience

    async def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return load_snapshot(CONFIGS)


def test_every_guide_built_exchange_has_both_folders(snapshot: Snapshot) -> None:
    for name in GUIDE_BUILT:
        assert name in snapshot.exchanges
        for kind in ("exemplary", "supplemental"):
            assert list((FOLDER / name / kind).glob("*.json")), f"{name}/{kind} is empty"
    kinds = {p.parent.name for p in STORIES}
    assert kinds == {"exemplary", "supplemental"}
    for profile_file in (CONFIGS / "exchanges").glob("*.yaml"):  # invented dialects say so
        head = next(line for line in profile_file.read_text().splitlines()
                    if not line.startswith("# yaml-language-server"))
        profile = snapshot.exchanges[profile_file.stem]
        if profile_file.stem not in (*GUIDE_BUILT, "generic") and profile.alias_of is None:
            assert "-style" in head and "invented" in head, profile_file


async def _answer(story: dict[str, Any], snapshot: Snapshot) -> tuple[int, bytes, Metrics]:
    signer = TokenSigner({"k": b"0123456789abcdef0123"}, "k")
    flow = BidFlow(StoryAudience(audience_of(story)), AdmitAll(),
                   NoticeUrls(signer, "https://bidder.test"), IdSource("t-"))
    metrics = Metrics()
    recorder = BidRecorder(metrics)
    endpoint = BidEndpoint(SnapshotHolder(CONFIGS, snapshot), flow, recorder, 1 << 20)
    reply = await endpoint.answer(story["exchange"], json.dumps(story["request"]).encode(), False,
                                  monotonic())
    recorder.flush()
    return reply.status, reply.body, metrics


@pytest.mark.parametrize("path", STORIES, ids=[f"{p.parts[-3]}/{p.parts[-2]}/{p.stem}" for p in STORIES])
async def test_exchange_story(path: Path, snapshot: Snapshot) -> None:
    story = json.loads(path.read_text())
    profile = snapshot.exchanges[story["exchange"]]
    expect = story["expect"]
    status, body, metrics = await _answer(story, snapshot)
    if expect["outcome"] == "nobid":
        assert path.parent.name == "supplemental"
        assert metrics.registry.get_sample_value(
            "dsp_nobids_total", {"exchange": profile.name, "reason": expect["reason"]}) == 1.0
        if profile.nobid_body:
            doc = json.loads(body)
            assert status == 200 and doc["id"] == story["request"]["id"] and "seatbid" not in doc
            assert doc["nbr"] == expect.get("nbr", doc["nbr"])
        else:
            assert (status, body) == (204, b"")
        return
    assert path.parent.name == "exemplary"
    assert status == 200, body
    doc = json.loads(body)
    assert doc["id"] == story["request"]["id"] and doc["cur"] == profile.currency
    seatbid = doc["seatbid"][0]
    if profile.seat:
        assert seatbid["seat"] == profile.seat
    bid = seatbid["bid"][0]
    want = expect["bids"][0]
    assert bid["impid"] == want["impid"] and bid["crid"] == want["crid"]
    for field in profile.required_bid_fields:
        value = seatbid.get("seat") if field == "seat" else bid.get(field)
        assert value, f"{profile.name} requires bid.{field}"
    for notice in ("nurl", "burl", "lurl"):
        assert (notice in bid) == (notice in profile.notices), notice
    assert ("cid" in bid) == profile.send_cid
    imp = story["request"]["imp"][0]
    v26 = profile.openrtb_version == "2.6"
    if "video" in imp:
        assert bid.get("mtype") == (2 if v26 else None)
        root = ET.fromstring(bid["adm"])
        assert root.get("version", "").startswith("4.")
        ns = {"v": "http://www.iab.com/VAST"}
        mimes = imp["video"]["mimes"]
        assert all(f.get("type") in mimes for f in root.iterfind(".//v:MediaFile", ns))
    elif "native" in imp:
        assert bid.get("mtype") == (4 if v26 else None)
        adm = json.loads(bid["adm"])
        native = adm["native"] if profile.native_wrapper else adm
        assert set(adm) == ({"native"} if profile.native_wrapper else set(adm))
        asked = json.loads(imp["native"]["request"])
        asked = asked.get("native", asked)
        ids = {a["id"] for a in asked["assets"]}
        required = {a["id"] for a in asked["assets"] if a.get("required")}
        answered = {a["id"] for a in native["assets"]}
        assert required <= answered <= ids
        assert ("eventtrackers" in native) == bool(asked.get("eventtrackers"))
    else:
        assert bid.get("mtype") == (1 if v26 else None) and bid["adm"].startswith("<a ")


def test_a_profile_requiring_a_field_we_do_not_send_fails_at_load(tmp_path: Path) -> None:
    import shutil

    from dsp.errors import ConfigInvalid

    dst = tmp_path / "configs"
    shutil.copytree(CONFIGS, dst)
    p = dst / "exchanges" / "pubmatic.yaml"
    p.write_text(p.read_text().replace("notices: [burl, lurl]", "notices: [lurl]"))
    with pytest.raises(ConfigInvalid, match=r"requires bid\.burl"):
        load_snapshot(dst)
