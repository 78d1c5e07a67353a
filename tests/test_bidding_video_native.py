"""Video (VAST 4 inline, built per request) and native (Native 1.2 request in, response out)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import msgspec
import pytest

from dsp.bidding.decide import IdSource, Prepared, choose, prepare
from dsp.bidding.native import native_adm, native_fit
from dsp.bidding.respond import NoticeUrls, bid_response
from dsp.bidding.video import VastUrls, vast_xml, video_fit
from dsp.config.schema import MediaFile, NativeImage, NativeSpec, VideoSpec
from dsp.config.snapshot import Snapshot, load_snapshot
from dsp.notices.tokens import TokenSigner
from dsp.openrtb.decode import RequestDecoder
from dsp.openrtb.native import parse_native
from dsp.openrtb.request import Native, Video
from dsp.testing.fakes import AdmitAll
from dsp.testing.stories import audience_of, story_now_s

ROOT = Path(__file__).resolve().parent.parent
STORIES = ROOT / "tests" / "fixtures" / "bidding"
NS = {"v": "http://www.iab.com/VAST"}

SPEC = VideoSpec(duration_s=15, title="Rates & terms <apply>", placements=[1, 2], media=[
    MediaFile(url="https://cdn.example/a-1280x720.mp4", type="video/mp4", w=1280, h=720, bitrate_kbps=2500),
    MediaFile(url="https://cdn.example/a-640x360.mp4", type="video/mp4", w=640, h=360, bitrate_kbps=800),
    MediaFile(url="https://cdn.example/a-640x360.webm", type="video/webm", w=640, h=360, bitrate_kbps=700),
    MediaFile(url="https://cdn.example/a-480x480.mp4", type="video/mp4", w=480, h=480, bitrate_kbps=600),
    MediaFile(url="https://cdn.example/a-live.m3u8", type="application/x-mpegurl", w=1280, h=720,
              bitrate_kbps=2000, delivery="streaming")])


def _video(**fields: Any) -> Video:
    base: dict[str, Any] = {"mimes": ["video/mp4"], "protocols": [7], "w": 640, "h": 360}
    base.update(fields)
    return msgspec.convert(base, Video)


@pytest.mark.parametrize(("fields", "version", "files"), [
    ({}, "4.0", ["a-1280x720.mp4", "a-640x360.mp4", "a-480x480.mp4"]),
    ({"protocols": [2, 3, 7, 11, 13]}, "4.2", None),
    ({"protocols": [3, 11]}, "4.1", None),
    ({"protocols": None}, "4.0", None),  # no protocols: VAST 4.0
    ({"protocols": None, "protocol": 13}, "4.2", None),  # the 2.2-era single field
    ({"protocols": None, "protocol": [3, 7]}, "4.0", None),  # ... sent as a list (Fyber)
    ({"mimes": ["video/webm"]}, "4.0", ["a-640x360.webm"]),
    ({"maxbitrate": 900}, "4.0", ["a-640x360.mp4", "a-480x480.mp4"]),
    ({"minbitrate": 700, "maxbitrate": 900}, "4.0", ["a-640x360.mp4"]),
    ({"boxingallowed": 0}, "4.0", ["a-1280x720.mp4", "a-640x360.mp4"]),  # 16:9 only
    ({"delivery": [1], "mimes": ["application/x-mpegurl", "video/mp4"]}, "4.0", ["a-live.m3u8"]),
    ({"minduration": 15, "maxduration": 15}, "4.0", None),
    ({"rqddurs": [6, 15, 30]}, "4.0", None),
    ({"plcmt": 2}, "4.0", None),
    ({"plcmt": None, "placement": 1}, "4.0", None),
])
def test_video_fits(fields: dict[str, Any], version: str, files: list[str] | None) -> None:
    plan = video_fit(SPEC, _video(**fields))
    assert plan is not None and plan.version == version
    if files is not None:
        assert [m.url.rsplit("/", 1)[1] for m in plan.media] == files


@pytest.mark.parametrize("fields", [
    {"protocols": [2, 3, 5, 6, 8]},  # VAST 2/3 and wrappers only
    {"linearity": 2},
    {"maxduration": 10}, {"minduration": 20}, {"rqddurs": [6, 30]},
    {"plcmt": 3},  # interstitial: the creative does not accept it
    {"mimes": ["video/ogg"]},
    {"minbitrate": 3000},
    {"delivery": [3]},  # download only
])
def test_video_does_not_fit(fields: dict[str, Any]) -> None:
    assert video_fit(SPEC, _video(**fields)) is None


def _check_vast(adm: str, *, version: str, mimes: list[str], duration: str, impression: str,
                click: str) -> ET.Element:
    root = ET.fromstring(adm)  # a real XML parser: well-formed or it raises
    assert root.tag == "{http://www.iab.com/VAST}VAST" and root.get("version") == version
    ads = root.findall("v:Ad", NS)
    assert len(ads) == 1 and ads[0].get("id")
    inline = ads[0].find("v:InLine", NS)
    assert inline is not None and ads[0].find("v:Wrapper", NS) is None
    for required in ("v:AdSystem", "v:AdTitle", "v:Impression", "v:AdServingId"):
        node = inline.find(required, NS)
        assert node is not None and (node.text or "").strip(), required
    assert len(inline.findall("v:Creatives/v:Creative", NS)) == 1
    got = inline.findtext("v:Impression", namespaces=NS) or ""
    assert got == impression or (impression.endswith("*") and got.startswith(impression[:-1])), got
    creative = inline.find("v:Creatives/v:Creative", NS)
    assert creative is not None and creative.find("v:UniversalAdId", NS) is not None
    linear = creative.find("v:Linear", NS)
    assert linear is not None and linear.findtext("v:Duration", namespaces=NS) == duration
    got = linear.findtext("v:VideoClicks/v:ClickThrough", namespaces=NS) or ""
    assert got == click or (click.endswith("*") and got.startswith(click[:-1])), got
    events = [t.get("event") for t in linear.findall("v:TrackingEvents/v:Tracking", NS)]
    assert events == ["start", "firstQuartile", "midpoint", "thirdQuartile", "complete"]
    files = linear.findall("v:MediaFiles/v:MediaFile", NS)
    assert files and all(f.get("type") in mimes for f in files)
    for f in files:
        assert f.get("delivery") in ("progressive", "streaming")
        assert int(f.get("width", "0")) > 0 and int(f.get("height", "0")) > 0
        assert (f.text or "").startswith("https://")
    return root


def test_vast_document_structure_and_escaping() -> None:
    plan = video_fit(SPEC, _video(protocols=[13]))
    assert plan is not None
    urls = VastUrls("https://dsp.test/notice/bill?t=x&p=${AUCTION_PRICE}", "https://dsp.test/notice/click?t=x",
                    "https://dsp.test/notice/event?t=x&e=")
    adm = vast_xml(plan, "bid-1", "cr-9", SPEC, urls)
    root = _check_vast(adm, version="4.2", mimes=["video/mp4"], duration="00:00:15.000",
                       impression=urls.impression, click=urls.click)
    assert root.findtext(".//v:AdTitle", namespaces=NS) == "Rates & terms <apply>"
    trackers = [t.text for t in root.iterfind(".//v:Tracking", NS)]
    assert trackers[0] == urls.event + "start"


def _run_story(name: str, snapshot: Snapshot) -> tuple[dict[str, Any], dict[str, Any]]:
    story = json.loads((STORIES / name).read_text())
    profile = snapshot.exchanges[story["exchange"]]
    req = RequestDecoder().decode(json.dumps(story["request"]).encode(), lax_numbers=profile.lax_numbers)
    prep = prepare(req, profile, snapshot, story_now_s(story))
    assert isinstance(prep, Prepared)
    chosen = choose(prep, audience_of(story), AdmitAll(), snapshot, IdSource("t-"))
    assert isinstance(chosen, list)
    resp = bid_response(prep, chosen, NoticeUrls(TokenSigner({"k": b"0123456789abcdef0123"}, "k"),
                                                 "https://bidder.test"), "u:{x}")
    wire = json.loads(msgspec.json.encode(resp))
    return story, wire["seatbid"][0]["bid"][0]


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return load_snapshot(ROOT / "tests" / "fixtures" / "configs" / "demo")


def test_video_story_answers_a_vast4_inline_document(snapshot: Snapshot) -> None:
    story, bid = _run_story("bid-video-instream.json", snapshot)
    video = story["request"]["imp"][0]["video"]
    assert bid["mtype"] == 2 and (bid["w"], bid["h"]) == (640, 360)
    # Markup carries public tokens only: the impression pixel is an event notice (never the
    # billing burl), the click-through our click notice; neither carries a money token.
    root = _check_vast(bid["adm"], version="4.0", mimes=video["mimes"], duration="00:00:15.000",
                       impression="https://bidder.test/notice/event?t=*",
                       click="https://bidder.test/notice/click?t=*")
    impression = root.findtext(".//v:Impression", namespaces=NS) or ""
    assert impression.endswith("&e=impression")
    for money_url in (bid["nurl"], bid["burl"], bid.get("lurl") or ""):
        token = money_url.split("t=", 1)[1].split("&", 1)[0] if money_url else "-"
        assert token not in bid["adm"]
    for f in root.iterfind(".//v:MediaFile", NS):  # the imp's bitrate range holds
        assert video["minbitrate"] <= int(f.get("bitrate", "0")) <= video["maxbitrate"]


NATIVE_SPEC = NativeSpec(titles=["A title that is rather long for a tile", "Short title"], images=[
    NativeImage(url="https://cdn.example/main-1200x627.png", w=1200, h=627),
    NativeImage(url="https://cdn.example/main-627.jpg", w=627, h=627, mime="image/jpeg"),
    NativeImage(url="https://cdn.example/icon-80.png", w=80, h=80, type=1)],
    data={2: "A description", 12: "Apply"})


def _nreq(assets: list[dict[str, Any]], **extra: Any) -> Any:
    return parse_native(Native(request=json.dumps({"ver": "1.2", "assets": assets, **extra})))


def test_native_request_forms() -> None:
    assets = [{"id": 1, "title": {"len": 20}}]
    as_string = parse_native(Native(request=json.dumps({"assets": assets})))
    as_object = parse_native(Native(request={"assets": assets}))
    wrapped = parse_native(Native(request=json.dumps({"native": {"ver": "1.1", "assets": assets}})))
    assert as_string == as_object and wrapped is not None and wrapped.assets == as_string.assets  # type: ignore[union-attr]
    for bad in ("{", "[]", json.dumps({"assets": []}), json.dumps({"assets": [{"id": 1}, {"id": 1}]}),
                json.dumps({"assets": [{"title": {}}]})):
        assert parse_native(Native(request=bad)) is None, bad
    assert parse_native(Native()) is None and parse_native(None) is None


def test_native_fit_rules() -> None:
    title = {"id": 1, "required": 1, "title": {"len": 12}}
    plan = native_fit(NATIVE_SPEC, _nreq([title]))
    assert plan is not None and plan.assets[0].title is not None
    assert plan.assets[0].title.text == "Short title"
    assert native_fit(NATIVE_SPEC, _nreq([{**title, "title": {"len": 5}}])) is None  # no title short enough
    img = {"id": 2, "required": 1, "img": {"type": 3, "wmin": 1000, "hmin": 500}}
    plan = native_fit(NATIVE_SPEC, _nreq([img]))
    assert plan is not None and plan.assets[0].img is not None and plan.assets[0].img.w == 1200
    exact = {"id": 2, "required": 1, "img": {"type": 3, "w": 627, "h": 627, "mimes": ["image/jpeg"]}}
    plan = native_fit(NATIVE_SPEC, _nreq([exact]))
    assert plan is not None and plan.assets[0].img is not None and plan.assets[0].img.url.endswith(".jpg")
    assert native_fit(NATIVE_SPEC, _nreq([{**exact, "img": {"type": 3, "w": 300, "h": 250}}])) is None
    assert native_fit(NATIVE_SPEC, _nreq([{"id": 3, "required": 1, "data": {"type": 2, "len": 5}}])) is None
    optional_missing = [title, {"id": 9, "required": 0, "data": {"type": 3}}]
    plan = native_fit(NATIVE_SPEC, _nreq(optional_missing))
    assert plan is not None and [a.id for a in plan.assets] == [1]  # optional asset left out


def test_native_response_answers_each_asset_by_id() -> None:
    assets = [{"id": 11, "required": 1, "title": {"len": 40}},
              {"id": 12, "required": 1, "img": {"type": 3, "wmin": 600, "hmin": 300}},
              {"id": 13, "required": 0, "img": {"type": 1, "wmin": 50, "hmin": 50}},
              {"id": 14, "required": 1, "data": {"type": 12, "len": 15}}]
    for trackers in (True, False):
        extra = {"eventtrackers": [{"event": 1, "methods": [1]}]} if trackers else {}
        nreq = _nreq(assets, **extra)
        plan = native_fit(NATIVE_SPEC, nreq)
        assert plan is not None
        doc = json.loads(native_adm(plan, "https://d.test/notice/click?t=x", "https://d.test/notice/bill?t=x"))
        assert doc["ver"] == "1.2" and doc["link"]["url"] == "https://d.test/notice/click?t=x"
        by_id = {a["id"]: a for a in doc["assets"]}
        assert set(by_id) == {11, 12, 13, 14}
        for want in assets:
            kind = next(k for k in ("title", "img", "data") if k in want)
            assert set(by_id[want["id"]]) == {"id", kind}  # same id, same kind, nothing else
        assert len(by_id[11]["title"]["text"]) <= 40 and by_id[12]["img"]["w"] >= 600
        if trackers:
            assert doc["eventtrackers"] == [{"event": 1, "method": 1, "url": "https://d.test/notice/bill?t=x"}]
            assert "imptrackers" not in doc
        else:
            assert doc["imptrackers"] == ["https://d.test/notice/bill?t=x"] and "eventtrackers" not in doc
    assert plan is not None
    wrapped = json.loads(native_adm(plan, "c", "i", wrapped=True))
    assert set(wrapped) == {"native"} and wrapped["native"]["ver"] == "1.2"


def test_native_story_builds_the_response_from_the_request(snapshot: Snapshot) -> None:
    story, bid = _run_story("bid-native-app.json", snapshot)
    request = json.loads(story["request"]["imp"][0]["native"]["request"])
    doc = json.loads(bid["adm"])
    assert bid["mtype"] == 4
    asked = {a["id"]: a for a in request["assets"]}
    answered = {a["id"]: a for a in doc["assets"]}
    assert set(answered) <= set(asked)
    assert {i for i, a in asked.items() if a.get("required")} <= set(answered)
    for i, a in answered.items():
        want = asked[i]
        if "title" in want:
            assert len(a["title"]["text"]) <= want["title"]["len"]
        if "img" in want:
            spec = want["img"]
            assert a["img"]["w"] >= spec.get("wmin", spec.get("w", 0))
            assert a["img"]["h"] >= spec.get("hmin", spec.get("h", 0))
        if "data" in want and "len" in want["data"]:
            assert len(a["data"]["value"]) <= want["data"]["len"]
    assert doc["link"]["url"].startswith("https://bidder.test/notice/click?t=")
    tracker = doc["eventtrackers"][0]["url"]
    assert tracker.startswith("https://bidder.test/notice/event?t=") and tracker.endswith("&e=impression")
    assert bid["burl"].split("t=", 1)[1].split("&", 1)[0] not in bid["adm"]  # no billing token
