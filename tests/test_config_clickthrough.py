"""Click-throughs found in creative markup (banner hrefs, native links, VAST ClickThrough) and
rewritten through /notice/click; pure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dsp.config.clickthrough import split_clickthroughs
from dsp.config.snapshot import load_snapshot
from dsp.errors import ConfigInvalid

ROOT = Path(__file__).resolve().parent.parent
CLICK = "https://bidder.test/notice/click?t=abc.DEF-_"


def test_banner_hrefs() -> None:
    markup = ("<a href=\"https://lender.example/a?x=1&amp;y=2\"><img src=\"https://cdn/x.png\"></a>"
              "<a HREF='http://lender.example/b'>b</a><a href=\"#top\">t</a><a href=\"mailto:x@y\">m</a>")
    out = CLICK.join(split_clickthroughs(markup, "banner"))
    assert out.count(CLICK) == 2
    assert "lender.example" not in out and 'src="https://cdn/x.png"' in out
    assert 'href="#top"' in out and 'href="mailto:x@y"' in out


def test_native_links_and_asset_links() -> None:
    markup = json.dumps({"native": {"ver": "1.2", "assets": [
        {"id": 1, "title": {"text": "T"}, "link": {"url": "https://lender.example/asset"}},
        {"id": 2, "data": {"value": "url"}}], "link": {"url": "https://lender.example/main",
                                                     "clicktrackers": ["https://t.example"]}}})
    out = json.loads(CLICK.join(split_clickthroughs(markup, "native")))
    assert out["native"]["link"]["url"] == CLICK
    assert out["native"]["assets"][0]["link"]["url"] == CLICK
    assert out["native"]["assets"][1]["data"]["value"] == "url"  # a field named url elsewhere: kept
    assert out["native"]["link"]["clicktrackers"] == ["https://t.example"]


def test_vast_click_through() -> None:
    markup = ("<VAST version=\"3.0\"><Ad><InLine><Creatives><Creative><Linear><VideoClicks>"
              "<ClickThrough id=\"c\">\n <![CDATA[https://lender.example/v]]>\n</ClickThrough>"
              "<ClickTracking><![CDATA[https://t.example/]]></ClickTracking></VideoClicks>"
              "</Linear></Creative></Creatives></InLine></Ad></VAST>")
    out = CLICK.join(split_clickthroughs(markup, "video"))
    assert f"<ClickThrough id=\"c\"><![CDATA[{CLICK}]]></ClickThrough>" in out
    assert "lender.example" not in out and "https://t.example/" in out


def test_markup_without_click_through_is_one_part() -> None:
    assert split_clickthroughs("<img src='https://cdn/x.png'>", "banner") == ("<img src='https://cdn/x.png'>",)
    assert split_clickthroughs("not json", "native") == ("not json",)
    assert split_clickthroughs("<VAST/>", "video") == ("<VAST/>",)


def test_every_demo_markup_creative_routes_its_clicks_through_the_bidder() -> None:
    """Banners carry their markup (rewritten here); video and native markup is built per request
    with the click notice in it (tests/test_bidding_video_native.py)."""
    snap = load_snapshot(ROOT / "bidder_configs")
    for campaign in snap.campaigns:
        assert campaign.banners
        for cr in campaign.banners.values():
            assert len(cr.markup_parts) > 1, (campaign.id, cr.id)


def test_click_throughs_need_a_landing_url(tmp_path: Path) -> None:
    dst = tmp_path / "configs"
    shutil.copytree(ROOT / "bidder_configs", dst)
    path = dst / "campaigns" / "quickloan-prime.yaml"
    path.write_text("\n".join(ln for ln in path.read_text().splitlines()
                              if not ln.startswith("landing_url:")) + "\n")
    with pytest.raises(ConfigInvalid) as err:
        load_snapshot(dst)
    assert "landing_url" in str(err.value.problems)
