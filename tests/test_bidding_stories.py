"""One fixture file = one whole story: request + feature state + expected outcome.

Each ``tests/fixtures/bidding/*.json`` holds ``request`` (as the exchange sends it), ``exchange``,
``user`` (the resolved user: known?, scores, frequency-cap state), optional ``population`` scores,
``now`` and ``money`` overrides, and ``expect`` (bid: campaign/creative/price per imp; or no-bid
reason and nbr). ``money`` may say ``reserve: false`` (the lease refuses) or ``admit: <reason>``
(what the money gate answers). The stories run through the pure decision steps with the demo
config tree of ``tests/fixtures/configs/demo`` (a copy of the shipped one: marketing's edits to
``bidder_configs/`` do not move these tests).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from dsp.bidding.decide import IdSource, Prepared, choose, prepare
from dsp.bidding.filters import FILTERS, FLOW_REASONS, REASON_LABELS
from dsp.bidding.respond import NoticeUrls, bid_response
from dsp.config.snapshot import Snapshot, load_snapshot
from dsp.exchanges.hooks import hooks_for
from dsp.notices.tokens import TokenInvalid, TokenSigner
from dsp.openrtb.decode import RequestDecoder
from dsp.openrtb.nobid import NoBidReason
from dsp.testing.fakes import AdmitAll
from dsp.testing.stories import audience_of

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "tests" / "fixtures" / "configs" / "demo"
STORIES = sorted((ROOT / "tests" / "fixtures" / "bidding").glob("*.json"))
DEFAULT_NOW = "2026-06-01T12:00:00Z"


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return load_snapshot(CONFIGS)


def _now(story: dict[str, Any]) -> float:
    text = story.get("now", DEFAULT_NOW).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize("path", STORIES, ids=[p.stem for p in STORIES])
def test_story(path: Path, snapshot: Snapshot) -> None:
    story = json.loads(path.read_text())
    expect = story["expect"]
    profile = snapshot.exchanges[story["exchange"]]
    req = RequestDecoder().decode(json.dumps(story["request"]).encode(),
                                  lax_numbers=profile.lax_numbers,
                                  hook=hooks_for(profile).normalise_request)
    money_cfg = story.get("money", {})
    admit = money_cfg.get("admit")
    money = AdmitAll(reserve_ok=money_cfg.get("reserve", True),
                     admit_reason=NoBidReason(admit) if admit else None)
    prep = prepare(req, profile, snapshot, _now(story))
    outcome: Any = prep
    if isinstance(prep, Prepared):
        if "looked_up" in expect:
            assert prep.needs_user == expect["looked_up"]
        outcome = choose(prep, audience_of(story), money, snapshot, IdSource("t-"))
    if expect["outcome"] == "nobid":
        assert isinstance(outcome, NoBidReason), f"expected a no-bid, got {outcome}"
        assert outcome.value == expect["reason"]
        if "nbr" in expect:
            assert outcome.nbr == expect["nbr"]
        return
    assert isinstance(prep, Prepared)
    assert isinstance(outcome, list), f"expected bids, got no-bid {outcome}"
    signer = TokenSigner({"k1": b"0123456789abcdef0123"}, "k1")
    resp = bid_response(prep, outcome, NoticeUrls(signer, "http://bidder.test"), "u:{x}")
    wire = json.loads(msgspec.json.encode(resp))
    assert wire["id"] == story["request"]["id"]
    bids = {b["impid"]: b for sb in wire["seatbid"] for b in sb["bid"]}
    assert len(bids) == len(expect["bids"])
    for want in expect["bids"]:
        got = bids[want["impid"]]
        assert got["cid"] == want["campaign"]
        if "crid" in want:
            assert got["crid"] == want["crid"]
        if "price" in want:
            assert got["price"] == pytest.approx(want["price"], abs=1e-6)
        if "dealid" in want:
            assert got.get("dealid") == want["dealid"]
        if "cur" in want:
            assert wire["cur"] == want["cur"]
        assert got["cat"] == ["IAB13-2"] and got["adomain"] and got["adm"]
        if profile.openrtb_version == "2.5":
            assert "mtype" not in got  # a 2.6 field
        else:
            assert got["mtype"] in (1, 2, 3, 4)
        for url, kind, macro in (("nurl", "win", "${AUCTION_PRICE}"), ("burl", "bill", "${AUCTION_PRICE}"),
                                 ("lurl", "loss", "${AUCTION_LOSS}")):
            assert got[url].startswith(f"http://bidder.test/notice/{kind}?t=")
            assert macro in got[url]
        tokens = {kind: got[url].split("t=", 1)[1].split("&", 1)[0]
                  for url, kind in (("nurl", "win"), ("burl", "bill"), ("lurl", "loss")) if url in got}
        for kind, text in tokens.items():  # each verifies as its own kind only
            token = signer.verify(text, kind, now_s=_now(story))
            assert token.campaign_id == want["campaign"] and token.imp_id == want["impid"]
            assert 0 <= token.floor_micros <= token.bid_price_micros
            for other in {"win", "bill", "loss"} - {kind}:
                with pytest.raises(TokenInvalid):
                    signer.verify(text, other, now_s=_now(story))
        # Markup (banner, VAST, native) clicks through /notice/click; no notice token is in it.
        assert not any(t in got["adm"] for t in tokens.values())
        if got.get("mtype") in (1, 2, 4) or "href=" in got["adm"]:
            assert "http://bidder.test/notice/click?t=" in got["adm"], got["adm"][:200]
            click = got["adm"].split("/notice/click?t=", 1)[1]
            click = click.split('"', 1)[0].split("]", 1)[0].split("\\", 1)[0]
            assert signer.verify_click(click, now_s=_now(story)).bid_id == got["id"]
    if expect.get("test"):
        assert money.reserved and all(r[3] for r in money.reserved)


def test_every_nobid_reason_is_a_filter_row_with_a_story_or_a_flow_reason() -> None:
    """Adding a gate is one row in dsp.bidding.filters plus one story fixture ending in its reason;
    the reasons only the flow reports (timeouts, dependency failures) have HTTP-level tests."""
    covered = {json.loads(p.read_text())["expect"].get("reason") for p in STORIES}
    table = {row.reason for row in FILTERS}
    for reason in NoBidReason:
        assert (reason in table) != (reason in FLOW_REASONS), f"{reason}: exactly one of table/flow"
        if reason in table:
            assert reason.value in covered, f"no story fixture ends in {reason.value!r}"
    assert set(REASON_LABELS) == {r.value for r in NoBidReason}
